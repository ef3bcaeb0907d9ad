//! Alerts by mail (`alerts.mail_to`): each alert also becomes a short
//! text message from `alerts.mail_from_account` to the admin, handed to
//! the spool like any submission (durable, retried, sent through Graph).
//! Alerts about the sending account itself go to the webhook only: its
//! own mail may be what fails, and a bounce of an alert mail must not
//! start another.

use std::sync::Arc;

use crate::config::Config;
use crate::spool::Spool;
use crate::spool::submit::{Authenticated, Envelope, SpooledBody, SpooledMessage};
use crate::store::Store;

/// Mail alerts as the configuration says (nothing when `alerts.mail_to`
/// is empty); a half-set pair or an unknown account is an error naming
/// the key.
pub fn install(config: &Config, store: &Store, spool: &Arc<Spool>) -> anyhow::Result<()> {
    let to = config.alerts.mail_to.trim().to_string();
    let from = config.alerts.mail_from_account.trim().to_string();
    if to.is_empty() {
        return Ok(());
    }
    if from.is_empty() || !to.contains('@') {
        anyhow::bail!(
            "alerts.mail_to = {to:?} needs a full address and alerts.mail_from_account set to \
             the local account that sends it (graphgate accounts list)"
        );
    }
    if store.account(&from)?.is_none() {
        anyhow::bail!(
            "alerts.mail_from_account = {from:?} is not a local account: add it (graphgate \
             accounts add) or fix the setting"
        );
    }
    let store = store.clone();
    let spool = spool.clone();
    crate::alerts::set_mailer(Box::new(move |alert| {
        if alert.account.eq_ignore_ascii_case(&from) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let account = match store.account(&from) {
            Ok(Some(account)) => account,
            other => {
                tracing::warn!(
                    "alerts.mail_from_account {from} cannot send the alert mail ({}); fix the \
                     setting",
                    other.map_or_else(|e| e.to_string(), |_| "no such account".into())
                );
                return;
            }
        };
        let (subject, body) = crate::alerts::as_mail(alert);
        let text = format!(
            "From: graphgate <{mailbox}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\n\
             Message-ID: <alert-{id}@graphgate>\r\nAuto-Submitted: auto-generated\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{body}",
            mailbox = account.mailbox,
            date = chrono::Utc::now().to_rfc2822(),
            id = uuid::Uuid::new_v4().simple(),
        );
        let mut allowed = vec![account.mailbox.clone()];
        allowed.extend(account.aliases.iter().cloned());
        let message = SpooledMessage {
            account: Authenticated {
                login: account.login.clone(),
                allowed_senders: allowed,
            },
            envelope: Envelope {
                mail_from: account.mailbox.clone(),
                rcpt_to: vec![to.clone()],
                eight_bit: true,
                smtputf8: false,
                rewrite: None,
            },
            size: text.len() as u64,
            body: SpooledBody::Inline(text.into_bytes().into()),
        };
        let spool = spool.clone();
        let event = alert.event;
        runtime.spawn(async move {
            match spool.enqueue(message).await {
                Ok(entry) => {
                    spool.wake();
                    tracing::info!(
                        queue_id = entry.id.0,
                        event,
                        "alert mail queued (alerts.mail_to)"
                    );
                }
                Err(refusal) => {
                    tracing::warn!(
                        ?refusal,
                        event,
                        "alerts.mail_to: the alert mail was refused"
                    )
                }
            }
        });
    }));
    Ok(())
}
