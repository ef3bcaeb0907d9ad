//! The remote folder hierarchy of each (account, mailbox), kept as Graph's
//! `mailFolders/delta` reports it (Graph v1.0 "mailFolder: delta"): every
//! folder's id, display name, parent and hidden mark, the delta link that
//! resumes the sync, when it last ran, and the ids of the well-known
//! folders (looked up once per full sync). The IMAP folder rows
//! ([`super::folders`]) are derived from it by the mailbox model, so a
//! LOGIN costs at most one delta request, not one request per folder.

use rusqlite::{OptionalExtension, params};

use super::{AccountId, Store, StoreError};

/// One remote folder as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFolderRow {
    pub remote_id: String,
    pub display_name: String,
    pub parent_remote_id: Option<String>,
    pub hidden: bool,
}

/// The sync state of one mailbox's hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderTreeState {
    /// Resumes the hierarchy delta; `None`: a full sync is due.
    pub delta_link: Option<String>,
    /// Unix seconds of the last delta round.
    pub synced_at: i64,
    /// (remote id, Graph's well-known name) of the well-known folders.
    pub well_known: Vec<(String, String)>,
}

/// A change to apply (a field `None`: unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeChange {
    Upsert {
        remote_id: String,
        display_name: Option<String>,
        parent_remote_id: Option<String>,
        hidden: Option<bool>,
    },
    Removed(String),
}

