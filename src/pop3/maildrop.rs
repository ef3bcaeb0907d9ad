//! The maildrop: the account's INBOX as the IMAP side sees it, fixed for
//! the session (RFC 1939 §4: message numbers do not change during a
//! session), on top of the mailbox model.
//!
//! This is the one file of `pop3/` that reaches into what IMAP shares
//! today: the account opening ([`crate::imap::session::Shared::open`],
//! which applies `--imap-inbox` and the shared mailboxes) and the content
//! cache ([`crate::mailbox::content::ContentCache`]). When those move under
//! `mailbox/`, only the paths here change.
//!
//! - Which folder: `INBOX` of the account's folder tree, so a per-account
//!   `imap_inbox` applies as it does for IMAP; a login of the form
//!   `account/shared@address` (or `account\shared@address`) reads the
//!   INBOX of that shared mailbox, which the account must list among its
//!   shared mailboxes.
//! - Unique ids (RFC 1939 §7 UIDL): `UIDVALIDITY-UID` of the UID map,
//!   persisted in the store: the same across sessions and restarts, and a
//!   new one only if the folder is really replaced (then every id changes,
//!   and a client downloads again rather than missing mail).
//! - Sizes (RFC 1939 §5: "exact size"): the octet count of the bytes the
//!   content cache serves for the message — what RETR sends before
//!   dot-stuffing, the same number IMAP gives as RFC822.SIZE. Graph's own
//!   `size` property is the size of the item in the store (PidTagMessageSize),
//!   not of the MIME served by `$value`, so it cannot be used: a size not
//!   known yet costs the message's bytes, fetched in `$batch` groups of 20
//!   (and cached: RETR then costs nothing). UIDL costs no body at all.
//! - One session per maildrop (RFC 1939 §8: the server acquires an
//!   exclusive-access lock): a second one gets `-ERR [IN-USE]` (RFC 2449
//!   §8.1.1). The lock is per process (one gateway per data directory).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::imap::server::ImapServer;
use crate::imap::session::Authenticated;
use crate::mailbox::open::Account;
use crate::mailbox::{FolderRecord, MessageRecord, SHARED_PREFIX, Uid};

/// What opening the maildrop can run into; each is one `-ERR` reply.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    #[error("[IN-USE] another POP3 session has this maildrop open; try again when it has quit")]
    InUse,
    #[error(
        "[AUTH] {0} is not one of this account's shared mailboxes (`graphgate accounts list` \
         shows them; `accounts add LOGIN --shared ADDRESS` grants one)"
    )]
    NotShared(String),
    #[error("[SYS/TEMP] {0}")]
    Temporary(String),
}

/// The process-wide set of maildrops open now: (mailbox, remote folder id).
fn open_maildrops() -> &'static Mutex<HashSet<(String, String)>> {
    static OPEN: std::sync::OnceLock<Mutex<HashSet<(String, String)>>> = std::sync::OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// The exclusive-access lock of one maildrop, released when dropped.
struct Lock((String, String));

impl Lock {
    fn take(folder: &FolderRecord) -> Option<Lock> {
        let key = (
            folder.mailbox.to_ascii_lowercase(),
            folder.remote_id.clone(),
        );
        let inserted = open_maildrops()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        // Made only when taken: a `Lock` dropped unlocks (and locks the
        // set to do so).
        inserted.then(|| Lock(key))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let mut open = open_maildrops().lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&self.0);
    }
}

/// A login split into the local account and the shared mailbox it names
/// (`alice@contoso.com/helpdesk@contoso.com`).
pub fn split_login(login: &str) -> (&str, Option<&str>) {
    match login.find(['/', '\\']) {
        Some(i) => {
            let (account, rest) = login.split_at(i);
            let shared = rest.get(1..).filter(|s| !s.is_empty());
            (account, shared)
        }
        None => (login, None),
    }
}

/// One message of the maildrop.
pub struct Entry {
    pub record: MessageRecord,
    /// DELE said so (RFC 1939 §6: only marked until UPDATE).
    pub deleted: bool,
    /// Graph no longer has it (deleted by another client after the
    /// session started): listed nowhere, refused by number.
    pub gone: bool,
    /// The octets RETR sends (byte-stuffing aside), once known.
    pub octets: Option<u64>,
}

/// Where the content cache keeps `record`'s bytes (see
/// `crate::imap::content`: `<dir>/<first two hex digits>/<sha256>`).
fn cached_path(dir: &std::path::Path, record: &MessageRecord) -> Option<PathBuf> {
    let hash = record.content_hash.as_deref()?;
    if hash == crate::mailbox::content::EMPTY_CONTENT {
        return None;
    }
    Some(dir.join(hash.get(..2).unwrap_or("00")).join(hash))
}

/// The octets RETR sends for the file at `path`: its length, plus the
/// CRLF that ends a last line without one. `None` if it is not there.
fn served_octets(path: &std::path::Path) -> Option<u64> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len == 0 {
        return Some(0);
    }
    file.seek(SeekFrom::End(-1)).ok()?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last).ok()?;
    Some(if last[0] == b'\n' { len } else { len + 2 })
}

