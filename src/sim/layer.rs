//! Per-request behaviour of the simulator: counting (by route template and
//! status), fault injection (latency, 429, 503, connection resets) and
//! Graph's per-mailbox limits ("Microsoft Graph service-specific throttling
//! limits", Outlook service: 4 concurrent requests per app and mailbox,
//! 10,000 requests per 10 minutes; over the limit, 429
//! `ApplicationThrottled` with `Retry-After`).
//!
//! [`graph_layer`] wraps the Graph routes (and `$batch`); inner requests of
//! a batch carry [`super::InnerRequest`] and are counted apart and never
//! take a mailbox slot (the batch took one). [`entra_layer`] wraps the
//! Entra ID routes: counting, latency, resets and 503s only. `/_sim/*` is
//! never counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::errors::{EntraError, GraphError};
use super::faults::Outcome;
use super::{InnerRequest, SimState};

/// The window of the per-mailbox request budget.
const BUDGET_WINDOW: Duration = Duration::from_secs(600);
/// Most mailboxes tracked (unknown ids in paths are bounded too).
const MAX_MAILBOXES: usize = 10_000;

/// In-flight requests and recent request times, per mailbox.
pub struct MailboxLimits {
    concurrency: usize,
    budget: Option<u32>,
    in_flight: Mutex<HashMap<String, usize>>,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Why a mailbox refused a request.
enum Refusal {
    Concurrency,
    Budget(u64),
}

/// A taken slot; released on drop.
pub struct Slot<'a> {
    limits: &'a MailboxLimits,
    mailbox: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.limits.in_flight.lock()
            && let Some(n) = map.get_mut(&self.mailbox)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.mailbox);
            }
        }
    }
}

impl MailboxLimits {
    pub fn new(concurrency: usize, budget: Option<u32>) -> MailboxLimits {
        MailboxLimits {
            concurrency: concurrency.max(1),
            budget,
            in_flight: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
        }
    }

    fn acquire(&self, mailbox: &str) -> Result<Slot<'_>, Refusal> {
        if let Some(budget) = self.budget
            && let Ok(mut recent) = self.recent.lock()
        {
            let now = Instant::now();
            if recent.len() >= MAX_MAILBOXES && !recent.contains_key(mailbox) {
                recent.retain(|_, q| {
                    q.back()
                        .is_some_and(|t| now.duration_since(*t) < BUDGET_WINDOW)
                });
            }
            let queue = recent.entry(mailbox.to_string()).or_default();
            while queue
                .front()
                .is_some_and(|t| now.duration_since(*t) >= BUDGET_WINDOW)
            {
                queue.pop_front();
            }
            if queue.len() >= budget as usize {
                let wait = queue
                    .front()
                    .map(|t| {
                        BUDGET_WINDOW
                            .saturating_sub(now.duration_since(*t))
                            .as_secs()
                            .max(1)
                    })
                    .unwrap_or(1);
                return Err(Refusal::Budget(wait));
            }
            queue.push_back(now);
        }
        let Ok(mut map) = self.in_flight.lock() else {
            return Err(Refusal::Concurrency);
        };
        let n = map.entry(mailbox.to_string()).or_insert(0);
        if *n >= self.concurrency {
            return Err(Refusal::Concurrency);
        }
        *n += 1;
        Ok(Slot {
            limits: self,
            mailbox: mailbox.to_string(),
        })
    }
}

/// `GET /v1.0/users/{id}/messages`, or `GET (unmatched)`.
fn route_of(request: &Request) -> (String, bool) {
    let method = request.method().as_str().to_string();
    match request.extensions().get::<MatchedPath>() {
        Some(path) => (format!("{method} {}", path.as_str()), true),
        None => (format!("{method} (unmatched)"), false),
    }
}

fn is_graph_path(path: &str) -> bool {
    path.starts_with("/v1.0/") || path.starts_with("/beta/") || path == "/v1.0" || path == "/beta"
}

/// The mailbox a Graph request addresses: `/users/{id|upn}` resolved to the
/// user's UPN, or the token's user for `/me` and `$batch`.
fn mailbox_of(state: &SimState, request: &Request) -> Option<String> {
    let path = request.uri().path();
    let mut segments = path.split('/').filter(|s| !s.is_empty()).skip(1);
    let first = segments.next()?;
    let token_user = || {
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = state.entra().authenticate(header).ok()?;
        let id = caller.user_id?;
        Some(
            state
                .tenant()
                .user(&id)
                .map(|u| u.upn.clone())
                .unwrap_or(id),
        )
    };
    if first.eq_ignore_ascii_case("me") || first == "$batch" {
        return token_user();
    }
    if first.eq_ignore_ascii_case("users") {
        let raw = segments.next()?;
        let id = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .to_string();
        let id = id
            .trim_matches(|c| c == '\'' || c == '(' || c == ')')
            .to_string();
        return Some(
            state
                .tenant()
                .user(&id)
                .map(|u| u.upn.clone())
                .unwrap_or_else(|| id.to_ascii_lowercase()),
        );
    }
    None
}

