//! `POST /{tenant}/oauth2/v2.0/token`: the device code, authorization code
//! (with PKCE, RFC 7636 S256), refresh token, client credentials and ROPC
//! grants, answering as Entra ID does (token response fields of "Microsoft
//! identity platform and OAuth 2.0 authorization code flow", errors with
//! AADSTS codes).

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::super::SimState;
use super::super::caller::Caller;
use super::super::errors::EntraError;
use super::super::tenant::{SimApp, SimUser};
use super::client_auth::{self, ClientProof};
use super::{block_error, check_tenant, find_app, parse_form, scopes};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub async fn token(
    State(state): State<SimState>,
    Path(tenant): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    match redeem(&state, &tenant, &body, basic) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn missing(name: &str) -> EntraError {
    EntraError::new(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// `Authorization: Basic` client credentials (RFC 6749 §2.3.1: both parts
/// form-url-encoded), as `client_secret_basic` clients send them.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::engine::general_purpose::STANDARD;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .to_string()
    };
    Some((unescape(id), unescape(secret)))
}

fn redeem(
    state: &SimState,
    tenant: &str,
    body: &[u8],
    basic: Option<(String, String)>,
) -> Result<Response, EntraError> {
    check_tenant(state.tenant(), tenant)?;
    let mut form = parse_form(body)?;
    if let Some((id, secret)) = basic {
        form.entry("client_id".into()).or_insert(id);
        form.entry("client_secret".into()).or_insert(secret);
    }
    let field = |name: &str| form.get(name).map(String::as_str);
    let grant_type = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    let client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
    let app = find_app(state.tenant(), tenant, client_id)?;
    let tenant_id = state.tenant().id.clone();
    if app.public_client
        && (form.contains_key("client_secret") || form.contains_key("client_assertion"))
    {
        return Err(EntraError::new(
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        )
        .with_status(http::StatusCode::UNAUTHORIZED));
    }
    match grant_type {
        "client_credentials" => {
            authenticate_client(state, app, &form, tenant)?;
            let scope = field("scope").ok_or_else(|| missing("scope"))?;
            let requested = scopes::parse(scope, &state.config().graph_resource)?;
            if requested.len() != 1 || !requested.iter().all(|s| s == ".default") {
                return Err(EntraError::new(
                    "invalid_scope",
                    1002012,
                    format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                ));
            }
            let roles: Vec<String> = app.app_roles.iter().cloned().collect();
            let caller = Caller {
                app_id: app.client_id.clone(),
                user_id: None,
                permissions: roles,
            };
            let (access, lifetime) = state
                .entra()
                .issue_access_token_in(caller, None, &tenant_id);
            Ok(token_response(json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access,
            })))
        }
        DEVICE_CODE_GRANT => {
            let code = field("device_code").ok_or_else(|| missing("device_code"))?;
            let auto_user = state
                .config()
                .device_auto_approve
                .as_ref()
                .and_then(|(_, upn)| state.tenant().user(upn))
                .map(|u| u.id.clone());
            let (user_id, requested) =
                state
                    .entra()
                    .poll_device_code(code, &app.client_id, auto_user.as_deref())?;
            let granted = scopes::delegated(app, &requested)?;
            delegated_response(state, app, &user_id, &granted)
        }
        "authorization_code" => {
            if !app.public_client {
                authenticate_client(state, app, &form, tenant)?;
            }
            let code = field("code").ok_or_else(|| missing("code"))?;
            let grant = state
                .entra()
                .auth_codes
                .lock()
                .ok()
                .and_then(|mut codes| codes.remove(code))
                .ok_or_else(|| {
                    EntraError::new(
                        "invalid_grant",
                        70008,
                        "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                    )
                })?;
            if grant.expires <= Instant::now()
                || !grant.client_id.eq_ignore_ascii_case(&app.client_id)
            {
                return Err(EntraError::new(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                ));
            }
            if field("redirect_uri") != Some(grant.redirect_uri.as_str()) {
                return Err(EntraError::new(
                    "invalid_grant",
                    500117,
                    "The reply uri specified in the request does not match the reply uri used in the authorization request.",
                ));
            }
            if let Some(challenge) = &grant.code_challenge {
                let verifier = field("code_verifier").unwrap_or("");
                let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                if verifier.is_empty() || &computed != challenge {
                    return Err(EntraError::new(
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    ));
                }
            }
            delegated_response(state, app, &grant.user_id, &grant.scopes)
        }
        "refresh_token" => {
            if !app.public_client {
                authenticate_client(state, app, &form, tenant)?;
            }
            let token = field("refresh_token").ok_or_else(|| missing("refresh_token"))?;
            let invalid = || {
                EntraError::new(
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                )
            };
            let grant = state.entra().refresh_grant(token).ok_or_else(invalid)?;
            if !grant.client_id.eq_ignore_ascii_case(&app.client_id) {
                return Err(EntraError::new(
                    "invalid_grant",
                    70000,
                    "Provided grant is invalid or malformed.",
                ));
            }
            if grant.revoked {
                return Err(EntraError::new(
                    "invalid_grant",
                    50173,
                    format!(
                        "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
                        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
                        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
                    ),
                ));
            }
            if grant.expired || grant.last_used.elapsed() > super::REFRESH_INACTIVITY {
                return Err(EntraError::new(
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token was issued on a date and was inactive for 90.00:00:00.",
                ));
            }
            let granted = match field("scope") {
                Some(scope) if !scope.trim().is_empty() => {
                    let requested = scopes::parse(scope, &state.config().graph_resource)?;
                    let narrowed = scopes::delegated(app, &requested)?;
                    for s in &narrowed {
                        if !scopes::has(&grant.scopes, s) && !scopes::is_oidc(s) {
                            return Err(EntraError::new(
                                "invalid_grant",
                                65001,
                                format!(
                                    "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource.",
                                    app.client_id, app.display_name
                                ),
                            ));
                        }
                    }
                    narrowed
                }
                _ => grant.scopes.clone(),
            };
            delegated_response(state, app, &grant.user_id, &granted)
        }
        "password" => {
            if !app.public_client {
                authenticate_client(state, app, &form, tenant)?;
            }
            let username = field("username").ok_or_else(|| missing("username"))?;
            let password = field("password").unwrap_or("");
            let user = state
                .tenant()
                .user(username)
                .filter(|u| !u.shared && u.password == password)
                .ok_or_else(|| {
                    EntraError::new(
                        "invalid_grant",
                        50126,
                        "Error validating credentials due to invalid username or password.",
                    )
                })?;
            let requested =
                scopes::parse(field("scope").unwrap_or(""), &state.config().graph_resource)?;
            let granted = scopes::delegated(app, &requested)?;
            delegated_response(state, app, &user.id, &granted)
        }
        other => Err(EntraError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// Authenticate a confidential client (secret or certificate assertion);
/// one without a credential gets AADSTS7000218.
fn authenticate_client(
    state: &SimState,
    app: &SimApp,
    form: &HashMap<String, String>,
    tenant: &str,
) -> Result<(), EntraError> {
    let expired = state.faults().get().expire_client_secrets;
    match client_auth::proof(form)? {
        ClientProof::Secret(secret) => client_auth::check_secret(app, secret, expired),
        ClientProof::Assertion(assertion) => {
            let public = state.config().public_url.trim_end_matches('/').to_string();
            let mut audiences = Vec::new();
            for t in [tenant.to_string(), state.tenant().id.clone()] {
                audiences.push(format!("https://login.microsoftonline.com/{t}/oauth2/v2.0/token"));
                audiences.push(format!("{public}/{t}/oauth2/v2.0/token"));
            }
            client_auth::check_assertion(app, assertion, &audiences)
        }
        ClientProof::None => Err(EntraError::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
        .with_status(http::StatusCode::UNAUTHORIZED)),
    }
}

fn token_response(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
        .headers_mut()
        .insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn delegated_response(
    state: &SimState,
    app: &SimApp,
    user_id: &str,
    granted: &[String],
) -> Result<Response, EntraError> {
    let user: &SimUser = state.tenant().user(user_id).ok_or_else(|| {
        EntraError::new(
            "invalid_grant",
            50034,
            "The user account does not exist in the directory.",
        )
    })?;
    if let Some(block) = state.entra().block_of(&user.id) {
        return Err(block_error(block));
    }
    let tenant_id = state.tenant().id.clone();
    let caller = Caller {
        app_id: app.client_id.clone(),
        user_id: Some(user.id.clone()),
        permissions: scopes::graph_permissions(granted),
    };
    let (access, lifetime) =
        state
            .entra()
            .issue_access_token_in(caller, Some(&user.upn), &tenant_id);
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scopes::response_scope(granted, &state.config().graph_resource),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access,
    });
    if scopes::has(granted, "offline_access") {
        body["refresh_token"] = state
            .entra()
            .issue_refresh_token(&app.client_id, &user.id, granted)
            .into();
    }
    if scopes::has(granted, "openid") {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "aud": app.client_id,
            "iss": format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": user.id,
            "sub": user.id,
            "tid": tenant_id,
            "name": user.display_name,
            "preferred_username": user.upn,
            "ver": "2.0",
        });
        body["id_token"] = state.entra().signer.sign(&claims).into();
    }
    Ok(token_response(body))
}
