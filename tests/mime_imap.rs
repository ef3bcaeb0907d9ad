//! The IMAP MIME core (`graphgate::mime::imap`) over the fixture corpus in
//! `tests/data/mime/`:
//!
//! - every ENVELOPE, BODYSTRUCTURE and BODY, written as a FETCH response
//!   by imap-codec, reads back with imap-codec's decoder;
//! - RFC822.SIZE is the byte count, BODY[HEADER] + BODY[TEXT] is BODY[],
//!   every size in BODYSTRUCTURE is the length of that part's BODY[n] and
//!   every line count the number of line ends in it;
//! - a few fixtures pinned down item by item;
//! - and the reference comparison: each fixture is APPENDed to a Dovecot
//!   started for the test, and Dovecot's ENVELOPE, BODYSTRUCTURE, BODY
//!   and sections are compared with ours for the same bytes. Skipped (with
//!   the reason printed) when Dovecot is not installed, failed when CI is
//!   set and it is missing.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "support/dovecot.rs"]
mod dovecot;
mod support;

use dovecot::{Dovecot, dovecot_binary};
use graphgate::mime::imap::{Message, partial, section};
use imap_codec::ResponseCodec;
use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_types::body::{BodyStructure, SpecificFields};
use imap_types::core::{AString, NString, Vec1};
use imap_types::fetch::{MessageDataItem, Part, Section};
use imap_types::response::{Data, Response};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "the corpus has {} fixtures", names.len());
    names
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("fixture"))
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    fixtures()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .1
}

/// `items` as an untagged FETCH response on the wire.
fn fetch_wire(items: Vec<MessageDataItem<'static>>) -> Vec<u8> {
    let response = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::try_from(items).expect("at least one item"),
    });
    ResponseCodec::default().encode(&response).dump()
}

