//! FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8): UID, FLAGS and
//! INTERNALDATE come from the local index; RFC822.SIZE, ENVELOPE,
//! BODY/BODYSTRUCTURE from the message's structure, computed once by the
//! MIME core ([`crate::mime::imap`]) and kept in the store
//! ([`crate::imap::structures`]); every `BODY[section]<partial>` from the
//! bytes the content cache serves for the message
//! ([`crate::mailbox::content`]), with the part tree read once per message and
//! only when an item needs it. A non-PEEK body fetch sets `\Seen`. The
//! answer is encoded here, in one buffer. Costs nothing for metadata-only
//! items or kept structures; for the others, the messages not cached yet
//! are fetched in `$batch` groups (20 per request), and one flag update per
//! message newly `\Seen`.
//!
//! CONDSTORE / QRESYNC (RFC 7162): the MODSEQ item (§3.1.5) and the
//! `(CHANGEDSINCE n)` modifier (§3.1.4.1: only messages changed after
//! n, MODSEQ implied) turn CONDSTORE on; `UID FETCH … (CHANGEDSINCE n
//! VANISHED)` after ENABLE QRESYNC first says `VANISHED (EARLIER)` for
//! the UIDs of the set expunged after n (§3.2.6). All from the index.

use super::Ctx;
use std::io::Write as _;

use bytes::Bytes;
use chrono::{DateTime as ChronoDateTime, FixedOffset, TimeZone, Utc};
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::command::FetchModifier;
use imap_next::imap_types::core::{Literal, NString};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::response::{Data, Response};
use imap_next::imap_types::sequence::SequenceSet;

use crate::imap::session::{
    Authenticated, Refusal, Reply, Shared, View, check_set, folder_flags, permanent_flags, resolve,
    untagged_ok,
};
use crate::imap::stream::Sink;
use crate::imap::structures;
use crate::mailbox::MessageRecord;
use crate::mailbox::content;
use crate::mailbox::flags;
use crate::mime::imap as mime;

pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    set: &SequenceSet,
    names: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
    modifiers: &[FetchModifier],
) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let state = &mut ctx.conn.state;
    let sink = &mut *ctx.sink;
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    let mut changed_since = None;
    let mut vanished = false;
    for m in modifiers {
        match m {
            FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
            FetchModifier::Vanished => vanished = true,
        }
    }
    // RFC 7162 §3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE,
    // after ENABLE QRESYNC.
    if vanished && !(uid && changed_since.is_some() && auth.enabled.qresync()) {
        return Reply::bad(
            "the VANISHED modifier needs UID FETCH with CHANGEDSINCE, after ENABLE QRESYNC \
             (RFC 7162 §3.2.6)",
        );
    }
    let with_modseq = match names {
        MacroOrMessageDataItemNames::MessageDataItemNames(n) => {
            n.contains(&MessageDataItemName::ModSeq)
        }
        MacroOrMessageDataItemNames::Macro(_) => false,
    };
    if with_modseq || changed_since.is_some() {
        auth.enabled.enable_condstore(Some(&mut *view));
    }
    if vanished && let Some(since) = changed_since {
        let present = view.uids.iter().copied().collect();
        match crate::imap::modseq::vanished_earlier(
            &auth.model,
            &view.folder,
            since,
            Some(set),
            &present,
        ) {
            Ok(Some(data)) => {
                use imap_codec::encode::Encoder as _;
                let wire = imap_codec::ResponseCodec::default()
                    .encode(&Response::Data(data))
                    .dump();
                if let Err(e) = sink.emit(&wire).await {
                    return Reply::no(format!("the connection failed while answering: {e}"));
                }
            }
            Ok(None) => {}
            Err(e) => return Reply::no(format!("cannot read the folder's index: {e}")),
        }
    }
    match fetch(shared, auth, view, set, names, uid, changed_since, sink).await {
        Ok(()) => Reply::ok("FETCH completed"),
        Err(r) => r.into(),
    }
}

pub(crate) fn imap_date(unix: Option<i64>) -> DateTime {
    let when: ChronoDateTime<FixedOffset> = unix
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .unwrap_or_else(Utc::now)
        .fixed_offset();
    DateTime::try_from(when).unwrap_or_else(|_| {
        DateTime::try_from(Utc.timestamp_opt(0, 0).unwrap().fixed_offset()).expect("epoch")
    })
}

