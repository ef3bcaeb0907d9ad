//! JSON batching (`POST /$batch`, Graph "Combine multiple requests in one
//! HTTP call using JSON batching"): at most 20 inner requests per batch,
//! answers matched by id in any order, inner 429s (and 503s of GETs) sent
//! again after their own `Retry-After`. A batch takes as many places of
//! the mailbox's concurrency limit as Outlook runs of it at once (at most
//! 4): Microsoft counts each inner request against the mailbox's 4
//! concurrent requests, and a batch that pushes the mailbox past them gets
//! inner 429s "Application is over its MailboxConcurrency limit"
//! (graph-facts.md, "$batch and the 4-concurrent limit").

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::GraphError;
use super::client::{Call, GraphMailbox};
use super::decode::{BatchReply, decode_batch_response};

/// Graph's limit of inner requests per batch.
pub const MAX_BATCH: usize = 20;

/// One inner request; `url` is relative to the mailbox (`messages/{id}`).
#[derive(Debug, Clone)]
pub(crate) struct BatchRequest {
    pub id: String,
    pub method: &'static str,
    pub url: String,
    /// A JSON body (PATCH, POST), sent with its Content-Type: "JSON
    /// batching" (learn.microsoft.com/graph/json-batching): "when a body
    /// is included with the request, the headers object must contain a
    /// value for Content-Type".
    pub body: Option<Value>,
}

impl BatchRequest {
    pub fn get(id: impl Into<String>, url: String) -> BatchRequest {
        BatchRequest {
            id: id.into(),
            method: "GET",
            url,
            body: None,
        }
    }

    /// A request without a body (`DELETE messages/{id}`, `POST
    /// messages/{id}/permanentDelete`).
    pub fn bare(id: impl Into<String>, method: &'static str, url: String) -> BatchRequest {
        BatchRequest {
            id: id.into(),
            method,
            url,
            body: None,
        }
    }

    /// A request with a JSON body (`PATCH messages/{id}`, `POST
    /// messages/{id}/move`).
    pub fn with_body(
        id: impl Into<String>,
        method: &'static str,
        url: String,
        body: Value,
    ) -> BatchRequest {
        BatchRequest {
            id: id.into(),
            method,
            url,
            body: Some(body),
        }
    }
}

pub(crate) type BatchResults = HashMap<String, Result<BatchReply, GraphError>>;

impl GraphMailbox {
    /// Run `requests` (ids unique) in batches of 20; one result per id:
    /// the 2xx inner answer or its error.
    pub(crate) async fn batch(
        &self,
        requests: Vec<BatchRequest>,
    ) -> Result<BatchResults, GraphError> {
        let policy = self.config().retry.clone();
        let mut results: BatchResults = HashMap::new();
        let mut pending = requests;
        let mut attempt: u32 = 0;
        let mut waited = Duration::ZERO;
        while !pending.is_empty() {
            attempt += 1;
            let mut again = Vec::new();
            let mut delay_s: Option<u64> = None;
            for (n, group) in pending.chunks(MAX_BATCH).enumerate() {
                let replies = match self.send_batch(group).await {
                    Ok(replies) => replies,
                    // Nothing done yet: the whole call failed, as before.
                    Err(e) if results.is_empty() => return Err(e),
                    // Earlier groups or attempts were carried out: their
                    // results stand (a caller that dropped them would
                    // believe changes Graph made were not made, and its
                    // index would part from Graph until a later sync put
                    // them back). This group, the groups not yet sent
                    // and those waiting to be tried again fail alike.
                    Err(e) => {
                        let unsent = pending[n * MAX_BATCH..].iter().chain(again.iter());
                        for request in unsent {
                            results.insert(request.id.clone(), Err(alike(&e)));
                        }
                        return Ok(results);
                    }
                };
                for request in group {
                    let Some(reply) = replies.iter().find(|r| r.id == request.id) else {
                        results.insert(
                            request.id.clone(),
                            Err(GraphError::Malformed(format!(
                                "no answer for batch id {}",
                                request.id
                            ))),
                        );
                        continue;
                    };
                    let status = reply.status;
                    let refused = status == 429
                        || (status == 503
                            && super::error::is_throttle_refusal(status, &reply.body_bytes()));
                    if refused {
                        self.shared.count(|c| c.throttled += 1);
                        let m = crate::metrics::get();
                        m.graph_throttled.inc();
                        if let Some(secs) = reply.retry_after() {
                            m.graph_retry_after_seconds.inc_by(secs as f64);
                        }
                    }
                    let retryable =
                        refused || ((status == 503 || status == 504) && request.method == "GET");
                    if retryable && attempt < policy.max_attempts {
                        let secs = reply
                            .retry_after()
                            .unwrap_or(1)
                            .min(policy.max_retry_after_s);
                        delay_s = Some(delay_s.map_or(secs, |d| d.max(secs)));
                        again.push(request.clone());
                    } else if (200..300).contains(&status) {
                        results.insert(request.id.clone(), Ok(reply.clone()));
                    } else {
                        results.insert(request.id.clone(), Err(reply.error()));
                    }
                }
            }
            if let Some(secs) = delay_s {
                let delay = Duration::from_secs(secs);
                if waited + delay > Duration::from_secs(policy.max_total_wait_s) {
                    for request in &again {
                        results.insert(request.id.clone(), Err(throttled()));
                    }
                    break;
                }
                waited += delay;
                self.shared.count(|c| {
                    c.retries += 1;
                    c.retry_wait += delay;
                });
                tokio::time::sleep(delay).await;
            }
            pending = again;
        }
        Ok(results)
    }

    async fn send_batch(&self, group: &[BatchRequest]) -> Result<Vec<BatchReply>, GraphError> {
        let inner: Vec<Value> = group
            .iter()
            .map(|r| match &r.body {
                None => json!({
                    "id": r.id,
                    "method": r.method,
                    "url": format!("{}/{}", self.batch_prefix, r.url),
                    "headers": { "Prefer": "IdType=\"ImmutableId\"" },
                }),
                Some(body) => json!({
                    "id": r.id,
                    "method": r.method,
                    "url": format!("{}/{}", self.batch_prefix, r.url),
                    "headers": {
                        "Prefer": "IdType=\"ImmutableId\"",
                        "Content-Type": "application/json",
                    },
                    "body": body,
                }),
            })
            .collect();
        let only_reads = group.iter().all(|r| r.method == "GET");
        let url = format!("{}/$batch", self.shared.root);
        let mut call = Call::new(Method::POST, "$batch", url)
            .json(&json!({ "requests": inner }))
            .slots(u32::try_from(group.len()).unwrap_or(u32::MAX));
        if only_reads {
            call = call.idempotent();
        }
        let count = group.len() as u64;
        self.shared.count(|c| c.batch_inner_requests += count);
        let reply = self.execute(&call).await?;
        decode_batch_response(&reply.body)
    }
}

/// An error of the same class as `e`, for each request a failed call
/// took with it.
fn alike(e: &GraphError) -> GraphError {
    match e {
        GraphError::Api(api) => GraphError::Api(api.clone()),
        GraphError::Unreachable(m) => GraphError::Unreachable(m.clone()),
        other => GraphError::Transport(other.to_string()),
    }
}

fn throttled() -> GraphError {
    GraphError::Api(super::ApiError {
        kind: super::GraphErrorKind::Throttled,
        status: 429,
        code: "TooManyRequests".into(),
        message: "inner request still throttled after the allowed retries".into(),
        request_id: None,
    })
}