impl Entry {
    /// The unique-id of RFC 1939 §7 UIDL.
    pub fn unique_id(&self, folder: &FolderRecord) -> String {
        format!("{}-{}", folder.uid_validity.0, self.record.uid.0)
    }
}

/// The maildrop of a session in the TRANSACTION state.
pub struct Maildrop {
    imap: Arc<ImapServer>,
    auth: Authenticated,
    pub folder: FolderRecord,
    pub entries: Vec<Entry>,
    _lock: Lock,
}

/// What the UPDATE state did (RFC 1939 §6).
#[derive(Debug, Default)]
pub struct Updated {
    pub done: usize,
    pub failure: Option<String>,
}

/// What a deletion means, per account (`pop3.on_delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDelete {
    /// Nothing is deleted; the message is marked read.
    Keep,
    /// Moved to Deleted Items (recoverable; Graph `DELETE` on a message).
    #[default]
    Trash,
    /// Deleted for good (Graph `permanentDelete`).
    Delete,
}

impl OnDelete {
    /// What it means, for `status` and QUIT's reply.
    pub fn describe(self) -> &'static str {
        match self {
            OnDelete::Keep => "keep (nothing deleted, marked read)",
            OnDelete::Trash => "trash (moved to Deleted Items)",
            OnDelete::Delete => "delete (deleted for good)",
        }
    }

    pub fn parse(text: &str) -> Result<OnDelete, String> {
        match text.to_ascii_lowercase().as_str() {
            "keep" => Ok(OnDelete::Keep),
            "trash" => Ok(OnDelete::Trash),
            "delete" => Ok(OnDelete::Delete),
            other => Err(format!(
                "{other:?} is not a deletion mode; use keep, trash or delete"
            )),
        }
    }
}

