//! The parts of ESEARCH (RFC 4731) and SEARCHRES (RFC 5182) that
//! imap-codec 2.0.0-alpha.10 does not parse: `SEARCH RETURN (…)` and the
//! `$` marker (the saved search result) where a sequence set goes.
//!
//! Sans-I/O: a command line imap-codec refused (imap-next hands it back
//! as `MalformedMessage`) is read here once more. The RETURN options are
//! taken out, each `$` is replaced by the saved result written as the set
//! it stands for (UIDs after a `UID` key or in a UID command, sequence
//! numbers elsewhere), and imap-codec parses what is left; the session
//! gets the parsed command and the options beside it. Chosen over a fork
//! of imap-codec (no feature flag of it has these) so that everything
//! else of the command — search keys, literals, charsets — is parsed by
//! the same parser as every other command.
//!
//! Literals, synchronizing or not, reach this parser whole: imap-next's
//! framing answers a line ending in `{n}` with a continuation before any
//! parse, so `SEARCH RETURN (COUNT) SUBJECT {9}` works as with LITERAL+.
//!
//! An empty saved result is `(NOT ALL)` in search criteria (it matches
//! nothing, RFC 5182 §2.1); as the set of FETCH, STORE, COPY, MOVE or
//! UID EXPUNGE it makes the command a no-op that succeeds ([`Extended::
//! empty_set`], RFC 5182 §2.1: "not an error").

use imap_codec::decode::Decoder as _;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::command::{Command, CommandBody};

/// ESEARCH result options (RFC 4731 §3.1, RFC 5182 §2.4 for SAVE).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Returns {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

impl Returns {
    /// Whether an ESEARCH response is sent: for any option but SAVE
    /// alone (RFC 5182 §2.4).
    pub fn answers(&self) -> bool {
        self.min || self.max || self.all || self.count
    }
}

/// A command read here, with what imap-codec could not carry.
#[derive(Debug)]
pub struct Extended {
    pub command: Command<'static>,
    /// `SEARCH RETURN (…)`'s options.
    pub returns: Option<Returns>,
    /// `$` was the command's set and the saved result is empty.
    pub empty_set: bool,
}

/// The saved result (RFC 5182 §2.1) as UIDs, and as the sequence numbers
/// those messages have now (expunged ones left out), both ascending.
#[derive(Debug, Default)]
pub struct Saved<'a> {
    pub uids: &'a [u32],
    pub seqs: &'a [u32],
}

/// Longest command line looked at (a search with many keys is a few
/// kilobytes; anything longer is imap-codec's refusal to keep).
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Atom,
    Open,
    Close,
    Text,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// The tokens of `line`: atoms (anything up to SP, parenthesis, quote or
/// line end), parentheses, quoted strings and literals (`{n}`, `{n+}`,
/// `~{n}` with their CRLF and `n` bytes) as single text tokens. `None`
/// for a line that does not end where a command ends.
fn tokens(line: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        match b {
            b' ' | b'\r' | b'\n' => i += 1,
            b'(' | b')' => {
                let kind = if b == b'(' { Kind::Open } else { Kind::Close };
                out.push(Token {
                    kind,
                    start: i,
                    end: i + 1,
                });
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match line.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        b'\r' | b'\n' => return None,
                        _ => i += 1,
                    }
                }
                i += 1;
                out.push(Token {
                    kind: Kind::Text,
                    start,
                    end: i,
                });
            }
            _ => {
                let start = i;
                while i < line.len()
                    && !matches!(line[i], b' ' | b'(' | b')' | b'"' | b'\r' | b'\n')
                {
                    i += 1;
                }
                let word = &line[start..i];
                // A literal's announcement ends its line: its bytes follow.
                let literal = word
                    .strip_prefix(b"~")
                    .unwrap_or(word)
                    .strip_prefix(b"{")
                    .and_then(|w| w.strip_suffix(b"}"))
                    .map(|w| w.strip_suffix(b"+").unwrap_or(w));
                if let Some(n) = literal
                    && line[i..].starts_with(b"\r\n")
                {
                    let n: usize = std::str::from_utf8(n).ok()?.parse().ok()?;
                    i = n
                        .checked_add(2)
                        .and_then(|k| i.checked_add(k))
                        .filter(|&e| e <= line.len())?;
                    out.push(Token {
                        kind: Kind::Text,
                        start,
                        end: i,
                    });
                } else {
                    out.push(Token {
                        kind: Kind::Atom,
                        start,
                        end: i,
                    });
                }
            }
        }
    }
    Some(out)
}

