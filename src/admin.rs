//! The admin HTTP endpoint: `/healthz` (the process answers), `/readyz`
//! (every account has a usable grant, the store answers), `/metrics`
//! (Prometheus text format).
//!
//! Off by default outside `graphgate demo`; loopback by default when on.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::store::{AccountState, SpoolState, Store};

/// What the admin endpoint reports on.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<AdminInner>,
}

struct AdminInner {
    store: Store,
    started: Instant,
}

impl AdminState {
    pub fn new(store: Store) -> AdminState {
        AdminState {
            inner: Arc::new(AdminInner {
                store,
                started: Instant::now(),
            }),
        }
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serve on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let store = state.inner.store.clone();
    let accounts = tokio::task::spawn_blocking(move || store.accounts()).await;
    let accounts = match accounts {
        Ok(Ok(accounts)) => accounts,
        Ok(Err(e)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: the store does not answer: {e}\n"),
            )
                .into_response();
        }
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response();
        }
    };
    if accounts.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no account is configured; add one with `graphgate accounts add`\n",
        )
            .into_response();
    }
    let offline: Vec<String> = accounts
        .iter()
        .filter(|a| a.state == AccountState::Offline)
        .map(|a| match &a.last_error {
            Some(e) => format!("{}: OFFLINE: {e}", a.login),
            None => format!("{}: OFFLINE: not signed in", a.login),
        })
        .collect();
    if offline.is_empty() {
        (
            StatusCode::OK,
            format!("ready: {} account(s) online\n", accounts.len()),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", offline.join("\n")),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let store = state.inner.store.clone();
    let gathered = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
        Ok((store.accounts()?, store.spool_list(None, None)?))
    })
    .await;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP graphgate_build_info Version of the running graphgate.\n\
         # TYPE graphgate_build_info gauge\n\
         graphgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP graphgate_uptime_seconds Seconds since the process started.\n\
         # TYPE graphgate_uptime_seconds gauge\n\
         graphgate_uptime_seconds {}",
        state.inner.started.elapsed().as_secs()
    );
    if let Ok(Ok((accounts, spool))) = gathered {
        let online = accounts
            .iter()
            .filter(|a| a.state == AccountState::Online)
            .count();
        let _ = writeln!(
            out,
            "# HELP graphgate_accounts Local accounts by state.\n\
             # TYPE graphgate_accounts gauge\n\
             graphgate_accounts{{state=\"online\"}} {online}\n\
             graphgate_accounts{{state=\"offline\"}} {}",
            accounts.len() - online
        );
        let _ = writeln!(
            out,
            "# HELP graphgate_spool_messages Spooled messages by state.\n\
             # TYPE graphgate_spool_messages gauge"
        );
        for s in [
            SpoolState::Queued,
            SpoolState::Sending,
            SpoolState::Delivered,
            SpoolState::Bounced,
            SpoolState::Dropped,
        ] {
            let n = spool.iter().filter(|e| e.state == s).count();
            let _ = writeln!(
                out,
                "graphgate_spool_messages{{state=\"{}\"}} {n}",
                s.as_str()
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
