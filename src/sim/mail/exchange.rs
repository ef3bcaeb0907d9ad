//! Exchange Online's MIME re-rendering, for `SimConfig::exchange_mime`
//! (on by default; `--exact-mime` turns it off).
//!
//! Exchange keeps an item as properties and generates MIME when `$value`
//! is asked for, so the bytes that come back need not be the bytes that
//! were sent or created (graph-facts.md, "MIME fidelity"; Graph's "Get MIME
//! content of a message": "Outlook does not save messages in MIME
//! format"). When the option is on, every item the simulator makes —
//! sendMail deliveries and Sent Items copies, NDRs, drafts created from
//! MIME, items created from JSON (the APPEND route), copies — is stored in
//! the shape Exchange generates: Exchange's own headers (`Received` for a
//! transport hop, `Thread-Topic`/`Thread-Index`, `Accept-Language`,
//! `Content-Language`, `X-MS-Has-Attach`, `X-MS-Exchange-Organization-*`,
//! `X-MS-TNEF-Correlator`, `msip_labels`) in Exchange's order with
//! `MIME-Version` last, headers regenerated from the decoded values (RFC
//! 2047 encoded words, `Date` in UTC) and folded at 78 columns with
//! continuation lines of their own, new boundaries `_000_…_` (alternative),
//! `_004_…_` (mixed), `_006_…_` (related) taken from the Message-ID, text
//! parts in quoted-printable, everything else in base64 wrapped at 76
//! columns, CRLF line ends. Decoded content survives: subject, addresses,
//! text, attachment bytes. The bytes are rendered once, when the item is
//! stored, so `$value` is stable for the item's life. Mail arriving from
//! the Internet (`/_sim/mail/deliver`, the demo seed) is stored as it came,
//! as graph-facts.md says Exchange mostly does.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine;
use chrono::{DateTime, Utc};
use mail_parser::{
    Addr, Address, HeaderName, Message as Parsed, MessagePart, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};

use super::SimState;
use super::model::Message;

/// Nesting (multiparts and attached messages) followed; deeper content is
/// kept as it is.
const MAX_DEPTH: usize = 16;
/// Parts rendered per message; more and the message is stored unchanged.
const MAX_PARTS: usize = 2_000;
/// Where header lines are folded.
const FOLD_AT: usize = 78;
/// The host names in Exchange's trace headers.
const MAILBOX_SERVER: &str = "SIM0PR01MB0001.simprd01.prod.outlook.com";
const FRONTEND_SERVER: &str = "SIM0PR01CA0002.simprd01.prod.outlook.com";

/// What the store knows of an item beyond its bytes.
pub struct Stamp<'a> {
    /// The item's `internetMessageId` (with angle brackets).
    pub message_id: &'a str,
    /// The time for a missing or unreadable `Date`.
    pub sent: DateTime<Utc>,
    /// When the item arrived through transport (a `Received` header), if
    /// it did.
    pub hop: Option<DateTime<Utc>>,
}

/// Store `m` the way Exchange would when the simulator re-renders MIME
/// (`SimConfig::exchange_mime`); `arrived` when it came through transport
/// (a delivery) rather than being created in place.
pub(super) fn store_as_exchange(state: &SimState, m: &mut Message, arrived: bool) {
    if !state.config().exchange_mime {
        return;
    }
    let stamp = Stamp {
        message_id: &m.internet_message_id,
        sent: m.sent,
        hop: arrived.then_some(m.received),
    };
    if let Some(rendered) = render(&m.mime, &stamp) {
        m.mime = rendered;
    }
}

