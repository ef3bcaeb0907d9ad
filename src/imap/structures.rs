//! Computed structures kept in the store: a message's ENVELOPE,
//! BODYSTRUCTURE and BODY, encoded once in their IMAP wire form, with its
//! RFC822.SIZE, beside its cached bytes (the `cache.structure` column,
//! keyed by content hash, so they go when the bytes are evicted).
//!
//! A warm `FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)` then
//! reads one row per message and copies bytes, instead of reading every
//! message file, walking its part tree and encoding the result
//! ([`answer`]). The first FETCH that computes a structure stores it
//! ([`compute`]).

use std::collections::HashMap;
use std::io::Write as _;

use imap_codec::encode::Encoder as _;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::response::{Data, Response};

use crate::imap::session::{View, flag_list, nz};
use crate::mime::imap as mime;
use crate::store::folders::{MessageRecord, Uid};

/// Bumped whenever the MIME core may describe a message differently: a
/// stored structure of another version is computed again.
const VERSION: u8 = 1;

/// One message's structure, borrowed from its stored encoding.
#[derive(Debug, PartialEq, Eq)]
pub struct Structure<'a> {
    pub rfc822_size: u32,
    /// `ENVELOPE (…)`, `BODYSTRUCTURE (…)`, `BODY (…)`: whole items.
    pub envelope: &'a [u8],
    pub body_structure: &'a [u8],
    pub body: &'a [u8],
}

/// One FETCH item in its wire form (`NAME value`), as imap-codec writes
/// it inside a FETCH response.
fn encode_item(item: MessageDataItem<'static>) -> Vec<u8> {
    let response = Response::Data(Data::Fetch {
        seq: nz(1),
        items: Vec1::from(item),
    });
    let wire = imap_codec::ResponseCodec::default()
        .encode(&response)
        .dump();
    const PREFIX: &[u8] = b"* 1 FETCH (";
    const SUFFIX: &[u8] = b")\r\n";
    debug_assert!(wire.starts_with(PREFIX) && wire.ends_with(SUFFIX));
    wire[PREFIX.len()..wire.len() - SUFFIX.len()].to_vec()
}

/// The stored form of `bytes`' structure.
pub fn compute(bytes: &[u8]) -> Vec<u8> {
    let message = mime::Message::new(bytes);
    let envelope = encode_item(MessageDataItem::Envelope(mime::envelope(bytes)));
    let body_structure = encode_item(MessageDataItem::BodyStructure(message.body_structure()));
    let body = encode_item(MessageDataItem::Body(message.body()));
    let mut out =
        Vec::with_capacity(1 + 4 + 12 + envelope.len() + body_structure.len() + body.len());
    out.push(VERSION);
    out.extend_from_slice(&mime::rfc822_size(bytes).to_le_bytes());
    for part in [&envelope, &body_structure, &body] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Read a stored structure (`None`: another version, or damaged).
pub fn decode(stored: &[u8]) -> Option<Structure<'_>> {
    let (&version, rest) = stored.split_first()?;
    if version != VERSION {
        return None;
    }
    let (size, mut rest) = rest.split_at_checked(4)?;
    let mut parts = [&b""[..]; 3];
    for part in &mut parts {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (bytes, tail) = tail.split_at_checked(len)?;
        *part = bytes;
        rest = tail;
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Structure {
        rfc822_size: u32::from_le_bytes(size.try_into().ok()?),
        envelope: parts[0],
        body_structure: parts[1],
        body: parts[2],
    })
}

