//! One delivery attempt, and the resolution of an attempt in doubt (the
//! state machine of the module documentation in `spool/mod.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Spool, crash_point, evidence};
use crate::account::AccountRuntime;
use crate::graph::send::MAX_DIRECT_MIME;
use crate::graph::{
    GraphError, GraphErrorKind, GraphMailbox, Mailbox, OutgoingAttachment, RemoteMessageId,
    WellKnownFolder,
};
use crate::mime::split::attachment_reader;
use crate::mime::submission::{header_block_len, header_facts};
use crate::store::{
    Account, AuthProfile, DeliveryMethod, SpoolEntry, SpoolId, SpoolState, SpoolUpdate, now_unix,
};

mod route;

use route::{Route, Source, is_size_refusal};

/// How a message of `size` bytes (plus `prefix_len` added) is sent from
/// `account`: `sendMail` when it fits one request and the account keeps a
/// Sent Items copy (the copy is the evidence when in doubt), else a draft.
pub(super) fn method_for(account: &Account, size: u64, prefix_len: usize) -> DeliveryMethod {
    if is_large(size, prefix_len) || !account.save_to_sent_items {
        DeliveryMethod::Draft
    } else {
        DeliveryMethod::SendMail
    }
}

fn is_large(size: u64, prefix_len: usize) -> bool {
    size as usize + prefix_len > MAX_DIRECT_MIME
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Still in the spool: retried later, or resolved when in doubt.
    Deferred(String),
    /// Refused for good.
    Failed {
        code: u16,
        enhanced: String,
        text: String,
    },
}

impl Outcome {
    pub fn text(&self) -> String {
        match self {
            Outcome::Delivered => "delivered".into(),
            Outcome::Deferred(t) => t.clone(),
            Outcome::Failed {
                code,
                enhanced,
                text,
            } => format!("{code} {enhanced} {text}"),
        }
    }
}

/// What a Graph error means for a send.
enum Class {
    /// Nothing was sent (Graph said so: 429, 503, or no request left).
    NotSent(String),
    /// The request may have been carried out (answer lost, 500/502/504).
    InDoubt(String),
    /// Refused for good.
    Permanent(Outcome),
}

fn classify(account: &Account, e: &GraphError) -> Class {
    match e {
        GraphError::Auth(_) => Class::NotSent(e.to_string()),
        GraphError::Transport(t) => Class::InDoubt(format!("connection to Graph failed: {t}")),
        // Refused before anything was sent: retried, never in doubt.
        GraphError::Unreachable(_) => Class::NotSent(e.to_string()),
        GraphError::Malformed(t) => Class::InDoubt(format!("unreadable answer: {t}")),
        GraphError::Api(api) => match api.status {
            429 | 503 => Class::NotSent(e.to_string()),
            500 | 502 | 504 => Class::InDoubt(e.to_string()),
            _ => Class::Permanent(failure(account, e)),
        },
        GraphError::TooLarge(t) => Class::Permanent(Outcome::Failed {
            code: 552,
            enhanced: "5.3.4".into(),
            text: format!("the message is too large for Microsoft Graph: {t}"),
        }),
        GraphError::DeltaReset | GraphError::Invalid(_) => Class::Permanent(failure(account, e)),
    }
}

/// The SMTP reply for Graph's refusal, in words.
fn failure(account: &Account, e: &GraphError) -> Outcome {
    let code = e.code().unwrap_or("error").to_string();
    let (smtp, enhanced, text) = match e.kind() {
        Some(GraphErrorKind::SendAsDenied) => (
            554,
            "5.7.1",
            format!(
                "Graph refused: {code} — {} may not send as this From address; grant Send As \
                 on it in the Exchange admin center (and Mail.Send.Shared for delegated sign-ins)",
                account.mailbox
            ),
        ),
        Some(GraphErrorKind::InvalidRecipients) => (
            550,
            "5.1.1",
            format!("Graph refused: {code} — {}", e.remedy()),
        ),
        Some(GraphErrorKind::MessageSizeExceeded) => (
            552,
            "5.3.4",
            format!("Graph refused: {code} — {}", e.remedy()),
        ),
        Some(GraphErrorKind::QuotaExceeded) => (
            552,
            "5.2.2",
            format!("Graph refused: {code} — {}", e.remedy()),
        ),
        Some(GraphErrorKind::AccessDenied) => (
            554,
            "5.7.1",
            format!("Graph refused: {code} — {}", e.remedy()),
        ),
        _ => (
            554,
            "5.0.0",
            format!("Graph refused: {code} — {}", e.remedy()),
        ),
    };
    Outcome::Failed {
        code: smtp,
        enhanced: enhanced.into(),
        text,
    }
}

