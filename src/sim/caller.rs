//! Who is calling Graph: the identity carried by a bearer token that the
//! simulated Entra ID issued. Graph handlers take a [`Caller`] as an axum
//! extractor; a missing, unknown or expired token never reaches them (the
//! extractor answers 401 `InvalidAuthenticationToken` in Graph's shape).

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use super::SimState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The app (client id) the token was issued to.
    pub app_id: String,
    /// Delegated tokens: the signed-in user's object id. `None` for app-only
    /// (client credentials) tokens.
    pub user_id: Option<String>,
    /// Delegated scopes granted, short names (`Mail.ReadWrite`), or app
    /// roles for app-only tokens.
    pub permissions: Vec<String>,
}

impl Caller {
    pub fn is_app_only(&self) -> bool {
        self.user_id.is_none()
    }

    /// Whether the token carries `permission` (case-insensitive; a
    /// `…ReadWrite…` grant implies the `…Read…` one).
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| {
            p.eq_ignore_ascii_case(permission)
                || p.replace("ReadWrite", "Read")
                    .eq_ignore_ascii_case(permission)
        })
    }
}

impl FromRequestParts<SimState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &SimState) -> Result<Self, Response> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.entra().authenticate(header) {
            Ok(caller) => Ok(caller),
            Err(rejection) => Err(rejection.into_response()),
        }
    }
}
