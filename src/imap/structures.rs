//! Computed structures kept in the store: a message's ENVELOPE,
//! BODYSTRUCTURE and BODY, encoded once in their IMAP wire form, with its
//! RFC822.SIZE, beside its cached bytes (the `cache.structure` column,
//! keyed by content hash, so they go when the bytes are evicted).
//!
//! A warm `FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)` then
//! reads one row per message and copies bytes ([`write_item`]), instead of
//! reading every message file, walking its part tree and encoding the
//! result. The first FETCH that computes a structure keeps it
//! ([`compute`]).

use std::collections::HashMap;
use std::io::Write as _;

use imap_codec::encode::Encoder as _;
use imap_next::imap_types::body::{BasicFields, Body, BodyStructure, SpecificFields};
use imap_next::imap_types::core::{IString, NString, Quoted, Vec1};
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::response::{Data, Response};

use crate::imap::session::{flag_list, nz};
use crate::mailbox::MessageRecord;
use crate::mime::imap as mime;

/// Bumped whenever the MIME core may describe a message differently: a
/// stored structure of another version is computed again (2: media types
/// in the case the message writes them).
const VERSION: u8 = 2;

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
pub fn encode_item(item: MessageDataItem<'static>) -> Vec<u8> {
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

/// A BODYSTRUCTURE or BODY item (`name` is `BODYSTRUCTURE ` or `BODY `)
/// with the media types of text and message/rfc822 parts in the case the
/// message writes them, as Dovecot answers (`"text" "plain"`, or
/// `"TEXT" "PLAIN"` for a part whose Content-Type says so).
///
/// imap-codec writes `"TEXT"` and `"MESSAGE" "RFC822"` itself for those
/// parts (`impl EncodeIntoContext for Body`, imap-codec 2.0.0-alpha.10
/// `codec/encode.rs`), and its types have no field for the words. So each
/// part is written here, with imap-codec writing every value: a text or
/// message part is given to imap-codec as a basic part of the same type and
/// subtype words, which writes `("text" "plain" <fields>)`, and its line
/// count (and envelope and inner structure) go after the fields, before the
/// extension data, where RFC 3501 §7.4.2's `body-type-text` and
/// `body-type-msg` have them. The grammar is the same; only the words'
/// case differs from imap-codec's own encoding.
pub fn as_written(
    name: &[u8],
    (structure, media): (BodyStructure<'static>, mime::Media),
) -> Vec<u8> {
    let mut out = name.to_vec();
    let mut media = media.into_iter();
    write_structure(&mut out, structure, &mut media);
    out
}

/// imap-codec's encoding of one body structure (`(…)`).
fn encoded(structure: BodyStructure<'static>) -> Vec<u8> {
    let mut item = encode_item(MessageDataItem::BodyStructure(structure));
    item.drain(..b"BODYSTRUCTURE ".len());
    item
}

fn write_structure(
    out: &mut Vec<u8>,
    structure: BodyStructure<'static>,
    media: &mut std::vec::IntoIter<(IString<'static>, IString<'static>)>,
) {
    match structure {
        BodyStructure::Multi {
            bodies,
            subtype,
            extension_data,
        } => {
            // `(<parts> "subtype" <extension>)`: the tail after the parts
            // is imap-codec's, cut from a multipart of one known part.
            let placeholder = basic_part("x", "y");
            let skip = 1 + encoded(placeholder.clone()).len();
            let tail = encoded(BodyStructure::Multi {
                bodies: Vec1::from(placeholder),
                subtype,
                extension_data,
            });
            out.push(b'(');
            for body in bodies.into_inner() {
                write_structure(out, body, media);
            }
            out.extend_from_slice(tail.get(skip..).unwrap_or(b")"));
        }
        BodyStructure::Single {
            body: Body { basic, specific },
            extension_data,
        } => {
            let (words, inner) = match specific {
                SpecificFields::Basic { .. } => {
                    out.extend_from_slice(&encoded(BodyStructure::Single {
                        body: Body { basic, specific },
                        extension_data,
                    }));
                    return;
                }
                SpecificFields::Text {
                    subtype,
                    number_of_lines,
                } => {
                    let t = media.next().map_or_else(|| word("text"), |(t, _)| t);
                    ((t, subtype), Err(number_of_lines))
                }
                SpecificFields::Message {
                    envelope,
                    body_structure,
                    number_of_lines,
                } => {
                    let words = media
                        .next()
                        .unwrap_or_else(|| (word("message"), word("rfc822")));
                    (words, Ok((envelope, body_structure, number_of_lines)))
                }
            };
            let specific = SpecificFields::Basic {
                r#type: words.0,
                subtype: words.1,
            };
            let fields = encoded(BodyStructure::Single {
                body: Body {
                    basic: basic.clone(),
                    specific: specific.clone(),
                },
                extension_data: None,
            });
            let whole = encoded(BodyStructure::Single {
                body: Body { basic, specific },
                extension_data,
            });
            // `fields` is `(… <fields>)`; `whole` the same with ` <extension>`
            // before its `)`.
            let cut = fields.len().saturating_sub(1);
            out.extend_from_slice(fields.get(..cut).unwrap_or_default());
            let lines = match inner {
                Err(lines) => lines,
                Ok((envelope, body_structure, lines)) => {
                    let envelope = encode_item(MessageDataItem::Envelope(*envelope));
                    out.push(b' ');
                    out.extend_from_slice(envelope.get(b"ENVELOPE ".len()..).unwrap_or_default());
                    out.push(b' ');
                    write_structure(out, *body_structure, media);
                    lines
                }
            };
            let _ = write!(out, " {lines}");
            out.extend_from_slice(whole.get(cut..).unwrap_or(b")"));
        }
    }
}

/// A fixed word (letters and digits: always a valid quoted string).
fn word(w: &'static str) -> IString<'static> {
    IString::Quoted(Quoted::unvalidated(w))
}

/// An empty part of media type `t/s`, without extension data.
fn basic_part(t: &'static str, s: &'static str) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: Vec::new(),
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: word("7bit"),
                size: 0,
            },
            specific: SpecificFields::Basic {
                r#type: word(t),
                subtype: word(s),
            },
        },
        extension_data: None,
    }
}

