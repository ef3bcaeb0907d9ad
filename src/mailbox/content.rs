//! The bytes served for each message, kept on disk by content hash.
//!
//! Graph's `$value` is what Exchange regenerates, not what was appended, so
//! graphgate fetches it once, stores it under its SHA-256, and records the
//! hash and exact length in the message's row: from then on RFC822.SIZE and
//! every section describe those bytes and only those. Missing contents of
//! a FETCH are fetched together (`$batch`, 20 per request). An empty or
//! truncated answer is an error, never cached (issue 22 item 6); files
//! are 0600 in 0700 directories (older ones are made so at start,
//! [`restrict_existing`]).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::backend::{MailBackend, RemoteMessageId};
use crate::store::Store;
use crate::store::folders::{FolderId, MessageRecord, Uid};

/// SHA-256 of no bytes: a content recorded by versions that cached an
/// empty (broken) answer; never a message, so never served from the cache.
pub const EMPTY_CONTENT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The hash of `record`'s cached bytes, unless it has none or it is
/// [`EMPTY_CONTENT`].
fn cached_hash(record: &MessageRecord) -> Option<&str> {
    record
        .content_hash
        .as_deref()
        .filter(|h| *h != EMPTY_CONTENT)
}

/// Messages per `$batch` round of `$value` requests.
const BATCH: usize = 20;

/// `$batch` requests in flight at once for one `ensure`: Graph's (and the
/// Graph client's, `concurrency_per_mailbox`) limit of concurrent requests
/// per mailbox. The client's per-mailbox semaphore is what enforces the
/// limit; this only keeps enough batches in flight to use it.
const BATCHES_IN_FLIGHT: usize = 4;

pub struct ContentCache {
    dir: PathBuf,
    store: Store,
    /// Size cap in bytes (0: none).
    cap: u64,
}

impl ContentCache {
    /// The BODYSTRUCTUREs kept for a folder's messages by earlier FETCHes,
    /// by UID.
    pub fn folder_structures(
        &self,
        folder: FolderId,
    ) -> Result<Vec<(Uid, Vec<u8>)>, crate::store::StoreError> {
        self.store.folder_structures(folder)
    }

