//! The SMTP spool's index: one row per accepted message, with its state.
//! A small message's bytes are in the row itself (`body`, committed with it:
//! one fsync makes both durable); a larger one's live in a file beside the
//! database (`path`), written and fsync'ed before the row is committed. The delivery state machine that
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

/// How an entry is sent, or where its bounce stands: the `method` column,
/// kept as text ([`DeliveryMethod::as_str`], read back by
/// [`DeliveryMethod::parse`]: the same words the column always held, so
/// rows written before this type read back unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMethod {
    /// `sendMail` with the MIME in one request; the Sent Items copy is the
    /// evidence when an attempt is in doubt.
    SendMail,
    /// A draft (large messages, or no Sent Items copy), being built.
    Draft,
    /// The draft is complete (attachments added): sending it again is safe.
    DraftReady,
    /// Bounced: the DSN still has to be put into the sender's Inbox.
    DsnPending,
    /// Bounced: the DSN is placed (or none is owed, null sender).
    DsnPlaced,
}

impl DeliveryMethod {
    pub const ALL: [DeliveryMethod; 5] = [
        DeliveryMethod::SendMail,
        DeliveryMethod::Draft,
        DeliveryMethod::DraftReady,
        DeliveryMethod::DsnPending,
        DeliveryMethod::DsnPlaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMethod::SendMail => "sendmail",
            DeliveryMethod::Draft => "draft",
            DeliveryMethod::DraftReady => "draft-ready",
            DeliveryMethod::DsnPending => "dsn-pending",
            DeliveryMethod::DsnPlaced => "dsn-placed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryMethod> {
        DeliveryMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// A draft method (built or complete).
    pub fn is_draft(self) -> bool {
        matches!(self, DeliveryMethod::Draft | DeliveryMethod::DraftReady)
    }
}

impl std::fmt::Display for DeliveryMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl rusqlite::ToSql for DeliveryMethod {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for DeliveryMethod {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        DeliveryMethod::parse(text).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(
                format!("unknown spool delivery method {text:?}").into(),
            )
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
    /// The spool file holding the message bytes; empty when they are in
    /// the row ([`SpoolEntry::inline`]).
    pub path: String,
    /// The bytes are in the row: read them with [`Store::spool_body`].
    /// Cleared (false) once the entry is final and the bytes are gone.
    pub inline: bool,
    pub size: u64,
    pub message_id: Option<String>,
    pub attempts: u32,
    /// Unix seconds.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub accepted_at: i64,
    /// How the current or last attempt sends it, or where its bounce stands.
    pub method: Option<DeliveryMethod>,
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
                       prefix, sending_since, delivered_at, body IS NOT NULL";

/// A message to record in the spool.
#[derive(Debug, Clone, Copy)]
pub struct NewSpoolEntry<'a> {
    pub account: AccountId,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    /// The fsync'ed file holding the message bytes, or `""` with `body`.
    pub path: &'a str,
    /// The message bytes, kept in the row (small messages).
    pub body: Option<&'a [u8]>,
    pub size: u64,
    pub message_id: Option<&'a str>,
    /// Header lines graphgate adds in front of the file's bytes.
    pub prefix: &'a str,
    /// The worker leaves the entry alone until then (Unix seconds): the
    /// submitting session makes the first attempt itself.
    pub not_before: Option<i64>,
    /// Record it already claimed by an attempt with this method (state
    /// `sending`, `sending_since` = now, attempts = 1) — the same commit
    /// as the insert, made before the attempt's Graph call. `None`: queued.
    pub claimed_with: Option<DeliveryMethod>,
    /// What makes a resubmission recognisable as the same message (the
    /// client's own Message-ID, envelope and bytes, hashed), if anything.
    pub fingerprint: Option<&'a str>,
}

/// What [`Store::spool_insert_unless_known`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolInsert {
    /// Recorded, as a new entry.
    New(SpoolEntry),
    /// The same message (same fingerprint) is already in the spool —
    /// waiting or delivered: nothing was recorded.
    Known(SpoolEntry),
}

/// A change to a spool entry, applied only if it is still in the expected
/// state (compare-and-set). `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct SpoolUpdate<'a> {
    pub state: Option<SpoolState>,
    pub last_error: Option<&'a str>,
    pub next_attempt_at: Option<i64>,
    /// `Some(None)` clears it.
    pub method: Option<Option<DeliveryMethod>>,
    pub draft_id: Option<Option<&'a str>>,
    /// Starts an attempt: `sending_since` = now, `attempts` + 1.
    pub start_attempt: bool,
    /// Commit without waiting for the disk (`synchronous=NORMAL` for this
    /// statement): the change reaches the disk with the next durable commit
    /// or checkpoint, and a power cut before that loses it — whole (WAL
    /// frames are checksummed), leaving the row as it was. Only for a
    /// transition whose loss is harmless: `sending` → `delivered` of an
    /// entry that keeps its bytes in the row, which the resolver finds
    /// delivered again (Sent Items, or its draft gone) if it reverts.
    pub lazy: bool,
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
        inline: row.get(17)?,
    })
}

/// `synchronous=NORMAL` on the connection until dropped, then `FULL`
/// again (see [`SpoolUpdate::lazy`]).
struct Relaxed<'c>(&'c rusqlite::Connection);

