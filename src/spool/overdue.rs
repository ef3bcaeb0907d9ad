//! The "queued for hours" alert: a message still waiting for delivery
//! `alerts.queued_after_s` after it was accepted is reported once (per
//! gateway run) to `alerts.webhook_url` as `message_queued`, with its
//! queue id, recipients, age and the last error, so an admin hears of a
//! stuck queue before the sender hears of a bounce.

use std::collections::HashSet;
use std::time::Duration;

use crate::store::{SpoolId, SpoolState, Store, now_unix};

/// Messages already reported (by this process) and the last look.
#[derive(Debug, Default)]
pub(super) struct Overdue {
    reported: HashSet<SpoolId>,
    last_look: Option<std::time::Instant>,
}

impl Overdue {
    /// Report every queued or sending message older than `after` not
    /// reported yet; looks at most once a second.
    pub(super) fn check(&mut self, store: &Store, after: Duration) {
        if self
            .last_look
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_look = Some(std::time::Instant::now());
        let now = now_unix();
        let cutoff = now - i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
        let mut waiting = Vec::new();
        for state in [SpoolState::Queued, SpoolState::Sending] {
            match store.spool_list(Some(state), None) {
                Ok(list) => waiting.extend(list),
                Err(e) => tracing::warn!(error = %e, "spool: cannot read the queue for alerts"),
            }
        }
        // Forget what is delivered or bounced meanwhile.
        self.reported
            .retain(|id| waiting.iter().any(|e| e.id == *id));
        for entry in waiting {
            if entry.accepted_at > cutoff || !self.reported.insert(entry.id) {
                continue;
            }
            let account = store
                .account_by_id(entry.account)
                .ok()
                .flatten()
                .map_or_else(|| format!("#{}", entry.account.0), |a| a.login);
            let minutes = (now - entry.accepted_at).max(0) / 60;
            let text = format!(
                "message {} from {} to {} has waited {} min for delivery ({} attempt(s)); last \
                 error: {}",
                entry.id.0,
                entry.mail_from,
                entry.rcpt_to.join(", "),
                minutes,
                entry.attempts,
                entry.last_error.as_deref().unwrap_or("none yet")
            );
            tracing::warn!(queue_id = entry.id.0, "{text}");
            crate::alerts::emit(crate::alerts::Alert {
                event: "message_queued",
                fix: format!(
                    "graphgate queue show {} (then fix what the last error names; graphgate \
                     status shows the account's state), and graphgate queue retry {}",
                    entry.id.0, entry.id.0
                ),
                account,
                text,
                queue_id: Some(entry.id.0),
            });
        }
    }
}
