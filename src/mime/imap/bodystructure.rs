//! BODYSTRUCTURE and BODY (RFC 3501 §7.4.2) from the part tree.
//!
//! Per part: media type and subtype in the case they were sent
//! (text/plain when there is no Content-Type). imap-codec writes the words
//! TEXT and MESSAGE RFC822 itself, in capitals; so each text and
//! message/rfc822 part's words as Dovecot writes them are also listed
//! ([`Media`]) for the encoder in `imap::structures`); the Content-Type
//! parameters (charset
//! us-ascii added to text parts that name none); Content-ID and
//! Content-Description unfolded, NIL when absent; the transfer encoding
//! as sent, 7bit when absent; the size in octets of the body as it stands
//! in the message (still transfer-encoded); line counts for text and
//! message/rfc822 bodies; for message/rfc822 the encapsulated message's
//! ENVELOPE and structure. Multiparts give their parts and subtype.
//!
//! Extension data (BODYSTRUCTURE only): MD5 (Content-MD5 as sent, so
//! almost always NIL), disposition with its parameters, languages,
//! location; for multiparts the Content-Type parameters (boundary among
//! them) instead of MD5.
//!
//! A multipart or message/rfc822 part the part tree did not enter (too
//! deep or too many parts, see [`super::structure`]) is described as one
//! opaque application/octet-stream part of its real size, as Dovecot does
//! past its limits.

use imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_types::core::{IString, NString, Vec1};

use super::envelope::envelope_of;
use super::header::fields;
use super::rfc822::{self, Step};
use super::strings::{istring, nstring, static_str, unfolded, without_nul};
use super::structure::{Part, Tree, lines};

type Params = Vec<rfc822::Param>;

/// Type and subtype as Dovecot writes them (a text part's as the message
/// writes them, `message` `rfc822` always in lower case), of each text and
/// message/rfc822 part in the order BODYSTRUCTURE writes its parts
/// (depth first, a message/rfc822 part before the parts inside it).
pub type Media = Vec<(IString<'static>, IString<'static>)>;

/// The Content-* fields of one part, as BODYSTRUCTURE reports them.
#[derive(Default)]
struct Content {
    /// Type and subtype; `None` without a Content-Type.
    media: Option<(Vec<u8>, Vec<u8>)>,
    params: Params,
    id: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    encoding: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
    disposition: Option<(Vec<u8>, Params)>,
    language: Vec<Vec<u8>>,
    location: Option<Vec<u8>>,
}

impl Content {
    /// Read from the header block of a part; only a MIME entity has any.
    fn of(msg: &[u8], part: &Part) -> Content {
        let mut c = Content::default();
        if !part.flags.is_mime {
            return c;
        }
        let header = msg.get(part.header.clone()).unwrap_or_default();
        for f in fields(header) {
            if f.name.len() < 8 || !f.name[..8].eq_ignore_ascii_case(b"Content-") {
                continue;
            }
            let name = &f.name[8..];
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            let value = f.value();
            // Unfolded right away: these are written unfolded.
            let raw = || Some(unfolded(&without_nul(&value)));
            if is("ID") && c.id.is_none() {
                c.id = raw();
            } else if is("MD5") && c.md5.is_none() {
                c.md5 = raw();
            } else if is("Type") && c.media.is_none() {
                let (ct, mut lx, step) = rfc822::content_type(&value);
                let (t, s) = match ct.iter().position(|&b| b == b'/') {
                    Some(slash) => (ct[..slash].to_vec(), ct[slash + 1..].to_vec()),
                    None => (ct, Vec::new()),
                };
                c.media = Some((t, s));
                if step != Step::Broken {
                    c.params = rfc822::parameters(&mut lx);
                }
            } else if is("Transfer-Encoding") && c.encoding.is_none() {
                let (token, _, step) = rfc822::leading_token(&value);
                if step == Step::End && !token.is_empty() {
                    c.encoding = Some(token);
                }
            } else if is("Language") && c.language.is_empty() {
                c.language = rfc822::languages(&value);
            } else if is("Location") && c.location.is_none() {
                c.location = raw();
            } else if is("Description") && c.description.is_none() {
                c.description = raw();
            } else if is("Disposition") && c.disposition.as_ref().is_none_or(|d| d.1.is_empty()) {
                let (token, mut lx, step) = rfc822::leading_token(&value);
                if step != Step::Broken {
                    let params = rfc822::parameters(&mut lx);
                    c.disposition = Some((token, params));
                }
            }
        }
        c
    }

    fn is_type(&self, t: &str, s: &str) -> bool {
        self.media.as_ref().is_some_and(|(mt, ms)| {
            mt.eq_ignore_ascii_case(t.as_bytes())
                && (s.is_empty() || ms.eq_ignore_ascii_case(s.as_bytes()))
        })
    }
}

