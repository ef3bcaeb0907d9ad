//! IMAP APPEND as one Graph request: the item is described in JSON from
//! the APPENDed MIME and created non-draft, directly in its folder
//! (`POST mailFolders/{id}/messages`). The old route (a draft from MIME,
//! re-created from the draft's JSON, the draft deleted) cost three to four
//! requests and lost every header the `message` resource has no field for.
//!
//! What the item carries, and why (Microsoft's documents; docs/append.md
//! has the whole table with what Graph cannot keep):
//! - `subject`, `body` (the HTML body if the message has one, else the
//!   plain text), `from` and `sender` with display names, `toRecipients`,
//!   `ccRecipients`, `bccRecipients`, `replyTo`, `internetMessageId`:
//!   fields of the message resource, writable when the item is created
//!   (Graph "message resource type"; "Updatable only if isDraft = true"
//!   means until it is sent, and a created item starts from this JSON).
//! - `PidTagClientSubmitTime` (`SystemTime 0x0039`): the `Date` field
//!   (`sentDateTime` is read-only in the message resource; [MS-OXOMSG]
//!   2.2.3.11, [MS-OXCMAIL] 2.2.3.2.3 maps `Date` to it).
//! - `PidTagMessageDeliveryTime` (`SystemTime 0x0E06`): IMAP INTERNALDATE
//!   (`receivedDateTime`, read-only; [MS-OXOMSG] 2.2.3.9).
//! - `PidTagInternetReferences` (`String 0x1039`, [MS-OXCMSG] 2.2.1.26)
//!   and `PidTagInReplyToId` (`String 0x1042`, [MS-OXOMSG] 2.2.1.13):
//!   `References` and `In-Reply-To`.
//! - `internetMessageHeaders`: at most 5 custom `X-` headers. Graph refuses
//!   a create with more than five, and an empty collection, with 400
//!   ("should be less or equal to 5", msgraph-sdk-dotnet issue 2208); the
//!   message resource allows only `x-`/`X-` names there.
//! - `PidTagTransportMessageHeaders` (`String 0x007D`, [MS-OXPROPS] 2.1041):
//!   the whole original header block, so other Graph and MAPI clients see
//!   every field (Received chain, List-*, Precedence, further X- headers).
//!   Exchange Online's header limit is 256 KB (Exchange Online limits,
//!   "Message limits"); a larger block is not sent there.
//! - `PidTagMessageFlags` (`Integer 0x0E07`): `MSGFLAG_READ` (1) or 0,
//!   never `MSGFLAG_UNSENT` (8), so the item is not a draft; settable only
//!   at creation ([MS-OXCMSG] 2.2.1.6; graph-facts.md "Writing").
//! - attachments in the same request: `fileAttachment` with `isInline` and
//!   `contentId`; an attached `message/rfc822` as an `itemAttachment` whose
//!   `item` is described the same way (Graph "Add attachment", item
//!   attachment example).
//! - an attached message split off because it is large (the route above
//!   2 MiB, [`split_large`]) goes up as a `fileAttachment` of type
//!   `message/rfc822`, not as an `itemAttachment`: from 3 MB an attachment
//!   must go through an upload session ("Attach large files to Outlook
//!   messages": a single POST takes less than 3 MB), and Exchange answers
//!   an upload session for `attachmentType` `item` with 405
//!   `ErrorAttachmentSessionIsSupportedOnlyForFileAttachments` ("Only File
//!   attachments can be uploaded using an Upload Session",
//!   microsoftgraph/microsoft-graph-docs-contrib issue 710, though the
//!   attachmentItem page lists `item`). Graph v1.0 has no request that adds
//!   attachments to an `itemAttachment`'s item afterwards (the item is a
//!   contained navigation property without an `attachments` route), so an
//!   attached message cannot be built up in pieces either. Outlook shows
//!   such a file as an attached .eml; the IMAP client gets its APPENDed
//!   bytes anyway (mailbox/appended.rs).

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use mail_parser::{Address, MessagePart, MimeHeaders, PartType};
use serde_json::{Map, Value, json};

use super::backend::AppendOptions;

