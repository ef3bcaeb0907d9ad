//! The browser side of Entra ID: `GET /{tenant}/oauth2/v2.0/authorize`
//! (authorization code + PKCE; "Microsoft identity platform and OAuth 2.0
//! authorization code flow"), its sign-in form, `GET
//! /{tenant}/adminconsent` ("Admin consent on the Microsoft identity
//! platform") and the OpenID configuration document.
//!
//! A `login_hint` naming a tenant user signs in at once (as single sign-on
//! would); otherwise an HTML form asks for username and password. A
//! redirect URI that is not registered gets an error page (AADSTS50011),
//! never a redirect. Entra's loopback rule ("Redirect URI (reply URL)
//! restrictions", reply-url.md, Localhost exceptions; graph-facts.md,
//! "Entra"): a registered `http://localhost` matches any port, because
//! the port component is ignored for `localhost` only; `http://127.0.0.1`
//! must match exactly, port included; the IPv6 loopback `[::1]` is not
//! supported and is refused even when registered. This is narrower than
//! RFC 8252 §7.3, which asks servers to allow any port on loopback IP
//! literals: Microsoft's behaviour, not the RFC's, is the reference.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use super::super::SimState;
use super::super::errors::EntraError;
use super::super::tenant::SimApp;
use super::{AuthCodeGrant, bounded_insert, check_tenant, find_app, parse_form, scopes};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An error page (no redirect), as Entra shows for a bad client or
/// redirect URI.
fn error_page(error: EntraError) -> Response {
    let body = error.body();
    let description = body["error_description"].as_str().unwrap_or("").to_string();
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head><body><h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\">{}</p><p>{}</p></body></html>",
            escape(error.error),
            escape(&description)
        )),
    )
        .into_response()
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, v);
    }
    response
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

/// Whether `requested` is one of the app's redirect URIs: exact, or
/// `http://localhost` with any port (see the module comment). `[::1]` is
/// never accepted.
fn redirect_registered(app: &SimApp, requested: &str) -> bool {
    let Ok(req) = url::Url::parse(requested) else {
        return false;
    };
    if req.host_str() == Some("[::1]") {
        return false;
    }
    app.redirect_uris.iter().any(|registered| {
        if registered == requested {
            return true;
        }
        let Ok(reg) = url::Url::parse(registered) else {
            return false;
        };
        let localhost = |u: &url::Url| u.host_str() == Some("localhost");
        reg.scheme() == "http"
            && req.scheme() == "http"
            && localhost(&reg)
            && localhost(&req)
            && reg.path() == req.path()
    })
}

/// What the authorize request asked for, once its client and redirect URI
/// are known to be good.
struct AuthorizeRequest<'a> {
    app: &'a SimApp,
    redirect_uri: String,
    state: Option<String>,
    scopes: Vec<String>,
    code_challenge: Option<String>,
}

fn validate<'a>(
    state: &'a SimState,
    tenant: &str,
    params: &HashMap<String, String>,
) -> Result<AuthorizeRequest<'a>, Box<Response>> {
    check_tenant(state.tenant(), tenant).map_err(|e| Box::new(error_page(e)))?;
    let field = |name: &str| params.get(name).map(String::as_str);
    let client_id = field("client_id").unwrap_or("");
    let app = find_app(state.tenant(), tenant, client_id).map_err(|e| Box::new(error_page(e)))?;
    let redirect_uri = field("redirect_uri").unwrap_or("").to_string();
    if !redirect_registered(app, &redirect_uri) {
        return Err(Box::new(error_page(EntraError::new(
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal.",
                app.client_id
            ),
        ))));
    }
    let oauth_state = field("state").map(String::from);
    let fail = |error: &str, description: String| {
        let mut pairs = vec![
            ("error", error),
            ("error_description", description.as_str()),
        ];
        if let Some(s) = &oauth_state {
            pairs.push(("state", s.as_str()));
        }
        redirect(&with_query(&redirect_uri, &pairs))
    };
    if field("response_type") != Some("code") {
        return Err(Box::new(fail(
            "unsupported_response_type",
            "AADSTS700054: response_type 'code' is the only one supported here.".into(),
        )));
    }
    let code_challenge = field("code_challenge").map(String::from);
    if code_challenge.is_some() && field("code_challenge_method").unwrap_or("plain") != "S256" {
        return Err(Box::new(fail(
            "invalid_request",
            "AADSTS501491: Invalid size of Code_Challenge parameter or the code_challenge_method is not supported.".into(),
        )));
    }
    if app.public_client && code_challenge.is_none() {
        return Err(Box::new(fail(
            "invalid_request",
            "AADSTS9002325: Proof Key for Code Exchange is required for cross-origin authorization code redemption.".into(),
        )));
    }
    let granted = match scopes::parse(field("scope").unwrap_or(""), &state.config().graph_resource)
        .and_then(|requested| scopes::delegated(app, &requested))
    {
        Ok(g) => g,
        Err(e) => {
            let body = e.body();
            let description = body["error_description"].as_str().unwrap_or("").to_string();
            let error = if e.aadsts == 65001 {
                "consent_required"
            } else {
                "invalid_request"
            };
            return Err(Box::new(fail(error, description)));
        }
    };
    Ok(AuthorizeRequest {
        app,
        redirect_uri,
        state: oauth_state,
        scopes: granted,
        code_challenge,
    })
}