/// A FETCH response read back: its items.
fn decode_fetch(wire: &[u8]) -> Result<Vec<MessageDataItem<'static>>, String> {
    use imap_types::IntoStatic;
    match ResponseCodec::default().decode(wire) {
        Ok(([], Response::Data(Data::Fetch { items, .. }))) => {
            Ok(items.into_iter().map(|i| i.into_static()).collect())
        }
        Ok((rest, other)) => Err(format!(
            "not one FETCH response: {other:?}, {} bytes left",
            rest.len()
        )),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn part(path: &[u32]) -> Part {
    Part(
        Vec1::try_from(
            path.iter()
                .map(|&n| NonZeroU32::new(n).expect("part numbers start at 1"))
                .collect::<Vec<_>>(),
        )
        .expect("a part path has a number"),
    )
}

/// Every single part in `body` with its part number (RFC 3501 §6.4.5) and
/// whether it is text or message/rfc822 (then it has a line count).
fn leaves(body: &BodyStructure<'_>, path: Vec<u32>, out: &mut Vec<(Vec<u32>, u32, Option<u32>)>) {
    match body {
        BodyStructure::Multi { bodies, .. } => {
            for (i, b) in bodies.as_ref().iter().enumerate() {
                let mut p = path.clone();
                p.push(i as u32 + 1);
                leaves(b, p, out);
            }
        }
        BodyStructure::Single { body, .. } => {
            // A non-multipart message has one part, 1.
            let path = if path.is_empty() { vec![1] } else { path };
            let lines = match &body.specific {
                SpecificFields::Text {
                    number_of_lines, ..
                } => Some(*number_of_lines),
                SpecificFields::Message {
                    number_of_lines,
                    body_structure,
                    ..
                } => {
                    // The encapsulated message's parts are numbered under
                    // this one; a single part there is this one's part 1.
                    let mut inner = path.clone();
                    if !matches!(**body_structure, BodyStructure::Multi { .. }) {
                        inner.push(1);
                    }
                    leaves(body_structure, inner, out);
                    Some(*number_of_lines)
                }
                SpecificFields::Basic { .. } => None,
            };
            out.push((path, body.basic.size, lines));
        }
    }
}

#[test]
fn every_structure_reads_back_with_imap_codec() {
    for (name, msg) in fixtures() {
        let m = Message::new(&msg);
        let items = vec![
            MessageDataItem::Envelope(m.envelope()),
            MessageDataItem::BodyStructure(m.body_structure()),
            MessageDataItem::Body(m.body()),
            MessageDataItem::Rfc822Size(m.size()),
        ];
        let wire = fetch_wire(items.clone());
        let decoded =
            decode_fetch(&wire).unwrap_or_else(|e| panic!("{name}: does not read back: {e}"));
        // Same wire form again: nothing was lost or changed.
        assert_eq!(
            String::from_utf8_lossy(&fetch_wire(decoded)),
            String::from_utf8_lossy(&wire),
            "{name}"
        );
        // The free functions agree with the once-parsed message.
        assert_eq!(
            graphgate::mime::imap::envelope(&msg),
            m.envelope(),
            "{name}"
        );
        assert_eq!(
            graphgate::mime::imap::body_structure(&msg),
            m.body_structure(),
            "{name}"
        );
    }
}

#[test]
fn size_is_the_byte_count_and_header_plus_text_is_the_message() {
    for (name, msg) in fixtures() {
        let m = Message::new(&msg);
        assert_eq!(m.size() as usize, msg.len(), "{name}");
        assert_eq!(graphgate::mime::imap::rfc822_size(&msg) as usize, msg.len());
        let header = section(&msg, Some(&Section::Header(None)));
        let text = section(&msg, Some(&Section::Text(None)));
        assert_eq!([&*header, &*text].concat(), msg, "{name}");
        assert!(
            matches!(header, Cow::Borrowed(_)),
            "{name}: HEADER is a slice"
        );
        assert_eq!(&*section(&msg, None), &msg[..], "{name}");
        assert_eq!(
            &*m.section(Some(&Section::Header(None))),
            &*header,
            "{name}"
        );
    }
}

/// Every size in BODYSTRUCTURE is the length of that part's BODY[n], every
/// line count its number of LFs, and a part's MIME header lies before its
/// body.
fn check_sizes(name: &str, msg: &[u8]) {
    let m = Message::new(msg);
    let mut parts = Vec::new();
    leaves(&m.body_structure(), Vec::new(), &mut parts);
    assert!(!parts.is_empty(), "{name}");
    for (path, size, lines) in parts {
        let bytes = m.section(Some(&Section::Part(part(&path))));
        assert_eq!(bytes.len(), size as usize, "{name}: size of part {path:?}");
        if let Some(lines) = lines {
            let lf = bytes.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(lf, lines as usize, "{name}: lines of part {path:?}");
        }
        let mime = m.section(Some(&Section::Mime(part(&path))));
        if !mime.is_empty() && !bytes.is_empty() {
            let start = mime.as_ptr() as usize - msg.as_ptr() as usize;
            let body = bytes.as_ptr() as usize - msg.as_ptr() as usize;
            assert!(start + mime.len() <= body, "{name}: {path:?}");
        }
    }
}

#[test]
fn sizes_and_line_counts_describe_the_sections() {
    for (name, msg) in fixtures() {
        check_sizes(&name, &msg);
    }
}

fn canonical(items: Vec<MessageDataItem<'static>>) -> String {
    literals_quoted(&fetch_wire(items))
}

fn show(n: &NString<'_>) -> Option<String> {
    n.0.as_ref()
        .map(|s| String::from_utf8_lossy(s.as_ref()).into_owned())
}

#[test]
fn envelope_follows_rfc3501() {
    let e = graphgate::mime::imap::envelope(&fixture("11-group-addresses.eml"));
    // Groups: a start marker, the members, an end marker.
    assert_eq!(
        canonical(vec![MessageDataItem::Envelope(e)]),
        "* 1 FETCH (ENVELOPE (\"Fri, 13 Mar 2026 10:00:00 +0000\" \"Group syntax\" \
         ((\"Ivan\" NIL \"ivan\" \"example.com\")) ((\"Ivan\" NIL \"ivan\" \"example.com\")) \
         ((NIL NIL \"Support\" NIL)(NIL NIL \"help\" \"example.com\")(NIL NIL NIL NIL)) \
         ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) \
         ((NIL NIL \"Project Team\" NIL)(NIL NIL \"judy\" \"example.com\")(\"Karl K.\" NIL \"karl\" \"example.com\")(NIL NIL NIL NIL)(NIL NIL \"mallory\" \"example.net\")) \
         ((NIL NIL \"Auditors\" NIL)(NIL NIL NIL NIL)) NIL \"<group.1@example.com>\"))\r\n"
    );
    // Absent fields are NIL; sender and reply-to follow from (NIL too).
    let e = graphgate::mime::imap::envelope(&fixture("12-missing-date-from-msgid.eml"));
    assert_eq!(show(&e.date), None);
    assert_eq!(show(&e.message_id), None);
    assert!(e.from.is_empty() && e.sender.is_empty() && e.reply_to.is_empty());
    // Encoded words stay as sent; folding is undone.
    let e = graphgate::mime::imap::envelope(&fixture("03-encoded-words.eml"));
    assert_eq!(
        show(&e.subject).as_deref(),
        Some("=?UTF-8?B?UsOpdW5pb24gZGUgbMOpcXVpcGU=?= =?UTF-8?Q?_=E2=80=94_ordre_du_jour?=")
    );
    assert_eq!(
        show(&e.to[0].name).as_deref(),
        Some("=?ISO-8859-1?Q?Andr=E9?=")
    );
    assert_eq!(show(&e.in_reply_to).as_deref(), Some("<ew.41@example.fr>"));
    let e = graphgate::mime::imap::envelope(&fixture("17-long-folded-headers.eml"));
    assert_eq!(e.to.len(), 25);
    assert_eq!(
        show(&e.date).as_deref(),
        Some("Wed, 18 Mar 2026 10:00:00 +0000")
    );
    // Unfolding removes the line break only: the folded value keeps the
    // blank that started its continuation line (Dovecot agrees).
    assert_eq!(
        show(&e.message_id).as_deref(),
        Some(" <very-long-message-id.20260318100000.abcdefghijklmnopqrstuvwxyz@example.com>")
    );
    // 8-bit header text travels as it is (as a literal).
    let e = graphgate::mime::imap::envelope(&fixture("02-utf8-8bit.eml"));
    assert_eq!(show(&e.subject).as_deref(), Some("Grüße aus München"));
}

#[test]
fn bodystructure_follows_rfc3501() {
    let bs = |name: &str| {
        canonical(vec![MessageDataItem::BodyStructure(
            graphgate::mime::imap::body_structure(&fixture(name)),
        )])
    };
    // Defaults: charset us-ascii for text, 7bit; MD5 NIL.
    assert_eq!(
        bs("12-missing-date-from-msgid.eml"),
        "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 29 1 NIL NIL NIL NIL))\r\n"
    );
    // Multipart: parts, subtype, then its parameters (the boundary).
    let s = bs("06-alternative.eml");
    assert!(
        s.ends_with("\"alternative\" (\"boundary\" \"----=_Part_1_2026\") NIL NIL NIL))\r\n"),
        "{s}"
    );
    // RFC 2231 continuations merged; the extended value kept encoded.
    let s = bs("18-rfc2231-params.eml");
    assert!(
        s.contains("(\"name\" \"a very long file name that continues on a second line.bin\")"),
        "{s}"
    );
    assert!(
        s.contains(
            "(\"attachment\" (\"filename*\" \"UTF-8''%E2%82%AC%20rates%20%C3%BCber.txt 100%25\"))"
        ),
        "{s}"
    );
    // Extension data: disposition, languages, location, MD5 as sent.
    let s = bs("27-content-extension-fields.eml");
    assert!(
        s.contains("\"<part1@example.com>\" \"The greeting\" \"7bit\" 6 0 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" NIL) (\"en-GB\" \"fr\") \"http://example.com/greeting.txt\""),
        "{s}"
    );
    // A forwarded message: its envelope, structure and line count.
    let s = bs("09-forwarded-rfc822.eml");
    assert!(
        s.contains("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" "),
        "{s}"
    );
    assert!(
        s.contains("\"Budget 2026\" ((\"Heidi\" NIL \"heidi\" \"example.com\"))"),
        "{s}"
    );
    // Parts nested deeper than client parsers read are opaque data.
    let s = bs("25-deep-nesting.eml");
    assert!(
        s.contains("\"application\" \"octet-stream\" (\"boundary\" \"level-06\")"),
        "{s}"
    );
}

#[test]
fn sections_of_a_forwarded_message() {
    let msg = fixture("09-forwarded-rfc822.eml");
    let m = Message::new(&msg);
    let get = |s: Section<'static>| m.section(Some(&s)).into_owned();
    let inner = get(Section::Part(part(&[2])));
    assert!(inner.starts_with(b"Date: Tue, 10 Mar 2026 09:00:00 +0100\r\n"));
    assert!(inner.ends_with(b"--fwd-inner--\r\n"));
    assert_eq!(
        [
            get(Section::Header(Some(part(&[2])))),
            get(Section::Text(Some(part(&[2]))))
        ]
        .concat(),
        inner
    );
    assert_eq!(get(Section::Part(part(&[2, 1]))), b"Draft budget attached.");
    assert_eq!(
        get(Section::Part(part(&[2, 2]))),
        b"item,amount\r\nrent,12000\r\nstaff,85000"
    );
    assert_eq!(
        get(Section::Mime(part(&[2, 2]))),
        b"Content-Type: text/csv; name=budget.csv\r\nContent-Disposition: attachment; filename=budget.csv\r\n\r\n"
    );
    assert_eq!(
        get(Section::HeaderFields(
            Some(part(&[2])),
            Vec1::try_from(vec![AString::try_from("subject").unwrap()]).unwrap()
        )),
        b"Subject: Budget 2026\r\n\r\n"
    );
    assert_eq!(get(Section::Part(part(&[3]))), b"");
    assert_eq!(partial(&inner, 6, 3), b"Tue");
}

/// A fuzzer-found input stays a regression test (see
/// fuzz/fuzz_targets/mime_imap.rs).
#[test]
fn hostile_inputs_stay_bounded_and_parseable() {
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n".to_vec(),
        b"--".to_vec(),
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n----\r\n".to_vec(),
        b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n".repeat(200),
        b"From: \"\\\x00\r\nTo: (((((\r\nCc: <@\r\nSubject: \x00\xff\r\n\r\n".to_vec(),
    ];
    let mut deep = Vec::new();
    for i in 0..300 {
        deep.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=x{i:04}\r\n\r\n--x{i:04}\r\n")
                .as_bytes(),
        );
    }
    inputs.push(deep);
    let mut wide = b"Content-Type: multipart/mixed; boundary=w\r\n\r\n".to_vec();
    wide.extend_from_slice(&b"--w\r\n\r\n".repeat(20_000));
    inputs.push(wide);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mime_imap");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("regression-") {
                inputs.push(std::fs::read(e.path()).expect("seed"));
            }
        }
    }
    for msg in inputs {
        check_sizes("hostile input", &msg);
        let m = Message::new(&msg);
        let wire = fetch_wire(vec![
            MessageDataItem::Envelope(m.envelope()),
            MessageDataItem::BodyStructure(m.body_structure()),
            MessageDataItem::Body(m.body()),
        ]);
        decode_fetch(&wire).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&wire)));
        for p in [&[1u32][..], &[1, 1], &[2, 1, 1]] {
            let _ = m.section(Some(&Section::Part(part(p))));
            let _ = m.section(Some(&Section::Mime(part(p))));
            let _ = m.section(Some(&Section::Text(Some(part(p)))));
        }
    }
}

