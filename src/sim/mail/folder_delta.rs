//! The folder hierarchy delta, `GET /me/mailFolders/delta` (Graph's
//! "mailFolder: delta"): every folder of the mailbox, nested ones too, in
//! one flat collection; pages of `Prefer: odata.maxpagesize` (default 10)
//! with `@odata.nextLink`, a final `@odata.deltaLink`; query options
//! (`$select`, `id` always returned) only on the first request, carried in
//! the tokens; later rounds report created and renamed folders and
//! `{"id", "@removed": {"reason": "deleted"}}` for deleted ones; expired
//! tokens answer 410 Gone, as message delta does. The hierarchy's sync
//! states expire as a folder's do: a delta or skip token that
//! [`KEPT_GENERATIONS`] newer rounds of the hierarchy have pushed out of
//! Exchange's delta-token cache answers 410 `SyncStateNotFound`
//! (learn.microsoft.com/graph/delta-query-overview, "Token duration":
//! "For Outlook entities (message, mailFolder, event, contact, …) the upper
//! limit is not fixed; it's dependent on the size of the internal delta
//! token cache … the older delta tokens are deleted"; graph-facts.md
//! "Sync-state expiry").
//!
//! Changes of a folder's counts (`totalItemCount`, `unreadItemCount`,
//! `childFolderCount`) do not count as changes of the folder here: whether
//! Graph reports them is not documented, so a client cannot rely on it.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::SimState;
use super::delta::KEPT_GENERATIONS;
use super::model::Mailbox;
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

use super::common::*;

/// The mailFolder properties `$select` may name.
const FOLDER_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "isHidden",
];

/// What a folder delta or skip token carries.
#[derive(serde::Serialize, serde::Deserialize)]
struct HierarchyCursor {
    /// Marks a hierarchy token (a message delta token does not decode).
    hierarchy: bool,
    since: u64,
    upto: u64,
    after: u64,
    epoch: u64,
    select: Option<String>,
    /// The hierarchy's sync generation this round belongs to.
    #[serde(default)]
    generation: u64,
}

/// The key of the hierarchy's generations in `Mailbox::delta_generations`
/// (message delta keys them by folder id, which is never empty).
const HIERARCHY: &str = "";

fn encode(c: &HierarchyCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode(s: &str) -> Option<HierarchyCursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    serde_json::from_slice::<HierarchyCursor>(&bytes)
        .ok()
        .filter(|c| c.hierarchy)
}

fn gone() -> GraphError {
    GraphError::new(
        StatusCode::GONE,
        "SyncStateNotFound",
        "The sync state generation is not found. Restart the sync without a state token.",
    )
}

/// `$select` of a folder request checked against the mailFolder type
/// (also used by the plain folder GET and list).
pub(super) fn check_select(select: &str) -> Result<(), GraphError> {
    for name in select.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !FOLDER_PROPERTIES.contains(&name) {
            return Err(GraphError::bad_request(
                "RequestBroker--ParseUri",
                format!(
                    "Could not find a property named '{name}' on type 'Microsoft.OutlookServices.MailFolder'."
                ),
            ));
        }
    }
    Ok(())
}

/// The folder's JSON with only the selected properties (and `id`).
pub(super) fn selected(full: Value, select: Option<&str>) -> Value {
    let Some(select) = select else {
        return full;
    };
    let mut out = Map::new();
    out.insert("id".into(), full["id"].clone());
    for name in select.split(',').map(str::trim) {
        if let Some(v) = full.get(name) {
            out.insert(name.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// Changes in (after, upto]: live folders changed then, and (after the
/// first round) deleted ones.
fn changes(mb: &Mailbox, c: &HierarchyCursor) -> Vec<(u64, Value)> {
    let mut changes: Vec<(u64, Value)> = mb
        .folders
        .iter()
        .filter(|f| f.seq > c.after && f.seq <= c.upto)
        .map(|f| (f.seq, selected(mb.folder_json(f), c.select.as_deref())))
        .collect();
    if c.since > 0 {
        changes.extend(
            mb.folder_tombstones
                .iter()
                .filter(|(seq, _)| *seq > c.after && *seq <= c.upto)
                .map(|(seq, id)| (*seq, json!({"id": id, "@removed": {"reason": "deleted"}}))),
        );
    }
    changes.sort_by_key(|(seq, _)| *seq);
    changes
}

pub async fn folder_delta(
    State(state): State<SimState>,
    caller: Caller,
    params: Params,
    query: QueryMap,
    headers: HeaderMap,
) -> Answer {
    let t = target(&state, &caller, &params, Need::Read)?;
    let epoch = state.mail().delta_epoch();
    let cursor = match query.get("$deltatoken").or_else(|| query.get("$skiptoken")) {
        Some(token) => {
            let c = decode(token).ok_or_else(gone)?;
            if c.epoch != epoch {
                return Err(gone());
            }
            Some(c)
        }
        None => {
            if let Some(select) = query.get("$select") {
                check_select(select)?;
            }
            None
        }
    };
    let page_size = max_page_size(&headers).unwrap_or(10).clamp(1, 1000);
    let new_round = cursor.is_none() || query.contains_key("$deltatoken");
    with_mailbox(&state, &t, |mb| {
        let mut c = match cursor {
            // A new round from a delta link.
            Some(mut c) if query.contains_key("$deltatoken") => {
                c.since = c.upto;
                c.upto = mb.seq;
                c.after = c.since;
                c
            }
            Some(c) => c,
            None => HierarchyCursor {
                hierarchy: true,
                since: 0,
                upto: mb.seq,
                after: 0,
                epoch,
                select: query.get("$select").cloned(),
                generation: 0,
            },
        };
        // A token that `KEPT_GENERATIONS` newer rounds have pushed out of
        // the cache is gone; a new round starts a generation.
        let newest = mb
            .delta_generations
            .entry(HIERARCHY.to_string())
            .or_insert(0);
        if c.generation > 0 && newest.saturating_sub(c.generation) >= KEPT_GENERATIONS {
            return Err(gone());
        }
        if new_round {
            *newest += 1;
            c.generation = *newest;
        }
        let mut changes = changes(mb, &c);
        let more = changes.len() > page_size;
        changes.truncate(page_size);
        if let Some((last, _)) = changes.last() {
            c.after = *last;
        }
        let base = format!(
            "{}/v1.0/{}/mailFolders/delta",
            base_url(&state),
            prefix(&params)
        );
        let items: Vec<Value> = changes.into_iter().map(|(_, v)| v).collect();
        let mut body = json!({
            "@odata.context": format!("{}/v1.0/$metadata#Collection(mailFolder)", base_url(&state)),
            "value": items,
        });
        if more {
            body["@odata.nextLink"] = json!(format!("{base}?$skiptoken={}", encode(&c)));
        } else {
            body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={}", encode(&c)));
        }
        Ok(Json(body).into_response())
    })
}
