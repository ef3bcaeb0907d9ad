//! "Sign in with Microsoft" from the console.
//!
//! - Authorization code + PKCE (RFC 7636) with the admin listener's own
//!   redirect URI, `http://localhost:PORT/` (the `http://localhost`
//!   registration `graphgate login --browser` needs already covers it:
//!   Entra ignores a localhost redirect's port; graph-facts.md, "Entra").
//!   The form opens Entra in a new tab; Entra sends the browser back to
//!   `/?code=…&state=…`, where the `state` (random, one use, ten minutes)
//!   names the sign-in — the session cookie is `SameSite=Strict` and does
//!   not come along on that cross-site redirect, nor is it needed.
//! - Device code (RFC 8628) as the alternative: the page shows the URL,
//!   the code and its countdown while the console polls.
//!
//! Either way the tokens end in [`crate::gateway::ops::signin`], as with
//! `graphgate login`. Neither the code, the verifier nor a token is ever
//! put in a page or a log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use subtle::ConstantTimeEq;

use super::access::{self, Admin};
use super::pages::{bare, csrf, urlencode};
use super::{Console, lock};
use crate::auth::{AuthError, EntraClient};
use crate::gateway::ops::signin::{auth_sentence, complete_delegated};
use crate::secret::Secret;
use crate::store::{Account, AuthProfile};

/// How long a started browser sign-in waits for its redirect.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// A browser sign-in waiting for Entra's redirect.
pub(super) struct Pending {
    login: String,
    redirect_uri: String,
    code_verifier: Secret<String>,
    scopes: Vec<String>,
    started: Instant,
}

/// A device-code sign-in: what the page shows, and how it ended.
pub(super) struct DeviceSignIn {
    verification_uri: String,
    user_code: String,
    deadline: Instant,
    /// `Some` once it ended: what to tell the admin.
    outcome: Option<String>,
}

fn entra(console: &Console) -> Result<std::sync::Arc<EntraClient>, String> {
    console.inner.entra.clone()
}

/// The sign-in panel of an account page.
pub(super) fn panel(console: &Console, admin: &Admin, account: &Account) -> Markup {
    let base = format!("/accounts/{}", urlencode(&account.login));
    let redirect = console.redirect_uri();
    let consent =
        crate::gateway::ops::consent::consent_url(&console.inner.config, "http://localhost");
    let device = {
        let mut devices = lock(&console.inner.devices);
        let key = account.login.to_lowercase();
        let ended = devices
            .get(&key)
            .is_some_and(|d| d.outcome.is_some() || Instant::now() > d.deadline);
        let view = devices.get(&key).map(|d| {
            (
                d.verification_uri.clone(),
                d.user_code.clone(),
                d.deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs(),
                d.outcome.clone(),
            )
        });
        if ended {
            devices.remove(&key);
        }
        view
    };
    html! {
        section.signin {
            h2 { "Sign-in" }
            @if account.auth_profile == AuthProfile::AppOnly {
                p { "App-only: graphgate signs in with the app's own credential (microsoft.client_secret_file or certificate_file); no user signs in. Admin consent for the application permissions is needed once." }
            } @else {
                form method="post" action=(format!("{base}/signin")) target="_blank" data-reload="3" {
                    (csrf(admin))
                    button.microsoft type="submit" { "Sign in with Microsoft" }
                }
                p.hint { "Opens Microsoft's sign-in in a new tab; sign in as " (account.mailbox)
                    ". The app registration needs the redirect URI " code { (redirect) }
                    " (platform \"Mobile and desktop applications\"; a registered "
                    code { "http://localhost" } " covers every port)." }
                @match device {
                    Some((uri, code, left, None)) if left > 0 => {
                        div.device {
                            p { "Open " a href=(uri) target="_blank" rel="noopener noreferrer" { (uri) }
                                " on any device and enter the code" }
                            p.code { (code) }
                            p { "The code expires in " span.countdown data-seconds=(left) { (left / 60) ":" (format!("{:02}", left % 60)) } "." }
                        }
                    }
                    Some((_, _, _, Some(outcome))) => { p.flash { (outcome) } }
                    _ => {
                        form method="post" action=(format!("{base}/device") ) {
                            (csrf(admin))
                            button type="submit" { "Sign in with a code on another device" }
                        }
                    }
                }
            }
            details {
                summary { "Admin consent" }
                @match &consent {
                    Ok(url) => {
                        p { "When the tenant does not let users consent to apps, a Global Administrator or Privileged Role Administrator opens "
                            a href=(url) target="_blank" rel="noopener noreferrer" { "the admin consent page" }
                            " and accepts, for the whole organisation:" }
                    }
                    Err(e) => { p.problem { (e) } }
                }
                ul {
                    @for (name, words) in crate::gateway::ops::consent::PERMISSIONS {
                        li { strong { (name) } ": " (words) }
                    }
                }
            }
        }
    }
}