/// Sign `user_id` in: store the code and redirect with it.
fn issue_code(state: &SimState, request: &AuthorizeRequest<'_>, user_id: &str) -> Response {
    if let Some(block) = state.entra().block_of(user_id) {
        let e = super::block_error(block);
        let body = e.body();
        let description = body["error_description"].as_str().unwrap_or("").to_string();
        let mut pairs = vec![
            ("error", "access_denied"),
            ("error_description", description.as_str()),
        ];
        if let Some(s) = &request.state {
            pairs.push(("state", s.as_str()));
        }
        return redirect(&with_query(&request.redirect_uri, &pairs));
    }
    let code = format!(
        "1.SimCode{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let entra = state.entra();
    let now = Instant::now();
    if let Ok(mut codes) = entra.auth_codes.lock() {
        bounded_insert(
            &mut codes,
            code.clone(),
            AuthCodeGrant {
                client_id: request.app.client_id.clone(),
                user_id: user_id.to_string(),
                redirect_uri: request.redirect_uri.clone(),
                scopes: request.scopes.clone(),
                code_challenge: request.code_challenge.clone(),
                expires: now + entra.authorization_code_lifetime,
            },
            |g| g.expires > now,
        );
    }
    let session = uuid::Uuid::new_v4().to_string();
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &request.state {
        pairs.push(("state", s.as_str()));
    }
    pairs.push(("session_state", session.as_str()));
    redirect(&with_query(&request.redirect_uri, &pairs))
}

fn sign_in_form(params: &HashMap<String, String>, message: &str) -> Response {
    let hidden: String = params
        .iter()
        .filter(|(k, _)| k.as_str() != "username" && k.as_str() != "password")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head><body>\
<h1>Sign in</h1><p>{}</p><form method=\"post\">{hidden}\
<p><label>Email <input name=\"username\" type=\"email\" value=\"{}\"></label></p>\
<p><label>Password <input name=\"password\" type=\"password\"></label></p>\
<p><button>Sign in</button></p></form><p>graphgate simulator of Microsoft Entra ID.</p></body></html>",
        escape(message),
        escape(params.get("login_hint").map(String::as_str).unwrap_or(""))
    ))
    .into_response()
}

pub async fn authorize(
    State(state): State<SimState>,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let request = match validate(&state, &tenant, &params) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let prompt = params.get("prompt").map(String::as_str).unwrap_or("");
    let hinted = params
        .get("login_hint")
        .and_then(|hint| state.tenant().user(hint))
        .filter(|u| !u.shared);
    match hinted {
        Some(user) if prompt != "login" => issue_code(&state, &request, &user.id),
        _ => sign_in_form(&params, "Sign in with your account."),
    }
}

/// The sign-in form posts back here with the authorize parameters.
pub async fn sign_in(
    State(state): State<SimState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let params = match parse_form(&body) {
        Ok(p) => p,
        Err(e) => return error_page(e),
    };
    let request = match validate(&state, &tenant, &params) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
    match state.tenant().user(field("username")) {
        Some(user) if !user.shared && user.password == field("password") => {
            issue_code(&state, &request, &user.id)
        }
        _ => sign_in_form(
            &params,
            "Your account or password is incorrect. If you don't remember your password, reset it now. (AADSTS50126)",
        ),
    }
}

pub async fn admin_consent(
    State(state): State<SimState>,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = check_tenant(state.tenant(), &tenant) {
        return error_page(e);
    }
    let field = |name: &str| params.get(name).map(String::as_str);
    let client_id = field("client_id").unwrap_or("");
    let app = match find_app(state.tenant(), &tenant, client_id) {
        Ok(app) => app,
        Err(e) => return error_page(e),
    };
    let redirect_uri = field("redirect_uri").unwrap_or("");
    if !redirect_registered(app, redirect_uri) {
        return error_page(EntraError::new(
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'.",
                app.client_id
            ),
        ));
    }
    let oauth_state = field("state").unwrap_or("");
    let location = if state.entra().admin_consent_denied() {
        with_query(
            redirect_uri,
            &[
                ("error", "permission_denied"),
                ("error_description", "The admin canceled the request"),
                ("state", oauth_state),
            ],
        )
    } else {
        with_query(
            redirect_uri,
            &[
                ("admin_consent", "True"),
                ("tenant", state.tenant().id.as_str()),
                ("state", oauth_state),
            ],
        )
    };
    redirect(&location)
}

pub async fn openid_configuration(
    State(state): State<SimState>,
    Path(tenant): Path<String>,
) -> Response {
    if let Err(e) = check_tenant(state.tenant(), &tenant) {
        return e.into_response();
    }
    let base = state.config().public_url.trim_end_matches('/').to_string();
    let tid = state.tenant().id.clone();
    Json(json!({
        "token_endpoint": format!("{base}/{tid}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/devicecode"),
        "issuer": format!("https://login.microsoftonline.com/{tid}/v2.0"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "tenant_region_scope": "EU",
    }))
    .into_response()
}
