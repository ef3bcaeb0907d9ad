//! POP3 command parsing, sans I/O: bytes in, typed commands out.
//!
//! - RFC 1939 §3: a command is a case-insensitive keyword, possibly
//!   followed by arguments separated by single spaces, ended by CRLF.
//!   A bare LF is taken as the end of a line too (fetchmail and scripts
//!   send it now and then); a CR before it is dropped.
//! - RFC 2449 §4: a command line is at most 255 octets, CRLF included.
//!   A longer line is read to its end and discarded unanswered until
//!   then, and then refused once ([`ParseError::TooLong`]), so a client
//!   can never make the session hold more than [`MAX_COMMAND_LINE`] bytes.
//! - RFC 5034 §4: a line of an AUTH exchange (the client's base64 answer
//!   to a challenge, or `*` to cancel) is not bound by the 255-octet rule:
//!   it may be up to [`MAX_SASL_LINE`] octets.
//! - RFC 1939 §7 `PASS`: the password is the rest of the line, spaces
//!   included (§7 notes servers may do so; passwords with spaces exist).
//!
//! [`Framer`] cuts lines out of whatever the socket delivered;
//! [`parse_command`] turns one line into a [`Command`]. Neither touches a
//! socket, allocates beyond its bounds or panics on any input.

use crate::secret::Secret;

/// RFC 2449 §4: the longest command line, CRLF included.
pub const MAX_COMMAND_LINE: usize = 255;

/// The longest line of an AUTH exchange (RFC 5034 §4 does not bind it to
/// 255 octets; a PLAIN answer with a 1 KB password fits).
pub const MAX_SASL_LINE: usize = 4096;

/// A POP3 command (RFC 1939 §§5–7, RFC 2449 CAPA, RFC 2595 STLS, RFC
/// 5034 AUTH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capa,
    Stls,
    User(String),
    Pass(Secret<String>),
    /// `AUTH mechanism [initial-response]` (RFC 5034 §4); the initial
    /// response is base64 (or `=` for an empty one), not decoded here.
    Auth {
        mechanism: String,
        initial: Option<Secret<String>>,
    },
    /// `AUTH` alone: list the mechanisms (the RFC 1734 form clients such
    /// as fetchmail still probe with).
    AuthList,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Dele(u32),
    /// `TOP msg n` (RFC 1939 §7).
    Top(u32, u32),
    Noop,
    Rset,
    Quit,
}

impl Command {
    /// The keyword, upper case (for metrics, logs and the state table).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } | Command::AuthList => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Top(..) => "TOP",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
        }
    }

    /// The command as a protocol trace shows it: no password, no AUTH data.
    pub fn trace(&self) -> String {
        match self {
            Command::User(u) => format!("USER {u}"),
            Command::Pass(_) => format!("PASS {}", crate::wire::REDACTED),
            Command::Auth {
                mechanism,
                initial: Some(_),
            } => format!("AUTH {mechanism} {}", crate::wire::REDACTED),
            Command::Auth { mechanism, .. } => format!("AUTH {mechanism}"),
            Command::List(Some(n)) => format!("LIST {n}"),
            Command::Uidl(Some(n)) => format!("UIDL {n}"),
            Command::Retr(n) => format!("RETR {n}"),
            Command::Dele(n) => format!("DELE {n}"),
            Command::Top(n, l) => format!("TOP {n} {l}"),
            other => other.name().to_string(),
        }
    }
}

/// Why a line is not a command; each becomes one `-ERR` sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the line is longer than {0} octets (RFC 2449 §4); it was discarded")]
    TooLong(usize),
    #[error("empty command")]
    Empty,
    #[error("commands are printable US-ASCII (RFC 1939 §3)")]
    NotAscii,
    #[error("unknown command {0:?}; CAPA lists what graphgate takes")]
    Unknown(String),
    #[error("{command}: {why}")]
    Arguments { command: &'static str, why: String },
}

/// One line cut by the [`Framer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its CRLF / LF.
    Text(Vec<u8>),
    /// A line longer than the limit ended: it was discarded.
    TooLong(usize),
}

