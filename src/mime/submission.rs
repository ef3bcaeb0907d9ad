//! The SMTP-side facts of a submitted message, read from its header block
//! only: who it says it is from, whom its headers address, whether it has a
//! Message-ID — and the header lines graphgate must add so that Graph, which
//! delivers to the *header* recipients of a MIME message, delivers to
//! exactly the SMTP envelope recipients.
//!
//! The rules (RFC 5321 envelope vs RFC 5322 header; RFC 6409 §8 for what a
//! submission server may add):
//! - Every RCPT TO address absent from To/Cc/Bcc is added in a `Bcc:` line
//!   (Graph delivers to Bcc and strips it from what recipients see).
//! - A header recipient that is not an envelope recipient is refused: Graph
//!   would deliver to it although the client did not ask for it (the
//!   one-transaction-per-recipient pattern would otherwise multiply mail).
//! - A message without `Message-ID` gets one (RFC 6409 §8.3): the spool
//!   needs it to find a message in Sent Items after a crash.
//! - Every From address must be one the account may send as, and so must
//!   a Sender address (RFC 5322 §3.6.2: the agent that sent it).
//! - From, Sender, To, Cc, Bcc, Subject, Date and Message-ID appear at most
//!   once (RFC 5322 §3.6, the table's "max number" column): with two From
//!   headers the check would see one address and Graph and mail clients
//!   show the other (spoofing); with two To headers likewise for the
//!   recipients. A message that repeats one is refused, naming it.

use mail_parser::{Address, HeaderName, Message, MessageParser};

/// The largest header block read (bytes); a longer one is refused.
pub const MAX_HEADER_BLOCK: usize = 1024 * 1024;

/// What the header block says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// Bytes of the header block, the blank line included (the whole input
    /// when there is no body).
    pub header_len: usize,
    /// From addresses, lower-cased.
    pub from: Vec<String>,
    /// Sender addresses, lower-cased.
    pub sender: Vec<String>,
    /// The first header field that appears more than once though RFC 5322
    /// §3.6 allows it once (its usual spelling, e.g. `From`).
    pub duplicate: Option<&'static str>,
    /// To, Cc and Bcc addresses, lower-cased.
    pub recipients: Vec<String>,
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    pub subject: Option<String>,
}

/// Why a message cannot be submitted as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionRefusal {
    #[error(
        "the header block is larger than {MAX_HEADER_BLOCK} bytes or never ends; \
         send a message with a blank line after its headers"
    )]
    HeaderTooLarge,
    #[error("the message has no From header; add one naming {0}")]
    NoFrom(String),
    #[error(
        "the From header names {address}, which {login} may not send as; use its mailbox or a \
         configured alias (`graphgate accounts add --alias`), or grant Send As / Send on Behalf \
         for {address} in the Exchange admin center"
    )]
    FromNotAllowed { address: String, login: String },
    #[error(
        "the Sender header names {address}, which {login} may not send as; remove the Sender \
         header, or name the account's mailbox or a configured alias (`graphgate accounts add \
         --alias`) in it"
    )]
    SenderNotAllowed { address: String, login: String },
    #[error(
        "the message has more than one {0} header; RFC 5322 section 3.6 allows one, and \
         Microsoft 365 and mail clients may read another one than graphgate checked: send the \
         message with a single {0} header"
    )]
    DuplicateHeader(&'static str),
    #[error(
        "the headers address {0}, which is not an RCPT TO recipient; Microsoft Graph delivers \
         to every header recipient, so add RCPT TO:<{0}> or remove it from To/Cc/Bcc"
    )]
    HeaderOnlyRecipient(String),
}

