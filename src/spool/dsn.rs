//! Bounces: an RFC 3464 delivery status notification, placed in the
//! sender's Inbox through Graph (graphgate has no other way to reach the
//! sender: it submits only to Microsoft 365).

use bytes::Bytes;

use super::{Outcome, Spool};
use crate::graph::{AppendOptions, WellKnownFolder};
use crate::store::{DeliveryMethod, SpoolEntry, SpoolId, SpoolState, SpoolUpdate};

/// The DSN for `entry`, refused with `outcome`; `headers` is the original
/// header block (RFC 3462 `text/rfc822-headers`).
pub fn build_dsn(entry: &SpoolEntry, outcome: &Outcome, headers: &[u8], date: &str) -> Vec<u8> {
    let (status, diagnostic) = match outcome {
        Outcome::Failed {
            code,
            enhanced,
            text,
        } => {
            // A temporary code that ran out of time becomes final.
            let status = match enhanced.strip_prefix('4') {
                Some(rest) => format!("5{rest}"),
                None => enhanced.clone(),
            };
            (status, format!("{code} {text}"))
        }
        other => ("5.0.0".to_string(), other.text()),
    };
    let boundary = format!("graphgate-dsn-{}", uuid::Uuid::new_v4().simple());
    let subject = "Undeliverable: your message was not sent";
    let original_subject = mail_parser::MessageParser::default()
        .parse_headers(headers)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    let mut human = String::new();
    human.push_str(&format!(
        "graphgate could not hand your message \"{}\" to Microsoft 365, so it was not \
         delivered to:\r\n\r\n",
        original_subject.replace(['\r', '\n'], " ")
    ));
    for r in &entry.rcpt_to {
        human.push_str(&format!("    {r}\r\n"));
    }
    human.push_str(&format!(
        "\r\nReason: {}\r\n\r\nQueue id {} (see `graphgate queue show {}`).\r\n",
        diagnostic.replace(['\r', '\n'], " "),
        entry.id.0,
        entry.id.0
    ));
    let mut status_part = format!(
        "Reporting-MTA: dns; graphgate\r\nX-Graphgate-Queue-ID: {}\r\n",
        entry.id.0
    );
    if let Some(mid) = &entry.message_id {
        status_part.push_str(&format!("X-Original-Message-ID: <{mid}>\r\n"));
    }
    for r in &entry.rcpt_to {
        status_part.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {}\r\n",
            diagnostic.replace(['\r', '\n'], " ")
        ));
    }
    let headers = String::from_utf8_lossy(headers);
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery System <{sender}>\r\nTo: <{sender}>\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <dsn-{id}@graphgate>\r\nAuto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{human}\r\n\
         --{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{status_part}\r\n\
         --{boundary}\r\nContent-Type: text/rfc822-headers; charset=utf-8\r\n\r\n{headers}\r\n\
         --{boundary}--\r\n",
        sender = entry.mail_from,
        id = uuid::Uuid::new_v4().simple(),
    ));
    out.into_bytes()
}

impl Spool {
    /// A permanent failure after the client got its 250: mark the entry
    /// bounced and tell the sender with a DSN in their Inbox (none for a
    /// null sender, RFC 5321 §4.5.5). The DSN is retried like a message
    /// until it is placed.
    pub(crate) async fn bounce(&self, id: SpoolId, outcome: &Outcome) {
        let Ok(Some(entry)) = self.store.spool_entry(id) else {
            return;
        };
        let text = outcome.text();
        let null_sender = entry.mail_from.is_empty();
        let changed = self.store.spool_update(
            id,
            SpoolState::Sending,
            &SpoolUpdate {
                state: Some(SpoolState::Bounced),
                last_error: Some(&text),
                method: Some(Some(if null_sender {
                    DeliveryMethod::DsnPlaced
                } else {
                    DeliveryMethod::DsnPending
                })),
                next_attempt_at: Some(crate::store::now_unix()),
                ..Default::default()
            },
        );
        if !matches!(changed, Ok(true)) {
            return;
        }
        crate::metrics::get().spool_bounced.inc();
        tracing::error!(queue_id = id.0, "message bounced: {text}");
        let account = self
            .store
            .account_by_id(entry.account)
            .ok()
            .flatten()
            .map_or_else(|| format!("#{}", entry.account.0), |a| a.login);
        crate::alerts::emit(crate::alerts::Alert {
            event: "message_bounced",
            fix: format!(
                "graphgate queue show {} (the sender got a bounce notice)",
                id.0
            ),
            account,
            text: text.clone(),
            queue_id: Some(id.0),
        });
        if null_sender {
            self.remove_file(id).await;
            return;
        }
        if let Ok(Some(entry)) = self.store.spool_entry(id) {
            self.place_dsn(entry).await;
        }
    }

