//! The MIME part tree of a message (RFC 2045, RFC 2046 §5.1, RFC 3501
//! §6.4.5): where each part's header block and body lie in the message's
//! bytes, and what kind of part it is. Nothing is copied or decoded; one
//! pass over the bytes finds every part.
//!
//! Part boundaries follow RFC 2046 §5.1.1 as the reference server reads
//! them: a delimiter line starts with `--` and the boundary (a line that
//! merely *starts* with it matches, the longest and innermost boundary
//! winning); the line end before a delimiter belongs to the delimiter, not
//! to the part before it; an outer boundary also ends every inner part; a
//! missing close delimiter ends the parts at the end of the message. A
//! header block ends at its blank line, at a delimiter line, or at the end
//! of the message.
//!
//! Content-* fields count only in MIME entities: the top-level message and
//! message/rfc822 bodies need MIME-Version or Content-Type, parts of a
//! multipart always are; otherwise the part is text/plain (message/rfc822
//! inside multipart/digest, RFC 2046 §5.1.5).
//!
//! Work is bounded: at most [`MAX_NESTING`] levels and [`MAX_PARTS`]
//! parts; beyond them a part is read as opaque data (described as
//! application/octet-stream), as the reference server does past its own,
//! higher limits.

use std::ops::Range;

use super::header::{fields, memchr};
use super::rfc822::{self, Step};

/// Part nesting read: a multipart or message/rfc822 part is entered only
/// when its children stay below this depth (the top-level message is at
/// 0), so containers nest at most 5 deep and parts 6 — as deep as common
/// client parsers read BODYSTRUCTURE (imap-codec reads 7 levels). A
/// container deeper down is one opaque part, for BODYSTRUCTURE and part
/// numbers alike. (Dovecot reads 100 levels; this is the one place where
/// the answers differ on purpose.)
pub(crate) const MAX_NESTING: usize = 7;
/// Most parts read in one message, nested messages included.
pub(crate) const MAX_PARTS: usize = 10_000;
/// Longest boundary honoured (RFC 2046 allows 70); longer ones are cut.
const MAX_BOUNDARY_LEN: usize = 80;
/// How much of an unterminated last line is compared with boundaries.
const BOUNDARY_END_MAX_LEN: usize = MAX_BOUNDARY_LEN + 4;

/// What the part's first Content-Type made of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// A MIME entity: its Content-* fields count.
    pub is_mime: bool,
    /// multipart/* (with or without a boundary to split it by).
    pub multipart: bool,
    pub digest: bool,
    /// message/rfc822, entered: its one child is the encapsulated message.
    pub rfc822: bool,
    pub text: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The header block, its blank line included when there is one.
    pub header: Range<usize>,
    pub body: Range<usize>,
    pub flags: Flags,
    /// Parts of a multipart, or the encapsulated message of a
    /// message/rfc822 part.
    pub children: Vec<usize>,
    /// The part's parent is a multipart/digest.
    pub in_digest: bool,
}

/// All parts; the top-level message is `parts[0]`.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub parts: Vec<Part>,
}

impl Tree {
    pub fn root(&self) -> &Part {
        &self.parts[0]
    }
}

struct Boundary {
    text: Vec<u8>,
    owner: usize,
}

/// Why a body ended.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The end of the message.
    Eof,
    /// A delimiter line of `stack[idx]` starting at `line`; the part
    /// before it ends at `cut` (its line end belongs to the delimiter).
    Hit {
        idx: usize,
        line: usize,
        cut: usize,
        close: bool,
    },
}

struct Parser<'a> {
    msg: &'a [u8],
    parts: Vec<Part>,
    stack: Vec<Boundary>,
    /// Finds the next line that starts with "--".
    dashes: memchr::memmem::Finder<'static>,
}

/// Read the part tree of `msg`.
pub(crate) fn parse(msg: &[u8]) -> Tree {
    let mut p = Parser {
        msg,
        parts: Vec::new(),
        stack: Vec::new(),
        dashes: memchr::memmem::Finder::new(b"\n--"),
    };
    p.part(0, 0, false, false);
    Tree { parts: p.parts }
}