/// The MIME Exchange would generate for `mime`, or `None` when it cannot
/// be parsed (the caller keeps the bytes).
pub fn render(mime: &[u8], stamp: &Stamp<'_>) -> Option<Vec<u8>> {
    catch_unwind(AssertUnwindSafe(|| {
        let parsed = mail_parser::MessageParser::default().parse(mime)?;
        let mut ctx = Context {
            key: boundary_key(stamp.message_id),
            used: HashSet::new(),
            parts: 0,
            created: stamp.sent,
        };
        render_message(&parsed, Some(stamp), &mut ctx, 0)
    }))
    .ok()
    .flatten()
}

struct Context {
    /// Boundaries are made of this (Exchange uses the Message-ID).
    key: String,
    used: HashSet<String>,
    parts: usize,
    /// `creation-date` of attachments.
    created: DateTime<Utc>,
}

impl Context {
    fn boundary(&mut self, subtype: &str, children: &[Rendered]) -> String {
        let prefix = match subtype {
            "alternative" => "_000_",
            "mixed" => "_004_",
            "related" => "_006_",
            _ => "_007_",
        };
        let mut n = 0u32;
        loop {
            let candidate = match n {
                0 => format!("{prefix}{}_", self.key),
                n => format!("{prefix}{}{n}_", self.key),
            };
            let delimiter = format!("--{candidate}");
            let clash = children.iter().any(|c| {
                find(&c.head, delimiter.as_bytes()).is_some()
                    || find(&c.body, delimiter.as_bytes()).is_some()
            });
            if !clash && !self.used.contains(&candidate) {
                self.used.insert(candidate.clone());
                return candidate;
            }
            n += 1;
        }
    }
}

/// Letters and digits of a Message-ID, as Exchange builds boundaries.
fn boundary_key(message_id: &str) -> String {
    let key: String = message_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(50)
        .collect();
    if key.is_empty() { "sim".into() } else { key }
}

/// A rendered part: its header lines (each ending in CRLF) and its body.
struct Rendered {
    head: Vec<u8>,
    body: Vec<u8>,
}

#[derive(PartialEq)]
enum Place {
    /// Trace headers (kept, at the top).
    Trace,
    /// Regenerated from the decoded message.
    Regenerated,
    /// Kept after Message-ID.
    Threading,
    /// Everything else, kept after Exchange's own headers.
    Other,
}

fn place(name: &HeaderName<'_>) -> Place {
    use HeaderName as H;
    match name {
        H::Received
        | H::ReturnPath
        | H::AuthenticationResults
        | H::ArcAuthenticationResults
        | H::ArcMessageSignature
        | H::ArcSeal
        | H::DkimSignature
        | H::ReceivedSpf => Place::Trace,
        H::From
        | H::Sender
        | H::To
        | H::Cc
        | H::Bcc
        | H::ReplyTo
        | H::Subject
        | H::Date
        | H::MessageId
        | H::MimeVersion
        | H::ContentType
        | H::ContentTransferEncoding
        | H::ContentDisposition
        | H::ContentId
        | H::ContentDescription
        | H::ContentLanguage
        | H::ContentLocation
        | H::AcceptLanguage => Place::Regenerated,
        H::References | H::InReplyTo => Place::Threading,
        H::Other(other) => {
            let lower = other.to_ascii_lowercase();
            if lower.starts_with("x-ms-exchange-organization-")
                || matches!(
                    lower.as_str(),
                    "x-ms-has-attach"
                        | "x-ms-tnef-correlator"
                        | "msip_labels"
                        | "thread-topic"
                        | "thread-index"
                )
            {
                Place::Regenerated
            } else {
                Place::Other
            }
        }
        _ => Place::Other,
    }
}

/// A header's field name as written and its unfolded raw value.
fn raw_field(msg: &Parsed<'_>, h: &mail_parser::Header<'_>) -> (String, Vec<u8>) {
    let raw = msg.raw_message.as_ref();
    let name = match &h.name {
        HeaderName::Other(n) => n.to_string(),
        known => known.as_str().to_string(),
    };
    let value = raw
        .get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default();
    (name, unfold(value))
}