/// The stored form of `bytes`' structure.
pub fn compute(bytes: &[u8]) -> Vec<u8> {
    let message = mime::Message::new(bytes);
    let envelope = encode_item(MessageDataItem::Envelope(mime::envelope(bytes)));
    let body_structure = as_written(b"BODYSTRUCTURE ", message.body_structure_as_written(true));
    let body = as_written(b"BODY ", message.body_structure_as_written(false));
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

/// Whether the index or a kept structure holds `name`'s item (a body
/// section, RFC822… need the message's bytes).
pub fn servable_item(name: &MessageDataItemName<'_>) -> bool {
    matches!(
        name,
        MessageDataItemName::Uid
            | MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822Size
            | MessageDataItemName::Envelope
            | MessageDataItemName::BodyStructure
            | MessageDataItemName::Body
            // CONDSTORE's MODSEQ is in the index (written by FETCH itself).
            | MessageDataItemName::ModSeq
    )
}

/// Whether the index and a kept structure hold every item: no message's
/// bytes are needed then.
pub fn servable(names: &[MessageDataItemName<'_>]) -> bool {
    names.iter().all(servable_item)
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

/// Write `name`'s item for `record` if the index or `structure` holds it
/// (UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY; the
/// structure items need `structure`); false for any other item. The bytes
/// are what imap-codec writes for the same item.
pub fn write_item(
    out: &mut Vec<u8>,
    name: &MessageDataItemName<'_>,
    record: &MessageRecord,
    structure: Option<&Structure<'_>>,
) -> bool {
    match (name, structure) {
        (MessageDataItemName::Uid, _) => {
            let _ = write!(out, "UID {}", nz(record.uid.0));
        }
        (MessageDataItemName::InternalDate, _) => {
            let date = super::commands::fetch::imap_date(record.internal_date);
            let _ = write!(
                out,
                "INTERNALDATE \"{}\"",
                date.as_ref().format_with_items(DATE_FORMAT.iter())
            );
        }
        (MessageDataItemName::Rfc822Size, Some(s)) => {
            let _ = write!(out, "RFC822.SIZE {}", s.rfc822_size);
        }
        (MessageDataItemName::Envelope, Some(s)) => out.extend_from_slice(s.envelope),
        (MessageDataItemName::BodyStructure, Some(s)) => out.extend_from_slice(s.body_structure),
        (MessageDataItemName::Body, Some(s)) => out.extend_from_slice(s.body),
        _ => return false,
    }
    true
}

/// imap-codec's format for a date-time (`"%d-%b-%Y %H:%M:%S %z"`), parsed
/// once.
static DATE_FORMAT: std::sync::LazyLock<Vec<chrono::format::Item<'static>>> =
    std::sync::LazyLock::new(|| {
        chrono::format::StrftimeItems::new("%d-%b-%Y %H:%M:%S %z")
            .parse_to_owned()
            .unwrap_or_default()
    });

/// `FLAGS (…)` items by flag set: a folder has few distinct ones, so each
/// is encoded (by imap-codec) once per FETCH.
#[derive(Default)]
pub struct FlagItems(HashMap<(u32, String), Vec<u8>>);

impl FlagItems {
    pub fn get(&mut self, bits: u32, keywords: &str) -> &[u8] {
        // The key copies the keywords (no allocation for the usual none).
        let key = (bits, keywords.to_string());
        self.0
            .entry(key)
            .or_insert_with(|| encode_item(MessageDataItem::Flags(flag_list(bits, keywords))))
    }
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

    /// A FETCH response put together from the index and a kept structure
    /// is the one imap-codec writes for the same items.
    #[test]
    fn responses_are_written_as_imap_codec_writes_them() {
        let message = b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\nTo: a@example.com, \
            b@example.com\r\nSubject: \"quoted\" and \\ back\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
            hi\r\n--b\r\nContent-Type: application/pdf; name=x.pdf\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n";
        let kept = compute(message);
        let structure = decode(&kept).unwrap();
        let record = MessageRecord {
            uid: crate::mailbox::Uid(42),
            remote_id: "id".into(),
            flags: crate::mailbox::flags::SEEN | crate::mailbox::flags::FLAGGED,
            keywords: "$label1 project-x".into(),
            size: Some(message.len() as u64),
            internal_date: Some(1_764_000_000),
            content_hash: Some("h".into()),
            modseq: 1,
        };
        let names = [
            MessageDataItemName::Uid,
            MessageDataItemName::Rfc822Size,
            MessageDataItemName::Envelope,
            MessageDataItemName::BodyStructure,
            MessageDataItemName::Body,
            MessageDataItemName::InternalDate,
        ];
        let mut ours = b"* 7 FETCH (".to_vec();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                ours.push(b' ');
            }
            assert!(write_item(&mut ours, name, &record, Some(&structure)));
        }
        ours.push(b' ');
        ours.extend_from_slice(FlagItems::default().get(record.flags, &record.keywords));
        ours.extend_from_slice(b")\r\n");

        let m = mime::Message::new(message);
        let theirs = Response::Data(Data::Fetch {
            seq: nz(7),
            items: Vec1::try_from(vec![
                MessageDataItem::Uid(nz(42)),
                MessageDataItem::Rfc822Size(message.len() as u32),
                MessageDataItem::Envelope(mime::envelope(message)),
                MessageDataItem::BodyStructure(m.body_structure()),
                MessageDataItem::Body(m.body()),
                MessageDataItem::InternalDate(super::super::commands::fetch::imap_date(Some(
                    1_764_000_000,
                ))),
                MessageDataItem::Flags(flag_list(record.flags, &record.keywords)),
            ])
            .unwrap(),
        });
        let theirs = imap_codec::ResponseCodec::default().encode(&theirs).dump();
        // imap-codec writes TEXT in capitals; the message (and Dovecot)
        // write `text`.
        let theirs =
            String::from_utf8_lossy(&theirs).replace("\"TEXT\" \"plain\"", "\"text\" \"plain\"");
        assert_eq!(String::from_utf8_lossy(&ours), theirs);
        // Items not held by the index or the structure are left to the caller.
        assert!(!write_item(
            &mut ours,
            &MessageDataItemName::Rfc822,
            &record,
            Some(&structure)
        ));
        assert!(!write_item(
            &mut ours,
            &MessageDataItemName::Envelope,
            &record,
            None
        ));
    }

    /// The words of text and message parts as Dovecot writes them; every
    /// other byte as imap-codec writes it (literals included: an 8-bit
    /// parameter value and subject).
    #[test]
    fn media_types_are_written_in_the_case_of_the_message() {
        let message = "Content-Type: Multipart/Mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: TEXT/Plain; name=\"Gr\u{fc}\u{df}e\"\r\n\r\nhi\r\n--b\r\n\
            Content-Type: MESSAGE/RFC822\r\nContent-Disposition: attachment\r\n\r\n\
            Subject: \u{fc}ber\r\n\r\ninner\r\n--b\r\n\r\nbare\r\n--b--\r\n";
        let m = mime::Message::new(message.as_bytes());
        let ours = as_written(b"BODYSTRUCTURE ", m.body_structure_as_written(true));
        let theirs = encode_item(MessageDataItem::BodyStructure(m.body_structure()));
        let ours = String::from_utf8(ours).unwrap();
        assert!(
            ours.contains("(\"TEXT\" \"Plain\" (\"name\" {7}\r\nGr\u{fc}\u{df}e \"charset\""),
            "{ours}"
        );
        assert!(ours.contains("(\"message\" \"rfc822\" NIL"), "{ours}");
        assert!(
            ours.contains(")(\"text\" \"plain\" (\"charset\" \"us-ascii\")"),
            "{ours}"
        );
        let upper = ours
            .replace("\"text\" \"plain\"", "\"TEXT\" \"plain\"")
            .replace("\"message\" \"rfc822\"", "\"MESSAGE\" \"RFC822\"");
        assert_eq!(upper, String::from_utf8(theirs).unwrap());
        // BODY: the same without extension data.
        let ours = as_written(b"BODY ", m.body_structure_as_written(false));
        let theirs = encode_item(MessageDataItem::Body(m.body()));
        let ours = String::from_utf8(ours)
            .unwrap()
            .replace("\"text\" \"plain\"", "\"TEXT\" \"plain\"")
            .replace("\"message\" \"rfc822\"", "\"MESSAGE\" \"RFC822\"");
        assert_eq!(ours, String::from_utf8(theirs).unwrap());
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
