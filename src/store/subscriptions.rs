//! IMAP state Graph has no place for, kept per account and folder:
//! subscriptions (RFC 3501 §6.3.6, §6.3.7) by name, and the `\Recent`
//! floor of each folder (RFC 3501 §2.3.2: a message is recent for the
//! first session told about it), and the keywords each folder has had
//! (RFC 3501 §7.2.6: FLAGS names the flags "applicable for this
//! mailbox"; a keyword stays applicable once used, as on Dovecot, whose
//! keyword list only grows — imaptest relies on it: a client that saw a
//! keyword in FLAGS leaves it to the one session that owns it).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::folders::{FolderId, Uid, uid_next_of};
use super::{AccountId, Store, StoreError};

impl Store {
    /// Subscribe to (or unsubscribe from) `name`, which need not exist.
    pub fn set_subscribed(
        &self,
        account: AccountId,
        name: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO subscriptions (account_id, name, subscribed) VALUES (?1, ?2, ?3)
             ON CONFLICT (account_id, name) DO UPDATE SET subscribed = excluded.subscribed",
            params![account.0, name, subscribed as i64],
        )?;
        Ok(())
    }

    /// The account's explicit choices by name (a name without one is
    /// subscribed when it is a folder).
    pub fn subscriptions(&self, account: AccountId) -> Result<HashMap<String, bool>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT name, subscribed FROM subscriptions WHERE account_id = ?1")?;
        let rows = stmt.query_map([account.0], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
        })?;
        rows.collect::<Result<HashMap<_, _>, _>>()
            .map_err(Into::into)
    }

    /// Claim the folder's recent messages for one session, atomically:
    /// returns the floor before (messages from it up are recent for the
    /// caller) and moves it to UIDNEXT. A folder never claimed has no
    /// recent message (its floor starts at UIDNEXT).
    pub fn claim_recent(&self, folder: FolderId) -> Result<Uid, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let next = uid_next_of(&tx, folder)?;
        let floor: Option<u32> = tx
            .query_row(
                "SELECT floor FROM recent_floors WHERE folder_id = ?1",
                [folder.0],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "INSERT INTO recent_floors (folder_id, floor) VALUES (?1, ?2)
             ON CONFLICT (folder_id) DO UPDATE SET floor = excluded.floor",
            params![folder.0, next],
        )?;
        tx.commit()?;
        Ok(Uid(floor.unwrap_or(next)))
    }

    /// The folder's recent floor, unclaimed (EXAMINE, STATUS): messages
    /// from it up are recent.
    pub fn recent_floor(&self, folder: FolderId) -> Result<Option<Uid>, StoreError> {
        let conn = self.lock()?;
        let floor: Option<u32> = conn
            .query_row(
                "SELECT floor FROM recent_floors WHERE folder_id = ?1",
                [folder.0],
                |r| r.get(0),
            )
            .optional()?;
        Ok(floor.map(Uid))
    }
}

impl Store {
    /// The keywords `folder` has had: those ever defined for it and those
    /// its messages carry (a store made before the list was kept).
    pub fn folder_keywords(&self, folder: FolderId) -> Result<Vec<String>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT keyword FROM folder_keywords WHERE folder_id = ?1
             UNION SELECT DISTINCT keywords FROM messages WHERE folder_id = ?1 AND keywords != ''",
        )?;
        let rows = stmt.query_map([folder.0], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row?.split_whitespace().map(str::to_string));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Define `keywords` (space-separated) for `folder` from now on.
    pub fn define_keywords(&self, folder: FolderId, keywords: &str) -> Result<(), StoreError> {
        if keywords.trim().is_empty() {
            return Ok(());
        }
        let conn = self.lock()?;
        remember_keywords(&conn, folder, keywords)
    }
}

/// Add `keywords` (space-separated) to `folder`'s list, inside the caller's
/// connection or transaction.
pub(super) fn remember_keywords(
    conn: &rusqlite::Connection,
    folder: FolderId,
    keywords: &str,
) -> Result<(), StoreError> {
    if keywords.trim().is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO folder_keywords (folder_id, keyword) VALUES (?1, ?2)",
    )?;
    for k in keywords.split_whitespace() {
        insert.execute(params![folder.0, k])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::folders::NewMessage;
    use crate::store::{NewAccount, Store};

    #[test]
    fn subscriptions_and_the_recent_floor() {
        let store = Store::open_in_memory().unwrap();
        let account = store
            .add_account(&NewAccount::delegated("a@example.com", "pw"))
            .unwrap()
            .id;
        store.set_subscribed(account, "Gone/Name", true).unwrap();
        store.set_subscribed(account, "INBOX", false).unwrap();
        store.set_subscribed(account, "INBOX", true).unwrap();
        let subs = store.subscriptions(account).unwrap();
        assert_eq!(subs.get("Gone/Name"), Some(&true));
        assert_eq!(subs.get("INBOX"), Some(&true));
        let folder = store
            .upsert_folder(account, "a@example.com", "R1", "INBOX", None, None)
            .unwrap();
        let add = |id: &str| NewMessage {
            remote_id: id.into(),
            flags: 0,
            keywords: String::new(),
            size: None,
            internal_date: None,
        };
        store.add_messages(folder.id, &[add("m1")]).unwrap();
        assert_eq!(store.recent_floor(folder.id).unwrap(), None);
        // The first claim finds nothing recent and sets the floor.
        let first = store.claim_recent(folder.id).unwrap();
        assert_eq!(first.0, 2);
        store.add_messages(folder.id, &[add("m2")]).unwrap();
        assert_eq!(store.recent_floor(folder.id).unwrap().map(|u| u.0), Some(2));
        // The next claim gets m2 (UID 2); the one after, nothing.
        assert_eq!(store.claim_recent(folder.id).unwrap().0, 2);
        assert_eq!(store.claim_recent(folder.id).unwrap().0, 3);
    }
}