/// `POST /accounts/{login}/signin`: start authorization code + PKCE and
/// send the browser to Entra's authorize page.
pub(super) async fn browser(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let admin = match access::poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let Some(account) = console.inner.store.account(&login).ok().flatten() else {
        console.flash(&admin.id, format!("There is no local account {login}."));
        return Redirect::to("/").into_response();
    };
    let entra = match entra(&console) {
        Ok(e) => e,
        Err(text) => return problem_page(&text),
    };
    let scopes = entra
        .config()
        .delegated_scopes(!account.shared_mailboxes.is_empty());
    let request =
        match entra.authorization_request(&console.redirect_uri(), &scopes, Some(&account.mailbox))
        {
            Ok(r) => r,
            Err(e) => return problem_page(&auth_sentence(&account.login, &e)),
        };
    {
        let mut pending = lock(&console.inner.sign_ins);
        pending.retain(|_, p| p.started.elapsed() < PENDING_TTL);
        pending.insert(
            request.state.expose().clone(),
            Pending {
                login: account.login.clone(),
                redirect_uri: request.redirect_uri.clone(),
                code_verifier: request.code_verifier,
                scopes: request.scopes,
                started: Instant::now(),
            },
        );
    }
    tracing::info!(account = %account.login, "console: browser sign-in started");
    Redirect::to(&request.url).into_response()
}

fn problem_page(text: &str) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        bare("Sign-in failed", html! { p.problem { (text) } }),
    )
        .into_response()
}

/// Entra's redirect back to `/`: redeem the code of the sign-in `state`
/// names.
pub(super) async fn callback(
    console: &Console,
    peer: SocketAddr,
    query: &HashMap<String, String>,
) -> Response {
    let state = query.get("state").map(String::as_str).unwrap_or("");
    let pending = {
        let mut map = lock(&console.inner.sign_ins);
        let key = map
            .keys()
            .find(|k| bool::from(k.as_bytes().ct_eq(state.as_bytes())))
            .cloned();
        key.and_then(|k| map.remove(&k))
            .filter(|p| p.started.elapsed() < PENDING_TTL)
    };
    let Some(pending) = pending else {
        tracing::warn!(%peer, "console: a sign-in redirect with an unknown state");
        return (
            StatusCode::BAD_REQUEST,
            bare(
                "Sign-in not recognised",
                html! { p.problem { "This sign-in answer does not belong to a sign-in the console started (or it is older than ten minutes, or was used already). Start it again from the account's page with \"Sign in with Microsoft\"." } },
            ),
        )
            .into_response();
    };
    let login = pending.login.clone();
    let outcome = finish(console, pending, query).await;
    let (title, text, ok) = match outcome {
        Ok(text) => ("Signed in", text, true),
        Err(text) => ("Sign-in failed", text, false),
    };
    tracing::info!(account = %login, ok, "console: browser sign-in ended");
    bare(
        title,
        html! {
            @if ok { p.flash { (text) } } @else { p.problem { (text) } }
            p { "You can close this tab; the console's account page shows the account's state." }
        },
    )
    .into_response()
}