/// A message's bytes, with the part tree read on first use.
struct Lazy<'a> {
    bytes: &'a [u8],
    tree: std::cell::OnceCell<mime::Message<'a>>,
}

impl<'a> Lazy<'a> {
    fn new(bytes: &'a [u8]) -> Lazy<'a> {
        Lazy {
            bytes,
            tree: std::cell::OnceCell::new(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn parsed(&self) -> &mime::Message<'a> {
        self.tree.get_or_init(|| mime::Message::new(self.bytes))
    }

    /// `BODY[section]`: the top-level header and text need no part tree.
    fn section(&self, section: Option<&Section<'_>>) -> std::borrow::Cow<'a, [u8]> {
        match section {
            None
            | Some(Section::Header(None))
            | Some(Section::Text(None))
            | Some(Section::HeaderFields(None, _))
            | Some(Section::HeaderFieldsNot(None, _)) => mime::section(self.bytes, section),
            Some(_) => self.parsed().section(section),
        }
    }
}

/// `1.2.3` for a part path (empty for `[]`).
fn part_path(path: &[std::num::NonZeroU32]) -> String {
    let parts: Vec<String> = path.iter().map(|n| n.to_string()).collect();
    parts.join(".")
}

/// `BINARY[path]` of a message (RFC 3516 §4.1); `NO [UNKNOWN-CTE]` for a
/// transfer encoding that cannot be undone.
fn binary_of<'a>(
    message: &Lazy<'a>,
    path: &[std::num::NonZeroU32],
    record: &MessageRecord,
) -> Result<std::borrow::Cow<'a, [u8]>, Refusal> {
    let result = if path.is_empty() {
        Ok(std::borrow::Cow::Borrowed(message.bytes()))
    } else {
        message.parsed().binary(path)
    };
    result.map_err(|e| {
        Refusal::no(format!(
            "[UNKNOWN-CTE] part {} of UID {} is in the transfer encoding {:?}, which graphgate \
             cannot decode; fetch it undecoded with BODY.PEEK[{}]",
            part_path(path),
            record.uid.0,
            e.0,
            part_path(path)
        ))
    })
}

/// `BINARY[path]<origin> ` and the data: a literal8 (`~{n}`) when it
/// holds NUL, which a literal cannot carry (RFC 3516 §4.1), else a
/// literal.
fn write_binary(
    out: &mut Vec<u8>,
    path: &[std::num::NonZeroU32],
    origin: Option<u32>,
    data: &[u8],
) {
    let _ = write!(out, "BINARY[{}]", part_path(path));
    if let Some(origin) = origin {
        let _ = write!(out, "<{origin}>");
    }
    let tilde = if data.contains(&0) { "~" } else { "" };
    let _ = write!(out, " {tilde}{{{}}}\r\n", data.len());
    out.extend_from_slice(data);
}

fn nstring(bytes: &[u8]) -> NString<'static> {
    // The cache already turned NUL into 0x80 (see content.rs); anything
    // else a literal cannot carry is made safe the same way.
    match Literal::try_from(bytes.to_vec()) {
        Ok(l) => NString::from(l.into_static()),
        Err(_) => NString::from(Literal::unvalidated(content::without_nul(bytes))),
    }
}

/// Messages whose cached bytes are read together: at most this many…
const READ_AHEAD: usize = 64;

/// …and, past the first, at most this many bytes of them (64 messages of
/// 30 MB would be 2 GB in memory at once).
const READ_AHEAD_BYTES: u64 = 4 * 1024 * 1024;

/// Encoded answers are handed to the connection once this much waits.
const EMIT_AT: usize = 64 * 1024;

/// The bytes of a message whose cached file vanished after `ensure`:
/// fetched from Graph again (a message must never be served empty).
async fn reread(
    shared: &Shared,
    auth: &Authenticated,
    view: &View,
    record: &MessageRecord,
) -> Result<Bytes, Refusal> {
    let cannot = || {
        Refusal::no(format!(
            "the content of UID {} is missing from the message cache ({}) and Graph did not \
             deliver it again; check the data directory's disk and retry the FETCH",
            record.uid.0,
            shared.cache.dir().display()
        ))
    };
    let ready = shared
        .cache
        .ensure(
            auth.model.backend_for(&view.folder).as_ref(),
            view.folder.id,
            vec![record.clone()],
        )
        .await
        .map_err(|e| Refusal::no(format!("Graph could not deliver the message: {e}")))?;
    let fresh = ready.into_iter().next().ok_or_else(cannot)?;
    shared.cache.read(&fresh).await.ok_or_else(cannot)
}

/// A message a FETCH answers for.
struct Target<'s> {
    seq: u32,
    record: MessageRecord,
    /// Its kept structure (when an item needs one and it is kept).
    kept: Option<structures::Structure<'s>>,
    /// Whether an item needs its bytes.
    needs_bytes: bool,
}

