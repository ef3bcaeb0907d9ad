//! Handlers of the simulated Graph mail routes.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use mail_parser::MimeHeaders;
use serde_json::{Value, json};

use super::model::{self, Folder, MESSAGE_PROPERTIES, Mailbox, Message, message_json};
use super::{ExternalDelivery, SimState};
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

type Params = Path<HashMap<String, String>>;
type QueryMap = Query<HashMap<String, String>>;
type Answer = Result<Response, GraphError>;

/// Graph's request size limit (about 4 MB).
const MAX_REQUEST: usize = 4 * 1024 * 1024;
/// Exchange Online's default message size limit.
const MAX_MESSAGE: usize = 35 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Need {
    Read,
    Write,
    Send,
}

/// The mailbox a request addresses, after the access checks Graph makes.
struct Target {
    user_id: String,
    upn: String,
}

fn target(
    state: &SimState,
    caller: &Caller,
    params: &Params,
    need: Need,
) -> Result<Target, GraphError> {
    let tenant = state.tenant();
    let user = match params.get("id") {
        None => {
            let Some(uid) = &caller.user_id else {
                return Err(GraphError::bad_request(
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                ));
            };
            tenant.user(uid)
        }
        Some(id) => tenant.user(id),
    };
    let Some(user) = user else {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "ErrorInvalidUser",
            "The requested user is invalid.",
        ));
    };
    if !user.mailbox_enabled {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        ));
    }
    let permission = match need {
        Need::Read => "Mail.Read",
        Need::Write => "Mail.ReadWrite",
        Need::Send => "Mail.Send",
    };
    let allowed = match &caller.user_id {
        None => caller.has(permission),
        Some(uid) if uid.eq_ignore_ascii_case(&user.id) => caller.has(permission),
        Some(uid) => {
            let me = tenant.user(uid);
            let rights = me.is_some_and(|me| match need {
                Need::Send => me.send_as.iter().any(|m| m.eq_ignore_ascii_case(&user.upn)),
                _ => me
                    .full_access
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&user.upn)),
            });
            rights && caller.has(&format!("{permission}.Shared"))
        }
    };
    if !allowed {
        return Err(GraphError::access_denied());
    }
    Ok(Target {
        user_id: user.id.clone(),
        upn: user.upn.clone(),
    })
}

fn with_mailbox<R>(
    state: &SimState,
    target: &Target,
    f: impl FnOnce(&mut Mailbox) -> Result<R, GraphError>,
) -> Result<R, GraphError> {
    state
        .mail()
        .with(&target.user_id, f)
        .unwrap_or_else(|| Err(GraphError::not_found("mailbox")))
}

fn base_url(state: &SimState) -> String {
    state.config().public_url.trim_end_matches('/').to_string()
}

fn prefix(params: &Params) -> String {
    match params.get("id") {
        Some(id) => format!("users/{id}"),
        None => "me".into(),
    }
}

fn immutable_ids(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("IdType=\"ImmutableId\""))
}

fn max_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .and_then(|n| n.trim().parse().ok())
}

fn top(query: &QueryMap, default: usize) -> Result<usize, GraphError> {
    match query.get("$top") {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(GraphError::bad_request(
                "ErrorInvalidUrlQuery",
                format!("Invalid value '{t}' for $top; it must be between 1 and 1000."),
            )),
        },
    }
}

fn skip(query: &QueryMap) -> usize {
    query.get("$skip").and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `$select` checked against the message type's properties.
fn select(query: &QueryMap) -> Result<Option<Vec<String>>, GraphError> {
    let Some(list) = query.get("$select") else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !MESSAGE_PROPERTIES.contains(&name) {
            return Err(GraphError::bad_request(
                "RequestBroker--ParseUri",
                format!(
                    "Could not find a property named '{name}' on type 'Microsoft.OutlookServices.Message'."
                ),
            ));
        }
        fields.push(name.to_string());
    }
    Ok(Some(fields))
}

/// Extended properties named in `$expand=singleValueExtendedProperties($filter=id eq '…' or …)`.
fn expanded_properties(query: &QueryMap) -> Option<Vec<String>> {
    let expand = query.get("$expand")?;
    if !expand.starts_with("singleValueExtendedProperties") {
        return None;
    }
    Some(
        expand
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(model::normalise_property_id)
            .collect(),
    )
}

