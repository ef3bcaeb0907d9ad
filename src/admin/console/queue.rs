//! The spool (list, show, retry, drop with confirmation — the rules of
//! [`crate::gateway::ops::queue`], as `graphgate queue`), Send test (the
//! steps of `graphgate send-test`, shown as they happen) and Doctor (the
//! findings of `graphgate doctor` with their fixes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::access;
use super::pages::{csrf, level_class, page};
use super::{Console, lock};
use crate::gateway::doctor::Finding;
use crate::gateway::ops::queue::{self as ops, age, is_waiting};
use crate::store::{SpoolState, now_unix};

type Form = axum::Form<HashMap<String, String>>;

/// A send test started from the console: its steps so far and whether it
/// ended (and passed).
pub(super) struct SendTestRun {
    steps: Vec<Finding>,
    ended: Option<bool>,
}

static RUNS: AtomicU64 = AtomicU64::new(1);

/// How many send tests the console remembers.
const KEEP_RUNS: u64 = 20;

fn logins(console: &Console) -> HashMap<crate::store::AccountId, String> {
    console
        .inner
        .store
        .accounts()
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.id, a.login))
        .collect()
}

pub(super) async fn list(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let entries = ops::list(&console.inner.store, true).unwrap_or_default();
    let names = logins(&console);
    let now = now_unix();
    let waiting: Vec<_> = entries.iter().filter(|e| is_waiting(e.state)).collect();
    let done: Vec<_> = entries
        .iter()
        .filter(|e| !is_waiting(e.state))
        .rev()
        .take(50)
        .collect();
    let table = |rows: &[&crate::store::SpoolEntry]| {
        html! {
            table {
                thead { tr { th { "Id" } th { "State" } th { "Age" } th { "Attempts" } th { "Account" } th { "To" } th { "Last error" } } }
                tbody {
                    @for e in rows {
                        tr {
                            td { a href=(format!("/queue/{}", e.id.0)) { (e.id.0) } }
                            td { (e.state.as_str()) }
                            td { (age(now - e.accepted_at)) }
                            td { (e.attempts) }
                            td { (names.get(&e.account).cloned().unwrap_or_else(|| format!("#{}", e.account.0))) }
                            td { (e.rcpt_to.join(", ")) }
                            td { (e.last_error.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        h2 { "Waiting" }
        @if waiting.is_empty() { p { "Nothing waiting." } } @else { (table(&waiting)) }
        @if !done.is_empty() {
            h2 { "Done (latest 50)" }
            (table(&done))
        }
    };
    page("Queue", &admin, Some(15), body).into_response()
}

pub(super) async fn show(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let e = match ops::entry(&console.inner.store, id) {
        Ok(e) => e,
        Err(err) => {
            return (
                StatusCode::NOT_FOUND,
                page("Queue", &admin, None, html! { p.problem { (err) } }),
            )
                .into_response();
        }
    };
    let names = logins(&console);
    let now = now_unix();
    let body = html! {
        dl {
            dt { "State" } dd { (e.state.as_str()) }
            dt { "Account" } dd { (names.get(&e.account).cloned().unwrap_or_default()) }
            dt { "From" } dd { @if e.mail_from.is_empty() { "<> (null sender)" } @else { (e.mail_from) } }
            dt { "To" } dd { (e.rcpt_to.join(", ")) }
            dt { "Size" } dd { (e.size) " bytes" }
            @if let Some(mid) = &e.message_id { dt { "Message-ID" } dd { "<" (mid) ">" } }
            dt { "Accepted" } dd { (age(now - e.accepted_at)) " ago" }
            dt { "Attempts" } dd { (e.attempts) }
            @if e.state == SpoolState::Queued {
                dt { "Next try" } dd { @if e.next_attempt_at > now { "in " (age(e.next_attempt_at - now)) } @else { "now" } }
            }
            @if e.state == SpoolState::Sending {
                dt { "Next step" } dd { "being sent, or being checked after an interruption" }
            }
            @if let Some(at) = e.delivered_at { dt { "Delivered" } dd { (age(now - at)) " ago" } }
            @if let Some(err) = &e.last_error { dt { "Last error" } dd { (err) } }
        }
        @if is_waiting(e.state) {
            form method="post" action=(format!("/queue/{id}/retry")) {
                (csrf(&admin))
                button type="submit" { "Retry now" }
            }
            form method="post" action=(format!("/queue/{id}/drop")) {
                (csrf(&admin))
                p { label { input type="checkbox" name="confirm" value="yes" required;
                    " Yes, drop message " (id) ": it is not delivered and no bounce is sent" } }
                button.danger type="submit" { "Drop" }
            }
        }
    };
    page(&format!("Message {id}"), &admin, None, body).into_response()
}

pub(super) async fn retry(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    axum::Form(form): Form,
) -> Response {
    let admin = match access::poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let text = match ops::retry(&console.inner.store, Some(id)) {
        Ok(n) => format!("{n} message(s) due now; the gateway tries them within a few seconds."),
        Err(e) => format!("Not retried: {e}"),
    };
    console.flash(&admin.id, text);
    Redirect::to(&format!("/queue/{id}")).into_response()
}

pub(super) async fn drop_message(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    axum::Form(form): Form,
) -> Response {
    let admin = match access::poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        console.flash(
            &admin.id,
            "Not dropped: tick the confirmation box to drop it.",
        );
        return Redirect::to(&format!("/queue/{id}")).into_response();
    }
    let text = match ops::drop_message(&console.inner.store, id) {
        Ok(()) => format!("Message {id} dropped: it will not be delivered."),
        Err(e) => format!("Not dropped: {e}"),
    };
    console.flash(&admin.id, text);
    Redirect::to(&format!("/queue/{id}")).into_response()
}

pub(super) async fn send_test_page(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let accounts = console.inner.store.accounts().unwrap_or_default();
    let body = html! {
        p { "Sends one message through the spool and Microsoft Graph exactly as SMTP would, and shows each step." }
        form method="post" action="/send-test" {
            (csrf(&admin))
            p { label { "From account " select name="from" {
                @for a in &accounts { option value=(a.login) { (a.login) } }
            } } }
            p { label { "To " input type="email" name="to" required; } }
            p { label { "Subject " input name="subject" value="graphgate send test"; } }
            p { label { input type="checkbox" name="read_back" value="yes" checked;
                " Read it back (wait until it shows in the recipient's Inbox, or the sender's Sent Items)" } }
            p { button type="submit" { "Send test message" } }
        }
    };
    page("Send test", &admin, None, body).into_response()
}

pub(super) async fn send_test(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): Form,
) -> Response {
    if let Err(r) = access::poster(&console, &headers, peer, &form) {
        return *r;
    }
    let get = |k: &str| {
        form.get(k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let args = crate::gateway::send_test::SendTest {
        from: get("from"),
        to: get("to"),
        subject: Some(get("subject")).filter(|s| !s.is_empty()),
        read_back: get("read_back") == "yes",
        timeout: 120,
    };
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    {
        let mut runs = lock(&console.inner.send_tests);
        // Keep the latest runs only.
        runs.retain(|id, _| run.saturating_sub(*id) < KEEP_RUNS);
        runs.insert(
            run,
            SendTestRun {
                steps: Vec::new(),
                ended: None,
            },
        );
    }
    let task = console.clone();
    tokio::spawn(async move {
        let inner = &task.inner;
        let sink_console = task.clone();
        let mut sink = move |f: &Finding| {
            if let Some(r) = lock(&sink_console.inner.send_tests).get_mut(&run) {
                r.steps.push(f.clone());
            }
        };
        let passed =
            crate::gateway::send_test::steps(&inner.config, &inner.store, &args, &mut sink).await;
        if let Some(r) = lock(&inner.send_tests).get_mut(&run) {
            r.ended = Some(passed);
        }
    });
    Redirect::to(&format!("/send-test/{run}")).into_response()
}

pub(super) async fn send_test_run(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(run): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let (steps, ended) = match lock(&console.inner.send_tests).get(&run) {
        Some(r) => (r.steps.clone(), r.ended),
        None => return Redirect::to("/send-test").into_response(),
    };
    let body = html! {
        ol.steps {
            @for f in &steps {
                li class=(level_class(f.level)) {
                    strong { (f.check) } ": " (f.detail)
                    @if let Some(fix) = &f.fix { " — fix: " (fix) }
                }
            }
        }
        @match ended {
            None => { p.running { "Running… this page reloads itself." } }
            Some(true) => { p.result.ok { "send-test passed." } }
            Some(false) => { p.result.problem { "send-test FAILED: see the step above for the reason and its fix." } }
        }
        p { a href="/send-test" { "Another test" } }
    };
    page("Send test", &admin, ended.is_none().then_some(2), body).into_response()
}

pub(super) async fn doctor(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let findings = crate::gateway::doctor::findings(
        console.inner.config_file.clone(),
        Some(console.inner.config.data_dir.clone()),
    )
    .await;
    let body = html! {
        p { "The checks of " code { "graphgate doctor" } ", each with its fix." }
        ul.findings {
            @for f in &findings {
                li class=(level_class(f.level)) {
                    strong { (f.check) } ": " (f.detail)
                    @if let Some(fix) = &f.fix { " — fix: " (fix) }
                }
            }
        }
    };
    page("Doctor", &admin, None, body).into_response()
}
