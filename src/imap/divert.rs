//! APPEND's message literal, taken out of the byte stream before
//! imap-next sees it (sans-I/O: bytes in, pieces out; the connection's
//! driver, `stream.rs`, writes the diverted bytes to a spool file).
//!
//! imap-next (and imap-codec under it) hold a whole command, literals
//! included, in memory before they hand it over, and the command then
//! holds its own copy: a 30 MB APPEND took 278 MB (docs/PERFORMANCE.md
//! row 6d). So the client's bytes are followed here as imap-codec frames
//! them (lines ending CRLF; a line ending `{n}` or `{n+}`, `~{n}` for
//! literal8, announces n bytes of literal, RFC 3501 §4.3, RFC 7888, RFC
//! 3516), and the literal of an APPEND command (its first line is
//! `tag APPEND …`) announcing at least [`DIVERT_FROM`] bytes and at most
//! the literal limit is diverted:
//!
//! - imap-next gets the line with the announcement rewritten to the
//!   length of a placeholder, and the placeholder as the literal (a sync
//!   literal stays sync, so imap-next still sends the `+` continuation the
//!   client waits for);
//! - the n bytes the client then sends go to [`Out::spool`], between
//!   [`Out::begin`] and [`Out::end`];
//! - what follows (the rest of the command) goes to imap-next again.
//!
//! The command imap-next then hands over carries the placeholder; the
//! APPEND handler exchanges it for the spool file. Each placeholder holds
//! a random secret of the connection and a sequence number, so a client
//! cannot send one itself.
//!
//! Anything else passes through unchanged, byte for byte; a literal above
//! the limit is passed on for imap-next to refuse as it always did. When
//! in doubt (a line longer than [`MAX_HELD`], an announcement ending in a
//! bare LF) nothing is diverted.

use std::fmt::Write as _;

/// Literals of APPEND from this size on are diverted (smaller ones cost
/// little in memory and keep imap-next's own path).
pub const DIVERT_FROM: u32 = 64 * 1024;

/// A command line longer than this is passed through as it comes and its
/// literal is not diverted (APPEND's lines are short).
pub const MAX_HELD: usize = 8 * 1024;