fn is_not_found(e: &GraphError) -> bool {
    e.status() == Some(404) || e.kind() == Some(GraphErrorKind::NotFound)
}

impl Spool {
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        (self.config.retry_base * factor).min(self.config.retry_max)
    }

    fn update(&self, id: SpoolId, from: SpoolState, update: SpoolUpdate<'_>) -> bool {
        match self.store.spool_update(id, from, &update) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::error!(spool_id = id.0, error = %e, "spool: cannot record a transition");
                false
            }
        }
    }

    fn delivered(&self, entry: &SpoolEntry) -> Outcome {
        if self.update(
            entry.id,
            SpoolState::Sending,
            SpoolUpdate {
                state: Some(SpoolState::Delivered),
                // Bytes in the row (cleared by this update): should a power
                // cut undo the update, the row is `sending` again with its
                // bytes, and the resolver finds it sent — so this commit
                // need not wait for the disk. A file, once removed below,
                // would be gone for good: that one waits.
                lazy: entry.inline,
                ..Default::default()
            },
        ) {
            crate::metrics::get().spool_delivered.inc();
            // What an admin asked "did it go out?" looks for: who to, and
            // the Message-ID the recipient's copy carries.
            tracing::info!(
                queue_id = entry.id.0,
                from = %entry.mail_from,
                recipients = %entry.rcpt_to.join(", "),
                message_id = %entry.message_id.as_deref().unwrap_or(""),
                "message delivered to Microsoft Graph"
            );
            if !entry.path.is_empty() {
                let _ = std::fs::remove_file(&entry.path);
            }
        }
        Outcome::Delivered
    }

    /// Nothing was sent: back to the queue with backoff, or — past
    /// `bounce_after` — a permanent failure.
    fn not_sent(&self, entry: &SpoolEntry, why: String) -> Outcome {
        let age = now_unix() - entry.accepted_at;
        if age >= self.config.bounce_after.as_secs() as i64 {
            return Outcome::Failed {
                code: 451,
                enhanced: "4.4.7".into(),
                text: format!(
                    "could not be delivered for {} hours; the last error was: {why}",
                    age / 3600
                ),
            };
        }
        let delay = self.backoff(entry.attempts.max(1));
        self.update(
            entry.id,
            SpoolState::Sending,
            SpoolUpdate {
                state: Some(SpoolState::Queued),
                last_error: Some(&why),
                next_attempt_at: Some(now_unix() + delay.as_secs() as i64),
                ..Default::default()
            },
        );
        crate::metrics::get().spool_retries.inc();
        tracing::warn!(
            queue_id = entry.id.0,
            retry_in_s = delay.as_secs(),
            "delivery deferred: {why}"
        );
        Outcome::Deferred(why)
    }

    /// The answer was lost: leave it `sending` for the resolver.
    fn in_doubt(&self, entry: &SpoolEntry, why: String) -> Outcome {
        let later = now_unix() + 5;
        self.update(
            entry.id,
            SpoolState::Sending,
            SpoolUpdate {
                last_error: Some(&why),
                next_attempt_at: Some(later),
                ..Default::default()
            },
        );
        tracing::warn!(
            queue_id = entry.id.0,
            "delivery in doubt, will check before any retry: {why}"
        );
        Outcome::Deferred(why)
    }

    fn runtime(&self, entry: &SpoolEntry) -> Result<(Account, Arc<AccountRuntime>), String> {
        let account = self
            .store
            .account_by_id(entry.account)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("account #{} no longer exists", entry.account.0))?;
        let rt = self.accounts.get(account.id)?;
        Ok((account, rt))
    }

    fn on_error(
        &self,
        entry: &SpoolEntry,
        account: &Account,
        e: &GraphError,
    ) -> Result<(), Outcome> {
        if let GraphError::Auth(auth) = e {
            let text = self.accounts.auth_failed(account.id, &account.login, auth);
            return Err(self.not_sent(entry, text));
        }
        Ok(())
    }

    /// The mailbox a message is sent from: the account's own — or, for an
    /// app-only account whose message is From another mailbox it may use
    /// (its configured aliases), that mailbox (`/users/{from}`), where the
    /// application permission applies and where its Sent Items copy lands.
    async fn sending_mailbox(
        &self,
        entry: &SpoolEntry,
        account: &Account,
        rt: &AccountRuntime,
        body: Option<&Bytes>,
    ) -> GraphMailbox {
        if account.auth_profile != AuthProfile::AppOnly {
            return rt.mailbox.clone();
        }
        let head = self.message_head(entry, body).await;
        let len = header_block_len(&head).unwrap_or(head.len());
        let mut from = header_facts(&head[..len]).from;
        if from.is_empty() && !entry.prefix.is_empty() {
            // graphgate supplied the From line itself.
            from = header_facts(entry.prefix.as_bytes()).from;
        }
        match from.first() {
            Some(address)
                if !address.eq_ignore_ascii_case(&account.mailbox)
                    && account
                        .aliases
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(address)) =>
            {
                self.accounts
                    .graph()
                    .mailbox(Mailbox::User(address.clone()), rt.tokens.clone())
            }
            _ => rt.mailbox.clone(),
        }
    }

    /// Claim a queued entry and send it.
    pub(crate) async fn attempt(&self, entry: SpoolEntry) -> Outcome {
        let Ok(Some(account)) = self.store.account_by_id(entry.account) else {
            return Outcome::Failed {
                code: 550,
                enhanced: "5.7.1".into(),
                text: "the sending account no longer exists".into(),
            };
        };
        let method = method_for(&account, entry.size, entry.prefix.len());
        if !self.update(
            entry.id,
            SpoolState::Queued,
            SpoolUpdate {
                state: Some(SpoolState::Sending),
                method: Some(Some(method)),
                draft_id: Some(None),
                next_attempt_at: Some(now_unix()),
                start_attempt: true,
                ..Default::default()
            },
        ) {
            return Outcome::Deferred("taken by another worker or dropped".into());
        }
        let Ok(Some(entry)) = self.store.spool_entry(entry.id) else {
            return Outcome::Deferred("the entry vanished".into());
        };
        self.send_claimed(entry, account, None).await
    }

    /// Send an entry whose claim (`sending`, its method) is committed.
    /// `body`: the message's bytes when the caller has them at hand.
    pub(crate) async fn send_claimed(
        &self,
        entry: SpoolEntry,
        account: Account,
        body: Option<Bytes>,
    ) -> Outcome {
        let mailbox = match self.accounts.get(account.id) {
            Ok(rt) => {
                self.sending_mailbox(&entry, &account, &rt, body.as_ref())
                    .await
            }
            Err(why) => return self.not_sent(&entry, why),
        };
        if entry.method == Some(DeliveryMethod::SendMail) {
            self.send_mail(&entry, &account, &mailbox, body).await
        } else {
            let route = if is_large(entry.size, entry.prefix.len()) {
                Route::LargeFile
            } else {
                Route::Whole
            };
            self.send_via_draft(&entry, &account, &mailbox, route, body)
                .await
        }
    }

    async fn send_mail(
        &self,
        entry: &SpoolEntry,
        account: &Account,
        mailbox: &GraphMailbox,
        body: Option<Bytes>,
    ) -> Outcome {
        let mime = match self.message_mime(entry, body).await {
            Ok(mime) => Bytes::from(mime),
            Err(why) => return self.not_sent(entry, why),
        };
        crash_point("before-send");
        match mailbox.send_mime(mime.clone(), true).await {
            Ok(()) => {
                crash_point("after-send");
                self.delivered(entry)
            }
            Err(e) if is_size_refusal(&e) => {
                // Nothing was sent. The draft route is recorded before its
                // draft exists, so an interruption from here on is resolved
                // as a draft attempt (orphan drafts looked for, then sent
                // again), never by waiting for a sendMail copy.
                tracing::info!(
                    queue_id = entry.id.0,
                    bytes = mime.len(),
                    "sendMail refused the message for its size ({e}); sending it through a draft"
                );
                if !self.update(
                    entry.id,
                    SpoolState::Sending,
                    SpoolUpdate {
                        method: Some(Some(DeliveryMethod::Draft)),
                        draft_id: Some(None),
                        ..Default::default()
                    },
                ) {
                    return Outcome::Deferred("taken by another worker or dropped".into());
                }
                self.send_via_draft(entry, account, mailbox, Route::Refused(mime), None)
                    .await
            }
            Err(e) => {
                if let Err(outcome) = self.on_error(entry, account, &e) {
                    return outcome;
                }
                match classify(account, &e) {
                    Class::NotSent(why) => self.not_sent(entry, why),
                    Class::InDoubt(why) => self.in_doubt(entry, why),
                    Class::Permanent(o) => o,
                }
            }
        }
    }

    async fn send_via_draft(
        &self,
        entry: &SpoolEntry,
        account: &Account,
        mailbox: &GraphMailbox,
        mut route: Route,
        mut body: Option<Bytes>,
    ) -> Outcome {
        let (draft, attachments, source) = loop {
            let (draft_mime, attachments, source, whole) =
                match self.draft_plan(entry, route, body.take()).await {
                    Ok(plan) => plan,
                    Err(outcome) => return outcome,
                };
            match mailbox
                .create_draft_from_mime(Bytes::from(draft_mime))
                .await
            {
                Ok(d) => {
                    crash_point("draft-created");
                    break (d.id, attachments, source);
                }
                Err(e) => {
                    if let Some(whole) = whole.filter(|_| is_size_refusal(&e)) {
                        // Nothing was created: again, attachments apart.
                        tracing::info!(
                            queue_id = entry.id.0,
                            bytes = whole.len(),
                            "the draft was refused for its size ({e}); splitting its attachments off"
                        );
                        route = Route::Refused(whole);
                        continue;
                    }
                    if let Err(outcome) = self.on_error(entry, account, &e) {
                        return outcome;
                    }
                    return match classify(account, &e) {
                        Class::NotSent(why) => self.not_sent(entry, why),
                        Class::InDoubt(why) => self.in_doubt(entry, why),
                        Class::Permanent(o) => o,
                    };
                }
            }
        };
        self.update(
            entry.id,
            SpoolState::Sending,
            SpoolUpdate {
                draft_id: Some(Some(draft.as_str())),
                ..Default::default()
            },
        );
        crash_point("after-draft");
        let prepared = async {
            for part in &attachments {
                let content = match &source {
                    Source::File(path) => attachment_reader(path, part).await.map_err(|e| {
                        GraphError::Invalid(format!("cannot read the spool file: {e}"))
                    })?,
                    Source::Memory(mime) => crate::graph::append::part_reader(mime.clone(), part),
                };
                mailbox
                    .add_attachment_impl(
                        &draft,
                        OutgoingAttachment {
                            name: part.name.clone(),
                            content_type: part.content_type.clone(),
                            size: part.decoded_size,
                            content_id: part.content_id.clone(),
                            is_inline: part.is_inline,
                            content,
                        },
                    )
                    .await?;
            }
            if !account.save_to_sent_items {
                mailbox.set_delete_after_submit(&draft).await?;
            }
            Ok::<_, GraphError>(())
        }
        .await;
        if let Err(e) = prepared {
            // Nothing was sent: the incomplete draft goes.
            let _ = mailbox.permanent_delete(&draft).await;
            self.update(
                entry.id,
                SpoolState::Sending,
                SpoolUpdate {
                    draft_id: Some(None),
                    ..Default::default()
                },
            );
            if let Err(outcome) = self.on_error(entry, account, &e) {
                return outcome;
            }
            if is_not_found(&e) {
                // The draft vanished under the attachments: nothing was
                // sent, and the message is fine — a new draft next time.
                return self.not_sent(entry, format!("the draft disappeared: {e}"));
            }
            return match classify(account, &e) {
                Class::NotSent(why) | Class::InDoubt(why) => self.not_sent(entry, why),
                Class::Permanent(o) => o,
            };
        }
        self.update(
            entry.id,
            SpoolState::Sending,
            SpoolUpdate {
                method: Some(Some(DeliveryMethod::DraftReady)),
                ..Default::default()
            },
        );
        self.send_draft(entry, account, mailbox, &draft, true).await
    }

    /// Send the complete draft of `entry`; `first`: no request to send it
    /// was made before (else the resolver found it still a draft).
    async fn send_draft(
        &self,
        entry: &SpoolEntry,
        account: &Account,
        mailbox: &GraphMailbox,
        draft: &RemoteMessageId,
        first: bool,
    ) -> Outcome {
        crash_point("before-send");
        match mailbox.send_draft(draft).await {
            Ok(()) => {
                crash_point("after-send");
                self.delivered(entry)
            }
            Err(e) => {
                if let Err(outcome) = self.on_error(entry, account, &e) {
                    // The draft stays, ready: the resolver sends it once the
                    // account is back.
                    let _ = outcome;
                    return self.in_doubt(entry, e.to_string());
                }
                if is_not_found(&e) {
                    // The draft is not there to send — not a refusal of
                    // the message. Before any send request it was deleted:
                    // nothing went, it goes again. After one whose answer
                    // was lost, that send may have taken it: the resolver
                    // looks at the draft again.
                    let why = format!("the draft to send is gone: {e}");
                    return if first {
                        self.not_sent(entry, why)
                    } else {
                        self.in_doubt(entry, why)
                    };
                }
                match classify(account, &e) {
                    // A complete draft that was not sent: the resolver sends
                    // it again later.
                    Class::NotSent(why) | Class::InDoubt(why) => self.in_doubt(entry, why),
                    Class::Permanent(o) => {
                        let _ = mailbox.permanent_delete(draft).await;
                        o
                    }
                }
            }
        }
    }

    /// An entry in `sending` that no task of this process works on: find
    /// out whether Graph sent it before doing anything else.
    pub(crate) async fn resolve(&self, entry: SpoolEntry) -> Outcome {
        let (account, mailbox) = match self.runtime(&entry) {
            Ok((account, rt)) => {
                let mailbox = self.sending_mailbox(&entry, &account, &rt, None).await;
                (account, mailbox)
            }
            Err(why) => {
                let later = now_unix() + self.backoff(entry.attempts.max(1)).as_secs() as i64;
                self.update(
                    entry.id,
                    SpoolState::Sending,
                    SpoolUpdate {
                        last_error: Some(&why),
                        next_attempt_at: Some(later),
                        ..Default::default()
                    },
                );
                return Outcome::Deferred(why);
            }
        };
        let requeue = |why: &str| {
            self.update(
                entry.id,
                SpoolState::Sending,
                SpoolUpdate {
                    state: Some(SpoolState::Queued),
                    last_error: Some(why),
                    next_attempt_at: Some(now_unix()),
                    method: Some(None),
                    draft_id: Some(None),
                    ..Default::default()
                },
            );
            self.wake();
            Outcome::Deferred(why.to_string())
        };
        let look_later = |why: String, at: i64| {
            self.update(
                entry.id,
                SpoolState::Sending,
                SpoolUpdate {
                    next_attempt_at: Some(at),
                    ..Default::default()
                },
            );
            Outcome::Deferred(why)
        };
        // Graph spells internetMessageId with its angle brackets.
        let message_id = format!("<{}>", entry.message_id.as_deref().unwrap_or_default());
        // The evidence of *this* submission (see `evidence`): a copy with
        // the Message-ID alone may be another submission's. An entry
        // spooled before the header existed has none: nothing can prove
        // it sent, so after the grace period it is sent again (at worst a
        // duplicate, never a loss).
        let submission = evidence::submission_of(&entry.prefix).map(str::to_owned);
        let own = |folder: WellKnownFolder| {
            let (mailbox, message_id, submission) = (&mailbox, &message_id, &submission);
            async move {
                match submission {
                    Some(s) => evidence::find_own(mailbox, &folder.id(), message_id, s).await,
                    None => Ok(Vec::new()),
                }
            }
        };
        match (entry.method, entry.draft_id.as_deref()) {
            (Some(DeliveryMethod::SendMail), _) => match own(WellKnownFolder::SentItems).await {
                Ok(found) if !found.is_empty() => {
                    tracing::info!(
                        queue_id = entry.id.0,
                        "in-doubt message found in Sent Items with its submission id: it was sent"
                    );
                    self.delivered(&entry)
                }
                Ok(_) => {
                    let since = entry.sending_since.unwrap_or(entry.accepted_at);
                    let grace_end = since + self.config.in_doubt_grace.as_secs() as i64;
                    if now_unix() >= grace_end {
                        requeue("not in Sent Items after the grace period: it was not sent")
                    } else {
                        look_later("waiting for Sent Items".into(), grace_end)
                    }
                }
                Err(e) => {
                    if let GraphError::Auth(a) = &e {
                        self.accounts.auth_failed(account.id, &account.login, a);
                    }
                    look_later(e.to_string(), now_unix() + 30)
                }
            },
            (Some(method), None) if method.is_draft() => {
                // The draft may exist without its id on record: remove it —
                // only a draft carrying this entry's submission id. Drafts
                // with the same Message-ID may belong to a client's retry
                // of the message (another entry, working on its own).
                match own(WellKnownFolder::Drafts).await {
                    Ok(orphans) => {
                        for o in orphans.iter().filter(|m| m.is_draft) {
                            let _ = mailbox.permanent_delete(&o.id).await;
                        }
                        requeue("an attempt was interrupted before its draft was recorded")
                    }
                    Err(e) => look_later(e.to_string(), now_unix() + 30),
                }
            }
            (Some(method), Some(draft)) => {
                let draft = RemoteMessageId::new(draft);
                match mailbox.get_message(&draft).await {
                    // An incomplete draft is never sent: gone, it was
                    // deleted (by someone else), so the message goes again.
                    Err(e) if is_not_found(&e) && method == DeliveryMethod::Draft => {
                        requeue("the incomplete draft of an interrupted attempt is gone")
                    }
                    // A complete one gone: sent with PR_DELETE_AFTER_SUBMIT
                    // (no copy) — no other entry deletes a draft it does
                    // not own.
                    Err(e) if is_not_found(&e) => self.delivered(&entry),
                    Ok(m) if !m.is_draft => self.delivered(&entry),
                    Ok(_) if method == DeliveryMethod::DraftReady => {
                        self.send_draft(&entry, &account, &mailbox, &draft, false)
                            .await
                    }
                    Ok(_) => {
                        let _ = mailbox.permanent_delete(&draft).await;
                        requeue("an attempt was interrupted while adding attachments")
                    }
                    Err(e) => {
                        if let GraphError::Auth(a) = &e {
                            self.accounts.auth_failed(account.id, &account.login, a);
                        }
                        look_later(e.to_string(), now_unix() + 30)
                    }
                }
            }
            _ => requeue("an attempt was interrupted before it began"),
        }
    }
}
