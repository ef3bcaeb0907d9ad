//! FETCH BODY and BODYSTRUCTURE (RFC 3501 §7.4.2), computed from the exact
//! bytes served: sizes are octet counts of each part's body as it stands
//! in those bytes, line counts are its line ends, nested message/rfc822
//! parts carry their own ENVELOPE and structure.
//!
//! Defaults follow RFC 2045/3501: no Content-Type means text/plain with
//! charset us-ascii; no Content-Transfer-Encoding means 7BIT. Extension
//! data (BODYSTRUCTURE only): MD5 is NIL; disposition, language and
//! location as sent, NIL when absent. Nesting is capped so that a hostile
//! message cannot make the work unbounded.

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_next::imap_types::core::{IString, NString, Vec1};
use mail_parser::{HeaderValue, Message, MimeHeaders, PartType};

/// Deepest nesting of multiparts and messages described: what common
/// client parsers accept (imap-codec reads 8 levels). A part deeper than
/// this is described as one opaque application/octet-stream part of its
/// real size; its sections can still be fetched by number.
const MAX_DEPTH: usize = 6;
/// Deepest nesting followed for part numbers.
const MAX_PATH_DEPTH: usize = 32;
/// Most parts described in one message (nested messages included); the
/// rest is summarised as empty text, so a hostile message costs bounded
/// work and memory.
const MAX_PARTS: usize = 2_000;

fn istring(s: &str) -> IString<'static> {
    IString::try_from(s.to_string())
        .map(|s| s.into_static())
        .unwrap_or_else(|_| IString::try_from("").expect("empty string"))
}

fn nstring(s: Option<&str>) -> NString<'static> {
    match s {
        Some(v) => NString(Some(istring(v))),
        None => NString(None),
    }
}

fn params(
    attributes: Option<&[mail_parser::Attribute<'_>]>,
) -> Vec<(IString<'static>, IString<'static>)> {
    attributes
        .unwrap_or_default()
        .iter()
        .map(|a| (istring(&a.name.to_ascii_uppercase()), istring(&a.value)))
        .collect()
}

fn lines(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u32
}

fn disposition(part: &mail_parser::MessagePart<'_>) -> Disposition<'static> {
    let disposition = part.content_disposition().map(|d| {
        (
            istring(&d.ctype().to_ascii_uppercase()),
            params(d.attributes()),
        )
    });
    let language: Vec<IString<'static>> = match part.content_language() {
        HeaderValue::Text(t) => vec![istring(t)],
        HeaderValue::TextList(list) => list.iter().map(|t| istring(t)).collect(),
        _ => Vec::new(),
    };
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: nstring(part.content_location()),
                extensions: Vec::new(),
            }),
        }),
    }
}

