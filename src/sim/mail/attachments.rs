//! Draft attachments, directly or through upload sessions (chunked PUTs).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use mail_parser::MimeHeaders;
use serde_json::{Value, json};

use super::SimState;
use super::model::{self};
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

use super::common::*;
use super::folders::*;
use super::messages::*;

/// Attachments below this go in one request; from it, upload sessions.
pub(super) const UPLOAD_MIN: usize = 3 * 1024 * 1024;
/// Largest attachment an upload session takes.
pub(super) const UPLOAD_MAX: usize = 150 * 1024 * 1024;
/// Largest chunk of one PUT.
pub(super) const CHUNK_MAX: usize = 4 * 1024 * 1024;

pub(super) fn attachment_from_json(body: &Value) -> Result<model::Attachment, GraphError> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("attachment")
        .to_string();
    let bytes = match body.get("contentBytes").and_then(Value::as_str) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                GraphError::bad_request("ErrorInvalidRequest", "contentBytes is not base64.")
            })?,
        None => Vec::new(),
    };
    Ok(model::Attachment {
        id: model::new_id("AAMkA"),
        name,
        content_type: body
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_string(),
        is_inline: body
            .get("isInline")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        content_id: body
            .get("contentId")
            .and_then(Value::as_str)
            .map(str::to_string),
        bytes,
    })
}

pub async fn add_attachment(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    if body.len() > MAX_REQUEST {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request payload is larger than the limit; use an upload session for attachments from 3 MB.",
        ));
    }
    let attachment = attachment_from_json(&json_body(&body)?)?;
    with_mailbox(&state, &t, |mb| {
        let m = find(mb, &id)?;
        let answer = attachment.json();
        // Inline attachments leave `hasAttachments` as it is (see
        // `model::counts_as_attachment`).
        m.has_attachments |= !attachment.is_inline;
        m.attachments.push(attachment);
        mb.touch(&id);
        Ok((StatusCode::CREATED, Json(answer)).into_response())
    })
}

/// An attachment that arrived inside the MIME, as Graph lists it. An
/// attached message (`message/rfc822`) is an `itemAttachment`: no
/// `contentBytes`, and its `item` (a navigation property) only with
/// `$expand=microsoft.graph.itemattachment/item` (graph-facts.md
/// "`hasAttachments` excludes inline attachments … `itemAttachment.item`";
/// learn.microsoft.com/graph/api/attachment-get, "Get the properties of an
/// item attachment and expand to include the item"). Other parts are
/// `fileAttachment`s, inline by the rule of `model::counts_as_attachment`.
fn mime_attachment(part: &mail_parser::MessagePart<'_>, expand_item: bool) -> Value {
    let name = part.attachment_name().unwrap_or("attachment").to_string();
    if let Some(inner) = part.message() {
        let raw = inner.raw_message().to_vec();
        let mut out = json!({
            "@odata.type": "#microsoft.graph.itemAttachment",
            "id": model::new_id("AAMkA"),
            "name": inner.subject().map(str::to_string).unwrap_or(name),
            "contentType": "message/rfc822",
            "size": raw.len(),
            "isInline": false,
        });
        if expand_item {
            let item = model::message_from_mime(
                model::new_id("AAMkM"),
                String::new(),
                raw,
                chrono::Utc::now(),
            );
            let mut item = model::message_json(&item);
            if let Some(o) = item.as_object_mut() {
                o.insert("@odata.type".into(), json!("#microsoft.graph.message"));
                o.remove("parentFolderId");
            }
            out["item"] = item;
        }
        return out;
    }
    model::Attachment {
        id: model::new_id("AAMkA"),
        name,
        content_type: part
            .content_type()
            .map(|c| match c.subtype() {
                Some(sub) => format!("{}/{}", c.ctype(), sub),
                None => c.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into()),
        is_inline: !model::counts_as_attachment(part),
        content_id: part.content_id().map(str::to_string),
        bytes: part.contents().to_vec(),
    }
    .json()
}

/// `$expand` on an attachment list: only the attached item, else 400.
fn expand_item(query: &QueryMap) -> Result<bool, GraphError> {
    match query.get("$expand").map(|e| e.trim()) {
        None => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("microsoft.graph.itemattachment/item") => Ok(true),
        Some(e) => Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "Invalid $expand: the simulator supports $expand=microsoft.graph.itemattachment/item on attachments; not {e:?}."
            ),
        )),
    }
}

