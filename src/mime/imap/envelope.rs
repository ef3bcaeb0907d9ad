//! ENVELOPE (RFC 3501 §7.4.2) from a header block.
//!
//! - date, subject, in-reply-to, message-id: the header value as sent,
//!   nothing decoded (encoded words stay encoded); NIL when the header is
//!   absent, "" when it is present and empty. Folding is undone; the
//!   subject has its white space runs collapsed for display. When a field
//!   occurs twice, the last one counts.
//! - from, sender, reply-to, to, cc, bcc: address lists (see
//!   [`super::address`]); several headers of one kind are read as one
//!   list; NIL when absent or empty. Sender and reply-to default to from
//!   (RFC 3501: "If the Sender or Reply-To lines are absent in the
//!   [RFC-2822] header, or are present but empty, the server sets the
//!   corresponding member of the envelope to be the same value as the
//!   from member").

use imap_types::envelope::{Address, Envelope};

use super::address::{Addr, address_list};
use super::header::fields;
use super::strings::{for_humans, nstring, unfolded, without_nul};

/// The ENVELOPE of the message or message/rfc822 body whose header block
/// is `header`.
pub(crate) fn envelope_of(header: &[u8]) -> Envelope<'static> {
    let mut date = None;
    let mut subject = None;
    let mut in_reply_to = None;
    let mut message_id = None;
    let mut from = Vec::new();
    let mut sender = Vec::new();
    let mut reply_to = Vec::new();
    let mut to = Vec::new();
    let mut cc = Vec::new();
    let mut bcc = Vec::new();
    for f in fields(header) {
        let text = match f.name.len() {
            4 if f.is("Date") => &mut date,
            7 if f.is("Subject") => &mut subject,
            11 if f.is("In-Reply-To") => &mut in_reply_to,
            10 if f.is("Message-ID") => &mut message_id,
            _ => {
                let list = match f.name.len() {
                    4 if f.is("From") => &mut from,
                    6 if f.is("Sender") => &mut sender,
                    8 if f.is("Reply-To") => &mut reply_to,
                    2 if f.is("To") => &mut to,
                    2 if f.is("Cc") => &mut cc,
                    3 if f.is("Bcc") => &mut bcc,
                    _ => continue,
                };
                list.extend(address_list(&f.value()));
                continue;
            }
        };
        // The last one counts; its value is read at the end.
        *text = Some(f);
    }
    let text = |f: Option<super::header::Field<'_>>, form: fn(&[u8]) -> Vec<u8>| {
        f.map(|f| form(&without_nul(&f.value())))
    };
    if sender.is_empty() {
        sender.clone_from(&from);
    }
    if reply_to.is_empty() {
        reply_to.clone_from(&from);
    }
    Envelope {
        date: nstring(text(date, unfolded)),
        subject: nstring(text(subject, for_humans)),
        from: addresses(from),
        sender: addresses(sender),
        reply_to: addresses(reply_to),
        to: addresses(to),
        cc: addresses(cc),
        bcc: addresses(bcc),
        in_reply_to: nstring(text(in_reply_to, unfolded)),
        message_id: nstring(text(message_id, unfolded)),
    }
}

fn addresses(list: Vec<Addr>) -> Vec<Address<'static>> {
    list.into_iter()
        .map(|a| Address {
            name: nstring(a.name.map(|n| for_humans(&n))),
            adl: nstring(a.route),
            mailbox: nstring(a.mailbox),
            host: nstring(a.domain),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_types::core::NString;

    fn s(n: &NString<'_>) -> Option<String> {
        n.0.as_ref()
            .map(|s| String::from_utf8_lossy(s.as_ref()).into_owned())
    }

    #[test]
    fn raw_values_nil_and_empty() {
        let e = envelope_of(
            b"Date: Mon, 16 Nov 2026 09:00:00 +0000\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n  again\r\nTo:\r\nMessage-ID: <m1@example.com>\r\nSubject: last\r\n\r\n",
        );
        assert_eq!(
            s(&e.date).as_deref(),
            Some("Mon, 16 Nov 2026 09:00:00 +0000")
        );
        assert_eq!(s(&e.subject).as_deref(), Some("last"));
        assert!(e.from.is_empty() && e.sender.is_empty() && e.to.is_empty());
        assert_eq!(s(&e.in_reply_to), None);
        assert_eq!(s(&e.message_id).as_deref(), Some("<m1@example.com>"));
        let e = envelope_of(b"Subject: =?utf-8?q?a?=\r\n \t b\r\nSubject-X: 1\r\n");
        assert_eq!(s(&e.subject).as_deref(), Some("=?utf-8?q?a?= b"));
        let e = envelope_of(b"Subject:\r\n");
        assert_eq!(s(&e.subject).as_deref(), Some(""));
    }

    #[test]
    fn sender_and_reply_to_default_to_from_and_lists_merge() {
        let e = envelope_of(b"From: a@b.c\r\nFrom: d@e.f\r\nSender:\r\nReply-To: r@s.t\r\n");
        assert_eq!(e.from.len(), 2);
        assert_eq!(e.sender, e.from);
        assert_eq!(e.reply_to.len(), 1);
        assert_eq!(s(&e.reply_to[0].mailbox).as_deref(), Some("r"));
    }
}
