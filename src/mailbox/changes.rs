//! The model's verbs by UID: set flags, mark seen, copy, move, expunge,
//! append. Each change to a folder's messages runs under the folder's
//! gate ([`super::events`]), reads the latest stored state there, sends
//! the change to Graph, and stores it only once Graph has acknowledged it;
//! then it announces the change to every session on the folder. A sync
//! merge takes the same gate, so it never lands between a change sent and
//! its acknowledgement (and never undoes it).
//!
//! A message Graph no longer has (`ErrorItemNotFound`: another client
//! expunged it) is not an error of the verb: it is forgotten like an
//! expunge, reported in the outcome's `vanished`, and the verb goes on
//! with the rest of its set.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::events::{self, FolderGate};
use super::flags::{self, Flags};
use super::{MailboxModel, MailboxSet, ModelError};
use crate::backend::{AppendOptions, BackendError, FlagStatus, FlagUpdate, RemoteFolderId};
use crate::backend::{RemoteMessage, RemoteMessageId};
use crate::store::folders::{FolderRecord, MessageRecord, NewMessage, Uid};

/// How a STORE combines its flags with a message's (RFC 3501 §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

/// A flag change asked for: system flags as bits, keywords as atoms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub op: FlagOp,
    pub bits: u32,
    pub keywords: Vec<String>,
}

impl FlagChange {
    /// The flags `old` has after the change. `\Draft` changes in the
    /// index only (see [`flags`]); Graph's last `isDraft` is kept.
    pub fn apply(&self, old: &Flags) -> Flags {
        let asked = self.bits & !flags::GRAPH_DRAFT;
        let bits = match self.op {
            FlagOp::Replace => asked,
            FlagOp::Add => old.bits | asked,
            FlagOp::Remove => old.bits & !asked,
        };
        let bits = (bits & !flags::GRAPH_DRAFT) | (old.bits & flags::GRAPH_DRAFT);
        let mut keywords = match self.op {
            FlagOp::Replace => self.keywords.clone(),
            FlagOp::Add => {
                let mut k = old.keywords.clone();
                k.extend(self.keywords.iter().cloned());
                k
            }
            FlagOp::Remove => old
                .keywords
                .iter()
                .filter(|k| !self.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)))
                .cloned()
                .collect(),
        };
        keywords.sort();
        keywords.dedup();
        Flags { bits, keywords }
    }
}

/// The Graph update that takes a message from `old` to `new`
/// (`\Deleted` and `\Draft` are local; `None` fields are left as they
/// are).
fn graph_update(old: &Flags, new: &Flags) -> FlagUpdate {
    let changed = |bit: u32| (old.bits & bit) != (new.bits & bit);
    FlagUpdate {
        is_read: changed(flags::SEEN).then_some(new.bits & flags::SEEN != 0),
        flag: changed(flags::FLAGGED).then_some(if new.bits & flags::FLAGGED != 0 {
            FlagStatus::Flagged
        } else {
            FlagStatus::NotFlagged
        }),
        answered: changed(flags::ANSWERED).then_some(new.bits & flags::ANSWERED != 0),
        forwarded: changed(flags::FORWARDED).then_some(new.bits & flags::FORWARDED != 0),
        categories: (new.keywords != old.keywords).then(|| new.keywords.clone()),
    }
}

/// A message's flags as stored after a verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub uid: Uid,
    pub flags: u32,
    pub keywords: String,
    /// Its mod-sequence after the verb (RFC 7162).
    pub modseq: u64,
}

/// What a verb over a set did.
#[derive(Debug)]
pub struct Outcome<T> {
    /// One entry per message done, in the order asked.
    pub done: Vec<T>,
    /// Messages Graph no longer had: forgotten (expunged) here.
    pub vanished: Vec<Uid>,
    /// The error that stopped the verb before the end of its set; what
    /// `done` lists was done and stored.
    pub failure: Option<ModelError>,
    /// Messages left alone because they changed after the mod-sequence
    /// the verb was conditional on (STORE UNCHANGEDSINCE, RFC 7162
    /// §3.1.3).
    pub modified: Vec<Uid>,
}

