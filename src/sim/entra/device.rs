//! The device authorization grant ("Microsoft identity platform and the
//! OAuth 2.0 device authorization grant flow", RFC 8628): `POST
//! /{tenant}/oauth2/v2.0/devicecode`, the `/devicelogin` page where a person
//! enters the code, and the polling rules used by the token endpoint
//! (pending AADSTS70016, declined, expired AADSTS70019, `slow_down` per
//! RFC 8628 §3.5, bad code AADSTS70000). Missing consent is reported by
//! the poll that redeems an approved code (AADSTS65001), not by
//! `/devicecode`.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use rand::Rng;
use serde_json::json;

use super::super::SimState;
use super::super::errors::EntraError;
use super::{
    DeviceGrant, DeviceState, EntraState, bounded_insert, check_tenant, find_app, parse_form,
    scopes,
};

/// Letters used in user codes (no look-alikes).
const CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ23456789";

fn user_code() -> String {
    let mut rng = rand::rng();
    (0..9)
        .map(|i| {
            if i == 4 {
                '-'
            } else {
                let n = rng.random_range(0..CODE_ALPHABET.len());
                CODE_ALPHABET.get(n).map(|b| *b as char).unwrap_or('X')
            }
        })
        .collect()
}

fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub async fn devicecode(
    State(state): State<SimState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    match start(&state, &tenant, &body) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn start(state: &SimState, tenant: &str, body: &[u8]) -> Result<Response, EntraError> {
    check_tenant(state.tenant(), tenant)?;
    let form = parse_form(body)?;
    let client_id = form.get("client_id").map(String::as_str).unwrap_or("");
    let app = find_app(state.tenant(), tenant, client_id)?;
    if !app.public_client {
        return Err(EntraError::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
        .with_status(http::StatusCode::UNAUTHORIZED));
    }
    let requested = scopes::parse(
        form.get("scope").map(String::as_str).unwrap_or(""),
        &state.config().graph_resource,
    )?;
    // A malformed scope list fails here; a scope without consent does not:
    // Entra issues the code and refuses at the token poll (AADSTS65001).
    match scopes::delegated(app, &requested) {
        Err(e) if e.aadsts != 65001 => return Err(e),
        _ => {}
    }
    let entra = state.entra();
    let device_code = format!(
        "DAQABIQEAAAB{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let code = user_code();
    let now = Instant::now();
    let auto_approve_at = entra
        .device_auto_approve
        .as_ref()
        .map(|(delay, _)| now + *delay);
    if let Ok(mut codes) = entra.device_codes.lock() {
        bounded_insert(
            &mut codes,
            device_code.clone(),
            DeviceGrant {
                client_id: app.client_id.clone(),
                user_code: code.clone(),
                scopes: requested,
                expires: now + entra.device_code_lifetime,
                last_poll: None,
                auto_approve_at,
                state: DeviceState::Pending,
            },
            |g| g.expires > now,
        );
    }
    let verification_uri = format!("{}/devicelogin", entra.public_url);
    Ok(Json(json!({
        "device_code": device_code,
        "user_code": code,
        "verification_uri": verification_uri,
        "expires_in": entra.device_code_lifetime.as_secs(),
        "interval": entra.device_code_interval.as_secs(),
        "message": format!(
            "To sign in, use a web browser to open the page {verification_uri} and enter the code {code} to authenticate."
        ),
    }))
    .into_response())
}

/// Why a device-code sign-in could not be completed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceLoginError {
    #[error("no pending device-code sign-in has user code {0}")]
    UnknownCode(String),
    #[error("no user {0} can sign in to this tenant")]
    UnknownUser(String),
}

impl EntraState {
    /// Complete (approve as `user`, a UPN or object id resolved by the
    /// caller) or decline the pending sign-in with `user_code`.
    pub fn complete_device_login(
        &self,
        user_code: &str,
        user_id: Option<&str>,
        approve: bool,
    ) -> Result<(), DeviceLoginError> {
        let wanted = normalize_user_code(user_code);
        let now = Instant::now();
        let Ok(mut codes) = self.device_codes.lock() else {
            return Err(DeviceLoginError::UnknownCode(user_code.into()));
        };
        let grant = codes.values_mut().find(|g| {
            normalize_user_code(&g.user_code) == wanted
                && g.state == DeviceState::Pending
                && g.expires > now
        });
        let Some(grant) = grant else {
            return Err(DeviceLoginError::UnknownCode(user_code.into()));
        };
        grant.state = match (approve, user_id) {
            (true, Some(id)) => DeviceState::Approved(id.to_string()),
            (true, None) => return Err(DeviceLoginError::UnknownUser(String::new())),
            (false, _) => DeviceState::Declined,
        };
        Ok(())
    }

    /// One poll of the token endpoint with `device_code` by `client_id`:
    /// the approved user's id and the scopes, or the RFC 8628 error.
    pub(crate) fn poll_device_code(
        &self,
        device_code: &str,
        client_id: &str,
        auto_approve_user: Option<&str>,
    ) -> Result<(String, Vec<String>), EntraError> {
        let bad = || {
            EntraError::new(
                "bad_verification_code",
                70000,
                "The provided value for the input parameter 'device_code' is not valid.",
            )
        };
        let mut codes = self.device_codes.lock().map_err(|_| bad())?;
        let grant = codes.get_mut(device_code).ok_or_else(bad)?;
        if !grant.client_id.eq_ignore_ascii_case(client_id) {
            return Err(bad());
        }
        let now = Instant::now();
        if grant.expires <= now {
            return Err(EntraError::new(
                "expired_token",
                70019,
                "Verification code expired.",
            ));
        }
        let previous = grant.last_poll.replace(now);
        if grant.state == DeviceState::Pending
            && let (Some(at), Some(user)) = (grant.auto_approve_at, auto_approve_user)
            && at <= now
        {
            grant.state = DeviceState::Approved(user.to_string());
        }
        match &grant.state {
            DeviceState::Pending => {
                if let Some(previous) = previous
                    && now.duration_since(previous) < self.device_code_interval
                {
                    return Err(EntraError::new(
                        "slow_down",
                        70016,
                        "OAuth 2.0 device flow error. Polling too frequently: wait for the interval before polling again.",
                    ));
                }
                Err(EntraError::new(
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                ))
            }
            DeviceState::Declined => Err(EntraError::new(
                "authorization_declined",
                70000,
                "The user has declined the authentication request.",
            )),
            DeviceState::Redeemed => Err(EntraError::new(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            )),
            DeviceState::Approved(user) => {
                let result = (user.clone(), grant.scopes.clone());
                grant.state = DeviceState::Redeemed;
                Ok(result)
            }
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(message: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Enter code</title></head><body>\
<h1>Enter code</h1><p>{}</p>\
<form method=\"post\" action=\"/devicelogin\">\
<p><label>Code <input name=\"user_code\" autocomplete=\"off\"></label></p>\
<p><label>Username <input name=\"username\" type=\"email\"></label></p>\
<p><label>Password <input name=\"password\" type=\"password\"></label></p>\
<p><button name=\"decision\" value=\"approve\">Continue</button> \
<button name=\"decision\" value=\"decline\">Cancel sign-in</button></p>\
</form><p>graphgate simulator of Microsoft Entra ID.</p></body></html>",
        escape(message)
    ))
}

pub async fn device_login_page() -> Html<String> {
    page("Enter the code displayed on your app or device, then sign in.")
}

pub async fn device_login_submit(State(state): State<SimState>, body: Bytes) -> Response {
    let form: HashMap<String, String> = match parse_form(&body) {
        Ok(f) => f,
        Err(_) => return page("The form could not be read.").into_response(),
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let approve = field("decision") != "decline";
    let user_id = if approve {
        match state.tenant().user(field("username")) {
            Some(user) if !user.shared && user.password == field("password") => {
                Some(user.id.clone())
            }
            _ => {
                return page(
                    "Your account or password is incorrect. If you don't remember your password, reset it now.",
                )
                .into_response();
            }
        }
    } else {
        None
    };
    match state
        .entra()
        .complete_device_login(field("user_code"), user_id.as_deref(), approve)
    {
        Ok(()) if approve => Html(
            "<!DOCTYPE html><html><body><h1>You're signed in</h1><p>You have signed in to the application on your device. You may now close this window.</p></body></html>".to_string(),
        )
        .into_response(),
        Ok(()) => Html(
            "<!DOCTYPE html><html><body><h1>Sign-in cancelled</h1><p>You may now close this window.</p></body></html>".to_string(),
        )
        .into_response(),
        Err(_) => page("That code didn't work. Check the code and try again.").into_response(),
    }
}