fn render(m: &Message, select: &Option<Vec<String>>, expand: &Option<Vec<String>>) -> Value {
    let full = message_json(m);
    let mut out = match select {
        None => full,
        Some(fields) => {
            let mut o = serde_json::Map::new();
            o.insert("@odata.etag".into(), full["@odata.etag"].clone());
            o.insert("id".into(), full["id"].clone());
            for f in fields {
                if f == "internetMessageHeaders" {
                    o.insert(f.clone(), headers_json(&m.mime));
                } else if let Some(v) = full.get(f) {
                    o.insert(f.clone(), v.clone());
                }
            }
            Value::Object(o)
        }
    };
    if let Some(ids) = expand {
        let props: Vec<Value> = ids
            .iter()
            .filter_map(|id| {
                property(m, id).map(|(spelling, value)| json!({"id": spelling, "value": value}))
            })
            .collect();
        if !props.is_empty() {
            out["singleValueExtendedProperties"] = Value::Array(props);
        }
    }
    out
}

/// An extended property's Exchange spelling and value; the size property
/// is computed (Exchange's storage size: more than the MIME length).
fn property(m: &Message, normalised: &str) -> Option<(String, String)> {
    if normalised == "integer 0xe08" {
        return Some(("Integer 0xe08".into(), (m.mime.len() + 412).to_string()));
    }
    m.extended.get(normalised).cloned()
}

fn headers_json(mime: &[u8]) -> Value {
    let parsed = mail_parser::MessageParser::default().parse_headers(mime);
    let list = parsed
        .map(|p| {
            p.headers_raw()
                .map(|(name, value)| json!({"name": name, "value": value.trim()}))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Value::Array(list)
}

fn collection(context: String, items: Vec<Value>, next: Option<String>) -> Response {
    let mut body = json!({"@odata.context": context, "value": items});
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    Json(body).into_response()
}

// ---- folders ---------------------------------------------------------------

fn folder_page(
    state: &SimState,
    params: &Params,
    query: &QueryMap,
    mb: &Mailbox,
    parent: &str,
    path: &str,
) -> Result<Response, GraphError> {
    let hidden = query
        .get("includeHiddenFolders")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let folders: Vec<&Folder> = mb
        .folders
        .iter()
        .filter(|f| f.parent_id == parent && (hidden || !f.hidden))
        .collect();
    let top = top(query, 10)?;
    let skip = skip(query);
    let page: Vec<Value> = folders
        .iter()
        .skip(skip)
        .take(top)
        .map(|f| mb.folder_json(f))
        .collect();
    let next = (skip + top < folders.len()).then(|| {
        let mut url = format!(
            "{}/v1.0/{}/{path}?$top={top}&$skip={}",
            base_url(state),
            prefix(params),
            skip + top
        );
        if hidden {
            url.push_str("&includeHiddenFolders=true");
        }
        url
    });
    Ok(collection(
        format!("{}/v1.0/$metadata#mailFolders", base_url(state)),
        page,
        next,
    ))
}

pub async fn list_folders(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    with_mailbox(&state, &t, |mb| {
        let root = mb.root_id.clone();
        folder_page(&state, &params, &query, mb, &root, "mailFolders")
    })
}

pub async fn list_child_folders(
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
        folder_page(
            &state,
            &params,
            &query,
            mb,
            &id,
            &format!("mailFolders/{id}/childFolders"),
        )
    })
}

pub async fn get_folder(State(state): State<SimState>, caller: Caller, params: Params) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let f = mb
            .folder(&folder)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        let mut body = mb.folder_json(f);
        body["@odata.context"] = json!(format!(
            "{}/v1.0/$metadata#mailFolders/$entity",
            base_url(&state)
        ));
        Ok(Json(body).into_response())
    })
}

