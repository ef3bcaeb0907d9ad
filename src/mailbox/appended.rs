//! The bytes an IMAP client APPENDed, served for that message's UID.
//!
//! Graph cannot store a message's bytes: Exchange keeps properties and
//! regenerates MIME on `$value` ("Get MIME content of a message": Outlook
//! does not save messages in MIME format), so what comes back has other
//! boundaries, encodings, header order and folding, one body instead of a
//! `multipart/alternative`, `Date` in UTC, and none of the fields without a
//! property (docs/append.md lists them). RFC 3501 §2.3.1.1 and §2.3 want
//! a UID to name the same bytes for ever. So the gateway keeps the bytes:
//!
//! **Rule.** The APPENDed bytes are written under their SHA-256 in
//! `<data dir>/appended/` and recorded as the content of the UID APPEND
//! returned. From then on every FETCH of that UID (BODY[], RFC822.SIZE,
//! ENVELOPE, BODYSTRUCTURE, sections) is served from them, for the UID's
//! whole life, whatever Exchange would render. The copy in the content
//! cache may be evicted; [`relink_kept`] puts it back from here before the
//! cache would fetch `$value`.
//!
//! Why for the UID's life and not "while the item's changeKey is
//! unchanged": an APPENDed item is not a draft, and Graph lets a client
//! change a message's content (`body`, `subject`, recipients,
//! `internetMessageId`) only while `isDraft` is true (message resource:
//! "Updatable only if isDraft = true"); what can change on a non-draft item
//! (`isRead`, `flag`, `categories`, extended properties) is IMAP flags, not
//! the bytes. changeKey changes with every flag change, so a changeKey rule
//! would switch a UID's bytes to Exchange's rendering at the first STORE,
//! which is exactly what RFC 3501 forbids. A message moved or deleted in
//! Graph leaves the folder, and its UID is expunged with it.
//!
//! NUL bytes are stored as 0x80, as the content cache stores fetched
//! bytes (and as Dovecot does): a literal cannot carry NUL (RFC 3501 §4.3),
//! and the bytes served must be the same every time.
//!
//! A COPY or MOVE of such a message carries the kept bytes to the copy's
//! UID ([`carry`]): the copy is the same message (RFC 3501 §6.4.7), and
//! Exchange's rendering of the new item would differ from what the client
//! APPENDed. Once no message row names a kept content any more (its UIDs
//! expunged, deleted or moved away in Graph), [`sweep`] deletes it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::Store;
use crate::store::folders::{FolderId, MessageRecord, Uid};

/// APPENDs under way, by folder: from before Graph creates the item until
/// its bytes are recorded for its UID. Another session's sync may give the
/// new item its UID in between; the content cache waits for these before it
/// fetches a missing body of the folder from Graph, so the UID never serves
/// Exchange's rendering first and the APPENDed bytes after (imaptest's
/// stress run caught that: "ENVELOPE changed").
static IN_FLIGHT: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<FolderId, usize>>,
> = std::sync::LazyLock::new(Default::default);
static SETTLED: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

/// One APPEND under way in a folder, until dropped.
pub struct InFlight(FolderId);

/// Mark an APPEND into `folder` as under way (see [`IN_FLIGHT`]).
pub fn begin(folder: FolderId) -> InFlight {
    if let Ok(mut map) = IN_FLIGHT.lock() {
        *map.entry(folder).or_default() += 1;
    }
    InFlight(folder)
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut map) = IN_FLIGHT.lock()
            && let Some(n) = map.get_mut(&self.0)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.0);
            }
        }
        SETTLED.notify_waiters();
    }
}

/// Whether an APPEND into `folder` is under way.
pub fn in_flight(folder: FolderId) -> bool {
    IN_FLIGHT.lock().is_ok_and(|map| map.contains_key(&folder))
}

/// Wait until no APPEND into `folder` is under way.
pub async fn settled(folder: FolderId) {
    loop {
        // Registered before the look, so a drop in between is seen.
        let notified = SETTLED.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !in_flight(folder) {
            return;
        }
        notified.await;
    }
}

/// Held while bytes are written and recorded ([`keep`], [`carry`]) and
/// while unreferenced ones are deleted ([`sweep`]): a sweep never deletes
/// a file an APPEND of the same bytes has just found there.
static KEEPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where APPENDed bytes are kept: `appended/` beside the content cache's
/// directory (both under the data directory).
pub fn appended_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.with_file_name("appended")
}

