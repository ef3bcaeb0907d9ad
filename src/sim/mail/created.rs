//! The MIME Exchange generates for an item created from JSON (`POST
//! messages` or `mailFolders/{id}/messages` with the message resource),
//! and the checks Graph makes on such a request. Written from Microsoft's
//! documents; shares nothing with `graph/`.
//!
//! Which property becomes which header field when Exchange converts a
//! message object to MIME ([MS-OXCMAIL] 2.2.3 "Message object to MIME"):
//! - `from` → `From` (PidTagSentRepresenting*), `sender` → `Sender` only
//!   when it differs from `from` (PidTagSender*), `toRecipients`,
//!   `ccRecipients`, `bccRecipients` → `To`, `Cc`, `Bcc` (a mailbox item
//!   keeps its Bcc), `replyTo` → `Reply-To` (PidTagReplyRecipientEntries);
//! - `subject` → `Subject`; `internetMessageId` → `Message-ID`
//!   (PidTagInternetMessageId); `PidTagClientSubmitTime` (`SystemTime
//!   0x0039`, [MS-OXOMSG] 2.2.3.11) → `Date`, in UTC (a SystemTime has no
//!   zone); `PidTagInReplyToId` (`String 0x1042`, [MS-OXOMSG] 2.2.1.13)
//!   → `In-Reply-To`; `PidTagInternetReferences` (`String 0x1039`,
//!   [MS-OXCMSG] 2.2.1.26) → `References`;
//! - `internetMessageHeaders` (custom `X-` headers) → the same fields:
//!   "custom internet headers … are preserved after the message item
//!   leaves Exchange and is converted to a MIME message" (Office.js
//!   `InternetHeaders`);
//! - `PidTagTransportMessageHeaders` (`String 0x007D`) is kept as a
//!   property and is not written into generated MIME (it describes how a
//!   received message travelled; whether Exchange ever re-emits it is not
//!   documented, so the simulator does not);
//! - `PidTagMessageDeliveryTime` (`SystemTime 0x0E06`) → `receivedDateTime`
//!   ([MS-OXOMSG] 2.2.3.9), no header;
//! - the body: one text or HTML part; file attachments after it
//!   (`multipart/mixed`), inline ones (`isInline` with a `contentId`)
//!   with the HTML in `multipart/related`; an `itemAttachment` as a
//!   `message/rfc822` part whose content is the attached item's own MIME,
//!   never base64 (RFC 2046 §5.2.1 allows only 7bit, 8bit or binary there).
//!
//! Checks: `internetMessageHeaders` with no entry or more than five is
//! refused (400, "number of internet message headers … should be less or
//! equal to 5", msgraph-sdk-dotnet issue 2208), as is a name without the
//! `x-` prefix (the message resource: only custom headers).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::sim::errors::GraphError;

/// Most custom headers Graph takes on one item.
const MAX_CUSTOM: usize = 5;
/// Attached items followed inside attached items.
const MAX_DEPTH: usize = 8;

/// Refuse what Graph refuses in a created item's `internetMessageHeaders`.
pub fn check(body: &Value) -> Result<(), GraphError> {
    let Some(headers) = body.get("internetMessageHeaders") else {
        return Ok(());
    };
    let list = headers.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() || list.len() > MAX_CUSTOM {
        return Err(GraphError::bad_request(
            "InvalidInternetMessageHeaderCollection",
            "Maximum number of headers in one message should be less than or equal to 5.",
        ));
    }
    for h in list {
        let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
        if !(name.len() > 2 && name[..2].eq_ignore_ascii_case("x-")) {
            return Err(GraphError::bad_request(
                "InvalidInternetMessageHeader",
                format!(
                    "The internet message header name '{name}' should start with 'x-' or 'X-'."
                ),
            ));
        }
    }
    Ok(())
}

/// An extended property's value on a created item, by Exchange's
/// normalised id (`string 0x1039`).
pub fn property<'a>(body: &'a Value, normalised: &str) -> Option<&'a str> {
    body.get("singleValueExtendedProperties")?
        .as_array()?
        .iter()
        .find(|p| {
            p.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| super::model::normalise_property_id(id) == normalised)
        })?
        .get("value")?
        .as_str()
}

/// A `SystemTime` property's value.
pub fn time_property(body: &Value, normalised: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(property(body, normalised)?)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The MIME Exchange generates for the item `body` describes; `sender`
/// when the item names no `from`; `message_id` when it names none.
pub fn render(body: &Value, sender: &str, message_id: &str) -> Vec<u8> {
    render_item(body, sender, message_id, 0)
}

fn mailbox(r: &Value) -> Option<String> {
    let address = r.pointer("/emailAddress/address")?.as_str()?;
    let name = r
        .pointer("/emailAddress/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(if name.is_empty() || name == address {
        address.to_string()
    } else if name.is_ascii() {
        format!("\"{}\" <{address}>", name.replace(['\\', '"'], ""))
    } else {
        format!("{} <{address}>", encoded_word(name))
    })
}

