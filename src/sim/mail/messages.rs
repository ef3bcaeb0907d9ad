//! Messages: list, get, `$value`, PATCH, DELETE, move, copy, permanentDelete,
//! and create from MIME (a draft) or JSON (`0x0E07` makes a non-draft).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::SimState;
use super::model::{self, Mailbox, Message, message_json};
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

use super::common::*;
use super::exchange::store_as_exchange;
use super::folders::*;
use super::query::{Order, check_combination, parse_count, parse_filter, parse_orderby};

pub(super) fn sorted_messages<'a>(mb: &'a Mailbox, folder: Option<&str>) -> Vec<&'a Message> {
    let mut list: Vec<&Message> = mb
        .messages
        .values()
        .filter(|m| folder.is_none_or(|f| m.folder_id == f))
        .collect();
    list.sort_by(|a, b| b.received.cmp(&a.received).then(b.seq.cmp(&a.seq)));
    list
}

pub(super) fn message_page(
    state: &SimState,
    params: &Params,
    query: &QueryMap,
    mb: &Mailbox,
    folder: Option<String>,
    path: &str,
) -> Result<Response, GraphError> {
    let sel = select(query)?;
    let expand = expanded_properties(query);
    let top = top(query, 10)?;
    let skip = skip(query);
    let filter = query.get("$filter").map(|f| parse_filter(f)).transpose()?;
    let order = query
        .get("$orderby")
        .map(|o| parse_orderby(o))
        .transpose()?;
    check_combination(filter.as_ref(), order)?;
    let count = parse_count(query.get("$count"))?;
    // Newest first unless asked otherwise (Graph's order for mail lists).
    let mut list = sorted_messages(mb, folder.as_deref());
    if order == Some(Order::OldestFirst) {
        list.reverse();
    }
    if let Some(filter) = &filter {
        list.retain(|m| filter.matches(m));
    }
    let page: Vec<Value> = list
        .iter()
        .skip(skip)
        .take(top)
        .map(|m| render(m, &sel, &expand))
        .collect();
    let next = (skip + top < list.len()).then(|| {
        let mut url = format!(
            "{}/v1.0/{}/{path}?$top={top}&$skip={}",
            base_url(state),
            prefix(params),
            skip + top
        );
        if let Some(s) = query.get("$select") {
            url.push_str(&format!("&$select={s}"));
        }
        // The other options of the first request ride along (Graph: "This
        // URL includes any query parameters you may have specified").
        for option in ["$filter", "$orderby", "$expand", "$count"] {
            if let Some(v) = query.get(option) {
                let v =
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
                url.push_str(&format!("&{option}={v}"));
            }
        }
        url
    });
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#messages", base_url(state)),
    });
    if count {
        body["@odata.count"] = json!(list.len());
    }
    body["value"] = Value::Array(page);
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    Ok(Json(body).into_response())
}

pub async fn list_folder_messages(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let id = mb
            .folder_id(&folder)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        message_page(
            &state,
            &params,
            &query,
            mb,
            Some(id.clone()),
            &format!("mailFolders/{id}/messages"),
        )
    })
}

pub async fn list_all_messages(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    with_mailbox(&state, &t, |mb| {
        message_page(&state, &params, &query, mb, None, "messages")
    })
}

pub(super) fn find<'a>(mb: &'a mut Mailbox, id: &str) -> Result<&'a mut Message, GraphError> {
    mb.messages
        .get_mut(id)
        .ok_or_else(|| GraphError::not_found("message"))
}

pub async fn get_message(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    let sel = select(&query)?;
    let expand = expanded_properties(&query);
    with_mailbox(&state, &t, |mb| {
        let m = find(mb, &id)?;
        Ok(Json(render(m, &sel, &expand)).into_response())
    })
}

pub async fn get_value(State(state): State<SimState>, caller: Caller, params: Params) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let m = find(mb, &id)?;
        // Exchange generates MIME from the item, attachments added through
        // Graph included (on a draft until it is sent, they are merged
        // into its MIME then).
        let mime = if m.is_draft {
            m.mime.clone()
        } else {
            model::mime_with_attachments(&m.mime, &m.attachments)
        };
        Ok(([(http::header::CONTENT_TYPE, "text/plain")], mime).into_response())
    })
}