/// A response whose body fails at once: hyper aborts the connection, so the
/// client sees a reset instead of an answer.
fn connection_reset() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))
    });
    Response::new(Body::from_stream(stream))
}

fn throttled(retry_after: u64) -> Response {
    GraphError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests. Please retry after the time specified in the Retry-After header.",
    )
    .with_header("Retry-After", retry_after.to_string())
    .into_response()
}

fn unavailable(retry_after: u64) -> Response {
    GraphError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "serviceNotAvailable",
        "The service is temporarily unavailable. Please retry after the time specified in the Retry-After header.",
    )
    .with_header("Retry-After", retry_after.to_string())
    .into_response()
}

/// Applied to every Graph request, including the inner requests of
/// `$batch` (which carry the [`super::InnerRequest`] extension).
pub async fn graph_layer(State(state): State<SimState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_sim/") {
        return next.run(request).await;
    }
    let inner = request.extensions().get::<InnerRequest>().is_some();
    let (route, matched) = route_of(&request);
    let graph = is_graph_path(request.uri().path());
    let mailbox = if matched {
        mailbox_of(&state, &request)
    } else {
        None
    };
    let response = graph_outcome(&state, request, next, inner, mailbox.as_deref()).await;
    if inner {
        state.stats().record_inner(&route);
    } else {
        state
            .stats()
            .record(&route, response.status().as_u16(), graph);
        if let Some(mailbox) = &mailbox {
            state.stats().record_mailbox(mailbox);
        }
    }
    response
}

async fn graph_outcome(
    state: &SimState,
    request: Request,
    next: Next,
    inner: bool,
    mailbox: Option<&str>,
) -> Response {
    let latency = state.faults().latency();
    let outcome = state.faults().draw();
    match outcome {
        Outcome::Pass => {}
        Outcome::Throttle(s) => return throttled(s),
        Outcome::Unavailable(s) => return unavailable(s),
        Outcome::Reset => {
            state.stats().record_reset();
            return connection_reset();
        }
    }
    // Microsoft counts every request against the mailbox's concurrent
    // requests, a `$batch`'s inner requests one by one (graph-facts.md,
    // "$batch and the 4-concurrent limit": "a batch whose inner requests
    // push a mailbox past 4 in flight gets inner 429s"); the `$batch`
    // envelope itself addresses no mailbox and takes no place.
    let envelope = !inner && request.uri().path().ends_with("/$batch");
    let _slot = match (envelope, mailbox) {
        (false, Some(mailbox)) => match state.limits().acquire(mailbox) {
            Ok(slot) => Some(slot),
            Err(Refusal::Concurrency) => {
                // 429 as documented, or 503 (unverified, the default:
                // SimConfig::concurrency_refusal_status).
                let status = StatusCode::from_u16(state.config().concurrency_refusal_status)
                    .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
                return GraphError::new(
                    status,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                )
                .with_header(
                    "Retry-After",
                    state.faults().get().retry_after_s.max(1).to_string(),
                )
                .into_response();
            }
            Err(Refusal::Budget(wait)) => {
                return GraphError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ApplicationThrottled",
                    "Application is over its MailboxRequestRate limit.",
                )
                .with_header("Retry-After", wait.to_string())
                .into_response();
            }
        },
        _ => None,
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    next.run(request).await
}

/// Applied to the Entra ID routes: counting, latency, resets and 503s.
pub async fn entra_layer(State(state): State<SimState>, request: Request, next: Next) -> Response {
    let (route, _) = route_of(&request);
    let latency = state.faults().latency();
    let response = match state.faults().draw() {
        Outcome::Reset => {
            state.stats().record_reset();
            connection_reset()
        }
        Outcome::Unavailable(s) => {
            let mut response = EntraError::new(
                "temporarily_unavailable",
                50196,
                "The server is temporarily unavailable. Retry the request after a delay.",
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
            if let Ok(v) = http::HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            response
        }
        Outcome::Pass | Outcome::Throttle(_) => {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            next.run(request).await
        }
    };
    state
        .stats()
        .record(&route, response.status().as_u16(), false);
    response
}

/// What an unknown path gets: Graph's 400 for an unknown segment under a
/// Graph version, a plain 404 elsewhere.
pub async fn unmatched(request: Request) -> Response {
    let path = request.uri().path().to_string();
    if is_graph_path(&path) {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "Resource not found for the segment '{}'.",
                path.rsplit('/').next().unwrap_or("")
            ),
        )
        .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