/// Malformed boundaries, huge headers and bad encodings: served without
/// panic, the answer re-parses, and the parts that are there can still be
/// fetched by number with the bytes they hold.
#[test]
fn malformed_mime_is_served_and_its_parts_stay_addressable() {
    let get = |m: &Message<'_>, p: &[u32]| -> Vec<u8> {
        m.section(Some(&Section::Part(part(p)))).into_owned()
    };
    let serve = |msg: &[u8]| {
        check_sizes("malformed", msg);
        let m = Message::new(msg);
        let wire = fetch_wire(vec![
            MessageDataItem::Envelope(m.envelope()),
            MessageDataItem::BodyStructure(m.body_structure()),
        ]);
        decode_fetch(&wire).unwrap_or_else(|e| panic!("{e}"));
    };

    // A boundary that is never closed, a part whose delimiter has trailing
    // junk, and a delimiter of a boundary nobody declared.
    let msg = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
        --b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b1 junk after\r\n\
        Content-Type: text/plain\r\n\r\nsecond\r\n--b2\r\nstill second\r\n";
    serve(msg);
    let m = Message::new(msg);
    assert_eq!(get(&m, &[1]), b"first");
    assert_eq!(get(&m, &[2]), b"second\r\n--b2\r\nstill second\r\n");

    // Huge headers: one field of 4 MB, and 50,000 small fields.
    let mut msg = b"Subject: ".to_vec();
    msg.extend(std::iter::repeat_n(b'x', 4 << 20));
    msg.extend_from_slice(
        b"\r\nContent-Type: multipart/mixed; boundary=h\r\nMIME-Version: 1.0\r\n",
    );
    for i in 0..50_000 {
        msg.extend_from_slice(format!("X-Field-{i}: {i}\r\n").as_bytes());
    }
    msg.extend_from_slice(
        b"\r\n--h\r\nContent-Type: text/plain\r\n\r\nafter the headers\r\n--h--\r\n",
    );
    serve(&msg);
    let m = Message::new(&msg);
    assert_eq!(get(&m, &[1]), b"after the headers");
    let envelope = m.envelope();
    assert_eq!(
        envelope.subject.0.as_ref().map(|s| s.as_ref().len()),
        Some(4 << 20),
        "the subject is served whole"
    );

    // Bad encodings: base64 with junk, quoted-printable with broken
    // escapes, encoded words in unknown or wrong charsets, 8-bit garbage
    // in headers. The bytes are served as they are.
    let msg = b"MIME-Version: 1.0\r\nSubject: =?x-unknown?B?////?= =?utf-8?Q?=FF=FE?= =?utf-8?B?***?=\r\n\
        From: =?iso-8859-1?q?J=F6rg?= <\xff\xfe@example.com>\r\n\
        Content-Type: multipart/mixed; boundary=e\r\n\r\n\
        --e\r\nContent-Type: text/plain; charset=\"\xff\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        !!!not base64!!!\r\n\
        --e\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
        =Z9 =\r\n=\r\n\
        --e\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-unheard-of\r\n\r\n\
        \x00\x01\x02\r\n--e--\r\n";
    serve(msg);
    let m = Message::new(msg);
    assert_eq!(get(&m, &[1]), b"!!!not base64!!!");
    assert_eq!(get(&m, &[2]), b"=Z9 =\r\n=");
    assert_eq!(get(&m, &[3]), b"\x00\x01\x02");

    // Nested past the limit (boundaries that are not prefixes of one
    // another: a delimiter line only has to start with the boundary):
    // the deepest container is one opaque part,
    // still fetchable by its number, whose bytes hold what is inside.
    let mut deep = b"MIME-Version: 1.0\r\n".to_vec();
    for i in 0..12 {
        deep.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=d{i:02}z\r\n\r\n--d{i:02}z\r\n")
                .as_bytes(),
        );
    }
    deep.extend_from_slice(b"Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for i in (0..12).rev() {
        deep.extend_from_slice(format!("--d{i:02}z--\r\n").as_bytes());
    }
    serve(&deep);
    let m = Message::new(&deep);
    let opaque = get(&m, &[1, 1, 1, 1, 1, 1]);
    assert!(
        opaque.windows(9).any(|w| w == b"innermost"),
        "{}",
        String::from_utf8_lossy(&opaque)
    );
}