pub async fn value_not_allowed() -> Response {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "ErrorInvalidRequest",
        "The OData request is not supported. Use /messages/{id}/$value.",
    )
    .into_response()
}

pub(super) fn apply_patch(m: &mut Message, body: &Value) {
    if let Some(read) = body.get("isRead").and_then(Value::as_bool) {
        m.is_read = read;
    }
    if let Some(status) = body.pointer("/flag/flagStatus").and_then(Value::as_str) {
        m.flag_status = status.to_string();
    }
    if let Some(cats) = body.get("categories").and_then(Value::as_array) {
        m.categories = cats
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    if let Some(subject) = body.get("subject").and_then(Value::as_str) {
        m.subject = subject.to_string();
    }
    if let Some(props) = body
        .get("singleValueExtendedProperties")
        .and_then(Value::as_array)
    {
        for p in props {
            if let (Some(id), Some(value)) = (p.get("id").and_then(Value::as_str), p.get("value")) {
                let value = value
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| value.to_string());
                let norm = model::normalise_property_id(id);
                // Exchange answers with its own spelling: lower-case hex.
                let spelling = exchange_spelling(id);
                m.extended.insert(norm, (spelling, value));
            }
        }
    }
}

pub(super) fn exchange_spelling(id: &str) -> String {
    let norm = model::normalise_property_id(id);
    let mut words = norm.splitn(2, ' ');
    let kind = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default();
    let mut kind_chars = kind.chars();
    let kind = kind_chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + kind_chars.as_str())
        .unwrap_or_default();
    format!("{kind} {rest}")
}

pub async fn patch_message(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    let body = json_body(&body)?;
    with_mailbox(&state, &t, |mb| {
        apply_patch(find(mb, &id)?, &body);
        let fields: Vec<&str> = body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        mb.touch_fields(&id, fields);
        let m = find(mb, &id)?;
        Ok(Json(message_json(m)).into_response())
    })
}

/// DELETE moves the item to Deleted Items (it is recoverable there);
/// deleting from Deleted Items removes it.
pub async fn delete_message(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let trash = mb
            .folder_id("deleteditems")
            .ok_or_else(|| GraphError::not_found("folder"))?;
        let current = find(mb, &id)?.folder_id.clone();
        if current == trash {
            mb.remove(&id);
        } else {
            move_within(mb, &id, &trash, immutable_ids(&headers))?;
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

pub async fn permanent_delete(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        mb.remove(&id)
            .ok_or_else(|| GraphError::not_found("message"))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

/// Move: a tombstone in the old folder; the same id with immutable ids,
/// a new one otherwise.
pub(super) fn move_within(
    mb: &mut Mailbox,
    id: &str,
    to: &str,
    immutable: bool,
) -> Result<String, GraphError> {
    let mut m = mb
        .remove(id)
        .ok_or_else(|| GraphError::not_found("message"))?;
    m.folder_id = to.to_string();
    if !immutable {
        m.id = model::new_id("AAMkM");
    }
    m.modified = Utc::now();
    Ok(mb.insert(m))
}

pub(super) fn destination(body: &Bytes, mb: &Mailbox) -> Result<String, GraphError> {
    let body = json_body(body)?;
    let dest = body
        .get("destinationId")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GraphError::bad_request("ErrorInvalidRequest", "destinationId is required.")
        })?;
    mb.folder(dest)
        .map(|f| f.id.clone())
        .ok_or_else(|| GraphError::not_found("destination folder"))
}

pub async fn move_message(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let to = destination(&body, mb)?;
        let new_id = move_within(mb, &id, &to, immutable_ids(&headers))?;
        let m = find(mb, &new_id)?;
        Ok((StatusCode::CREATED, Json(message_json(m))).into_response())
    })
}

pub async fn copy_message(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let to = destination(&body, mb)?;
        let mut copy = find(mb, &id)?.clone();
        copy.id = model::new_id("AAMkM");
        copy.folder_id = to;
        store_as_exchange(&state, &mut copy, false);
        let new_id = mb.insert(copy);
        let m = find(mb, &new_id)?;
        Ok((StatusCode::CREATED, Json(message_json(m))).into_response())
    })
}

pub(super) fn is_mime_request(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
}