async fn finish(
    console: &Console,
    pending: Pending,
    query: &HashMap<String, String>,
) -> Result<String, String> {
    let entra = entra(console)?;
    let store = &console.inner.store;
    let account = store
        .account(&pending.login)
        .ok()
        .flatten()
        .ok_or_else(|| format!("the account {} was removed meanwhile", pending.login))?;
    if let Some(error) = query.get("error") {
        let description = query.get("error_description").cloned().unwrap_or_default();
        let e = if description.starts_with("AADSTS") {
            AuthError::from_entra(crate::auth::error::EntraErrorResponse {
                error: error.clone(),
                error_description: Some(description),
                ..Default::default()
            })
        } else {
            AuthError::Authorization {
                error: error.clone(),
                description,
            }
        };
        return Err(auth_sentence(&account.login, &e));
    }
    let code = query.get("code").map(String::as_str).unwrap_or("");
    let tokens = entra
        .redeem_code(
            code,
            &pending.redirect_uri,
            &pending.code_verifier,
            &pending.scopes,
        )
        .await
        .map_err(|e| auth_sentence(&account.login, &e))?;
    signed_in(console, &entra, &account, tokens).await
}

async fn signed_in(
    console: &Console,
    entra: &std::sync::Arc<EntraClient>,
    account: &Account,
    tokens: crate::auth::TokenSet,
) -> Result<String, String> {
    let inner = &console.inner;
    let done = complete_delegated(
        &inner.store,
        &inner.key,
        entra.clone(),
        &inner.graph,
        account,
        tokens,
    )
    .await
    .map_err(|e| e.to_string())?;
    let due = if done.due_now > 0 {
        format!(" {} queued message(s) are due now.", done.due_now)
    } else {
        String::new()
    };
    Ok(format!(
        "Signed in as {}; {} is ONLINE. Inbox: {} unread / {} total.{due}",
        done.who, account.login, done.inbox_unread, done.inbox_total
    ))
}

/// `POST /accounts/{login}/device`: start a device-code sign-in and poll
/// it in the background; the account page shows the code.
pub(super) async fn device(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let admin = match access::poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let back = format!("/accounts/{}", urlencode(&login));
    let Some(account) = console.inner.store.account(&login).ok().flatten() else {
        console.flash(&admin.id, format!("There is no local account {login}."));
        return Redirect::to("/").into_response();
    };
    let entra = match entra(&console) {
        Ok(e) => e,
        Err(text) => {
            console.flash(&admin.id, text);
            return Redirect::to(&back).into_response();
        }
    };
    let scopes = entra
        .config()
        .delegated_scopes(!account.shared_mailboxes.is_empty());
    let grant = match entra.start_device_code(&scopes).await {
        Ok(g) => g,
        Err(e) => {
            console.flash(&admin.id, auth_sentence(&account.login, &e));
            return Redirect::to(&back).into_response();
        }
    };
    let key = account.login.to_lowercase();
    lock(&console.inner.devices).insert(
        key.clone(),
        DeviceSignIn {
            verification_uri: grant.verification_uri.clone(),
            user_code: grant.user_code.clone(),
            deadline: grant.deadline().into_std(),
            outcome: None,
        },
    );
    let task = console.clone();
    tokio::spawn(async move {
        let polled = entra.poll_device_code(&grant, |_| {}).await;
        let outcome = match polled {
            Ok(tokens) => match signed_in(&task, &entra, &account, tokens).await {
                Ok(text) | Err(text) => text,
            },
            Err(e) => auth_sentence(&account.login, &e),
        };
        if let Some(d) = lock(&task.inner.devices).get_mut(&key) {
            d.outcome = Some(outcome);
        }
    });
    Redirect::to(&back).into_response()
}
