//! The send test of `graphgate send-test --from ACCOUNT --to ADDRESS
//! [--subject S] [--read-back] [--timeout SECONDS]` and of the console's
//! Send test page: the "Test Email Configuration" button of the seed
//! integrations.
//!
//! It builds one message (Date, a Message-ID and a subject carrying a
//! unique token), makes it durable in the spool's incoming directory and
//! hands it to the spool exactly as an SMTP session does — the same
//! header checks, the same row, the same delivery code (`sendMail`, or the
//! draft path) — then reports each step. With `--read-back` it waits until
//! Graph shows the message in the recipient's Inbox (when the recipient is
//! an account of this gateway; otherwise in the sender's Sent Items).
//!
//! With `graphgate serve` running on the same data directory, the running
//! gateway owns the spool (`spool::owner`): send-test then only records the
//! message, due at once, and the gateway's worker delivers it; send-test
//! watches the row. Otherwise send-test holds the spool itself while its
//! one attempt runs. Either way one process attempts the message, so it is
//! sent once; an attempt cut short (timeout, crash) stays `sending` in the
//! spool and the next gateway resolves it before anything else.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::doctor::{Finding, Level, fresh_token, permission_fix, token_permissions};
use crate::account::AccountRuntime;
use crate::auth::EntraClient;
use crate::config::Config;
use crate::gateway::{GatewayError, KeyMode, Runtime};
use crate::graph::{GraphClient, WellKnownFolder};
use crate::runtime::Accounts;
use crate::spool::Spool;
use crate::spool::incoming::{incoming_dir, write_durably};
use crate::spool::owner::{Holder, OwnerRole, SpoolOwner};
use crate::spool::submit::{
    Authenticated, Envelope, SpooledBody, SpooledMessage, SubmitOutcome, Submitter,
};
use crate::store::{Account, SpoolEntry, SpoolId, SpoolState, SpoolUpdate, Store, StoreKey};

/// One send test.
#[derive(Debug, Clone)]
pub struct SendTest {
    /// The local account to send from (its login or mailbox address).
    pub from: String,
    /// The recipient address.
    pub to: String,
    /// Subject (a unique token is appended to it).
    pub subject: Option<String>,
    /// Wait until the message can be read back through Graph.
    pub read_back: bool,
    /// Seconds to wait for delivery (and the read-back) in all.
    pub timeout: u64,
}

/// The steps so far, handed to `sink` as they happen (printed by the
/// command, shown by the console's Send test page).
struct Steps<'a> {
    failed: bool,
    sink: &'a mut (dyn FnMut(&Finding) + Send),
}

impl Steps<'_> {
    fn push(&mut self, finding: Finding) {
        if finding.level == Level::Fail {
            self.failed = true;
        }
        (self.sink)(&finding);
    }

    /// Report a failure; `None` ends the test.
    fn fail<T>(
        &mut self,
        step: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Option<T> {
        self.push(Finding::fail(step, detail, fix));
        None
    }
}

/// Run the test, handing each step to `sink` as it happens; whether it
/// passed.
pub async fn steps(
    config: &Config,
    store: &Store,
    args: &SendTest,
    sink: &mut (dyn FnMut(&Finding) + Send),
) -> bool {
    let mut steps = Steps {
        failed: false,
        sink,
    };
    let done = send_test(config, store, args, &mut steps).await;
    done.is_some() && !steps.failed
}

/// What the message is and how to find it again.
struct TestMessage {
    token: String,
    /// Without angle brackets.
    message_id: String,
    subject: String,
}

