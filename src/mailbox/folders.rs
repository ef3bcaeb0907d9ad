//! The folder tree of a mailbox, kept in the store and brought up to date
//! with Graph's hierarchy delta (`GET mailFolders/delta`, Graph v1.0
//! "mailFolder: delta": every folder of the mailbox, nested ones too, in one
//! flat paged collection, then a delta link that later reports only what
//! changed, `@removed` for deleted folders).
//!
//! LOGIN and LIST use [`MailboxModel::refresh_folders_if_stale`]: a tree
//! synced less than the freshness interval ago (`imap.idle_poll_s`) costs
//! no Graph request; an older one costs one delta request (more only when
//! many folders changed), whatever the number of folders. The first sync
//! costs one `$batch` for the well-known folders plus one request per page
//! of the hierarchy. Folders this session creates, renames or deletes are
//! applied locally when Graph confirms them ([`MailboxModel::apply_folder_changes`]),
//! so CREATE costs its creations and nothing more.
//!
//! The IMAP folder rows are derived from the stored tree: names from
//! [`super::imap_names`], INBOX placement, SPECIAL-USE of the well-known
//! folders; only rows that differ are written.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{
    InboxPlacement, MailboxModel, MailboxSet, ModelError, canonical_name, imap_names, place_inbox,
    special_use,
};
use crate::backend::{
    BackendError, DeltaLink, FolderChange, RemoteFolder, RemoteFolderId, WellKnownFolder,
};
use crate::store::FolderRecord;
use crate::store::folder_tree::TreeChange;

/// How long a synced folder tree is fresh when nothing says otherwise
/// (the default of `imap.idle_poll_s`).
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(30);

/// Folders deeper than this below the top of the mailbox are not shown:
/// Exchange Online refuses to nest folders deeper than 300 levels
/// ("Exchange Online limits", Mailbox folder limits: maximum folder
/// hierarchy depth 300), so nothing real is deeper; the bound keeps name
/// building linear on a corrupt tree.
const MAX_TREE_DEPTH: usize = 300;

fn to_tree_change(change: &FolderChange) -> TreeChange {
    match change {
        FolderChange::Upsert {
            id,
            display_name,
            parent_id,
            hidden,
        } => TreeChange::Upsert {
            remote_id: id.as_str().to_string(),
            display_name: display_name.clone(),
            parent_remote_id: parent_id.as_ref().map(|p| p.as_str().to_string()),
            hidden: *hidden,
        },
        FolderChange::Removed(id) => TreeChange::Removed(id.as_str().to_string()),
    }
}

fn well_known_by_name(name: &str) -> Option<WellKnownFolder> {
    WellKnownFolder::ALL
        .into_iter()
        .find(|w| w.graph_name() == name)
}

impl MailboxModel {
    /// The same model with folder trees fresh for `freshness` after a sync.
    pub fn with_folder_freshness(mut self, freshness: Duration) -> MailboxModel {
        self.folder_freshness = freshness;
        self
    }

    /// Whether the stored tree was synced within the freshness interval.
    fn tree_is_fresh(&self) -> Result<bool, ModelError> {
        let Some(state) = self.store.folder_tree(self.account, &self.mailbox)? else {
            return Ok(false);
        };
        let age = crate::store::now_unix().saturating_sub(state.synced_at);
        Ok(
            state.delta_link.is_some()
                && age >= 0
                && (age as u64) < self.folder_freshness.as_secs(),
        )
    }

    /// Refresh the folder tree unless it is fresh (LOGIN, LIST): 0 Graph
    /// requests when fresh, else what [`Self::refresh_folders`] costs.
    /// A fresh tree's IMAP rows are still derived again (no write when
    /// nothing differs): the account's `imap_inbox` may have changed.
    pub async fn refresh_folders_if_stale(&self) -> Result<(), ModelError> {
        if self.tree_is_fresh()? {
            return self.rebuild_folders();
        }
        self.refresh_folders().await.map(|_| ())
    }