impl Store {
    /// The hierarchy's sync state, if it was ever synced.
    pub fn folder_tree(
        &self,
        account: AccountId,
        mailbox: &str,
    ) -> Result<Option<FolderTreeState>, StoreError> {
        let conn = self.lock()?;
        let row: Option<(Option<String>, i64, String)> = conn
            .query_row(
                "SELECT delta_link, synced_at, well_known FROM folder_trees
                 WHERE account_id = ?1 AND mailbox = ?2",
                params![account.0, mailbox],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(
            row.map(|(delta_link, synced_at, well_known)| FolderTreeState {
                delta_link,
                synced_at,
                well_known: serde_json::from_str(&well_known).unwrap_or_default(),
            }),
        )
    }

    /// Every remote folder of the hierarchy as last reported.
    pub fn remote_folders(
        &self,
        account: AccountId,
        mailbox: &str,
    ) -> Result<Vec<RemoteFolderRow>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT remote_id, display_name, parent_remote_id, hidden FROM remote_folders
             WHERE account_id = ?1 AND mailbox = ?2 ORDER BY remote_id",
        )?;
        let rows = stmt.query_map(params![account.0, mailbox], |r| {
            Ok(RemoteFolderRow {
                remote_id: r.get(0)?,
                display_name: r.get(1)?,
                parent_remote_id: r.get(2)?,
                hidden: r.get::<_, i64>(3)? != 0,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    /// Apply one delta round in one transaction: `full` replaces the whole
    /// hierarchy (a first sync, or one after the delta link expired);
    /// `delta_link` and `well_known`, when given, replace the stored ones;
    /// `synced_at` is set to `now` when a round ran (`Some(link)`).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_folder_tree(
        &self,
        account: AccountId,
        mailbox: &str,
        full: bool,
        changes: &[TreeChange],
        delta_link: Option<&str>,
        well_known: Option<&[(String, String)]>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO folder_trees (account_id, mailbox) VALUES (?1, ?2)
             ON CONFLICT (account_id, mailbox) DO NOTHING",
            params![account.0, mailbox],
        )?;
        if full {
            tx.execute(
                "DELETE FROM remote_folders WHERE account_id = ?1 AND mailbox = ?2",
                params![account.0, mailbox],
            )?;
        }
        {
            let mut upsert = tx.prepare(
                "INSERT INTO remote_folders
                     (account_id, mailbox, remote_id, display_name, parent_remote_id, hidden)
                 VALUES (?1, ?2, ?3, COALESCE(?4, ''), ?5, COALESCE(?6, 0))
                 ON CONFLICT (account_id, mailbox, remote_id) DO UPDATE SET
                     display_name = COALESCE(?4, display_name),
                     parent_remote_id = COALESCE(?5, parent_remote_id),
                     hidden = COALESCE(?6, hidden)",
            )?;
            let mut remove = tx.prepare(
                "DELETE FROM remote_folders
                 WHERE account_id = ?1 AND mailbox = ?2 AND remote_id = ?3",
            )?;
            for change in changes {
                match change {
                    TreeChange::Upsert {
                        remote_id,
                        display_name,
                        parent_remote_id,
                        hidden,
                    } => {
                        upsert.execute(params![
                            account.0,
                            mailbox,
                            remote_id,
                            display_name,
                            parent_remote_id,
                            hidden.map(i64::from)
                        ])?;
                    }
                    TreeChange::Removed(remote_id) => {
                        remove.execute(params![account.0, mailbox, remote_id])?;
                    }
                }
            }
        }
        if let Some(link) = delta_link {
            tx.execute(
                "UPDATE folder_trees SET delta_link = ?1, synced_at = ?2
                 WHERE account_id = ?3 AND mailbox = ?4",
                params![link, now, account.0, mailbox],
            )?;
        }
        if let Some(well_known) = well_known {
            let json = serde_json::to_string(well_known).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "UPDATE folder_trees SET well_known = ?1 WHERE account_id = ?2 AND mailbox = ?3",
                params![json, account.0, mailbox],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget the hierarchy's delta link: the next refresh is a full sync.
    pub fn reset_folder_tree(&self, account: AccountId, mailbox: &str) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE folder_trees SET delta_link = NULL, synced_at = 0
             WHERE account_id = ?1 AND mailbox = ?2",
            params![account.0, mailbox],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewAccount;

    /// Migration 9 forgets contents an older version recorded empty (the
    /// SHA-256 of nothing, issue 22 item 6), keeps every other one.
    #[test]
    fn migration_9_forgets_contents_recorded_empty() {
        const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graphgate.sqlite3");
        {
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            for sql in &crate::store::schema::MIGRATIONS[..5] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 5).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(&format!(
                "INSERT INTO accounts (id, login, password_hash, mailbox, auth_profile,
                     created_at, updated_at)
                 VALUES (1, 'a@example.com', 'x', 'a@example.com', 'delegated', 0, 0);
                 INSERT INTO folders (id, account_id, mailbox, remote_id, name, uidvalidity)
                 VALUES (1, 1, 'a@example.com', 'inbox-id', 'INBOX', 7);
                 INSERT INTO messages (folder_id, uid, remote_id, size, content_hash)
                 VALUES (1, 1, 'm1', 0, '{EMPTY}'), (1, 2, 'm2', 42, 'abcd');
                 INSERT INTO cache (content_hash, size, last_used, structure)
                 VALUES ('{EMPTY}', 0, 0, x'00'), ('abcd', 42, 0, NULL);"
            ))
            .unwrap();
            tx.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            crate::store::schema::latest()
        );
        let messages = store.messages(crate::store::FolderId(1)).unwrap();
        assert_eq!(messages[0].content_hash, None);
        assert_eq!(messages[0].size, None);
        assert_eq!(messages[1].content_hash.as_deref(), Some("abcd"));
        assert_eq!(messages[1].size, Some(42));
        let conn = store.lock().unwrap();
        let left: Vec<String> = conn
            .prepare("SELECT content_hash FROM cache ORDER BY content_hash")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, vec!["abcd".to_string()]);
    }

    #[test]
    fn a_partial_update_keeps_the_fields_it_did_not_carry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let account = store
            .add_account(&NewAccount::delegated("a@example.com", "pw"))
            .unwrap();
        let full = [TreeChange::Upsert {
            remote_id: "f1".into(),
            display_name: Some("Projects".into()),
            parent_remote_id: Some("root".into()),
            hidden: Some(false),
        }];
        let wk = [("inbox-id".to_string(), "inbox".to_string())];
        store
            .apply_folder_tree(
                account.id,
                "a@example.com",
                true,
                &full,
                Some("d1"),
                Some(&wk),
                5,
            )
            .unwrap();
        let rename = [TreeChange::Upsert {
            remote_id: "f1".into(),
            display_name: Some("Renamed".into()),
            parent_remote_id: None,
            hidden: None,
        }];
        store
            .apply_folder_tree(
                account.id,
                "A@example.com",
                false,
                &rename,
                Some("d2"),
                None,
                9,
            )
            .unwrap();
        let rows = store.remote_folders(account.id, "a@example.com").unwrap();
        assert_eq!(
            rows,
            vec![RemoteFolderRow {
                remote_id: "f1".into(),
                display_name: "Renamed".into(),
                parent_remote_id: Some("root".into()),
                hidden: false,
            }]
        );
        let state = store
            .folder_tree(account.id, "a@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(state.delta_link.as_deref(), Some("d2"));
        assert_eq!(state.synced_at, 9);
        assert_eq!(state.well_known, wk.to_vec());
        store
            .apply_folder_tree(
                account.id,
                "a@example.com",
                false,
                &[TreeChange::Removed("f1".into())],
                None,
                None,
                10,
            )
            .unwrap();
        assert!(
            store
                .remote_folders(account.id, "a@example.com")
                .unwrap()
                .is_empty()
        );
        store
            .reset_folder_tree(account.id, "a@example.com")
            .unwrap();
        let state = store
            .folder_tree(account.id, "a@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(state.delta_link, None);
    }
}