    /// Keep structures computed by a FETCH (by content hash), off the
    /// answer's path; a FETCH meanwhile computes them again.
    pub fn keep_structures(&self, computed: Vec<(String, Vec<u8>)>) {
        if computed.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.cache_set_structures(&computed) {
                tracing::warn!("message cache: cannot keep computed structures: {e}");
            }
        });
    }

    pub fn new(dir: impl Into<PathBuf>, store: Store) -> ContentCache {
        ContentCache {
            dir: dir.into(),
            store,
            cap: 0,
        }
    }

    /// Keep at most `bytes` on disk (least recently used go first); 0:
    /// no cap.
    pub fn with_cap(mut self, bytes: u64) -> ContentCache {
        self.cap = bytes;
        self
    }

    /// Drop least recently used contents beyond the cap (to 90 % of it,
    /// so that eviction does not run on every fetch), never one in `keep`.
    /// An evicted message is fetched again when a client asks for it.
    async fn evict(&self, keep: std::collections::HashSet<String>) {
        if self.cap == 0 {
            return;
        }
        match self.store.cache_size() {
            Ok(total) if total > self.cap => {}
            _ => return,
        }
        let dropped = match self.store.cache_evict_to(self.cap / 10 * 9, &keep) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("message cache: cannot evict: {e}");
                return;
            }
        };
        for hash in &dropped {
            let _ = tokio::fs::remove_file(self.path(hash)).await;
        }
        tracing::debug!(dropped = dropped.len(), "message cache: evicted to its cap");
    }

    /// Mark contents used, for eviction only: off the answer's path (it
    /// was a blocking write of one row per message, and its fsync, on the
    /// task serving the FETCH).
    pub fn touch(&self, hashes: Vec<String>) {
        if hashes.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let hashes: Vec<&str> = hashes.iter().map(String::as_str).collect();
            let _ = store.cache_touch(&hashes);
        });
    }

    /// Where the contents live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keep the APPENDed `bytes` as the content of `uid` in `folder` for
    /// the UID's whole life (see [`crate::mailbox::appended`]).
    pub async fn keep_appended(
        &self,
        folder: FolderId,
        uid: Uid,
        bytes: bytes::Bytes,
    ) -> Result<String, String> {
        crate::mailbox::appended::keep(&self.store, &self.dir, folder, uid, bytes).await
    }

    fn path(&self, hash: &str) -> PathBuf {
        content_path(&self.dir, hash)
    }

    /// Where each record's bytes would be (`None`: never fetched, or
    /// recorded empty by an older version).
    fn paths(&self, records: &[&MessageRecord]) -> Vec<Option<PathBuf>> {
        records
            .iter()
            .map(|r| cached_hash(r).map(|h| self.path(h)))
            .collect()
    }

    /// The cached bytes of `record`, if they are on disk.
    pub async fn read(&self, record: &MessageRecord) -> Option<Bytes> {
        let hash = cached_hash(record)?;
        let bytes = tokio::fs::read(self.path(hash)).await.ok()?;
        crate::metrics::get()
            .mime_cache_bytes_served
            .inc_by(bytes.len() as u64);
        Some(Bytes::from(bytes))
    }

    /// The cached bytes of each record (`None` where they are not on
    /// disk), read in one blocking task.
    pub async fn read_many(&self, records: &[&MessageRecord]) -> Vec<Option<Bytes>> {
        let paths = self.paths(records);
        let n = paths.len();
        let read = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|p| p.and_then(|p| std::fs::read(p).ok()).map(Bytes::from))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|_| vec![None; n]);
        let served: usize = read.iter().flatten().map(|b| b.len()).sum();
        crate::metrics::get()
            .mime_cache_bytes_served
            .inc_by(served as u64);
        read
    }

    /// Write each group's bytes to the cache directory in one blocking
    /// task (NULs replaced first, see [`without_nul`]); returns each record
    /// with the hash and length of the bytes now on disk.
    async fn write_group(
        &self,
        bodies: Vec<(MessageRecord, Bytes)>,
    ) -> Result<Vec<(MessageRecord, String, u64)>, crate::backend::BackendError> {
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut dirs = std::collections::HashSet::new();
            bodies
                .into_iter()
                .map(|(record, bytes)| {
                    let bytes = if bytes.contains(&0) {
                        Bytes::from(without_nul(&bytes))
                    } else {
                        bytes
                    };
                    let hash = write_file(&dir, &bytes, &mut dirs)?;
                    Ok((record, hash, bytes.len() as u64))
                })
                .collect::<std::io::Result<Vec<_>>>()
        })
        .await;
        match written {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(e)) => Err(crate::backend::BackendError::transient(format!(
                "cannot write the message cache: {e}; check the data directory's free space and permissions"
            ))),
            Err(e) => Err(crate::backend::BackendError::transient(format!(
                "message cache writer failed: {e}"
            ))),
        }
    }

    /// Make sure every record has its bytes on disk, fetching the missing
    /// ones from Graph in `$batch` groups; returns the records updated with
    /// their hash and size. A message Graph no longer has is left out.
    pub async fn ensure(
        &self,
        backend: &dyn MailBackend,
        folder: FolderId,
        records: Vec<MessageRecord>,
    ) -> Result<Vec<MessageRecord>, crate::backend::BackendError> {
        let mut missing = Vec::new();
        let mut ready = Vec::with_capacity(records.len());
        // Which are on disk, looked up in one blocking task (one per
        // message was a thread hand-off each).
        let paths = self.paths(&records.iter().collect::<Vec<_>>());
        let n = paths.len();
        let on_disk = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|p| p.is_some_and(|p| std::fs::metadata(p).is_ok()))
                .collect::<Vec<bool>>()
        })
        .await
        .unwrap_or_else(|_| vec![false; n]);
        for (r, on_disk) in records.into_iter().zip(on_disk) {
            if on_disk {
                ready.push(r);
            } else {
                missing.push(r);
            }
        }
        // APPENDed bytes are served for their UID's life, never fetched
        // (mailbox/appended.rs).
        if !missing.is_empty() {
            let dir = self.dir.clone();
            let (kept, rest) = tokio::task::spawn_blocking(move || {
                crate::mailbox::appended::relink_kept(&dir, missing)
            })
            .await
            .map_err(|e| crate::graph::GraphError::Transport(format!("cache lookup: {e}")))?;
            ready.extend(kept);
            missing = rest;
        }
        // An APPEND into this folder may be about to record its bytes for
        // one of these UIDs: wait for it and take what it recorded, rather
        // than fetch Exchange's rendering (mailbox/appended.rs, IN_FLIGHT).
        if !missing.is_empty() && crate::mailbox::appended::in_flight(folder) {
            crate::mailbox::appended::settled(folder).await;
            let fresh: Vec<MessageRecord> = missing
                .into_iter()
                .map(|r| {
                    self.store
                        .message_by_remote_id(folder, &r.remote_id)
                        .ok()
                        .flatten()
                        .filter(|f| f.uid == r.uid)
                        .unwrap_or(r)
                })
                .collect();
            let dir = self.dir.clone();
            let (kept, rest) = tokio::task::spawn_blocking(move || {
                crate::mailbox::appended::relink_kept(&dir, fresh)
            })
            .await
            .map_err(|e| crate::backend::BackendError::transient(format!("cache lookup: {e}")))?;
            ready.extend(kept);
            missing = rest;
        }
        let metrics = crate::metrics::get();
        metrics.mime_cache_hits.inc_by(ready.len() as u64);
        self.touch(
            ready
                .iter()
                .filter_map(|r| r.content_hash.clone())
                .collect(),
        );
        metrics.mime_cache_misses.inc_by(missing.len() as u64);
        // Up to BATCHES_IN_FLIGHT batches at once, a new one sent as soon as
        // any finishes; each batch's bytes are written in one blocking task
        // while the other batches keep going (the loop used to stop polling
        // the batches in flight while it wrote one batch's files, a few
        // thread hand-offs and a SQLite commit per message).
        let mut groups = missing.chunks(BATCH);
        let mut fetches = futures::stream::FuturesUnordered::new();
        let mut writes = futures::stream::FuturesUnordered::new();
        let mut recorded = Vec::new();
        let mut failed = None;
        loop {
            // After a failure no new batch starts; the batches in flight
            // finish, and what they and the others wrote is recorded.
            while failed.is_none() && fetches.len() < BATCHES_IN_FLIGHT {
                match groups.next() {
                    Some(group) => fetches.push(fetch_group(backend, group)),
                    None => break,
                }
            }
            tokio::select! {
                Some((group, fetched)) = fetches.next() => match fetched {
                    Ok(fetched) => {
                        let mut bodies = Vec::with_capacity(group.len());
                        for (record, (_, result)) in group.iter().zip(fetched) {
                            match result {
                                // The backend refuses empty bodies; this
                                // keeps any other way from caching one.
                                Ok(bytes) if bytes.is_empty() => {
                                    failed = failed.or(Some(crate::backend::BackendError::transient(
                                        format!(
                                            "Graph delivered no bytes for UID {}; not cached, \
                                             fetched again on the next FETCH",
                                            record.uid.0
                                        ),
                                    )));
                                }
                                Ok(bytes) => bodies.push((record.clone(), bytes)),
                                Err(e) if e.is_not_found() => {
                                    tracing::debug!(uid = record.uid.0, "message gone before its fetch");
                                }
                                Err(e) => failed = failed.or(Some(e)),
                            }
                        }
                        if !bodies.is_empty() {
                            writes.push(self.write_group(bodies));
                        }
                    }
                    Err(e) => failed = failed.or(Some(e)),
                },
                Some(written) = writes.next() => match written {
                    Ok(written) => {
                        for (record, hash, size) in written {
                            if record.content_hash.as_deref().is_some_and(|h| h != hash) {
                                tracing::warn!(
                                    uid = record.uid.0,
                                    "the message's bytes changed after they were served (cache \
                                     evicted and Exchange rendered it differently)"
                                );
                            }
                            metrics.mime_cache_bytes_fetched.inc_by(size);
                            recorded.push((record.uid, hash.clone(), size));
                            let mut r = record;
                            r.content_hash = Some(hash);
                            r.size = Some(size);
                            ready.push(r);
                        }
                    }
                    Err(e) => failed = failed.or(Some(e)),
                },
                else => break,
            }
        }
        if !recorded.is_empty() {
            // One transaction (one commit) for the whole FETCH: each
            // message's hash and size, and each content in the cache index.
            let store = self.store.clone();
            let _ =
                tokio::task::spawn_blocking(move || store.record_contents(folder, &recorded)).await;
            let keep = ready
                .iter()
                .filter_map(|r| r.content_hash.clone())
                .collect();
            self.evict(keep).await;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        ready.sort_by_key(|r| r.uid);
        Ok(ready)
    }
}