/// The items [`answer`] serves: what the index and a stored structure
/// hold. Anything else (a body section, RFC822…) takes the full path.
pub fn servable(names: &[MessageDataItemName<'_>]) -> bool {
    names.iter().all(|n| {
        matches!(
            n,
            MessageDataItemName::Uid
                | MessageDataItemName::Flags
                | MessageDataItemName::InternalDate
                | MessageDataItemName::Rfc822Size
                | MessageDataItemName::Envelope
                | MessageDataItemName::BodyStructure
                | MessageDataItemName::Body
        )
    })
}

/// Whether any of `names` needs the message's structure.
pub fn needs_structure(names: &[MessageDataItemName<'_>]) -> bool {
    names.iter().any(|n| {
        matches!(
            n,
            MessageDataItemName::Rfc822Size
                | MessageDataItemName::Envelope
                | MessageDataItemName::BodyStructure
                | MessageDataItemName::Body
        )
    })
}

/// The FETCH responses for `targets` (sequence number, record), encoded,
/// when every item is [`servable`] and every message needing a structure
/// has one in `stored` (sorted by UID); `None` otherwise, for the full
/// path. The bytes are what imap-codec would write for the same items, in
/// the same order (FLAGS last, as the full path puts them).
pub fn answer(
    view: &mut View,
    names: &[MessageDataItemName<'_>],
    targets: &[(u32, MessageRecord)],
    stored: &[(Uid, Vec<u8>)],
) -> Option<Vec<u8>> {
    if !servable(names) {
        return None;
    }
    let with_structure = needs_structure(names);
    let with_flags = names.contains(&MessageDataItemName::Flags);
    let mut out = Vec::with_capacity(targets.len() * if with_structure { 1024 } else { 64 });
    // FLAGS lists are few and shared by many messages.
    let mut flag_items: HashMap<(u32, &str), Vec<u8>> = HashMap::new();
    let date_format = chrono::format::StrftimeItems::new("%d-%b-%Y %H:%M:%S %z");
    for (seq, record) in targets {
        let structure = if with_structure {
            let i = stored
                .binary_search_by_key(&record.uid, |(uid, _)| *uid)
                .ok()?;
            Some(decode(&stored[i].1)?)
        } else {
            None
        };
        let _ = write!(out, "* {seq} FETCH (");
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b' ');
            }
        };
        for name in names {
            match name {
                MessageDataItemName::Uid => {
                    sep(&mut out);
                    let _ = write!(out, "UID {}", nz(record.uid.0));
                }
                MessageDataItemName::InternalDate => {
                    sep(&mut out);
                    let date = super::commands::fetch::imap_date(record.internal_date);
                    let _ = write!(
                        out,
                        "INTERNALDATE \"{}\"",
                        date.as_ref().format_with_items(date_format.clone())
                    );
                }
                MessageDataItemName::Rfc822Size => {
                    sep(&mut out);
                    let size = structure.as_ref().map_or(0, |s| s.rfc822_size);
                    let _ = write!(out, "RFC822.SIZE {size}");
                }
                MessageDataItemName::Envelope => {
                    sep(&mut out);
                    out.extend_from_slice(structure.as_ref()?.envelope);
                }
                MessageDataItemName::BodyStructure => {
                    sep(&mut out);
                    out.extend_from_slice(structure.as_ref()?.body_structure);
                }
                MessageDataItemName::Body => {
                    sep(&mut out);
                    out.extend_from_slice(structure.as_ref()?.body);
                }
                // Last, below.
                _ => {}
            }
        }
        if with_flags {
            sep(&mut out);
            let flags = flag_items
                .entry((record.flags, record.keywords.as_str()))
                .or_insert_with(|| {
                    encode_item(MessageDataItem::Flags(flag_list(
                        record.flags,
                        &record.keywords,
                    )))
                });
            out.extend_from_slice(flags);
            view.told
                .insert(record.uid, (record.flags, record.keywords.clone()));
        }
        out.extend_from_slice(b")\r\n");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_structures_read_back() {
        let message = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
        let stored = compute(message);
        let s = decode(&stored).unwrap();
        assert_eq!(s.rfc822_size, message.len() as u32);
        assert!(s.envelope.starts_with(b"ENVELOPE ("));
        assert!(s.body_structure.starts_with(b"BODYSTRUCTURE ("));
        assert!(s.body.starts_with(b"BODY ("));
        // Another version, a truncation or trailing bytes: not used.
        let mut other = stored.clone();
        other[0] = VERSION + 1;
        assert_eq!(decode(&other), None);
        assert_eq!(decode(&stored[..stored.len() - 1]), None);
        let mut longer = stored.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn dates_are_written_as_imap_codec_writes_them() {
        for unix in [0, 1, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let date = super::super::commands::fetch::imap_date(Some(unix));
            let ours = format!(
                "INTERNALDATE \"{}\"",
                date.as_ref()
                    .format_with_items(chrono::format::StrftimeItems::new("%d-%b-%Y %H:%M:%S %z"))
            );
            let theirs = encode_item(MessageDataItem::InternalDate(date));
            assert_eq!(ours.as_bytes(), &theirs[..], "{unix}");
        }
    }
}