impl<T> Default for Outcome<T> {
    fn default() -> Self {
        Outcome {
            done: Vec::new(),
            vanished: Vec::new(),
            failure: None,
            modified: Vec::new(),
        }
    }
}

fn not_found(e: &BackendError) -> bool {
    e.is_not_found()
}

fn find(records: &[MessageRecord], uid: Uid) -> Option<&MessageRecord> {
    records
        .binary_search_by_key(&uid, |r| r.uid)
        .ok()
        .and_then(|i| records.get(i))
}

impl MailboxModel {
    /// The gate of one of this model's folders.
    pub fn gate(&self, folder: &FolderRecord) -> Arc<FolderGate> {
        events::gate(&folder.mailbox, &folder.remote_id)
    }

    /// The messages of a folder as stored, in UID order.
    pub fn messages(&self, folder: &FolderRecord) -> Result<Vec<MessageRecord>, ModelError> {
        Ok(self.store.messages(folder.id)?)
    }

    /// Forget `remote_ids` (gone from Graph) and announce it; the UIDs.
    fn forget(&self, folder: &FolderRecord, remote_ids: &[String]) -> Result<Vec<Uid>, ModelError> {
        if remote_ids.is_empty() {
            return Ok(Vec::new());
        }
        let removed = self.store.remove_messages(folder.id, remote_ids)?;
        crate::mailbox::appended::sweep(&self.store);
        Ok(removed)
    }

    /// STORE: change the flags of `uids`, each computed from its latest
    /// stored flags under the folder's gate (two sessions adding keywords
    /// to one message both keep theirs). Graph first, then the index.
    pub async fn set_flags(
        &self,
        folder: &FolderRecord,
        uids: &[Uid],
        change: &FlagChange,
    ) -> Result<Outcome<Stored>, ModelError> {
        self.set_flags_unchanged_since(folder, uids, change, None)
            .await
    }