/// One `$batch` of `$value` requests (a lone message: one GET).
async fn fetch_group<'a>(
    backend: &dyn MailBackend,
    group: &'a [MessageRecord],
) -> (
    &'a [MessageRecord],
    Result<
        Vec<(RemoteMessageId, Result<Bytes, crate::backend::BackendError>)>,
        crate::backend::BackendError,
    >,
) {
    let ids: Vec<RemoteMessageId> = group
        .iter()
        .map(|r| RemoteMessageId::new(r.remote_id.clone()))
        .collect();
    let fetched = if ids.len() == 1 {
        Ok(vec![(ids[0].clone(), backend.fetch_mime(&ids[0]).await)])
    } else {
        backend.fetch_mimes(&ids).await
    };
    (group, fetched)
}

/// Store `bytes` under their SHA-256 in `dir` (written to a temporary
/// name, then renamed, so a reader never sees part of a file); `dirs`
/// remembers the prefix directories already made. Returns the hash.
fn write_file(
    dir: &Path,
    bytes: &[u8],
    dirs: &mut std::collections::HashSet<PathBuf>,
) -> std::io::Result<String> {
    let hash = hex::encode(Sha256::digest(bytes));
    let path = content_path(dir, &hash);
    if std::fs::metadata(&path).is_ok() {
        return Ok(hash);
    }
    if let Some(parent) = path.parent()
        && !dirs.contains(parent)
    {
        private_dirs(parent)?;
        dirs.insert(parent.to_path_buf());
    }
    let tmp = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
    write_private(&tmp, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(hash)
}

/// Make `dir` and its missing parents, readable by the owner only (mail
/// is private: the cache lives in the data directory, itself 0700).
fn private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Write `bytes` to a new file at `path`, readable by the owner only
/// (0600 on Unix, whatever the umask allows for other files).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.flush()
}

