//! The web console on the admin listener: a dashboard of every account,
//! account pages with "Sign in with Microsoft", the spool, send-test and
//! doctor — server-rendered HTML (maud), readable with JavaScript off.
//!
//! Access ([`access`]): closed unless an admin password is set
//! (`graphgate console passwd`, Argon2id in the store) or this process
//! printed a one-time sign-in link (`graphgate demo` does); loopback
//! clients only unless `admin.console_remote`; the password goes through
//! the SMTP/IMAP [`LoginGuard`] penalty. A session is a random cookie
//! (`HttpOnly; SameSite=Strict`, `Secure` behind a TLS proxy), every form
//! carries the session's CSRF token, and every page has a strict
//! Content-Security-Policy (no inline script or style; everything is
//! served from the binary). No page ever renders a token, a secret or a
//! password.
//!
//! Every verb calls the function the command line calls
//! ([`crate::gateway::ops`], `cli::send_test`, `cli::doctor`).

mod access;
mod accounts;
mod pages;
mod queue;
mod signin;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::EntraClient;
use crate::config::Config;
use crate::graph::GraphClient;
use crate::login_guard::LoginGuard;
use crate::store::{Store, StoreKey};

pub use access::OneTimeLink;

/// What the console works with: the gateway's own parts.
#[derive(Clone)]
pub struct Console {
    inner: Arc<ConsoleInner>,
}

struct ConsoleInner {
    config: Config,
    /// The configuration file the gateway read (for doctor).
    config_file: Option<PathBuf>,
    store: Store,
    key: StoreKey,
    graph: GraphClient,
    entra: Result<Arc<EntraClient>, String>,
    guard: Arc<LoginGuard>,
    listeners: super::Listeners,
    /// The admin listener's own address (the OAuth redirect URI's port).
    admin: SocketAddr,
    sessions: Mutex<HashMap<String, access::Session>>,
    one_time: Mutex<Option<String>>,
    sign_ins: Mutex<HashMap<String, signin::Pending>>,
    devices: Mutex<HashMap<String, signin::DeviceSignIn>>,
    send_tests: Mutex<HashMap<u64, queue::SendTestRun>>,
    /// Graph requests and 429s so far, oldest first.
    graph_samples: Mutex<VecDeque<GraphSample>>,
}

/// The parts of the gateway the console needs.
pub struct ConsoleParts {
    pub config: Config,
    pub config_file: Option<PathBuf>,
    pub store: Store,
    pub key: StoreKey,
    pub graph: GraphClient,
    pub entra: Result<Arc<EntraClient>, String>,
    pub guard: Arc<LoginGuard>,
    pub listeners: super::Listeners,
    pub admin: SocketAddr,
}

/// How long the dashboard's Graph window is (Microsoft's budget is per 10
/// minutes per app and mailbox: graph-facts.md, "Throttling").
const GRAPH_WINDOW: Duration = Duration::from_secs(600);

impl Console {
    pub fn new(parts: ConsoleParts) -> Console {
        Console {
            inner: Arc::new(ConsoleInner {
                config: parts.config,
                config_file: parts.config_file,
                store: parts.store,
                key: parts.key,
                graph: parts.graph,
                entra: parts.entra,
                guard: parts.guard,
                listeners: parts.listeners,
                admin: parts.admin,
                sessions: Mutex::new(HashMap::new()),
                one_time: Mutex::new(None),
                sign_ins: Mutex::new(HashMap::new()),
                devices: Mutex::new(HashMap::new()),
                send_tests: Mutex::new(HashMap::new()),
                graph_samples: Mutex::new(VecDeque::from([GraphSample::now()])),
            }),
        }
    }

    /// The redirect URI of "Sign in with Microsoft": the admin listener's
    /// own port on `localhost` (Entra ignores the port of a registered
    /// `http://localhost` only: graph-facts.md, "Entra"), path `/`.
    pub fn redirect_uri(&self) -> String {
        format!("http://localhost:{}/", self.inner.admin.port())
    }