pub async fn list_attachments(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let expand_item = expand_item(&query)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let m = find(mb, &id)?;
        let mut list: Vec<Value> = m.attachments.iter().map(model::Attachment::json).collect();
        // Attachments that arrived inside the MIME.
        if list.is_empty()
            && let Some(parsed) = mail_parser::MessageParser::default().parse(&m.mime)
        {
            for part in parsed.attachments() {
                list.push(mime_attachment(part, expand_item));
            }
        }
        Ok(collection(
            format!("{}/v1.0/$metadata#attachments", base_url(&state)),
            list,
            None,
        ))
    })
}

pub async fn create_upload_session(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    let body = json_body(&body)?;
    let item = body.get("AttachmentItem").cloned().unwrap_or(Value::Null);
    let size = item.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
    if size < UPLOAD_MIN {
        return Err(GraphError::bad_request(
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        ));
    }
    if size > UPLOAD_MAX {
        return Err(GraphError::bad_request(
            "ErrorMessageSizeExceeded",
            "The attachment exceeds the maximum supported size.",
        ));
    }
    let mut template = attachment_from_json(&item)?;
    template.bytes = Vec::with_capacity(size.min(16 * 1024 * 1024));
    with_mailbox(&state, &t, |mb| find(mb, &id).map(|_| ()))?;
    let session = model::new_id("Up");
    let expires = Utc::now() + chrono::Duration::hours(24);
    state.mail().start_upload(
        session.clone(),
        super::Upload {
            user_id: t.user_id.clone(),
            message_id: id,
            size,
            attachment: template,
        },
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "@odata.context": format!("{}/v1.0/$metadata#microsoft.graph.uploadSession", base_url(&state)),
            "uploadUrl": format!("{}/_upload/{session}", base_url(&state)),
            "expirationDateTime": model::timestamp(&expires),
            "nextExpectedRanges": ["0-"],
        })),
    )
        .into_response())
}

pub(super) fn parse_content_range(headers: &HeaderMap) -> Option<(usize, usize, usize)> {
    let v = headers.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// `PUT uploadUrl`: chunks in order (no Authorization header: the URL is
/// the credential). 200 with `nextExpectedRanges` until the last, then 201.
pub async fn upload_put(
    State(state): State<SimState>,
    Path(session): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let err = |status: StatusCode, code: &'static str, msg: &str| {
        GraphError::new(status, code, msg).into_response()
    };
    let Some((start, end, total)) = parse_content_range(&headers) else {
        return err(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "A valid Content-Range header is required.",
        );
    };
    if body.len() > CHUNK_MAX || end < start || end - start + 1 != body.len() {
        return err(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The chunk does not match its Content-Range or is larger than 4 MB.",
        );
    }
    let outcome = state.mail().upload_chunk(&session, start, total, &body);
    match outcome {
        UploadStep::Unknown => err(StatusCode::NOT_FOUND, "ItemNotFound", "The upload session does not exist or has expired."),
        UploadStep::OutOfOrder(expected) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            Json(json!({"error": {"code": "InvalidRange", "message": "The range is not the next expected one."}, "nextExpectedRanges": [format!("{expected}-")]})),
        )
            .into_response(),
        UploadStep::More(next) => (
            StatusCode::OK,
            Json(json!({
                "expirationDateTime": model::timestamp(&(Utc::now() + chrono::Duration::hours(24))),
                "nextExpectedRanges": [format!("{next}-")],
            })),
        )
            .into_response(),
        UploadStep::Done(upload) => {
            let location = format!("{}/v1.0/users/{}/messages/{}/attachments/{}", base_url(&state), upload.user_id, upload.message_id, upload.attachment.id);
            let added = state.mail().with(&upload.user_id, |mb| {
                let ok = match mb.messages.get_mut(&upload.message_id) {
                    Some(m) => {
                        m.attachments.push(upload.attachment.clone());
                        m.has_attachments |= !upload.attachment.is_inline;
                        true
                    }
                    None => false,
                };
                if ok {
                    mb.touch(&upload.message_id);
                }
                ok
            });
            if added != Some(true) {
                return err(StatusCode::NOT_FOUND, "ErrorItemNotFound", "The message of this upload session is gone.");
            }
            (StatusCode::CREATED, [(http::header::LOCATION, location)]).into_response()
        }
    }
}

pub async fn upload_delete(State(state): State<SimState>, Path(session): Path<String>) -> Response {
    state.mail().cancel_upload(&session);
    StatusCode::NO_CONTENT.into_response()
}

/// What a PUT did to an upload session.
pub enum UploadStep {
    Unknown,
    OutOfOrder(usize),
    More(usize),
    Done(super::Upload),
}
