//! The mailbox model: what an IMAP client sees of a Graph mailbox — folders
//! with IMAP names and SPECIAL-USE, UIDVALIDITY, UIDs in arrival order,
//! flags — kept in the store and brought up to date with Graph's delta
//! queries.
//!
//! The rules (RFC 3501 §2.3.1.1 and the "UIDs never change"):
//! - A remote (immutable) message id gets a UID once, when graphgate first
//!   sees it in that folder; the UID never changes and is never reused.
//!   New messages of one sync get UIDs in arrival order (received time).
//! - UIDVALIDITY is fixed per folder row for its lifetime and persisted;
//!   a rename keeps it (same remote id), a replaced folder gets a new one.
//! - A delta reset (`BackendError::SyncReset`: Graph's 410 / `syncStateNotFound`) is
//!   answered by a full listing diffed against the index: known messages keep
//!   their UIDs, only really new ones are numbered, vanished ones are expunged.
//! - `\Deleted` is local (IMAP's two-step delete), and so is `\Draft`
//!   (from `isDraft` when first seen or when Graph changes it: see
//!   [`flags`]); every other flag mirrors Graph: `\Seen` = `isRead`,
//!   `\Flagged` = `flag.flagStatus == flagged`, `\Answered` /
//!   `$Forwarded` = `PR_LAST_VERB_EXECUTED`, keywords = categories.
//!
//! Remote ids never leave this layer upwards, UIDs never go downwards.
//!
//! [`content`] keeps the bytes served per message, fetched once from Graph
//! (batched) and kept on disk by content hash, so RFC822.SIZE and every
//! section describe the same bytes for the life of the message.

pub mod appended;
pub mod changes;
pub mod content;
pub mod events;
pub mod flags;
pub mod folders;
mod local;
pub mod modseq;
pub mod open;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::backend::{
    BackendError, DeltaChange, DeltaLink, MailBackend, RemoteFolder, RemoteFolderId, RemoteMessage,
    WellKnownFolder,
};
use crate::store::folders::NewMessage;
use crate::store::{AccountId, Store, StoreError};

/// The index's domain types, as IMAP handlers name them.
pub use crate::store::folders::{FolderId, FolderRecord, MessageRecord, Uid};
pub use changes::{FlagChange, FlagOp, Outcome, Stored};
pub use events::FolderGate;
pub use flags::Flags;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no folder {0:?}")]
    NoSuchFolder(String),
}

impl ModelError {
    /// Whether the remote mailbox no longer has the item.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ModelError::Backend(e) if e.is_not_found())
    }
}

/// What one synchronisation changed in a folder, in UIDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderChanges {
    /// New messages, in UID order.
    pub added: Vec<Uid>,
    /// Messages gone from the folder (deleted or moved away remotely).
    pub removed: Vec<Uid>,
    /// Messages whose flags changed remotely.
    pub flags_changed: Vec<Uid>,
    /// The delta token had expired and the folder was listed in full.
    pub reset: bool,
}

/// One Graph mailbox (an account's own, or a shared one it may read) as
/// the IMAP side sees it.
pub struct MailboxModel {
    store: Store,
    account: AccountId,
    /// The Graph mailbox address (folders rows are keyed by it).
    mailbox: String,
    backend: Arc<dyn MailBackend>,
    /// Put in front of every folder name (`Shared/bob@contoso.com/` for a
    /// shared mailbox; empty for the account's own).
    prefix: String,
    /// Where the account's IMAP INBOX is, as far as this mailbox goes.
    inbox: InboxPlacement,
    /// How long a synced folder tree is used without asking Graph
    /// (see [`folders`]).
    folder_freshness: std::time::Duration,
}

/// Where the folder IMAP calls INBOX lives, for one mailbox of an
/// account (the per-account `imap_inbox` setting).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum InboxPlacement {
    /// This mailbox's own Inbox is INBOX (the account's own mailbox,
    /// by default).
    #[default]
    Own,
    /// The folder of this mailbox with this (default, prefix-less) IMAP
    /// name is INBOX; the mailbox's own Inbox moves aside to
    /// [`MOVED_INBOX`].
    Folder(String),
    /// INBOX is in another mailbox of the account: this one's own Inbox
    /// keeps the name of any other folder.
    Elsewhere,
}

