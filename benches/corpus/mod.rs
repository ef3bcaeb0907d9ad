//! The benchmark corpus: real-world message shapes, all content written or
//! generated here (licence-clean). The fixtures of `tests/data/mime/`
//! (32 hand-written shapes: encoded words, RFC 2231 parameters, digests,
//! DSNs, S/MIME, calendar invites, bare LF, broken boundaries…) plus
//! messages generated below at realistic sizes: newsletters in
//! quoted-printable HTML, replies with long Received chains and DKIM
//! signatures, forwarded messages with attachments inside, and attachments
//! of several MB in base64. Generation is deterministic.

#![allow(dead_code)]

use std::fmt::Write as _;

/// A deterministic byte stream (xorshift), for attachment contents.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Base64 in 76-character lines, CRLF.
fn base64_lines(data: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(text.len() + text.len() / 76 * 2 + 2);
    for chunk in text.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str("\r\n");
    }
    out
}

const WORDS: &[&str] = &[
    "the",
    "quarterly",
    "report",
    "for",
    "review",
    "meeting",
    "Zürich",
    "schedule",
    "café",
    "déjà",
    "vu",
    "naïve",
    "Ångström",
    "coöperation",
    "invoice",
    "attached",
    "please",
    "find",
    "server",
    "maintenance",
    "window",
    "tonight",
    "between",
    "and",
    "ticket",
    "resolved",
];

fn prose(seed: u64, words: usize) -> String {
    let mut out = String::new();
    let mut x = seed | 1;
    let mut col = 0;
    for i in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = WORDS[(x % WORDS.len() as u64) as usize];
        if col + w.len() > 72 {
            out.push_str("\r\n");
            col = 0;
        } else if i > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(w);
        col += w.len();
    }
    out.push_str("\r\n");
    out
}

/// Quoted-printable of UTF-8 text (soft line breaks at 76).
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split("\r\n") {
        let mut col = 0;
        for &b in line.as_bytes() {
            let piece = if (b' '..=b'~').contains(&b) && b != b'=' {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if col + piece.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            out.push_str(&piece);
            col += piece.len();
        }
        out.push_str("\r\n");
    }
    out
}

fn received_chain(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let _ = write!(
            out,
            "Received: from mx{i}.mail.example.net (mx{i}.mail.example.net [192.0.2.{i}])\r\n\
             \tby relay{i}.example.org (Postfix) with ESMTPS id 4Xk{i:05}Qz\r\n\
             \tfor <alice@example.com>; Tue, 3 Nov 2026 10:{:02}:00 +0100 (CET)\r\n",
            i % 60
        );
    }
    out
}

const DKIM: &str = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n\
 s=selector1; h=From:Date:Subject:Message-ID:Content-Type:MIME-Version;\r\n\
 bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\
 b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR\r\n\
 8SXH3sDlsz9J5Ls9dbIDJzQNTSC1X2gVsWNfqDYbQO6ZoYJvjlUcu3V0PGGpAWJQi3Ij\r\n\
 G3LyF7UdKl0XiJ2i4DgVAZTOPHQlpQWAzSyTDtg=\r\n";

fn headers(i: usize, subject: &str, content_type: &str) -> String {
    format!(
        "{}{DKIM}Return-Path: <bounce-{i}@lists.example.org>\r\n\
         From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg{i}@example.org>\r\n\
         To: Alice Example <alice@example.com>, \"Bob, the Builder\" <bob@example.com>\r\n\
         Cc: team@example.com, =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>\r\n\
         Subject: {subject}\r\n\
         Date: Tue, 3 Nov 2026 10:{:02}:00 +0100\r\n\
         Message-ID: <{i}.{}@mail.example.org>\r\n\
         In-Reply-To: <{}.parent@mail.example.org>\r\n\
         References: <{}.root@mail.example.org> <{}.parent@mail.example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n",
        received_chain(6 + i % 8),
        i % 60,
        i * 7919,
        i,
        i,
        i
    )
}