/// Where the bytes with `hash` live under `dir`.
fn content_path(dir: &Path, hash: &str) -> PathBuf {
    let prefix = hash.get(..2).unwrap_or("00");
    dir.join(prefix).join(hash)
}

/// The bytes with every NUL replaced by 0x80, as Dovecot does: an IMAP
/// literal cannot carry NUL, and the bytes served (and their size) must be
/// the same every time, so the substitution happens once, before caching.
pub fn without_nul(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b == 0 { 0x80 } else { b })
        .collect()
}

/// Make the cache under `dir` the owner's alone: versions before this one
/// wrote contents 0644 in 0755 directories (under the 0700 data
/// directory). Run once at start, off the serving path; returns how many
/// entries were changed.
#[cfg(unix)]
pub fn restrict_existing(dir: &Path) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let restrict = |path: &Path, mode: u32, dir: bool| -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        let kind_matches = if dir { meta.is_dir() } else { meta.is_file() };
        kind_matches
            && meta.permissions().mode() & 0o077 != 0
            && std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).is_ok()
    };
    let mut changed = usize::from(restrict(dir, 0o700, true));
    let Ok(prefixes) = std::fs::read_dir(dir) else {
        return changed;
    };
    for prefix in prefixes.flatten() {
        let prefix = prefix.path();
        changed += usize::from(restrict(&prefix, 0o700, true));
        let Ok(files) = std::fs::read_dir(&prefix) else {
            continue;
        };
        for file in files.flatten() {
            changed += usize::from(restrict(&file.path(), 0o600, false));
        }
    }
    changed
}

#[cfg(not(unix))]
pub fn restrict_existing(_dir: &Path) -> usize {
    0
}

/// Where the content cache lives under the data directory.
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache")
}

/// Look a UID up in records sorted by UID.
pub fn find(records: &[MessageRecord], uid: Uid) -> Option<&MessageRecord> {
    records
        .binary_search_by_key(&uid, |r| r.uid)
        .ok()
        .map(|i| &records[i])
}