    /// [`MailboxModel::set_flags`], but a message whose mod-sequence is
    /// above `unchanged_since` is left alone and listed in the outcome's
    /// `modified` (STORE UNCHANGEDSINCE, RFC 7162 §3.1.3), decided under
    /// the gate so no change slips between the test and the store.
    pub async fn set_flags_unchanged_since(
        &self,
        folder: &FolderRecord,
        uids: &[Uid],
        change: &FlagChange,
        unchanged_since: Option<u64>,
    ) -> Result<Outcome<Stored>, ModelError> {
        let gate = self.gate(folder);
        let held = gate.hold().await;
        let records = self.store.messages(folder.id)?;
        let mut out = Outcome::default();
        let mut gone = Vec::new();
        let mut writes = Vec::new();
        // Every message's new flags from its latest stored ones; what
        // Graph must change goes in one batched request (`$batch` of 20).
        let planned: Vec<(&MessageRecord, Flags, Flags)> = uids
            .iter()
            // Expunged meanwhile by another session: nothing to change.
            .filter_map(|uid| find(&records, *uid))
            .filter(|r| match unchanged_since {
                Some(since) if r.modseq > since => {
                    out.modified.push(r.uid);
                    false
                }
                _ => true,
            })
            .map(|r| {
                let old = Flags::from_store(r.flags, &r.keywords);
                let new = change.apply(&old);
                (r, old, new)
            })
            .collect();
        let updates: Vec<(RemoteMessageId, FlagUpdate)> = planned
            .iter()
            .map(|(r, old, new)| {
                (
                    RemoteMessageId::new(r.remote_id.clone()),
                    graph_update(old, new),
                )
            })
            .collect();
        let results = match self.backend.update_flags_many(&updates).await {
            Ok(results) => results,
            Err(e) => {
                out.failure = Some(e.into());
                return Ok(out);
            }
        };
        // One item's failure (another client expunged it, or Graph refused
        // it) does not stop the others.
        for ((r, old, new), result) in planned.into_iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(e) if not_found(&e) => {
                    gone.push(r.remote_id.clone());
                    continue;
                }
                Err(e) => {
                    if out.failure.is_none() {
                        out.failure = Some(e.into());
                    }
                    continue;
                }
            }
            let (bits, keywords) = new.to_store();
            if new != old {
                writes.push((r.uid, bits, keywords.clone()));
            }
            out.done.push(Stored {
                uid: r.uid,
                flags: bits,
                keywords,
                modseq: r.modseq,
            });
        }
        // One transaction and one mod-sequence for what changed.
        let modseq = self.store.set_messages_flags(folder.id, &writes)?;
        if let Some(modseq) = modseq {
            for stored in &mut out.done {
                if writes.iter().any(|(u, ..)| *u == stored.uid) {
                    stored.modseq = modseq;
                }
            }
        }
        out.vanished = self.forget(folder, &gone)?;
        // Every keyword a STORE names is defined for the folder from now
        // on (as Dovecot creates it, even for -FLAGS or a message gone).
        if out.failure.is_none() {
            let mut named = change.keywords.clone();
            if change.bits & flags::FORWARDED != 0 {
                named.push("$Forwarded".into());
            }
            self.store.define_keywords(folder.id, &named.join(" "))?;
        }
        drop(held);
        if modseq.is_some() || !out.vanished.is_empty() {
            gate.announce();
        }
        Ok(out)
    }

    /// The `\Seen` a non-PEEK body FETCH sets (RFC 3501 §6.4.5), written
    /// back to Graph. A message Graph refused stays unseen in the index
    /// (and the session hears so at its next command): the failure is
    /// logged, not hidden.
    pub async fn mark_seen(&self, folder: &FolderRecord, uids: &[Uid]) -> Outcome<Stored> {
        let change = FlagChange {
            op: FlagOp::Add,
            bits: flags::SEEN,
            keywords: Vec::new(),
        };
        match self.set_flags(folder, uids, &change).await {
            Ok(out) => {
                if let Some(e) = &out.failure {
                    tracing::warn!(
                        folder = %folder.name,
                        "could not mark fetched messages read in Graph: {e}; they stay unseen \
                         and the client is told so at its next command"
                    );
                }
                out
            }
            Err(e) => {
                tracing::warn!(
                    folder = %folder.name,
                    "could not mark fetched messages read: {e}; they stay unseen"
                );
                Outcome {
                    failure: Some(e),
                    ..Outcome::default()
                }
            }
        }
    }

    /// COPY (or MOVE when `moving`) of `uids` from `from` into `to`, both
    /// folders of this mailbox. The outcome pairs each source UID with the
    /// UID the copy got in `to` (for COPYUID), when the target's sync has
    /// seen it.
    ///
    /// MOVE into the folder itself is what Dovecot does (RFC 6851 allows
    /// it): the message stays and gets a new UID; Graph is not asked. COPY
    /// into the folder itself is a Graph copy: a new item, a new UID.
    pub async fn copy(
        &self,
        from: &FolderRecord,
        uids: &[Uid],
        to: &FolderRecord,
        moving: bool,
    ) -> Result<Outcome<(Uid, Uid)>, ModelError> {
        let gate = self.gate(from);
        if moving && from.id == to.id {
            let held = gate.hold().await;
            let pairs = self.store.renumber_messages(from.id, uids)?;
            drop(held);
            if !pairs.is_empty() {
                gate.announce();
            }
            return Ok(Outcome {
                done: pairs,
                ..Outcome::default()
            });
        }
        self.start_recent(to)?;
        let held = gate.hold().await;
        let records = self.store.messages(from.id)?;
        // Copies of APPENDed messages serve the APPENDed bytes (appended.rs).
        let carrying = crate::mailbox::appended::any_kept(
            &self.store,
            &uids
                .iter()
                .filter_map(|u| find(&records, *u))
                .collect::<Vec<_>>(),
        )
        .then(|| crate::mailbox::appended::begin(to.id));
        let target = RemoteFolderId::new(to.remote_id.clone());
        let mut out = Outcome::default();
        let mut created: Vec<(MessageRecord, RemoteMessage)> = Vec::new();
        let mut moved = Vec::new();
        let mut gone = Vec::new();
        let sources: Vec<&MessageRecord> = uids.iter().filter_map(|u| find(&records, *u)).collect();
        let ids: Vec<RemoteMessageId> = sources
            .iter()
            .map(|r| RemoteMessageId::new(r.remote_id.clone()))
            .collect();
        // One batched request (`$batch` of 20) for the whole set; one
        // item's failure does not stop the others.
        let results = if moving {
            self.backend.move_messages(&ids, &target).await
        } else {
            self.backend.copy_messages(&ids, &target).await
        };
        match results {
            Ok(results) => {
                for (r, result) in sources.into_iter().zip(results) {
                    match result {
                        Ok(copy) => {
                            created.push((r.clone(), copy));
                            if moving {
                                moved.push(r.remote_id.clone());
                            }
                        }
                        Err(e) if not_found(&e) => gone.push(r.remote_id.clone()),
                        Err(e) => {
                            if out.failure.is_none() {
                                out.failure = Some(e.into());
                            }
                        }
                    }
                }
            }
            Err(e) => out.failure = Some(e.into()),
        }
        gone.extend(moved);
        let removed = self.forget(from, &gone)?;
        out.vanished = removed
            .into_iter()
            .filter(|u| !created.iter().any(|(from, _)| from.uid == *u))
            .collect();
        drop(held);
        if !gone.is_empty() {
            gate.announce();
        }
        if !created.is_empty() {
            self.number_copies(to, &created, moving).await?;
            let mut copies = Vec::new();
            for (source, copy) in created {
                if let Some(m) = self.store.message_by_remote_id(to.id, copy.id.as_str())? {
                    out.done.push((source.uid, m.uid));
                    copies.push((source, m.uid));
                }
            }
            if carrying.is_some() {
                crate::mailbox::appended::carry(&self.store, to.id, copies).await;
            }
        }
        Ok(out)
    }

    /// The copies (or moved messages) of a COPY / MOVE into `to` get
    /// their UIDs in the order of the source set (RFC 4315 §3 pairs them
    /// so; a sync would number them by received time, and copies of
    /// messages received at the same second came out shuffled) and the
    /// source's flags, `\Deleted` and `\Draft` included, as Dovecot
    /// copies them (RFC 3501 §6.4.7: "the flags … SHOULD be preserved";
    /// imaptest `copy`). Under the target's gate, taken after the source's
    /// is released: two MOVEs in opposite directions cannot wait on each
    /// other. Graph's copy keeps isRead, flag and categories (the copy
    /// is the same item in another folder); a Graph-side flag the copy's
    /// answer shows otherwise is written to it, and the target's sync
    /// then confirms what Graph has.
    async fn number_copies(
        &self,
        to: &FolderRecord,
        created: &[(MessageRecord, RemoteMessage)],
        moving: bool,
    ) -> Result<(), ModelError> {
        let verb = if moving { "MOVE" } else { "COPY" };
        let updates: Vec<(RemoteMessageId, FlagUpdate)> = created
            .iter()
            .map(|(source, copy)| {
                let wanted = Flags::from_store(source.flags, &source.keywords);
                (
                    copy.id.clone(),
                    graph_update(&Flags::merged(&wanted, copy), &wanted),
                )
            })
            .filter(|(_, update)| *update != FlagUpdate::default())
            .collect();
        if !updates.is_empty() {
            let failed = match self.backend.update_flags_many(&updates).await {
                Ok(results) => results.into_iter().find_map(Result::err),
                Err(e) => Some(e),
            };
            if let Some(e) = failed {
                tracing::warn!(folder = %to.name, "{verb}: the copies' flags could not all be set in Graph: {e}");
            }
        }
        let target = self.gate(to);
        let held = target.hold().await;
        let additions: Vec<NewMessage> = created
            .iter()
            .map(|(source, copy)| NewMessage {
                remote_id: copy.id.as_str().to_string(),
                flags: source.flags,
                keywords: source.keywords.clone(),
                size: None,
                internal_date: copy
                    .received
                    .map(|d| d.timestamp())
                    .or(source.internal_date),
            })
            .collect();
        let added = self.store.add_messages(to.id, &additions)?;
        drop(held);
        if !added.is_empty() {
            target.announce();
        }
        if let Err(e) = self.sync(to.id).await {
            tracing::warn!(folder = %to.name, "sync after {verb}: {e}");
        }
        Ok(())
    }

    /// EXPUNGE: delete `doomed` in Graph (to Deleted Items, or for good
    /// when `permanently`) and forget them. With `only_deleted`, only
    /// those still marked `\Deleted` under the gate (another session may
    /// have cleared the flag meanwhile). The outcome's `done` lists the
    /// UIDs expunged.
    pub async fn expunge(
        &self,
        folder: &FolderRecord,
        doomed: &[Uid],
        only_deleted: bool,
        permanently: bool,
    ) -> Result<Outcome<Uid>, ModelError> {
        let gate = self.gate(folder);
        let held = gate.hold().await;
        let records = self.store.messages(folder.id)?;
        let mut out = Outcome::default();
        let mut gone = Vec::new();
        let targets: Vec<&MessageRecord> = doomed
            .iter()
            .filter_map(|uid| find(&records, *uid))
            .filter(|r| !only_deleted || r.flags & flags::DELETED != 0)
            .collect();
        let ids: Vec<RemoteMessageId> = targets
            .iter()
            .map(|r| RemoteMessageId::new(r.remote_id.clone()))
            .collect();
        // One batched request (`$batch` of 20) for the set; a message
        // already gone counts as deleted, another refusal is reported
        // after the others are done.
        match self.backend.delete_messages(&ids, permanently).await {
            Ok(results) => {
                for (r, result) in targets.into_iter().zip(results) {
                    match result {
                        Ok(()) => gone.push(r.remote_id.clone()),
                        Err(e) if not_found(&e) => gone.push(r.remote_id.clone()),
                        Err(e) => {
                            if out.failure.is_none() {
                                out.failure = Some(e.into());
                            }
                        }
                    }
                }
            }
            Err(e) => out.failure = Some(e.into()),
        }
        // What Graph deleted before a failure is forgotten too.
        out.done = self.forget(folder, &gone)?;
        drop(held);
        if !out.done.is_empty() {
            gate.announce();
        }
        Ok(out)
    }

    /// APPEND: a non-draft message in `folder` from `mime`, with `flags`
    /// (`\Seen`, `\Flagged`, `\Answered`, `$Forwarded`, keywords; `\Deleted`
    /// and `\Draft` cannot be set at creation through Graph) and the
    /// internal date `date`. Its UID once the folder's sync has seen it.
    pub async fn append(
        &self,
        folder: &FolderRecord,
        mime: bytes::Bytes,
        flags: &Flags,
        date: Option<DateTime<Utc>>,
        cache: &crate::mailbox::content::ContentCache,
    ) -> Result<Option<Uid>, ModelError> {
        let none = Flags::default();
        let mut wanted = graph_update(&none, flags);
        wanted.is_read = None;
        let options = AppendOptions {
            is_read: flags.bits & flags::SEEN != 0,
            received: date,
            flags: wanted,
        };
        self.start_recent(folder)?;
        let remote = RemoteFolderId::new(folder.remote_id.clone());
        // Under way until the bytes are kept for the UID (appended.rs).
        let _in_flight = crate::mailbox::appended::begin(folder.id);
        let created: RemoteMessage = self
            .backend
            .append_message(&remote, mime.clone(), &options)
            .await?;
        self.sync(folder.id).await?;
        let uid = self
            .store
            .message_by_remote_id(folder.id, created.id.as_str())?
            .map(|m| m.uid);
        // The UID serves the APPENDed bytes, not Exchange's rendering
        // (mailbox/appended.rs, docs/append.md).
        if let Some(uid) = uid
            && let Err(e) = cache.keep_appended(folder.id, uid, mime).await
        {
            tracing::warn!(
                uid = uid.0,
                "APPEND: {e}; the UID serves what Graph renders (check the data directory's \
                 free space and permissions)"
            );
        }
        Ok(uid)
    }
}