/// Where the top-level header block ends and the body starts (the same
/// place unless there is a blank line); no boundary can cut it.
pub(crate) fn root_header_end(msg: &[u8]) -> usize {
    let mut line = 0;
    while line < msg.len() {
        if msg[line] == b'\n' {
            return line + 1;
        }
        if msg[line] == b'\r' && msg.get(line + 1) == Some(&b'\n') {
            return line + 2;
        }
        match memchr(b'\n', &msg[line..]) {
            Some(i) => line += i + 1,
            None => break,
        }
    }
    msg.len()
}

impl Parser<'_> {
    /// Where the line after the one starting at `line` starts.
    fn next_line(&self, line: usize) -> usize {
        match memchr(b'\n', &self.msg[line..]) {
            Some(i) => line + i + 1,
            None => self.msg.len(),
        }
    }

    /// Whether the line at `line` is a delimiter of a boundary on the
    /// stack: which one, and whether it closes its multipart.
    fn boundary_at(&self, line: usize) -> Option<(usize, bool)> {
        let rest = &self.msg[line..];
        if !rest.starts_with(b"--") || self.stack.is_empty() {
            return None;
        }
        if self.parts.len() >= MAX_PARTS {
            // No more parts: the rest is data of the part we are in.
            return None;
        }
        let data = &rest[2..];
        let (len, trailing_dashes) = match memchr(b'\n', data) {
            Some(lf) => {
                let mut n = lf;
                if n > 0 && data[n - 1] == b'\r' {
                    n -= 1;
                }
                (n, n > 2 && data[n - 1] == b'-' && data[n - 2] == b'-')
            }
            None => (data.len().min(BOUNDARY_END_MAX_LEN), false),
        };
        // Innermost first; the longest match wins, an exact one at once.
        let mut best: Option<usize> = None;
        for idx in (0..self.stack.len()).rev() {
            let b = &self.stack[idx].text;
            if b.len() <= len
                && data.starts_with(b)
                && best.is_none_or(|x| self.stack[x].text.len() < b.len())
            {
                best = Some(idx);
                if b.len() == len || (trailing_dashes && b.len() + 2 == len) {
                    break;
                }
            }
        }
        let idx = best?;
        let blen = self.stack[idx].text.len();
        let close = data.get(blen..blen + 2) == Some(b"--");
        Some((idx, close))
    }

    /// Where a part ends before the delimiter line at `line` (its line
    /// end, CRLF or LF, goes with the delimiter), never before `from`.
    fn cut_before(&self, line: usize, from: usize) -> usize {
        if line <= from {
            return line;
        }
        let mut cut = line - 1;
        if cut > from && self.msg[cut - 1] == b'\r' {
            cut -= 1;
        }
        cut
    }

    /// Scan for the next delimiter line at or after `from` (a line start).
    fn find_boundary(&self, from: usize) -> Stop {
        if self.stack.is_empty() {
            return Stop::Eof;
        }
        // Only a line that starts with "--" can be a delimiter: jump from
        // one such line start to the next instead of visiting every line
        // (a base64 attachment is tens of thousands of lines).
        let mut line = from;
        while line < self.msg.len() {
            if let Some((idx, close)) = self.boundary_at(line) {
                return Stop::Hit {
                    idx,
                    line,
                    cut: self.cut_before(line, from),
                    close,
                };
            }
            match self.dashes.find(&self.msg[line..]) {
                Some(i) => line += i + 1,
                None => break,
            }
        }
        Stop::Eof
    }

    fn end_of(&self, stop: Stop) -> usize {
        match stop {
            Stop::Eof => self.msg.len(),
            Stop::Hit { cut, .. } => cut,
        }
    }

    /// Read the part whose header starts at `start` (it becomes the next
    /// index in `parts`); returns what ended it.
    fn part(&mut self, start: usize, depth: usize, in_digest: bool, in_multipart: bool) -> Stop {
        let id = self.parts.len();
        self.parts.push(Part {
            header: start..start,
            body: start..start,
            flags: Flags::default(),
            children: Vec::new(),
            in_digest,
        });

        // The header block.
        let msg = self.msg;
        let mut line = start;
        let mut header_stop = None;
        let mut at_eoh = false;
        let (header_end, body_start) = loop {
            if line >= msg.len() {
                break (msg.len(), msg.len());
            }
            if let Some((idx, close)) = self.boundary_at(line) {
                let cut = self.cut_before(line, start);
                header_stop = Some(Stop::Hit {
                    idx,
                    line,
                    cut,
                    close,
                });
                break (cut, cut);
            }
            let blank = match msg[line] {
                b'\n' => 1,
                b'\r' if msg.get(line + 1) == Some(&b'\n') => 2,
                _ => 0,
            };
            if blank > 0 {
                at_eoh = true;
                break (line + blank, line + blank);
            }
            line = self.next_line(line);
        };

        // What the first Content-Type says.
        let mut flags = Flags {
            is_mime: in_multipart,
            ..Flags::default()
        };
        let mut content_type: Option<Vec<u8>> = None;
        let mut boundary: Option<Vec<u8>> = None;
        for f in fields(&msg[start..header_end]) {
            if f.is("Mime-Version") {
                flags.is_mime = true;
            } else if f.is("Content-Type") {
                flags.is_mime = true;
                if content_type.is_some() {
                    continue;
                }
                let value = f.value();
                let (ct, mut lx, step) = rfc822::content_type(&value);
                if ct.eq_ignore_ascii_case(b"message/rfc822") {
                    flags.rfc822 = true;
                } else if ct.len() >= 4
                    && ct[..4].eq_ignore_ascii_case(b"text")
                    && (ct.len() == 4 || ct[4] == b'/')
                {
                    flags.text = true;
                } else if ct.len() >= 10 && ct[..10].eq_ignore_ascii_case(b"multipart/") {
                    flags.multipart = true;
                    flags.digest = ct[10..].eq_ignore_ascii_case(b"digest");
                }
                if step != Step::Broken && flags.multipart {
                    boundary = rfc822::parameters(&mut lx)
                        .into_iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))
                        .map(|(_, mut v)| {
                            v.truncate(MAX_BOUNDARY_LEN);
                            v
                        });
                }
                content_type = Some(ct);
            }
        }
        if !flags.is_mime {
            flags = Flags::default();
            boundary = None;
        }
        if content_type.is_none() || !flags.is_mime {
            if in_digest {
                flags.rfc822 = true;
            } else {
                flags.text = true;
            }
        }
        let nesting_ok = depth + 1 < MAX_NESTING;
        if !nesting_ok {
            // Too deep to hold parts: opaque data.
            flags.multipart = false;
        }
        self.parts[id].header = start..header_end;

        // The body.
        if let Some(stop) = header_stop {
            // A delimiter cut the header: the body is empty, and so is an
            // encapsulated message.
            if flags.rfc822 && nesting_ok && self.parts.len() < MAX_PARTS {
                let child = self.parts.len();
                self.parts.push(Part {
                    header: body_start..body_start,
                    body: body_start..body_start,
                    flags: Flags {
                        text: true,
                        ..Flags::default()
                    },
                    children: Vec::new(),
                    in_digest: false,
                });
                self.parts[id].children.push(child);
            } else {
                flags.rfc822 = false;
            }
            self.parts[id].flags = flags;
            self.parts[id].body = body_start..body_start;
            // The line end before the delimiter left this header block
            // for the enclosing part's body: every enclosing part that
            // ends here ends after it.
            return match stop {
                Stop::Hit {
                    idx, line, close, ..
                } => Stop::Hit {
                    idx,
                    line,
                    cut: line,
                    close,
                },
                Stop::Eof => Stop::Eof,
            };
        }

        let stop = match boundary {
            Some(text) if at_eoh && nesting_ok => {
                self.parts[id].flags = flags;
                self.stack.push(Boundary { text, owner: id });
                self.multipart_body(id, body_start, depth, flags.digest)
            }
            _ => {
                if flags.rfc822 && nesting_ok && self.parts.len() < MAX_PARTS {
                    self.parts[id].flags = flags;
                    let child = self.parts.len();
                    self.parts[id].children.push(child);
                    self.part(body_start, depth + 1, false, false)
                } else {
                    flags.rfc822 = false;
                    self.parts[id].flags = flags;
                    self.find_boundary(body_start)
                }
            }
        };
        let end = self.end_of(stop).max(body_start);
        self.parts[id].body = body_start..end;
        stop
    }

    /// The body of multipart `id`, whose boundary is on top of the stack:
    /// preamble, parts, epilogue.
    fn multipart_body(&mut self, id: usize, body_start: usize, depth: usize, digest: bool) -> Stop {
        let mut stop = self.find_boundary(body_start);
        loop {
            let Stop::Hit {
                idx, line, close, ..
            } = stop
            else {
                return stop;
            };
            if self.stack[idx].owner != id {
                // An enclosing multipart's delimiter ends this one too.
                return stop;
            }
            self.stack.truncate(idx + 1);
            let next = self.next_line(line);
            if close {
                // The epilogue runs to an enclosing delimiter or the end.
                self.stack.truncate(idx);
                return self.find_boundary(next);
            }
            let child = self.parts.len();
            self.parts[id].children.push(child);
            stop = self.part(next, depth + 1, digest, true);
        }
    }
}

