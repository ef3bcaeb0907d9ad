//! The demo mailboxes' messages: realistic shapes (plain text, HTML with an
//! inline image, attachments, RFC 2047 headers, a forwarded message/rfc822)
//! with fixed dates, all in their original bytes.

use chrono::{DateTime, TimeZone, Utc};

use super::model::{Mailbox, message_from_mime, new_id};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

const PLAIN: &str = "From: Bob Example <bob@example.com>\r\nTo: Alice Example <alice@example.com>\r\nSubject: Quarterly report\r\nDate: Mon, 16 Nov 2026 09:00:00 +0000\r\nMessage-ID: <seed-plain@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHi Alice,\r\n\r\nthe quarterly report is ready for review.\r\n\r\nBob\r\n";

const HTML: &str = "From: Newsletter <news@contoso.example>\r\nTo: alice@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\nDate: Tue, 17 Nov 2026 10:00:00 +0100\r\nMessage-ID: <seed-html@contoso.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>Gr=C3=BC=C3=9Fe!</p><img src=3D\"cid:logo\"></body></html>\r\n--rel\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==\r\n--rel--\r\n";

const ATTACHMENT: &str = "From: =?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <juergen@fabrikam.example>\r\nTo: alice@example.com\r\nCc: bob@example.com\r\nSubject: Invoice 2026-117\r\nDate: Wed, 18 Nov 2026 11:30:00 +0000\r\nMessage-ID: <seed-attach@fabrikam.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the invoice attached.\r\n--mix\r\nContent-Type: application/pdf; name=\"invoice-2026-117.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice-2026-117.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK\r\n--mix--\r\n";

const FORWARDED: &str = "From: Bob Example <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Fwd: Server maintenance window\r\nDate: Thu, 19 Nov 2026 08:15:00 +0000\r\nMessage-ID: <seed-fwd@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"fwd\"\r\n\r\n--fwd\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee below.\r\n--fwd\r\nContent-Type: message/rfc822\r\n\r\nFrom: ops@example.com\r\nTo: bob@example.com\r\nSubject: Server maintenance window\r\nDate: Wed, 18 Nov 2026 18:00:00 +0000\r\n\r\nMaintenance on Saturday 02:00-04:00 UTC.\r\n--fwd--\r\n";

const TO_BOB: &str = "From: Alice Example <alice@example.com>\r\nTo: Bob Example <bob@example.com>\r\nSubject: Lunch on Friday?\r\nDate: Fri, 20 Nov 2026 12:00:00 +0000\r\nMessage-ID: <seed-lunch@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nShall we have lunch on Friday?\r\n";

pub fn seed(upn: &str, mailbox: &mut Mailbox) {
    let put = |mailbox: &mut Mailbox,
               folder: &str,
               mime: &str,
               day: u32,
               read: bool,
               flag: &str,
               categories: &[&str]| {
        let Some(folder_id) = mailbox.folder_id(folder) else {
            return;
        };
        let mut m = message_from_mime(
            new_id("AAMkM"),
            folder_id,
            mime.as_bytes().to_vec(),
            at(day, 9),
        );
        m.is_read = read;
        m.flag_status = flag.to_string();
        m.categories = categories.iter().map(|c| c.to_string()).collect();
        mailbox.insert(m);
    };
    match upn {
        "alice@example.com" => {
            put(mailbox, "inbox", PLAIN, 16, true, "notFlagged", &[]);
            put(
                mailbox,
                "inbox",
                HTML,
                17,
                false,
                "notFlagged",
                &["Newsletters"],
            );
            put(mailbox, "inbox", ATTACHMENT, 18, false, "flagged", &[]);
            put(mailbox, "inbox", FORWARDED, 19, false, "notFlagged", &[]);
            put(mailbox, "sentitems", TO_BOB, 20, true, "notFlagged", &[]);
        }
        "bob@example.com" => {
            put(mailbox, "inbox", TO_BOB, 20, false, "notFlagged", &[]);
            put(mailbox, "inbox", ATTACHMENT, 18, true, "notFlagged", &[]);
        }
        _ => {}
    }
}
