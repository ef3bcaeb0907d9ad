//! Entra ID (identity platform v2) for the simulator: token issuing and
//! validation. (Endpoints: work in progress.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use http::StatusCode;

use super::caller::Caller;
use super::errors::GraphError;
use super::{SimConfig, SimState};

pub struct EntraState {
    access_token_lifetime: Duration,
    access_tokens: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl EntraState {
    pub fn new(config: &SimConfig) -> EntraState {
        EntraState {
            access_token_lifetime: config.access_token_lifetime,
            access_tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Issue an access token for `caller`; returns the token and its
    /// lifetime in seconds.
    pub fn issue_access_token(&self, caller: Caller) -> (String, u64) {
        let token = format!("sim.{}", uuid::Uuid::new_v4().simple());
        let expires = Instant::now() + self.access_token_lifetime;
        if let Ok(mut tokens) = self.access_tokens.lock() {
            tokens.insert(token.clone(), (caller, expires));
        }
        (token, self.access_token_lifetime.as_secs())
    }

    /// The caller behind an `Authorization` header value, or Graph's 401.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, GraphError> {
        let unauthorized = |message: &str| {
            GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message)
                .with_header(
                    "WWW-Authenticate",
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                )
        };
        let Some(value) = authorization else {
            return Err(unauthorized("Access token is empty."));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(unauthorized("Access token is empty."));
        };
        let tokens = self
            .access_tokens
            .lock()
            .map_err(|_| unauthorized("Access token validation failure."))?;
        match tokens.get(token.trim()) {
            Some((caller, expires)) if *expires > Instant::now() => Ok(caller.clone()),
            Some(_) => Err(unauthorized("Access token has expired or is not yet valid.")),
            None => Err(unauthorized("Access token validation failure. Invalid audience.")),
        }
    }
}

pub fn routes() -> Router<SimState> {
    Router::new()
}