impl MailboxSet {
    /// The gate of a folder of any of the account's mailboxes.
    pub fn gate(&self, folder: &FolderRecord) -> Arc<FolderGate> {
        self.model_of(folder).gate(folder)
    }

    pub fn messages(&self, folder: &FolderRecord) -> Result<Vec<MessageRecord>, ModelError> {
        self.model_of(folder).messages(folder)
    }

    pub async fn set_flags(
        &self,
        folder: &FolderRecord,
        uids: &[Uid],
        change: &FlagChange,
    ) -> Result<Outcome<Stored>, ModelError> {
        self.model_of(folder).set_flags(folder, uids, change).await
    }

    pub async fn mark_seen(&self, folder: &FolderRecord, uids: &[Uid]) -> Outcome<Stored> {
        self.model_of(folder).mark_seen(folder, uids).await
    }

    /// COPY / MOVE within one mailbox (Graph cannot copy between two).
    pub async fn copy(
        &self,
        from: &FolderRecord,
        uids: &[Uid],
        to: &FolderRecord,
        moving: bool,
    ) -> Result<Outcome<(Uid, Uid)>, ModelError> {
        self.model_of(from).copy(from, uids, to, moving).await
    }

    pub async fn expunge(
        &self,
        folder: &FolderRecord,
        doomed: &[Uid],
        only_deleted: bool,
        permanently: bool,
    ) -> Result<Outcome<Uid>, ModelError> {
        self.model_of(folder)
            .expunge(folder, doomed, only_deleted, permanently)
            .await
    }