    /// Record the Graph counters now; keeps [`GRAPH_WINDOW`] of samples.
    /// The requests and 429s of the window: in all, and by mailbox address
    /// (Microsoft's budget is per app and mailbox).
    fn sample_graph(&self) -> GraphWindow {
        let now = GraphSample::now();
        let mut samples = lock(&self.inner.graph_samples);
        samples.push_back(now.clone());
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|s| now.at.duration_since(s.at) >= GRAPH_WINDOW)
        {
            samples.pop_front();
        }
        let first = samples.front().cloned().unwrap_or_else(|| now.clone());
        let by_mailbox = now
            .by_mailbox
            .iter()
            .map(|(mailbox, (requests, throttled))| {
                let (r0, t0) = first.by_mailbox.get(mailbox).copied().unwrap_or((0, 0));
                (
                    mailbox.clone(),
                    (requests.saturating_sub(r0), throttled.saturating_sub(t0)),
                )
            })
            .collect();
        GraphWindow {
            requests: now.requests.saturating_sub(first.requests),
            throttled: now.throttled.saturating_sub(first.throttled),
            by_mailbox,
        }
    }
}

/// The Graph counters at one moment.
#[derive(Clone)]
struct GraphSample {
    at: Instant,
    requests: u64,
    throttled: u64,
    by_mailbox: HashMap<String, (u64, u64)>,
}

impl GraphSample {
    fn now() -> GraphSample {
        let (requests, throttled) = graph_totals();
        GraphSample {
            at: Instant::now(),
            requests,
            throttled,
            by_mailbox: crate::metrics::get().mailbox_totals(),
        }
    }
}

/// Graph requests and 429s of the last [`GRAPH_WINDOW`].
pub(super) struct GraphWindow {
    pub requests: u64,
    pub throttled: u64,
    /// By mailbox address (lower case).
    pub by_mailbox: HashMap<String, (u64, u64)>,
}

/// Graph requests and 429 answers since the process started, from the
/// `/metrics` counters (`graphgate_graph_requests_total` by route and
/// status, `graphgate_graph_throttled_total`).
fn graph_totals() -> (u64, u64) {
    let text = crate::metrics::get().encode();
    let value = |line: &str| {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let mut requests = 0;
    let mut throttled = 0;
    for line in text.lines() {
        if line.starts_with("graphgate_graph_requests_total{") {
            requests += value(line);
        } else if line.starts_with("graphgate_graph_throttled_total ") {
            throttled += value(line);
        }
    }
    (requests, throttled)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The console's routes (merged into the admin router).
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(access::login_page).post(access::login))
        .route("/logout", post(access::logout))
        .route("/console.css", get(stylesheet))
        .route("/console.js", get(script))
        .route("/accounts/new", get(accounts::new_page))
        .route("/accounts", post(accounts::add))
        .route("/accounts/{login}", get(accounts::page_route))
        .route("/accounts/{login}/settings", post(accounts::edit))
        .route("/accounts/{login}/remove", post(accounts::remove))
        .route("/accounts/{login}/signin", post(signin::browser))
        .route("/accounts/{login}/device", post(signin::device))
        .route("/queue", get(queue::list))
        .route("/queue/{id}", get(queue::show))
        .route("/queue/{id}/retry", post(queue::retry))
        .route("/queue/{id}/drop", post(queue::drop_message))
        .route(
            "/send-test",
            get(queue::send_test_page).post(queue::send_test),
        )
        .route("/send-test/{run}", get(queue::send_test_run))
        .route("/doctor", get(queue::doctor))
        .layer(axum::middleware::map_response_with_state(
            console.clone(),
            security_headers,
        ))
        .with_state(console)
}

/// The Content-Security-Policy and the other headers of every console
/// answer. `form-action` also names Entra's authority and the redirect
/// URI's origin: a form's redirects are checked against it too (CSP 3,
/// §6.3.1), and "Sign in with Microsoft" posts a form that redirects there.
async fn security_headers(
    axum::extract::State(console): axum::extract::State<Console>,
    mut response: Response,
) -> Response {
    let authority = url::Url::parse(&console.inner.config.microsoft.authority())
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let callback = format!("http://localhost:{}", console.inner.admin.port());
    let csp = format!(
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
         connect-src 'none'; form-action 'self' {authority} {callback}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("console.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
