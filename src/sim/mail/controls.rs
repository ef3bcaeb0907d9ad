//! `/_sim/mail/*` test controls: deliver incoming mail, expire delta
//! tokens, list external deliveries.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::SimState;

use super::common::*;

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

/// `POST /_sim/mail/app_access?to=UPN&blocked=true|false`: block (or allow
/// again) app-only access to one mailbox (see
/// [`super::MailState::block_app_access`]).
pub async fn control_app_access(State(state): State<SimState>, query: QueryMap) -> Response {
    let (Some(to), Some(blocked)) = (query.get("to"), query.get("blocked")) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "give ?to=UPN&blocked=true|false"})),
        )
            .into_response();
    };
    let blocked = match blocked.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("blocked must be true or false, not {other:?}")})),
            )
                .into_response();
        }
    };
    let Some(user) = state.tenant().user_by_address(to) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no user {to}")})),
        )
            .into_response();
    };
    state.mail().block_app_access(&user.id, blocked);
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
