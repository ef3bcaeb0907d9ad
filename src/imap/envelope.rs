//! FETCH ENVELOPE (RFC 3501 §7.4.2) from a message's header block.
//!
//! Date, subject, In-Reply-To and Message-ID are the header values as
//! sent, unfolded (encoded words stay encoded, as RFC 3501 wants);
//! NIL when the header is absent. Address lists come from mail-parser;
//! display names that are not plain ASCII are given back as RFC 2047
//! encoded words, the form a client expects there. Sender and Reply-To
//! default to From. Groups are written as RFC 3501 §7.4.2 says: a start
//! marker (NIL NIL "name" NIL), the members, an end marker (NIL NIL NIL NIL).

use base64::Engine;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::core::{IString, Literal, NString};
use imap_next::imap_types::envelope::{Address, Envelope};
use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// The unfolded raw value of the first `name` header in `head`.
fn raw_header(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim_start());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}

/// An IMAP string: quoted when it can be, a literal otherwise.
fn nstring(value: Option<&str>) -> NString<'static> {
    match value {
        None => NString(None),
        Some(v) => {
            // NUL cannot travel in an IMAP string of any kind.
            let v = v.replace('\0', " ");
            match IString::try_from(v.clone()) {
                Ok(s) => NString(Some(s.into_static())),
                Err(_) => match Literal::try_from(v.into_bytes()) {
                    Ok(l) => NString::from(l.into_static()),
                    Err(_) => NString(None),
                },
            }
        }
    }
}

/// A display name as an IMAP client expects it: ASCII as is, anything
/// else as an RFC 2047 encoded word.
fn display_name(name: &str) -> String {
    if name.is_ascii() {
        name.to_string()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
    }
}

fn address(name: Option<&str>, email: Option<&str>) -> Address<'static> {
    let (mailbox, host) = match email.and_then(|e| e.rsplit_once('@')) {
        Some((m, h)) => (Some(m.to_string()), Some(h.to_string())),
        None => (email.map(str::to_string), None),
    };
    Address {
        name: nstring(name.filter(|n| !n.is_empty()).map(display_name).as_deref()),
        adl: NString(None),
        mailbox: nstring(mailbox.as_deref()),
        host: nstring(host.as_deref()),
    }
}

fn addresses(value: Option<&HeaderValue<'_>>) -> Vec<Address<'static>> {
    let mut out = Vec::new();
    let Some(HeaderValue::Address(list)) = value else {
        return out;
    };
    match list {
        mail_parser::Address::List(addrs) => {
            for a in addrs {
                out.push(address(a.name(), a.address()));
            }
        }
        mail_parser::Address::Group(groups) => {
            for g in groups {
                match &g.name {
                    Some(name) => {
                        out.push(Address {
                            name: NString(None),
                            adl: NString(None),
                            mailbox: nstring(Some(name)),
                            host: NString(None),
                        });
                        for a in &g.addresses {
                            out.push(address(a.name(), a.address()));
                        }
                        out.push(Address {
                            name: NString(None),
                            adl: NString(None),
                            mailbox: NString(None),
                            host: NString(None),
                        });
                    }
                    None => {
                        for a in &g.addresses {
                            out.push(address(a.name(), a.address()));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The ENVELOPE of `message` (its header block is enough).
pub fn envelope(message: &[u8]) -> Envelope<'static> {
    let head_len = crate::mime::submission::header_block_len(message).unwrap_or(message.len());
    let head = &message[..head_len];
    let parsed = MessageParser::default().parse_headers(head);
    let header = |name: HeaderName<'static>| {
        parsed
            .as_ref()
            .and_then(|m| m.header(name.clone()))
            .cloned()
            .map(|v| v.into_owned())
    };
    let from = addresses(header(HeaderName::From).as_ref());
    let sender = addresses(header(HeaderName::Sender).as_ref());
    let reply_to = addresses(header(HeaderName::ReplyTo).as_ref());
    Envelope {
        date: nstring(raw_header(head, "Date").as_deref()),
        subject: nstring(raw_header(head, "Subject").as_deref()),
        sender: if sender.is_empty() {
            from.clone()
        } else {
            sender
        },
        reply_to: if reply_to.is_empty() {
            from.clone()
        } else {
            reply_to
        },
        from,
        to: addresses(header(HeaderName::To).as_ref()),
        cc: addresses(header(HeaderName::Cc).as_ref()),
        bcc: addresses(header(HeaderName::Bcc).as_ref()),
        in_reply_to: nstring(raw_header(head, "In-Reply-To").as_deref()),
        message_id: nstring(raw_header(head, "Message-ID").as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(n: &NString<'_>) -> Option<String> {
        n.0.as_ref()
            .map(|s| String::from_utf8_lossy(s.as_ref()).to_string())
    }

    #[test]
    fn fields_are_raw_and_addresses_split() {
        let msg = b"Date: Mon, 16 Nov 2026 09:00:00 +0000\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\x20continued\r\nFrom: Bob Example <bob@example.com>\r\nTo: alice@example.com, \"Ca Rol\" <carol@example.com>\r\n\
Cc: team: dave@example.com, erin@example.com;\r\nMessage-ID: <m1@example.com>\r\n\r\nbody";
        let e = envelope(msg);
        assert_eq!(
            show(&e.date).as_deref(),
            Some("Mon, 16 Nov 2026 09:00:00 +0000")
        );
        assert_eq!(
            show(&e.subject).as_deref(),
            Some("=?utf-8?q?Gr=C3=BC=C3=9Fe?= continued")
        );
        assert_eq!(e.from.len(), 1);
        assert_eq!(show(&e.from[0].name).as_deref(), Some("Bob Example"));
        assert_eq!(show(&e.from[0].mailbox).as_deref(), Some("bob"));
        assert_eq!(show(&e.from[0].host).as_deref(), Some("example.com"));
        assert_eq!(e.sender, e.from);
        assert_eq!(e.reply_to, e.from);
        assert_eq!(e.to.len(), 2);
        assert_eq!(show(&e.to[0].name), None);
        // Group: start marker, two members, end marker.
        assert_eq!(e.cc.len(), 4);
        assert_eq!(show(&e.cc[0].mailbox).as_deref(), Some("team"));
        assert_eq!(show(&e.cc[0].host), None);
        assert_eq!(show(&e.cc[3].mailbox), None);
        assert!(e.bcc.is_empty());
        assert_eq!(show(&e.in_reply_to), None);
        assert_eq!(show(&e.message_id).as_deref(), Some("<m1@example.com>"));
    }

    /// A fuzzer find: NUL inside an address made an invalid IMAP literal.
    #[test]
    fn regression_nul_in_headers() {
        let msg = include_bytes!("../../fuzz/seeds/imap_mime/regression-nul.eml");
        let e = envelope(msg);
        let _ = crate::imap::bodystructure::body_structure(msg, true);
        assert!(!format!("{e:?}").contains("\\0"));
    }

    #[test]
    fn non_ascii_names_become_encoded_words_and_garbage_does_not_panic() {
        let e = envelope("From: Jürgen <j@example.com>\r\n\r\n".as_bytes());
        assert!(show(&e.from[0].name).unwrap().starts_with("=?utf-8?b?"));
        let e = envelope(b"\xff\xfe: \x00\r\nFrom: <>\r\n");
        assert_eq!(show(&e.subject), None);
    }
}