// ---------------------------------------------------------------------
// The reference comparison against Dovecot.
// ---------------------------------------------------------------------

/// Differences from Dovecot that are ours on purpose, with the reason.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    ("25-deep-nesting.eml", "BODYSTRUCTURE", DEEP),
    ("25-deep-nesting.eml", "BODY", DEEP),
    ("25-deep-nesting.eml", "BODY.PEEK[1.1.1.1.1.1]", DEEP),
];

const DEEP: &str = "nine nested multiparts: Dovecot reads 100 levels and \
     describes them all; we enter multiparts and messages 5 levels deep and \
     give a deeper one as one application/octet-stream part (so that clients \
     can parse the answer: imap-codec's own decoder cannot read Dovecot's, \
     recursion limit), which also makes part 1.1.1.1.1.1 that opaque part, \
     ending before the line end of the next outer delimiter, where Dovecot's \
     multipart 1.1.1.1.1.1 ends after its own close delimiter line.";

fn known(name: &str, item: &str) -> bool {
    KNOWN_DIFFERENCES
        .iter()
        .any(|(n, i, _)| *n == name && *i == item)
}

/// Rewrite every IMAP literal in `wire` as a quoted string, so that the
/// choice between the two forms (which is the encoder's) does not count.
fn literals_quoted(wire: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    let mut quoted = false;
    while i < wire.len() {
        let b = wire[i];
        if quoted {
            out.push(b);
            if b == b'\\' && i + 1 < wire.len() {
                out.push(wire[i + 1]);
                i += 1;
            } else if b == b'"' {
                quoted = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            quoted = true;
            out.push(b);
            i += 1;
            continue;
        }
        if b == b'{'
            && let Some(close) = wire[i..].iter().position(|&c| c == b'}')
            && let Ok(n) = std::str::from_utf8(&wire[i + 1..i + close])
                .unwrap_or("x")
                .trim_end_matches('+')
                .parse::<usize>()
            && wire[i + close + 1..].starts_with(b"\r\n")
        {
            let start = i + close + 3;
            let data = &wire[start..(start + n).min(wire.len())];
            out.push(b'"');
            for &c in data {
                if c == b'"' || c == b'\\' {
                    out.push(b'\\');
                }
                out.push(c);
            }
            out.push(b'"');
            i = start + n;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain IMAP client: commands out, responses (literals included) in.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut c = Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
            tag: 0,
        };
        let greeting = c.response();
        assert!(
            greeting.starts_with(b"* OK"),
            "{}",
            String::from_utf8_lossy(&greeting)
        );
        c
    }

    /// One response: a line, with any literals it announces.
    fn response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            let n = self.reader.read_until(b'\n', &mut out).expect("read");
            assert!(n > 0, "connection closed");
            let line = &out[start..];
            let Some(open) = line.iter().rposition(|&b| b == b'{') else {
                return out;
            };
            let Some(len) = line[open + 1..]
                .strip_suffix(b"}\r\n")
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<usize>().ok())
            else {
                return out;
            };
            let mut data = vec![0; len];
            self.reader.read_exact(&mut data).expect("literal");
            out.extend_from_slice(&data);
        }
    }

    /// Send a command (with an optional LITERAL+ argument at its end);
    /// returns the untagged responses and the tagged one.
    fn run(&mut self, command: &str, literal: Option<&[u8]>) -> (Vec<Vec<u8>>, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let mut wire = format!("{tag} {command}").into_bytes();
        if let Some(data) = literal {
            wire.extend_from_slice(format!(" {{{}+}}\r\n", data.len()).as_bytes());
            wire.extend_from_slice(data);
        }
        wire.extend_from_slice(b"\r\n");
        self.writer.write_all(&wire).expect("write");
        let mut untagged = Vec::new();
        loop {
            let r = self.response();
            if r.starts_with(format!("{tag} ").as_bytes()) {
                let done = String::from_utf8_lossy(&r).trim_end().to_string();
                assert!(done.starts_with(&format!("{tag} OK")), "{command}: {done}");
                return (untagged, done);
            }
            untagged.push(r);
        }
    }

    /// UID FETCH of one message: the items of its FETCH response.
    fn fetch(&mut self, uid: u32, items: &str) -> Result<Vec<MessageDataItem<'static>>, String> {
        let (untagged, _) = self.run(&format!("UID FETCH {uid} {items}"), None);
        let fetch = untagged
            .into_iter()
            .find(|r| r.windows(7).any(|w| w == b" FETCH "))
            .ok_or("no FETCH response")?;
        let items = decode_fetch(&fetch)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&fetch)))?;
        // UID FETCH adds the UID; it is not compared.
        Ok(items
            .into_iter()
            .filter(|i| !matches!(i, MessageDataItem::Uid(_)))
            .collect())
    }
}