/// A set of ascending numbers in IMAP form (`1:3,7`).
pub fn compact(values: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < values.len() {
        let start = values[i];
        let mut end = start;
        while i + 1 < values.len() && values[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = values[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Read `line` (one whole command as imap-next discarded it) if it uses
/// `SEARCH RETURN (…)` or `$`. `Ok(None)`: neither, or not a command this
/// module reads (the caller's usual refusal stands); `Err`: a RETURN
/// option that does not exist, in words.
pub fn parse(line: &[u8], saved: &Saved<'_>) -> Result<Option<Extended>, String> {
    if line.len() > MAX_LINE {
        return Ok(None);
    }
    let Some(toks) = tokens(line) else {
        return Ok(None);
    };
    let word = |t: &Token| &line[t.start..t.end];
    let is = |t: Option<&Token>, w: &str| {
        t.is_some_and(|t| t.kind == Kind::Atom && word(t).eq_ignore_ascii_case(w.as_bytes()))
    };
    // tag [UID] command
    let uid = is(toks.get(1), "UID");
    let at = if uid { 2 } else { 1 };
    let Some(cmd) = toks.get(at).filter(|t| t.kind == Kind::Atom) else {
        return Ok(None);
    };
    let cmd = String::from_utf8_lossy(word(cmd)).to_ascii_uppercase();
    let takes_set =
        matches!(cmd.as_str(), "FETCH" | "STORE" | "COPY" | "MOVE") || (uid && cmd == "EXPUNGE");
    let takes_criteria = matches!(cmd.as_str(), "SEARCH" | "SORT" | "THREAD");
    if !takes_set && !takes_criteria {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(line.len() + 64);
    let mut copied = 0;
    let mut returns = None;
    let mut skip_to = 0;
    // RETURN (…) right after SEARCH (RFC 4731 §3.1).
    if cmd == "SEARCH" && is(toks.get(at + 1), "RETURN") {
        if toks.get(at + 2).map(|t| t.kind) != Some(Kind::Open) {
            return Err("RETURN needs a list of options: RETURN (MIN MAX ALL COUNT SAVE)".into());
        }
        let mut r = Returns::default();
        let mut j = at + 3;
        loop {
            let Some(t) = toks.get(j) else {
                return Err("the RETURN list is not closed".into());
            };
            if t.kind == Kind::Close {
                break;
            }
            let option = String::from_utf8_lossy(word(t)).to_ascii_uppercase();
            match option.as_str() {
                "MIN" => r.min = true,
                "MAX" => r.max = true,
                "ALL" => r.all = true,
                "COUNT" => r.count = true,
                "SAVE" => r.save = true,
                _ => {
                    return Err(format!(
                        "unknown RETURN option {option:?}: MIN, MAX, ALL, COUNT and SAVE are \
                         offered (RFC 4731, RFC 5182)"
                    ));
                }
            }
            j += 1;
        }
        // RETURN () is RETURN (ALL) (RFC 4731 §3.1).
        if !r.answers() && !r.save {
            r.all = true;
        }
        returns = Some(r);
        let (from, to) = (toks[at + 1].start, toks[j].end);
        out.extend_from_slice(&line[..from]);
        // The space after the list goes too.
        copied = if line.get(to) == Some(&b' ') {
            to + 1
        } else {
            to
        };
        skip_to = j + 1;
    }
    let mut empty_set = false;
    let mut dollars = 0;
    for (k, t) in toks.iter().enumerate().skip(skip_to) {
        if t.kind != Kind::Atom || word(t) != b"$" {
            continue;
        }
        dollars += 1;
        let after_uid_key = k > at && is(toks.get(k - 1), "UID");
        let as_set = takes_set && k == at + 1;
        let (values, from) = if as_set {
            (if uid { saved.uids } else { saved.seqs }, t.start)
        } else if after_uid_key {
            (saved.uids, toks[k - 1].start)
        } else {
            (saved.seqs, t.start)
        };
        out.extend_from_slice(&line[copied..from]);
        if values.is_empty() {
            if as_set {
                // Parsed with a stand-in; never run (see `empty_set`).
                empty_set = true;
                out.extend_from_slice(b"1");
            } else {
                out.extend_from_slice(b"(NOT ALL)");
            }
        } else {
            if after_uid_key && !as_set {
                out.extend_from_slice(b"UID ");
            }
            out.extend_from_slice(compact(values).as_bytes());
        }
        copied = t.end;
    }
    if returns.is_none() && dollars == 0 {
        return Ok(None);
    }
    out.extend_from_slice(&line[copied..]);
    let Ok((rest, command)) = imap_codec::CommandCodec::default().decode(&out) else {
        return Ok(None);
    };
    if !rest.is_empty() {
        return Ok(None);
    }
    if returns.is_some() && !matches!(command.body, CommandBody::Search { .. }) {
        return Ok(None);
    }
    Ok(Some(Extended {
        command: command.into_static(),
        returns,
        empty_set,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_next::imap_types::search::SearchKey;

    fn read(line: &str, uids: &[u32], seqs: &[u32]) -> Result<Option<Extended>, String> {
        parse(line.as_bytes(), &Saved { uids, seqs })
    }

    fn wire(c: &Command<'_>) -> String {
        use imap_codec::encode::Encoder as _;
        String::from_utf8(imap_codec::CommandCodec::default().encode(c).dump()).unwrap()
    }

    #[test]
    fn return_options_are_taken_out() {
        let e = read("a SEARCH RETURN (MIN count) UNSEEN\r\n", &[], &[])
            .unwrap()
            .unwrap();
        let r = e.returns.unwrap();
        assert!(r.min && r.count && !r.max && !r.all && !r.save);
        assert_eq!(wire(&e.command), "a SEARCH UNSEEN\r\n");

        let e = read(
            "t uid search return () charset utf-8 subject \"a(b\"\r\n",
            &[],
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            e.returns,
            Some(Returns {
                all: true,
                ..Returns::default()
            })
        );
        match &e.command.body {
            CommandBody::Search { uid, criteria, .. } => {
                assert!(*uid);
                assert!(matches!(criteria.as_ref()[0], SearchKey::Subject(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(read("a SEARCH RETURN (NEWEST) ALL\r\n", &[], &[]).is_err());
        assert!(read("a SEARCH RETURN MIN ALL\r\n", &[], &[]).is_err());
        assert!(read("a SEARCH RETURN (MIN ALL\r\n", &[], &[]).is_err());
    }

    #[test]
    fn dollar_is_the_saved_result() {
        let (uids, seqs) = (&[4, 5, 6, 9][..], &[2, 3, 4, 6][..]);
        let e = read("a FETCH $ (FLAGS)\r\n", uids, seqs).unwrap().unwrap();
        assert_eq!(wire(&e.command), "a FETCH 2:4,6 FLAGS\r\n");
        let e = read("a UID FETCH $ FLAGS\r\n", uids, seqs)
            .unwrap()
            .unwrap();
        assert_eq!(wire(&e.command), "a UID FETCH 4:6,9 FLAGS\r\n");
        let e = read("a SEARCH UID $ OR $ SEEN\r\n", uids, seqs)
            .unwrap()
            .unwrap();
        assert_eq!(wire(&e.command), "a SEARCH UID 4:6,9 OR 2:4,6 SEEN\r\n");
        let e = read("a UID SEARCH RETURN (SAVE) $ SUBJECT \"$\"\r\n", uids, seqs)
            .unwrap()
            .unwrap();
        assert_eq!(wire(&e.command), "a UID SEARCH 2:4,6 SUBJECT \"$\"\r\n");
        let e = read("a UID SORT (DATE) UTF-8 UID $\r\n", uids, seqs)
            .unwrap()
            .unwrap();
        assert_eq!(wire(&e.command), "a UID SORT (DATE) UTF-8 UID 4:6,9\r\n");
        // An empty result: nothing matches; a command's set does nothing.
        let e = read("a SEARCH UID $\r\n", &[], &[]).unwrap().unwrap();
        assert_eq!(wire(&e.command), "a SEARCH (NOT ALL)\r\n");
        let e = read("a UID STORE $ +FLAGS (\\Seen)\r\n", &[], &[])
            .unwrap()
            .unwrap();
        assert!(e.empty_set);
        // A literal is skipped whole, `$` inside it is data.
        let e = read("a SEARCH SUBJECT {1}\r\n$ $\r\n", uids, seqs)
            .unwrap()
            .unwrap();
        assert_eq!(wire(&e.command), "a SEARCH SUBJECT {1}\r\n$ 2:4,6\r\n");
        // Not ours.
        assert!(read("a LOGIN $ x\r\n", uids, seqs).unwrap().is_none());
        assert!(read("a SEARCH ALL\r\n", uids, seqs).unwrap().is_none());
        assert!(read("a FETCH 1 $\r\n", uids, seqs).unwrap().is_none());
        assert!(
            read("a SEARCH {99}\r\n$\r\n", uids, seqs)
                .unwrap()
                .is_none()
        );
        // A literal length past any line (and past usize) is no literal.
        for n in [
            "18446744073709551615",
            "18446744073709551614",
            "99999999999999999999999",
        ] {
            let line = format!("a SEARCH $ {{{n}}}\r\nx\r\n");
            assert!(read(&line, uids, seqs).unwrap().is_none());
        }
    }

    #[test]
    fn sets_are_compacted() {
        assert_eq!(compact(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compact(&[]), "");
        assert_eq!(compact(&[u32::MAX]), "4294967295");
        assert_eq!(compact(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
    }
}