fn encoded_word(text: &str) -> String {
    format!(
        "=?utf-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

fn list(body: &Value, field: &str) -> Option<String> {
    let all: Vec<String> = body
        .get(field)?
        .as_array()?
        .iter()
        .filter_map(mailbox)
        .collect();
    (!all.is_empty()).then(|| all.join(", "))
}

fn push(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn render_item(body: &Value, sender: &str, message_id: &str, depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let from = body
        .get("from")
        .and_then(mailbox)
        .unwrap_or_else(|| sender.to_string());
    push(&mut out, "From", &from);
    if let Some(s) = body.get("sender").and_then(mailbox).filter(|s| *s != from) {
        push(&mut out, "Sender", &s);
    }
    for (field, name) in [
        ("toRecipients", "To"),
        ("ccRecipients", "Cc"),
        ("bccRecipients", "Bcc"),
        ("replyTo", "Reply-To"),
    ] {
        if let Some(v) = list(body, field) {
            push(&mut out, name, &v);
        }
    }
    if let Some(subject) = body.get("subject").and_then(Value::as_str) {
        if subject.is_ascii() {
            push(&mut out, "Subject", subject);
        } else {
            push(&mut out, "Subject", &encoded_word(subject));
        }
    }
    // Exchange always writes a Date: the submit time, else the item's
    // creation.
    let date = time_property(body, "systemtime 0x39").unwrap_or_else(Utc::now);
    push(
        &mut out,
        "Date",
        &date.format("%a, %d %b %Y %H:%M:%S +0000").to_string(),
    );
    let mid = body
        .get("internetMessageId")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(message_id);
    if depth == 0 || body.get("internetMessageId").is_some() {
        push(&mut out, "Message-ID", mid);
    }
    if let Some(v) = property(body, "string 0x1042") {
        push(&mut out, "In-Reply-To", v);
    }
    if let Some(v) = property(body, "string 0x1039") {
        push(&mut out, "References", v);
    }
    for h in body
        .get("internetMessageHeaders")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(n), Some(v)) = (
            h.get("name").and_then(Value::as_str),
            h.get("value").and_then(Value::as_str),
        ) {
            push(&mut out, n, v);
        }
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    let text = body
        .pointer("/body/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let html = body
        .pointer("/body/contentType")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("html"));
    let text_part = text_part(text, html);
    let attachments: Vec<&Value> = body
        .get("attachments")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let (inline, other): (Vec<&Value>, Vec<&Value>) = attachments.into_iter().partition(|a| {
        a.get("isInline").and_then(Value::as_bool) == Some(true)
            && a.get("contentId").and_then(Value::as_str).is_some()
            && html
    });
    let key = boundary_key(mid);
    let mut content = if inline.is_empty() {
        text_part
    } else {
        let mut parts = vec![text_part];
        parts.extend(inline.iter().map(|a| attachment_part(a, sender, depth)));
        multipart("related", &format!("_006_{key}_"), &parts)
    };
    if !other.is_empty() {
        let mut parts = vec![content];
        parts.extend(other.iter().map(|a| attachment_part(a, sender, depth)));
        content = multipart("mixed", &format!("_004_{key}_"), &parts);
    }
    out.extend_from_slice(&content);
    out
}

fn boundary_key(message_id: &str) -> String {
    message_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect()
}

/// A leaf: its header fields and body, the blank line between them.
fn text_part(text: &str, html: bool) -> Vec<u8> {
    let subtype = if html { "html" } else { "plain" };
    let mut out = format!(
        "Content-Type: text/{subtype}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&base64_lines(text.as_bytes()));
    out
}

fn multipart(subtype: &str, boundary: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out =
        format!("Content-Type: multipart/{subtype};\r\n\tboundary=\"{boundary}\"\r\n\r\n")
            .into_bytes();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(p);
        if !p.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn attachment_part(a: &Value, sender: &str, depth: usize) -> Vec<u8> {
    let name = a
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("attachment");
    let name = name.replace(['"', '\\', '\r', '\n'], "");
    let is_item = a
        .get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with("itemAttachment"));
    if is_item {
        // An attached item is a message/rfc822 part holding its own MIME,
        // never base64-encoded (RFC 2046 §5.2.1).
        let inner = a.get("item").cloned().unwrap_or(Value::Null);
        let rendered = if depth < MAX_DEPTH {
            render_item(&inner, sender, "", depth + 1)
        } else {
            Vec::new()
        };
        let mut out = format!(
            "Content-Type: message/rfc822\r\nContent-Disposition: attachment;\r\n\tfilename=\"{name}\"\r\n\r\n"
        )
        .into_bytes();
        out.extend_from_slice(&rendered);
        return out;
    }
    let content_type = a
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream");
    let bytes = a
        .get("contentBytes")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    let inline = a.get("isInline").and_then(Value::as_bool) == Some(true);
    let mut out = format!(
        "Content-Type: {content_type}; name=\"{name}\"\r\nContent-Description: {name}\r\nContent-Disposition: {}; filename=\"{name}\"; size={}\r\n",
        if inline { "inline" } else { "attachment" },
        bytes.len()
    )
    .into_bytes();
    if let Some(cid) = a.get("contentId").and_then(Value::as_str) {
        out.extend_from_slice(format!("Content-ID: <{cid}>\r\n").as_bytes());
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
    out.extend_from_slice(&base64_lines(&bytes));
    out
}
