//! Per-folder message delta: pages with `@odata.nextLink`, a final
//! `@odata.deltaLink`, `@removed` entries, and 410 Gone for expired tokens.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::SimState;
use crate::sim::caller::Caller;
use crate::sim::errors::GraphError;

use super::common::*;

/// What a delta or skip token carries.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct DeltaCursor {
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
    /// The sync generation of the folder this round belongs to (see
    /// [`KEPT_GENERATIONS`]).
    #[serde(default)]
    generation: u64,
}

/// How many newer sync generations of a folder a delta or skip token
/// survives. Exchange keeps a bounded cache of a folder's sync states:
/// "For Outlook entities (message, mailFolder, event, contact, …) the
/// upper limit is not fixed; it's dependent on the size of the internal
/// delta token cache. While new delta tokens are continuously added in
/// the cache, after the cache capacity is exceeded, the older delta tokens
/// are deleted" (learn.microsoft.com/graph/delta-query-overview, "Token
/// duration"); an expired one answers 410 Gone `syncStateNotFound`
/// (graph-facts.md, "Sync-state expiry"), after which the client must
/// restart with a full synchronization. The size is not documented: a
/// small number here, so that a client that keeps an old link finds out.
pub(super) const KEPT_GENERATIONS: u64 = 3;

/// One entry of a delta page, rendered once the page is chosen.
enum Change<'a> {
    Live(&'a super::model::Message),
    Removed(&'a str),
}

/// The properties a later round reports of an updated message: only those
/// a PATCH changed since `since`, when it was in the folder before
/// `since` (Graph: "later pages of changes may carry only the changed
/// fields", e.g. `id`, `isRead`, `parentFolderId` after a read toggle —
/// microsoft-graph-docs issue #7776; graph-facts.md). `None`: the whole
/// item (first round, new arrival, or a change no PATCH recorded).
fn partial_fields(m: &super::model::Message, since: u64) -> Option<Vec<String>> {
    if since == 0 || m.arrived > since {
        return None;
    }
    let fields: Vec<String> = m
        .changed
        .iter()
        .filter(|(_, seq)| **seq > since)
        .map(|(f, _)| f.clone())
        .collect();
    (!fields.is_empty()).then_some(fields)
}

/// A partial update: `id`, `parentFolderId` and the changed properties
/// the round's `$select` names.
fn render_partial(
    m: &super::model::Message,
    select: &Option<Vec<String>>,
    changed: &[String],
) -> Value {
    let mut fields = vec!["parentFolderId".to_string()];
    fields.extend(
        changed
            .iter()
            .filter(|f| select.as_ref().is_none_or(|s| s.contains(f)))
            .cloned(),
    );
    let mut out = render(m, &Some(fields), &None);
    if let Some(o) = out.as_object_mut() {
        o.remove("@odata.etag");
    }
    out
}

pub(super) fn encode_cursor(c: &DeltaCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

pub(super) fn decode_cursor(s: &str) -> Option<DeltaCursor> {
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
    // A first request or a delta link starts a round; a skip token goes on.
    let new_round = cursor.is_none() || query.contains_key("$deltatoken");
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
                generation: 0,
            },
        };
        if c.folder != folder_id {
            return Err(gone());
        }
        // A token whose generation `KEPT_GENERATIONS` newer rounds of this
        // folder have pushed out of the cache is gone; a new round (a
        // first request or a delta link) starts a generation.
        let newest = mb.delta_generations.entry(folder_id.clone()).or_insert(0);
        if c.generation > 0 && newest.saturating_sub(c.generation) >= KEPT_GENERATIONS {
            return Err(gone());
        }
        if new_round {
            *newest += 1;
            c.generation = *newest;
        }
        let sel = c
            .select
            .as_ref()
            .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
        // Changes in (after, upto]: live messages of the folder, and, after
        // the first round, tombstones of messages that left it. Only the
        // page's own changes are rendered (rendering every remaining one
        // and keeping a page of them made a full sync quadratic).
        let mut changes: Vec<(u64, Change<'_>)> = mb
            .messages
            .values()
            .filter(|m| m.folder_id == folder_id && m.seq > c.after && m.seq <= c.upto)
            .map(|m| (m.seq, Change::Live(m)))
            .collect();
        if c.since > 0 {
            changes.extend(
                mb.tombstones
                    .iter()
                    .filter(|(seq, f, _)| *f == folder_id && *seq > c.after && *seq <= c.upto)
                    .map(|(seq, _, id)| (*seq, Change::Removed(id))),
            );
        }
        let more = changes.len() > page_size;
        if more {
            changes.select_nth_unstable_by_key(page_size, |(seq, _)| *seq);
            changes.truncate(page_size);
        }
        changes.sort_unstable_by_key(|(seq, _)| *seq);
        if let Some((last, _)) = changes.last() {
            c.after = *last;
        }
        let base = format!(
            "{}/v1.0/{}/mailFolders/{}/messages/delta",
            base_url(&state),
            prefix(&params),
            folder_id
        );
        let items: Vec<Value> = changes
            .into_iter()
            .map(|(_, change)| match change {
                Change::Live(m) => match partial_fields(m, c.since) {
                    Some(fields) => render_partial(m, &sel, &fields),
                    None => render(m, &sel, &None),
                },
                Change::Removed(id) => json!({"id": id, "@removed": {"reason": "deleted"}}),
            })
            .collect();
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
