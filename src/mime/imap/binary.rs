//! `BINARY[section]` and `BINARY.SIZE[section]` (RFC 3516 §4): a part's
//! body with its Content-Transfer-Encoding undone, and, for APPEND with a
//! `literal8`, the reverse: parts sent as `binary` re-encoded as base64
//! so that any store carries them ([`encode_binary_parts`]).
//!
//! - `BINARY[]` is the whole message, unchanged (nothing to decode).
//! - `BINARY[n…]` is the part's body (`BODY[n…]`) decoded by the part's
//!   Content-Transfer-Encoding: `base64` (RFC 2045 §6.8, characters
//!   outside the alphabet skipped) and `quoted-printable` (§6.7, soft line
//!   breaks joined, transport padding before a line end dropped); `7bit`,
//!   `8bit`, `binary` and none are identity.
//! - Any other encoding is [`UnknownCte`]: the server answers
//!   `NO [UNKNOWN-CTE]` (§4.1).

use std::borrow::Cow;
use std::num::NonZeroU32;

use super::header::fields;
use super::structure::{Tree, parse};

/// A part whose Content-Transfer-Encoding is not one RFC 2045 defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCte(pub String);

/// The transfer encoding named by a part's header block.
fn encoding(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(header) {
        if f.is("Content-Transfer-Encoding") {
            out = f.value().trim_ascii().to_ascii_lowercase();
        }
    }
    out
}

/// `BINARY[path]` of `msg` (an empty path is `BINARY[]`); a part that
/// does not exist is empty, as `BODY[…]` of one is.
pub fn binary<'a>(msg: &'a [u8], path: &[NonZeroU32]) -> Result<Cow<'a, [u8]>, UnknownCte> {
    if path.is_empty() {
        return Ok(Cow::Borrowed(msg));
    }
    let tree = parse(msg);
    binary_in(msg, &tree, path)
}

/// [`binary`] with the part tree already read.
pub(crate) fn binary_in<'a>(
    msg: &'a [u8],
    tree: &Tree,
    path: &[NonZeroU32],
) -> Result<Cow<'a, [u8]>, UnknownCte> {
    if path.is_empty() {
        return Ok(Cow::Borrowed(msg));
    }
    let Some(part) = super::section::find(tree, path).and_then(|id| tree.parts.get(id)) else {
        return Ok(Cow::Borrowed(&msg[..0]));
    };
    let header = msg.get(part.header.clone()).unwrap_or_default();
    let body = msg.get(part.body.clone()).unwrap_or_default();
    match encoding(header).as_slice() {
        b"" | b"7bit" | b"8bit" | b"binary" => Ok(Cow::Borrowed(body)),
        b"base64" => Ok(Cow::Owned(crate::mime::split::decode_base64_lenient(body))),
        b"quoted-printable" => Ok(Cow::Owned(decode_quoted_printable(body))),
        other => Err(UnknownCte(String::from_utf8_lossy(other).into_owned())),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable decoded (RFC 2045 §6.7): `=XX` is the octet XX; `=`
/// at the end of a line (after transport padding is dropped) joins the
/// next line; white space before a line end is padding and goes; a `=`
/// not followed by two hex digits stays as it is. Line ends are kept as
/// sent (CRLF or LF).
pub fn decode_quoted_printable(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let (line, end, tail): (&[u8], &[u8], &[u8]) = match memchr::memchr(b'\n', rest) {
            Some(i) if i > 0 && rest[i - 1] == b'\r' => (&rest[..i - 1], b"\r\n", &rest[i + 1..]),
            Some(i) => (&rest[..i], b"\n", &rest[i + 1..]),
            None => (rest, b"", &rest[rest.len()..]),
        };
        let line = line.trim_ascii_end();
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(l) => (l, true),
            None => (line, false),
        };
        let mut i = 0;
        while i < line.len() {
            if line[i] == b'='
                && let (Some(h), Some(l)) = (
                    line.get(i + 1).copied().and_then(hex),
                    line.get(i + 2).copied().and_then(hex),
                )
            {
                out.push(h << 4 | l);
                i += 3;
            } else {
                out.push(line[i]);
                i += 1;
            }
        }
        if !soft {
            out.extend_from_slice(end);
        }
        rest = tail;
    }
    out
}

