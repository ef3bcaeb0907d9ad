//! The SMTP spool: a 250 is a promise that the message is delivered exactly
//! once, whatever happens to the process.
//!
//! # The per-message state machine
//!
//! Each accepted message is one row of the `spool` table (state, method,
//! draft id, attempt start) and its bytes: in the row itself for a small
//! message (up to [`crate::smtp::server::INLINE_MAX`]), else one fsync'ed
//! file. Every transition is a compare-and-set on the row, committed
//! (SQLite, `synchronous=FULL`) *before* the Graph call it announces. The
//! SMTP session's first attempt is recorded already claimed: the insert
//! that makes the message durable is also the claim, one commit.
//!
//! ```text
//!              claim (method chosen, sending_since = now)
//!   queued ───────────────────────────────────────────▶ sending
//!     ▲                                                   │
//!     │ definite transient failure (429, 503, offline,    │ 202 from Graph
//!     │ token trouble) — nothing was sent — backoff       ├──────────────▶ delivered
//!     └───────────────────────────────────────────────────┤
//!                                                         │ permanent refusal
//!                                                         ├── in the window ─▶ rejected (client got 5xx)
//!                                                         └── after it ──────▶ bounced (DSN to the sender)
//! ```
//!
//! A row left in `sending` with no worker on it — the process died, or the
//! answer was lost (connection reset or timeout after the request left,
//! 500/502/504) — is *in doubt*: Graph may or may not have sent it. It is
//! never simply retried; the resolver finds out first:
//!
//! - **`sendmail`** (one request: `sendMail` with the base64 MIME; used up
//!   to 3 MB when the account keeps a Sent Items copy). Every spooled
//!   message has a Message-ID (added at submission when missing) and a
//!   header unique to its submission, `X-Graphgate-Submission` (see
//!   [`evidence`]): applications reuse Message-IDs, so the Message-ID
//!   alone never proves that *this* entry was sent. The resolver looks
//!   for the Message-ID in Sent Items (`$filter=internetMessageId eq`)
//!   and reads each candidate's header block: one with this entry's
//!   submission id → `delivered`. None, and the attempt began less than
//!   `in_doubt_grace` ago → look again later (Exchange files the copy
//!   asynchronously); none after that → `queued` (it was not sent).
//!   Exactly once holds both ways: a copy is counted only for the
//!   submission that made it (no loss), and a submission whose copy
//!   exists is never sent again (no duplicate).
//! - **`draft`** (large messages, or accounts without a Sent Items copy):
//!   create a draft from the MIME (its id is committed at once), add the
//!   attachments streamed from the file (upload sessions from 3 MB),
//!   mark it `PR_DELETE_AFTER_SUBMIT` when no copy is wanted — the method
//!   becomes `draft-ready` — then `send`. The draft's fate is the evidence:
//!   gone (404) or no longer a draft → `delivered`; still a draft and
//!   `draft-ready` → send it again; still a draft but incomplete → delete
//!   it, `queued`. In doubt before the id was committed → delete the
//!   draft in Drafts carrying the Message-ID *and* this entry's submission
//!   id (an orphan, never sent), `queued` — never another entry's draft.
//!   A draft that vanishes under an attempt (404) is not a refusal of the
//!   message: nothing was sent, it goes again.
//!
//! A client that lost the reply after its final dot sends the message
//! again. A message with its own Message-ID is recognised by a
//! fingerprint (account, envelope, Message-ID, bytes): while an entry
//! with the same fingerprint is waiting or delivered, the resubmission
//! gets 250 naming that entry and nothing new is recorded, so it is
//! delivered once.
//!
//! So a crash at any instant — before the claim, between the claim and the
//! request, between Graph's 202 and the `delivered` update — ends with one
//! delivery. Messages older than `bounce_after` that still cannot be sent
//! are bounced with an RFC 3464 DSN placed in the sender's Inbox.
//!
//! # The synchronous window
//!
//! [`Spool`] is the SMTP server's [`Submitter`]: it checks the headers
//! (From allowed, header recipients ⊆ envelope), records the row, and
//! starts the first attempt at once. If that attempt ends within
//! `sync_window`, the client gets its real outcome (250, or 5xx with
//! Graph's reason); otherwise, or on transient trouble, 250 — the worker
//! takes it from there.

