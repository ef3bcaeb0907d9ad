//! The SMTP spool's index: one row per accepted message, with its state.
//! The message bytes live in a file beside the database (`path`), written and
//! fsync'ed before the row is committed. The delivery state machine that
//! drives these rows belongs to the SMTP side; this is its durable record.

use rusqlite::{OptionalExtension, Row, params};

use super::{AccountId, Store, StoreError, now_unix};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpoolId(pub i64);

/// Where a spooled message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolState {
    /// Accepted (250 given or about to be), not yet handed to Graph.
    Queued,
    /// A Graph submission may be in flight; after a crash the outcome must
    /// be checked (e.g. in Sent Items) before any retry.
    Sending,
    /// Graph accepted it (202).
    Delivered,
    /// Given up after the synchronous window; a DSN went to the sender.
    Bounced,
    /// Refused for good within the synchronous window: the client got the
    /// 5xx, so no DSN.
    Rejected,
    /// Removed by an administrator.
    Dropped,
}

impl SpoolState {
    pub fn as_str(self) -> &'static str {
        match self {
            SpoolState::Queued => "queued",
            SpoolState::Sending => "sending",
            SpoolState::Delivered => "delivered",
            SpoolState::Bounced => "bounced",
            SpoolState::Rejected => "rejected",
            SpoolState::Dropped => "dropped",
        }
    }

    pub fn parse(s: &str) -> Option<SpoolState> {
        Some(match s {
            "queued" => SpoolState::Queued,
            "sending" => SpoolState::Sending,
            "delivered" => SpoolState::Delivered,
            "bounced" => SpoolState::Bounced,
            "rejected" => SpoolState::Rejected,
            "dropped" => SpoolState::Dropped,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub id: SpoolId,
    pub account: AccountId,
    pub state: SpoolState,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The spool file holding the message bytes.
    pub path: String,
    pub size: u64,
    pub message_id: Option<String>,
    pub attempts: u32,
    /// Unix seconds.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub accepted_at: i64,
    /// How the current or last attempt sends it (`sendmail` or `draft`).
    pub method: Option<String>,
    /// The draft carrying it (draft method), once created.
    pub draft_id: Option<String>,
    /// Header lines graphgate puts in front of the file's bytes.
    pub prefix: String,
    /// When the current attempt began (Unix seconds).
    pub sending_since: Option<i64>,
    pub delivered_at: Option<i64>,
}

const COLUMNS: &str = "id, account_id, state, mail_from, rcpt_to, path, size, message_id, \
                       attempts, next_attempt_at, last_error, accepted_at, method, draft_id, \
                       prefix, sending_since, delivered_at";

/// A message to record in the spool.
#[derive(Debug, Clone, Copy)]
pub struct NewSpoolEntry<'a> {
    pub account: AccountId,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    /// The fsync'ed file holding the message bytes.
    pub path: &'a str,
    pub size: u64,
    pub message_id: Option<&'a str>,
    /// Header lines graphgate adds in front of the file's bytes.
    pub prefix: &'a str,
    /// The worker leaves the entry alone until then (Unix seconds): the
    /// submitting session makes the first attempt itself.
    pub not_before: Option<i64>,
}

/// A change to a spool entry, applied only if it is still in the expected
/// state (compare-and-set). `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct SpoolUpdate<'a> {
    pub state: Option<SpoolState>,
    pub last_error: Option<&'a str>,
    pub next_attempt_at: Option<i64>,
    /// `Some(None)` clears it.
    pub method: Option<Option<&'a str>>,
    pub draft_id: Option<Option<&'a str>>,
    /// Starts an attempt: `sending_since` = now, `attempts` + 1.
    pub start_attempt: bool,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<SpoolEntry> {
    let state: String = row.get(2)?;
    let rcpt: String = row.get(4)?;
    Ok(SpoolEntry {
        id: SpoolId(row.get(0)?),
        account: AccountId(row.get(1)?),
        state: SpoolState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown spool state {state:?}").into(),
            )
        })?,
        mail_from: row.get(3)?,
        rcpt_to: serde_json::from_str(&rcpt).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        path: row.get(5)?,
        size: row.get::<_, i64>(6)?.max(0) as u64,
        message_id: row.get(7)?,
        attempts: row.get(8)?,
        next_attempt_at: row.get(9)?,
        last_error: row.get(10)?,
        accepted_at: row.get(11)?,
        method: row.get(12)?,
        draft_id: row.get(13)?,
        prefix: row.get(14)?,
        sending_since: row.get(15)?,
        delivered_at: row.get(16)?,
    })
}

