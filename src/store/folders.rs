//! Folders and the UID map: which local UID stands for which remote
//! (immutable) Graph message id, with the flags, size and internal date the
//! IMAP side answers from.
//!
//! RFC 3501 §2.3.1.1: UIDs ascend in arrival order and are never reused in a
//! folder with the same UIDVALIDITY; UIDVALIDITY changes only when a folder
//! is really replaced (a new remote folder under an old name gets a new
//! UIDVALIDITY, since its row is new).

use rusqlite::{OptionalExtension, Row, params};

use super::{AccountId, Store, StoreError, now_unix};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderId(pub i64);

/// An IMAP UID (non-zero, 32-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UidValidity(pub u32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRecord {
    pub id: FolderId,
    pub account: AccountId,
    /// The Graph mailbox this folder lives in (the account's own or a shared one).
    pub mailbox: String,
    pub remote_id: String,
    /// The IMAP name (hierarchy separator `/`).
    pub name: String,
    pub parent_remote_id: Option<String>,
    /// `\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive` or none.
    pub special_use: Option<String>,
    pub uid_validity: UidValidity,
    pub uid_next: Uid,
    pub delta_link: Option<String>,
    pub subscribed: bool,
}

/// One message as the local index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub uid: Uid,
    pub remote_id: String,
    /// System flags as a bit set (the mailbox layer defines the bits).
    pub flags: u32,
    /// Keywords, space-separated.
    pub keywords: String,
    pub size: Option<u64>,
    /// Unix seconds.
    pub internal_date: Option<i64>,
    /// Content hash of the bytes served for this message, once fetched.
    pub content_hash: Option<String>,
    /// The mod-sequence of its last change (RFC 7162; see [`super::modseq`]).
    pub modseq: u64,
}

/// A message to add to the index (a new remote id).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub remote_id: String,
    pub flags: u32,
    pub keywords: String,
    pub size: Option<u64>,
    pub internal_date: Option<i64>,
}

const FOLDER_COLUMNS: &str = "id, account_id, mailbox, remote_id, name, parent_remote_id, \
                              special_use, uidvalidity, uidnext, delta_link, subscribed";

fn folder_from_row(row: &Row<'_>) -> rusqlite::Result<FolderRecord> {
    Ok(FolderRecord {
        id: FolderId(row.get(0)?),
        account: AccountId(row.get(1)?),
        mailbox: row.get(2)?,
        remote_id: row.get(3)?,
        name: row.get(4)?,
        parent_remote_id: row.get(5)?,
        special_use: row.get(6)?,
        uid_validity: UidValidity(row.get(7)?),
        uid_next: Uid(row.get(8)?),
        delta_link: row.get(9)?,
        subscribed: row.get::<_, i64>(10)? != 0,
    })
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        uid: Uid(row.get(0)?),
        remote_id: row.get(1)?,
        flags: row.get(2)?,
        keywords: row.get(3)?,
        size: row.get::<_, Option<i64>>(4)?.map(|s| s.max(0) as u64),
        internal_date: row.get(5)?,
        content_hash: row.get(6)?,
        modseq: row.get::<_, i64>(7)?.max(1) as u64,
    })
}

/// A folder's UIDNEXT, read inside the caller's transaction (every writer
/// that numbers messages reads it there, so two cannot hand out one UID).
pub(super) fn uid_next_of(conn: &rusqlite::Connection, folder: FolderId) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT uidnext FROM folders WHERE id = ?1",
        [folder.0],
        |r| r.get(0),
    )
}