fn display_name(body: &Value) -> Result<String, GraphError> {
    body.get("displayName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| GraphError::bad_request("ErrorInvalidRequest", "displayName is required."))
}

fn create_folder_under(
    mb: &mut Mailbox,
    parent: String,
    name: String,
) -> Result<Response, GraphError> {
    if mb
        .folders
        .iter()
        .any(|f| f.parent_id == parent && f.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(GraphError::new(
            StatusCode::CONFLICT,
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        ));
    }
    let folder = Folder {
        id: model::new_id("AAMkF"),
        parent_id: parent,
        display_name: name,
        well_known: None,
        hidden: false,
    };
    let body = mb.folder_json(&folder);
    mb.folders.push(folder);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn json_body(body: &Bytes) -> Result<Value, GraphError> {
    serde_json::from_slice(body).map_err(|e| {
        GraphError::bad_request(
            "BadRequest",
            format!("Unable to read JSON request payload: {e}"),
        )
    })
}

pub async fn create_folder(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let name = display_name(&json_body(&body)?)?;
    with_mailbox(&state, &t, |mb| {
        let root = mb.root_id.clone();
        create_folder_under(mb, root, name)
    })
}

pub async fn create_child_folder(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let name = display_name(&json_body(&body)?)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let parent = mb
            .folder_id(&folder)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        create_folder_under(mb, parent, name)
    })
}

pub async fn rename_folder(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let name = display_name(&json_body(&body)?)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let id = mb
            .folder(&folder)
            .map(|f| f.id.clone())
            .ok_or_else(|| GraphError::not_found("folder"))?;
        let f = mb
            .folders
            .iter_mut()
            .find(|f| f.id == id)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        f.display_name = name;
        let f = f.clone();
        Ok(Json(mb.folder_json(&f)).into_response())
    })
}

pub async fn delete_folder(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Write)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let f = mb
            .folder(&folder)
            .cloned()
            .ok_or_else(|| GraphError::not_found("folder"))?;
        if f.well_known.is_some() {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "ErrorDeleteDistinguishedFolder",
                "Distinguished folders cannot be deleted.",
            ));
        }
        // The folder and everything under it.
        let mut doomed = vec![f.id.clone()];
        let mut i = 0;
        while i < doomed.len() {
            let parent = doomed[i].clone();
            doomed.extend(
                mb.folders
                    .iter()
                    .filter(|x| x.parent_id == parent)
                    .map(|x| x.id.clone()),
            );
            i += 1;
        }
        let ids: Vec<String> = mb
            .messages
            .values()
            .filter(|m| doomed.contains(&m.folder_id))
            .map(|m| m.id.clone())
            .collect();
        for id in ids {
            mb.remove(&id);
        }
        mb.folders.retain(|x| !doomed.contains(&x.id));
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

// ---- messages --------------------------------------------------------------

fn sorted_messages<'a>(mb: &'a Mailbox, folder: Option<&str>) -> Vec<&'a Message> {
    let mut list: Vec<&Message> = mb
        .messages
        .values()
        .filter(|m| folder.is_none_or(|f| m.folder_id == f))
        .collect();
    list.sort_by(|a, b| b.received.cmp(&a.received).then(b.seq.cmp(&a.seq)));
    list
}

fn message_page(
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
    let list = sorted_messages(mb, folder.as_deref());
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
        url
    });
    Ok(collection(
        format!("{}/v1.0/$metadata#messages", base_url(state)),
        page,
        next,
    ))
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

fn find<'a>(mb: &'a mut Mailbox, id: &str) -> Result<&'a mut Message, GraphError> {
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
        Ok(([(http::header::CONTENT_TYPE, "text/plain")], m.mime.clone()).into_response())
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

