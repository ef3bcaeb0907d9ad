//! Who may use the console: loopback clients (unless
//! `admin.console_remote`), with a session opened by the admin password
//! (through the login penalty) or by the one-time link this process
//! printed. Sessions live in memory (a restart signs everyone out); each
//! has its own CSRF token, checked on every POST.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use subtle::ConstantTimeEq;

use super::{Console, lock, pages};
use crate::secret::Secret;

/// The session cookie's name.
const COOKIE: &str = "graphgate_console";
/// The login form's double-submit cookie (CSRF before a session exists).
const LOGIN_COOKIE: &str = "graphgate_console_login";
/// A session ends after this long without a request.
const IDLE: Duration = Duration::from_secs(8 * 3600);

/// A signed-in browser.
pub(super) struct Session {
    pub csrf: String,
    pub last_seen: Instant,
    /// Messages to show on the next page (what an action did).
    pub flash: Vec<String>,
}

/// The session of the request being served.
pub(super) struct Admin {
    pub id: String,
    pub csrf: String,
    pub flash: Vec<String>,
}

/// A one-time sign-in link, as printed.
pub struct OneTimeLink(pub String);

/// 32 random bytes, hex.
pub(super) fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Console {
    /// Open the console with a one-time link (replacing any earlier one):
    /// `http://ADDR/login?token=…`. It signs one browser in, once.
    pub fn one_time_link(&self, shown: SocketAddr) -> OneTimeLink {
        let token = random_token();
        *lock(&self.inner.one_time) = Some(token.clone());
        OneTimeLink(format!("http://{shown}/login?token={token}"))
    }

    fn new_session(&self) -> String {
        let id = random_token();
        let mut sessions = lock(&self.inner.sessions);
        sessions.retain(|_, s| s.last_seen.elapsed() < IDLE);
        sessions.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                last_seen: Instant::now(),
                flash: Vec::new(),
            },
        );
        id
    }

    /// Add a message for the next page of session `id`.
    pub(super) fn flash(&self, id: &str, text: impl Into<String>) {
        if let Some(s) = lock(&self.inner.sessions).get_mut(id) {
            s.flash.push(text.into());
        }
    }

    fn peer_allowed(&self, peer: SocketAddr) -> bool {
        peer.ip().to_canonical().is_loopback() || self.inner.config.admin.console_remote
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for `name=value`: HttpOnly, SameSite=Strict, and Secure
/// when the request came through a TLS proxy (`X-Forwarded-Proto: https`).
fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

fn refused(status: StatusCode, title: &str, text: &str) -> Response {
    (status, pages::bare(title, html! { p.problem { (text) } })).into_response()
}

fn remote_refused() -> Response {
    refused(
        StatusCode::FORBIDDEN,
        "Console: loopback only",
        "The console answers only clients on this machine (loopback). Reach it through an SSH \
         tunnel, or set admin.console_remote = true (GRAPHGATE_ADMIN_CONSOLE_REMOTE) behind a \
         firewall or TLS proxy.",
    )
}

/// The session of a page request, or the answer to give instead (the
/// login page, or why the console is closed).
pub(super) fn viewer(
    console: &Console,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Admin, Box<Response>> {
    if !console.peer_allowed(peer) {
        return Err(Box::new(remote_refused()));
    }
    session(console, headers).ok_or_else(|| Box::new(Redirect::to("/login").into_response()))
}

fn session(console: &Console, headers: &HeaderMap) -> Option<Admin> {
    let id = cookie(headers, COOKIE)?;
    let mut sessions = lock(&console.inner.sessions);
    let s = sessions.get_mut(&id)?;
    if s.last_seen.elapsed() >= IDLE {
        sessions.remove(&id);
        return None;
    }
    s.last_seen = Instant::now();
    Some(Admin {
        id,
        csrf: s.csrf.clone(),
        flash: std::mem::take(&mut s.flash),
    })
}

/// The session of a form post whose `csrf` field matches it; otherwise
/// 403 with the reason.
pub(super) fn poster(
    console: &Console,
    headers: &HeaderMap,
    peer: SocketAddr,
    form: &HashMap<String, String>,
) -> Result<Admin, Box<Response>> {
    if !console.peer_allowed(peer) {
        return Err(Box::new(remote_refused()));
    }
    let Some(admin) = session(console, headers) else {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Console: not signed in",
            "Refused: this browser is not signed in to the console (or its session ended). \
             Sign in again at /login.",
        )));
    };
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(admin.csrf.as_bytes())) {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Console: form refused",
            "Refused: this form carries no valid CSRF token, so it may not come from the \
             console's own page. Nothing was changed. Reload the console page and submit it \
             again.",
        )));
    }
    Ok(admin)
}