mod deliver;
pub mod dsn;
pub mod evidence;
pub mod incoming;
mod overdue;
pub mod owner;
pub mod submit;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::mime::submission::{
    MAX_HEADER_BLOCK, SubmissionRefusal, header_block_len, header_facts, submission_prefix,
};
use crate::runtime::Accounts;
use crate::store::{Account, SpoolEntry, SpoolId, SpoolInsert, SpoolState, Store, now_unix};
use submit::{SpooledBody, SpooledMessage, SubmitOutcome, Submitter};

pub use deliver::Outcome;

/// Spool settings (`smtp.*` in the configuration).
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// How long a client waits for Graph's answer before it gets 250.
    pub sync_window: Duration,
    /// Undeliverable for this long → DSN to the sender.
    pub bounce_after: Duration,
    /// How long a `sendmail` attempt in doubt waits for its Sent Items
    /// copy before it counts as not sent.
    pub in_doubt_grace: Duration,
    /// First retry delay; doubled per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Messages delivered at the same time.
    pub workers: usize,
    /// How often the worker looks at the spool without being woken.
    pub poll_interval: Duration,
    /// Alert (`message_queued`) for a message waiting this long
    /// (`alerts.queued_after_s`); `None`: never.
    pub queued_alert_after: Option<Duration>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            sync_window: Duration::from_secs(10),
            bounce_after: Duration::from_secs(2 * 24 * 3600),
            in_doubt_grace: Duration::from_secs(120),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            workers: 8,
            poll_interval: Duration::from_secs(5),
            queued_alert_after: None,
        }
    }
}

/// The spool and its delivery worker.
pub struct Spool {
    pub(crate) store: Store,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) config: SpoolConfig,
    wake: Notify,
    /// Entries a task of this process is working on.
    in_flight: Mutex<HashSet<SpoolId>>,
    permits: Arc<Semaphore>,
}

/// A message just recorded, with what its first attempt needs.
struct Recorded {
    entry: SpoolEntry,
    account: Account,
    /// The bytes, when they are in the row (no need to read them back).
    body: Option<Bytes>,
    /// The same message was already in the spool: `entry` is that one,
    /// and nothing new was recorded.
    known: bool,
}

/// What [`Spool::prepare`] works out for a message.
struct Prepared {
    /// Its Message-ID, without angle brackets.
    message_id: String,
    /// The client gave it (rather than graphgate).
    own_id: bool,
    /// The header lines graphgate adds in front of it.
    prefix: String,
}

/// How long a resubmission of the same message is recognised as such.
const RESUBMISSION_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What identifies a message when its client sends it again: the account,
/// the envelope, the client's Message-ID and every byte, hashed (SHA-256).
/// By RFC 5322 §3.6.4 a Message-ID names one message; with the same bytes
/// and envelope too, a second submission is a retry — typically after a
/// connection lost between the final dot and the reply (RFC 5321 §4.1.1.4
/// leaves the client no way to know whether the first one was accepted).
async fn fingerprint(
    account: &Account,
    message: &SpooledMessage,
    message_id: &str,
) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [
        account.id.0.to_string().as_str(),
        message.envelope.mail_from.as_str(),
        &message.envelope.rcpt_to.join("\n"),
        message_id,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let hash = match &message.body {
        SpooledBody::Inline(bytes) => {
            hash.update(bytes);
            hash
        }
        SpooledBody::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let mut file = std::fs::File::open(path)?;
                std::io::copy(&mut file, &mut hash)?;
                Ok::<_, std::io::Error>(hash)
            })
            .await
            .map_err(std::io::Error::other)??
        }
    };
    Ok(format!("{:x}", hash.finalize()))
}

/// An entry this process works on (`in_flight`) until dropped.
struct InFlight {
    spool: Arc<Spool>,
    id: SpoolId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.spool.release(self.id);
    }
}

/// Test hook: `GRAPHGATE_CRASH_AT=<point>` aborts the process at that point
/// of a delivery (to prove exactly-once across crashes). Points:
/// `before-send`, `after-send` (Graph answered 202, spool not updated),
/// `draft-created` (Graph created the draft, its id not yet committed),
/// `after-draft` (draft id committed, nothing else).
pub(crate) fn crash_point(point: &str) {
    if std::env::var("GRAPHGATE_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("graphgate: GRAPHGATE_CRASH_AT={point}: aborting now");
        std::process::abort();
    }
}