/// Cuts lines out of a byte stream, holding at most `limit` bytes of an
/// unfinished line. Whatever follows a line stays buffered for the next
/// call — and can be dropped with [`Framer::discard_buffered`] (STLS: RFC
/// 2595 §4 / RFC 3207 §4.2, CVE-2011-0411's attack).
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Inside an over-long line: drop bytes until its LF.
    discarding: bool,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Add bytes read from the client.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held (a bound for tests and the fuzzer: never above the
    /// largest limit used plus one read).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forget everything received and not yet taken.
    pub fn discard_buffered(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    /// The next whole line of at most `limit` octets (its line ending
    /// included), or `None` when more input is needed.
    pub fn next_line(&mut self, limit: usize) -> Option<Line> {
        loop {
            let lf = self.buf.iter().position(|&b| b == b'\n');
            if self.discarding {
                match lf {
                    Some(i) => {
                        self.buf.drain(..=i);
                        self.discarding = false;
                        return Some(Line::TooLong(limit));
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                }
            }
            match lf {
                Some(i) if i < limit => {
                    let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Some(Line::Text(line));
                }
                Some(i) => {
                    self.buf.drain(..=i);
                    return Some(Line::TooLong(limit));
                }
                None if self.buf.len() >= limit => {
                    self.buf.clear();
                    self.discarding = true;
                    continue;
                }
                None => return None,
            }
        }
    }
}

/// A message number (RFC 1939 §3: decimal, 1-based); at most 10 digits.
fn number(command: &'static str, arg: &str) -> Result<u32, ParseError> {
    let bad = |why: &str| ParseError::Arguments {
        command,
        why: format!("{why} (got {:?})", truncated(arg)),
    };
    if arg.is_empty() || arg.len() > 10 || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("a message number is a decimal number"));
    }
    arg.parse::<u32>()
        .map_err(|_| bad("the message number is too large"))
}

/// `s` cut to 40 characters for an error sentence.
fn truncated(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parse one command line (without its line ending).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line
        .iter()
        .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err(ParseError::NotAscii);
    }
    // Printable ASCII only: valid UTF-8.
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotAscii)?;
    let (keyword, rest) = match text.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (text, None),
    };
    if keyword.is_empty() {
        return Err(ParseError::Empty);
    }
    let keyword = keyword.to_ascii_uppercase();
    // PASS takes the rest of the line as it is.
    if keyword == "PASS" {
        return match rest {
            Some(p) if !p.is_empty() => Ok(Command::Pass(Secret::new(p.to_string()))),
            _ => Err(ParseError::Arguments {
                command: "PASS",
                why: "PASS needs the password: PASS <password>".into(),
            }),
        };
    }
    let args: Vec<&str> = rest
        .map(|r| r.split(' ').filter(|a| !a.is_empty()).collect())
        .unwrap_or_default();
    let count = |command: &'static str, min: usize, max: usize, usage: &str| {
        if args.len() < min || args.len() > max {
            Err(ParseError::Arguments {
                command,
                why: format!("usage: {usage}"),
            })
        } else {
            Ok(())
        }
    };
    let optional_number = |command: &'static str| -> Result<Option<u32>, ParseError> {
        args.first().map(|a| number(command, a)).transpose()
    };
    Ok(match keyword.as_str() {
        "CAPA" => count("CAPA", 0, 0, "CAPA").map(|_| Command::Capa)?,
        "STLS" => count("STLS", 0, 0, "STLS").map(|_| Command::Stls)?,
        "NOOP" => count("NOOP", 0, 0, "NOOP").map(|_| Command::Noop)?,
        "RSET" => count("RSET", 0, 0, "RSET").map(|_| Command::Rset)?,
        "QUIT" => count("QUIT", 0, 0, "QUIT").map(|_| Command::Quit)?,
        "STAT" => count("STAT", 0, 0, "STAT").map(|_| Command::Stat)?,
        "USER" => {
            count("USER", 1, 1, "USER <name>")?;
            Command::User(args[0].to_string())
        }
        "AUTH" => {
            count("AUTH", 0, 2, "AUTH <mechanism> [initial-response]")?;
            match args.first() {
                None => Command::AuthList,
                Some(m) => Command::Auth {
                    mechanism: m.to_ascii_uppercase(),
                    initial: args.get(1).map(|r| Secret::new((*r).to_string())),
                },
            }
        }
        "LIST" => {
            count("LIST", 0, 1, "LIST [msg]")?;
            Command::List(optional_number("LIST")?)
        }
        "UIDL" => {
            count("UIDL", 0, 1, "UIDL [msg]")?;
            Command::Uidl(optional_number("UIDL")?)
        }
        "RETR" => {
            count("RETR", 1, 1, "RETR <msg>")?;
            Command::Retr(number("RETR", args[0])?)
        }
        "DELE" => {
            count("DELE", 1, 1, "DELE <msg>")?;
            Command::Dele(number("DELE", args[0])?)
        }
        "TOP" => {
            count("TOP", 2, 2, "TOP <msg> <lines>")?;
            Command::Top(number("TOP", args[0])?, number("TOP", args[1])?)
        }
        _ => return Err(ParseError::Unknown(truncated(&keyword))),
    })
}

/// One line of an AUTH exchange (RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslLine {
    /// `*`: the client cancels.
    Cancel,
    /// The client's response, still base64.
    Response(Secret<String>),
}

/// Parse a line answering a challenge.
pub fn parse_sasl_line(line: &[u8]) -> SaslLine {
    if line == b"*" {
        return SaslLine::Cancel;
    }
    SaslLine::Response(Secret::new(String::from_utf8_lossy(line).into_owned()))
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