    pub async fn append(
        &self,
        folder: &FolderRecord,
        mime: bytes::Bytes,
        flags: &Flags,
        date: Option<DateTime<Utc>>,
        cache: &crate::mailbox::content::ContentCache,
    ) -> Result<Option<Uid>, ModelError> {
        self.model_of(folder)
            .append(folder, mime, flags, date, cache)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_applies_to_the_latest_flags_and_draft_is_local() {
        let old = Flags::from_store(flags::SEEN | flags::DRAFT, "a b");
        let add = FlagChange {
            op: FlagOp::Add,
            bits: flags::FLAGGED,
            keywords: vec!["c".into()],
        };
        let new = add.apply(&old);
        assert_eq!(new.bits, flags::SEEN | flags::DRAFT | flags::FLAGGED);
        assert_eq!(new.keywords, vec!["a", "b", "c"]);
        let update = graph_update(&old, &new);
        assert_eq!(update.flag, Some(FlagStatus::Flagged));
        assert_eq!(update.is_read, None);
        assert_eq!(
            update.categories,
            Some(vec!["a".to_string(), "b".into(), "c".into()])
        );
        let replace = FlagChange {
            op: FlagOp::Replace,
            bits: 0,
            keywords: vec![],
        };
        assert_eq!(replace.apply(&old).bits, 0);
        // \Draft is stored locally: no Graph update, Graph's last isDraft
        // kept.
        let graph_draft = Flags::from_store(flags::GRAPH_DRAFT, "");
        let draft = FlagChange {
            op: FlagOp::Add,
            bits: flags::DRAFT,
            keywords: vec![],
        };
        let drafted = draft.apply(&graph_draft);
        assert_eq!(drafted.bits, flags::DRAFT | flags::GRAPH_DRAFT);
        assert_eq!(graph_update(&graph_draft, &drafted), FlagUpdate::default());
        let remove = FlagChange {
            op: FlagOp::Remove,
            bits: flags::SEEN,
            keywords: vec!["A".into()],
        };
        assert_eq!(remove.apply(&old).keywords, vec!["b"]);
    }
}