impl Store {
    /// The folder for `remote_id`, created (with a fresh UIDVALIDITY) if it
    /// is new; an existing one is renamed/moved to `name` if needed.
    pub fn upsert_folder(
        &self,
        account: AccountId,
        mailbox: &str,
        remote_id: &str,
        name: &str,
        parent_remote_id: Option<&str>,
        special_use: Option<&str>,
    ) -> Result<FolderRecord, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM folders WHERE account_id = ?1 AND mailbox = ?2 AND remote_id = ?3",
                params![account.0, mailbox, remote_id],
                |r| r.get(0),
            )
            .optional()?;
        let id = match existing {
            Some(id) => {
                // A name still held by another folder (names swap when
                // folders are renamed, or when the account's INBOX moves)
                // is taken from it; its own refresh names it again.
                tx.execute(
                    "UPDATE folders SET name = name || ' (renaming ' || id || ')'
                     WHERE account_id = ?1 AND name = ?2 AND id != ?3",
                    params![account.0, name, id],
                )?;
                tx.execute(
                    "UPDATE folders SET name = ?1, parent_remote_id = ?2, special_use = ?3
                     WHERE id = ?4",
                    params![name, parent_remote_id, special_use, id],
                )?;
                id
            }
            None => {
                // A replaced folder (same name, new remote id) loses its old row.
                tx.execute(
                    "DELETE FROM folders WHERE account_id = ?1 AND name = ?2",
                    params![account.0, name],
                )?;
                // UIDVALIDITY: the clock in seconds, but always above every
                // value handed out before in this database (a persistent
                // high-water mark), so a replaced folder never repeats one.
                let last: Option<u32> = tx
                    .query_row(
                        "SELECT value FROM meta WHERE key = 'last_uidvalidity'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                let now = u32::try_from(now_unix()).unwrap_or(u32::MAX);
                let uid_validity = last.map_or(now, |l| l.saturating_add(1).max(now)).max(1);
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [uid_validity],
                )?;
                tx.execute(
                    "INSERT INTO folders (account_id, mailbox, remote_id, name,
                         parent_remote_id, special_use, uidvalidity, uidnext)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
                    params![
                        account.0,
                        mailbox,
                        remote_id,
                        name,
                        parent_remote_id,
                        special_use,
                        uid_validity
                    ],
                )?;
                tx.last_insert_rowid()
            }
        };
        let record = tx.query_row(
            &format!("SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?1"),
            [id],
            folder_from_row,
        )?;
        tx.commit()?;
        Ok(record)
    }

    pub fn folders(&self, account: AccountId) -> Result<Vec<FolderRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE account_id = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map([account.0], folder_from_row)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    pub fn folder_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> Result<Option<FolderRecord>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            &format!("SELECT {FOLDER_COLUMNS} FROM folders WHERE account_id = ?1 AND name = ?2"),
            params![account.0, name],
            folder_from_row,
        )
        .optional()
        .map_err(Into::into)
    }

    pub fn delete_folder(&self, folder: FolderId) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute("DELETE FROM folders WHERE id = ?1", [folder.0])?;
        Ok(())
    }

    pub fn set_delta_link(&self, folder: FolderId, link: Option<&str>) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE folders SET delta_link = ?1 WHERE id = ?2",
            params![link, folder.0],
        )?;
        Ok(())
    }

    /// Add messages the folder has not seen, assigning UIDs in the given
    /// order, in one transaction with the UIDNEXT bump. Remote ids already
    /// indexed keep their UID (a delta replay or a resync renumbers
    /// nothing). Returns the (uid, remote id) pairs that were new.
    pub fn add_messages(
        &self,
        folder: FolderId,
        messages: &[NewMessage],
    ) -> Result<Vec<(Uid, String)>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut uid_next: u32 = uid_next_of(&tx, folder)?;
        let mut added = Vec::new();
        {
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO messages (folder_id, uid, remote_id, flags, keywords,
                     size, internal_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for m in messages {
                if uid_next == u32::MAX {
                    return Err(StoreError::Corrupt(
                        "UIDNEXT exhausted in a folder; it must be replaced".into(),
                    ));
                }
                let n = insert.execute(params![
                    folder.0,
                    uid_next,
                    m.remote_id,
                    m.flags,
                    m.keywords,
                    m.size.map(|s| s as i64),
                    m.internal_date
                ])?;
                if n == 1 {
                    added.push((Uid(uid_next), m.remote_id.clone()));
                    uid_next += 1;
                    super::subscriptions::remember_keywords(&tx, folder, &m.keywords)?;
                }
            }
        }
        // New messages are a change (RFC 7162 §3.1): one mod-sequence.
        if !added.is_empty() {
            let modseq = super::modseq::bump(&tx, folder)?;
            for (uid, _) in &added {
                super::modseq::set(&tx, folder, *uid, modseq)?;
            }
        }
        tx.execute(
            "UPDATE folders SET uidnext = ?1 WHERE id = ?2",
            params![uid_next, folder.0],
        )?;
        tx.commit()?;
        Ok(added)
    }

    /// Every message of a folder in UID order.
    pub fn messages(&self, folder: FolderId) -> Result<Vec<MessageRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT m.uid, m.remote_id, m.flags, m.keywords, m.size, m.internal_date,
                    m.content_hash, COALESCE(s.modseq, 1)
             FROM messages m
             LEFT JOIN modseqs s ON s.folder_id = m.folder_id AND s.uid = m.uid
             WHERE m.folder_id = ?1 ORDER BY m.uid",
        )?;
        let rows = stmt.query_map([folder.0], message_from_row)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    pub fn message_by_remote_id(
        &self,
        folder: FolderId,
        remote_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT m.uid, m.remote_id, m.flags, m.keywords, m.size, m.internal_date,
                    m.content_hash, COALESCE(s.modseq, 1)
             FROM messages m
             LEFT JOIN modseqs s ON s.folder_id = m.folder_id AND s.uid = m.uid
             WHERE m.folder_id = ?1 AND m.remote_id = ?2",
            params![folder.0, remote_id],
            message_from_row,
        )
        .optional()
        .map_err(Into::into)
    }

    pub fn set_message_flags(
        &self,
        folder: FolderId,
        uid: Uid,
        flags: u32,
        keywords: &str,
    ) -> Result<(), StoreError> {
        self.set_messages_flags(folder, &[(uid, flags, keywords.to_string())])?;
        Ok(())
    }

    /// Record the bytes served for a message (their hash and exact size):
    /// from then on RFC822.SIZE and every section describe those bytes.
    pub fn set_message_content(
        &self,
        folder: FolderId,
        uid: Uid,
        content_hash: &str,
        size: u64,
    ) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE messages SET content_hash = ?1, size = ?2 WHERE folder_id = ?3 AND uid = ?4",
            params![content_hash, size as i64, folder.0, uid.0],
        )?;
        Ok(())
    }

    /// [`Store::set_message_content`] for many messages in one transaction
    /// (one fsync instead of one per message).
    /// Record fetched contents in one transaction: each message's content
    /// hash and size, and each content in the cache index (marked used
    /// now).
    pub fn record_contents(
        &self,
        folder: FolderId,
        contents: &[(Uid, String, u64)],
    ) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        {
            let mut update = tx.prepare(
                "UPDATE messages SET content_hash = ?1, size = ?2 WHERE folder_id = ?3 AND uid = ?4",
            )?;
            let mut index = tx.prepare(super::cache::CACHE_PUT)?;
            let now = now_unix();
            for (uid, hash, size) in contents {
                update.execute(params![hash, *size as i64, folder.0, uid.0])?;
                index.execute(params![hash, *size as i64, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget messages by remote id (deleted or moved away remotely).
    /// Returns the UIDs removed.
    pub fn remove_messages(
        &self,
        folder: FolderId,
        remote_ids: &[String],
    ) -> Result<Vec<Uid>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut removed = Vec::new();
        {
            let mut find =
                tx.prepare("SELECT uid FROM messages WHERE folder_id = ?1 AND remote_id = ?2")?;
            let mut delete =
                tx.prepare("DELETE FROM messages WHERE folder_id = ?1 AND remote_id = ?2")?;
            for id in remote_ids {
                if let Some(uid) = find
                    .query_row(params![folder.0, id], |r| r.get::<_, u32>(0))
                    .optional()?
                {
                    delete.execute(params![folder.0, id])?;
                    removed.push(Uid(uid));
                }
            }
        }
        // An expunge is a change, remembered for VANISHED (RFC 7162 §3.2.10).
        if !removed.is_empty() {
            let modseq = super::modseq::bump(&tx, folder)?;
            for uid in &removed {
                super::modseq::expunged(&tx, folder, *uid, modseq)?;
            }
            super::modseq::prune(&tx, folder)?;
        }
        tx.commit()?;
        removed.sort();
        Ok(removed)
    }

    /// Give messages of a folder new UIDs (an IMAP MOVE into the folder
    /// they are in, RFC 6851 §3.3 as Dovecot does it: the message stays,
    /// under a new UID), keeping flags, size, date and content, in one
    /// transaction. Returns (old, new) pairs; UIDs not in the folder are
    /// left out.
    pub fn renumber_messages(
        &self,
        folder: FolderId,
        uids: &[Uid],
    ) -> Result<Vec<(Uid, Uid)>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut uid_next: u32 = uid_next_of(&tx, folder)?;
        let mut pairs = Vec::new();
        {
            let mut update =
                tx.prepare("UPDATE messages SET uid = ?1 WHERE folder_id = ?2 AND uid = ?3")?;
            for uid in uids {
                if uid_next == u32::MAX {
                    return Err(StoreError::Corrupt(
                        "UIDNEXT exhausted in a folder; it must be replaced".into(),
                    ));
                }
                if update.execute(params![uid_next, folder.0, uid.0])? == 1 {
                    pairs.push((*uid, Uid(uid_next)));
                    uid_next += 1;
                }
            }
        }
        // The old UID is expunged, the new one new (RFC 7162 §3.2.10).
        if !pairs.is_empty() {
            let modseq = super::modseq::bump(&tx, folder)?;
            for (old, new) in &pairs {
                super::modseq::expunged(&tx, folder, *old, modseq)?;
                super::modseq::set(&tx, folder, *new, modseq)?;
            }
            super::modseq::prune(&tx, folder)?;
        }
        tx.execute(
            "UPDATE folders SET uidnext = ?1 WHERE id = ?2",
            params![uid_next, folder.0],
        )?;
        tx.commit()?;
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::store::{AuthProfile, NewAccount};

    fn store_with_account() -> (Store, AccountId) {
        let store = Store::open_in_memory().unwrap();
        let account = store
            .add_account(&NewAccount {
                login: "alice".into(),
                password: Secret::new("pw".into()),
                mailbox: "alice@example.com".into(),
                auth_profile: AuthProfile::Delegated,
                aliases: vec![],
                shared_mailboxes: vec![],
            })
            .unwrap();
        (store, account.id)
    }

    fn new(id: &str) -> NewMessage {
        NewMessage {
            remote_id: id.into(),
            flags: 0,
            keywords: String::new(),
            size: Some(10),
            internal_date: Some(1_700_000_000),
        }
    }

    #[test]
    fn uids_ascend_and_are_never_reused() {
        let (store, account) = store_with_account();
        let inbox = store
            .upsert_folder(account, "alice@example.com", "R-INBOX", "INBOX", None, None)
            .unwrap();
        assert_eq!(inbox.uid_next, Uid(1));
        let added = store
            .add_messages(inbox.id, &[new("m1"), new("m2"), new("m1")])
            .unwrap();
        assert_eq!(added, vec![(Uid(1), "m1".into()), (Uid(2), "m2".into())]);
        // A replay renumbers nothing.
        assert!(
            store
                .add_messages(inbox.id, &[new("m2")])
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.remove_messages(inbox.id, &["m2".into()]).unwrap(),
            vec![Uid(2)]
        );
        // m2 coming back (moved out and in) gets a new UID, never 2 again.
        let again = store.add_messages(inbox.id, &[new("m2")]).unwrap();
        assert_eq!(again, vec![(Uid(3), "m2".into())]);
        let uids: Vec<u32> = store
            .messages(inbox.id)
            .unwrap()
            .iter()
            .map(|m| m.uid.0)
            .collect();
        assert_eq!(uids, vec![1, 3]);
    }

    #[test]
    fn uidvalidity_is_stable_and_changes_only_on_replacement() {
        let (store, account) = store_with_account();
        let a = store
            .upsert_folder(account, "alice@example.com", "R1", "Work", None, None)
            .unwrap();
        let again = store
            .upsert_folder(account, "alice@example.com", "R1", "Work", None, None)
            .unwrap();
        assert_eq!(a.uid_validity, again.uid_validity);
        assert_eq!(a.id, again.id);
        // Renamed remotely: same row, same UIDVALIDITY.
        let renamed = store
            .upsert_folder(account, "alice@example.com", "R1", "Work2", None, None)
            .unwrap();
        assert_eq!(renamed.uid_validity, a.uid_validity);
        // A different remote folder under the old name: new UIDVALIDITY.
        let replaced = store
            .upsert_folder(account, "alice@example.com", "R2", "Work2", None, None)
            .unwrap();
        assert_ne!(replaced.uid_validity, a.uid_validity);
        assert_eq!(store.folders(account).unwrap().len(), 1);
    }
}
