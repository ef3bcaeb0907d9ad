//! `GraphClient`: one reqwest connection pool (rustls) for every mailbox,
//! the headers Graph expects on every request, at most
//! `concurrency_per_mailbox` requests in flight per mailbox, and the retry
//! rules of Microsoft's "Microsoft Graph throttling guidance" (honour
//! `Retry-After` on 429/503/504, back off exponentially without it) plus
//! counters for metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use tokio::sync::Semaphore;

use super::decode::decode_error;
use super::trace::{Exchange, Outcome};
use super::{GraphConfig, GraphError, Mailbox};
use crate::auth::TokenSource;

/// Characters kept as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// An id or address as one URL path segment.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// What the client has done so far (for metrics and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphCounters {
    /// HTTP requests sent, by `METHOD route-template` (each attempt counts).
    pub requests: BTreeMap<String, u64>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// 429 answers, outer and inner (`$batch`).
    pub throttled: u64,
    /// Requests sent again.
    pub retries: u64,
    /// Time slept honouring `Retry-After` or backing off.
    pub retry_wait: Duration,
    /// Connection failures, timeouts, resets.
    pub transport_errors: u64,
    /// Inner requests carried by `$batch` requests.
    pub batch_inner_requests: u64,
}

impl GraphCounters {
    /// All requests sent.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

pub(crate) struct ClientShared {
    http: reqwest::Client,
    pub(crate) config: GraphConfig,
    /// `{base_url}/{version}`.
    pub(crate) root: String,
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// What is known of each mailbox's message sizes (graph/bodies.rs),
    /// keyed as `permits` is.
    hints: Mutex<HashMap<String, Arc<super::bodies::SizeHints>>>,
    counters: Mutex<GraphCounters>,
    trace: Option<super::trace::GraphTrace>,
}

impl ClientShared {
    pub(crate) fn count(&self, f: impl FnOnce(&mut GraphCounters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(&mut c);
        }
    }
}

/// The Graph client: cheap to clone, one connection pool.
#[derive(Clone)]
pub struct GraphClient {
    shared: Arc<ClientShared>,
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<GraphClient, GraphError> {
        if config.concurrency_per_mailbox == 0 {
            return Err(GraphError::Invalid(
                "concurrency_per_mailbox must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("graphgate/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(config.request_timeout_s.max(1)))
            .connect_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GraphError::Invalid(format!("HTTP client: {e}")))?;
        let root = format!(
            "{}/{}",
            config.base_url.trim_end_matches('/'),
            config.version.trim_matches('/')
        );
        let trace = match &config.trace {
            Some(path) => Some(super::trace::GraphTrace::open(path).map_err(|e| {
                GraphError::Invalid(format!(
                    "cannot open the Graph trace file {} ({e}); fix or remove \
                     microsoft.graph_trace / --graph-trace",
                    path.display()
                ))
            })?),
            None => None,
        };
        Ok(GraphClient {
            shared: Arc::new(ClientShared {
                http,
                config,
                root,
                permits: Mutex::new(HashMap::new()),
                hints: Mutex::new(HashMap::new()),
                counters: Mutex::new(GraphCounters::default()),
                trace,
            }),
        })
    }

    /// A handle on one mailbox, using `tokens` for its bearer tokens.
    /// Handles on the same mailbox share its concurrency limit: Microsoft
    /// counts the requests in flight per app and *mailbox* (graph-facts.md,
    /// "$batch and the 4-concurrent limit"), so `/users/{upn}` is keyed by
    /// the address. A bare `/me` names no mailbox: it gets a limit of its
    /// own, never one shared with other accounts' `/me` (use
    /// [`GraphClient::own_mailbox`] to share it with `/users/{address}`).
    pub fn mailbox(&self, mailbox: Mailbox, tokens: Arc<dyn TokenSource>) -> GraphMailbox {
        let key = match &mailbox {
            Mailbox::User(upn) => Some(upn.to_lowercase()),
            Mailbox::Me => None,
        };
        self.handle(mailbox, key, tokens)
    }

    /// `/me` of the signed-in account whose mailbox is `address`: it shares
    /// one concurrency limit with every handle on `/users/{address}`.
    pub fn own_mailbox(&self, address: &str, tokens: Arc<dyn TokenSource>) -> GraphMailbox {
        self.handle(Mailbox::Me, Some(address.to_lowercase()), tokens)
    }

    fn handle(
        &self,
        mailbox: Mailbox,
        key: Option<String>,
        tokens: Arc<dyn TokenSource>,
    ) -> GraphMailbox {
        let limit = self.shared.config.concurrency_per_mailbox;
        let hints = match (&key, self.shared.hints.lock()) {
            (Some(key), Ok(mut map)) => map.entry(key.clone()).or_default().clone(),
            _ => Arc::default(),
        };
        let permits = match (key.clone(), self.shared.permits.lock()) {
            (Some(key), Ok(mut map)) => map
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone(),
            _ => Arc::new(Semaphore::new(limit)),
        };
        let path = mailbox.path();
        GraphMailbox {
            metrics_label: key.clone().unwrap_or_default().into(),
            shared: self.shared.clone(),
            base: format!("{}/{}", self.shared.root, path),
            batch_prefix: format!("/{path}"),
            tokens,
            permits,
            hints,
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> GraphCounters {
        self.shared
            .counters
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

/// A request to send, retried as its kind allows.
pub(crate) struct Call {
    pub method: Method,
    /// Route template for the counters, e.g. `messages/{id}/$value`.
    pub route: &'static str,
    pub url: String,
    pub body: Option<(Bytes, &'static str)>,
    pub headers: Vec<(&'static str, String)>,
    /// Send the bearer token (not on upload-session PUTs).
    pub authorized: bool,
    /// Safe to send again after a connection failure (the request may have
    /// been carried out): GET, PATCH, DELETE, PUT of the same range.
    pub idempotent: bool,
    /// Places of the mailbox's concurrency limit this request takes: 1, or
    /// for a `$batch` as many as Outlook runs of it at once (its inner
    /// requests count one by one against the limit).
    pub slots: u32,
}

impl Call {
    pub fn new(method: Method, route: &'static str, url: String) -> Call {
        let idempotent = matches!(
            method,
            Method::GET | Method::PATCH | Method::DELETE | Method::PUT
        );
        Call {
            method,
            route,
            url,
            body: None,
            headers: Vec::new(),
            authorized: true,
            idempotent,
            slots: 1,
        }
    }

    pub fn json(mut self, body: &serde_json::Value) -> Call {
        self.body = Some((Bytes::from(body.to_string()), "application/json"));
        self
    }

    pub fn text(mut self, body: Bytes) -> Call {
        self.body = Some((body, "text/plain"));
        self
    }

    pub fn bytes(mut self, body: Bytes, content_type: &'static str) -> Call {
        self.body = Some((body, content_type));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Call {
        self.headers.push((name, value.into()));
        self
    }

    /// A POST that is safe to repeat (e.g. `$batch` of GETs).
    pub fn idempotent(mut self) -> Call {
        self.idempotent = true;
        self
    }

    /// Take `n` places of the mailbox's limit (at least 1; capped at the
    /// limit when sent).
    pub fn slots(mut self, n: u32) -> Call {
        self.slots = n.max(1);
        self
    }
}

/// A successful answer.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

enum Attempt {
    Answer(Reply),
    Transport(String),
    /// The connection was never made: nothing was sent.
    Unconnected(String),
    TooLarge(String),
}

/// A handle on one mailbox; implements [`super::MailBackend`].
#[derive(Clone)]
pub struct GraphMailbox {
    pub(crate) shared: Arc<ClientShared>,
    /// `{root}/me` or `{root}/users/{upn}`.
    pub(crate) base: String,
    /// `/me` or `/users/{upn}`, for `$batch` inner URLs.
    pub(crate) batch_prefix: String,
    tokens: Arc<dyn TokenSource>,
    permits: Arc<Semaphore>,
    /// The mailbox address (lower case) for the per-mailbox metrics;
    /// empty for a `/me` handle of no known address.
    metrics_label: Arc<str>,
    pub(crate) hints: Arc<super::bodies::SizeHints>,
}

impl GraphMailbox {
    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/{}", self.base, rest)
    }

    pub(crate) fn config(&self) -> &GraphConfig {
        &self.shared.config
    }

    /// Refuse to send the bearer token to a link that is not under the
    /// configured base URL (links come from the server or from storage).
    pub(crate) fn check_link(&self, link: &str) -> Result<(), GraphError> {
        let base = self.shared.config.base_url.trim_end_matches('/');
        if link.starts_with(&format!("{base}/")) {
            Ok(())
        } else {
            Err(GraphError::Malformed(format!(
                "link outside the Graph base URL: {}",
                link.chars().take(200).collect::<String>()
            )))
        }
    }

    /// Send `call`, retrying as the policy allows; 2xx answers only.
    pub(crate) async fn execute(&self, call: &Call) -> Result<Reply, GraphError> {
        let policy = &self.shared.config.retry;
        let max_total = Duration::from_secs(policy.max_total_wait_s);
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut waited = Duration::ZERO;
        let mut attempt: u32 = 0;
        let mut reauthorized = false;
        loop {
            attempt += 1;
            let token = if call.authorized {
                Some(self.tokens.access_token().await?)
            } else {
                None
            };
            let outcome = {
                let limit = u32::try_from(self.shared.config.concurrency_per_mailbox)
                    .unwrap_or(u32::MAX)
                    .max(1);
                let _permit = self
                    .permits
                    .acquire_many(call.slots.clamp(1, limit))
                    .await
                    .map_err(|_| GraphError::Invalid("mailbox handle closed".into()))?;
                self.send_once(
                    call,
                    token.as_ref().map(|t| t.token.expose().as_str()),
                    &request_id,
                )
                .await
            };
            let delay = match outcome {
                Attempt::TooLarge(e) => return Err(GraphError::TooLarge(e)),
                Attempt::Transport(e) => {
                    self.shared.count(|c| c.transport_errors += 1);
                    if !call.idempotent || attempt >= policy.max_attempts {
                        return Err(GraphError::Transport(e));
                    }
                    self.backoff(attempt)
                }
                // Nothing reached Graph: any call, a send too, may be
                // tried again without doubt.
                Attempt::Unconnected(e) => {
                    self.shared.count(|c| c.transport_errors += 1);
                    if attempt >= policy.max_attempts {
                        return Err(GraphError::Unreachable(e));
                    }
                    self.backoff(attempt)
                }
                Attempt::Answer(reply) => {
                    let status = reply.status;
                    if (200..300).contains(&status) {
                        return Ok(reply);
                    }
                    if (300..400).contains(&status) {
                        // Never followed: a redirect would carry the bearer
                        // token to wherever Location points.
                        let location = reply
                            .headers
                            .get("location")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("nowhere");
                        return Err(GraphError::Malformed(format!(
                            "Graph answered {status} redirecting to {}; graphgate never follows \
                             redirects (is microsoft.graph_url right, or is a proxy in the way?)",
                            location.chars().take(200).collect::<String>()
                        )));
                    }
                    if status == 401 && call.authorized && !reauthorized {
                        // The token may have been revoked or expired early:
                        // drop it and try once with a fresh one.
                        if let Some(t) = &token {
                            self.tokens.invalidate(t);
                        }
                        reauthorized = true;
                        attempt -= 1;
                        self.shared.count(|c| c.retries += 1);
                        continue;
                    }
                    // 429 means "not carried out", so any method may be sent
                    // again. 503/504 may come after a POST was carried out
                    // (a gateway timeout), so only idempotent requests are
                    // repeated: a second sendMail or create would make a
                    // duplicate message.
                    let refused = super::error::is_throttle_refusal(status, &reply.body);
                    let retryable =
                        refused || ((status == 503 || status == 504) && call.idempotent);
                    if refused {
                        self.shared.count(|c| c.throttled += 1);
                        let m = crate::metrics::get();
                        m.graph_throttled.inc();
                        if let Some(secs) = retry_after(&reply.headers) {
                            let secs = secs.min(policy.max_retry_after_s);
                            m.graph_retry_after_seconds.inc_by(secs as f64);
                        }
                    }
                    if !retryable || attempt >= policy.max_attempts {
                        return Err(decode_error(status, &reply.body));
                    }
                    match retry_after(&reply.headers) {
                        Some(secs) => Duration::from_secs(secs.min(policy.max_retry_after_s)),
                        None => self.backoff(attempt),
                    }
                }
            };
            if waited + delay > max_total {
                return Err(GraphError::Api(super::ApiError {
                    kind: super::GraphErrorKind::Throttled,
                    status: 429,
                    code: "graphgateRetryBudgetSpent".into(),
                    message: "retries would exceed the configured total wait".into(),
                    request_id: None,
                }));
            }
            waited += delay;
            self.shared.count(|c| {
                c.retries += 1;
                c.retry_wait += delay;
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// Exponential backoff with jitter for attempt `n` (1-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let policy = &self.shared.config.retry;
        let base = policy.base_backoff_ms.max(1);
        let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(policy.max_retry_after_s.saturating_mul(1000).max(base));
        let jittered = rand::rng().random_range(capped / 2..=capped);
        Duration::from_millis(jittered)
    }

    async fn send_once(&self, call: &Call, token: Option<&str>, request_id: &str) -> Attempt {
        let key = format!("{} {}", call.method, call.route);
        let key_for_metrics = key.clone();
        self.shared
            .count(|c| *c.requests.entry(key).or_insert(0) += 1);
        let mut builder = self
            .shared
            .http
            .request(call.method.clone(), &call.url)
            .header("client-request-id", request_id);
        if let Some(token) = token {
            builder = builder
                .bearer_auth(token)
                .header("Prefer", "IdType=\"ImmutableId\"");
        }
        for (name, value) in &call.headers {
            builder = builder.header(*name, value.as_str());
        }
        match &call.body {
            Some((body, content_type)) => {
                builder = builder
                    .header("Content-Type", *content_type)
                    .body(body.clone());
            }
            None if call.method == Method::POST => {
                builder = builder.header("Content-Length", "0");
            }
            None => {}
        }
        let started = std::time::Instant::now();
        let mut response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                crate::metrics::get().graph_request(&key_for_metrics, None);
                let error = error_chain(&e);
                self.trace(call, token.is_some(), request_id, Outcome::Failed(&error));
                // reqwest: is_connect() is an error while connecting (TCP,
                // TLS), before any byte of the request was written.
                if e.is_connect() {
                    return Attempt::Unconnected(error);
                }
                return Attempt::Transport(error);
            }
        };
        let status = response.status().as_u16();
        self.shared
            .count(|c| *c.statuses.entry(status).or_insert(0) += 1);
        let metrics = crate::metrics::get();
        metrics.graph_request(&key_for_metrics, Some(status));
        // Issue 18: per-mailbox answers and 429s, and the latency
        // histogram (request sent → status line), each attempt.
        metrics.graph_answer(&self.metrics_label, status, started.elapsed());
        let headers = response.headers().clone();
        let limit = self.shared.config.max_response_bytes;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Attempt::TooLarge(format!("answer larger than {limit} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let error = error_chain(&e);
                    self.trace(call, token.is_some(), request_id, Outcome::Failed(&error));
                    return Attempt::Transport(error);
                }
            }
        }
        self.trace(
            call,
            token.is_some(),
            request_id,
            Outcome::Answer {
                status,
                headers: &headers,
                body: &body,
            },
        );
        Attempt::Answer(Reply {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

impl GraphMailbox {
    /// Record one exchange in the Graph trace, if one is open. The bearer
    /// token is not passed here: only whether one was sent.
    fn trace(&self, call: &Call, authorized: bool, request_id: &str, outcome: Outcome<'_>) {
        let Some(trace) = &self.shared.trace else {
            return;
        };
        let mut headers = call.headers.clone();
        if authorized {
            headers.push(("Prefer", "IdType=\"ImmutableId\"".into()));
        }
        trace.record(&Exchange {
            request_id,
            method: call.method.as_str(),
            route: call.route,
            url: &call.url,
            request_headers: &headers,
            request_body: call.body.as_ref().map(|(b, t)| (b.as_ref(), *t)),
            outcome,
        });
    }
}

/// `Retry-After` in seconds (Graph sends delta-seconds).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_addresses_become_single_path_segments() {
        assert_eq!(encode_segment("AAMkAD/x+y=="), "AAMkAD%2Fx%2By%3D%3D");
        assert_eq!(encode_segment("support@example.com"), "support@example.com");
        assert_eq!(Mailbox::User("a b@x".into()).path(), "users/a%20b@x");
        assert_eq!(Mailbox::Me.path(), "me");
    }

    #[test]
    fn mailboxes_share_a_limit_by_address_and_bare_me_shares_none() {
        struct NoTokens;
        impl TokenSource for NoTokens {
            fn access_token(
                &self,
            ) -> futures::future::BoxFuture<
                '_,
                Result<crate::auth::AccessToken, crate::auth::AuthError>,
            > {
                Box::pin(async { Err(crate::auth::AuthError::Config("none".into())) })
            }
            fn invalidate(&self, _token: &crate::auth::AccessToken) {}
        }
        let client = GraphClient::new(GraphConfig::default()).unwrap();
        let tokens = || -> Arc<dyn TokenSource> { Arc::new(NoTokens) };
        let alice_me = client.own_mailbox("Alice@Contoso.com", tokens());
        let alice_user = client.mailbox(Mailbox::User("alice@contoso.com".into()), tokens());
        let bob_me = client.own_mailbox("bob@contoso.com", tokens());
        let anon_1 = client.mailbox(Mailbox::Me, tokens());
        let anon_2 = client.mailbox(Mailbox::Me, tokens());
        assert!(Arc::ptr_eq(&alice_me.permits, &alice_user.permits));
        assert!(!Arc::ptr_eq(&alice_me.permits, &bob_me.permits));
        assert!(!Arc::ptr_eq(&anon_1.permits, &anon_2.permits));
        assert!(!Arc::ptr_eq(&anon_1.permits, &alice_me.permits));
        assert!(alice_me.base.ends_with("/me") && alice_user.base.contains("/users/"));
    }

    #[test]
    fn zero_concurrency_is_refused() {
        let config = GraphConfig {
            concurrency_per_mailbox: 0,
            ..GraphConfig::default()
        };
        assert!(matches!(
            GraphClient::new(config),
            Err(GraphError::Invalid(_))
        ));
    }
}
