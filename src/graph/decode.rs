//! Decoding of Graph's JSON answers into domain types: pure functions over
//! bytes that never panic (driven by the `graph_json` fuzz target). Shapes
//! follow the Graph v1.0 reference for `mailFolder`, `message`,
//! `message: delta`, "Combine multiple requests in one HTTP call using JSON
//! batching" and "Microsoft Graph error responses".

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::backend::{
    Absent, DeltaChange, FlagStatus, FolderChange, MailAddress, RemoteFolder, RemoteFolderId,
    RemoteMessage, RemoteMessageId,
};
use super::error::{ApiError, GraphError, classify, is_delta_reset};

/// Extended property tags the gateway reads.
pub const PR_MESSAGE_SIZE: u32 = 0x0E08;
pub const PR_LAST_VERB_EXECUTED: u32 = 0x1081;

/// One page of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
    /// Ids of items that came without a field IMAP needs (later delta
    /// pages may carry only the changed fields): see
    /// [`RemoteMessage::absent`].
    pub partial: Vec<String>,
}

#[derive(Deserialize)]
struct WirePage<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFolder {
    id: String,
    parent_folder_id: Option<String>,
    display_name: Option<String>,
    total_item_count: Option<u64>,
    unread_item_count: Option<u64>,
    child_folder_count: Option<u64>,
    is_hidden: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFlag {
    flag_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEmail {
    name: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecipient {
    email_address: Option<WireEmail>,
}

#[derive(Deserialize)]
struct WireExtendedProperty {
    id: String,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    id: String,
    parent_folder_id: Option<String>,
    is_read: Option<bool>,
    is_draft: Option<bool>,
    flag: Option<WireFlag>,
    categories: Option<Vec<String>>,
    received_date_time: Option<String>,
    sent_date_time: Option<String>,
    internet_message_id: Option<String>,
    subject: Option<String>,
    from: Option<WireRecipient>,
    single_value_extended_properties: Option<Vec<WireExtendedProperty>>,
    #[serde(rename = "@removed")]
    removed: Option<Value>,
}

fn malformed(what: &str, e: impl std::fmt::Display) -> GraphError {
    GraphError::Malformed(format!("{what}: {e}"))
}

fn date(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// Whether an extended property id names the integer property `tag`,
/// compared as Exchange spells ids: case-insensitively, leading zeros
/// ignored (`Integer 0x0E08` = `integer 0xe08`).
pub fn is_integer_property(id: &str, tag: u32) -> bool {
    let mut words = id.split_whitespace();
    let (Some(kind), Some(number), None) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    if !kind.eq_ignore_ascii_case("integer") {
        return false;
    }
    let hex = number
        .strip_prefix("0x")
        .or_else(|| number.strip_prefix("0X"));
    hex.and_then(|h| u32::from_str_radix(h, 16).ok()) == Some(tag)
}

fn integer_property(props: &[WireExtendedProperty], tag: u32) -> Option<i64> {
    props
        .iter()
        .find(|p| is_integer_property(&p.id, tag))
        .and_then(|p| p.value.as_deref())
        .and_then(|v| v.trim().parse::<i64>().ok())
}

fn flag_status(s: Option<&str>) -> FlagStatus {
    match s {
        Some(s) if s.eq_ignore_ascii_case("flagged") => FlagStatus::Flagged,
        Some(s) if s.eq_ignore_ascii_case("complete") => FlagStatus::Complete,
        _ => FlagStatus::NotFlagged,
    }
}

fn folder_from_wire(w: WireFolder) -> RemoteFolder {
    RemoteFolder {
        id: RemoteFolderId(w.id),
        parent_id: w.parent_folder_id.map(RemoteFolderId),
        display_name: w.display_name.unwrap_or_default(),
        well_known: None,
        total: w.total_item_count.unwrap_or(0),
        unread: w.unread_item_count.unwrap_or(0),
        child_count: w.child_folder_count.unwrap_or(0),
        hidden: w.is_hidden.unwrap_or(false),
    }
}

fn message_from_wire(w: WireMessage) -> RemoteMessage {
    // Absent means unchanged, not empty (graph-facts.md, "Delta updates
    // can be partial"). The last verb is known only when the extended
    // properties were expanded (a caller that expanded them and found no
    // 0x1081 marks it present: see `messages.rs`).
    let absent = Absent {
        is_read: w.is_read.is_none(),
        is_draft: w.is_draft.is_none(),
        flag: w
            .flag
            .as_ref()
            .and_then(|f| f.flag_status.as_ref())
            .is_none(),
        categories: w.categories.is_none(),
        last_verb: w.single_value_extended_properties.is_none(),
        received: w.received_date_time.is_none(),
    };
    let props = w.single_value_extended_properties.unwrap_or_default();
    let last_verb = integer_property(&props, PR_LAST_VERB_EXECUTED);
    RemoteMessage {
        id: RemoteMessageId(w.id),
        folder_id: w.parent_folder_id.map(RemoteFolderId),
        is_read: w.is_read.unwrap_or(false),
        is_draft: w.is_draft.unwrap_or(false),
        flag: flag_status(w.flag.as_ref().and_then(|f| f.flag_status.as_deref())),
        answered: matches!(last_verb, Some(102) | Some(103)),
        forwarded: last_verb == Some(104),
        categories: w.categories.unwrap_or_default(),
        received: date(w.received_date_time.as_deref()),
        sent: date(w.sent_date_time.as_deref()),
        internet_message_id: w.internet_message_id,
        subject: w.subject,
        from: w.from.and_then(|r| r.email_address).and_then(|e| {
            e.address.map(|address| MailAddress {
                name: e.name,
                address,
            })
        }),
        size: integer_property(&props, PR_MESSAGE_SIZE).and_then(|s| u64::try_from(s).ok()),
        absent,
    }
}

/// A page of `mailFolders` / `childFolders`.
pub fn decode_folder_page(body: &[u8]) -> Result<Page<RemoteFolder>, GraphError> {
    let page: WirePage<WireFolder> =
        serde_json::from_slice(body).map_err(|e| malformed("folder page", e))?;
    Ok(Page {
        items: page.value.into_iter().map(folder_from_wire).collect(),
        next_link: page.next_link,
        delta_link: page.delta_link,
        partial: Vec::new(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFolderChange {
    id: String,
    parent_folder_id: Option<String>,
    display_name: Option<String>,
    is_hidden: Option<bool>,
    #[serde(rename = "@removed")]
    removed: Option<Value>,
}

/// A page of `mailFolders/delta`: items with `@removed` become
/// [`FolderChange::Removed`]; absent fields stay `None` (unchanged).
pub fn decode_folder_delta_page(body: &[u8]) -> Result<Page<FolderChange>, GraphError> {
    let page: WirePage<WireFolderChange> =
        serde_json::from_slice(body).map_err(|e| malformed("folder delta page", e))?;
    let items = page
        .value
        .into_iter()
        .map(|w| {
            if w.removed.is_some() {
                FolderChange::Removed(RemoteFolderId(w.id))
            } else {
                FolderChange::Upsert {
                    id: RemoteFolderId(w.id),
                    display_name: w.display_name,
                    parent_id: w.parent_folder_id.map(RemoteFolderId),
                    hidden: w.is_hidden,
                }
            }
        })
        .collect();
    Ok(Page {
        items,
        next_link: page.next_link,
        delta_link: page.delta_link,
        partial: Vec::new(),
    })
}

/// One `mailFolder`.
pub fn decode_folder(body: &[u8]) -> Result<RemoteFolder, GraphError> {
    let w: WireFolder = serde_json::from_slice(body).map_err(|e| malformed("folder", e))?;
    Ok(folder_from_wire(w))
}

/// A page of `messages` or `messages/delta`: items with `@removed` become
/// [`DeltaChange::Removed`].
pub fn decode_message_page(body: &[u8]) -> Result<Page<DeltaChange>, GraphError> {
    let page: WirePage<WireMessage> =
        serde_json::from_slice(body).map_err(|e| malformed("message page", e))?;
    let mut partial = Vec::new();
    let items = page
        .value
        .into_iter()
        .map(|w| {
            if w.removed.is_some() {
                DeltaChange::Removed(RemoteMessageId(w.id))
            } else {
                let m = message_from_wire(w);
                if m.absent.incomplete() {
                    partial.push(m.id.as_str().to_string());
                }
                DeltaChange::Upsert(m)
            }
        })
        .collect();
    Ok(Page {
        items,
        next_link: page.next_link,
        delta_link: page.delta_link,
        partial,
    })
}

/// One `message`.
pub fn decode_message(body: &[u8]) -> Result<RemoteMessage, GraphError> {
    let w: WireMessage = serde_json::from_slice(body).map_err(|e| malformed("message", e))?;
    Ok(message_from_wire(w))
}

/// The `Integer 0x0E08` size of a message answered with the extended
/// property expanded.
pub fn decode_message_size(body: &[u8]) -> Result<u64, GraphError> {
    decode_message(body)?
        .size
        .ok_or_else(|| GraphError::Malformed("message has no size property".into()))
}

/// An inner answer of `$batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReply {
    pub id: String,
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl BatchReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as bytes: base64 (how Graph carries non-JSON bodies), a
    /// plain string (the OData rule for `text/*`), or JSON re-serialised.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => {
                let is_json = self
                    .header("content-type")
                    .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
                if !is_json
                    && looks_like_base64(s)
                    && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s)
                {
                    return bytes;
                }
                s.as_bytes().to_vec()
            }
            Some(other) => serde_json::to_vec(other).unwrap_or_default(),
        }
    }

    /// The inner `Retry-After`, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
    }

    /// The inner error, classified like an outer one.
    pub fn error(&self) -> GraphError {
        let body = self.body_bytes();
        decode_error(self.status, &body)
    }
}

/// A MIME message never consists only of base64 characters (it has a colon
/// and spaces in its first header), so a strict base64 string is base64.
fn looks_like_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

#[derive(Deserialize)]
struct WireBatch {
    responses: Vec<WireBatchReply>,
}

#[derive(Deserialize)]
struct WireBatchReply {
    id: Value,
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    body: Option<Value>,
}

/// The answer to `POST /$batch`.
pub fn decode_batch_response(body: &[u8]) -> Result<Vec<BatchReply>, GraphError> {
    let batch: WireBatch = serde_json::from_slice(body).map_err(|e| malformed("batch", e))?;
    Ok(batch
        .responses
        .into_iter()
        .map(|r| BatchReply {
            id: match r.id {
                Value::String(s) => s,
                other => other.to_string(),
            },
            status: r.status,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k.to_ascii_lowercase(), v)
                })
                .collect(),
            body: r.body,
        })
        .collect())
}