/// Where the pieces go.
pub trait Out {
    /// Bytes for imap-next.
    fn pass(&mut self, bytes: &[u8]);
    /// A diverted literal of `len` bytes starts; `placeholder` is what
    /// imap-next was given in its place; `binary`: a literal8.
    fn begin(&mut self, len: u32, binary: bool, placeholder: &[u8]);
    /// Bytes of the diverted literal.
    fn spool(&mut self, bytes: &[u8]);
    /// The diverted literal is complete.
    fn end(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Line,
    Literal { remaining: u32, divert: bool },
}

/// The follower of one connection's input.
pub struct Divert {
    max_literal: u32,
    secret: String,
    seq: u64,
    mode: Mode,
    /// The current line while it is at most [`MAX_HELD`] bytes.
    held: Vec<u8>,
    /// The current line outgrew `held` and was passed on.
    long: bool,
    /// Its last bytes (for the announcement of a long line).
    tail: Vec<u8>,
    /// The current line continues a command (after a literal).
    in_command: bool,
    /// The current command is an APPEND.
    append: bool,
}

/// An announcement at the end of a line: where its `{` is, the length,
/// whether it is non-synchronizing (`{n+}`), literal8 (`~{n}`) and whether
/// the line ends in CRLF.
#[derive(Debug, PartialEq, Eq)]
struct Announcement {
    open: usize,
    len: u32,
    nonsync: bool,
    binary: bool,
    crlf: bool,
}

/// The announcement `line` (a whole line, its LF included) ends with, as
/// imap-codec's framing reads it.
fn announcement(line: &[u8]) -> Option<Announcement> {
    let body = line.strip_suffix(b"\n")?;
    let (body, crlf) = match body.strip_suffix(b"\r") {
        Some(b) => (b, true),
        None => (body, false),
    };
    let body = body.strip_suffix(b"}")?;
    let (body, nonsync) = match body.strip_suffix(b"+") {
        Some(b) => (b, true),
        None => (body, false),
    };
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    // The `{` before the digits; none when the line is only digits.
    let open = body.len().checked_sub(digits + 1)?;
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mut len: u32 = 0;
    for &d in &body[open + 1..] {
        len = len.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(Announcement {
        open,
        len,
        nonsync,
        binary: open > 0 && body.get(open - 1) == Some(&b'~'),
        crlf,
    })
}

/// Whether `line` starts a command `tag SP APPEND SP`.
fn is_append(line: &[u8]) -> bool {
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let rest = &line[space + 1..];
    space > 0 && rest.len() > 7 && rest[..7].eq_ignore_ascii_case(b"APPEND ")
}

const TAIL: usize = 24;

impl Divert {
    /// `max_literal`: the largest literal imap-next accepts; `secret`:
    /// random text of this connection (see the module's notes).
    pub fn new(max_literal: u32, secret: &str) -> Divert {
        Divert {
            max_literal,
            secret: secret.to_string(),
            seq: 0,
            mode: Mode::Line,
            held: Vec::new(),
            long: false,
            tail: Vec::new(),
            in_command: false,
            append: false,
        }
    }

    /// The start of a line not yet complete, held back until its end
    /// shows whether it announces a literal (imap-next does nothing with
    /// a line before its end either).
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Whether a diverted literal is being received.
    pub fn diverting(&self) -> bool {
        matches!(self.mode, Mode::Literal { divert: true, .. })
    }

    /// Follow `input`, handing every byte to `out`, in order.
    pub fn feed(&mut self, mut input: &[u8], out: &mut impl Out) {
        while !input.is_empty() {
            match self.mode {
                Mode::Literal { remaining, divert } => {
                    let n = input.len().min(remaining as usize);
                    let (now, rest) = input.split_at(n);
                    if divert {
                        out.spool(now);
                    } else {
                        out.pass(now);
                    }
                    input = rest;
                    // n <= remaining, which is a u32.
                    let remaining = remaining - n as u32;
                    self.mode = Mode::Literal { remaining, divert };
                    if remaining == 0 {
                        if divert {
                            out.end();
                        }
                        self.mode = Mode::Line;
                    }
                }
                Mode::Line => {
                    let (chunk, rest, done) = match input.iter().position(|&b| b == b'\n') {
                        Some(i) => (&input[..=i], &input[i + 1..], true),
                        None => (input, &input[input.len()..], false),
                    };
                    input = rest;
                    self.line_bytes(chunk, out);
                    if done {
                        self.line_end(out);
                    }
                }
            }
        }
    }

    fn line_bytes(&mut self, chunk: &[u8], out: &mut impl Out) {
        if !self.long && self.held.len() + chunk.len() <= MAX_HELD {
            self.held.extend_from_slice(chunk);
            return;
        }
        if !self.long {
            self.long = true;
            // A long line's start decides whether it is an APPEND.
            if !self.in_command {
                self.append = is_append(&self.held) || is_append(chunk);
            }
            out.pass(&self.held);
            self.tail = self.held[self.held.len().saturating_sub(TAIL)..].to_vec();
            self.held = Vec::new();
        }
        out.pass(chunk);
        self.tail.extend_from_slice(chunk);
        let excess = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..excess);
    }

    fn line_end(&mut self, out: &mut impl Out) {
        let long = std::mem::take(&mut self.long);
        let line = if long {
            std::mem::take(&mut self.tail)
        } else {
            std::mem::take(&mut self.held)
        };
        if !self.in_command && !long {
            self.append = is_append(&line);
        }
        let Some(a) = announcement(&line) else {
            if !long {
                out.pass(&line);
            }
            self.in_command = false;
            self.append = false;
            return;
        };
        let fits = a.len <= self.max_literal;
        if !long && self.append && a.crlf && fits && a.len >= DIVERT_FROM {
            self.seq += 1;
            let mut placeholder = String::new();
            let _ = write!(
                placeholder,
                "graphgate-spooled-literal {} {}",
                self.secret, self.seq
            );
            let mut rewritten = line[..a.open].to_vec();
            let _ = write!(
                LineWriter(&mut rewritten),
                "{{{}{}}}\r\n",
                placeholder.len(),
                if a.nonsync { "+" } else { "" }
            );
            rewritten.extend_from_slice(placeholder.as_bytes());
            out.pass(&rewritten);
            out.begin(a.len, a.binary, placeholder.as_bytes());
            self.mode = Mode::Literal {
                remaining: a.len,
                divert: true,
            };
            self.in_command = true;
            return;
        }
        if !long {
            out.pass(&line);
        }
        if !fits && !a.nonsync {
            // imap-next refuses the announcement; the client sends no
            // literal and the command is over.
            self.in_command = false;
            self.append = false;
            return;
        }
        self.in_command = true;
        if a.len > 0 {
            self.mode = Mode::Literal {
                remaining: a.len,
                divert: false,
            };
        }
    }
}

/// `write!` into a byte vector.
struct LineWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One diverted literal, as [`Collected`] saw it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diverted {
    pub placeholder: Vec<u8>,
    pub binary: bool,
    /// As announced.
    pub len: u32,
    pub bytes: Vec<u8>,
    pub complete: bool,
}

/// What [`Divert`] made of some input, for tests and the fuzz target.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// What imap-next got.
    pub passed: Vec<u8>,
    /// Each diverted literal.
    pub diverted: Vec<Diverted>,
    /// Where each placeholder ends in `passed`.
    pub at: Vec<usize>,
}