/// What to ask Dovecot for, for a message whose structure (ours) is `m`.
fn sections_to_compare(m: &Message<'_>) -> Vec<String> {
    let mut out = vec![
        "HEADER".to_string(),
        "TEXT".to_string(),
        "HEADER.FIELDS (FROM SUBJECT X-NOTHERE)".to_string(),
        "HEADER.FIELDS.NOT (RECEIVED SUBJECT)".to_string(),
        "1".to_string(),
        "1.MIME".to_string(),
        "1.1".to_string(),
        "7".to_string(),
        "1.HEADER".to_string(),
    ];
    let mut parts = Vec::new();
    leaves(&m.body_structure(), Vec::new(), &mut parts);
    for (path, _, lines) in parts {
        let p: Vec<String> = path.iter().map(u32::to_string).collect();
        let p = p.join(".");
        out.push(p.clone());
        out.push(format!("{p}.MIME"));
        if lines.is_some() {
            // Harmless on text parts (empty), the point on messages.
            out.push(format!("{p}.HEADER"));
            out.push(format!("{p}.TEXT"));
            out.push(format!("{p}.HEADER.FIELDS (SUBJECT DATE)"));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn same_answers_as_dovecot() {
    let Some(binary) = dovecot_binary() else {
        let reason = "dovecot is not installed (Debian package dovecot-imapd; \
                      scripts/test installs it)";
        assert!(std::env::var_os("CI").is_none(), "CI without {reason}");
        println!("skipped: {reason}");
        return;
    };
    let dovecot = Dovecot::start(&binary, &[]);
    let mut c = Client::connect(dovecot.port);
    c.run("LOGIN u x", None);
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut compared_items = 0;
    for (name, msg) in fixtures() {
        let (_, done) = c.run("APPEND INBOX", Some(&msg));
        let uid: u32 = done
            .split("APPENDUID ")
            .nth(1)
            .and_then(|s| s.split([' ', ']']).nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no APPENDUID in {done}"));
        if compared == 0 {
            c.run("SELECT INBOX", None);
        }
        compared += 1;

        // The bytes Dovecot serves (line ends made CRLF) are what both
        // sides describe.
        let served = match c.fetch(uid, "(BODY.PEEK[])").map(|i| i.into_iter().next()) {
            Ok(Some(MessageDataItem::BodyExt {
                data: NString(Some(s)),
                ..
            })) => s.as_ref().to_vec(),
            other => panic!("{name}: BODY[] {other:?}"),
        };
        if msg.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r') && !msg.contains(&0) {
            assert_eq!(served, msg, "{name}: Dovecot serves the appended bytes");
        }
        let m = Message::new(&served);

        let ours = |item: &str| -> Vec<MessageDataItem<'static>> {
            match item {
                "ENVELOPE" => vec![MessageDataItem::Envelope(m.envelope())],
                "BODYSTRUCTURE" => vec![MessageDataItem::BodyStructure(m.body_structure())],
                "BODY" => vec![MessageDataItem::Body(m.body())],
                "RFC822.SIZE" => vec![MessageDataItem::Rfc822Size(m.size())],
                _ => unreachable!(),
            }
        };
        for item in ["ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE"] {
            let theirs = c.fetch(uid, &format!("({item})"));
            compared_items += 1;
            if known(&name, item) {
                // Keep the list honest: the difference must still be there.
                let mine = canonical(ours(item));
                assert!(
                    theirs.map_or(true, |t| canonical(t) != mine),
                    "{name} {item}: no longer differs from Dovecot"
                );
                continue;
            }
            let theirs = match theirs {
                Ok(items) => canonical(items),
                Err(e) => {
                    failures.push(format!("{name} {item}: Dovecot's answer unreadable: {e}"));
                    continue;
                }
            };
            let mine = canonical(ours(item));
            if theirs != mine {
                failures.push(format!(
                    "{name} {item}:\n  dovecot: {theirs}  ours:    {mine}"
                ));
            }
        }

        for s in sections_to_compare(&m) {
            for (request, range) in [
                (format!("BODY.PEEK[{s}]"), None),
                (format!("BODY.PEEK[{s}]<2.9>"), Some((2, 9))),
            ] {
                if range.is_some() && s != "TEXT" && s != "1" {
                    continue;
                }
                let items = match c.fetch(uid, &format!("({request})")) {
                    Ok(items) => items,
                    Err(e) => {
                        failures.push(format!("{name} {request}: {e}"));
                        continue;
                    }
                };
                let Some(MessageDataItem::BodyExt {
                    section: sec, data, ..
                }) = items.into_iter().next()
                else {
                    failures.push(format!("{name} {request}: no BODY[] item"));
                    continue;
                };
                compared_items += 1;
                let theirs = data.0.map(|s| s.as_ref().to_vec()).unwrap_or_default();
                let whole = m.section(sec.as_ref());
                let mine = match range {
                    Some((start, len)) => partial(&whole, start, len).to_vec(),
                    None => whole.into_owned(),
                };
                if known(&name, &request) {
                    assert_ne!(
                        theirs, mine,
                        "{name} {request}: no longer differs from Dovecot"
                    );
                    continue;
                }
                if theirs != mine {
                    failures.push(format!(
                        "{name} {request}:\n  dovecot: {:?}\n  ours:    {:?}",
                        String::from_utf8_lossy(&theirs),
                        String::from_utf8_lossy(&mine)
                    ));
                }
            }
        }
    }
    for (name, item, why) in KNOWN_DIFFERENCES {
        println!("known difference, {name} {item}: {why}");
    }
    println!("compared {compared_items} FETCH items of {compared} fixtures with Dovecot");
    assert!(
        failures.is_empty(),
        "{} differences from Dovecot:\n{}\n(dovecot log:\n{})",
        failures.len(),
        failures.join("\n"),
        dovecot.log()
    );
}

/// `GET url` with curl: the body.
fn get(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", url])
        .output()
        .expect("curl is installed (scripts/test installs it)");
    assert!(out.status.success(), "GET {url}: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn graph_requests(sim: &str) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&get(&format!("{sim}/_sim/stats"))).expect("stats JSON");
    stats["graph_requests"].as_u64().expect("graph_requests")
}

/// Rows of the gateway's store with a computed structure kept.
fn structures_kept(data_dir: &Path) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        graphgate::store::Store::path_in(data_dir),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the store");
    db.query_row(
        "SELECT count(*) FROM cache WHERE structure IS NOT NULL",
        [],
        |r| r.get(0),
    )
    .expect("count")
}

/// The warm FETCH path (graphgate's `imap::structures`): once a FETCH
/// has computed the messages' structures, the same FETCH is answered from
/// the store — byte for byte what the full path wrote, without the cached
/// files and without Graph.
#[test]
fn stored_structures_answer_as_the_full_path_did() {
    let demo = support::demo();
    let port: u16 = demo.imap.rsplit(':').next().unwrap().parse().unwrap();
    let mut c = Client::connect(port);
    c.run("LOGIN alice@example.com alice", None);
    c.run("CREATE Structures", None);
    let mut appended = 0;
    for (_, msg) in fixtures() {
        // APPEND stores up to about 3 MB (APPENDLIMIT).
        if msg.len() < 2_000_000 {
            c.run("APPEND Structures", Some(&msg));
            appended += 1;
        }
    }
    c.run("SELECT Structures", None);
    let commands = [
        "FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)",
        "UID FETCH 1:* (BODY INTERNALDATE ENVELOPE FLAGS)",
        "FETCH 1:* (RFC822.SIZE UID)",
        "FETCH 2:4 (FLAGS UID INTERNALDATE)",
    ];
    let full: Vec<Vec<Vec<u8>>> = commands.iter().map(|cmd| c.run(cmd, None).0).collect();
    assert_eq!(full[0].len(), appended);

    // The structures are stored off the answer's path: wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while structures_kept(demo.dir.path()) < appended as i64 {
        assert!(
            std::time::Instant::now() < deadline,
            "structures kept: {} of {appended}",
            structures_kept(demo.dir.path())
        );
        std::thread::yield_now();
    }
    // Without the message files the full path would fetch them again.
    let cache = demo.dir.path().join("cache");
    for entry in std::fs::read_dir(&cache).expect("cache directory") {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir).unwrap() {
                std::fs::remove_file(file.unwrap().path()).unwrap();
            }
        }
    }
    let before = graph_requests(&demo.sim);
    for (command, first) in commands.iter().zip(&full) {
        let again = c.run(command, None).0;
        assert_eq!(again.len(), first.len(), "{command}");
        for (a, b) in again.iter().zip(first) {
            assert_eq!(
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b),
                "{command}"
            );
        }
    }
    assert_eq!(graph_requests(&demo.sim), before, "answered without Graph");

    // A body section needs the bytes: an APPENDed message's are the
    // gateway's own (mailbox/appended.rs), linked back without Graph.
    let (bodies, _) = c.run("FETCH 1 (BODY.PEEK[] RFC822.SIZE)", None);
    assert_eq!(bodies.len(), 1);
    assert_eq!(graph_requests(&demo.sim), before);
}
