//! A message as a POP3 multi-line answer, sans I/O: the bytes of RETR and
//! TOP, chunk by chunk, byte-stuffed (RFC 1939 §3: a line beginning with
//! `.` gets another `.` in front), and the terminating `.` line.
//!
//! The message's bytes are passed as they are, line endings included, so
//! that the octets a client receives (stuffing aside) are the size STAT
//! and LIST gave. Only a message not ending with a line ending gets a CRLF
//! before the terminator, which a multi-line answer needs (RFC 1939 §3).

/// Turns chunks of a message into the answer's bytes; keeps a few bytes
/// of state between chunks, never the message.
#[derive(Debug)]
pub struct Stuffer {
    at_line_start: bool,
    /// TOP: lines of the body still to send; `None`: all (RETR).
    body_lines: Option<u32>,
    /// Past the blank line that ends the header.
    in_body: bool,
    /// The current line is empty so far (to find the header's end).
    line_empty: bool,
    /// TOP's lines are all out: ignore the rest.
    done: bool,
}

impl Stuffer {
    /// For RETR.
    pub fn whole() -> Stuffer {
        Stuffer::top(None)
    }

    /// For TOP: the header, the blank line, then `lines` lines of the body.
    pub fn top(lines: Option<u32>) -> Stuffer {
        Stuffer {
            at_line_start: true,
            body_lines: lines,
            in_body: false,
            line_empty: true,
            done: false,
        }
    }

    /// Whether the rest of the message is not needed (TOP has its lines).
    pub fn done(&self) -> bool {
        self.done
    }

    /// Append the answer's bytes for `chunk` to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &b in chunk {
            if self.done {
                return;
            }
            if self.in_body && self.at_line_start && self.body_lines == Some(0) {
                self.done = true;
                return;
            }
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            if b == b'\n' {
                if self.in_body {
                    if let Some(n) = self.body_lines.as_mut() {
                        *n = n.saturating_sub(1);
                    }
                } else if self.line_empty {
                    self.in_body = true;
                }
                self.at_line_start = true;
                self.line_empty = true;
            } else {
                self.at_line_start = false;
                if b != b'\r' {
                    self.line_empty = false;
                }
            }
        }
        if self.in_body && self.at_line_start && self.body_lines == Some(0) {
            self.done = true;
        }
    }

    /// The end of the answer: a CRLF if the last line had none, then `.`.
    pub fn finish(&self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut s: Stuffer, message: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in message.chunks(chunk) {
            s.feed(piece, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_in_any_chunking() {
        let message = b"Subject: x\r\n\r\n.hidden\r\nok.\r\n..two\r\n.\r\n";
        let want = b"Subject: x\r\n\r\n..hidden\r\nok.\r\n...two\r\n..\r\n.\r\n";
        for chunk in 1..message.len() + 1 {
            assert_eq!(run(Stuffer::whole(), message, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn a_message_without_a_final_line_ending_gets_one() {
        assert_eq!(
            run(Stuffer::whole(), b"A: b\r\n\r\nbody", 3),
            b"A: b\r\n\r\nbody\r\n.\r\n"
        );
        assert_eq!(run(Stuffer::whole(), b"", 3), b".\r\n");
    }

    #[test]
    fn top_sends_the_header_and_n_body_lines() {
        let message = b"A: 1\r\nB: 2\r\n\r\nline1\r\n.line2\r\nline3\r\n";
        for chunk in 1..message.len() + 1 {
            assert_eq!(
                run(Stuffer::top(Some(0)), message, chunk),
                b"A: 1\r\nB: 2\r\n\r\n.\r\n"
            );
            assert_eq!(
                run(Stuffer::top(Some(2)), message, chunk),
                b"A: 1\r\nB: 2\r\n\r\nline1\r\n..line2\r\n.\r\n"
            );
            assert_eq!(
                run(Stuffer::top(Some(9)), message, chunk),
                b"A: 1\r\nB: 2\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n"
            );
        }
        // Bare LF line endings end the header too.
        assert_eq!(
            run(Stuffer::top(Some(1)), b"A: 1\n\nx\ny\n", 2),
            b"A: 1\n\nx\n.\r\n"
        );
        // A message with no body: the header only.
        assert_eq!(run(Stuffer::top(Some(1)), b"A: 1\r\n", 2), b"A: 1\r\n.\r\n");
    }
}