impl Maildrop {
    /// Open the maildrop of `account` (as `login` named it), bring it up
    /// to date with one delta round and number its messages.
    pub async fn open(
        imap: Arc<ImapServer>,
        account: Account,
        login: &str,
    ) -> Result<Maildrop, MaildropError> {
        let name = match split_login(login).1 {
            None => "INBOX".to_string(),
            Some(shared) => {
                let Some(address) = account
                    .shared_mailboxes
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(shared))
                else {
                    return Err(MaildropError::NotShared(shared.to_string()));
                };
                format!("{SHARED_PREFIX}{address}/INBOX")
            }
        };
        let temporary = |what: &str, e: &dyn std::fmt::Display| {
            MaildropError::Temporary(format!("cannot {what}: {e}; try again later"))
        };
        let auth = imap
            .shared
            .open(account)
            .map_err(|e| temporary("reach the mailbox", &e))?;
        auth.model
            .refresh_folders_if_stale()
            .await
            .map_err(|e| temporary("list the mailbox's folders", &e))?;
        let folder = match auth.model.folder(&name) {
            Ok(f) => f,
            Err(_) => {
                auth.model
                    .refresh_folders()
                    .await
                    .map_err(|e| temporary("list the mailbox's folders", &e))?;
                auth.model.folder(&name).map_err(|_| {
                    MaildropError::Temporary(format!(
                        "the mailbox has no folder {name:?}; check the account's imap_inbox"
                    ))
                })?
            }
        };
        let lock = Lock::take(&folder).ok_or(MaildropError::InUse)?;
        auth.model
            .sync(folder.id)
            .await
            .map_err(|e| temporary("synchronise the INBOX", &e))?;
        let folder = auth.model.folder(&folder.name).unwrap_or(folder);
        let records = auth
            .model
            .messages(&folder)
            .map_err(|e| temporary("read the INBOX index", &e))?;
        let entries = records
            .into_iter()
            .map(|record| Entry {
                record,
                deleted: false,
                gone: false,
                octets: None,
            })
            .collect();
        Ok(Maildrop {
            imap,
            auth,
            folder,
            entries,
            _lock: lock,
        })
    }

    pub fn account(&self) -> &Account {
        &self.auth.account
    }

    /// The entry numbered `n` (1-based) unless it is deleted or gone.
    pub fn get(&self, n: u32) -> Result<&Entry, String> {
        let entry = (n as usize)
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .ok_or_else(|| {
                format!(
                    "no message {n}: the maildrop has {} (RFC 1939 numbers start at 1)",
                    self.entries.len()
                )
            })?;
        if entry.deleted {
            return Err(format!("message {n} is marked deleted (RSET unmarks it)"));
        }
        if entry.gone {
            return Err(format!(
                "message {n} was deleted in Microsoft 365 after this session started"
            ));
        }
        Ok(entry)
    }

    pub fn get_mut(&mut self, n: u32) -> Result<&mut Entry, String> {
        self.get(n)?;
        Ok(&mut self.entries[n as usize - 1])
    }

    /// Make the sizes of the entries at `indexes` known: those never
    /// fetched cost their bytes (`$batch`, cached), and each size is read
    /// from the cached file (its length, plus the CRLF RETR adds when the
    /// message does not end with a line ending: RFC 1939 §3). A message
    /// Graph no longer has is marked gone.
    pub async fn ensure_sizes(&mut self, indexes: &[usize]) -> Result<(), String> {
        // Round 0 fetches what was never fetched; round 1 what the cache
        // evicted since.
        for round in 0..2 {
            let need: Vec<usize> = indexes
                .iter()
                .copied()
                .filter(|&i| {
                    self.entries
                        .get(i)
                        .is_some_and(|e| !e.gone && e.octets.is_none())
                })
                .collect();
            if need.is_empty() {
                return Ok(());
            }
            let unfetched: Vec<MessageRecord> = need
                .iter()
                .filter_map(|&i| self.entries.get(i))
                .filter(|e| {
                    round == 1 || e.record.content_hash.is_none() || e.record.size.is_none()
                })
                .map(|e| {
                    let mut r = e.record.clone();
                    if round == 1 {
                        r.content_hash = None;
                    }
                    r
                })
                .collect();
            self.ensure(unfetched).await?;
            let dir = self.cache().dir().to_path_buf();
            let paths: Vec<Option<PathBuf>> = need
                .iter()
                .map(|&i| {
                    self.entries
                        .get(i)
                        .and_then(|e| cached_path(&dir, &e.record))
                })
                .collect();
            let octets = tokio::task::spawn_blocking(move || {
                paths
                    .into_iter()
                    .map(|p| p.and_then(|p| served_octets(&p)))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| format!("[SYS/TEMP] cannot read the message cache: {e}"))?;
            for (i, octets) in need.into_iter().zip(octets) {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.octets = octets;
                }
            }
        }
        match indexes
            .iter()
            .filter_map(|&i| self.entries.get(i))
            .find(|e| !e.gone && e.octets.is_none())
        {
            Some(e) => Err(format!(
                "[SYS/TEMP] the bytes of UID {} are not in the message cache ({}) after fetching \
                 them; check that the data directory is writable",
                e.record.uid.0,
                self.cache().dir().display()
            )),
            None => Ok(()),
        }
    }

    async fn ensure(&mut self, records: Vec<MessageRecord>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let asked: HashSet<Uid> = records.iter().map(|r| r.uid).collect();
        let backend = self.auth.model.backend_for(&self.folder).clone();
        let ready = self
            .cache()
            .ensure(backend.as_ref(), self.folder.id, records)
            .await
            .map_err(|e| format!("[SYS/TEMP] cannot fetch messages from Microsoft 365: {e}"))?;
        let ready: std::collections::HashMap<Uid, MessageRecord> =
            ready.into_iter().map(|r| (r.uid, r)).collect();
        for entry in &mut self.entries {
            if !asked.contains(&entry.record.uid) {
                continue;
            }
            match ready.get(&entry.record.uid) {
                Some(r) => entry.record = r.clone(),
                None => entry.gone = true,
            }
        }
        Ok(())
    }

    fn cache(&self) -> &crate::mailbox::content::ContentCache {
        &self.imap.shared.cache
    }

    /// The size RETR sends for an entry whose size [`Self::ensure_sizes`]
    /// made known.
    pub fn size(entry: &Entry) -> u64 {
        entry.octets.unwrap_or(0)
    }

    /// The file holding message `n`'s bytes, fetched first if needed
    /// (RETR, TOP); with the size RETR sends.
    pub async fn content_file(&mut self, n: u32) -> Result<(PathBuf, u64), String> {
        self.get(n)?;
        self.ensure_sizes(&[n as usize - 1]).await?;
        let entry = self.get(n)?;
        let dir = self.cache().dir().to_path_buf();
        let path = cached_path(&dir, &entry.record).ok_or_else(|| {
            "[SYS/TEMP] the message could not be fetched from Microsoft 365; try again".to_string()
        })?;
        Ok((path, Self::size(entry)))
    }

    /// The UPDATE state (RFC 1939 §6): apply every DELE, as the account's
    /// `on_delete` says, through the mailbox model's verbs (which tell
    /// every IMAP session on the folder).
    pub async fn update(&self, on_delete: OnDelete) -> Updated {
        let doomed: Vec<Uid> = self
            .entries
            .iter()
            .filter(|e| e.deleted && !e.gone)
            .map(|e| e.record.uid)
            .collect();
        if doomed.is_empty() {
            return Updated::default();
        }
        let model = &self.auth.model;
        let (done, failure) = match on_delete {
            OnDelete::Keep => {
                let out = model.mark_seen(&self.folder, &doomed).await;
                (out.done.len() + out.vanished.len(), out.failure)
            }
            OnDelete::Trash | OnDelete::Delete => {
                match model
                    .expunge(&self.folder, &doomed, false, on_delete == OnDelete::Delete)
                    .await
                {
                    Ok(out) => (out.done.len(), out.failure),
                    Err(e) => (0, Some(e)),
                }
            }
        };
        Updated {
            done,
            // The model's errors say what to do (BackendError's messages).
            failure: failure.map(|e| e.to_string()),
        }
    }
}