/// `dir/ab/abcdef…`: the content cache's layout (content.rs).
fn content_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(hash.get(..2).unwrap_or("00")).join(hash)
}

/// The bytes as they will be served: every NUL replaced by 0x80.
pub fn served_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b == 0 { 0x80 } else { b })
        .collect()
}

/// Make `dir` and its parents, the owner's alone.
fn private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Write `bytes` to `path` (a temporary name, then renamed), 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if std::fs::metadata(path).is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        private_dirs(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let result = result.and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Put the kept copy of `hash` into the content cache at `cache_dir` (a
/// hard link; a copy where links are not possible). False: not kept here.
fn relink(cache_dir: &Path, hash: &str) -> bool {
    let kept = content_path(&appended_dir(cache_dir), hash);
    if std::fs::metadata(&kept).is_err() {
        return false;
    }
    let cached = content_path(cache_dir, hash);
    if std::fs::metadata(&cached).is_ok() {
        return true;
    }
    if let Some(parent) = cached.parent()
        && private_dirs(parent).is_err()
    {
        return false;
    }
    std::fs::hard_link(&kept, &cached).is_ok()
        || std::fs::read(&kept)
            .and_then(|b| write_private(&cached, &b))
            .is_ok()
}

/// Keep the APPENDed `bytes` as the content of `uid` in `folder`: written
/// under their hash, linked into the content cache at `cache_dir`,
/// recorded (hash and size) in the message's row. Returns the hash.
pub async fn keep(
    store: &Store,
    cache_dir: &Path,
    folder: FolderId,
    uid: Uid,
    bytes: bytes::Bytes,
) -> Result<String, String> {
    let store = store.clone();
    let cache_dir = cache_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        // No second copy of a large message unless it has NUL bytes.
        let served: std::borrow::Cow<'_, [u8]> = if bytes.contains(&0) {
            served_bytes(&bytes).into()
        } else {
            bytes.as_ref().into()
        };
        let hash = hex::encode(Sha256::digest(&served));
        let kept = content_path(&appended_dir(&cache_dir), &hash);
        let _keeping = KEEPING.lock().unwrap_or_else(|e| e.into_inner());
        write_private(&kept, &served)
            .map_err(|e| format!("keeping the APPENDed bytes in {}: {e}", kept.display()))?;
        relink(&cache_dir, &hash);
        store
            .record_contents(folder, &[(uid, hash.clone(), served.len() as u64)])
            .map_err(|e| format!("recording the APPENDed bytes: {e}"))?;
        Ok(hash)
    })
    .await
    .map_err(|e| format!("keeping the APPENDed bytes: {e}"))?
}

/// The kept directory of the data directory `store` lives in (`None`
/// for an in-memory store).
fn kept_dir(store: &Store) -> Option<PathBuf> {
    let path = store.path();
    (path.is_absolute() && path.parent().is_some()).then(|| path.with_file_name("appended"))
}

/// COPY / MOVE: each copy whose source serves kept APPENDed bytes serves
/// the same bytes (`copies` pairs a source's row with the copy's UID in
/// `to`). Call it with an [`InFlight`] of `to` held from before Graph
/// creates the copies, so no FETCH gives the copy Exchange's rendering
/// first.
pub async fn carry(store: &Store, to: FolderId, copies: Vec<(MessageRecord, Uid)>) {
    let Some(dir) = kept_dir(store) else { return };
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _keeping = KEEPING.lock().unwrap_or_else(|e| e.into_inner());
        let contents: Vec<(Uid, String, u64)> = copies
            .into_iter()
            .filter_map(|(source, uid)| {
                let hash = source.content_hash?;
                let size = std::fs::metadata(content_path(&dir, &hash)).ok()?.len();
                Some((uid, hash, size))
            })
            .collect();
        if contents.is_empty() {
            return Ok(());
        }
        store.record_contents(to, &contents)
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            "COPY: the copies of APPENDed messages serve what Graph renders: {e} (check the \
             data directory's free space and permissions)"
        ),
        Err(e) => tracing::warn!("COPY: carrying APPENDed bytes: {e}"),
    }
}

