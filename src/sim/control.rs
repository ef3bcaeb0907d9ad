//! The simulator's control endpoints, beside Microsoft's paths (a fixed
//! interface: documentation and tests rely on it). None of them is counted
//! in the stats.
//!
//! - `GET /_sim/stats` → `{"requests", "graph_requests", "by_route",
//!   "by_status", "batch_inner_requests", "batch_inner_by_route",
//!   "by_mailbox", "throttled", "resets"}`; `DELETE /_sim/stats` resets.
//! - `POST /_sim/faults` merges any subset of `{"latency_ms",
//!   "throttle_rate", "retry_after_s", "error_rate", "reset_rate",
//!   "revoke_refresh_tokens", "expire_client_secrets"}` and returns the
//!   result; `GET /_sim/faults` reads them; `DELETE /_sim/faults` clears.
//!   `revoke_refresh_tokens: true` revokes every refresh token issued so
//!   far (AADSTS50173).
//! - `POST /_sim/devicelogin` `{"user_code", "user", "approve"}` completes
//!   or declines a device-code sign-in (404 for an unknown code).
//! - `POST /_sim/revoke` `{"user": upn}`: revoke one user's refresh tokens
//!   (AADSTS50173).
//! - `POST /_sim/expire_refresh_tokens`: every refresh token so far expires
//!   by inactivity (AADSTS700082).
//! - `POST /_sim/expire_access_tokens`: every access token so far expires
//!   (Graph answers 401 `InvalidAuthenticationToken`).
//! - `POST /_sim/policy` `{"user": upn, "block": "mfa" |
//!   "conditional_access" | null}`: later sign-ins and refreshes of that
//!   user fail with AADSTS50076 / 53003.
//! - `POST /_sim/adminconsent` `{"deny": true}`: `/adminconsent` answers
//!   `error=permission_denied`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;
use super::entra::{DeviceLoginError, SignInBlock};
use super::faults::{Faults, FaultsUpdate};

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the request body is not valid JSON for this control: {0}")]
    BadBody(String),
    #[error("no user {0} in the simulated tenant")]
    UnknownUser(String),
    #[error(transparent)]
    DeviceLogin(#[from] DeviceLoginError),
    #[error("unknown block {0:?}: use \"mfa\", \"conditional_access\" or null")]
    UnknownBlock(String),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            ControlError::BadBody(_) | ControlError::UnknownBlock(_) => StatusCode::BAD_REQUEST,
            ControlError::UnknownUser(_) | ControlError::DeviceLogin(_) => StatusCode::NOT_FOUND,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ControlError> {
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ControlError::BadBody(e.to_string()))
}

impl SimState {
    /// The `/_sim/stats` document.
    pub fn stats_snapshot(&self) -> Value {
        self.stats().snapshot()
    }

    /// Merge fault settings; revokes every refresh token when
    /// `revoke_refresh_tokens` becomes true.
    pub fn set_faults(&self, update: FaultsUpdate) -> Faults {
        let faults = self.faults().merge(update);
        if faults.revoke_refresh_tokens {
            self.entra().revoke_all_refresh_tokens();
        }
        faults
    }

    fn user_id(&self, user: &str) -> Result<String, ControlError> {
        self.tenant()
            .user(user)
            .map(|u| u.id.clone())
            .ok_or_else(|| ControlError::UnknownUser(user.to_string()))
    }

    /// Approve (as `user`, a UPN) or decline a device-code sign-in.
    pub fn device_login(
        &self,
        user_code: &str,
        user: &str,
        approve: bool,
    ) -> Result<(), ControlError> {
        let user_id = if approve {
            Some(self.user_id(user)?)
        } else {
            None
        };
        self.entra()
            .complete_device_login(user_code, user_id.as_deref(), approve)?;
        Ok(())
    }

    /// Revoke the refresh tokens of `user` (a UPN); returns how many.
    pub fn revoke_user(&self, user: &str) -> Result<usize, ControlError> {
        let id = self.user_id(user)?;
        Ok(self.entra().revoke_user_refresh_tokens(&id))
    }

    /// Block (or unblock) later sign-ins of `user` (a UPN).
    pub fn set_sign_in_block(
        &self,
        user: &str,
        block: Option<SignInBlock>,
    ) -> Result<(), ControlError> {
        let id = self.user_id(user)?;
        self.entra().set_block(&id, block);
        Ok(())
    }
}

async fn get_stats(State(state): State<SimState>) -> Json<Value> {
    Json(state.stats_snapshot())
}

async fn delete_stats(State(state): State<SimState>) -> StatusCode {
    state.stats().reset();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(state): State<SimState>) -> Json<Faults> {
    Json(state.faults().get())
}

async fn post_faults(
    State(state): State<SimState>,
    body: Bytes,
) -> Result<Json<Faults>, ControlError> {
    let update: FaultsUpdate = parse(&body)?;
    Ok(Json(state.set_faults(update)))
}

async fn delete_faults(State(state): State<SimState>) -> Json<Faults> {
    state.faults().clear();
    Json(state.faults().get())
}

#[derive(Deserialize)]
struct DeviceLogin {
    user_code: String,
    #[serde(default)]
    user: String,
    #[serde(default = "yes")]
    approve: bool,
}

fn yes() -> bool {
    true
}

async fn post_device_login(
    State(state): State<SimState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let login: DeviceLogin = parse(&body)?;
    state.device_login(&login.user_code, &login.user, login.approve)?;
    Ok(Json(
        json!({"user_code": login.user_code, "approved": login.approve}),
    ))
}

#[derive(Deserialize)]
struct UserBody {
    user: String,
}

async fn post_revoke(
    State(state): State<SimState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let who: UserBody = parse(&body)?;
    let revoked = state.revoke_user(&who.user)?;
    Ok(Json(json!({"user": who.user, "revoked": revoked})))
}

async fn post_expire_refresh(State(state): State<SimState>) -> StatusCode {
    state.entra().expire_refresh_tokens();
    StatusCode::NO_CONTENT
}

async fn post_expire_access(State(state): State<SimState>) -> StatusCode {
    state.entra().expire_access_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct PolicyBody {
    user: String,
    #[serde(default)]
    block: Option<String>,
}

async fn post_policy(
    State(state): State<SimState>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let policy: PolicyBody = parse(&body)?;
    let block = match policy.block.as_deref() {
        None | Some("none") => None,
        Some("mfa") => Some(SignInBlock::Mfa),
        Some("conditional_access") => Some(SignInBlock::ConditionalAccess),
        Some(other) => return Err(ControlError::UnknownBlock(other.to_string())),
    };
    state.set_sign_in_block(&policy.user, block)?;
    Ok(Json(json!({"user": policy.user, "block": policy.block})))
}

#[derive(Deserialize)]
struct ConsentBody {
    deny: bool,
}

async fn post_admin_consent(
    State(state): State<SimState>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let consent: ConsentBody = parse(&body)?;
    state.entra().set_deny_admin_consent(consent.deny);
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> Router<SimState> {
    Router::new()
        .route("/_sim/stats", get(get_stats).delete(delete_stats))
        .route(
            "/_sim/faults",
            get(get_faults).post(post_faults).delete(delete_faults),
        )
        .route("/_sim/devicelogin", post(post_device_login))
        .route("/_sim/revoke", post(post_revoke))
        .route("/_sim/expire_refresh_tokens", post(post_expire_refresh))
        .route("/_sim/expire_access_tokens", post(post_expire_access))
        .route("/_sim/policy", post(post_policy))
        .route("/_sim/adminconsent", post(post_admin_consent))
}