/// Remove folding (CRLF before whitespace) and the line end; stray line
/// breaks become spaces.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' | b'\n' => {
                let next = value.get(i + 1).copied();
                if value[i] == b'\r' && next == Some(b'\n') {
                    i += 1;
                }
                let after = value.get(i + 1).copied();
                if after.is_some() && !matches!(after, Some(b' ' | b'\t')) {
                    out.push(b' ');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    let start = out
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    out[start..end.max(start)].to_vec()
}

/// `Name: value` folded at [`FOLD_AT`] before whitespace (never inside a
/// word), CRLF-terminated. An empty value is written `Name:`.
fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    if value.is_empty() {
        out.extend_from_slice(b"\r\n");
        return;
    }
    out.push(b' ');
    let mut column = name.len() + 2;
    let mut first = true;
    for word in words(value) {
        if !first && column + word.len() > FOLD_AT && word[0].is_ascii_whitespace() {
            out.extend_from_slice(b"\r\n");
            column = 0;
        }
        out.extend_from_slice(word);
        column += word.len();
        first = false;
    }
    out.extend_from_slice(b"\r\n");
}

/// Pieces of a header value, each (but the first) starting with its
/// whitespace.
fn words(value: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < value.len() {
        if value[i].is_ascii_whitespace() && i > start && !value[i - 1].is_ascii_whitespace() {
            pieces.push(&value[start..i]);
            start = i;
        }
        i += 1;
    }
    if start < value.len() {
        pieces.push(&value[start..]);
    }
    pieces
}

/// A structured header from items (`type/subtype`, `param="value"`):
/// `; ` between them, a tab-indented continuation line where the line
/// would pass [`FOLD_AT`], as Exchange writes `Content-Type` and
/// `Content-Disposition`.
fn push_structured(out: &mut Vec<u8>, name: &str, items: &[String]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let mut column = name.len() + 2;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            if column + 2 + item.len() > FOLD_AT {
                out.extend_from_slice(b";\r\n\t");
                column = 8;
            } else {
                out.extend_from_slice(b"; ");
                column += 2;
            }
        }
        out.extend_from_slice(item.as_bytes());
        column += item.len();
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 2047 encoded words (UTF-8, base64), each within 75 characters,
/// separated by spaces.
fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unstructured text (a subject, a description) as a header value.
fn unstructured(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.is_ascii() && !clean.contains("=?") {
        clean
    } else {
        encoded_words(&clean)
    }
}

/// A display name: bare, quoted when it has specials, encoded words when
/// it is not ASCII.
fn display_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if !clean.is_ascii() || clean.contains("=?") {
        return encoded_words(&clean);
    }
    if clean.chars().any(|c| "()<>[]:;@\\,.\"".contains(c)) {
        format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        clean
    }
}

fn mailbox(a: &Addr<'_>) -> Option<String> {
    let address = a
        .address
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())?;
    match a.name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => Some(format!("{} <{address}>", display_name(name))),
        None => Some(address.to_string()),
    }
}

/// Every address of every `name` header of a part, as one list.
fn address_header(part: &MessagePart<'_>, name: HeaderName<'_>) -> Option<String> {
    let mut items = Vec::new();
    for value in part
        .headers
        .iter()
        .filter(|h| h.name == name)
        .filter_map(|h| h.value.as_address())
    {
        match value {
            Address::List(list) => items.extend(list.iter().filter_map(mailbox)),
            Address::Group(groups) => {
                for g in groups {
                    let members: Vec<String> = g.addresses.iter().filter_map(mailbox).collect();
                    match &g.name {
                        Some(n) => {
                            items.push(format!("{}: {};", display_name(n), members.join(", ")))
                        }
                        None => items.extend(members),
                    }
                }
            }
        }
    }
    (!items.is_empty()).then(|| items.join(", "))
}

