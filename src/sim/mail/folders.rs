//! Mail folders: list with paging, child folders, get, create, rename, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::SimState;
use super::model::{self, Folder, Mailbox};
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

use super::common::*;
use super::folder_delta::{check_select, selected};

pub(super) fn folder_page(
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
    let name = match query.get("$filter") {
        Some(filter) => Some(display_name_filter(filter)?),
        None => None,
    };
    let folders: Vec<&Folder> = mb
        .folders
        .iter()
        .filter(|f| f.parent_id == parent && (hidden || !f.hidden))
        .filter(|f| {
            name.as_ref()
                .is_none_or(|n| f.display_name.eq_ignore_ascii_case(n))
        })
        .collect();
    let top = top(query, 10)?;
    let skip = skip(query);
    let select = query.get("$select").map(String::as_str);
    if let Some(select) = select {
        check_select(select)?;
    }
    let expand = expand_children(query)?;
    let page: Vec<Value> = folders
        .iter()
        .skip(skip)
        .take(top)
        .map(|f| with_children(mb, selected(mb.folder_json(f), select), &f.id, expand))
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
        if let Some(filter) = query.get("$filter") {
            url.push_str("&$filter=");
            url.push_str(
                &percent_encoding::utf8_percent_encode(filter, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
        url
    });
    Ok(collection(
        format!("{}/v1.0/$metadata#mailFolders", base_url(state)),
        page,
        next,
    ))
}

/// `$expand` on mail folders: `childFolders`, a navigation property of
/// mailFolder (learn.microsoft.com/graph/api/resources/mailfolder,
/// "Relationships"; `$expand` per learn.microsoft.com/graph/query-parameters)
/// brings each folder's direct children inline. Anything else (`messages`,
/// nested options) is refused with 400 rather than ignored: whether and
/// how Graph expands a folder's messages is not something the simulator
/// claims to know.
fn expand_children(query: &QueryMap) -> Result<bool, GraphError> {
    match query.get("$expand").map(|e| e.trim()) {
        None => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("childFolders") => Ok(true),
        Some(e) => Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "Invalid $expand: the simulator supports $expand=childFolders on mail folders; not {e:?}."
            ),
        )),
    }
}

/// `body` with `childFolders` (the visible direct children of `id`) when
/// `expand`.
fn with_children(mb: &Mailbox, mut body: Value, id: &str, expand: bool) -> Value {
    if expand {
        let children: Vec<Value> = mb
            .folders
            .iter()
            .filter(|f| f.parent_id == id && !f.hidden)
            .map(|f| mb.folder_json(f))
            .collect();
        body["childFolders"] = json!(children);
    }
    body
}

/// The one `$filter` form clients use on folder lists,
/// `displayName eq 'Name'` (`''` for a quote; compared without regard to
/// case, as Exchange compares folder names). Any other filter is refused
/// with 400 rather than ignored: a filter silently dropped answers with
/// the wrong folder.
fn display_name_filter(filter: &str) -> Result<String, GraphError> {
    let refuse = || {
        GraphError::bad_request(
            "BadRequest",
            format!(
                "Invalid filter clause: the simulator supports displayName eq '…' on mail folders; not {filter:?}."
            ),
        )
    };
    let rest = filter.trim();
    let rest = rest
        .strip_prefix("displayName")
        .ok_or_else(refuse)?
        .trim_start();
    let rest = rest.strip_prefix("eq").ok_or_else(refuse)?.trim();
    let inner = rest
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .ok_or_else(refuse)?;
    if inner.replace("''", "").contains('\'') {
        return Err(refuse());
    }
    Ok(inner.replace("''", "'"))
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

/// `GET …/mailFolders/{id}`: Graph answers only what `$select` names
/// (and `id`), as for messages ("Use the $select query parameter").
pub async fn get_folder(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let folder = params.get("folder_id").cloned().unwrap_or_default();
    let select = query.get("$select").map(String::as_str);
    if let Some(select) = select {
        check_select(select)?;
    }
    let expand = expand_children(&query)?;
    with_mailbox(&state, &t, |mb| {
        let mut body = if mb.folder_id(&folder).as_deref() == Some(mb.root_id.as_str()) {
            with_children(mb, selected(mb.root_json(), select), &mb.root_id, expand)
        } else {
            let f = mb
                .folder(&folder)
                .ok_or_else(|| GraphError::not_found("folder"))?;
            with_children(mb, selected(mb.folder_json(f), select), &f.id, expand)
        };
        body["@odata.context"] = json!(format!(
            "{}/v1.0/$metadata#mailFolders/$entity",
            base_url(&state)
        ));
        Ok(Json(body).into_response())
    })
}

pub(super) fn display_name(body: &Value) -> Result<String, GraphError> {
    body.get("displayName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| GraphError::bad_request("ErrorInvalidRequest", "displayName is required."))
}

pub(super) fn create_folder_under(
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
        seq: mb.next_seq(),
    };
    let body = mb.folder_json(&folder);
    mb.folders.push(folder);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) fn json_body(body: &Bytes) -> Result<Value, GraphError> {
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
        let seq = mb.next_seq();
        let f = mb
            .folders
            .iter_mut()
            .find(|f| f.id == id)
            .ok_or_else(|| GraphError::not_found("folder"))?;
        f.display_name = name;
        f.seq = seq;
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
        // Children first, as their removal is reported before the parent's.
        for id in doomed.into_iter().rev() {
            let seq = mb.next_seq();
            mb.folder_tombstones.push((seq, id));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}