impl Out for Collected {
    fn pass(&mut self, bytes: &[u8]) {
        self.passed.extend_from_slice(bytes);
    }
    fn begin(&mut self, len: u32, binary: bool, placeholder: &[u8]) {
        self.diverted.push(Diverted {
            placeholder: placeholder.to_vec(),
            binary,
            len,
            ..Diverted::default()
        });
        self.at.push(self.passed.len());
    }
    fn spool(&mut self, bytes: &[u8]) {
        if let Some(d) = self.diverted.last_mut() {
            d.bytes.extend_from_slice(bytes);
        }
    }
    fn end(&mut self) {
        if let Some(d) = self.diverted.last_mut() {
            d.complete = true;
        }
    }
}

impl Collected {
    /// The input as it was: every placeholder literal put back in place of
    /// what replaced it (the original announcement is given by `len`).
    pub fn restored(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut from = 0;
        for (d, &end) in self.diverted.iter().zip(&self.at) {
            let (placeholder, len, bytes) = (&d.placeholder, d.len, &d.bytes);
            // `{k}\r\n` or `{k+}\r\n`, then the placeholder, end at `end`.
            let start = end.saturating_sub(placeholder.len());
            let head = self.passed.get(from..start).unwrap_or_default();
            let open = head.iter().rposition(|&b| b == b'{').unwrap_or(head.len());
            out.extend_from_slice(&head[..open]);
            let nonsync = head.ends_with(b"+}\r\n");
            let _ = write!(
                LineWriter(&mut out),
                "{{{len}{}}}\r\n",
                if nonsync { "+" } else { "" }
            );
            out.extend_from_slice(bytes);
            from = end;
        }
        out.extend_from_slice(self.passed.get(from..).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], max: u32) -> Collected {
        let mut d = Divert::new(max, "s3cret");
        let mut c = Collected::default();
        for chunk in chunks {
            d.feed(chunk, &mut c);
        }
        c
    }