/// Graph's most custom headers in `internetMessageHeaders` of one item.
pub const MAX_CUSTOM_HEADERS: usize = 5;
/// Exchange Online's limit of a message's header block (256 KB).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Attached messages followed inside attached messages.
const MAX_DEPTH: usize = 8;

/// The JSON of a non-draft item made from `mime`, with the flags and
/// internal date of `options`. `None`: the bytes are not a message
/// mail-parser can read.
pub fn item_json(mime: &[u8], options: &AppendOptions) -> Option<Value> {
    let msg = crate::mime::parse_message(mime)?;
    let mut item = describe(&msg, 0);
    let received = options.received.unwrap_or_else(Utc::now);
    let mut props = vec![
        prop("Integer 0x0E07", if options.is_read { "1" } else { "0" }),
        prop("SystemTime 0x0E06", &graph_time(&received)),
    ];
    props.extend(header_properties(&msg));
    // The other IMAP flags go in the same request: flag, categories, and
    // the answered/forwarded properties, as a later STORE would set them.
    if let Value::Object(patch) = super::messages::flag_patch(&options.flags) {
        for (key, value) in patch {
            match key.as_str() {
                "isRead" => {}
                "singleValueExtendedProperties" => {
                    props.extend(value.as_array().cloned().unwrap_or_default())
                }
                _ => {
                    item.insert(key, value);
                }
            }
        }
    }
    item.insert("isRead".into(), json!(options.is_read));
    // The JSON fields too: whether Exchange takes receivedDateTime and
    // sentDateTime at creation is not documented (DavMail sends
    // receivedDateTime; graph-facts.md), the properties above are the
    // MAPI ones; either way the item gets the dates.
    item.insert("receivedDateTime".into(), json!(graph_time(&received)));
    if let Some(sent) = msg
        .date()
        .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0))
    {
        item.insert("sentDateTime".into(), json!(graph_time(&sent)));
    }
    item.insert("singleValueExtendedProperties".into(), Value::Array(props));
    Some(Value::Object(item))
}

fn prop(id: &str, value: &str) -> Value {
    json!({ "id": id, "value": value })
}

/// `2026-12-07T22:00:00Z`: the form Graph writes and reads for
/// `SystemTime` extended properties and `DateTimeOffset` fields.
fn graph_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Each header field of the top-level header block as (name, unfolded
/// value), in order.
fn raw_fields(msg: &mail_parser::Message<'_>) -> Vec<(String, String)> {
    let raw: &[u8] = &msg.raw_message;
    msg.root_part()
        .headers()
        .iter()
        .filter_map(|h| {
            let value = raw.get(h.offset_start as usize..h.offset_end as usize)?;
            Some((h.name.as_str().to_string(), unfold(value)))
        })
        .collect()
}

/// A field value without its line breaks (RFC 5322 §2.2.3), trimmed.
fn unfold(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// The top-level header block as written (up to the blank line).
fn header_block(raw: &[u8]) -> &[u8] {
    let crlf = find(raw, b"\r\n\r\n").map(|p| p + 2);
    let lf = find(raw, b"\n\n").map(|p| p + 1);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => raw.len(),
    };
    raw.get(..end).unwrap_or(raw)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The extended properties and `internetMessageHeaders` that carry what the
/// message resource has no field for.
fn header_properties(msg: &mail_parser::Message<'_>) -> Vec<Value> {
    let mut props = Vec::new();
    let fields = raw_fields(msg);
    let first = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if let Some(date) = msg
        .date()
        .and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0))
    {
        props.push(prop("SystemTime 0x0039", &graph_time(&date)));
    }
    if let Some(references) = first("References") {
        props.push(prop("String 0x1039", &references));
    }
    if let Some(in_reply_to) = first("In-Reply-To") {
        props.push(prop("String 0x1042", &in_reply_to));
    }
    let block = header_block(msg.raw_message());
    if !block.is_empty() && block.len() <= MAX_HEADER_BLOCK {
        props.push(prop("String 0x007D", &String::from_utf8_lossy(block)));
    }
    props
}

