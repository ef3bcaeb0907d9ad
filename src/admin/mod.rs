//! The admin HTTP endpoint: `/healthz` (the process answers), `/readyz`
//! (every listener accepts, every enabled account has a usable grant,
//! Microsoft Graph answers), `/metrics` (Prometheus / OpenMetrics text,
//! see [`crate::metrics`]), and the web [`console`] at `/`.
//!
//! Off by default outside `graphgate demo`; loopback by default when on.

pub mod console;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::StateLabel;
use crate::store::{AccountState, SpoolState, Store};

pub use crate::gateway::registry::{Listeners, Up};

/// What the admin endpoint reports on.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<AdminInner>,
}

struct AdminInner {
    store: Store,
    started: Instant,
    listeners: Listeners,
    /// Graph's base URL, probed by /readyz (`None`: not probed).
    graph_url: Option<String>,
    http: reqwest::Client,
    /// The last Graph probe: when, and the problem if any.
    probe: tokio::sync::Mutex<Option<(Instant, Option<String>)>>,
    /// The web console, when this endpoint serves one.
    console: Option<console::Console>,
}

/// How long a Graph probe's answer is reused (probes are not free).
const PROBE_TTL: Duration = Duration::from_secs(15);

impl AdminState {
    pub fn new(store: Store) -> AdminState {
        AdminState::with(store, Listeners::default(), None)
    }

    /// With the gateway's listeners and Graph's base URL to check.
    pub fn with(store: Store, listeners: Listeners, graph_url: Option<String>) -> AdminState {
        AdminState::with_console(store, listeners, graph_url, None)
    }

    /// [`AdminState::with`], serving `console` at `/` too.
    pub fn with_console(
        store: Store,
        listeners: Listeners,
        graph_url: Option<String>,
        console: Option<console::Console>,
    ) -> AdminState {
        AdminState {
            inner: Arc::new(AdminInner {
                store,
                started: Instant::now(),
                listeners,
                graph_url,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                probe: tokio::sync::Mutex::new(None),
                console,
            }),
        }
    }

    /// Whether Graph answers HTTP at all (any status: a 401 without a
    /// token proves it is reachable); the answer is kept [`PROBE_TTL`].
    async fn graph_problem(&self) -> Option<String> {
        let url = self.inner.graph_url.as_ref()?;
        let mut last = self.inner.probe.lock().await;
        if let Some((at, problem)) = last.as_ref()
            && at.elapsed() < PROBE_TTL
        {
            return problem.clone();
        }
        let probe = format!("{}/v1.0/", url.trim_end_matches('/'));
        let problem = match self.inner.http.get(&probe).send().await {
            Ok(_) => None,
            Err(e) => Some(format!(
                "Microsoft Graph at {url} does not answer ({e}); check the network, proxy \
                 and microsoft.graph_url"
            )),
        };
        *last = Some((Instant::now(), problem.clone()));
        problem
    }
}

pub fn router(state: AdminState) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    match state.inner.console.clone() {
        Some(console) => health.merge(console::router(console)),
        None => health,
    }
}

/// Serve on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The console needs the peer's address (loopback only, login penalty).
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let store = state.inner.store.clone();
    let accounts = match tokio::task::spawn_blocking(move || store.accounts()).await {
        Ok(Ok(accounts)) => accounts,
        Ok(Err(e)) => {
            return not_ready(vec![format!("the store does not answer: {e}")]);
        }
        Err(e) => return not_ready(vec![e.to_string()]),
    };
    let mut problems = state.inner.listeners.down();
    if accounts.is_empty() {
        problems.push("no account is configured; add one with `graphgate accounts add`".into());
    }
    problems.extend(
        accounts
            .iter()
            .filter(|a| a.state == AccountState::Offline)
            .map(|a| match &a.last_error {
                Some(e) => format!("{}: OFFLINE: {e}", a.login),
                None => format!(
                    "{}: OFFLINE: not signed in; run `graphgate login {}`",
                    a.login, a.login
                ),
            }),
    );
    if let Some(problem) = state.graph_problem().await {
        problems.push(problem);
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            format!("ready: {} account(s) online\n", accounts.len()),
        )
            .into_response()
    } else {
        not_ready(problems)
    }
}

fn not_ready(problems: Vec<String>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready:\n{}\n", problems.join("\n")),
    )
        .into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let store = state.inner.store.clone();
    let gathered = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
        let logins = store.login_failure_counts(crate::login_guard::now_ms())?;
        Ok((store.accounts()?, store.spool_list(None, None)?, logins))
    })
    .await;
    let m = crate::metrics::get();
    m.uptime_seconds
        .set(state.inner.started.elapsed().as_secs() as i64);
    if let Ok(Ok((accounts, spool, (locked, failing)))) = gathered {
        m.login_locked_pairs.set(locked as i64);
        m.login_failing_pairs.set(failing as i64);
        let online = accounts
            .iter()
            .filter(|a| a.state == AccountState::Online)
            .count();
        let label = |s: &str| StateLabel { state: s.into() };
        m.accounts
            .get_or_create(&label("online"))
            .set(online as i64);
        m.accounts
            .get_or_create(&label("offline"))
            .set((accounts.len() - online) as i64);
        for s in [
            SpoolState::Queued,
            SpoolState::Sending,
            SpoolState::Delivered,
            SpoolState::Bounced,
            SpoolState::Dropped,
        ] {
            let n = spool.iter().filter(|e| e.state == s).count();
            m.spool_messages
                .get_or_create(&label(s.as_str()))
                .set(n as i64);
        }
        let now = crate::store::now_unix();
        let oldest = spool
            .iter()
            .filter(|e| matches!(e.state, SpoolState::Queued | SpoolState::Sending))
            .map(|e| now - e.accepted_at)
            .max()
            .unwrap_or(0);
        m.spool_oldest_queued_seconds.set(oldest.max(0));
        let figures: Vec<crate::metrics::AccountFigures> = accounts
            .iter()
            .map(|a| {
                let waiting: Vec<i64> = spool
                    .iter()
                    .filter(|e| {
                        e.account == a.id
                            && matches!(e.state, SpoolState::Queued | SpoolState::Sending)
                    })
                    .map(|e| now - e.accepted_at)
                    .collect();
                crate::metrics::AccountFigures {
                    login: a.login.clone(),
                    online: a.state == AccountState::Online,
                    queued: waiting.len(),
                    oldest_queued_s: waiting.into_iter().max().unwrap_or(0),
                }
            })
            .collect();
        m.set_accounts(&figures);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}