/// A newsletter: multipart/alternative, text and quoted-printable HTML.
fn newsletter(i: usize) -> Vec<u8> {
    let text = prose(i as u64, 800 + 40 * i);
    let mut html = String::from("<html><body><table>");
    for row in 0..(40 + i) {
        let _ = write!(
            html,
            "<tr><td style=\"padding:4px;color:#333\">{}</td></tr>",
            prose((i * 100 + row) as u64, 30).trim_end()
        );
    }
    html.push_str("</table></body></html>");
    let mut m = headers(
        i,
        "=?UTF-8?B?TmV3c2xldHRlciDinIUgTm92ZW1iZXI=?=",
        "multipart/alternative; boundary=\"=_alt_0001\"",
    );
    let _ = write!(
        m,
        "\r\n--=_alt_0001\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\
         --=_alt_0001\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\
         --=_alt_0001--\r\n",
        quoted_printable(&text),
        quoted_printable(&html)
    );
    m.into_bytes()
}

/// A reply with an attachment: multipart/mixed, alternative inside, one
/// base64 attachment of `size` bytes with an RFC 2231 file name.
fn with_attachment(i: usize, size: usize, lf_only: bool) -> Vec<u8> {
    let mut m = headers(
        i,
        "Re: [TICKET-4711] Rechnung f=?UTF-8?Q?=C3=BC?=r Oktober",
        "multipart/mixed; boundary=\"----=_Part_77_1\"",
    );
    let _ = write!(
        m,
        "\r\nThis is a multi-part message in MIME format.\r\n\r\n\
         ------=_Part_77_1\r\nContent-Type: multipart/alternative; boundary=\"----=_Part_78_2\"\r\n\r\n\
         ------=_Part_78_2\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\
         ------=_Part_78_2\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\
         ------=_Part_78_2--\r\n\r\n\
         ------=_Part_77_1\r\nContent-Type: application/pdf;\r\n name*=UTF-8''Rechnung%20Oktober%202026.pdf\r\n\
         Content-Disposition: attachment;\r\n filename*0*=UTF-8''Rechnung%20Okt;\r\n filename*1*=ober%202026.pdf;\r\n size={size}\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\
         ------=_Part_77_1--\r\n",
        prose(i as u64, 120),
        quoted_printable(&format!("<p>{}</p>", prose(i as u64 + 1, 120))),
        base64_lines(&noise(i as u64, size))
    );
    if lf_only {
        m = m.replace("\r\n", "\n");
    }
    m.into_bytes()
}

/// A forwarded message: message/rfc822 whose body holds an attachment.
fn forwarded(i: usize, size: usize) -> Vec<u8> {
    let inner = with_attachment(i + 1000, size, false);
    let mut m = headers(
        i,
        "Fwd: Re: [TICKET-4711] Rechnung",
        "multipart/mixed; boundary=\"fwd-b\"",
    )
    .into_bytes();
    m.extend_from_slice(
        format!(
            "\r\n--fwd-b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{}\
             --fwd-b\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n",
            prose(i as u64, 60)
        )
        .as_bytes(),
    );
    m.extend_from_slice(&inner);
    m.extend_from_slice(b"\r\n--fwd-b--\r\n");
    m
}

/// The fixtures of `tests/data/mime/`.
pub fn fixtures() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| std::fs::read(p).expect("fixture"))
        .collect()
}

/// Everyday mail without large attachments: the fixtures, newsletters,
/// replies with small attachments (20–120 KB).
pub fn everyday() -> Vec<Vec<u8>> {
    let mut out = fixtures();
    for i in 0..12 {
        out.push(newsletter(i));
    }
    for i in 0..12 {
        out.push(with_attachment(i, 20_000 + 9_000 * i, i % 5 == 4));
    }
    for i in 0..4 {
        out.push(forwarded(i, 30_000));
    }
    out
}

/// Everyday mail plus messages with attachments of several MB, as a
/// mailbox holds them (a few large messages carry most of the bytes).
pub fn realistic() -> Vec<Vec<u8>> {
    let mut out = everyday();
    out.push(with_attachment(100, 2_500_000, false));
    out.push(with_attachment(101, 6_000_000, false));
    out.push(forwarded(102, 3_000_000));
    out.push(with_attachment(103, 1_200_000, true));
    out
}