pub(super) async fn login_page(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !console.peer_allowed(peer) {
        return remote_refused();
    }
    if let Some(token) = query.get("token") {
        let mut one_time = lock(&console.inner.one_time);
        let matches = one_time
            .as_ref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(token.as_bytes())));
        if matches {
            *one_time = None;
            drop(one_time);
            tracing::info!(%peer, "console: signed in with the one-time link");
            let id = console.new_session();
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&headers, COOKIE, &id, None));
            return response;
        }
        drop(one_time);
        tracing::warn!(%peer, "console: a used or unknown one-time link");
        return login_form(
            &console,
            &headers,
            StatusCode::FORBIDDEN,
            "This sign-in link was already used or is not valid (each link signs in one \
             browser, once). Sign in with the admin password, or restart to get a new link.",
        );
    }
    login_form(&console, &headers, StatusCode::OK, "")
}

fn login_form(console: &Console, headers: &HeaderMap, status: StatusCode, note: &str) -> Response {
    let password_set = console.inner.store.console_password_set().unwrap_or(false);
    let token = random_token();
    let body = html! {
        @if !note.is_empty() { p.problem { (note) } }
        @if password_set {
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(token);
                p { label { "Admin password " input type="password" name="password" autocomplete="current-password" autofocus; } }
                p { button type="submit" { "Sign in" } }
            }
        } @else {
            p { "The console is closed: no admin password is set. Run "
                code { "graphgate console passwd" }
                " on this machine (or start "
                code { "graphgate demo" }
                ", which prints a one-time link), then reload this page." }
        }
    };
    let mut response = (
        status,
        pages::bare("Sign in to the graphgate console", body),
    )
        .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, &token, Some(3600)),
    );
    response
}

pub(super) async fn login(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    if !console.peer_allowed(peer) {
        return remote_refused();
    }
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return refused(
            StatusCode::FORBIDDEN,
            "Console: form refused",
            "Refused: this sign-in form carries no valid CSRF token, so it may not come from \
             the console's own page. Open /login again and sign in there.",
        );
    }
    if !console.inner.store.console_password_set().unwrap_or(false) {
        return login_form(&console, &headers, StatusCode::FORBIDDEN, "");
    }
    let password = Secret::new(form.get("password").cloned().unwrap_or_default());
    match console
        .inner
        .guard
        .check_console(&console.inner.store, peer.ip(), password)
        .await
    {
        Ok(true) => {
            tracing::info!(%peer, "console: signed in with the admin password");
            let id = console.new_session();
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&headers, COOKIE, &id, None));
            response
        }
        Ok(false) => login_form(
            &console,
            &headers,
            StatusCode::UNAUTHORIZED,
            "Wrong password. `graphgate console passwd` sets a new one.",
        ),
        Err(refusal) => login_form(
            &console,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &refusal.sentence(),
        ),
    }
}

pub(super) async fn logout(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let admin = match poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    lock(&console.inner.sessions).remove(&admin.id);
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&headers, COOKIE, "", Some(0)),
    );
    response
}
