//! `BODY[section]<partial>` (RFC 3501 §6.4.5) as byte ranges of the
//! message.
//!
//! - `[]` the whole message; `[HEADER]` the header block with its blank
//!   line; `[TEXT]` the body; `[HEADER.FIELDS (…)]` /
//!   `[HEADER.FIELDS.NOT (…)]` the matching / other fields in message
//!   order, folding kept, then the blank line (when the message has one).
//! - `[1.2.3]` a part's body, still transfer-encoded. A message that is
//!   not multipart has one part, 1, its body. A part number inside a
//!   message/rfc822 part numbers the parts of the encapsulated message,
//!   and `[n]` of such a part is the whole encapsulated message.
//! - `[n.MIME]` the part's MIME header block; `[n.HEADER]`, `[n.TEXT]`,
//!   `[n.HEADER.FIELDS …]` those of the message in message/rfc822 part n.
//! - A part that does not exist is the empty string.
//!
//! Everything but HEADER.FIELDS borrows from the message.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_types::core::AString;
use imap_types::fetch::{Part as PartPath, Section};

use super::header::fields;
use super::structure::{Tree, parse, root_header_end};

/// The bytes of `section` of `msg` (`None` is `BODY[]`).
pub fn section<'a>(msg: &'a [u8], section: Option<&Section<'_>>) -> Cow<'a, [u8]> {
    // The top-level header and body need no part tree.
    match section {
        None => Cow::Borrowed(msg),
        Some(Section::Header(None)) => Cow::Borrowed(&msg[..root_header_end(msg)]),
        Some(Section::Text(None)) => Cow::Borrowed(&msg[root_header_end(msg)..]),
        Some(Section::HeaderFields(None, names)) => Cow::Owned(header_fields(
            &msg[..root_header_end(msg)],
            names.as_ref(),
            true,
        )),
        Some(Section::HeaderFieldsNot(None, names)) => Cow::Owned(header_fields(
            &msg[..root_header_end(msg)],
            names.as_ref(),
            false,
        )),
        Some(s) => section_in(msg, &parse(msg), s),
    }
}

/// `section` of `msg` whose part tree is `tree`.
pub(crate) fn section_in<'a>(msg: &'a [u8], tree: &Tree, section: &Section<'_>) -> Cow<'a, [u8]> {
    let empty = Cow::Borrowed(&msg[..0]);
    let bytes = |r: &std::ops::Range<usize>| Cow::Borrowed(msg.get(r.clone()).unwrap_or_default());
    // For HEADER, TEXT and HEADER.FIELDS under a part number: the
    // encapsulated message of that message/rfc822 part.
    let message = |path: &Option<PartPath>| -> Option<usize> {
        match path {
            None => Some(0),
            Some(path) => {
                let id = find(tree, path.0.as_ref())?;
                let part = &tree.parts[id];
                if part.flags.rfc822 {
                    part.children.first().copied()
                } else {
                    None
                }
            }
        }
    };
    match section {
        Section::Part(path) => match find(tree, path.0.as_ref()) {
            Some(id) => bytes(&tree.parts[id].body),
            None => empty,
        },
        Section::Mime(path) => match find(tree, path.0.as_ref()) {
            Some(id) => bytes(&tree.parts[id].header),
            None => empty,
        },
        Section::Header(path) => match message(path) {
            Some(id) => bytes(&tree.parts[id].header),
            None => empty,
        },
        Section::Text(path) => match message(path) {
            Some(id) => bytes(&tree.parts[id].body),
            None => empty,
        },
        Section::HeaderFields(path, names) => match message(path) {
            Some(id) => Cow::Owned(header_fields(
                msg.get(tree.parts[id].header.clone()).unwrap_or_default(),
                names.as_ref(),
                true,
            )),
            None => empty,
        },
        Section::HeaderFieldsNot(path, names) => match message(path) {
            Some(id) => Cow::Owned(header_fields(
                msg.get(tree.parts[id].header.clone()).unwrap_or_default(),
                names.as_ref(),
                false,
            )),
            None => empty,
        },
    }
}

/// The part a part number names (RFC 3501 §6.4.5).
pub(crate) fn find(tree: &Tree, path: &[NonZeroU32]) -> Option<usize> {
    let mut id = 0;
    for (i, n) in path.iter().enumerate() {
        let more = i + 1 < path.len();
        let part = tree.parts.get(id)?;
        if part.flags.multipart {
            id = *part.children.get(usize::try_from(n.get() - 1).ok()?)?;
        } else if n.get() != 1 || (more && !part.flags.rfc822) {
            // A part that is not multipart has one part, 1; only a
            // message/rfc822 part can be gone into further.
            return None;
        }
        let part = tree.parts.get(id)?;
        if more && part.flags.rfc822 {
            id = *part.children.first()?;
        }
    }
    Some(id)
}