/// The first [`MAX_CUSTOM_HEADERS`] `X-` fields, for
/// `internetMessageHeaders` (none: the property is left out, as Graph
/// refuses an empty collection).
fn custom_headers(msg: &mail_parser::Message<'_>) -> Option<Value> {
    let list: Vec<Value> = raw_fields(msg)
        .into_iter()
        .filter(|(n, v)| n.len() > 2 && n[..2].eq_ignore_ascii_case("x-") && !v.is_empty())
        .take(MAX_CUSTOM_HEADERS)
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

/// The message resource's fields of `msg`: the item itself at depth 0, an
/// attached message's `item` below.
fn describe(msg: &mail_parser::Message<'_>, depth: usize) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert("@odata.type".into(), json!("#microsoft.graph.message"));
    if let Some(subject) = msg.subject() {
        item.insert("subject".into(), json!(subject));
    }
    item.insert("body".into(), body(msg));
    if let Some(from) = msg.from().and_then(|a| recipients(a).into_iter().next()) {
        item.insert("from".into(), from);
    }
    if let Some(sender) = msg.sender().and_then(|a| recipients(a).into_iter().next()) {
        item.insert("sender".into(), sender);
    }
    for (field, list) in [
        ("toRecipients", msg.to()),
        ("ccRecipients", msg.cc()),
        ("bccRecipients", msg.bcc()),
        ("replyTo", msg.reply_to()),
    ] {
        if let Some(list) = list.map(recipients).filter(|l| !l.is_empty()) {
            item.insert(field.into(), Value::Array(list));
        }
    }
    if let Some(id) = msg.message_id().filter(|id| !id.is_empty()) {
        item.insert("internetMessageId".into(), json!(format!("<{id}>")));
    }
    if let Some(headers) = custom_headers(msg) {
        item.insert("internetMessageHeaders".into(), headers);
    }
    let attachments = attachments(msg, depth);
    if !attachments.is_empty() {
        item.insert("attachments".into(), Value::Array(attachments));
    }
    if depth > 0 {
        // An attached message keeps its dates and threading fields too.
        item.insert(
            "singleValueExtendedProperties".into(),
            Value::Array(header_properties(msg)),
        );
    }
    item
}

/// Every mailbox of an address field (group members included), with its
/// display name, as Graph `recipient`s.
fn recipients(address: &Address<'_>) -> Vec<Value> {
    address
        .iter()
        .filter_map(|a| {
            let email = a.address.as_deref().filter(|s| !s.is_empty())?;
            let mut emailaddress = json!({ "address": email });
            if let Some(name) = a.name.as_deref().filter(|s| !s.is_empty()) {
                emailaddress["name"] = json!(name);
            }
            Some(json!({ "emailAddress": emailaddress }))
        })
        .collect()
}

/// The item body: the first HTML body part if there is one, else the text.
fn body(msg: &mail_parser::Message<'_>) -> Value {
    let part = |id: &u32| msg.parts.get(*id as usize);
    if let Some(html) = msg
        .html_body
        .iter()
        .filter_map(part)
        .find_map(|p| match &p.body {
            PartType::Html(t) => Some(t.as_ref()),
            _ => None,
        })
    {
        return json!({ "contentType": "html", "content": html });
    }
    let text = msg
        .text_body
        .iter()
        .filter_map(part)
        .find_map(|p| match &p.body {
            PartType::Text(t) => Some(t.as_ref()),
            _ => None,
        })
        .unwrap_or_default();
    json!({ "contentType": "text", "content": text })
}

fn is_body_part(msg: &mail_parser::Message<'_>, id: u32) -> bool {
    msg.text_body.contains(&id) || msg.html_body.contains(&id)
}

/// The attachments of `msg`: every part that is not the body text, not a
/// multipart; attached messages as item attachments.
fn attachments(msg: &mail_parser::Message<'_>, depth: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, part) in msg.parts.iter().enumerate().skip(1) {
        let Ok(id) = u32::try_from(id) else { break };
        if part.is_multipart() || (part.is_text() && is_body_part(msg, id)) {
            continue;
        }
        if is_body_part(msg, id) && !part.is_binary() {
            continue;
        }
        if let Some(attachment) = attachment(part, depth) {
            out.push(attachment);
        }
    }
    out
}

