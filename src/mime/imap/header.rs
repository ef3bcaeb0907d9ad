//! Header fields of one header block (RFC 5322 §2.2), as the IMAP layer
//! needs them: the field name, and the field's *full value* — everything
//! after the colon with the leading white space dropped, continuation
//! lines joined by a bare LF (the CR of each line end dropped), nothing
//! decoded. ENVELOPE and BODYSTRUCTURE are computed from these values, so
//! encoded words, comments and quoting reach the client as sent.
//!
//! A line without a colon is a field with an empty name (its whole line
//! is the value), as is one whose name is absurdly long; neither matches
//! any field the IMAP layer looks for.

use std::borrow::Cow;

/// Longest field name honoured (RFC 5322 §2.1.1's line limit); a longer
/// "name" makes the line a nameless value.
const MAX_NAME_LEN: usize = 1000;

/// One header field: `name` as sent (white space before the colon
/// removed), `raw` the bytes of all its lines after the colon, line ends
/// included; `line` the whole field, and `end` where it ends in the block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub name: &'a [u8],
    pub raw: &'a [u8],
    pub line: &'a [u8],
    pub end: usize,
}

impl<'a> Field<'a> {
    /// The field name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The full value: leading SP/TAB skipped (all of it, unless the
    /// value is nothing but white space, then one), continuation lines
    /// joined with LF, the CR before each LF dropped. Borrowed when the
    /// field has one line.
    pub fn value(&self) -> Cow<'a, [u8]> {
        let raw = self.raw;
        let (first, rest) = split_line(raw);
        let skip = match first.iter().position(|&b| b != b' ' && b != b'\t') {
            Some(n) => n,
            None => usize::from(!first.is_empty()),
        };
        let first = &first[skip..];
        if rest.is_empty() {
            return Cow::Borrowed(first);
        }
        let mut out = Vec::with_capacity(raw.len());
        out.extend_from_slice(first);
        let mut rest = rest;
        while !rest.is_empty() {
            let (line, tail) = split_line(rest);
            out.push(b'\n');
            out.extend_from_slice(line);
            rest = tail;
        }
        Cow::Owned(out)
    }
}

/// The first line of `bytes` without its line end (a CR counts as part
/// of the line end only right before the LF), and what follows it.
fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match memchr(b'\n', bytes) {
        Some(i) => {
            let line = &bytes[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &bytes[i + 1..])
        }
        None => (bytes, &bytes[bytes.len()..]),
    }
}

/// Position of the first `needle` in `hay` (SIMD where the CPU has it:
/// the byte scans of headers and bodies are the hot loop of this module).
#[inline]
pub(crate) fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// The fields of a header block (which must not contain the blank line
/// that ends it; a trailing one is tolerated and ends the iteration).
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
    offset: usize,
}

/// Iterate over the fields of `block`.
pub(crate) fn fields(block: &[u8]) -> Fields<'_> {
    Fields {
        rest: block,
        offset: 0,
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let block = self.rest;
        if block.is_empty() || block[0] == b'\n' || block.starts_with(b"\r\n") {
            self.rest = &block[block.len()..];
            return None;
        }
        // The field runs until a line end not followed by SP or TAB.
        let mut end = block.len();
        let mut at = 0;
        while let Some(i) = memchr(b'\n', &block[at..]) {
            let next = at + i + 1;
            if next < block.len() && (block[next] == b' ' || block[next] == b'\t') {
                at = next;
                continue;
            }
            end = next;
            break;
        }
        let field = &block[..end];
        self.rest = &block[end..];
        self.offset += end;
        // The colon must be on the first line.
        let first_line_len = memchr(b'\n', field).unwrap_or(field.len());
        let (name, raw) = match memchr(b':', &field[..first_line_len]) {
            Some(colon) if colon <= MAX_NAME_LEN => {
                let mut name = &field[..colon];
                while let [head @ .., b' ' | b'\t'] = name {
                    name = head;
                }
                (name, &field[colon + 1..])
            }
            _ => (&field[..0], field),
        };
        Some(Field {
            name,
            raw,
            line: field,
            end: self.offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_values_join_with_lf_and_lose_leading_space() {
        let block = b"Subject:   hello\r\n\tworld \r\nX-Empty: \r\nTo:\r\n  a@b\r\nnocolon\r\n";
        let f: Vec<_> = fields(block).collect();
        assert_eq!(f.len(), 4);
        assert!(f[0].is("subject"));
        assert_eq!(&*f[0].value(), b"hello\n\tworld ");
        assert_eq!(&*f[1].value(), b"");
        assert_eq!(&*f[2].value(), b"\n  a@b");
        assert_eq!(f[3].name, b"");
        assert_eq!(&*f[3].value(), b"nocolon");
    }

    #[test]
    fn memchr_finds_the_first_match_anywhere() {
        let hay: Vec<u8> = (0..64u8).collect();
        for n in 0..64u8 {
            assert_eq!(memchr(n, &hay), Some(n as usize));
        }
        assert_eq!(memchr(200, &hay), None);
        assert_eq!(memchr(b'x', b""), None);
        assert_eq!(memchr(0x80, b"abcdefgh\x80\x80"), Some(8));
        assert_eq!(memchr(b'\n', b"aaaaaaa\n\n"), Some(7));
    }

    #[test]
    fn stops_at_the_blank_line_and_handles_a_missing_newline() {
        let f: Vec<_> = fields(b"A: 1\nB : 2\n\nC: 3\n").collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].name, b"B");
        let f: Vec<_> = fields(b"A: 1").collect();
        assert_eq!(&*f[0].value(), b"1");
        // A value of white space only keeps all but the first blank.
        let f: Vec<_> = fields(b"A:   \r\n").collect();
        assert_eq!(&*f[0].value(), b"  ");
    }
}