/// FETCH / UID FETCH: the untagged responses, encoded.
///
/// One pass writes every response: UID, FLAGS, INTERNALDATE from the
/// index; RFC822.SIZE, ENVELOPE, BODYSTRUCTURE and BODY from the message's
/// kept structure (computed from its bytes and kept the first time, see
/// [`structures`]); sections from its bytes. Only messages an item needs
/// the bytes of are fetched and read, so a FETCH of structure items over
/// a warm folder opens no file.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    set: &SequenceSet,
    names: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
    changed_since: Option<u64>,
    sink: &mut Sink<'_>,
) -> Result<(), Refusal> {
    let mut names: Vec<MessageDataItemName<'_>> = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            m.expand().into_iter().map(|n| n.into_static()).collect()
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(n) => n.clone(),
    };
    // With QRESYNC every FETCH names its UID (RFC 7162 §3.2.4).
    if (uid || view.qresync) && !names.contains(&MessageDataItemName::Uid) {
        names.insert(0, MessageDataItemName::Uid);
    }
    // CHANGEDSINCE implies MODSEQ (RFC 7162 §3.1.4.1).
    if changed_since.is_some() && !names.contains(&MessageDataItemName::ModSeq) {
        names.push(MessageDataItemName::ModSeq);
    }
    let offered = |n: &MessageDataItemName<'_>| {
        structures::servable_item(n)
            || matches!(
                n,
                MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
                    | MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::ModSeq
                    | MessageDataItemName::Binary { .. }
                    | MessageDataItemName::BinarySize { .. }
            )
    };
    if !names.iter().all(offered) {
        return Err(Refusal::no(
            "a FETCH item asked for is not offered (see CAPABILITY)",
        ));
    }
    check_set(view, set, uid, "FETCH")?;
    let records = auth
        .model
        .messages(&view.folder)
        .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?;
    let with_structure = structures::needs_structure(&names);
    // Structures kept by earlier FETCHes (by UID), when an item needs one.
    let stored = if with_structure {
        shared
            .cache
            .folder_structures(view.folder.id)
            .map_err(|e| Refusal::no(e.to_string()))?
    } else {
        Vec::new()
    };
    // Each message with its kept structure, looked up once, and whether
    // its bytes are needed: always, for a section; for structure items
    // alone, when no structure is kept.
    let sections = !structures::servable(&names);
    let mut targets: Vec<Target<'_>> = resolve(view, &records, set, uid)
        .into_iter()
        .filter(|(_, record)| changed_since.is_none_or(|since| record.modseq > since))
        .map(|(seq, record)| {
            let kept = if with_structure {
                stored
                    .binary_search_by_key(&record.uid, |(u, _)| *u)
                    .ok()
                    .and_then(|i| structures::decode(&stored[i].1))
            } else {
                None
            };
            let needs_bytes = sections || (with_structure && kept.is_none());
            Target {
                seq,
                record,
                kept,
                needs_bytes,
            }
        })
        .collect();
    let wanted: Vec<MessageRecord> = targets
        .iter()
        .filter(|t| t.needs_bytes)
        .map(|t| t.record.clone())
        .collect();
    if !wanted.is_empty() {
        let ready = shared
            .cache
            .ensure(
                auth.model.backend_for(&view.folder).as_ref(),
                view.folder.id,
                wanted,
            )
            .await
            .map_err(|e| Refusal::no(format!("Graph could not deliver the messages: {e}")))?;
        // A message Graph no longer has is left out.
        targets.retain_mut(|t| {
            if !t.needs_bytes {
                return true;
            }
            match content::find(&ready, t.record.uid) {
                Some(fresh) => {
                    t.record = fresh.clone();
                    true
                }
                None => false,
            }
        });
    }
    // The bytes behind kept structures were used: keep them from eviction
    // as if they had been read (ensure did so for the others).
    if with_structure {
        shared.cache.touch(
            targets
                .iter()
                .filter(|t| !t.needs_bytes)
                .filter_map(|t| t.record.content_hash.clone())
                .collect(),
        );
    }
    let mut out = Vec::with_capacity(EMIT_AT * 2);
    let with_flags = names.contains(&MessageDataItemName::Flags);
    // A keyword the client was not told FLAGS has (another session's
    // STORE) is introduced before the first FETCH FLAGS that shows it:
    // FLAGS, then PERMANENTFLAGS (RFC 3501 §7.2.6).
    let mut used = std::collections::BTreeSet::new();
    for t in &targets {
        used.extend(t.record.keywords.split_whitespace().map(str::to_string));
        if t.record.flags & flags::FORWARDED != 0 {
            used.insert("$Forwarded".to_string());
        }
    }
    if !used.is_subset(&view.keywords) {
        view.keywords.extend(used);
        use imap_codec::encode::Encoder as _;
        let codec = imap_codec::ResponseCodec::default();
        let mut intro = codec
            .encode(&Response::Data(Data::Flags(folder_flags(&view.keywords))))
            .dump();
        if let Some(ok) = untagged_ok(permanent_flags(&view.keywords), "Flags permitted") {
            intro.extend(codec.encode(&Response::Status(ok)).dump());
        }
        sink.emit(&intro)
            .await
            .map_err(|e| Refusal::no(format!("the connection failed while answering: {e}")))?;
    }
    let mut flag_items = structures::FlagItems::default();
    let mut computed = Vec::new();
    let mut mark_seen = Vec::new();
    let mut targets = targets.into_iter().peekable();
    loop {
        // The cached files of up to READ_AHEAD messages (READ_AHEAD_BYTES)
        // are read in one blocking task (one task per file was a thread
        // hand-off per message).
        let mut chunk: Vec<Target<'_>> = Vec::new();
        let mut chunk_bytes = 0;
        while chunk.len() < READ_AHEAD {
            let Some(next) = targets.next_if(|t| {
                chunk.is_empty()
                    || !t.needs_bytes
                    || chunk_bytes + t.record.size.unwrap_or(0) <= READ_AHEAD_BYTES
            }) else {
                break;
            };
            if next.needs_bytes {
                chunk_bytes += next.record.size.unwrap_or(0);
            }
            chunk.push(next);
        }
        if chunk.is_empty() {
            break;
        }
        let reading: Vec<&MessageRecord> = chunk
            .iter()
            .filter(|t| t.needs_bytes)
            .map(|t| &t.record)
            .collect();
        let mut cached = shared.cache.read_many(&reading).await.into_iter();
        for Target {
            seq,
            record,
            kept,
            needs_bytes,
        } in chunk
        {
            let bytes: Option<Bytes> = if needs_bytes {
                match cached.next().flatten() {
                    Some(b) => Some(b),
                    // Gone between `ensure` and here (removed by hand, or the
                    // disk failed): fetch it again rather than serve nothing.
                    None => Some(reread(shared, auth, view, &record).await?),
                }
            } else {
                None
            };
            // One part tree per message for all the items asked for; it is
            // read only when an item needs it.
            let message = Lazy::new(bytes.as_deref().unwrap_or_default());
            // The structure: kept, or computed now (and kept for the next
            // FETCH).
            let fresh;
            let structure = match (with_structure, kept) {
                (false, _) => None,
                (true, Some(s)) => Some(s),
                (true, None) => {
                    fresh = structures::compute(message.bytes());
                    if let Some(hash) = &record.content_hash {
                        computed.push((hash.clone(), fresh.clone()));
                    }
                    // compute's output always reads back (unit test, fuzzing).
                    Some(structures::decode(&fresh).ok_or_else(|| {
                        Refusal::no(format!(
                            "could not describe UID {}: its computed structure does not read \
                             back (a graphgate bug; please report it)",
                            record.uid.0
                        ))
                    })?)
                }
            };
            let mut set_seen = false;
            let mut fetched_whole = false;
            let _ = write!(out, "* {seq} FETCH (");
            let mut first = true;
            for name in &names {
                if matches!(name, MessageDataItemName::Flags) {
                    continue; // last, below
                }
                if !std::mem::take(&mut first) {
                    out.push(b' ');
                }
                if matches!(name, MessageDataItemName::ModSeq) {
                    let _ = write!(out, "MODSEQ ({})", record.modseq.max(1));
                    continue;
                }
                if structures::write_item(&mut out, name, &record, structure.as_ref()) {
                    continue;
                }
                // BINARY[…]<…> and BINARY.SIZE[…] (RFC 3516 §4), written
                // here: imap-types' item has no place for the origin.
                match name {
                    MessageDataItemName::Binary {
                        section,
                        partial: range,
                        peek,
                    } => {
                        if !peek {
                            set_seen = true;
                        }
                        if range.is_none() && section.is_empty() {
                            fetched_whole = true;
                        }
                        let data = binary_of(&message, section, &record)?;
                        let data = match range {
                            Some((start, len)) => mime::partial(&data, *start, len.get()),
                            None => &data[..],
                        };
                        write_binary(&mut out, section, range.map(|(start, _)| start), data);
                        continue;
                    }
                    MessageDataItemName::BinarySize { section } => {
                        let size = binary_of(&message, section, &record)?.len();
                        let _ = write!(out, "BINARY.SIZE[{}] {size}", part_path(section));
                        continue;
                    }
                    _ => {}
                }
                let item = match name {
                    MessageDataItemName::Rfc822 => {
                        set_seen = true;
                        fetched_whole = true;
                        MessageDataItem::Rfc822(nstring(message.bytes()))
                    }
                    MessageDataItemName::Rfc822Header => MessageDataItem::Rfc822Header(nstring(
                        &message.section(Some(&Section::Header(None))),
                    )),
                    MessageDataItemName::Rfc822Text => {
                        set_seen = true;
                        fetched_whole = true;
                        MessageDataItem::Rfc822Text(nstring(
                            &message.section(Some(&Section::Text(None))),
                        ))
                    }
                    MessageDataItemName::BodyExt {
                        section,
                        partial: range,
                        peek,
                    } => {
                        if !peek {
                            set_seen = true;
                        }
                        if range.is_none() && matches!(section, None | Some(Section::Text(None))) {
                            fetched_whole = true;
                        }
                        let data = message.section(section.as_ref());
                        let data = match range {
                            Some((start, len)) => mime::partial(&data, *start, len.get()),
                            None => &data[..],
                        };
                        MessageDataItem::BodyExt {
                            section: section.clone().map(|s| s.into_static()),
                            origin: range.map(|(start, _)| start),
                            data: nstring(data),
                        }
                    }
                    // Every other name was refused or written above.
                    _ => continue,
                };
                out.extend_from_slice(&structures::encode_item(item));
            }
            if fetched_whole && !view.read_only {
                view.fetched.insert(record.uid);
            }
            let mut bits = record.flags;
            if set_seen && bits & flags::SEEN == 0 && !view.read_only {
                bits |= flags::SEEN;
                mark_seen.push(record.clone());
            }
            if with_flags || (set_seen && bits != record.flags) {
                if !first {
                    out.push(b' ');
                }
                out.extend_from_slice(
                    flag_items.get(view.shown(record.uid, bits), &record.keywords),
                );
                // With CONDSTORE, a \Seen this FETCH sets is told again
                // once stored, with its new MODSEQ (RFC 7162 §3.1.4).
                if !(view.condstore && bits != record.flags) {
                    view.told
                        .insert(record.uid, (bits, record.keywords.clone()));
                }
            }
            out.extend_from_slice(b")\r\n");
        }
        // What is encoded goes out now: a FETCH of a whole folder's bodies
        // holds a chunk of them, not all.
        if out.len() >= EMIT_AT || (targets.peek().is_none() && !out.is_empty()) {
            sink.emit(&out)
                .await
                .map_err(|e| Refusal::no(format!("the connection failed while answering: {e}")))?;
            out.clear();
            out.shrink_to(EMIT_AT * 4);
        }
    }
    shared.cache.keep_structures(computed);
    if !mark_seen.is_empty() {
        // Written back through the model; a refusal is logged there and
        // the flags stay as Graph has them (the client hears so at its
        // next command).
        let uids: Vec<_> = mark_seen.iter().map(|r| r.uid).collect();
        auth.model.mark_seen(&view.folder, &uids).await;
    }
    Ok(())
}