fn apply_patch(m: &mut Message, body: &Value) {
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

fn exchange_spelling(id: &str) -> String {
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
        mb.touch(&id);
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
fn move_within(
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

fn destination(body: &Bytes, mb: &Mailbox) -> Result<String, GraphError> {
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
        let new_id = mb.insert(copy);
        let m = find(mb, &new_id)?;
        Ok((StatusCode::CREATED, Json(message_json(m))).into_response())
    })
}

fn is_mime_request(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
}

fn decode_mime_body(body: &Bytes) -> Result<Vec<u8>, GraphError> {
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

fn recipients(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| {
                    let address = r.pointer("/emailAddress/address")?.as_str()?.to_string();
                    let name = r
                        .pointer("/emailAddress/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Some((name.to_string(), address))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A message from the JSON message resource (read-only fields a re-POST
/// carries are ignored), with MIME generated for it.
fn message_from_json(body: &Value, folder_id: String, sender: &str) -> Message {
    let subject = body
        .get("subject")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let text = body
        .pointer("/body/content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let to = recipients(body.get("toRecipients"));
    let cc = recipients(body.get("ccRecipients"));
    let bcc = recipients(body.get("bccRecipients"));
    let from = recipients(
        body.get("from")
            .map(|f| Value::Array(vec![f.clone()]))
            .as_ref(),
    )
    .into_iter()
    .next()
    .unwrap_or_else(|| (String::new(), sender.to_string()));
    let received = body
        .get("receivedDateTime")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let mut builder = mail_builder::MessageBuilder::new()
        .from((from.0.as_str(), from.1.as_str()))
        .subject(subject.as_str())
        .text_body(text.as_str());
    let addr = |l: &[(String, String)]| -> Vec<(String, String)> { l.to_vec() };
    if !to.is_empty() {
        builder = builder.to(addr(&to));
    }
    if !cc.is_empty() {
        builder = builder.cc(addr(&cc));
    }
    if !bcc.is_empty() {
        builder = builder.bcc(addr(&bcc));
    }
    let mime = builder.write_to_vec().unwrap_or_default();
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

fn create(state: &SimState, t: &Target, folder: &str, headers: &HeaderMap, body: &Bytes) -> Answer {
    let message_in = |mb: &mut Mailbox| -> Result<Response, GraphError> {
        let folder_id = mb
            .folder_id(folder)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        let m = if is_mime_request(headers) {
            // Created from MIME: always a draft, in Drafts (graph-facts.md).
            let drafts = mb
                .folder_id("drafts")
                .ok_or_else(|| GraphError::not_found("folder"))?;
            let mut m = model::message_from_mime(
                model::new_id("AAMkM"),
                drafts,
                decode_mime_body(body)?,
                Utc::now(),
            );
            m.is_draft = true;
            m.is_read = true;
            m
        } else {
            let mut m = message_from_json(&json_body(body)?, folder_id, &t.upn);
            if folder.eq_ignore_ascii_case("drafts") {
                m.is_draft = true;
            }
            m
        };
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

// ---- sending ---------------------------------------------------------------

/// Deliver `m` (sent by `t`): a copy without Bcc to every tenant recipient's
/// Inbox, an NDR for unknown addresses in the tenant's domains, external
/// addresses recorded, and the sender's copy in Sent Items.
fn deliver(state: &SimState, t: &Target, mut m: Message, save: bool) -> Result<(), GraphError> {
    let tenant = state.tenant();
    if m.to.is_empty() && m.cc.is_empty() && m.bcc.is_empty() {
        return Err(GraphError::bad_request(
            "ErrorInvalidRecipients",
            "A message can't be sent because it contains no recipients.",
        ));
    }
    if m.mime.len() > MAX_MESSAGE {
        return Err(GraphError::bad_request(
            "ErrorMessageSizeExceeded",
            "The message exceeds the maximum supported size.",
        ));
    }
    if let Some((_, from)) = &m.from {
        let sender = tenant.user(&t.user_id);
        let own = sender.is_some_and(|u| {
            u.upn.eq_ignore_ascii_case(from)
                || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(from))
        });
        let send_as =
            sender.is_some_and(|u| u.send_as.iter().any(|s| s.eq_ignore_ascii_case(from)));
        if !own && !send_as {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.",
            ));
        }
    }
    let delivered_mime = model::strip_bcc(&m.mime);
    let mut everyone: Vec<String> =
        m.to.iter()
            .chain(&m.cc)
            .chain(&m.bcc)
            .map(|(_, a)| a.clone())
            .collect();
    everyone.sort_by_key(|a| a.to_ascii_lowercase());
    everyone.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let mut unknown = Vec::new();
    for address in everyone {
        match tenant.user_by_address(&address) {
            Some(user) if user.mailbox_enabled => {
                let mut copy = model::message_from_mime(
                    model::new_id("AAMkM"),
                    String::new(),
                    delivered_mime.clone(),
                    Utc::now(),
                );
                copy.bcc.clear();
                state.mail().with(&user.id, |mb| {
                    if let Some(inbox) = mb.folder_id("inbox") {
                        copy.folder_id = inbox;
                        mb.insert(copy);
                    }
                });
            }
            _ => {
                let domain = address.rsplit('@').next().unwrap_or_default();
                if tenant
                    .domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain))
                {
                    unknown.push(address);
                } else {
                    state.mail().record_external(ExternalDelivery {
                        from: t.upn.clone(),
                        to: address,
                        mime: delivered_mime.clone(),
                    });
                }
            }
        }
    }
    state.mail().with(&t.user_id, |mb| {
        if !unknown.is_empty() {
            let ndr = format!(
                "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.com>\r\nTo: {}\r\nSubject: Undeliverable: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour message couldn't be delivered to {} because the address couldn't be found.\r\n",
                t.upn,
                m.subject,
                unknown.join(", ")
            );
            if let Some(inbox) = mb.folder_id("inbox") {
                let n = model::message_from_mime(model::new_id("AAMkM"), inbox, ndr.into_bytes(), Utc::now());
                mb.insert(n);
            }
        }
        if save && let Some(sent) = mb.folder_id("sentitems") {
            m.folder_id = sent;
            m.is_draft = false;
            m.is_read = true;
            m.id = model::new_id("AAMkM");
            mb.insert(m);
        }
    });
    Ok(())
}

pub async fn send_mail(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Send)?;
    if body.len() > MAX_REQUEST {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request payload is larger than the limit of the service (about 4 MB).",
        ));
    }
    let (message, save) = if is_mime_request(&headers) {
        let mime = decode_mime_body(&body)?;
        let save = query
            .get("saveToSentItems")
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
        (
            model::message_from_mime(model::new_id("AAMkM"), String::new(), mime, Utc::now()),
            save,
        )
    } else {
        let body = json_body(&body)?;
        let message = body.get("message").ok_or_else(|| {
            GraphError::bad_request(
                "ErrorInvalidRequest",
                "The 'message' parameter is required.",
            )
        })?;
        let save = body
            .get("saveToSentItems")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        (message_from_json(message, String::new(), &t.upn), save)
    };
    deliver(&state, &t, message, save)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn send_draft(State(state): State<SimState>, caller: Caller, params: Params) -> Answer {
    let t = target(&state, &caller, &params, Need::Send)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    let draft = with_mailbox(&state, &t, |mb| {
        let m = find(mb, &id)?;
        if !m.is_draft {
            return Err(GraphError::bad_request(
                "ErrorInvalidOperation",
                "Only drafts can be sent.",
            ));
        }
        Ok(mb.remove(&id))
    })?
    .ok_or_else(|| GraphError::not_found("message"))?;
    let mut draft = draft;
    if !draft.attachments.is_empty() {
        draft.mime = model::mime_with_attachments(&draft.mime, &draft.attachments);
    }
    deliver(&state, &t, draft, true)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---- delta -----------------------------------------------------------------

/// What a delta or skip token carries.
#[derive(serde::Serialize, serde::Deserialize)]
struct DeltaCursor {
    folder: String,
    /// Changes after this sequence number…
    since: u64,
    /// …up to this one (fixed at the start of a round).
    upto: u64,
    /// Page position: changes after this sequence number.
    after: u64,
    epoch: u64,
    select: Option<String>,
    page: usize,
}

fn encode_cursor(c: &DeltaCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str) -> Option<DeltaCursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub async fn delta(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
    headers: HeaderMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    let epoch = state.mail().delta_epoch();
    let gone = || {
        GraphError::new(
            StatusCode::GONE,
            "SyncStateNotFound",
            "The sync state generation is not found. Restart the sync without a state token.",
        )
    };
    let token = query.get("$deltatoken").or_else(|| query.get("$skiptoken"));
    let cursor = match token {
        Some(tok) => {
            let c = decode_cursor(tok).ok_or_else(gone)?;
            if c.epoch != epoch {
                return Err(gone());
            }
            Some(c)
        }
        None => None,
    };
    if cursor.is_none() {
        select(&query)?;
    }
    let page_size = max_page_size(&headers).unwrap_or(10).clamp(1, 1000);
    with_mailbox(&state, &t, |mb| {
        let folder_id = mb
            .folder_id(&folder)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        let mut c = match cursor {
            Some(mut c) if query.contains_key("$deltatoken") => {
                // A new round from a delta link.
                c.since = c.upto;
                c.upto = mb.seq;
                c.after = c.since;
                c.page = 0;
                c
            }
            Some(c) => c,
            None => DeltaCursor {
                folder: folder_id.clone(),
                since: 0,
                upto: mb.seq,
                after: 0,
                epoch,
                select: query.get("$select").cloned(),
                page: 0,
            },
        };
        if c.folder != folder_id {
            return Err(gone());
        }
        let sel = c
            .select
            .as_ref()
            .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
        // Changes in (after, upto]: live messages of the folder, and, after
        // the first round, tombstones of messages that left it.
        let mut changes: Vec<(u64, Value)> = mb
            .messages
            .values()
            .filter(|m| m.folder_id == folder_id && m.seq > c.after && m.seq <= c.upto)
            .map(|m| (m.seq, render(m, &sel, &None)))
            .collect();
        if c.since > 0 {
            changes.extend(
                mb.tombstones
                    .iter()
                    .filter(|(seq, f, _)| *f == folder_id && *seq > c.after && *seq <= c.upto)
                    .map(|(seq, _, id)| {
                        (*seq, json!({"id": id, "@removed": {"reason": "deleted"}}))
                    }),
            );
        }
        changes.sort_by_key(|(seq, _)| *seq);
        let more = changes.len() > page_size;
        changes.truncate(page_size);
        if let Some((last, _)) = changes.last() {
            c.after = *last;
        }
        let base = format!(
            "{}/v1.0/{}/mailFolders/{}/messages/delta",
            base_url(&state),
            prefix(&params),
            folder_id
        );
        let items: Vec<Value> = changes.into_iter().map(|(_, v)| v).collect();
        let mut body = json!({
            "@odata.context": format!("{}/v1.0/$metadata#Collection(message)", base_url(&state)),
            "value": items,
        });
        if more {
            c.page += 1;
            body["@odata.nextLink"] = json!(format!("{base}?$skiptoken={}", encode_cursor(&c)));
        } else {
            body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={}", encode_cursor(&c)));
        }
        Ok(Json(body).into_response())
    })
}

// ---- controls --------------------------------------------------------------

pub async fn control_deliver(
    State(state): State<SimState>,
    query: QueryMap,
    body: Bytes,
) -> Response {
    let Some(to) = query.get("to") else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "give ?to=UPN"})),
        )
            .into_response();
    };
    let Some(user) = state.tenant().user_by_address(to) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no user {to}")})),
        )
            .into_response();
    };
    let folder = query
        .get("folder")
        .cloned()
        .unwrap_or_else(|| "inbox".into());
    match state.mail().deliver(&user.id, &folder, body.to_vec()) {
        Some(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such mailbox or folder"})),
        )
            .into_response(),
    }
}