fn rfc5322_date(t: &DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// `Thread-Topic`: the subject without reply and forward prefixes.
fn thread_topic(subject: &str) -> &str {
    let mut s = subject.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let Some(cut) = ["re:", "fw:", "fwd:", "aw:", "wg:", "sv:"]
            .iter()
            .find(|p| lower.starts_with(*p))
        else {
            return s;
        };
        s = s[cut.len()..].trim_start();
    }
}

/// `Thread-Index`: 22 bytes (a time stamp and a GUID), base64.
fn thread_index(message_id: &str, sent: &DateTime<Utc>) -> String {
    let filetime = (sent.timestamp().max(0) as u64 + 11_644_473_600) * 10_000_000;
    let mut bytes = filetime.to_be_bytes()[..6].to_vec();
    bytes.extend_from_slice(&Sha256::digest(message_id.as_bytes())[..16]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One message (the top level, `stamp` given, or an attached one).
fn render_message(
    msg: &Parsed<'_>,
    stamp: Option<&Stamp<'_>>,
    ctx: &mut Context,
    depth: usize,
) -> Option<Vec<u8>> {
    let root = msg.parts.first()?;
    let content = render_part(msg, 0, ctx, depth)?;
    let mut out = Vec::with_capacity(msg.raw_message.len() + 2048);
    if let Some(hop) = stamp.and_then(|s| s.hop) {
        let received = format!(
            "from {FRONTEND_SERVER} (2603:10a6:20b:5e0::14) by {MAILBOX_SERVER} (2603:10a6:20b:5e0::9) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.8700.12; {}",
            rfc5322_date(&hop)
        );
        push_field(&mut out, "Received", received.as_bytes());
    }
    let kept = |place_wanted: Place, out: &mut Vec<u8>| {
        for h in root
            .headers
            .iter()
            .filter(|h| place(&h.name) == place_wanted)
        {
            let (name, value) = raw_field(msg, h);
            push_field(out, &name, &value);
        }
    };
    kept(Place::Trace, &mut out);
    for (name, header) in [
        ("From", HeaderName::From),
        ("Sender", HeaderName::Sender),
        ("To", HeaderName::To),
        ("CC", HeaderName::Cc),
        ("BCC", HeaderName::Bcc),
        ("Reply-To", HeaderName::ReplyTo),
    ] {
        if let Some(list) = address_header(root, header) {
            push_field(&mut out, name, list.as_bytes());
        }
    }
    let subject = msg.subject();
    if let Some(subject) = subject {
        push_field(&mut out, "Subject", unstructured(subject).as_bytes());
    }
    let date = msg
        .date()
        .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0));
    let message_id = match stamp {
        Some(s) => Some(s.message_id.to_string()),
        None => msg.message_id().map(|id| format!("<{id}>")),
    };
    if let Some(stamp) = stamp {
        let topic = thread_topic(subject.unwrap_or_default());
        push_field(&mut out, "Thread-Topic", unstructured(topic).as_bytes());
        let index = root
            .headers
            .iter()
            .find(|h| matches!(&h.name, HeaderName::Other(n) if n.eq_ignore_ascii_case("thread-index")))
            .map(|h| raw_field(msg, h).1)
            .unwrap_or_else(|| thread_index(stamp.message_id, &stamp.sent).into_bytes());
        push_field(&mut out, "Thread-Index", &index);
    }
    if let Some(date) = date.or(stamp.map(|s| s.sent)) {
        push_field(&mut out, "Date", rfc5322_date(&date).as_bytes());
    }
    if let Some(id) = message_id {
        push_field(&mut out, "Message-ID", id.as_bytes());
    }
    kept(Place::Threading, &mut out);
    if stamp.is_some() {
        let language = root
            .headers
            .iter()
            .find(|h| h.name == HeaderName::ContentLanguage)
            .map(|h| raw_field(msg, h).1)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| b"en-US".to_vec());
        push_field(&mut out, "Accept-Language", b"en-US");
        push_field(&mut out, "Content-Language", &language);
        let attached = msg.attachments().next().is_some();
        push_field(
            &mut out,
            "X-MS-Has-Attach",
            if attached { b"yes" } else { b"" },
        );
        let network_id = uuid::Uuid::new_v4().to_string();
        push_field(
            &mut out,
            "X-MS-Exchange-Organization-Network-Message-Id",
            network_id.as_bytes(),
        );
        push_field(&mut out, "X-MS-Exchange-Organization-SCL", b"-1");
        push_field(&mut out, "X-MS-Exchange-Organization-AuthAs", b"Internal");
        push_field(
            &mut out,
            "X-MS-Exchange-Organization-AuthSource",
            MAILBOX_SERVER.as_bytes(),
        );
        push_field(&mut out, "X-MS-TNEF-Correlator", b"");
        push_field(&mut out, "msip_labels", b"");
    }
    kept(Place::Other, &mut out);
    out.extend_from_slice(&content.head);
    out.extend_from_slice(b"MIME-Version: 1.0\r\n\r\n");
    out.extend_from_slice(&content.body);
    Some(out)
}