    fn big(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"abcdefgh\r\n"[i % 10]).collect()
    }

    #[test]
    fn a_large_append_literal_is_diverted_and_the_rest_passes() {
        let msg = big(100_000);
        let mut input = b"a1 NOOP\r\na2 APPEND INBOX (\\Seen) {100000}\r\n".to_vec();
        input.extend_from_slice(&msg);
        input.extend_from_slice(b"\r\na3 NOOP\r\n");
        // Byte by byte and all at once: the same pieces.
        let whole = run(&[&input], 1 << 30);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes, 1 << 30), whole);
        let [d] = &whole.diverted[..] else {
            panic!("{:?}", whole.diverted.len());
        };
        assert_eq!(d.placeholder, b"graphgate-spooled-literal s3cret 1");
        assert!(!d.binary && d.complete);
        assert_eq!(d.len, 100_000);
        assert_eq!(d.bytes, msg);
        assert_eq!(
            String::from_utf8_lossy(&whole.passed),
            "a1 NOOP\r\na2 APPEND INBOX (\\Seen) {34}\r\ngraphgate-spooled-literal s3cret 1\r\na3 NOOP\r\n"
        );
        assert_eq!(whole.restored(), input);
    }

    #[test]
    fn literal_plus_and_literal8_keep_their_kind() {
        let msg = big(70_000);
        let mut input = b"x append {5}\r\nINBOX ~{70000+}\r\n".to_vec();
        input.extend_from_slice(&msg);
        input.extend_from_slice(b"\r\n");
        let c = run(&[&input], 1 << 30);
        assert_eq!(c.diverted.len(), 1);
        assert!(c.diverted[0].binary, "literal8");
        assert!(
            c.passed
                .starts_with(b"x append {5}\r\nINBOX ~{34+}\r\ngraphgate-spooled-literal")
        );
        assert_eq!(c.restored(), input);
    }

    #[test]
    fn other_literals_and_small_or_too_large_ones_pass_unchanged() {
        let msg = big(70_000);
        for (head, max) in [
            // Not an APPEND.
            (&b"a LOGIN {70000}\r\n"[..], 1 << 30),
            // Small.
            (b"a APPEND INBOX {9}\r\n", 1 << 30),
            // Beyond the limit: imap-next refuses it.
            (b"a APPEND INBOX {70000}\r\n", 1000),
            // A bare LF.
            (b"a APPEND INBOX {70000}\n", 1 << 30),
        ] {
            let mut input = head.to_vec();
            input.extend_from_slice(&msg);
            input.extend_from_slice(b"\r\n");
            let c = run(&[&input], max);
            assert!(c.diverted.is_empty(), "{}", String::from_utf8_lossy(head));
            assert_eq!(c.passed, input);
        }
        // An APPEND line inside another command's literal is data.
        let mut input = b"a LOGIN {40}\r\nb APPEND INBOX {70000}\r\n0123456789012".to_vec();
        input.extend_from_slice(b" x\r\n");
        let c = run(&[&input], 1 << 30);
        assert!(c.diverted.is_empty());
        assert_eq!(c.passed, input);
    }

    #[test]
    fn announcements_are_read_as_imap_codec_frames_them() {
        let a = announcement(b"a APPEND x {12}\r\n").unwrap();
        assert_eq!(
            (a.len, a.nonsync, a.binary, a.crlf),
            (12, false, false, true)
        );
        assert_eq!(a.open, 11);
        assert!(announcement(b"a APPEND x {12+}\n").is_some_and(|a| a.nonsync && !a.crlf));
        assert!(announcement(b"a APPEND x ~{1}\r\n").is_some_and(|a| a.binary));
        for no in [
            &b"a NOOP\r\n"[..],
            b"{}\r\n",
            b"{x1}\r\n",
            b"{99999999999}\r\n",
            b"{1}x\r\n",
            b"}\r\n",
            // Found by fuzzing (imap_divert): digits alone.
            b"1}\n",
            b"12+}\r\n",
        ] {
            assert_eq!(announcement(no), None, "{}", String::from_utf8_lossy(no));
        }
    }
}