async fn send_test(
    config: &Config,
    store: &Store,
    args: &SendTest,
    steps: &mut Steps<'_>,
) -> Option<()> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout.max(1));
    let all = match store.accounts() {
        Ok(a) => a,
        Err(e) => return steps.fail("account", e.to_string(), "check the database"),
    };
    let by = |name: &str| {
        all.iter()
            .find(|a| a.login.eq_ignore_ascii_case(name))
            .or_else(|| all.iter().find(|a| a.mailbox.eq_ignore_ascii_case(name)))
            .cloned()
    };
    let Some(account) = by(&args.from) else {
        return steps.fail(
            "account",
            format!("no local account {}", args.from),
            "give the login of an account (`graphgate status` lists them), or add one with \
             `graphgate accounts add`",
        );
    };
    let to = args.to.trim();
    if !is_address(to) {
        return steps.fail(
            "recipient",
            format!("{to:?} is not a mail address"),
            "give one address such as bob@contoso.com",
        );
    }
    steps.push(Finding::ok(
        "account",
        format!("{} sends as {}", account.login, account.mailbox),
    ));

    // The OAuth token, and whether it may send.
    let runtime = match Runtime::from_store(config, store.clone(), KeyMode::Existing) {
        Ok(r) => r,
        Err(GatewayError::KeyMissing(_)) => {
            return steps.fail(
                "oauth token",
                "the token key (graphgate.key) is missing from the data directory",
                "restore it from a backup, or sign the account in again",
            );
        }
        Err(e @ GatewayError::Key(_)) => {
            return steps.fail("oauth token", e.to_string(), "run `graphgate doctor`");
        }
        Err(e @ GatewayError::Config(_)) => {
            return steps.fail(
                "graph",
                e.to_string(),
                "fix the [graph] settings (`graphgate config example` documents them)",
            );
        }
        Err(e) => return steps.fail("graph", e.to_string(), "fix microsoft.graph_url"),
    };
    let entra = match &runtime.entra {
        Ok(e) => e.clone(),
        Err(e) => {
            return steps.fail("oauth token", e.to_string(), e.remedy(&account.login));
        }
    };
    check_token(&account, store, &runtime.key, &entra, &runtime.graph, steps).await?;

    // The message, made durable where SMTP puts its messages.
    let test = build(&account, args.subject.as_deref());
    let owner = own_or_find_owner(&config.data_dir, deadline, steps).await?;
    let bytes = match message_bytes(&account, to, &test) {
        Ok(b) => b,
        Err(e) => return steps.fail("message", e.to_string(), "report this as a bug"),
    };
    let size = bytes.len() as u64;
    let path = match write_durably(&incoming_dir(&config.data_dir), &bytes).await {
        Ok(p) => p,
        Err(e) => {
            return steps.fail(
                "message",
                format!("cannot write it to the spool: {e}"),
                "check that the data directory is writable and the disk not full",
            );
        }
    };
    steps.push(Finding::ok(
        "message",
        format!(
            "token {}, Message-ID <{}>, subject {:?}, {size} bytes",
            test.token, test.message_id, test.subject
        ),
    ));
    let mut allowed = vec![account.mailbox.clone()];
    allowed.extend(account.aliases.iter().cloned());
    let message = SpooledMessage {
        account: Authenticated {
            login: account.login.clone(),
            allowed_senders: allowed,
        },
        envelope: Envelope {
            mail_from: account.mailbox.clone(),
            rcpt_to: vec![to.to_string()],
            ..Envelope::default()
        },
        body: SpooledBody::File(path),
        size,
    };

    // Through the spool, as SMTP does.
    let registry = runtime.accounts.clone();
    let spool = Spool::new(
        store.clone(),
        registry.clone(),
        crate::gateway::listeners::spool_config(config),
    );
    let submitted = Instant::now();
    let entry = match &owner {
        Ok(_held) => {
            let outcome = Submitter::submit(&spool, message).await;
            let entry = refused(&outcome, steps)
                .and_then(|()| find_entry(store, &test.message_id, steps))?;
            steps.push(Finding::ok(
                "spool",
                format!("recorded as spool id {} and attempted here (no gateway runs on this data directory)", entry.id.0),
            ));
            // The first attempt may outlast the synchronous window.
            while spool.is_working_on(entry.id) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            entry.id
        }
        Err(holder) => {
            let entry = match spool.enqueue(message).await {
                Ok(e) => e,
                Err(outcome) => {
                    refused(&outcome, steps)?;
                    return None;
                }
            };
            steps.push(Finding::ok(
                "spool",
                format!(
                    "recorded as spool id {}, handed to {holder} (its worker sends it within seconds)",
                    entry.id.0
                ),
            ));
            watch(store, entry.id, deadline).await;
            entry.id
        }
    };
    let entry = match store.spool_entry(entry) {
        Ok(Some(e)) => e,
        _ => {
            return steps.fail(
                "submitted",
                "the spool entry vanished",
                "report this as a bug",
            );
        }
    };
    report_outcome(store, &entry, &account, submitted, steps)?;
    drop(owner);

    if args.read_back {
        read_back(
            &all, &account, to, &test, &registry, submitted, deadline, steps,
        )
        .await?;
    }
    Some(())
}