#[derive(Deserialize)]
struct WireErrorEnvelope {
    error: WireError,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireError {
    code: Option<String>,
    message: Option<String>,
    inner_error: Option<Value>,
}

/// An error answer (any body, even empty or HTML) as a [`GraphError`].
pub fn decode_error(status: u16, body: &[u8]) -> GraphError {
    let parsed = serde_json::from_slice::<WireErrorEnvelope>(body).ok();
    let (code, message, request_id) = match parsed {
        Some(WireErrorEnvelope { error }) => (
            error.code.unwrap_or_default(),
            error.message.unwrap_or_default(),
            error
                .inner_error
                .as_ref()
                .and_then(|i| i.get("request-id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        // Not Graph's error shape: an HTML page from a proxy, or nothing.
        // Its start is the only clue, so keep it (printable characters only).
        None => {
            let text: String = String::from_utf8_lossy(&body[..body.len().min(300)])
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let message = if text.is_empty() {
                "an empty answer, not Graph's JSON error shape".to_string()
            } else {
                format!("not Graph's JSON error shape: {text}")
            };
            (String::new(), message, None)
        }
    };
    if is_delta_reset(status, &code) {
        return GraphError::DeltaReset;
    }
    GraphError::Api(ApiError {
        kind: classify(status, &code),
        status,
        code,
        message: message.chars().take(500).collect(),
        request_id,
    })
}

/// An upload session (`createUploadSession` answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub upload_url: String,
    pub next_expected_ranges: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUploadSession {
    upload_url: Option<String>,
    #[serde(default)]
    next_expected_ranges: Vec<String>,
}

pub fn decode_upload_session(body: &[u8]) -> Result<UploadSession, GraphError> {
    let w: WireUploadSession =
        serde_json::from_slice(body).map_err(|e| malformed("upload session", e))?;
    Ok(UploadSession {
        upload_url: w.upload_url.unwrap_or_default(),
        next_expected_ranges: w.next_expected_ranges,
    })
}

/// The start of the first `nextExpectedRanges` entry (`"3276800-"` → 3276800).
pub fn next_expected_start(ranges: &[String]) -> Option<u64> {
    ranges
        .first()
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.trim().parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_page_with_removed_and_links() {
        let body = br#"{"value":[
            {"id":"A","isRead":true,"flag":{"flagStatus":"flagged"},"categories":["x"],
             "receivedDateTime":"2026-01-02T03:04:05Z","from":{"emailAddress":{"name":"N","address":"n@x"}}},
            {"id":"B","@removed":{"reason":"deleted"}}],
            "@odata.deltaLink":"https://g/v1.0/me/mailFolders/i/messages/delta?$deltatoken=t"}"#;
        let page = decode_message_page(body).unwrap();
        assert_eq!(page.items.len(), 2);
        let DeltaChange::Upsert(m) = &page.items[0] else {
            panic!()
        };
        assert!(m.is_read);
        assert_eq!(m.flag, FlagStatus::Flagged);
        assert_eq!(m.from.as_ref().unwrap().address, "n@x");
        assert!(m.received.is_some());
        assert_eq!(
            page.items[1],
            DeltaChange::Removed(RemoteMessageId::new("B"))
        );
        assert!(page.delta_link.is_some() && page.next_link.is_none());
    }

    #[test]
    fn a_partial_update_leaves_out_what_it_does_not_name() {
        // isRead and isDraft present, flag and categories not: an absent
        // field is unchanged, never "not flagged" or "no categories".
        let body = br#"{"value":[{"id":"A","isRead":true,"isDraft":false,"parentFolderId":"F"}],
            "@odata.deltaLink":"https://g/d"}"#;
        let page = decode_message_page(body).unwrap();
        let DeltaChange::Upsert(m) = &page.items[0] else {
            panic!()
        };
        assert!(m.is_read);
        assert!(m.absent.flag && m.absent.categories && m.absent.last_verb);
        assert!(!m.absent.is_read && !m.absent.is_draft);
        // Without isDraft: a partial item to complete.
        let page = decode_message_page(br#"{"value":[{"id":"B","isRead":true}]}"#).unwrap();
        assert_eq!(page.partial, vec!["B".to_string()]);
        let full = br#"{"id":"A","isRead":false,"isDraft":false,"flag":{"flagStatus":"notFlagged"},
            "categories":[],"receivedDateTime":"2026-01-02T03:04:05Z"}"#;
        let m = decode_message(full).unwrap();
        assert!(!m.absent.incomplete() && m.absent.last_verb);
    }

    #[test]
    fn extended_properties_in_exchange_spelling() {
        let body = br#"{"id":"A","singleValueExtendedProperties":[
            {"id":"Integer 0xe08","value":"12345"},{"id":"INTEGER 0x1081","value":"104"}]}"#;
        let m = decode_message(body).unwrap();
        assert_eq!(m.size, Some(12345));
        assert!(m.forwarded && !m.answered);
        assert!(is_integer_property("Integer 0x0E08", 0xE08));
        assert!(!is_integer_property("String 0x0E08", 0xE08));
    }

    #[test]
    fn batch_bodies_base64_string_or_json() {
        let body = br#"{"responses":[
            {"id":"1","status":200,"headers":{"Content-Type":"text/plain"},"body":"U3ViamVjdDogaGkNCg0KYm9keQ=="},
            {"id":"2","status":200,"headers":{"Content-Type":"text/plain"},"body":"Subject: hi\r\n\r\nbody"},
            {"id":"3","status":429,"headers":{"Retry-After":"2"},"body":{"error":{"code":"TooManyRequests","message":"x"}}}]}"#;
        let replies = decode_batch_response(body).unwrap();
        assert_eq!(replies[0].body_bytes(), b"Subject: hi\r\n\r\nbody");
        assert_eq!(replies[1].body_bytes(), b"Subject: hi\r\n\r\nbody");
        assert_eq!(replies[2].retry_after(), Some(2));
        assert_eq!(replies[2].error().code(), Some("TooManyRequests"));
    }

    #[test]
    fn errors_from_any_body() {
        let e = decode_error(403, br#"{"error":{"code":"ErrorSendAsDenied","message":"no","innerError":{"request-id":"r1"}}}"#);
        assert_eq!(e.code(), Some("ErrorSendAsDenied"));
        assert!(matches!(decode_error(410, b""), GraphError::DeltaReset));
        assert_eq!(decode_error(502, b"<html>").status(), Some(502));
    }
}
