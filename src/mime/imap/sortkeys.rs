//! What SORT and THREAD (RFC 5256) compare, read once from a message's
//! header block: the sent date (§2.2), the base subject (§2.1) and
//! whether the subject said it was a reply or forward, the addr-mailbox
//! of the first From / To / Cc address (§3, as ENVELOPE gives it), and
//! the Message-ID and references THREAD=REFERENCES links by (§4).
//!
//! Strings are kept in the form the comparator compares: the
//! i;ascii-casemap comparator (RFC 4790 §9.2, the default of RFC 5255's
//! I18NLEVEL=1) maps a–z to A–Z and compares octets, so the keys are
//! stored upper-cased in ASCII and compared as bytes. Pure and total:
//! every input gives keys, broken headers give empty ones.

use super::address::address_list;
use super::header::fields;

/// A message's SORT and THREAD keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys {
    /// The Date header in Unix seconds (UTC), when it parses (§2.2: the
    /// caller falls back to the internal date).
    pub sent: Option<i64>,
    /// The base subject (§2.1), UTF-8, ASCII upper-cased.
    pub subject: String,
    /// The subject had a `Re:`/`Fw:`/`Fwd:` leader, a `(fwd)` trailer or
    /// a `[fwd: …]` wrapper (§4 step 5: "a reply or forward").
    pub reply: bool,
    /// addr-mailbox of the first From / To / Cc address, ASCII
    /// upper-cased ("" when there is none).
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    pub cc: Vec<u8>,
    /// The Message-ID (without angle brackets), when it has one.
    pub message_id: Option<String>,
    /// The Message-IDs of References, or else the first of In-Reply-To
    /// (§4 step 1).
    pub references: Vec<String>,
}

/// Most references kept per message: a hostile header costs bounded work.
const MAX_REFERENCES: usize = 1_000;

/// The keys of the message whose header block is `header` (the bytes
/// before the blank line; a whole message works too).
pub fn sort_keys(header: &[u8]) -> SortKeys {
    let block = &header[..super::structure::root_header_end(header).min(header.len())];
    let mut keys = SortKeys::default();
    let (mut from, mut to, mut cc) = (None, None, None);
    for f in fields(block) {
        let slot = match f.name.len() {
            4 if f.is("From") => &mut from,
            2 if f.is("To") => &mut to,
            2 if f.is("Cc") => &mut cc,
            _ => continue,
        };
        if slot.is_none() {
            let first = address_list(&f.value())
                .into_iter()
                .next()
                .and_then(|a| a.mailbox);
            *slot = first.or(Some(Vec::new())).filter(|m| !m.is_empty());
        }
    }
    keys.from = from.unwrap_or_default().to_ascii_uppercase();
    keys.to = to.unwrap_or_default().to_ascii_uppercase();
    keys.cc = cc.unwrap_or_default().to_ascii_uppercase();
    // Encoded words, dates and message ids are read by mail-parser from
    // the header block alone.
    let Some(m) = crate::mime::parse_message(block) else {
        return keys;
    };
    keys.sent = m.date().filter(|d| d.is_valid()).map(|d| d.to_timestamp());
    let (subject, reply) = base_subject(m.subject().unwrap_or_default());
    keys.subject = subject;
    keys.reply = reply;
    keys.message_id = m
        .message_id()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let ids = |v: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        v.as_text_list()
            .unwrap_or_default()
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .take(MAX_REFERENCES)
            .collect()
    };
    keys.references = ids(m.references());
    if keys.references.is_empty() {
        keys.references = ids(m.in_reply_to()).into_iter().take(1).collect();
    }
    keys
}

/// The base subject of `subject` (RFC 5256 §2.1, steps 1–7; encoded words
/// already decoded), ASCII upper-cased, and whether a reply or forward
/// marker was removed on the way.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Tabs and line ends become spaces, runs of spaces one space.
    let mut s = String::with_capacity(subject.len());
    for c in subject.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        s.push(c.to_ascii_uppercase());
    }
    let mut reply = false;
    let mut s = s.as_str();
    loop {
        // (2) subj-trailer = "(fwd)" / WSP, repeatedly.
        loop {
            if let Some(rest) = s.strip_suffix(' ') {
                s = rest;
            } else if let Some(rest) = s.strip_suffix("(FWD)") {
                s = rest;
                reply = true;
            } else {
                break;
            }
        }
        // (3)–(5) subj-leader and subj-blob, until neither matches.
        loop {
            let before = s;
            let (rest, refwd) = strip_leader(s);
            reply |= refwd;
            s = rest;
            // (4) A blob, when something is left after it.
            if let Some(rest) = strip_blob(s)
                && !rest.is_empty()
            {
                s = rest;
            }
            if s.len() == before.len() {
                break;
            }
        }
        // (6) "[fwd:" … "]" around the rest: remove and start over at (2).
        if s.len() >= 6
            && s.starts_with("[FWD:")
            && s.ends_with(']')
            && let Some(inner) = s.get(5..s.len() - 1)
        {
            s = inner;
            reply = true;
            continue;
        }
        break;
    }
    (s.to_string(), reply)
}

