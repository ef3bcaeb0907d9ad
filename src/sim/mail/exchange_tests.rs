//! The Exchange renderer keeps decoded content and changes the bytes.

use chrono::TimeZone;
use mail_parser::{MessageParser, MimeHeaders};

use super::*;

const MIXED: &[u8] = b"From: =?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <juergen@fabrikam.example>\r\nTo: alice@example.com, \"Doe, John\" <john@example.com>\r\nCc: bob@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe_und_eine_sehr_lange_Betreffzeile_die_gefaltet_werden_muss?=\r\nDate: Tue, 17 Nov 2026 10:00:00 +0100\r\nMessage-ID: <seed-attach@fabrikam.example>\r\nX-Mailer: test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe, a line with trailing space \r\nand a very long line that goes on and on and on well past the seventy-six column limit of quoted-printable\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Gr\xc3\xbc\xc3\x9fe</p>\r\n--alt--\r\n--mix\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK\r\n--mix\r\nContent-Type: message/rfc822\r\n\r\nFrom: ops@example.com\r\nTo: bob@example.com\r\nSubject: inner\r\nDate: Wed, 18 Nov 2026 18:00:00 +0000\r\n\r\nMaintenance on Saturday.\r\n--mix--\r\n";

fn stamp(hop: bool) -> Stamp<'static> {
    let t = Utc.with_ymd_and_hms(2026, 11, 17, 9, 0, 5).unwrap();
    Stamp {
        message_id: "<seed-attach@fabrikam.example>",
        sent: t,
        hop: hop.then_some(t),
    }
}

fn parse(bytes: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default().parse(bytes).unwrap()
}

#[test]
fn content_survives_and_bytes_change() {
    let before = parse(MIXED);
    let rendered = render(MIXED, &stamp(true)).unwrap();
    let text = String::from_utf8(rendered.clone()).unwrap();
    let after = parse(&rendered);
    assert_ne!(rendered, MIXED);
    assert_eq!(before.subject(), after.subject());
    assert_eq!(before.from(), after.from());
    assert_eq!(before.to(), after.to());
    assert_eq!(before.cc(), after.cc());
    assert_eq!(before.body_text(0), after.body_text(0));
    assert_eq!(before.body_html(0), after.body_html(0));
    // Attached files keep their bytes; an attached message is rendered
    // again (below).
    let bytes = |m: &mail_parser::Message<'_>| -> Vec<Vec<u8>> {
        m.attachments()
            .filter(|a| a.message().is_none())
            .map(|a| a.contents().to_vec())
            .collect()
    };
    assert_eq!(bytes(&before), bytes(&after));
    let names = |m: &mail_parser::Message<'_>| -> Vec<Option<String>> {
        m.attachments()
            .map(|a| a.attachment_name().map(str::to_string))
            .collect()
    };
    assert_eq!(names(&before), names(&after));
    // Exchange's shape.
    assert!(text.starts_with("Received: from "), "{text}");
    assert!(text.contains("\r\nDate: Tue, 17 Nov 2026 09:00:00 +0000\r\n"));
    assert!(text.contains("\r\nX-MS-Has-Attach: yes\r\n"));
    assert!(text.contains("\r\nX-MS-TNEF-Correlator:\r\n"));
    assert!(text.contains("boundary=\"_004_seedattachfabrikamexample_\""));
    assert!(text.contains("boundary=\"_000_seedattachfabrikamexample_\""));
    assert!(text.contains("Content-Transfer-Encoding: quoted-printable"));
    assert!(text.contains("\r\nMIME-Version: 1.0\r\n\r\n"));
    assert!(text.find("X-Mailer: test").unwrap() > text.find("msip_labels:").unwrap());
    // CRLF only, lines within 78 columns except where a word is longer.
    assert!(!rendered.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    for line in text.split("\r\n") {
        assert!(line.len() <= 998, "{line}");
    }
    let body_lines = text.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        body_lines
            .split("\r\n")
            .all(|l| l.len() <= 76 || l.starts_with("--"))
    );
}

#[test]
fn nested_message_is_rendered_too() {
    let rendered = render(MIXED, &stamp(false)).unwrap();
    let after = parse(&rendered);
    let inner = after
        .attachments()
        .find_map(|a| a.message())
        .expect("the attached message");
    assert_eq!(inner.subject(), Some("inner"));
    assert_eq!(
        inner.body_text(0).as_deref(),
        Some("Maintenance on Saturday.")
    );
    let text = String::from_utf8_lossy(&rendered);
    assert!(!text.contains("Received:"), "no transport hop: {text}");
}

#[test]
fn plain_text_and_stable_boundaries() {
    let plain = "From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Hi\r\n\r\nline = one\r\n\tindented\r\n";
    let a = render(plain.as_bytes(), &stamp(false)).unwrap();
    let after = parse(&a);
    assert_eq!(
        after.body_text(0).as_deref(),
        Some("line = one\r\n\tindented\r\n")
    );
    let text = String::from_utf8_lossy(&a);
    assert!(text.contains("line =3D one"), "{text}");
    assert!(text.contains("Content-Type: text/plain; charset=\"us-ascii\""));
    // Rendering a rendering keeps the shape (a copy): only the network id
    // changes.
    let b = render(&a, &stamp(false)).unwrap();
    let strip = |m: &[u8]| -> String {
        String::from_utf8_lossy(m)
            .lines()
            .filter(|l| !l.starts_with("X-MS-Exchange-Organization-Network-Message-Id"))
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn quoted_printable_lines_and_trailing_space() {
    let long = "x".repeat(200);
    let qp = quoted_printable(&format!("{long} \r\nend"));
    let text = String::from_utf8(qp).unwrap();
    assert!(text.split("\r\n").all(|l| l.len() <= 76), "{text}");
    assert!(text.contains("=20\r\nend"));
}

#[test]
fn unparseable_input_is_left_alone_and_folding_keeps_words() {
    let mut out = Vec::new();
    push_field(&mut out, "X-Long", "word ".repeat(40).trim_end().as_bytes());
    let text = String::from_utf8(out).unwrap();
    assert!(text.split("\r\n").all(|l| l.len() <= FOLD_AT));
    assert_eq!(
        unfold(text.trim_start_matches("X-Long:").as_bytes()),
        "word ".repeat(40).trim_end().as_bytes()
    );
    assert_eq!(render(b"", &stamp(false)), None);
}