/// For APPEND with a `literal8` (RFC 3516 §4.2): every leaf part whose
/// Content-Transfer-Encoding is `binary`, and the body of a
/// non-multipart message sent as `binary`, re-encoded as base64 (76
/// symbols a line) with its header field changed to say so; everything
/// else byte for byte. `None` when there is no such part (the message
/// goes as it came).
pub fn encode_binary_parts(msg: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let tree = parse(msg);
    // Leaves sent as binary, in message order (their ranges never overlap).
    let mut targets: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = tree
        .parts
        .iter()
        .filter(|p| p.children.is_empty() && !p.flags.multipart)
        .filter(|p| encoding(msg.get(p.header.clone()).unwrap_or_default()) == b"binary")
        .map(|p| (p.header.clone(), p.body.clone()))
        .collect();
    if targets.is_empty() {
        return None;
    }
    targets.sort_by_key(|(h, _)| h.start);
    let mut out = Vec::with_capacity(msg.len() * 4 / 3 + 256);
    let mut at = 0;
    for (header, body) in targets {
        if header.start < at || body.start < header.end || body.end > msg.len() {
            continue;
        }
        out.extend_from_slice(&msg[at..header.start]);
        for f in fields(&msg[header.clone()]) {
            if f.is("Content-Transfer-Encoding") {
                out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
            } else {
                out.extend_from_slice(f.line);
            }
        }
        // The blank line that ends the header block, when it has one.
        let block = &msg[header.clone()];
        if block.ends_with(b"\r\n\r\n") || block == b"\r\n" {
            out.extend_from_slice(b"\r\n");
        } else if block.ends_with(b"\n\n") || block == b"\n" {
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(&msg[header.end..body.start]);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&msg[body.clone()]);
        for line in encoded.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        at = body.end;
    }
    out.extend_from_slice(&msg[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[u32]) -> Vec<NonZeroU32> {
        p.iter().map(|&n| NonZeroU32::new(n).unwrap()).collect()
    }

    const MIXED: &[u8] = b"From: a@example.com\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
        caf=C3=A9 =\r\nau lait  \r\n=3D done\r\n\
        --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: BASE64\r\n\r\n\
        AAECAw==\r\n\
        --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
        --b--\r\n";

    #[test]
    fn parts_are_decoded_by_their_encoding() {
        assert_eq!(binary(MIXED, &[]).unwrap(), MIXED);
        assert_eq!(
            binary(MIXED, &path(&[1])).unwrap().as_ref(),
            "café au lait\r\n= done".as_bytes()
        );
        assert_eq!(
            binary(MIXED, &path(&[2])).unwrap().as_ref(),
            b"\0\x01\x02\x03"
        );
        assert_eq!(
            binary(MIXED, &path(&[3])),
            Err(UnknownCte("x-uuencode".into()))
        );
        assert_eq!(binary(MIXED, &path(&[4])).unwrap().as_ref(), b"plain");
        assert_eq!(binary(MIXED, &path(&[9])).unwrap().as_ref(), b"");
    }

    #[test]
    fn quoted_printable_follows_rfc_2045() {
        assert_eq!(
            decode_quoted_printable(b"a=3Db=\r\nc \t\r\nd= \r\ne"),
            b"a=bc\r\nde"
        );
        assert_eq!(decode_quoted_printable(b"=ZZ=4"), b"=ZZ=4");
        assert_eq!(decode_quoted_printable(b"x\ny=\n"), b"x\ny");
    }

    #[test]
    fn binary_parts_are_sent_as_base64_and_read_back() {
        let msg = b"From: a@example.com\r\nMIME-Version: 1.0\r\n\
            Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\
            \0-\xe4\r\n\r";
        let sent = encode_binary_parts(msg).unwrap();
        assert!(!sent.contains(&0));
        let text = String::from_utf8_lossy(&sent);
        assert!(
            text.contains("Content-Transfer-Encoding: base64\r\n\r\n"),
            "{text}"
        );
        assert_eq!(
            binary(&sent, &path(&[1])).unwrap().as_ref(),
            b"\0-\xe4\r\n\r"
        );
        assert_eq!(encode_binary_parts(MIXED), None);
    }
}