/// A parameter as Exchange writes it: always quoted; not ASCII, an
/// encoded word inside the quotes.
fn param(name: &str, value: &str) -> String {
    let value = if value.is_ascii() && !value.chars().any(|c| c.is_control()) {
        value.replace('\\', "\\\\").replace('"', "\\\"")
    } else {
        encoded_words(value).replace(' ', "")
    };
    format!("{}=\"{value}\"", name.to_ascii_lowercase())
}

fn is_attachment_disposition(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"))
}

/// Content-ID and Content-Location kept as written.
fn push_ids(msg: &Parsed<'_>, part: &MessagePart<'_>, out: &mut Vec<u8>) {
    for h in &part.headers {
        let name = match h.name {
            HeaderName::ContentId => "Content-ID",
            HeaderName::ContentLocation => "Content-Location",
            _ => continue,
        };
        let (_, value) = raw_field(msg, h);
        push_field(out, name, &value);
    }
}

fn render_part(msg: &Parsed<'_>, id: u32, ctx: &mut Context, depth: usize) -> Option<Rendered> {
    let part = msg.parts.get(id as usize)?;
    ctx.parts += 1;
    if ctx.parts > MAX_PARTS || depth > MAX_DEPTH {
        return None;
    }
    let (ctype, subtype) = part
        .content_type()
        .map(|c| {
            (
                c.ctype().to_ascii_lowercase(),
                c.subtype().map(str::to_ascii_lowercase),
            )
        })
        .unwrap_or_else(|| ("text".into(), Some("plain".into())));
    let attributes: Vec<(String, String)> = part
        .content_type()
        .and_then(|c| c.attributes())
        .map(|a| {
            a.iter()
                .map(|x| (x.name.to_ascii_lowercase(), x.value.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut head = Vec::new();
    match &part.body {
        PartType::Multipart(children) => {
            let subtype = subtype.unwrap_or_else(|| "mixed".into());
            let mut rendered = Vec::with_capacity(children.len());
            for child in children {
                rendered.push(render_part(msg, *child, ctx, depth + 1)?);
            }
            let boundary = ctx.boundary(&subtype, &rendered);
            let mut items = vec![
                format!("multipart/{subtype}"),
                format!("boundary=\"{boundary}\""),
            ];
            items.extend(
                attributes
                    .iter()
                    .filter(|(n, _)| n != "boundary")
                    .map(|(n, v)| param(n, v)),
            );
            push_structured(&mut head, "Content-Type", &items);
            let mut body = Vec::new();
            for child in &rendered {
                body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                body.extend_from_slice(&child.head);
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(&child.body);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            Some(Rendered { head, body })
        }
        PartType::Text(text) | PartType::Html(text) if !is_attachment_disposition(part) => {
            let subtype = subtype.unwrap_or_else(|| "plain".into());
            let mut items = vec![format!("{ctype}/{subtype}")];
            if ctype == "text" {
                let charset = if text.is_ascii() { "us-ascii" } else { "utf-8" };
                items.push(format!("charset=\"{charset}\""));
            }
            items.extend(
                attributes
                    .iter()
                    .filter(|(n, _)| n != "charset")
                    .map(|(n, v)| param(n, v)),
            );
            push_structured(&mut head, "Content-Type", &items);
            push_ids(msg, part, &mut head);
            if let Some(d) = part.content_disposition() {
                push_structured(
                    &mut head,
                    "Content-Disposition",
                    &[d.ctype().to_ascii_lowercase()],
                );
            }
            head.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
            Some(Rendered {
                head,
                body: quoted_printable(text),
            })
        }
        PartType::Message(inner) => {
            // Boundaries inside an attached message come from its own
            // Message-ID.
            let outer = ctx.key.clone();
            if let Some(id) = inner.message_id() {
                ctx.key = boundary_key(id);
            }
            let body = render_message(inner, None, ctx, depth + 1);
            ctx.key = outer;
            let body = body?;
            push_structured(&mut head, "Content-Type", &["message/rfc822".to_string()]);
            if let Some(d) = part.content_disposition() {
                push_structured(
                    &mut head,
                    "Content-Disposition",
                    &[d.ctype().to_ascii_lowercase()],
                );
            }
            Some(Rendered { head, body })
        }
        PartType::Text(_) | PartType::Html(_) | PartType::Binary(_) | PartType::InlineBinary(_) => {
            let bytes = part.contents();
            let subtype = subtype.unwrap_or_else(|| "octet-stream".into());
            let name = part.attachment_name().map(str::to_string);
            let mut items = vec![format!("{ctype}/{subtype}")];
            if let Some(name) = &name {
                items.push(param("name", name));
            }
            if matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
                items.push("charset=\"utf-8\"".into());
            }
            items.extend(
                attributes
                    .iter()
                    .filter(|(n, _)| n != "name" && n != "charset")
                    .map(|(n, v)| param(n, v)),
            );
            push_structured(&mut head, "Content-Type", &items);
            if let Some(name) = &name {
                push_field(
                    &mut head,
                    "Content-Description",
                    unstructured(name).as_bytes(),
                );
            }
            let inline = match part.content_disposition() {
                Some(d) => d.ctype().eq_ignore_ascii_case("inline"),
                None => part.content_id().is_some(),
            };
            let stamp = ctx.created.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            let mut disposition = vec![if inline { "inline" } else { "attachment" }.to_string()];
            if let Some(name) = &name {
                disposition.push(param("filename", name));
            }
            disposition.push(format!("size={}", bytes.len()));
            disposition.push(format!("creation-date=\"{stamp}\""));
            disposition.push(format!("modification-date=\"{stamp}\""));
            push_structured(&mut head, "Content-Disposition", &disposition);
            push_ids(msg, part, &mut head);
            head.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
            Some(Rendered {
                head,
                body: base64_lines(bytes),
            })
        }
    }
}

/// Base64 in lines of 76 characters, CRLF between them.
fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38);
    for (i, line) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7) with CRLF line ends: lines of at most
/// 76 characters (soft breaks `=`), whitespace before a line end encoded.
/// Bare LF line ends become CRLF, as Exchange writes them.
pub fn quoted_printable(text: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let line = line.as_bytes();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut column = 0;
        for (j, &b) in line.iter().enumerate() {
            let last = j + 1 == line.len();
            let literal = match b {
                b' ' | b'\t' => !last,
                b'=' => false,
                33..=126 => true,
                _ => false,
            };
            let width = if literal { 1 } else { 3 };
            let room = if last { 76 } else { 75 };
            if column + width > room {
                out.extend_from_slice(b"=\r\n");
                column = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            column += width;
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