    /// One round of the hierarchy delta (from the stored delta link; from
    /// scratch, with the well-known folders looked up again, when there is
    /// none or it expired), then the IMAP folder rows brought in line: new
    /// folders get a fresh UIDVALIDITY, renamed ones keep theirs, vanished
    /// ones are dropped.
    pub async fn refresh_folders(&self) -> Result<Vec<FolderRecord>, ModelError> {
        let link = self
            .store
            .folder_tree(self.account, &self.mailbox)?
            .and_then(|s| s.delta_link)
            .map(DeltaLink);
        let (sync, full) = match &link {
            Some(link) => match self.backend.sync_folders(Some(link)).await {
                Ok(sync) => (sync, false),
                Err(BackendError::SyncReset) => {
                    tracing::info!(mailbox = %self.mailbox, "folder delta link expired; full folder sync");
                    (self.backend.sync_folders(None).await?, true)
                }
                Err(e) => return Err(e.into()),
            },
            None => (self.backend.sync_folders(None).await?, true),
        };
        let well_known = if full {
            Some(
                self.backend
                    .well_known_folders()
                    .await?
                    .into_iter()
                    .map(|(id, w)| (id.as_str().to_string(), w.graph_name().to_string()))
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        let changes: Vec<TreeChange> = sync.changes.iter().map(to_tree_change).collect();
        tracing::debug!(
            mailbox = %self.mailbox,
            full,
            changes = changes.len(),
            "folder hierarchy synced"
        );
        self.store.apply_folder_tree(
            self.account,
            &self.mailbox,
            full,
            &changes,
            Some(sync.delta_link.as_str()),
            well_known.as_deref(),
            crate::store::now_unix(),
        )?;
        self.rebuild_folders()?;
        self.folders()
    }

    /// Apply changes Graph confirmed to a verb of this session (CREATE,
    /// RENAME, DELETE) without asking Graph again; the next delta round
    /// reports them too, which changes nothing. A tree never synced is
    /// synced instead.
    pub async fn apply_folder_changes(&self, changes: &[FolderChange]) -> Result<(), ModelError> {
        if self
            .store
            .folder_tree(self.account, &self.mailbox)?
            .is_none()
        {
            return self.refresh_folders().await.map(|_| ());
        }
        let changes: Vec<TreeChange> = changes.iter().map(to_tree_change).collect();
        self.store.apply_folder_tree(
            self.account,
            &self.mailbox,
            false,
            &changes,
            None,
            None,
            crate::store::now_unix(),
        )?;
        self.rebuild_folders()
    }

    /// The stored tree as domain folders: only those under the top of the
    /// mailbox (the Inbox's parent) within [`MAX_TREE_DEPTH`] levels, so
    /// that the children of a deleted folder vanish with it; parents first.
    fn stored_tree(&self) -> Result<Vec<RemoteFolder>, ModelError> {
        let state = self
            .store
            .folder_tree(self.account, &self.mailbox)?
            .unwrap_or_default();
        let well_known: HashMap<String, WellKnownFolder> = state
            .well_known
            .iter()
            .filter_map(|(id, name)| well_known_by_name(name).map(|w| (id.clone(), w)))
            .collect();
        let rows = self.store.remote_folders(self.account, &self.mailbox)?;
        let parent_of: HashMap<&str, Option<&str>> = rows
            .iter()
            .map(|r| (r.remote_id.as_str(), r.parent_remote_id.as_deref()))
            .collect();
        // The top of the mailbox (msgfolderroot) is the Inbox's parent.
        let root = rows
            .iter()
            .find(|r| well_known.get(&r.remote_id) == Some(&WellKnownFolder::Inbox))
            .and_then(|r| r.parent_remote_id.clone());
        // Depth below the top; `None`: not under it (an orphan).
        let mut depth: HashMap<&str, Option<usize>> = HashMap::new();
        for row in &rows {
            let mut chain = Vec::new();
            let mut at = row.remote_id.as_str();
            let found = loop {
                if let Some(known) = depth.get(at) {
                    break known.map(|d| d + chain.len());
                }
                chain.push(at);
                match parent_of.get(at).copied().flatten() {
                    // No parent, or the top: a top-level folder.
                    None => break Some(chain.len() - 1),
                    Some(p) if Some(p) == root.as_deref() => break Some(chain.len() - 1),
                    // A parent Graph did not report: an orphan when the
                    // top is known, a top-level folder otherwise.
                    Some(p) if !parent_of.contains_key(p) => {
                        break root.is_none().then_some(chain.len() - 1);
                    }
                    Some(_) if chain.len() > MAX_TREE_DEPTH + 1 => break None,
                    Some(p) => at = p,
                }
            };
            // `found` is the depth of the chain's last element plus the
            // links walked; assign each element its own.
            for (i, &id) in chain.iter().enumerate() {
                let d = found.and_then(|f| f.checked_sub(i));
                depth.insert(id, d.filter(|d| *d < MAX_TREE_DEPTH));
            }
        }
        let mut folders: Vec<(usize, RemoteFolder)> = rows
            .iter()
            .filter_map(|r| {
                let d = depth.get(r.remote_id.as_str()).copied().flatten()?;
                Some((
                    d,
                    RemoteFolder {
                        id: RemoteFolderId::new(r.remote_id.clone()),
                        parent_id: r.parent_remote_id.clone().map(RemoteFolderId::new),
                        display_name: r.display_name.clone(),
                        well_known: well_known.get(&r.remote_id).copied(),
                        total: 0,
                        unread: 0,
                        child_count: 0,
                        hidden: r.hidden,
                    },
                ))
            })
            .collect();
        folders.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        Ok(folders.into_iter().map(|(_, f)| f).collect())
    }

    /// Bring the IMAP folder rows in line with the stored tree, writing
    /// only the rows that differ.
    fn rebuild_folders(&self) -> Result<(), ModelError> {
        let remote = self.stored_tree()?;
        let names = imap_names(&remote);
        let mut inbox = self.inbox.clone();
        if let InboxPlacement::Folder(chosen) = &inbox {
            let chosen = canonical_name(chosen);
            if !names.values().any(|n| *n == chosen) {
                tracing::warn!(
                    mailbox = %self.mailbox,
                    "the account's imap_inbox folder {chosen:?} does not exist; INBOX stays the \
                     mailbox's Inbox (fix it with `graphgate accounts set LOGIN --imap-inbox \
                     FOLDER`, naming a folder as LIST shows it)"
                );
                inbox = InboxPlacement::Own;
            }
        }
        let existing: HashMap<String, FolderRecord> = self
            .folders()?
            .into_iter()
            .map(|f| (f.remote_id.clone(), f))
            .collect();
        let mut seen = HashSet::new();
        // Parents first, so a rename of a parent and a child in one round
        // never collides on a name still held by the other.
        for f in &remote {
            let Some(name) = names.get(&f.id) else {
                continue;
            };
            seen.insert(f.id.as_str().to_string());
            let name = match place_inbox(name, &inbox) {
                (name, true) => name,
                (name, false) => format!("{}{name}", self.prefix),
            };
            let parent = f.parent_id.as_ref().map(|p| p.as_str());
            let special = f.well_known.and_then(special_use);
            let unchanged = existing.get(f.id.as_str()).is_some_and(|row| {
                row.name == name
                    && row.parent_remote_id.as_deref() == parent
                    && row.special_use.as_deref() == special
            });
            if unchanged {
                continue;
            }
            self.store.upsert_folder(
                self.account,
                &self.mailbox,
                f.id.as_str(),
                &name,
                parent,
                special,
            )?;
        }
        for old in existing.values() {
            if !seen.contains(&old.remote_id) {
                self.store.delete_folder(old.id)?;
            }
        }
        Ok(())
    }
}

impl MailboxSet {
    /// Refresh every mailbox's folders unless fresh (LOGIN, LIST); a
    /// shared mailbox that cannot be read is logged and skipped.
    pub async fn refresh_folders_if_stale(&self) -> Result<(), ModelError> {
        self.models[0].refresh_folders_if_stale().await?;
        for m in &self.models[1..] {
            if let Err(e) = m.refresh_folders_if_stale().await {
                tracing::warn!(
                    shared = %m.mailbox,
                    "cannot list the folders of the shared mailbox: {e}; check the account's \
                     Full Access permission on it"
                );
            }
        }
        Ok(())
    }
}

/// The folder verbs (IMAP CREATE, RENAME, DELETE): each asks the backend,
/// then records what it confirmed in the stored folder tree at once (a
/// failure to record is logged: the next folder sync brings it).
impl MailboxModel {
    /// Create `leaf` under `parent` (or at the top of this mailbox); the
    /// new folder's id, for creating below it.
    pub async fn create_folder(
        &self,
        parent: Option<&FolderHandle>,
        leaf: &str,
    ) -> Result<FolderHandle, ModelError> {
        let parent_id = parent.map(|p| RemoteFolderId::new(p.0.clone()));
        let folder = self.backend.create_folder(parent_id.as_ref(), leaf).await?;
        let change = FolderChange::Upsert {
            id: folder.id.clone(),
            display_name: Some(leaf.to_string()),
            parent_id: folder.parent_id.clone().or(parent_id),
            hidden: Some(false),
        };
        if let Err(e) = self.apply_folder_changes(&[change]).await {
            tracing::warn!("CREATE: folder created but not recorded: {e}");
        }
        Ok(FolderHandle(folder.id.0))
    }

    /// Rename `folder` to `leaf` within its parent.
    pub async fn rename_folder(&self, folder: &FolderRecord, leaf: &str) -> Result<(), ModelError> {
        let id = RemoteFolderId::new(folder.remote_id.clone());
        let renamed = self.backend.rename_folder(&id, leaf).await?;
        let change = FolderChange::Upsert {
            id,
            display_name: Some(leaf.to_string()),
            parent_id: renamed.parent_id,
            hidden: None,
        };
        if let Err(e) = self.apply_folder_changes(&[change]).await {
            tracing::warn!("RENAME: folder renamed but not recorded: {e}");
        }
        Ok(())
    }

    /// Delete `folder` (and its subfolders with it).
    pub async fn delete_folder(&self, folder: &FolderRecord) -> Result<(), ModelError> {
        let id = RemoteFolderId::new(folder.remote_id.clone());
        self.backend.delete_folder(&id).await?;
        if let Err(e) = self
            .apply_folder_changes(&[FolderChange::Removed(id)])
            .await
        {
            tracing::warn!("DELETE: folder deleted but not recorded: {e}");
        }
        Ok(())
    }
}

/// A folder of the remote mailbox, by its remote id: what a caller holds
/// between two [`MailboxModel::create_folder`] calls (it never names the
/// folder otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderHandle(String);

impl FolderHandle {
    /// The remote id of a folder the index knows.
    pub fn of(folder: &FolderRecord) -> FolderHandle {
        FolderHandle(folder.remote_id.clone())
    }
}
