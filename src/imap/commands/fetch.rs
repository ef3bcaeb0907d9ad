//! FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8): UID, FLAGS and
//! INTERNALDATE come from the local index; RFC822.SIZE, ENVELOPE,
//! BODY/BODYSTRUCTURE and every `BODY[section]<partial>` from the bytes
//! the content cache serves for the message ([`crate::imap::content`]),
//! described by the MIME core ([`crate::mime::imap`]) with the part tree
//! read once per message and only when an item needs it. A non-PEEK body
//! fetch sets `\Seen`. Costs nothing for metadata-only items; for the
//! others, the messages not cached yet are fetched in `$batch` groups
//! (20 per request), and one flag update per message newly `\Seen`.

use bytes::Bytes;
use chrono::{DateTime as ChronoDateTime, FixedOffset, TimeZone, Utc};
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::core::{Literal, NString, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::SequenceSet;

use crate::graph::{FlagUpdate, RemoteMessageId};
use crate::imap::content;
use crate::imap::session::{
    Authenticated, Refusal, Reply, Shared, State, View, flag_list, nz, resolve,
};
use crate::imap::structures;
use crate::mailbox::flags;
use crate::mime::imap as mime;
use crate::store::folders::MessageRecord;

pub(crate) async fn handle(
    shared: &Shared,
    state: &mut State,
    set: &SequenceSet,
    names: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
) -> Reply {
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    match fetch(shared, auth, view, set, names, uid).await {
        Ok(Answer::Data(data)) => Reply::ok("FETCH completed").with_data(data),
        Ok(Answer::Encoded(raw)) => Reply::ok("FETCH completed").with_raw(raw),
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

    fn envelope(&self) -> imap_next::imap_types::envelope::Envelope<'static> {
        mime::envelope(self.bytes)
    }

    fn body_structure(&self) -> imap_next::imap_types::body::BodyStructure<'static> {
        self.parsed().body_structure()
    }

    fn body(&self) -> imap_next::imap_types::body::BodyStructure<'static> {
        self.parsed().body()
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

fn nstring(bytes: &[u8]) -> NString<'static> {
    // The cache already turned NUL into 0x80 (see content.rs); anything
    // else a literal cannot carry is made safe the same way.
    match Literal::try_from(bytes.to_vec()) {
        Ok(l) => NString::from(l.into_static()),
        Err(_) => NString::from(Literal::unvalidated(content::without_nul(bytes))),
    }
}

/// Messages whose cached bytes are read together.
const READ_AHEAD: usize = 64;

