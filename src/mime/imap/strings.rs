//! Header values turned into IMAP strings (RFC 3501 §4.3, §9 `string`,
//! `nstring`).
//!
//! Which wire form a string takes (quoted or literal) is imap-codec's
//! business; what is decided here is the *content*, and it follows the
//! reference server (Dovecot) so that clients see the same text:
//!
//! - [`for_humans`] (ENVELOPE subject and personal names): every run of
//!   SP, TAB, CR and LF becomes one space, leading and trailing ones go.
//! - [`unfolded`] (date, message ids, Content-ID, -Description,
//!   -Location, -MD5): CR and LF are dropped, a space put in where a line
//!   break was not followed by white space.
//!
//! NUL cannot travel in any IMAP string: it becomes U+FFFD in header text
//! (as the reference does when it reads a header) and 0x80 as a last
//! resort.

use imap_types::core::{IString, Literal, NString, Quoted};

/// `value` as an IMAP string: quoted when every byte is a TEXT-CHAR,
/// a literal otherwise.
pub(crate) fn istring(value: Vec<u8>) -> IString<'static> {
    let quotable = value
        .iter()
        .all(|&b| matches!(b, 0x01..=0x09 | 0x0b..=0x0c | 0x0e..=0x7f));
    let value = if quotable {
        // Quotable bytes are ASCII, hence UTF-8.
        match String::from_utf8(value) {
            // Every byte was just checked to be a TEXT-CHAR, which is all
            // `Quoted` asks for.
            Ok(text) => return IString::Quoted(Quoted::unvalidated(text)),
            Err(e) => e.into_bytes(),
        }
    } else {
        value
    };
    let value = if value.contains(&0) {
        value
            .into_iter()
            .map(|b| if b == 0 { 0x80 } else { b })
            .collect()
    } else {
        value
    };
    match Literal::try_from(value) {
        Ok(l) => IString::Literal(l),
        // A literal takes every byte but NUL, and none is left: this arm
        // is never taken.
        Err(_) => IString::Quoted(Quoted::unvalidated("")),
    }
}

/// An IMAP string from ASCII text known at compile time.
pub(crate) fn static_str(value: &'static str) -> IString<'static> {
    istring(value.as_bytes().to_vec())
}

/// `value` as an nstring: NIL when absent.
pub(crate) fn nstring(value: Option<Vec<u8>>) -> NString<'static> {
    NString(value.map(istring))
}

/// NUL replaced by U+FFFD, as header text is read.
pub(crate) fn without_nul(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !value.contains(&0) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len() + 8);
    for &b in value {
        if b == 0 {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        } else {
            out.push(b);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Text for a person to read: runs of white space (SP, TAB, CR, LF)
/// collapsed to one space, none at either end.
pub(crate) fn for_humans(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut pending_space = false;
    for &b in value {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => pending_space = !out.is_empty(),
            0 => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(0x80);
            }
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(b);
            }
        }
    }
    out
}

/// A folded value on one line: CR and LF dropped; where a line break is
/// followed by anything but white space (or the end), a space stands in
/// for it.
pub(crate) fn unfolded(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for (i, &b) in value.iter().enumerate() {
        if b != b'\r' && b != b'\n' {
            out.push(b);
            continue;
        }
        match value.get(i + 1) {
            None | Some(b' ' | b'\t' | b'\r' | b'\n') => {}
            Some(_) => out.push(b' '),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humans_get_single_spaces() {
        assert_eq!(for_humans(b"  a \r\n\t b  "), b"a b");
        assert_eq!(for_humans(b" \t "), b"");
        assert_eq!(for_humans(b"a\x00b"), b"a\x80b");
    }

    #[test]
    fn unfolding_keeps_the_white_space_of_the_next_line() {
        assert_eq!(unfolded(b"a\n b"), b"a b");
        assert_eq!(unfolded(b"a\nb"), b"a b");
        assert_eq!(unfolded(b"a\r\n\tb\n"), b"a\tb");
    }

    #[test]
    fn strings_take_the_form_their_bytes_allow() {
        assert!(matches!(istring(b"plain".to_vec()), IString::Quoted(_)));
        assert!(matches!(
            istring("Gr\u{fc}\u{df}e".as_bytes().to_vec()),
            IString::Literal(_)
        ));
        assert!(matches!(istring(b"a\r\nb".to_vec()), IString::Literal(_)));
        assert_eq!(istring(b"a\x00".to_vec()).as_ref(), b"a\x80");
    }
}