fn content_type(part: &MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
}

fn attachment(part: &MessagePart<'_>, depth: usize) -> Option<Value> {
    let name = part.attachment_name().map(str::to_string);
    if let PartType::Message(inner) = &part.body
        && depth < MAX_DEPTH
    {
        let item = describe(inner, depth + 1);
        let name = name
            .or_else(|| inner.subject().map(str::to_string))
            .unwrap_or_else(|| "message".into());
        return Some(json!({
            "@odata.type": "#microsoft.graph.itemAttachment",
            "name": name,
            "item": Value::Object(item),
        }));
    }
    let content_id = part
        .content_id()
        .map(|c| c.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let disposition_inline = part
        .content_disposition()
        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
    let is_inline =
        content_id.is_some() && (disposition_inline || part.content_disposition().is_none());
    let name = name.unwrap_or_else(|| "attachment".into());
    let mut value = json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": content_type(part),
        "isInline": is_inline,
        "contentBytes": base64::engine::general_purpose::STANDARD.encode(part.contents()),
    });
    if let Some(cid) = content_id {
        value["contentId"] = json!(cid);
    }
    Some(value)
}

/// An attachment too large for the creating request, and where its
/// encoded bytes lie in the APPENDed message.
pub struct LargePart {
    pub part: crate::mime::split::AttachmentPart,
}

/// The large route's plan: the message without its big top-level
/// attachments (described as the creating request's item, at most
/// `max_item` bytes of MIME), and the attachments split off, which go
/// through `POST …/attachments` or an upload session after the item is
/// created. The split is the SMTP large path's (mime/split.rs): one pass,
/// memory bounded by the remaining MIME.
pub fn split_large(
    mime: &[u8],
    options: &AppendOptions,
    max_item: usize,
) -> Result<(Value, Vec<LargePart>), String> {
    let plan = crate::mime::split::plan_split(std::io::Cursor::new(mime), b"", max_item)
        .map_err(|e| format!("splitting the message's attachments off: {e}"))?;
    let item = item_json(&plan.draft_mime, options)
        .ok_or_else(|| "the message without its attachments cannot be read".to_string())?;
    Ok((
        item,
        plan.attachments
            .into_iter()
            .map(|part| LargePart { part })
            .collect(),
    ))
}