fn needs_content(names: &[MessageDataItemName<'_>]) -> bool {
    names.iter().any(|n| {
        !matches!(
            n,
            MessageDataItemName::Uid
                | MessageDataItemName::Flags
                | MessageDataItemName::InternalDate
        )
    })
}

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

/// A FETCH's untagged responses.
enum Answer {
    Data(Vec<Data<'static>>),
    /// Encoded already, from the index and stored structures.
    Encoded(Vec<u8>),
}

/// FETCH / UID FETCH.
async fn fetch(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    set: &SequenceSet,
    names: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
) -> Result<Answer, Refusal> {
    let mut names: Vec<MessageDataItemName<'_>> = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            m.expand().into_iter().map(|n| n.into_static()).collect()
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(n) => n.clone(),
    };
    if uid && !names.contains(&MessageDataItemName::Uid) {
        names.insert(0, MessageDataItemName::Uid);
    }
    let records = shared
        .store
        .messages(view.folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let mut targets = resolve(view, &records, set, uid);
    // Structures kept by earlier FETCHes (by UID), when an item needs one.
    let stored = if structures::needs_structure(&names) {
        shared
            .store
            .folder_structures(view.folder.id)
            .map_err(|e| Refusal::no(e.to_string()))?
    } else {
        Vec::new()
    };
    if let Some(raw) = structures::answer(view, &names, &targets, &stored) {
        // The bytes behind those structures were used: keep them from
        // eviction as if they had been read.
        shared.cache.touch(
            targets
                .iter()
                .filter_map(|(_, r)| r.content_hash.clone())
                .collect(),
        );
        return Ok(Answer::Encoded(raw));
    }
    let mut computed = Vec::new();
    if needs_content(&names) {
        let wanted: Vec<MessageRecord> = targets.iter().map(|(_, r)| r.clone()).collect();
        let ready = shared
            .cache
            .ensure(
                auth.model.backend_for(&view.folder).as_ref(),
                view.folder.id,
                wanted,
            )
            .await
            .map_err(|e| Refusal::no(format!("Graph could not deliver the messages: {e}")))?;
        targets.retain_mut(|(_, r)| match content::find(&ready, r.uid) {
            Some(fresh) => {
                *r = fresh.clone();
                true
            }
            None => false,
        });
    }
    let mut out = Vec::new();
    let mut mark_seen = Vec::new();
    let content = needs_content(&names);
    let mut targets = targets.into_iter();
    loop {
        // The cached files of READ_AHEAD messages are read in one blocking
        // task (one task per file was a thread hand-off per message).
        let chunk: Vec<(u32, MessageRecord)> = targets.by_ref().take(READ_AHEAD).collect();
        if chunk.is_empty() {
            break;
        }
        let cached = if content {
            let records: Vec<&MessageRecord> = chunk.iter().map(|(_, r)| r).collect();
            shared.cache.read_many(&records).await
        } else {
            vec![None; chunk.len()]
        };
        for ((seq, record), cached) in chunk.into_iter().zip(cached) {
            let bytes: Option<Bytes> = if content {
                match cached {
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
            // Keep the structure for the next FETCH (see structures.rs).
            if let (true, Some(hash)) = (structures::needs_structure(&names), &record.content_hash)
            {
                let known = stored
                    .binary_search_by_key(&record.uid, |(u, _)| *u)
                    .is_ok_and(|i| structures::decode(&stored[i].1).is_some());
                if !known && bytes.is_some() {
                    computed.push((hash.clone(), structures::compute(message.bytes())));
                }
            }
            let mut items = Vec::new();
            let mut set_seen = false;
            let mut fetched_whole = false;
            for name in &names {
                let item = match name {
                    MessageDataItemName::Uid => MessageDataItem::Uid(nz(record.uid.0)),
                    MessageDataItemName::Flags => continue,
                    MessageDataItemName::InternalDate => {
                        MessageDataItem::InternalDate(imap_date(record.internal_date))
                    }
                    MessageDataItemName::Rfc822Size => {
                        MessageDataItem::Rfc822Size(mime::rfc822_size(message.bytes()))
                    }
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
                    MessageDataItemName::Envelope => MessageDataItem::Envelope(message.envelope()),
                    MessageDataItemName::BodyStructure => {
                        MessageDataItem::BodyStructure(message.body_structure())
                    }
                    MessageDataItemName::Body => MessageDataItem::Body(message.body()),
                    _ => {
                        return Err(Refusal::no(
                            "BINARY and MODSEQ are not offered (see CAPABILITY)",
                        ));
                    }
                };
                items.push(item);
            }
            if fetched_whole && !view.read_only {
                view.fetched.insert(record.uid);
            }
            let mut bits = record.flags;
            if set_seen && bits & flags::SEEN == 0 && !view.read_only {
                bits |= flags::SEEN;
                mark_seen.push(record.clone());
            }
            if names.contains(&MessageDataItemName::Flags) || (set_seen && bits != record.flags) {
                items.push(MessageDataItem::Flags(flag_list(bits, &record.keywords)));
                view.told
                    .insert(record.uid, (bits, record.keywords.clone()));
            }
            if let Ok(items) = Vec1::try_from(items) {
                out.push(Data::Fetch {
                    seq: nz(seq),
                    items,
                });
            }
        }
    }
    if !computed.is_empty() {
        // Off the answer's path; a FETCH meanwhile computes them again.
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.cache_set_structures(&computed) {
                tracing::warn!("message cache: cannot keep computed structures: {e}");
            }
        });
    }
    for r in mark_seen {
        let id = RemoteMessageId::new(r.remote_id.clone());
        let update = FlagUpdate {
            is_read: Some(true),
            ..FlagUpdate::default()
        };
        if auth
            .model
            .backend_for(&view.folder)
            .update_flags(&id, &update)
            .await
            .is_ok()
        {
            let _ = shared.store.set_message_flags(
                view.folder.id,
                r.uid,
                r.flags | flags::SEEN,
                &r.keywords,
            );
        }
    }
    Ok(Answer::Data(out))
}