/// The name of a mailbox's own Inbox when another folder is INBOX.
pub const MOVED_INBOX: &str = "Inbox (mailbox)";

/// `name` with a leading `INBOX` in any case spelled `INBOX` (RFC 3501
/// §5.1: INBOX is case-insensitive, also as the first level of a path).
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    let head = name.get(..5);
    let rest = name.get(5..).unwrap_or_default();
    if head.is_some_and(|h| h.eq_ignore_ascii_case("INBOX"))
        && (rest.is_empty() || rest.starts_with('/'))
        && head != Some("INBOX")
    {
        std::borrow::Cow::Owned(format!("INBOX{rest}"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Whether `name` is `prefix` or under it (as a `/` path).
fn under<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Apply the account's INBOX placement to one mailbox's default names
/// (see [`imap_names`]): the chosen folder and its children become
/// `INBOX…`; the mailbox's own Inbox and its children become
/// [`MOVED_INBOX`]`…`. Returns, per folder, its name and whether it is
/// the account's INBOX subtree (which carries no shared prefix).
pub fn place_inbox(name: &str, placement: &InboxPlacement) -> (String, bool) {
    match placement {
        InboxPlacement::Own => (name.to_string(), false),
        InboxPlacement::Folder(chosen) => {
            let chosen = canonical_name(chosen);
            if let Some(rest) = under(name, &chosen) {
                (format!("INBOX{rest}"), true)
            } else if let Some(rest) = under(name, "INBOX") {
                (format!("{MOVED_INBOX}{rest}"), false)
            } else {
                (name.to_string(), false)
            }
        }
        InboxPlacement::Elsewhere => match under(name, "INBOX") {
            Some(rest) => (format!("{MOVED_INBOX}{rest}"), false),
            None => (name.to_string(), false),
        },
    }
}

/// SPECIAL-USE attribute (RFC 6154) of a well-known folder.
pub fn special_use(folder: WellKnownFolder) -> Option<&'static str> {
    match folder {
        WellKnownFolder::Inbox => None,
        WellKnownFolder::Drafts => Some("\\Drafts"),
        WellKnownFolder::SentItems => Some("\\Sent"),
        WellKnownFolder::DeletedItems => Some("\\Trash"),
        WellKnownFolder::JunkEmail => Some("\\Junk"),
        WellKnownFolder::Archive => Some("\\Archive"),
    }
}

/// IMAP names for Graph folders: the Inbox is `INBOX`, others their
/// display-name path joined with `/` (a `/` inside a display name becomes
/// `∕`, U+2215, so it cannot be read as hierarchy). Two siblings with the
/// same name get the later one's id tail appended.
pub fn imap_names(folders: &[RemoteFolder]) -> HashMap<RemoteFolderId, String> {
    let by_id: HashMap<&RemoteFolderId, &RemoteFolder> =
        folders.iter().map(|f| (&f.id, f)).collect();
    let mut names = HashMap::new();
    let mut taken = HashSet::new();
    // Resolve by walking up (iteratively: a tree may be hundreds of
    // levels deep; at most MAX_NAME_LEVELS are walked, against cycles).
    fn path(f: &RemoteFolder, by_id: &HashMap<&RemoteFolderId, &RemoteFolder>) -> String {
        const MAX_NAME_LEVELS: usize = 1024;
        let mut levels = Vec::new();
        let mut at = Some(f);
        while let Some(folder) = at {
            if folder.well_known == Some(WellKnownFolder::Inbox) {
                levels.push("INBOX".to_string());
                break;
            }
            levels.push(folder.display_name.replace('/', "\u{2215}"));
            if levels.len() >= MAX_NAME_LEVELS {
                break;
            }
            at = folder
                .parent_id
                .as_ref()
                .and_then(|p| by_id.get(p))
                .copied();
        }
        levels.reverse();
        levels.join("/")
    }
    let mut ordered: Vec<&RemoteFolder> = folders.iter().collect();
    ordered.sort_by_key(|f| (f.well_known.is_none(), f.id.as_str().to_string()));
    for f in ordered {
        let mut name = path(f, &by_id);
        if name.eq_ignore_ascii_case("INBOX") && f.well_known != Some(WellKnownFolder::Inbox) {
            name = format!("{name} (folder)");
        }
        if !taken.insert(name.to_ascii_lowercase()) {
            let tail: String = f.id.as_str().chars().rev().take(6).collect();
            name = format!("{name} ({})", tail.chars().rev().collect::<String>());
            taken.insert(name.to_ascii_lowercase());
        }
        names.insert(f.id.clone(), name);
    }
    names
}

impl MailboxModel {
    pub fn new(
        store: Store,
        account: AccountId,
        mailbox: impl Into<String>,
        backend: Arc<dyn MailBackend>,
    ) -> MailboxModel {
        MailboxModel {
            store,
            account,
            mailbox: mailbox.into(),
            backend,
            prefix: String::new(),
            inbox: InboxPlacement::Own,
            folder_freshness: folders::DEFAULT_FRESHNESS,
        }
    }

    /// The same model with the account's INBOX placed as `inbox` says.
    pub fn with_inbox(mut self, inbox: InboxPlacement) -> MailboxModel {
        self.inbox = inbox;
        self
    }

    /// The same model with every folder name under `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> MailboxModel {
        self.prefix = prefix.into();
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    pub fn backend(&self) -> &Arc<dyn MailBackend> {
        &self.backend
    }

    /// The folders as last synchronised.
    pub fn folders(&self) -> Result<Vec<FolderRecord>, ModelError> {
        Ok(self
            .store
            .folders(self.account)?
            .into_iter()
            .filter(|f| f.mailbox.eq_ignore_ascii_case(&self.mailbox))
            .collect())
    }

    pub fn folder(&self, name: &str) -> Result<FolderRecord, ModelError> {
        let name = canonical_name(name);
        self.folders()?
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ModelError::NoSuchFolder(name.to_string()))
    }

    /// Bring `folder` up to date with one delta round (a full listing when
    /// it has no delta link yet or the link expired).
    pub async fn sync(&self, folder: FolderId) -> Result<FolderChanges, ModelError> {
        let record = self
            .folders()?
            .into_iter()
            .find(|f| f.id == folder)
            .ok_or_else(|| ModelError::NoSuchFolder(format!("#{}", folder.0)))?;
        // Under the folder's gate: no change of a session is between its
        // Graph request and its acknowledgement while this round reads
        // and merges (see `changes`).
        let gate = self.gate(&record);
        let _held = gate.hold().await;
        // The delta link as the round before this one left it: read again
        // under the gate. The record read while waiting holds the link of
        // some earlier round; following it replays changes already merged
        // and, once the service has dropped that sync state, costs a 410
        // and a full listing (20,377 of 41,012 delta requests answered 410
        // in a 20-client imaptest run before this read moved here).
        let record = self
            .folders()?
            .into_iter()
            .find(|f| f.id == folder)
            .ok_or_else(|| ModelError::NoSuchFolder(format!("#{}", folder.0)))?;
        let remote_id = RemoteFolderId::new(record.remote_id.clone());
        let link = record.delta_link.clone().map(DeltaLink::new);
        let mut changes = FolderChanges::default();
        let (result, full) = match self.backend.sync_messages(&remote_id, link.as_ref()).await {
            Ok(r) => (r, link.is_none()),
            Err(BackendError::SyncReset) => {
                changes.reset = true;
                tracing::info!(folder = %record.name, "delta token expired; listing the folder again");
                (self.backend.sync_messages(&remote_id, None).await?, true)
            }
            Err(e) => return Err(e.into()),
        };
        let known: HashMap<String, crate::store::folders::MessageRecord> = self
            .store
            .messages(folder)?
            .into_iter()
            .map(|m| (m.remote_id.clone(), m))
            .collect();
        // A round may name a message more than once (Graph replays items
        // across pages; a message can be removed and come back): the last
        // word on each wins.
        let mut last: HashMap<&str, Option<&RemoteMessage>> = HashMap::new();
        for change in &result.changes {
            match change {
                DeltaChange::Upsert(m) => last.insert(m.id.as_str(), Some(m)),
                DeltaChange::Removed(id) => last.insert(id.as_str(), None),
            };
        }
        // A message new to the index that came as a partial update (it
        // was known to a lost index, or Graph replayed it) is read whole.
        let mut completed = Vec::new();
        for m in last.values().filter_map(|m| *m) {
            if m.absent.incomplete() && !known.contains_key(m.id.as_str()) {
                match self.backend.get_message(&m.id).await {
                    Ok(whole) => completed.push(whole),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let upserts: Vec<&RemoteMessage> = last
            .values()
            .filter_map(|m| *m)
            .filter(|m| !m.absent.incomplete() || known.contains_key(m.id.as_str()))
            .chain(completed.iter())
            .collect();
        let mut removed_ids: Vec<String> = last
            .iter()
            .filter(|(_, m)| m.is_none())
            .map(|(id, _)| id.to_string())
            .collect();
        if full {
            // A full listing is the whole truth: what it lacks is gone.
            let present: HashSet<&str> = upserts.iter().map(|m| m.id.as_str()).collect();
            removed_ids.extend(
                known
                    .keys()
                    .filter(|id| !present.contains(id.as_str()))
                    .cloned(),
            );
        }
        // New messages in arrival order get UIDs; known ones may have new flags.
        let mut new: Vec<&RemoteMessage> = upserts
            .iter()
            .copied()
            .filter(|m| !known.contains_key(m.id.as_str()))
            .collect();
        new.sort_by(|a, b| {
            a.received
                .cmp(&b.received)
                .then(a.id.as_str().cmp(b.id.as_str()))
        });
        let additions: Vec<NewMessage> = new
            .iter()
            .map(|m| {
                let (bits, keywords) = Flags::from_remote(m).to_store();
                NewMessage {
                    remote_id: m.id.as_str().to_string(),
                    flags: bits,
                    keywords,
                    size: None,
                    internal_date: m.received.map(|d| d.timestamp()),
                }
            })
            .collect();
        let added = self.store.add_messages(folder, &additions)?;
        changes.added = added.into_iter().map(|(uid, _)| uid).collect();
        let mut writes = Vec::new();
        for m in upserts {
            let Some(old) = known.get(m.id.as_str()) else {
                continue;
            };
            let local = Flags::from_store(old.flags, &old.keywords);
            // Field by field: what Graph did not send is unchanged;
            // \Deleted is ours alone. An item that came again with the
            // same flags (a replay, or a change IMAP does not show) is no
            // change and gets no mod-sequence (RFC 7162 §3.1).
            let merged = Flags::merged(&local, m);
            if merged != local {
                let (bits, keywords) = merged.to_store();
                writes.push((old.uid, bits, keywords));
                changes.flags_changed.push(old.uid);
            }
        }
        // One transaction and one mod-sequence for the round's changes.
        self.store.set_messages_flags(folder, &writes)?;
        removed_ids.sort();
        removed_ids.dedup();
        let mut removed = self.store.remove_messages(folder, &removed_ids)?;
        if !removed.is_empty() {
            crate::mailbox::appended::sweep(&self.store);
        }
        removed.sort();
        changes.removed = removed;
        changes.flags_changed.sort();
        changes.flags_changed.dedup();
        self.store
            .set_delta_link(folder, Some(result.delta_link.as_str()))?;
        if changes != FolderChanges::default() {
            gate.announce();
        }
        Ok(changes)
    }
}

/// An account's own mailbox and the shared mailboxes it may read, as one
/// folder tree: shared ones live under `Shared/<address>/`.
pub struct MailboxSet {
    /// The account's own first.
    models: Vec<MailboxModel>,
}

/// The IMAP namespace prefix of shared mailboxes.
pub const SHARED_PREFIX: &str = "Shared/";

impl MailboxSet {
    pub fn new(own: MailboxModel, shared: Vec<MailboxModel>) -> MailboxSet {
        let mut models = vec![own];
        models.extend(shared);
        MailboxSet { models }
    }

    /// The model a folder name belongs to (the longest matching prefix).
    pub fn model_for_name(&self, name: &str) -> &MailboxModel {
        self.models
            .iter()
            .filter(|m| !m.prefix.is_empty() && name.starts_with(&m.prefix))
            .max_by_key(|m| m.prefix.len())
            .unwrap_or(&self.models[0])
    }

    /// The model a folder row belongs to.
    pub fn model_of(&self, folder: &FolderRecord) -> &MailboxModel {
        self.models
            .iter()
            .find(|m| m.mailbox.eq_ignore_ascii_case(&folder.mailbox))
            .unwrap_or(&self.models[0])
    }

    /// The account's own mailbox.
    pub fn own_backend(&self) -> &Arc<dyn MailBackend> {
        self.models[0].backend()
    }

    pub fn backend_for(&self, folder: &FolderRecord) -> &Arc<dyn MailBackend> {
        self.model_of(folder).backend()
    }

    pub fn folders(&self) -> Result<Vec<FolderRecord>, ModelError> {
        let mut all = Vec::new();
        for m in &self.models {
            all.extend(m.folders()?);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    pub fn folder(&self, name: &str) -> Result<FolderRecord, ModelError> {
        // INBOX may be a folder of a shared mailbox (`imap_inbox`).
        if under(&canonical_name(name), "INBOX").is_some() {
            for m in &self.models {
                if let Ok(f) = m.folder(name) {
                    return Ok(f);
                }
            }
        }
        self.model_for_name(name).folder(name)
    }

    /// Refresh every mailbox's folders; a shared mailbox that cannot be
    /// read (no Full Access any more) is logged and skipped.
    pub async fn refresh_folders(&self) -> Result<Vec<FolderRecord>, ModelError> {
        self.models[0].refresh_folders().await?;
        for m in &self.models[1..] {
            if let Err(e) = m.refresh_folders().await {
                tracing::warn!(
                    shared = %m.mailbox,
                    "cannot list the folders of the shared mailbox: {e}; check the account's \
                     Full Access permission on it"
                );
            }
        }
        self.folders()
    }

    pub async fn sync(&self, folder: FolderId) -> Result<FolderChanges, ModelError> {
        for m in &self.models {
            if m.folders()?.iter().any(|f| f.id == folder) {
                return m.sync(folder).await;
            }
        }
        Err(ModelError::NoSuchFolder(format!("#{}", folder.0)))
    }

    /// Whether two folders are in the same Graph mailbox (Graph moves and
    /// copies only within one).
    pub fn same_mailbox(&self, a: &FolderRecord, b: &FolderRecord) -> bool {
        a.mailbox.eq_ignore_ascii_case(&b.mailbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_is_case_insensitive_as_a_first_level() {
        assert_eq!(canonical_name("inbox"), "INBOX");
        assert_eq!(canonical_name("Inbox/Sub"), "INBOX/Sub");
        assert_eq!(canonical_name("Inboxes"), "Inboxes");
        assert_eq!(canonical_name("Shared/x/inbox"), "Shared/x/inbox");
    }

    #[test]
    fn the_chosen_folder_becomes_inbox_and_the_own_inbox_moves_aside() {
        let chosen = InboxPlacement::Folder("inbox/Tickets".into());
        assert_eq!(
            place_inbox("INBOX/Tickets", &chosen),
            ("INBOX".into(), true)
        );
        assert_eq!(
            place_inbox("INBOX/Tickets/2026", &chosen),
            ("INBOX/2026".into(), true)
        );
        assert_eq!(place_inbox("INBOX", &chosen), (MOVED_INBOX.into(), false));
        assert_eq!(
            place_inbox("INBOX/Other", &chosen),
            (format!("{MOVED_INBOX}/Other"), false)
        );
        assert_eq!(
            place_inbox("INBOX/Tickets2", &chosen),
            (format!("{MOVED_INBOX}/Tickets2"), false)
        );
        assert_eq!(place_inbox("Archive", &chosen), ("Archive".into(), false));
        // INBOX in another (shared) mailbox of the account.
        assert_eq!(
            place_inbox("INBOX", &InboxPlacement::Elsewhere),
            (MOVED_INBOX.into(), false)
        );
        assert_eq!(
            place_inbox("INBOX", &InboxPlacement::Own),
            ("INBOX".into(), false)
        );
        // A shared mailbox's own Inbox chosen: it keeps its place, unprefixed.
        let shared = InboxPlacement::Folder("INBOX".into());
        assert_eq!(place_inbox("INBOX", &shared), ("INBOX".into(), true));
    }
}