/// One subj-leader at the start of `s` (RFC 5256 §5:
/// `(*subj-blob subj-refwd) / WSP`): what is left, and whether it was a
/// `re`/`fw`/`fwd` one.
fn strip_leader(s: &str) -> (&str, bool) {
    if let Some(rest) = s.strip_prefix(' ') {
        return (rest, false);
    }
    // *subj-blob subj-refwd
    let mut at = s;
    while let Some(rest) = strip_blob(at) {
        at = rest;
    }
    let after_word = at
        .strip_prefix("RE")
        .or_else(|| at.strip_prefix("FWD"))
        .or_else(|| at.strip_prefix("FW"));
    let Some(mut rest) = after_word else {
        return (s, false);
    };
    rest = rest.trim_start_matches(' ');
    if let Some(after) = strip_blob(rest) {
        rest = after;
    }
    match rest.strip_prefix(':') {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

/// One subj-blob at the start of `s` (`"[" *BLOBCHAR "]" *WSP`, BLOBCHAR
/// anything but `[` and `]`): what follows it.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find([']', '['])?;
    if inner.as_bytes().get(end) != Some(&b']') {
        return None;
    }
    Some(inner.get(end + 1..)?.trim_start_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects_follow_rfc_5256_section_2_1() {
        for (subject, base, reply) in [
            ("Hello", "HELLO", false),
            ("Re: Hello", "HELLO", true),
            ("RE:  re: Fwd: hello", "HELLO", true),
            ("Re[2]: hello", "HELLO", true),
            ("[list] Re: hello", "HELLO", true),
            ("[list] hello", "HELLO", false),
            ("[list]", "[LIST]", false),
            ("hello (fwd)", "HELLO", true),
            ("hello (fwd) (FWD)  ", "HELLO", true),
            ("[Fwd: Re: hello]", "HELLO", true),
            ("[fwd: hello] ", "HELLO", true),
            ("re:hello\tworld", "HELLO WORLD", true),
            ("Rewrite: x", "REWRITE: X", false),
            ("fw : x", "X", true),
            ("re [x]: y", "Y", true),
            ("", "", false),
            ("   ", "", false),
            ("Grüße", "GRüßE", false),
            ("[a][b] re: [c] x", "X", true),
        ] {
            assert_eq!(
                base_subject(subject),
                (base.to_string(), reply),
                "{subject:?}"
            );
        }
    }

    #[test]
    fn keys_come_from_the_header_block() {
        let k = sort_keys(
            b"From: \"Zed\" <alice@example.com>, bob@example.com\r\n\
              To: undisclosed-recipients:;\r\n\
              Subject: =?utf-8?q?Re:_Gr=C3=BC=C3=9Fe?=\r\n\
              Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n\
              Message-ID: <a@x>\r\n\
              In-Reply-To: <p@x> <q@x>\r\n\r\nbody\r\n",
        );
        assert_eq!(k.from, b"ALICE");
        assert_eq!(k.to, b"UNDISCLOSED-RECIPIENTS");
        assert_eq!(k.cc, b"");
        assert_eq!(k.subject, "GRüßE");
        assert!(k.reply);
        assert_eq!(k.sent, Some(1_796_115_600));
        assert_eq!(k.message_id.as_deref(), Some("a@x"));
        assert_eq!(k.references, vec!["p@x".to_string()]);

        let k =
            sort_keys(b"References: <a@x>\r\n <b@x>\r\nIn-Reply-To: <c@x>\r\nDate: junk\r\n\r\n");
        assert_eq!(k.references, vec!["a@x".to_string(), "b@x".to_string()]);
        assert_eq!(k.sent, None);
        assert_eq!(k.message_id, None);
        assert_eq!(sort_keys(b""), SortKeys::default());
    }
}