impl Store {
    /// Record an accepted message whose file is already durable.
    pub fn spool_insert(&self, new: &NewSpoolEntry<'_>) -> Result<SpoolEntry, StoreError> {
        let NewSpoolEntry {
            account,
            mail_from,
            rcpt_to,
            path,
            size,
            message_id,
            prefix,
            not_before,
        } = *new;
        let now = now_unix();
        let rcpt =
            serde_json::to_string(rcpt_to).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO spool (account_id, state, mail_from, rcpt_to, path, size, message_id,
                 attempts, next_attempt_at, accepted_at, updated_at, prefix)
             VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, 0, ?9, ?7, ?7, ?8)",
            params![
                account.0,
                mail_from,
                rcpt,
                path,
                size as i64,
                message_id,
                now,
                prefix,
                not_before.unwrap_or(now)
            ],
        )?;
        let id = conn.last_insert_rowid();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM spool WHERE id = ?1"),
            [id],
            from_row,
        )
        .map_err(Into::into)
    }

    pub fn spool_entry(&self, id: SpoolId) -> Result<Option<SpoolEntry>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM spool WHERE id = ?1"),
            [id.0],
            from_row,
        )
        .optional()
        .map_err(Into::into)
    }

    /// Move an entry from `from` to `to` (compare-and-set: returns false if
    /// it was not in `from`, e.g. another worker took it).
    pub fn spool_transition(
        &self,
        id: SpoolId,
        from: SpoolState,
        to: SpoolState,
        last_error: Option<&str>,
        next_attempt_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        let attempts_inc = i64::from(to == SpoolState::Sending);
        let n = conn.execute(
            "UPDATE spool SET state = ?1, last_error = COALESCE(?2, last_error),
                 next_attempt_at = COALESCE(?3, next_attempt_at),
                 attempts = attempts + ?4, updated_at = ?5
             WHERE id = ?6 AND state = ?7",
            params![
                to.as_str(),
                last_error,
                next_attempt_at,
                attempts_inc,
                now_unix(),
                id.0,
                from.as_str()
            ],
        )?;
        Ok(n == 1)
    }

    /// Apply `update` if the entry is in state `from` (compare-and-set:
    /// false when it was not, e.g. an administrator dropped it).
    pub fn spool_update(
        &self,
        id: SpoolId,
        from: SpoolState,
        update: &SpoolUpdate<'_>,
    ) -> Result<bool, StoreError> {
        let now = now_unix();
        let conn = self.lock()?;
        let to = update.state.unwrap_or(from);
        let n = conn.execute(
            "UPDATE spool SET state = ?1,
                 last_error = CASE WHEN ?2 IS NULL THEN last_error ELSE ?2 END,
                 next_attempt_at = COALESCE(?3, next_attempt_at),
                 method = CASE WHEN ?4 THEN ?5 ELSE method END,
                 draft_id = CASE WHEN ?6 THEN ?7 ELSE draft_id END,
                 sending_since = CASE WHEN ?8 THEN ?9 ELSE sending_since END,
                 attempts = attempts + ?8,
                 delivered_at = CASE WHEN ?1 = 'delivered' THEN ?9 ELSE delivered_at END,
                 updated_at = ?9
             WHERE id = ?10 AND state = ?11",
            params![
                to.as_str(),
                update.last_error,
                update.next_attempt_at,
                update.method.is_some(),
                update.method.flatten(),
                update.draft_id.is_some(),
                update.draft_id.flatten(),
                i64::from(update.start_attempt),
                now,
                id.0,
                from.as_str()
            ],
        )?;
        Ok(n == 1)
    }

    /// The earliest `next_attempt_at` of entries waiting for the worker.
    pub fn spool_next_due(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT MIN(next_attempt_at) FROM spool
             WHERE state IN ('queued', 'sending')
                OR (state = 'bounced' AND method = 'dsn-pending')",
            [],
            |r| r.get(0),
        )
        .map_err(Into::into)
    }

    /// Entries in `state`, oldest first; with `due_by`, only those whose next
    /// attempt is at or before it.
    pub fn spool_list(
        &self,
        state: Option<SpoolState>,
        due_by: Option<i64>,
    ) -> Result<Vec<SpoolEntry>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM spool
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR next_attempt_at <= ?2)
             ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![state.map(SpoolState::as_str), due_by], from_row)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::store::{AuthProfile, NewAccount};

    #[test]
    fn spool_state_machine_is_compare_and_set() {
        let store = Store::open_in_memory().unwrap();
        let account = store
            .add_account(&NewAccount {
                login: "a".into(),
                password: Secret::new("p".into()),
                mailbox: "a@example.com".into(),
                auth_profile: AuthProfile::Delegated,
                aliases: vec![],
                shared_mailboxes: vec![],
            })
            .unwrap();
        let entry = store
            .spool_insert(&NewSpoolEntry {
                account: account.id,
                mail_from: "a@example.com",
                rcpt_to: &["b@example.com".into()],
                path: "/spool/1.eml",
                size: 123,
                message_id: Some("<x@y>"),
                prefix: "",
                not_before: None,
            })
            .unwrap();
        assert_eq!(entry.state, SpoolState::Queued);
        assert_eq!(entry.rcpt_to, vec!["b@example.com".to_string()]);
        assert!(
            store
                .spool_transition(
                    entry.id,
                    SpoolState::Queued,
                    SpoolState::Sending,
                    None,
                    None
                )
                .unwrap()
        );
        // A second worker cannot take it again.
        assert!(
            !store
                .spool_transition(
                    entry.id,
                    SpoolState::Queued,
                    SpoolState::Sending,
                    None,
                    None
                )
                .unwrap()
        );
        let sending = store.spool_entry(entry.id).unwrap().unwrap();
        assert_eq!(sending.attempts, 1);
        assert_eq!(
            store
                .spool_list(Some(SpoolState::Sending), None)
                .unwrap()
                .len(),
            1
        );
        assert!(
            store
                .spool_transition(
                    entry.id,
                    SpoolState::Sending,
                    SpoolState::Delivered,
                    None,
                    None
                )
                .unwrap()
        );
        assert!(
            store
                .spool_list(Some(SpoolState::Queued), None)
                .unwrap()
                .is_empty()
        );
    }
}