impl Spool {
    pub fn new(store: Store, accounts: Arc<Accounts>, config: SpoolConfig) -> Arc<Spool> {
        let permits = Arc::new(Semaphore::new(config.workers.max(1)));
        Arc::new(Spool {
            store,
            accounts,
            config,
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            permits,
        })
    }

    /// Wake the worker (new mail, `queue retry`).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Mark `id` as worked on by this process; false if it already is.
    fn take(&self, id: SpoolId) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
    }

    fn release(&self, id: SpoolId) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Deliver due entries until `shutdown`: queued ones are attempted,
    /// `sending` ones nobody works on are resolved (see the module docs).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        let mut overdue = overdue::Overdue::default();
        loop {
            if let Some(after) = self.config.queued_alert_after {
                overdue.check(&self.store, after);
            }
            let now = now_unix();
            let mut due = Vec::new();
            for state in [SpoolState::Sending, SpoolState::Queued, SpoolState::Bounced] {
                match self.store.spool_list(Some(state), Some(now)) {
                    Ok(list) => due.extend(list.into_iter().filter(|e| {
                        e.state != SpoolState::Bounced
                            || e.method == Some(crate::store::DeliveryMethod::DsnPending)
                    })),
                    Err(e) => tracing::error!(error = %e, "spool: cannot read the queue"),
                }
            }
            for entry in due {
                if !self.take(entry.id) {
                    continue;
                }
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    self.release(entry.id);
                    break;
                };
                let spool = self.clone();
                // One span per message attempt: `spool{queue_id=…}`, the id
                // the SMTP session logged when it accepted the message.
                let span = tracing::info_span!("spool", queue_id = entry.id.0);
                tasks.spawn(
                    async move {
                        let _permit = permit;
                        let id = entry.id;
                        let outcome = spool.process(entry).await;
                        if let Outcome::Failed { .. } = &outcome {
                            spool.bounce(id, &outcome).await;
                        }
                        spool.release(id);
                    }
                    .instrument(span),
                );
            }
            while tasks.try_join_next().is_some() {}
            let wait = match self.store.spool_next_due() {
                Ok(Some(at)) if at > now => Duration::from_secs((at - now) as u64),
                Ok(Some(_)) => Duration::from_millis(200),
                _ => self.config.poll_interval,
            }
            .min(self.config.poll_interval);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Let attempts in flight finish: their outcome must be recorded.
        while tasks.join_next().await.is_some() {}
    }

    /// One step for an entry this process has taken.
    async fn process(&self, entry: SpoolEntry) -> Outcome {
        match entry.state {
            SpoolState::Queued => self.attempt(entry).await,
            SpoolState::Sending => self.resolve(entry).await,
            SpoolState::Bounced => {
                self.place_dsn(entry).await;
                Outcome::Deferred("bounce notice".into())
            }
            _ => Outcome::Deferred("not due".into()),
        }
    }

    /// Check the message's headers and work out what to add in front.
    async fn prepare(
        &self,
        message: &SpooledMessage,
        mailbox: &str,
    ) -> Result<Prepared, SubmitOutcome> {
        let head = message.head(MAX_HEADER_BLOCK + 4).await.map_err(|e| {
            tracing::error!(error = %e, "spool: cannot read a spooled message back");
            SubmitOutcome::TryLater {
                text: "The spool could not read the message back; try again later".into(),
            }
        })?;
        let Some(head_len) = header_block_len(&head).or(
            // A message that is all headers, without a body.
            (head.len() < MAX_HEADER_BLOCK).then_some(head.len()),
        ) else {
            return Err(refusal(&SubmissionRefusal::HeaderTooLarge));
        };
        let facts = header_facts(&head[..head_len]);
        let domain = mailbox.rsplit_once('@').map_or("graphgate.local", |d| d.1);
        let new_id = format!("{}.graphgate@{domain}", uuid::Uuid::new_v4().simple());
        let mut prefix = String::new();
        let mut facts = facts;
        if facts.from.is_empty() {
            // RFC 6409 §8: the submission server may supply From; the
            // envelope sender (or the mailbox) is who it is from.
            let from = if message.envelope.mail_from.is_empty() {
                mailbox.to_string()
            } else {
                message.envelope.mail_from.clone()
            };
            prefix.push_str(&format!("From: {from}\r\n"));
            facts.from.push(from.to_ascii_lowercase());
        }
        let added = submission_prefix(
            &facts,
            &message.envelope.rcpt_to,
            &message.account.login,
            &message.account.allowed_senders,
            &new_id,
        )
        .map_err(|e| refusal(&e))?;
        prefix.push_str(&added);
        // The evidence unique to this submission (see `evidence`): what
        // the resolver and draft recovery look for, never the Message-ID
        // alone.
        prefix.push_str(&evidence::new_submission_line());
        let own_id = facts.message_id.is_some();
        let message_id = facts.message_id.unwrap_or(new_id);
        Ok(Prepared {
            message_id,
            own_id,
            prefix,
        })
    }

    /// Record an accepted message (header checks, Message-ID, the row),
    /// leaving the worker off it until `not_before`; the file is removed
    /// when it is refused. With `claim`, the row is recorded already
    /// claimed for a first attempt by this process (`sending`, marked as
    /// worked on here before any other task can see it): the commit that
    /// makes the message durable is also the claim.
    async fn record(
        &self,
        message: SpooledMessage,
        not_before: i64,
        claim: bool,
    ) -> Result<Recorded, SubmitOutcome> {
        let account = match self.store.account(&message.account.login) {
            Ok(Some(a)) => a,
            Ok(None) => {
                message.discard().await;
                return Err(SubmitOutcome::Rejected {
                    code: 550,
                    enhanced: "5.7.1".into(),
                    text: format!("the account {} no longer exists", message.account.login),
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "spool: the store failed");
                message.discard().await;
                return Err(SubmitOutcome::TryLater {
                    text: "The spool database is unavailable; try again later".into(),
                });
            }
        };
        let Prepared {
            message_id,
            own_id,
            prefix,
        } = match self.prepare(&message, &account.mailbox).await {
            Ok(p) => p,
            Err(outcome) => {
                message.discard().await;
                return Err(outcome);
            }
        };
        // A message the client named itself can be recognised when it is
        // sent again (see `fingerprint`); one without a Message-ID of its
        // own cannot: two identical alarms are two messages.
        let fingerprint = match own_id {
            true => match fingerprint(&account, &message, &message_id).await {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::error!(error = %e, "spool: cannot read a spooled message back");
                    message.discard().await;
                    return Err(SubmitOutcome::TryLater {
                        text: "The spool could not read the message back; try again later".into(),
                    });
                }
            },
            false => None,
        };
        let (path, body) = match &message.body {
            SpooledBody::Inline(bytes) => (String::new(), Some(bytes.clone())),
            SpooledBody::File(path) => (path.to_string_lossy().into_owned(), None),
        };
        let method = deliver::method_for(&account, message.size, prefix.len());
        let new = crate::store::NewSpoolEntry {
            account: account.id,
            mail_from: &message.envelope.mail_from,
            rcpt_to: &message.envelope.rcpt_to,
            path: &path,
            body: body.as_deref(),
            size: message.size,
            message_id: Some(&message_id),
            prefix: &prefix,
            not_before: Some(not_before),
            claimed_with: claim.then_some(method),
            fingerprint: fingerprint.as_deref(),
        };
        let since = now_unix() - RESUBMISSION_WINDOW.as_secs() as i64;
        let inserted = if claim {
            // Marked as ours under the same lock the worker takes entries
            // with: it never sees the new row unclaimed by this process.
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let inserted = self.store.spool_insert_unless_known(&new, since);
            if let Ok(SpoolInsert::New(entry)) = &inserted {
                in_flight.insert(entry.id);
            }
            inserted
        } else {
            self.store.spool_insert_unless_known(&new, since)
        };
        let entry = match inserted {
            Ok(SpoolInsert::New(e)) => e,
            Ok(SpoolInsert::Known(entry)) => {
                // The client sent again a message it had already handed
                // over (it lost the reply after its final dot): that entry
                // delivers it, once; this copy goes.
                message.discard().await;
                tracing::info!(
                    queue_id = entry.id.0,
                    account = %account.login,
                    "message submitted again: already in the spool, not sent twice"
                );
                return Ok(Recorded {
                    entry,
                    account,
                    body: None,
                    known: true,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "spool: cannot record a message");
                message.discard().await;
                return Err(SubmitOutcome::TryLater {
                    text: "The spool could not record the message; try again later".into(),
                });
            }
        };
        crate::metrics::get().smtp_messages_accepted.inc();
        tracing::info!(
            queue_id = entry.id.0,
            account = %account.login,
            size = message.size,
            recipients = message.envelope.rcpt_to.len(),
            "message accepted into the spool"
        );
        Ok(Recorded {
            entry,
            account,
            body,
            known: false,
        })
    }

    /// Hand a message to the spool without attempting it in this process:
    /// the entry is due at once, for the worker that owns this data
    /// directory's spool (a running gateway; see [`owner`]). The same
    /// checks as [`Submitter::submit`]; the refusal is the SMTP reply.
    /// A message already in the spool (sent again) gives that entry.
    pub async fn enqueue(&self, message: SpooledMessage) -> Result<SpoolEntry, SubmitOutcome> {
        Ok(self.record(message, now_unix(), false).await?.entry)
    }

    /// Whether a task of this process is working on `id` (its first
    /// attempt may outlast the synchronous window).
    pub fn is_working_on(&self, id: SpoolId) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// Spool an accepted message and try it within the window.
    async fn submit_inner(self: &Arc<Self>, message: SpooledMessage) -> SubmitOutcome {
        // Due at once: the worker skips it while this process works on it
        // (`in_flight`); if the process dies, the next one resolves it
        // (`sending`: was it sent?) before any retry.
        let not_before = now_unix();
        let Recorded {
            entry,
            account,
            body,
            known,
        } = match self.record(message, not_before, true).await {
            Ok(recorded) => recorded,
            Err(outcome) => return outcome,
        };
        if known {
            return SubmitOutcome::Accepted {
                queue_id: format!(
                    "{}; already accepted before (the same message sent again), not sent twice",
                    entry.id.0
                ),
            };
        }
        let queue_id = format!("{}", entry.id.0);
        let id = entry.id;
        let (account_id, login) = (account.id, account.login.clone());
        // From here on the message is durable, and claimed (in the store
        // and in `in_flight`): the first attempt starts now; whatever
        // happens to it, the worker resolves and delivers the entry. The
        // guard gives the entry back to the worker however this ends —
        // even if this future is dropped mid-attempt (the row then stays
        // `sending`, for the resolver).
        let guard = InFlight {
            spool: self.clone(),
            id,
        };
        let spool = self.clone();
        // Inside the SMTP session's span: the first attempt's lines read
        // `smtp{session=…}:spool{queue_id=…}`.
        let span = tracing::info_span!("spool", queue_id = id.0);
        let mut attempt = Box::pin(
            async move {
                let _permit = spool.permits.clone().acquire_owned().await;
                spool.send_claimed(entry, account, body).await
            }
            .instrument(span),
        );
        // The attempt runs on this task while the client waits (no hand-off
        // to another task on the reply path); past the window it moves to
        // a task of its own and the client gets its 250. A zero window
        // answers at once, however quickly the attempt might end.
        let finished = if self.config.sync_window.is_zero() {
            None
        } else {
            tokio::select! {
                outcome = &mut attempt => Some(outcome),
                _ = tokio::time::sleep(self.config.sync_window) => None,
            }
        };
        let outcome = match finished {
            Some(outcome) => {
                if let Outcome::Failed { .. } = &outcome {
                    self.reject(id, &outcome).await;
                }
                drop(guard);
                Some(outcome)
            }
            None => {
                let span = tracing::info_span!("spool", queue_id = id.0);
                tokio::spawn(
                    async move {
                        let outcome = attempt.await;
                        if let Outcome::Failed { .. } = &outcome {
                            guard.spool.bounce(id, &outcome).await;
                        }
                        drop(guard);
                    }
                    .instrument(span),
                );
                None
            }
        };
        match outcome {
            Some(Outcome::Delivered) => SubmitOutcome::Accepted {
                queue_id: format!("{queue_id}; delivered to Microsoft 365"),
            },
            Some(Outcome::Failed {
                code,
                enhanced,
                text,
            }) => SubmitOutcome::Rejected {
                code,
                enhanced,
                text,
            },
            Some(Outcome::Deferred(why)) => {
                tracing::info!(queue_id = id.0, "delivery deferred: {why}");
                // The attempt found the account signed out (its grant
                // revoked): say so and what brings it back, not "busy".
                let offline = matches!(
                    self.store.account_by_id(account_id),
                    Ok(Some(a)) if a.state == crate::store::AccountState::Offline
                );
                SubmitOutcome::Accepted {
                    queue_id: if offline {
                        format!(
                            "{queue_id}; {login} is signed out of Microsoft 365 (OFFLINE): the \
                             spool keeps the message and sends it once `graphgate login {login}` \
                             signs it in again"
                        )
                    } else {
                        format!("{queue_id}; Graph is busy, the spool will retry")
                    },
                }
            }
            None => SubmitOutcome::Accepted {
                queue_id: format!("{queue_id}; delivery continues in the background"),
            },
        }
    }

    /// A permanent failure the client was told about: no DSN.
    async fn reject(&self, id: SpoolId, outcome: &Outcome) {
        let text = outcome.text();
        match self.store.spool_update(
            id,
            SpoolState::Sending,
            &crate::store::SpoolUpdate {
                state: Some(SpoolState::Rejected),
                last_error: Some(&text),
                ..Default::default()
            },
        ) {
            Ok(true) => self.remove_file(id).await,
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "spool: cannot record a rejection"),
        }
    }

    /// The entry is final: remove its file, or forget the bytes in its row.
    pub(crate) async fn remove_file(&self, id: SpoolId) {
        if let Ok(Some(entry)) = self.store.spool_entry(id) {
            if entry.inline
                && let Err(e) = self.store.spool_clear_body(id)
            {
                tracing::warn!(queue_id = id.0, error = %e, "spool: cannot clear a body");
            }
            if !entry.path.is_empty() {
                let _ = tokio::fs::remove_file(&entry.path).await;
            }
        }
    }

    /// The message as sent: the prefix, then its bytes — `body` when the
    /// caller has them at hand, else read from the row or the file.
    pub(crate) async fn message_mime(
        &self,
        entry: &SpoolEntry,
        body: Option<Bytes>,
    ) -> Result<Vec<u8>, String> {
        let body = match body {
            Some(body) => body,
            None if entry.inline => match self.store.spool_body(entry.id) {
                Ok(Some(body)) => Bytes::from(body),
                Ok(None) => return Err("the spooled message's bytes are gone".into()),
                Err(e) => return Err(format!("cannot read the spooled message: {e}")),
            },
            None => tokio::fs::read(&entry.path)
                .await
                .map(Bytes::from)
                .map_err(|e| format!("cannot read the spool file: {e}"))?,
        };
        let mut mime = Vec::with_capacity(entry.prefix.len() + body.len());
        mime.extend_from_slice(entry.prefix.as_bytes());
        mime.extend_from_slice(&body);
        Ok(mime)
    }

    /// The start of a spooled message (its header block), empty when it
    /// cannot be read.
    pub(crate) async fn message_head(&self, entry: &SpoolEntry, body: Option<&Bytes>) -> Vec<u8> {
        let limit = MAX_HEADER_BLOCK + 4;
        if let Some(body) = body {
            return body[..body.len().min(limit)].to_vec();
        }
        if entry.inline {
            let mut body = self
                .store
                .spool_body(entry.id)
                .ok()
                .flatten()
                .unwrap_or_default();
            body.truncate(limit);
            body
        } else {
            submit::file_head(Path::new(&entry.path), limit)
                .await
                .unwrap_or_default()
        }
    }
}

#[async_trait::async_trait]
impl Submitter for Arc<Spool> {
    async fn submit(&self, message: SpooledMessage) -> SubmitOutcome {
        let started = std::time::Instant::now();
        let outcome = self.submit_inner(message).await;
        crate::metrics::get()
            .smtp_submission_seconds
            .observe(started.elapsed().as_secs_f64());
        outcome
    }
}

fn refusal(e: &SubmissionRefusal) -> SubmitOutcome {
    let (code, enhanced) = match e {
        SubmissionRefusal::FromNotAllowed { .. }
        | SubmissionRefusal::SenderNotAllowed { .. }
        | SubmissionRefusal::NoFrom(_) => (550, "5.7.1"),
        // RFC 3463 X.6.0: other or undefined media (content) error.
        SubmissionRefusal::DuplicateHeader(_) => (554, "5.6.0"),
        SubmissionRefusal::HeaderOnlyRecipient(_) => (554, "5.5.4"),
        SubmissionRefusal::HeaderTooLarge => (552, "5.3.4"),
    };
    SubmitOutcome::Rejected {
        code,
        enhanced: enhanced.into(),
        text: e.to_string(),
    }
}

/// Where spool files live under the data directory.
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool")
}