/// Line ends (LF) in `bytes`: the line count of RFC 3501 body-fld-lines.
pub(crate) fn lines(bytes: &[u8]) -> u32 {
    u32::try_from(memchr::memchr_iter(b'\n', bytes).count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(msg: &[u8]) -> Vec<(usize, usize, usize, usize, usize)> {
        parse(msg)
            .parts
            .iter()
            .map(|p| {
                (
                    p.header.start,
                    p.header.end,
                    p.body.start,
                    p.body.end,
                    p.children.len(),
                )
            })
            .collect()
    }

    #[test]
    fn single_part() {
        let msg = b"Subject: x\r\n\r\nhello\r\n";
        assert_eq!(shape(msg), [(0, 14, 14, 21, 0)]);
        assert!(parse(msg).root().flags.text);
        // No blank line: all header.
        assert_eq!(shape(b"Subject: x"), [(0, 10, 10, 10, 0)]);
        assert_eq!(shape(b""), [(0, 0, 0, 0, 0)]);
    }

    #[test]
    fn multipart_line_ends_belong_to_delimiters() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: text/html\r\n\r\ntwo\r\n--b--\r\nepi\r\n";
        let t = parse(msg);
        assert_eq!(t.parts.len(), 3);
        let one = &t.parts[1];
        assert_eq!(&msg[one.body.clone()], b"one");
        assert_eq!(&msg[one.header.clone()], b"\r\n");
        let two = &t.parts[2];
        assert_eq!(&msg[two.body.clone()], b"two");
        assert_eq!(&msg[two.header.clone()], b"Content-Type: text/html\r\n\r\n");
        assert_eq!(t.root().body.end, msg.len());
    }

    #[test]
    fn outer_delimiter_ends_inner_parts_and_missing_close_runs_to_the_end() {
        let msg = b"Content-Type: multipart/mixed; boundary=out\n\n--out\nContent-Type: multipart/alternative; boundary=in\n\n--in\n\na\n--out\n\nb";
        let t = parse(msg);
        // root, inner multipart, its part "a", part "b"
        assert_eq!(t.parts.len(), 4);
        assert_eq!(&msg[t.parts[2].body.clone()], b"a");
        assert_eq!(&msg[t.parts[3].body.clone()], b"b");
        assert_eq!(t.parts[1].body.end, t.parts[2].body.end);
    }

    #[test]
    fn message_rfc822_is_entered() {
        let msg =
            b"Mime-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody\r\n";
        let t = parse(msg);
        assert!(t.root().flags.rfc822);
        assert_eq!(t.parts.len(), 2);
        assert_eq!(&msg[t.parts[1].body.clone()], b"body\r\n");
    }

    #[test]
    fn content_type_without_mime_version_still_counts_but_nothing_else_does() {
        let t = parse(b"Content-Type: multipart/mixed; boundary=x\n\n--x\n\na\n--x--\n");
        assert!(t.root().flags.multipart);
        let t = parse(b"Content-Transfer-Encoding: base64\n\nYQ==\n");
        assert!(!t.root().flags.is_mime);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut msg = Vec::new();
        for i in 0..150 {
            msg.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i:04}\n\n--b{i:04}\n")
                    .as_bytes(),
            );
        }
        let t = parse(&msg);
        assert!(t.parts.len() <= MAX_NESTING + 1);
        let mut msg = Vec::new();
        for _ in 0..500 {
            msg.extend_from_slice(b"Content-Type: message/rfc822\n\n");
        }
        assert!(parse(&msg).parts.len() <= MAX_NESTING + 1);
    }
}