/// A fresh-enough token that carries Mail.Send (when that can be read).
async fn check_token(
    account: &Account,
    store: &Store,
    key: &StoreKey,
    entra: &Arc<EntraClient>,
    graph: &GraphClient,
    steps: &mut Steps<'_>,
) -> Option<()> {
    let login = &account.login;
    let runtime = match AccountRuntime::open(account.clone(), store, key, entra.clone(), graph) {
        Ok(r) => r,
        Err(e) => return steps.fail("oauth token", e.to_string(), e.remedy(login)),
    };
    // Refreshed now: a revoked grant shows here, not in an hour.
    let token = match fresh_token(&runtime).await {
        Ok(t) => t,
        Err(e) => return steps.fail("oauth token", e.to_string(), e.remedy(login)),
    };
    let minutes = token
        .expires_at
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0);
    match token_permissions(token.token.expose()) {
        Some(p) if !p.has("Mail.Send") => steps.fail(
            "oauth token",
            format!(
                "the token carries {} {} but not Mail.Send: Graph would refuse the send",
                p.kind(),
                p.names().join(" ")
            ),
            permission_fix(p.kind(), &["Mail.Send"], login),
        ),
        Some(p) => {
            steps.push(Finding::ok(
                "oauth token",
                format!(
                    "OK (just issued), valid for {minutes} min, {} Mail.Send",
                    p.kind()
                ),
            ));
            Some(())
        }
        None => {
            steps.push(Finding::ok(
                "oauth token",
                format!(
                    "OK (just issued), valid for {minutes} min (permissions not readable from it)"
                ),
            ));
            Some(())
        }
    }
}

