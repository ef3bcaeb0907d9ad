//! The page frame and the dashboard: each account's state (what
//! `graphgate status` says, from the same function), its spool, last sync
//! and settings; Graph requests and 429s of the last 10 minutes; the
//! listeners and the certificate. It refreshes itself (meta refresh).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Console;
use super::access::{self, Admin};
use crate::gateway::ops::queue::{age, list as spool_list};
use crate::gateway::ops::status::{AccountStatus, check};
use crate::store::{AuthProfile, now_unix};

/// Seconds between the dashboard's own reloads.
const REFRESH_S: u32 = 15;

/// A page without navigation (sign-in, refusals, the sign-in callback).
pub(super) fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) }
                    link rel="stylesheet" href="/console.css";
                    script src="/console.js" defer {}
                }
                body {
                    header { span.brand { "graphgate" } }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A console page: navigation, the session's messages, `body`; reloads
/// itself every `refresh` seconds when given.
pub(super) fn page(title: &str, admin: &Admin, refresh: Option<u32>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                    title { (title) " · graphgate console" }
                    link rel="stylesheet" href="/console.css";
                    script src="/console.js" defer {}
                }
                body {
                    header {
                        span.brand { "graphgate" }
                        nav {
                            a href="/" { "Dashboard" }
                            a href="/accounts/new" { "Add account" }
                            a href="/queue" { "Queue" }
                            a href="/send-test" { "Send test" }
                            a href="/doctor" { "Doctor" }
                        }
                        form.logout method="post" action="/logout" {
                            (csrf(admin))
                            button type="submit" { "Sign out" }
                        }
                    }
                    main {
                        @for note in &admin.flash { p.flash { (note) } }
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// The hidden CSRF field of every form.
pub(super) fn csrf(admin: &Admin) -> Markup {
    html! { input type="hidden" name="csrf" value=(admin.csrf); }
}

/// `/`: the dashboard, or the end of "Sign in with Microsoft" (Entra
/// redirects to `/?code=…&state=…`).
pub(super) async fn home(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if query.contains_key("state") && (query.contains_key("code") || query.contains_key("error")) {
        return super::signin::callback(&console, peer, &query).await;
    }
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    dashboard(&console, &admin).await.into_response()
}

/// When `unix` was, in words (`5 min ago`).
pub(super) fn ago(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    format!("{} ago", age((now_unix() - unix).max(0)))
}

fn list_or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

async fn dashboard(console: &Console, admin: &Admin) -> Html<String> {
    let inner = &console.inner;
    let store = &inner.store;
    let accounts = store.accounts().unwrap_or_default();
    let entra_error;
    let entra = match &inner.entra {
        Ok(e) => Ok(e),
        Err(text) => {
            entra_error = crate::auth::AuthError::Config(text.clone());
            Err(&entra_error)
        }
    };
    let spool = spool_list(store, false).unwrap_or_default();
    let now = now_unix();
    // One Graph read per account, all at once (the dashboard waits for
    // the slowest, not for the sum).
    let statuses: Vec<AccountStatus> = futures::future::join_all(
        accounts
            .iter()
            .map(|a| check(a.clone(), store, &inner.key, entra, &inner.graph)),
    )
    .await;
    type Row = (
        crate::store::Account,
        AccountStatus,
        usize,
        Option<i64>,
        i64,
    );
    let mut rows: Vec<Row> = Vec::new();
    for (account, status) in accounts.into_iter().zip(statuses) {
        let mine: Vec<_> = spool.iter().filter(|e| e.account == account.id).collect();
        let oldest = mine.iter().map(|e| now - e.accepted_at).max();
        let synced = store.last_sync(account.id).ok().flatten().unwrap_or(0);
        rows.push((account, status, mine.len(), oldest, synced));
    }
    let window = console.sample_graph();
    let (requests, throttled) = (window.requests, window.throttled);
    let listeners = inner.listeners.all();
    let certificate = crate::gateway::doctor::certificate(&inner.config);
    let body = html! {
        section {
            h2 { "Accounts" }
            @if rows.is_empty() {
                p { "No accounts yet. " a href="/accounts/new" { "Add one" } "." }
            }
            @for (account, status, waiting, oldest, synced) in &rows {
                article.account {
                    h3 {
                        a href=(format!("/accounts/{}", urlencode(&account.login))) { (account.login) }
                        " "
                        @if status.state == "online" {
                            span.state.online { "ONLINE" }
                        } @else {
                            span.state.offline { "NEEDS SIGN-IN" }
                        }
                    }
                    @if let Some(error) = &status.error {
                        p.problem { (error) }
                    }
                    dl {
                        dt { "Mailbox" } dd { (account.mailbox) }
                        dt { "Sign-in" } dd {
                            @match account.auth_profile {
                                AuthProfile::Delegated => "delegated (a user signed in)",
                                AuthProfile::AppOnly => "app-only (client credentials)",
                            }
                            @if let Some(exp) = status.token_expires_at {
                                @if exp > now { " · access token valid " (age(exp - now)) " more" }
                                @else { " · access token expired (refreshed on next use)" }
                            }
                        }
                        @if account.auth_profile == AuthProfile::AppOnly {
                            dt { "App credential" }
                            dd { (super::accounts::credential_expiry(console, account)) }
                        }
                        dt { "Aliases" } dd { (list_or_none(&account.aliases)) }
                        dt { "Shared mailboxes" } dd { (list_or_none(&account.shared_mailboxes)) }
                        @if let (Some(unread), Some(total)) = (status.inbox_unread, status.inbox_total) {
                            dt { "Inbox" } dd { (unread) " unread / " (total) " total" }
                        }
                        dt { "Spool" } dd {
                            @if *waiting == 0 { "nothing waiting" }
                            @else { (waiting) " waiting, oldest " (age(oldest.unwrap_or(0))) }
                        }
                        dt { "Last sync" } dd { (ago(*synced)) }
                        dt { "Graph, last 10 minutes" } dd {
                            @let (r, t) = window
                                .by_mailbox
                                .get(&account.mailbox.to_lowercase())
                                .copied()
                                .unwrap_or((0, 0));
                            (r) " requests, " (t) " answered 429, of Microsoft's 10,000 per 10 minutes for this mailbox"
                        }
                    }
                }
            }
        }
        section {
            h2 { "Microsoft Graph, last 10 minutes" }
            p {
                (requests) " requests, " (throttled) " answered 429 (throttled). Microsoft's budget: "
                "10,000 requests per 10 minutes per app and mailbox, 4 at a time."
            }
        }
        section {
            h2 { "Listeners" }
            table {
                thead { tr { th { "Listener" } th { "Address" } th { "State" } } }
                tbody {
                    @for (what, addr, up) in &listeners {
                        tr { td { (what) } td { (addr) } td { @if *up { "accepting" } @else { "STOPPED" } } }
                    }
                }
            }
            @for finding in &certificate {
                p class=(level_class(finding.level)) { (finding.check) ": " (finding.detail)
                    @if let Some(fix) = &finding.fix { " — fix: " (fix) } }
            }
        }
    };
    page("Dashboard", admin, Some(REFRESH_S), body)
}

/// The CSS class of a doctor finding's level.
pub(super) fn level_class(level: crate::gateway::doctor::Level) -> &'static str {
    match level {
        crate::gateway::doctor::Level::Ok => "ok",
        crate::gateway::doctor::Level::Warn => "warn",
        crate::gateway::doctor::Level::Fail => "problem",
    }
}

/// A path segment.
pub(super) fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