/// The MIME of a MIME request, refused with 413 above
/// [`crate::sim::SimConfig::mime_request_limit`] (see there for the
/// sources). Nothing is sent or created then.
pub(super) fn decode_mime_request(state: &SimState, body: &Bytes) -> Result<Vec<u8>, GraphError> {
    let mime = decode_mime_body(body)?;
    if mime.len() > state.config().mime_request_limit {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request payload is larger than the limit of the service.",
        ));
    }
    Ok(mime)
}

pub(super) fn decode_mime_body(body: &Bytes) -> Result<Vec<u8>, GraphError> {
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| {
            GraphError::bad_request(
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        })
}

/// A message from the JSON message resource (read-only fields a re-POST
/// carries are ignored), with MIME generated for it.
pub(super) fn message_from_json(body: &Value, folder_id: String, sender: &str) -> Message {
    // PidTagMessageDeliveryTime (SystemTime 0x0E06) is receivedDateTime
    // ([MS-OXOMSG] 2.2.3.9); a receivedDateTime in the JSON is read-only
    // and kept only by this lenient simulator when no property says it.
    let received = super::created::time_property(body, "systemtime 0xe06")
        .or_else(|| {
            body.get("receivedDateTime")
                .and_then(Value::as_str)
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
        })
        .unwrap_or_else(Utc::now);
    let generated = format!("<{}@sim.graphgate>", uuid::Uuid::new_v4().simple());
    let mime = super::created::render(body, sender, &generated);
    let mut m = model::message_from_mime(model::new_id("AAMkM"), folder_id, mime, received);
    m.received = received;
    m.is_read = body.get("isRead").and_then(Value::as_bool).unwrap_or(false);
    if let Some(status) = body.pointer("/flag/flagStatus").and_then(Value::as_str) {
        m.flag_status = status.to_string();
    }
    if let Some(cats) = body.get("categories").and_then(Value::as_array) {
        m.categories = cats
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    // PR_MESSAGE_FLAGS at creation: without MSGFLAG_UNSENT (8) the item is
    // not a draft (the only way to make a non-draft item through v1.0).
    let flags = body
        .get("singleValueExtendedProperties")
        .and_then(Value::as_array)
        .and_then(|props| {
            props.iter().find_map(|p| {
                let id = p.get("id")?.as_str()?;
                (model::normalise_property_id(id) == "integer 0xe07")
                    .then(|| {
                        p.get("value").and_then(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .or_else(|| Some(v.to_string()))
                        })
                    })
                    .flatten()
            })
        })
        .and_then(|v| v.trim().parse::<i64>().ok());
    m.is_draft = flags.is_none_or(|f| f & 8 != 0);
    apply_patch(
        &mut m,
        &json!({"singleValueExtendedProperties": body.get("singleValueExtendedProperties").cloned().unwrap_or(json!([]))}),
    );
    m
}

pub(super) fn create(
    state: &SimState,
    t: &Target,
    folder: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    let message_in = |mb: &mut Mailbox| -> Result<Response, GraphError> {
        let folder_id = mb
            .folder_id(folder)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        let mut m = if is_mime_request(headers) {
            // Created from MIME: always a draft, in Drafts (graph-facts.md).
            let drafts = mb
                .folder_id("drafts")
                .ok_or_else(|| GraphError::not_found("folder"))?;
            let mut m = model::message_from_mime(
                model::new_id("AAMkM"),
                drafts,
                decode_mime_request(state, body)?,
                Utc::now(),
            );
            m.is_draft = true;
            m.is_read = true;
            m
        } else {
            let json = json_body(body)?;
            super::created::check(&json)?;
            let mut m = message_from_json(&json, folder_id, &t.upn);
            if folder.eq_ignore_ascii_case("drafts") {
                m.is_draft = true;
            }
            m
        };
        store_as_exchange(state, &mut m, false);
        let id = mb.insert(m);
        Ok((StatusCode::CREATED, Json(message_json(find(mb, &id)?))).into_response())
    };
    with_mailbox(state, t, message_in)
}

pub async fn create_message(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    create(&state, &t, "drafts", &headers, &body)
}

pub async fn create_in_folder(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    create(&state, &t, &folder, &headers, &body)
}