fn part_structure(
    message: &Message<'_>,
    id: u32,
    extended: bool,
    depth: usize,
    budget: &mut usize,
) -> BodyStructure<'static> {
    if *budget == 0 {
        return empty_text();
    }
    *budget -= 1;
    let raw = message.raw_message.as_ref();
    let Some(part) = message.parts.get(id as usize) else {
        return empty_text();
    };
    let start = (part.offset_body as usize).min(raw.len());
    let end = (part.offset_end as usize).clamp(start, raw.len());
    let body_bytes = &raw[start..end];
    let content_type = part.content_type();
    let (ctype, subtype) = match content_type {
        Some(ct) => (
            ct.ctype().to_string(),
            ct.subtype().unwrap_or("plain").to_string(),
        ),
        None => ("text".to_string(), "plain".to_string()),
    };
    let nests = matches!(part.body, PartType::Multipart(_) | PartType::Message(_));
    if nests && depth >= MAX_DEPTH {
        return BodyStructure::Single {
            body: Body {
                basic: BasicFields {
                    parameter_list: Vec::new(),
                    id: NString(None),
                    description: NString(None),
                    content_transfer_encoding: istring("7BIT"),
                    size: body_bytes.len() as u32,
                },
                specific: SpecificFields::Basic {
                    r#type: istring("application"),
                    subtype: istring("octet-stream"),
                },
            },
            extension_data: extended.then_some(SinglePartExtensionData {
                md5: NString(None),
                tail: None,
            }),
        };
    }
    if let PartType::Multipart(children) = &part.body {
        let bodies: Vec<BodyStructure<'static>> = children
            .iter()
            .map(|c| part_structure(message, *c, extended, depth + 1, budget))
            .collect();
        let bodies = Vec1::try_from(bodies).unwrap_or_else(|_| Vec1::from(empty_text()));
        return BodyStructure::Multi {
            bodies,
            subtype: istring(&subtype),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: params(content_type.and_then(|c| c.attributes())),
                tail: Some(disposition(part)),
            }),
        };
    }
    let mut parameter_list = params(content_type.and_then(|c| c.attributes()));
    if ctype.eq_ignore_ascii_case("text")
        && !parameter_list
            .iter()
            .any(|(k, _)| k.as_ref().eq_ignore_ascii_case(b"charset"))
    {
        parameter_list.push((istring("CHARSET"), istring("us-ascii")));
    }
    let basic = BasicFields {
        parameter_list,
        id: nstring(part.content_id().map(|id| id.trim())).and_angle(part.content_id()),
        description: nstring(part.content_description()),
        content_transfer_encoding: istring(
            &part
                .content_transfer_encoding()
                .map(|e| e.to_ascii_uppercase())
                .unwrap_or_else(|| "7BIT".to_string()),
        ),
        size: body_bytes.len() as u32,
    };
    let specific = match (&part.body, ctype.to_ascii_lowercase().as_str()) {
        // The nested message is described from its own bytes (the part's
        // body), so its envelope and offsets are its own.
        // Only a strictly smaller body is entered, so nesting always ends.
        (PartType::Message(_), _) if depth < MAX_DEPTH && body_bytes.len() < raw.len() => {
            SpecificFields::Message {
                envelope: Box::new(super::envelope::envelope(body_bytes)),
                body_structure: Box::new(match crate::mime::parse_message(body_bytes) {
                    Some(inner) => part_structure(&inner, 0, extended, depth + 1, budget),
                    None => empty_text(),
                }),
                number_of_lines: lines(body_bytes),
            }
        }
        // A message part that cannot be entered is opaque data: written as
        // message/rfc822 it would need an envelope and a structure.
        (PartType::Message(_), _) => SpecificFields::Basic {
            r#type: istring("application"),
            subtype: istring("octet-stream"),
        },
        (_, "text") => SpecificFields::Text {
            subtype: istring(&subtype),
            number_of_lines: lines(body_bytes),
        },
        _ => SpecificFields::Basic {
            r#type: istring(&ctype),
            subtype: istring(&subtype),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: NString(None),
            tail: Some(disposition(part)),
        }),
    }
}

/// The Content-ID with its angle brackets, as it stands in the header.
trait AndAngle {
    fn and_angle(self, raw: Option<&str>) -> NString<'static>;
}

impl AndAngle for NString<'static> {
    fn and_angle(self, raw: Option<&str>) -> NString<'static> {
        match raw {
            Some(id) => {
                let id = id.trim().trim_start_matches('<').trim_end_matches('>');
                nstring(Some(&format!("<{id}>")))
            }
            None => self,
        }
    }
}

fn empty_text() -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring("CHARSET"), istring("us-ascii"))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring("7BIT"),
                size: 0,
            },
            specific: SpecificFields::Text {
                subtype: istring("plain"),
                number_of_lines: 0,
            },
        },
        extension_data: None,
    }
}

/// BODYSTRUCTURE (`extended`) or BODY of `message`.
pub fn body_structure(message: &[u8], extended: bool) -> BodyStructure<'static> {
    match crate::mime::parse_message(message) {
        Some(parsed) => {
            let mut budget = MAX_PARTS;
            part_structure(&parsed, 0, extended, 0, &mut budget)
        }
        None => empty_text(),
    }
}

/// Where a numbered part's header and body lie in the message's bytes
/// (RFC 3501 §6.4.5 part specifiers: `1`, `1.2`, …; a part that is a
/// message/rfc822 is entered for the next number).
pub fn part_ranges(
    message: &[u8],
    path: &[u32],
) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    ranges_in(message, path, 0)
}