/// The decoded bytes of `part`, read from `mime` in 64 KiB pieces (base64
/// decoded as it goes): one upload chunk in memory at a time besides the
/// message itself.
pub fn part_reader(
    mime: bytes::Bytes,
    part: &crate::mime::split::AttachmentPart,
) -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
    use crate::mime::split::BodyEncoding;
    use futures::StreamExt;
    let start = usize::try_from(part.body_start)
        .unwrap_or(usize::MAX)
        .min(mime.len());
    let end = usize::try_from(part.body_end)
        .unwrap_or(usize::MAX)
        .clamp(start, mime.len());
    let body = mime.slice(start..end);
    match part.encoding {
        BodyEncoding::Identity => Box::new(std::io::Cursor::new(body)),
        BodyEncoding::Base64 => {
            let pieces: Vec<bytes::Bytes> = (0..body.len())
                .step_by(64 * 1024)
                .map(|at| body.slice(at..(at + 64 * 1024).min(body.len())))
                .collect();
            let total = pieces.len();
            let stream = futures::stream::iter(pieces.into_iter().enumerate())
                .scan(Vec::<u8>::new(), move |carry, (i, piece)| {
                    carry.extend(
                        piece
                            .iter()
                            .copied()
                            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/')),
                    );
                    let usable = if i + 1 == total {
                        carry.len()
                    } else {
                        carry.len() / 4 * 4
                    };
                    let chunk: Vec<u8> = carry.drain(..usable).collect();
                    let decoded = crate::mime::split::decode_base64_lenient(&chunk);
                    futures::future::ready(Some(Ok::<_, std::io::Error>(bytes::Bytes::from(
                        decoded,
                    ))))
                })
                .boxed();
            Box::new(tokio_util::io::StreamReader::new(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(item: &Value) -> Vec<(String, String)> {
        item["singleValueExtendedProperties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_reply_keeps_threading_dates_names_and_custom_headers() {
        let mime = b"Received: from a by b; Mon, 7 Dec 2026 10:00:00 +0100\r\n\
From: \"Ann Example\" <ann@example.org>\r\n\
Sender: List <list-bounces@example.org>\r\n\
Reply-To: list@example.org\r\n\
To: Bob <bob@example.com>, carol@example.com\r\n\
Subject: Re: plans\r\n\
Date: Mon, 7 Dec 2026 10:00:00 +0100\r\n\
Message-ID: <r1@example.org>\r\n\
In-Reply-To: <q1@example.org>\r\n\
References: <p1@example.org>\r\n <q1@example.org>\r\n\
X-TUID: abc123\r\n\
X-Mailer: test\r\n\
\r\n\
Hello\r\n";
        let options = AppendOptions {
            is_read: true,
            ..AppendOptions::default()
        };
        let item = item_json(mime, &options).unwrap();
        assert_eq!(item["from"]["emailAddress"]["name"], "Ann Example");
        assert_eq!(
            item["sender"]["emailAddress"]["address"],
            "list-bounces@example.org"
        );
        assert_eq!(
            item["replyTo"][0]["emailAddress"]["address"],
            "list@example.org"
        );
        assert_eq!(
            item["toRecipients"][1]["emailAddress"]["address"],
            "carol@example.com"
        );
        assert_eq!(item["internetMessageId"], "<r1@example.org>");
        assert_eq!(item["body"]["contentType"], "text");
        assert_eq!(item["internetMessageHeaders"][0]["name"], "X-TUID");
        assert_eq!(item["internetMessageHeaders"][0]["value"], "abc123");
        let props = props(&item);
        let get = |id: &str| props.iter().find(|(i, _)| i == id).map(|(_, v)| v.as_str());
        assert_eq!(get("Integer 0x0E07"), Some("1"));
        assert_eq!(get("SystemTime 0x0039"), Some("2026-12-07T09:00:00Z"));
        assert_eq!(item["sentDateTime"], "2026-12-07T09:00:00Z");
        assert_eq!(
            get("String 0x1039"),
            Some("<p1@example.org> <q1@example.org>")
        );
        assert_eq!(get("String 0x1042"), Some("<q1@example.org>"));
        assert!(
            get("String 0x007D")
                .unwrap()
                .starts_with("Received: from a by b")
        );
        assert!(
            get("String 0x007D")
                .unwrap()
                .ends_with("X-Mailer: test\r\n")
        );
    }

    #[test]
    fn at_most_five_custom_headers_and_none_means_no_collection() {
        let mut mime = String::from("From: a@example.org\r\nSubject: x\r\n");
        for i in 0..7 {
            mime.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        mime.push_str("\r\nbody\r\n");
        let item = item_json(mime.as_bytes(), &AppendOptions::default()).unwrap();
        assert_eq!(item["internetMessageHeaders"].as_array().unwrap().len(), 5);
        let plain = item_json(
            b"From: a@example.org\r\n\r\nx\r\n",
            &AppendOptions::default(),
        )
        .unwrap();
        assert!(plain.get("internetMessageHeaders").is_none());
        assert_eq!(props(&plain)[0], ("Integer 0x0E07".into(), "0".into()));
    }

    #[test]
    fn inline_images_and_attached_messages_become_attachments() {
        let mime = b"From: a@example.org\r\nSubject: fw\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n\
--r\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:img1@x\">\r\n\
--r\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n\
--r--\r\n\
--m\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\nSubject: inner\r\nReferences: <z@x>\r\n\r\ninner body\r\n\
--m--\r\n";
        let item = item_json(mime, &AppendOptions::default()).unwrap();
        let list = item["attachments"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0]["@odata.type"], "#microsoft.graph.fileAttachment");
        assert_eq!(list[0]["isInline"], true);
        assert_eq!(list[0]["contentId"], "img1@x");
        assert_eq!(list[1]["@odata.type"], "#microsoft.graph.itemAttachment");
        assert_eq!(list[1]["item"]["subject"], "inner");
        assert_eq!(item["body"]["contentType"], "html");
    }
}