/// The fields of `header` whose names are (`include`) or are not in
/// `names`, in order, then the blank line if `header` has one. A last
/// field cut off by the end of the message gets its line end.
fn header_fields(header: &[u8], names: &[AString<'_>], include: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut used = 0;
    for f in fields(header) {
        let line = f.line;
        used = f.end;
        let listed = names
            .iter()
            .any(|n| n.as_ref().eq_ignore_ascii_case(f.name) && !f.name.is_empty());
        if listed == include {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    // The blank line, if the block has one.
    let rest = &header[used.min(header.len())..];
    if rest.starts_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    } else if rest.starts_with(b"\n") {
        out.extend_from_slice(b"\n");
    }
    out
}

/// `<start.len>` of a section's bytes (RFC 3501 §6.4.5): the octets from
/// `start` on, at most `len` of them; empty when `start` is past the end.
pub fn partial(bytes: &[u8], start: u32, len: u32) -> &[u8] {
    let start = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(bytes.len());
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_types::core::Vec1;

    fn path(p: &[u32]) -> PartPath {
        PartPath(
            Vec1::try_from(
                p.iter()
                    .map(|&n| NonZeroU32::new(n).unwrap())
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        )
    }

    fn names(n: &[&'static str]) -> Vec1<AString<'static>> {
        Vec1::try_from(
            n.iter()
                .map(|s| AString::try_from(*s).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    const MIXED: &[u8] = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nX: y\r\n\r\ninner\r\n--b--\r\n";

    #[test]
    fn numbered_parts_mime_and_nested_messages() {
        let get = |s: Section<'_>| section(MIXED, Some(&s)).into_owned();
        assert_eq!(get(Section::Part(path(&[1]))), b"one");
        assert_eq!(
            get(Section::Mime(path(&[1]))),
            b"Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(
            get(Section::Part(path(&[2]))),
            b"Subject: in\r\nX: y\r\n\r\ninner"
        );
        assert_eq!(
            get(Section::Header(Some(path(&[2])))),
            b"Subject: in\r\nX: y\r\n\r\n"
        );
        assert_eq!(get(Section::Text(Some(path(&[2])))), b"inner");
        assert_eq!(get(Section::Part(path(&[2, 1]))), b"inner");
        assert_eq!(
            get(Section::HeaderFields(Some(path(&[2])), names(&["x"]))),
            b"X: y\r\n\r\n"
        );
        // No such part; HEADER of a part that is not a message.
        assert_eq!(get(Section::Part(path(&[3]))), b"");
        assert_eq!(get(Section::Header(Some(path(&[1])))), b"");
        assert_eq!(get(Section::Part(path(&[1, 2]))), b"");
    }

    #[test]
    fn top_level_sections() {
        let msg = b"From: a@b.c\r\nX-A: 1\r\n  cont\r\nTo: d@e.f\r\n\r\nbody\r\n";
        let get = |s: Option<Section<'_>>| section(msg, s.as_ref()).into_owned();
        assert_eq!(get(None), msg);
        let header = get(Some(Section::Header(None)));
        let text = get(Some(Section::Text(None)));
        assert_eq!([header, text].concat(), msg);
        assert_eq!(
            get(Some(Section::HeaderFields(
                None,
                names(&["x-a", "nothere"])
            ))),
            b"X-A: 1\r\n  cont\r\n\r\n"
        );
        assert_eq!(
            get(Some(Section::HeaderFieldsNot(None, names(&["X-A"])))),
            b"From: a@b.c\r\nTo: d@e.f\r\n\r\n"
        );
        // A single-part message: part 1 is its body, 1.MIME its header.
        assert_eq!(get(Some(Section::Part(path(&[1])))), b"body\r\n");
        assert_eq!(
            get(Some(Section::Mime(path(&[1])))),
            get(Some(Section::Header(None)))
        );
        // No blank line: the last field gets a line end, no blank line.
        assert_eq!(
            section(
                b"From: a\r\nX-A: 1",
                Some(&Section::HeaderFields(None, names(&["x-a"])))
            )
            .as_ref(),
            b"X-A: 1\r\n"
        );
    }

    #[test]
    fn partial_ranges() {
        assert_eq!(partial(b"hello", 1, 3), b"ell");
        assert_eq!(partial(b"hello", 3, 10), b"lo");
        assert_eq!(partial(b"hello", 9, 1), b"");
        assert_eq!(partial(b"hello", u32::MAX, u32::MAX), b"");
    }
}