    /// Put the DSN of a bounced entry into the sender's Inbox; on failure,
    /// try again later.
    pub(crate) async fn place_dsn(&self, entry: SpoolEntry) {
        let head = self.message_head(&entry, None).await;
        let head_len = crate::mime::submission::header_block_len(&head).unwrap_or(head.len());
        let date = chrono::Utc::now().to_rfc2822();
        let reason = Outcome::Failed {
            code: 554,
            enhanced: "5.0.0".into(),
            text: entry.last_error.clone().unwrap_or_default(),
        };
        let dsn = build_dsn(&entry, &reason, &head[..head_len], &date);
        let placed = match self.accounts.get(entry.account) {
            Ok(rt) => rt
                .mailbox
                .append_message(
                    &WellKnownFolder::Inbox.id(),
                    Bytes::from(dsn),
                    &AppendOptions::default(),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match placed {
            Ok(()) => {
                let _ = self.store.spool_update(
                    entry.id,
                    SpoolState::Bounced,
                    &SpoolUpdate {
                        method: Some(Some(DeliveryMethod::DsnPlaced)),
                        ..Default::default()
                    },
                );
                tracing::info!(
                    queue_id = entry.id.0,
                    "bounce notice placed in the sender's Inbox"
                );
                self.remove_file(entry.id).await;
            }
            Err(e) => {
                let delay = self
                    .config
                    .retry_base
                    .max(std::time::Duration::from_secs(1))
                    * 4;
                let _ = self.store.spool_update(
                    entry.id,
                    SpoolState::Bounced,
                    &SpoolUpdate {
                        next_attempt_at: Some(crate::store::now_unix() + delay.as_secs() as i64),
                        ..Default::default()
                    },
                );
                tracing::warn!(
                    queue_id = entry.id.0,
                    "the bounce notice could not be placed in the sender's Inbox yet: {e}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountId;

    #[test]
    fn dsn_is_a_delivery_status_report() {
        let entry = SpoolEntry {
            id: SpoolId(7),
            account: AccountId(1),
            state: SpoolState::Sending,
            mail_from: "alice@example.com".into(),
            rcpt_to: vec!["nobody@example.com".into()],
            path: String::new(),
            inline: false,
            size: 0,
            message_id: Some("m@x".into()),
            attempts: 3,
            next_attempt_at: 0,
            last_error: None,
            accepted_at: 0,
            method: None,
            draft_id: None,
            prefix: String::new(),
            sending_since: None,
            delivered_at: None,
        };
        let dsn = build_dsn(
            &entry,
            &Outcome::Failed {
                code: 451,
                enhanced: "4.4.7".into(),
                text: "timed out".into(),
            },
            b"Subject: hi\r\n\r\n",
            "Sun, 22 Nov 2026 10:00:00 +0000",
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; nobody@example.com"));
        assert!(text.contains("Status: 5.4.7"));
        assert!(text.contains("Subject: hi"));
        let parsed = mail_parser::MessageParser::default()
            .parse(text.as_bytes())
            .unwrap();
        assert_eq!(parsed.parts.len(), 4);
    }
}