impl<'c> Relaxed<'c> {
    fn new(conn: &'c rusqlite::Connection) -> Result<Relaxed<'c>, StoreError> {
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        Ok(Relaxed(conn))
    }
}

impl Drop for Relaxed<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.execute_batch("PRAGMA synchronous = FULL") {
            // Never go on with commits that do not wait for the disk.
            panic!("cannot restore synchronous=FULL on the store: {e}");
        }
    }
}

impl Store {
    /// Record an accepted message (its file, if it has one, already
    /// durable). The commit is durable when this returns.
    pub fn spool_insert(&self, new: &NewSpoolEntry<'_>) -> Result<SpoolEntry, StoreError> {
        let conn = self.lock()?;
        insert(&conn, new)
    }

    /// Like [`Store::spool_insert`], unless an entry with the same
    /// fingerprint, accepted at or after `since`, is waiting or delivered:
    /// then that entry, and nothing recorded. One lock for both, so two
    /// identical submissions at once make one entry.
    pub fn spool_insert_unless_known(
        &self,
        new: &NewSpoolEntry<'_>,
        since: i64,
    ) -> Result<SpoolInsert, StoreError> {
        let conn = self.lock()?;
        if let Some(fingerprint) = new.fingerprint {
            let known = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM spool
                     WHERE fingerprint = ?1 AND account_id = ?2 AND accepted_at >= ?3
                       AND state IN ('queued', 'sending', 'delivered')
                     ORDER BY id DESC LIMIT 1"
                ))?
                .query_row(params![fingerprint, new.account.0, since], from_row)
                .optional()?;
            if let Some(entry) = known {
                return Ok(SpoolInsert::Known(entry));
            }
        }
        insert(&conn, new).map(SpoolInsert::New)
    }

    /// The message bytes kept in the row of `id`, if they are.
    pub fn spool_body(&self, id: SpoolId) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached("SELECT body FROM spool WHERE id = ?1")?;
        stmt.query_row([id.0], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()
            .map(Option::flatten)
            .map_err(Into::into)
    }

    /// Forget the bytes kept in the row of `id` (the entry is final).
    pub fn spool_clear_body(&self, id: SpoolId) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.prepare_cached("UPDATE spool SET body = NULL WHERE id = ?1 AND body IS NOT NULL")?
            .execute([id.0])?;
        Ok(())
    }

    pub fn spool_entry(&self, id: SpoolId) -> Result<Option<SpoolEntry>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM spool WHERE id = ?1"))?;
        stmt.query_row([id.0], from_row)
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
        let _relaxed = if update.lazy {
            Some(Relaxed::new(&conn)?)
        } else {
            None
        };
        let mut stmt = conn.prepare_cached(
            "UPDATE spool SET state = ?1,
                 last_error = CASE WHEN ?2 IS NULL THEN last_error ELSE ?2 END,
                 next_attempt_at = COALESCE(?3, next_attempt_at),
                 method = CASE WHEN ?4 THEN ?5 ELSE method END,
                 draft_id = CASE WHEN ?6 THEN ?7 ELSE draft_id END,
                 sending_since = CASE WHEN ?8 THEN ?9 ELSE sending_since END,
                 attempts = attempts + ?8,
                 delivered_at = CASE WHEN ?1 = 'delivered' THEN ?9 ELSE delivered_at END,
                 body = CASE WHEN ?1 IN ('delivered', 'rejected', 'dropped') THEN NULL
                             ELSE body END,
                 updated_at = ?9
             WHERE id = ?10 AND state = ?11",
        )?;
        let n = stmt.execute(params![
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
        ])?;
        Ok(n == 1)
    }

    /// The earliest `next_attempt_at` of entries waiting for the worker.
    pub fn spool_next_due(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT MIN(next_attempt_at) FROM spool
             WHERE state IN ('queued', 'sending')
                OR (state = 'bounced' AND method = ?1)",
            [DeliveryMethod::DsnPending],
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

/// Insert a row on a locked connection (see [`Store::spool_insert`]).
fn insert(conn: &rusqlite::Connection, new: &NewSpoolEntry<'_>) -> Result<SpoolEntry, StoreError> {
    let NewSpoolEntry {
        account,
        mail_from,
        rcpt_to,
        path,
        body,
        size,
        message_id,
        prefix,
        not_before,
        claimed_with,
        fingerprint,
    } = *new;
    let now = now_unix();
    let rcpt = serde_json::to_string(rcpt_to).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (state, sending_since, attempts) = match claimed_with {
        Some(_) => (SpoolState::Sending, Some(now), 1),
        None => (SpoolState::Queued, None, 0),
    };
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO spool (account_id, state, mail_from, rcpt_to, path, size, message_id,
             attempts, next_attempt_at, accepted_at, updated_at, prefix, body, method,
             sending_since, fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14, ?15)
         RETURNING {COLUMNS}"
    ))?;
    insert
        .query_row(
            params![
                account.0,
                state.as_str(),
                mail_from,
                rcpt,
                path,
                size as i64,
                message_id,
                attempts,
                not_before.unwrap_or(now),
                now,
                prefix,
                body,
                claimed_with,
                sending_since,
                fingerprint,
            ],
            from_row,
        )
        .map_err(Into::into)
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