/// The spool for this process, or the running gateway that has it.
async fn own_or_find_owner(
    data_dir: &Path,
    deadline: Instant,
    steps: &mut Steps<'_>,
) -> Option<Result<SpoolOwner, Holder>> {
    loop {
        match SpoolOwner::try_acquire(data_dir, OwnerRole::SendTest) {
            Ok(Ok(owner)) => return Some(Ok(owner)),
            Ok(Err(holder)) if holder.role == Some(OwnerRole::Gateway) => {
                return Some(Err(holder));
            }
            Ok(Err(holder)) if Instant::now() >= deadline => {
                return steps.fail(
                    "spool",
                    format!("{holder} has the spool of this data directory"),
                    "wait until it has finished, then run send-test again",
                );
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => {
                return steps.fail(
                    "spool",
                    format!("cannot lock the spool: {e}"),
                    "check that the data directory is writable",
                );
            }
        }
    }
}

fn is_address(s: &str) -> bool {
    if s.chars()
        .any(|c| c.is_whitespace() || "<>,;\"()".contains(c))
    {
        return false;
    }
    matches!(s.rsplit_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty())
}

fn build(account: &Account, subject: Option<&str>) -> TestMessage {
    let token = format!("gg-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let domain = account
        .mailbox
        .rsplit_once('@')
        .map_or("graphgate.local", |(_, d)| d);
    TestMessage {
        message_id: format!("{token}.send-test.graphgate@{domain}"),
        subject: format!(
            "{} [{token}]",
            subject.unwrap_or("graphgate send-test").trim()
        ),
        token,
    }
}

fn message_bytes(account: &Account, to: &str, test: &TestMessage) -> std::io::Result<Vec<u8>> {
    let now = chrono::Utc::now();
    let body = format!(
        "This is a test message from `graphgate send-test`.\r\n\r\n\
         From:  {} (local account {})\r\n\
         To:    {to}\r\n\
         Sent:  {}\r\n\
         Token: {}\r\n\r\n\
         It went through graphgate's spool and Microsoft Graph exactly as mail that \
         applications submit over SMTP does.\r\n",
        account.mailbox,
        account.login,
        now.to_rfc2822(),
        test.token
    );
    mail_builder::MessageBuilder::new()
        .from(account.mailbox.as_str())
        .to(to)
        .subject(test.subject.as_str())
        .message_id(test.message_id.clone())
        .date(now.timestamp())
        .text_body(body)
        .write_to_vec()
}

/// A refusal of the spool (what an SMTP client would get as 5xx/4xx).
fn refused(outcome: &SubmitOutcome, steps: &mut Steps) -> Option<()> {
    match outcome {
        SubmitOutcome::Accepted { .. } => Some(()),
        SubmitOutcome::Rejected {
            code,
            enhanced,
            text,
        } => {
            let (what, fix) = split_fix(text);
            steps.fail(
                "submitted",
                format!("refused: {code} {enhanced} {what}"),
                fix.unwrap_or("`graphgate doctor` checks the account's token and permissions"),
            )
        }
        SubmitOutcome::TryLater { text } => steps.fail(
            "submitted",
            format!("the spool could not take it: {text}"),
            "check that the data directory is writable and the disk not full",
        ),
    }
}

/// "Graph refused: Code — what to do" → ("Graph refused: Code", "what to do").
fn split_fix(text: &str) -> (&str, Option<&str>) {
    match text.split_once(" — ") {
        Some((what, fix)) => (what, Some(fix)),
        None => (text, None),
    }
}

fn find_entry(store: &Store, message_id: &str, steps: &mut Steps) -> Option<SpoolEntry> {
    let found = store.spool_list(None, None).ok().and_then(|list| {
        list.into_iter()
            .rev()
            .find(|e| e.message_id.as_deref() == Some(message_id))
    });
    match found {
        Some(e) => Some(e),
        None => steps.fail(
            "spool",
            "the message's spool entry is not there",
            "report this as a bug",
        ),
    }
}

/// Wait until the running gateway is done with `id`: delivered or refused
/// for good, or deferred after an attempt, or the deadline.
async fn watch(store: &Store, id: SpoolId, deadline: Instant) {
    loop {
        if let Ok(Some(e)) = store.spool_entry(id) {
            let finished = match e.state {
                SpoolState::Delivered
                | SpoolState::Bounced
                | SpoolState::Rejected
                | SpoolState::Dropped => true,
                SpoolState::Queued => e.attempts > 0 && e.last_error.is_some(),
                SpoolState::Sending => false,
            };
            if finished {
                return;
            }
        }
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Report where the entry ended; a test message still queued is dropped
/// (so that it is not sent later by surprise) — a compare-and-set, so a
/// send that began meanwhile is never undone.
fn report_outcome(
    store: &Store,
    entry: &SpoolEntry,
    account: &Account,
    submitted: Instant,
    steps: &mut Steps<'_>,
) -> Option<()> {
    let id = entry.id.0;
    let why = entry.last_error.as_deref().unwrap_or("");
    match entry.state {
        SpoolState::Delivered => {
            steps.push(Finding::ok(
                "submitted",
                format!(
                    "Graph accepted it (202 Accepted) {:.1} s after submission; spool id {id} delivered",
                    submitted.elapsed().as_secs_f64()
                ),
            ));
            Some(())
        }
        SpoolState::Queued => {
            let dropped = store
                .spool_update(
                    entry.id,
                    SpoolState::Queued,
                    &SpoolUpdate {
                        state: Some(SpoolState::Dropped),
                        last_error: Some("send-test: dropped after its attempt was deferred"),
                        ..Default::default()
                    },
                )
                .unwrap_or(false);
            if dropped && !entry.path.is_empty() {
                let _ = std::fs::remove_file(&entry.path);
            }
            let after = if dropped {
                "; the test message was dropped from the spool (nothing was sent)".to_string()
            } else {
                format!("; it is being sent now (`graphgate queue show {id}` follows it)")
            };
            if why.is_empty() {
                steps.fail(
                    "submitted",
                    format!("not attempted within the timeout{after}"),
                    "check that the gateway's spool worker runs (its log, `graphgate queue \
                     list`), or give --timeout more seconds",
                )
            } else {
                let (what, fix) = split_fix(why);
                steps.fail(
                    "submitted",
                    format!("deferred: {what}{after}"),
                    fix.unwrap_or(
                        "the reason says what to do; `graphgate doctor` checks the account's \
                         token and permissions",
                    ),
                )
            }
        }
        SpoolState::Sending => steps.fail(
            "submitted",
            format!(
                "the outcome is not known yet: spool id {id} is being sent or its answer was lost{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ),
            format!(
                "nothing to do: it stays in the spool, and the gateway finds out whether Graph \
                 sent it before trying again, so it is never sent twice; `graphgate queue show \
                 {id}` follows it"
            ),
        ),
        SpoolState::Rejected | SpoolState::Bounced => {
            let (what, fix) = split_fix(why);
            let dsn = if entry.state == SpoolState::Bounced {
                format!("; a delivery status notification goes to {}'s Inbox", account.mailbox)
            } else {
                String::new()
            };
            steps.fail(
                "submitted",
                format!("refused: {what}{dsn}"),
                fix.unwrap_or("`graphgate doctor` checks the account's token and permissions"),
            )
        }
        SpoolState::Dropped => steps.fail(
            "submitted",
            format!("dropped by an administrator ({why})"),
            "run send-test again",
        ),
    }
}

/// Poll Graph until the message is in the recipient's Inbox (an account of
/// this gateway) or the sender's Sent Items.
#[allow(clippy::too_many_arguments)]
async fn read_back(
    all: &[Account],
    sender: &Account,
    to: &str,
    test: &TestMessage,
    registry: &Arc<Accounts>,
    submitted: Instant,
    deadline: Instant,
    steps: &mut Steps<'_>,
) -> Option<()> {
    let recipient = all
        .iter()
        .find(|a| a.mailbox.eq_ignore_ascii_case(to) || a.login.eq_ignore_ascii_case(to));
    let (reader, folder, place) = match recipient {
        Some(r) => (r, WellKnownFolder::Inbox, format!("{}'s Inbox", r.mailbox)),
        None if sender.save_to_sent_items => (
            sender,
            WellKnownFolder::SentItems,
            format!(
                "{}'s Sent Items (the recipient is not an account of this gateway)",
                sender.mailbox
            ),
        ),
        None => {
            steps.push(Finding::warn(
                "read-back",
                format!(
                    "not possible: {to} is not an account of this gateway and {} keeps no Sent \
                     Items copy",
                    sender.login
                ),
                "send to an account of this gateway to read it back",
            ));
            return Some(());
        }
    };
    let runtime = match registry.get(reader.id) {
        Ok(r) => r,
        Err(text) => {
            return steps.fail(
                "read-back",
                format!("cannot read {place}: {text}"),
                format!(
                    "sign {} in (`graphgate login {}`)",
                    reader.login, reader.login
                ),
            );
        }
    };
    let message_id = format!("<{}>", test.message_id);
    let mut last_error = None;
    let found =
        loop {
            match runtime
                .mailbox
                .find_by_internet_message_id(&folder.id(), &message_id)
                .await
            {
                Ok(found) if !found.is_empty() => break found,
                Ok(_) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
            if Instant::now() >= deadline {
                return steps.fail(
                "read-back",
                format!(
                    "not in {place} {:.0} s after submission{}",
                    submitted.elapsed().as_secs_f64(),
                    last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default()
                ),
                format!(
                    "Exchange may still be delivering it (look again later) or filed it as Junk \
                     Email; a non-delivery report in {}'s Inbox says why it could not be delivered",
                    sender.mailbox
                ),
            );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
    let elapsed = submitted.elapsed().as_secs_f64();
    if found.len() > 1 {
        return steps.fail(
            "read-back",
            format!(
                "{} copies in {place}: it was delivered more than once",
                found.len()
            ),
            "report this as a bug with the output of `graphgate queue list --all`",
        );
    }
    let subject = found[0].subject.clone().unwrap_or_default();
    if !subject.contains(&test.token) {
        return steps.fail(
            "read-back",
            format!("a message with its Message-ID is in {place}, but its subject {subject:?} lacks the token"),
            "report this as a bug",
        );
    }
    steps.push(Finding::ok(
        "read-back",
        format!("in {place} {elapsed:.1} s after submission (1 copy, subject {subject:?})"),
    ));
    Some(())
}