fn ranges_in(
    message: &[u8],
    path: &[u32],
    depth: usize,
) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    if depth > MAX_PATH_DEPTH {
        return None;
    }
    let parsed = crate::mime::parse_message(message)?;
    let mut id = 0usize;
    let mut rest = path;
    loop {
        let part = parsed.parts.get(id)?;
        let header = part.offset_header as usize..part.offset_body as usize;
        let body = part.offset_body as usize..part.offset_end as usize;
        if header.end > message.len() || body.end > message.len() || body.start > body.end {
            return None;
        }
        let Some((&n, tail)) = rest.split_first() else {
            return Some((header, body));
        };
        match &part.body {
            PartType::Multipart(children) => {
                id = *children.get((n as usize).checked_sub(1)?)? as usize;
                rest = tail;
            }
            // Inside a message/rfc822 part the numbering starts again.
            PartType::Message(_) if id != 0 && body.len() < message.len() => {
                let (h, b) = ranges_in(&message[body.clone()], rest, depth + 1)?;
                return Some((
                    body.start + h.start..body.start + h.end,
                    body.start + b.start..body.start + b.end,
                ));
            }
            // A single-part message has one part, 1.
            _ if id == 0 && n == 1 && tail.is_empty() => return Some((header, body)),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_defaults_and_sizes() {
        let msg = b"Subject: x\r\n\r\nline one\r\nline two\r\n";
        match body_structure(msg, true) {
            BodyStructure::Single {
                body,
                extension_data,
            } => {
                assert_eq!(body.basic.size, 20);
                assert_eq!(body.basic.content_transfer_encoding.as_ref(), b"7BIT");
                assert_eq!(body.basic.parameter_list.len(), 1);
                assert!(matches!(
                    body.specific,
                    SpecificFields::Text {
                        number_of_lines: 2,
                        ..
                    }
                ));
                assert!(extension_data.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multipart_with_attachment_and_nested_message() {
        let msg = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--b\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
Subject: inner\r\nFrom: a@b.c\r\n\r\ninner body\r\n--b--\r\n";
        match body_structure(msg, true) {
            BodyStructure::Multi {
                bodies, subtype, ..
            } => {
                assert_eq!(subtype.as_ref(), b"mixed");
                let parts = bodies.as_ref();
                assert_eq!(parts.len(), 3);
                match &parts[1] {
                    BodyStructure::Single { body, .. } => {
                        assert_eq!(body.basic.content_transfer_encoding.as_ref(), b"BASE64");
                        assert_eq!(body.basic.size, 8);
                    }
                    other => panic!("{other:?}"),
                }
                match &parts[2] {
                    BodyStructure::Single { body, .. } => {
                        assert!(matches!(body.specific, SpecificFields::Message { .. }))
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }

    /// A fuzzer find: message/rfc822 parts whose bodies parse to the same
    /// shape again made the work grow exponentially with the depth.
    #[test]
    fn regression_nested_messages_cost_bounded_work() {
        use imap_codec::ResponseCodec;
        use imap_codec::decode::Decoder;
        use imap_codec::encode::Encoder;
        use imap_next::imap_types::fetch::MessageDataItem;
        use imap_next::imap_types::response::{Data, Response};
        let msg = include_bytes!("../../fuzz/seeds/imap_mime/regression-oom.eml");
        for extended in [true, false] {
            let structure = body_structure(msg, extended);
            // …and the answer stays within what client parsers read.
            let response = Response::Data(Data::Fetch {
                seq: std::num::NonZeroU32::MIN,
                items: Vec1::from(MessageDataItem::BodyStructure(structure)),
            });
            let wire = ResponseCodec::default().encode(&response).dump();
            assert!(ResponseCodec::default().decode(&wire).is_ok());
        }
    }

    /// A fuzzer find: mail-parser itself panics on this input; the
    /// structure is still answered (as far as it can be) without a panic.
    #[test]
    fn regression_mail_parser_panic_is_contained() {
        let msg = include_bytes!("../../fuzz/seeds/imap_mime/regression-mailparser-panic.eml");
        let _ = body_structure(msg, true);
        let _ = part_ranges(msg, &[1]);
        let _ = crate::imap::envelope::envelope(msg);
    }

    #[test]
    fn garbage_does_not_panic() {
        for input in [
            &b""[..],
            b"\xff\xfe",
            b"Content-Type: multipart/mixed\r\n\r\n--",
        ] {
            let _ = body_structure(input, true);
            let _ = body_structure(input, false);
        }
    }
}