/// Whether any of `records` serves kept APPENDed bytes.
pub fn any_kept(store: &Store, records: &[&MessageRecord]) -> bool {
    let Some(dir) = kept_dir(store) else {
        return false;
    };
    records.iter().any(|r| {
        r.content_hash
            .as_deref()
            .is_some_and(|h| std::fs::metadata(content_path(&dir, h)).is_ok())
    })
}

/// Delete the kept bytes no message row names any more, in the
/// background (after messages were removed from the store). Returns at
/// once; see [`sweep_now`].
pub fn sweep(store: &Store) {
    let Some(dir) = kept_dir(store) else { return };
    if std::fs::metadata(&dir).is_err() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    // One sweep waiting per directory covers every removal before it (it
    // looks at the whole directory).
    if !SWEEP_PENDING
        .lock()
        .is_ok_and(|mut pending| pending.insert(dir.clone()))
    {
        return;
    }
    let store = store.clone();
    runtime.spawn(async move {
        // A MOVE forgets its sources before it carries their bytes to the
        // copies: no sweep while an APPEND or COPY is under way.
        all_settled().await;
        if let Ok(mut pending) = SWEEP_PENDING.lock() {
            pending.remove(&dir);
        }
        let swept = tokio::task::spawn_blocking(move || {
            let result = sweep_now(&store, &dir);
            (result, dir)
        })
        .await;
        match swept {
            Ok((Ok(0), _)) => {}
            Ok((Ok(n), _)) => {
                tracing::debug!(removed = n, "APPENDed bytes no UID names any more deleted")
            }
            Ok((Err(e), dir)) => tracing::warn!(
                "sweeping {}: {e}; unreferenced APPENDed bytes stay on disk until the next \
                 expunge (check the data directory's permissions)",
                dir.display()
            ),
            Err(e) => tracing::warn!("sweeping APPENDed bytes: {e}"),
        }
    });
}

/// Directories with a sweep waiting to run.
static SWEEP_PENDING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
    std::sync::LazyLock::new(Default::default);

/// Wait until no APPEND or COPY of kept bytes is under way anywhere.
async fn all_settled() {
    loop {
        let notified = SETTLED.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if IN_FLIGHT.lock().map_or(true, |map| map.is_empty()) {
            return;
        }
        notified.await;
    }
}

/// Delete the files of `dir` (`ab/abcdef…`) whose hash no message row
/// names; the number deleted.
pub fn sweep_now(store: &Store, dir: &Path) -> Result<usize, String> {
    let _keeping = KEEPING.lock().unwrap_or_else(|e| e.into_inner());
    let in_use = store
        .contents_in_use()
        .map_err(|e| format!("reading the contents in use: {e}"))?;
    let mut removed = 0;
    let shards = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let Some(name) = name.to_str() else { continue };
            // Temporary files of a write under way have an extension.
            if name.contains('.') || in_use.contains(name) {
                continue;
            }
            if std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The content cache's hook: of `records` whose bytes are not in the cache,
/// those whose content was APPENDed here are linked back and ready; the
/// rest still need `$value`. Returns (ready, missing).
pub fn relink_kept(
    cache_dir: &Path,
    records: Vec<MessageRecord>,
) -> (Vec<MessageRecord>, Vec<MessageRecord>) {
    if std::fs::metadata(appended_dir(cache_dir)).is_err() {
        return (Vec::new(), records);
    }
    records.into_iter().partition(|r| {
        r.content_hash
            .as_deref()
            .is_some_and(|h| relink(cache_dir, h))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_bytes_come_back_after_the_cache_lost_them() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let served = served_bytes(b"Subject: a\r\n\r\nx\0y\r\n");
        assert_eq!(served, b"Subject: a\r\n\r\nx\x80y\r\n");
        let hash = hex::encode(Sha256::digest(&served));
        write_private(&content_path(&appended_dir(&cache), &hash), &served).unwrap();
        assert!(relink(&cache, &hash));
        let cached = content_path(&cache, &hash);
        assert_eq!(std::fs::read(&cached).unwrap(), served);
        std::fs::remove_file(&cached).unwrap();
        assert!(relink(&cache, &hash), "relinked after eviction");
        assert_eq!(std::fs::read(&cached).unwrap(), served);
        assert!(!relink(&cache, "00ff"), "never APPENDed here");
    }
}
