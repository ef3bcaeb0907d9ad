//! The SMTP spool for an admin: list, show, retry, drop (`graphgate
//! queue`, the console's Queue page).
//!
//! Every change is a compare-and-set on the spool row, so a command racing
//! the delivery worker never undoes a delivery; a message that may be on
//! its way to Microsoft 365 (`sending`) is never dropped.

use super::OpsError;
use crate::store::{SpoolEntry, SpoolId, SpoolState, SpoolUpdate, Store, now_unix};

/// Whether `state` is still waiting for delivery.
pub fn is_waiting(state: SpoolState) -> bool {
    matches!(state, SpoolState::Queued | SpoolState::Sending)
}

/// The messages waiting (with `all`: every message the spool remembers).
pub fn list(store: &Store, all: bool) -> Result<Vec<SpoolEntry>, OpsError> {
    Ok(store
        .spool_list(None, None)?
        .into_iter()
        .filter(|e| all || is_waiting(e.state))
        .collect())
}

/// How many messages wait, and the oldest one's age in seconds.
pub fn waiting_summary(store: &Store) -> Result<(usize, Option<i64>), OpsError> {
    let now = now_unix();
    let waiting = list(store, false)?;
    let oldest = waiting.iter().map(|e| now - e.accepted_at).max();
    Ok((waiting.len(), oldest))
}

/// One message, or a refusal naming the command that lists them.
pub fn entry(store: &Store, id: i64) -> Result<SpoolEntry, OpsError> {
    store.spool_entry(SpoolId(id))?.ok_or_else(|| {
        OpsError::refused(format!(
            "no message {id} in the spool; `graphgate queue list --all` lists them"
        ))
    })
}

/// Make message `id` (`None`: every queued message) due now. Returns how
/// many were moved.
pub fn retry(store: &Store, id: Option<i64>) -> Result<usize, OpsError> {
    let targets: Vec<SpoolEntry> = match id {
        Some(id) => vec![entry(store, id)?],
        None => store.spool_list(Some(SpoolState::Queued), None)?,
    };
    let now = now_unix();
    let mut moved = 0;
    for e in &targets {
        if !is_waiting(e.state) {
            return Err(OpsError::refused(format!(
                "message {} is {}: only waiting messages can be retried (its file is gone once \
                 it is delivered, bounced, rejected or dropped)",
                e.id.0,
                e.state.as_str()
            )));
        }
        if store.spool_update(
            e.id,
            e.state,
            &SpoolUpdate {
                next_attempt_at: Some(now),
                ..Default::default()
            },
        )? {
            moved += 1;
        }
    }
    Ok(moved)
}

/// Give up on queued message `id`: not delivered, no bounce. Refused while
/// a send of it may be in flight (`sending`), and when a send began since
/// it was read (compare-and-set).
pub fn drop_message(store: &Store, id: i64) -> Result<(), OpsError> {
    let e = entry(store, id)?;
    match e.state {
        SpoolState::Queued => {
            if store.spool_update(
                e.id,
                SpoolState::Queued,
                &SpoolUpdate {
                    state: Some(SpoolState::Dropped),
                    last_error: Some("dropped by an administrator"),
                    ..Default::default()
                },
            )? {
                if !e.path.is_empty() {
                    let _ = std::fs::remove_file(&e.path);
                }
                Ok(())
            } else {
                Err(OpsError::refused(format!(
                    "message {id} changed state meanwhile (a send began); run \
                     `graphgate queue show {id}` and try again"
                )))
            }
        }
        SpoolState::Sending => Err(OpsError::refused(format!(
            "message {id} may be on its way to Microsoft 365 right now; dropping it could not \
             stop that. Wait until `graphgate queue show {id}` no longer says sending, or stop \
             the gateway first"
        ))),
        other => Err(OpsError::refused(format!(
            "message {id} is already {}; nothing to drop",
            other.as_str()
        ))),
    }
}

/// A short age: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}