fn param_list(params: Params) -> Vec<(IString<'static>, IString<'static>)> {
    params
        .into_iter()
        .map(|(k, v)| (istring(k), istring(v)))
        .collect()
}

fn size(range: &std::ops::Range<usize>) -> u32 {
    u32::try_from(range.len()).unwrap_or(u32::MAX)
}

/// The tail of the extension data shared by every kind of part.
fn disposition(c: &mut Content) -> Disposition<'static> {
    Disposition {
        disposition: c
            .disposition
            .take()
            .map(|(d, params)| (istring(d), param_list(params))),
        tail: Some(Language {
            language: std::mem::take(&mut c.language)
                .into_iter()
                .map(istring)
                .collect(),
            tail: Some(Location {
                location: nstring(c.location.take()),
                extensions: Vec::new(),
            }),
        }),
    }
}

/// The body of a multipart with no parts: one empty text/plain part.
fn empty_text(extended: bool, media: &mut Media) -> BodyStructure<'static> {
    media.push((static_str("text"), static_str("plain")));
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(static_str("charset"), static_str("us-ascii"))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: static_str("7bit"),
                size: 0,
            },
            specific: SpecificFields::Text {
                subtype: static_str("plain"),
                number_of_lines: 0,
            },
        },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: NString(None),
            tail: Some(Disposition {
                disposition: None,
                tail: Some(Language {
                    language: Vec::new(),
                    tail: Some(Location {
                        location: NString(None),
                        extensions: Vec::new(),
                    }),
                }),
            }),
        }),
    }
}

/// BODYSTRUCTURE (`extended`) or BODY of part `id`.
/// Each text and message/rfc822 part's media type as written is pushed
/// to `media`.
pub(crate) fn write(
    msg: &[u8],
    tree: &Tree,
    id: usize,
    extended: bool,
    media: &mut Media,
) -> BodyStructure<'static> {
    let Some(part) = tree.parts.get(id) else {
        return empty_text(extended, media);
    };
    let mut c = Content::of(msg, part);
    let flags = part.flags;

    if flags.multipart {
        let bodies: Vec<_> = part
            .children
            .iter()
            .map(|&child| write(msg, tree, child, extended, media))
            .collect();
        let bodies =
            Vec1::try_from(bodies).unwrap_or_else(|_| Vec1::from(empty_text(extended, media)));
        let subtype = c.media.as_ref().map(|m| m.1.clone()).unwrap_or_default();
        return BodyStructure::Multi {
            bodies,
            subtype: istring(subtype),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: param_list(std::mem::take(&mut c.params)),
                tail: Some(disposition(&mut c)),
            }),
        };
    }

    // Parts that should have been split or entered but were not (too
    // deep, too many parts) are opaque data.
    let opaque = !flags.rfc822
        && (c.is_type("message", "rfc822")
            || c.is_type("multipart", "")
            || (c.media.is_none() && part.in_digest));
    let text = !flags.rfc822
        && !opaque
        && c.media
            .as_ref()
            .is_none_or(|(t, _)| t.eq_ignore_ascii_case(b"text"));

    let mut params = std::mem::take(&mut c.params);
    if text
        && !params
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"charset"))
    {
        params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
    }
    let basic = BasicFields {
        parameter_list: param_list(params),
        id: nstring(c.id.take()),
        description: nstring(c.description.take()),
        content_transfer_encoding: match c.encoding.take() {
            Some(e) => istring(e),
            None => static_str("7bit"),
        },
        size: size(&part.body),
    };
    let body_bytes = msg.get(part.body.clone()).unwrap_or_default();
    let specific = if flags.rfc822 {
        let child = part.children.first().copied().unwrap_or(usize::MAX);
        let envelope = tree
            .parts
            .get(child)
            .and_then(|p| msg.get(p.header.clone()))
            .map(envelope_of)
            .unwrap_or_else(|| envelope_of(b""));
        // Always lower case, whatever the Content-Type says: Dovecot
        // writes `"message" "rfc822"` for `Message/RFC822` too.
        media.push((static_str("message"), static_str("rfc822")));
        SpecificFields::Message {
            envelope: Box::new(envelope),
            body_structure: Box::new(write(msg, tree, child, extended, media)),
            number_of_lines: lines(body_bytes),
        }
    } else if opaque {
        SpecificFields::Basic {
            r#type: static_str("application"),
            subtype: static_str("octet-stream"),
        }
    } else if text {
        let (t, s) = match c.media.take() {
            Some((t, s)) => (istring(t), istring(s)),
            None => (static_str("text"), static_str("plain")),
        };
        media.push((t, s.clone()));
        SpecificFields::Text {
            subtype: s,
            number_of_lines: lines(body_bytes),
        }
    } else {
        let (t, s) = c.media.take().unwrap_or_default();
        SpecificFields::Basic {
            r#type: istring(t),
            subtype: istring(s),
        }
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstring(c.md5.take()),
            tail: Some(disposition(&mut c)),
        }),
    }
}