/// The length of the header block at the start of `data`, if it ends within
/// `data` (`\r\n\r\n`, or a bare `\n\n`).
pub fn header_block_len(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < data.len() {
        let line_end = match memchr(b'\n', &data[i..]) {
            Some(p) => i + p + 1,
            None => return None,
        };
        let line = &data[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return Some(line_end);
        }
        i = line_end;
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn addresses(address: Option<&Address<'_>>, into: &mut Vec<String>) {
    if let Some(address) = address {
        for a in address.iter() {
            if let Some(addr) = a.address() {
                into.push(addr.trim().to_ascii_lowercase());
            }
        }
    }
}

/// The header fields RFC 5322 §3.6 allows at most once that graphgate
/// checks, by their usual spelling.
fn at_most_once(name: &HeaderName<'_>) -> Option<&'static str> {
    Some(match name {
        HeaderName::From => "From",
        HeaderName::Sender => "Sender",
        HeaderName::To => "To",
        HeaderName::Cc => "Cc",
        HeaderName::Bcc => "Bcc",
        HeaderName::Subject => "Subject",
        HeaderName::Date => "Date",
        HeaderName::MessageId => "Message-ID",
        _ => return None,
    })
}

/// The first field of [`at_most_once`] that `message` repeats.
fn first_duplicate(message: &Message<'_>) -> Option<&'static str> {
    let mut seen: Vec<&'static str> = Vec::new();
    for header in message.headers() {
        if let Some(name) = at_most_once(&header.name) {
            if seen.contains(&name) {
                return Some(name);
            }
            seen.push(name);
        }
    }
    None
}

/// Read the facts from the header block `head` (the whole block, as
/// [`header_block_len`] delimits it).
pub fn header_facts(head: &[u8]) -> HeaderFacts {
    let mut facts = HeaderFacts {
        header_len: head.len(),
        ..HeaderFacts::default()
    };
    let Some(message) = MessageParser::default().parse_headers(head) else {
        return facts;
    };
    facts.duplicate = first_duplicate(&message);
    addresses(message.from(), &mut facts.from);
    addresses(message.sender(), &mut facts.sender);
    addresses(message.to(), &mut facts.recipients);
    addresses(message.cc(), &mut facts.recipients);
    addresses(message.bcc(), &mut facts.recipients);
    facts.message_id = message
        .message_id()
        .map(str::to_string)
        .filter(|s| !s.is_empty());
    facts.subject = message.subject().map(str::to_string);
    // A From header mail-parser could not read as addresses still counts
    // as present-but-unusable.
    if facts.from.is_empty() && message.header(HeaderName::From).is_some() {
        facts.from.push(String::new());
    }
    if facts.sender.is_empty() && message.header(HeaderName::Sender).is_some() {
        facts.sender.push(String::new());
    }
    facts
}

/// The header lines to put in front of the message (CRLF-terminated; empty
/// when nothing is missing), or why it cannot be sent.
///
/// `allowed` are the addresses the account may send as; `new_message_id`
/// is used when the message has none.
pub fn submission_prefix(
    facts: &HeaderFacts,
    envelope_rcpt: &[String],
    login: &str,
    allowed: &[String],
    new_message_id: &str,
) -> Result<String, SubmissionRefusal> {
    let is_allowed = |a: &str| allowed.iter().any(|x| x.eq_ignore_ascii_case(a));
    let readable = |a: &String| {
        if a.is_empty() {
            "an unreadable address".to_string()
        } else {
            a.clone()
        }
    };
    if let Some(name) = facts.duplicate {
        return Err(SubmissionRefusal::DuplicateHeader(name));
    }
    if facts.from.is_empty() {
        return Err(SubmissionRefusal::NoFrom(
            allowed.first().cloned().unwrap_or_default(),
        ));
    }
    if let Some(bad) = facts.from.iter().find(|a| !is_allowed(a)) {
        return Err(SubmissionRefusal::FromNotAllowed {
            address: readable(bad),
            login: login.to_string(),
        });
    }
    if let Some(bad) = facts.sender.iter().find(|a| !is_allowed(a)) {
        return Err(SubmissionRefusal::SenderNotAllowed {
            address: readable(bad),
            login: login.to_string(),
        });
    }
    let envelope: Vec<String> = envelope_rcpt
        .iter()
        .map(|r| r.trim().to_ascii_lowercase())
        .collect();
    if let Some(extra) = facts.recipients.iter().find(|r| !envelope.contains(r)) {
        return Err(SubmissionRefusal::HeaderOnlyRecipient(extra.clone()));
    }
    let mut bcc: Vec<&str> = Vec::new();
    for (rcpt, lower) in envelope_rcpt.iter().zip(&envelope) {
        if !facts.recipients.contains(lower) && !bcc.iter().any(|b| b.eq_ignore_ascii_case(rcpt)) {
            bcc.push(rcpt.trim());
        }
    }
    let mut prefix = String::new();
    if facts.message_id.is_none() {
        prefix.push_str(&format!("Message-ID: <{new_message_id}>\r\n"));
    }
    if !bcc.is_empty() {
        // One address per folded line keeps every line short.
        prefix.push_str("Bcc: ");
        prefix.push_str(&bcc.join(",\r\n "));
        prefix.push_str("\r\n");
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Alice <Alice@Example.com>\r\nTo: bob@example.com\r\n\
Cc: \"C\" <carol@example.com>\r\nSubject: hi\r\n\r\nbody\r\n";

    fn facts(msg: &[u8]) -> HeaderFacts {
        header_facts(&msg[..header_block_len(msg).unwrap()])
    }

    #[test]
    fn reads_addresses_lower_cased() {
        let f = facts(MSG);
        assert_eq!(f.from, vec!["alice@example.com"]);
        assert_eq!(f.recipients, vec!["bob@example.com", "carol@example.com"]);
        assert_eq!(f.message_id, None);
        assert_eq!(f.header_len, MSG.len() - 6);
    }

    #[test]
    fn envelope_only_recipients_become_bcc_and_a_message_id_is_added() {
        let f = facts(MSG);
        let rcpt = vec![
            "bob@example.com".to_string(),
            "Carol@example.com".to_string(),
            "dave@example.com".to_string(),
            "erin@example.org".to_string(),
        ];
        let prefix = submission_prefix(
            &f,
            &rcpt,
            "alice",
            &["alice@example.com".into()],
            "id@graphgate",
        )
        .unwrap();
        assert_eq!(
            prefix,
            "Message-ID: <id@graphgate>\r\nBcc: dave@example.com,\r\n erin@example.org\r\n"
        );
    }

    #[test]
    fn nothing_added_when_nothing_is_missing() {
        let msg = b"From: alice@example.com\r\nTo: bob@example.com\r\nMessage-ID: <a@b>\r\n\r\nx";
        let prefix = submission_prefix(
            &facts(msg),
            &["bob@example.com".into()],
            "alice",
            &["alice@example.com".into()],
            "unused",
        )
        .unwrap();
        assert_eq!(prefix, "");
    }

    #[test]
    fn header_only_recipient_is_refused() {
        let e = submission_prefix(
            &facts(MSG),
            &["bob@example.com".into()],
            "alice",
            &["alice@example.com".into()],
            "x",
        )
        .unwrap_err();
        assert_eq!(
            e,
            SubmissionRefusal::HeaderOnlyRecipient("carol@example.com".into())
        );
        assert!(e.to_string().contains("RCPT TO:<carol@example.com>"));
    }

    #[test]
    fn from_must_be_allowed() {
        let msg = b"From: mallory@example.com\r\nTo: bob@example.com\r\n\r\nx";
        let e = submission_prefix(
            &facts(msg),
            &["bob@example.com".into()],
            "alice",
            &["alice@example.com".into()],
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("mallory@example.com"));
        assert!(e.to_string().contains("Send As"));
        let none = b"To: bob@example.com\r\n\r\nx";
        assert!(matches!(
            submission_prefix(
                &facts(none),
                &["bob@example.com".into()],
                "alice",
                &["alice@example.com".into()],
                "x"
            ),
            Err(SubmissionRefusal::NoFrom(_))
        ));
    }

    #[test]
    fn a_repeated_single_header_is_refused_by_name() {
        let refused = |msg: &[u8]| {
            submission_prefix(
                &facts(msg),
                &["bob@example.com".into(), "carol@example.com".into()],
                "alice",
                &["alice@example.com".into()],
                "x",
            )
        };
        // The spoof of issue 22: the check read the last From, Graph the first.
        let two_from = b"From: bob@example.com\r\nFrom: alice@example.com\r\n\
To: bob@example.com\r\n\r\nx";
        assert_eq!(
            refused(two_from),
            Err(SubmissionRefusal::DuplicateHeader("From"))
        );
        let two_to = b"From: alice@example.com\r\nTo: bob@example.com\r\n\
TO: carol@example.com\r\n\r\nx";
        let e = refused(two_to).unwrap_err();
        assert_eq!(e, SubmissionRefusal::DuplicateHeader("To"));
        assert!(e.to_string().contains("more than one To header"), "{e}");
        for name in ["Sender", "Cc", "Bcc", "Subject", "Date", "Message-ID"] {
            let msg = format!(
                "From: alice@example.com\r\nTo: bob@example.com\r\n{name}: <a@b>\r\n\
                 {name}: <a@b>\r\n\r\nx"
            );
            assert!(
                matches!(refused(msg.as_bytes()), Err(SubmissionRefusal::DuplicateHeader(n)) if n == name),
                "{name}"
            );
        }
        // Fields RFC 5322 lets repeat stay allowed.
        let fine = b"From: alice@example.com\r\nTo: bob@example.com\r\nReceived: a\r\n\
Received: b\r\nComments: c\r\nComments: d\r\nMessage-ID: <m@x>\r\n\r\nx";
        assert_eq!(refused(fine), Ok("Bcc: carol@example.com\r\n".into()));
    }

    #[test]
    fn sender_must_be_allowed_like_from() {
        let check = |msg: &[u8]| {
            submission_prefix(
                &facts(msg),
                &["bob@example.com".into()],
                "alice",
                &["alice@example.com".into(), "alias@example.com".into()],
                "x",
            )
        };
        let foreign = b"From: alice@example.com\r\nSender: mallory@example.com\r\n\
To: bob@example.com\r\nMessage-ID: <m@x>\r\n\r\nx";
        let e = check(foreign).unwrap_err();
        assert_eq!(
            e,
            SubmissionRefusal::SenderNotAllowed {
                address: "mallory@example.com".into(),
                login: "alice".into()
            }
        );
        assert!(e.to_string().contains("Sender header"), "{e}");
        let own = b"From: alias@example.com\r\nSender: Alice <ALICE@example.com>\r\n\
To: bob@example.com\r\nMessage-ID: <m@x>\r\n\r\nx";
        assert_eq!(check(own), Ok(String::new()));
    }

    #[test]
    fn header_block_needs_its_blank_line() {
        assert_eq!(header_block_len(b"A: b\r\n"), None);
        assert_eq!(header_block_len(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_block_len(b"\r\nbody"), Some(2));
    }
}