pub async fn control_expire_delta(State(state): State<SimState>) -> Response {
    state.mail().expire_delta_tokens();
    StatusCode::NO_CONTENT.into_response()
}

pub async fn control_outbound(State(state): State<SimState>) -> Response {
    let list: Vec<Value> = state
        .mail()
        .external_deliveries()
        .into_iter()
        .map(|d| json!({"from": d.from, "to": d.to, "mime": String::from_utf8_lossy(&d.mime)}))
        .collect();
    Json(json!({"value": list})).into_response()
}

// ---- attachments and upload sessions ---------------------------------------

/// Attachments below this go in one request; from it, upload sessions.
const UPLOAD_MIN: usize = 3 * 1024 * 1024;
/// Largest attachment an upload session takes.
const UPLOAD_MAX: usize = 150 * 1024 * 1024;
/// Largest chunk of one PUT.
const CHUNK_MAX: usize = 4 * 1024 * 1024;

fn attachment_from_json(body: &Value) -> Result<model::Attachment, GraphError> {
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
        m.attachments.push(attachment);
        m.has_attachments = true;
        mb.touch(&id);
        Ok((StatusCode::CREATED, Json(answer)).into_response())
    })
}

pub async fn list_attachments(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let id = params.get("message_id").cloned().unwrap_or_default();
    with_mailbox(&state, &t, |mb| {
        let m = find(mb, &id)?;
        let mut list: Vec<Value> = m.attachments.iter().map(model::Attachment::json).collect();
        // Attachments that arrived inside the MIME.
        if list.is_empty()
            && let Some(parsed) = mail_parser::MessageParser::default().parse(&m.mime)
        {
            for part in parsed.attachments() {
                let a = model::Attachment {
                    id: model::new_id("AAMkA"),
                    name: part.attachment_name().unwrap_or("attachment").to_string(),
                    content_type: part
                        .content_type()
                        .map(|c| match c.subtype() {
                            Some(sub) => format!("{}/{}", c.ctype(), sub),
                            None => c.ctype().to_string(),
                        })
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    is_inline: false,
                    content_id: part.content_id().map(str::to_string),
                    bytes: part.contents().to_vec(),
                };
                list.push(a.json());
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

fn parse_content_range(headers: &HeaderMap) -> Option<(usize, usize, usize)> {
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
                        m.has_attachments = true;
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
