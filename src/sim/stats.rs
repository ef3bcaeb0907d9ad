//! Request counters of the simulator, read by `GET /_sim/stats`: how many
//! requests, by route template (`GET /v1.0/users/{id}/messages`), by
//! status, Graph requests only, inner requests of `$batch` and per mailbox.
//! Tests use them to assert how many Graph calls an operation costs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

#[derive(Debug, Default, Clone)]
struct Counters {
    requests: u64,
    graph_requests: u64,
    by_route: BTreeMap<String, u64>,
    by_status: BTreeMap<String, u64>,
    batch_inner_by_route: BTreeMap<String, u64>,
    batch_inner_requests: u64,
    by_mailbox: BTreeMap<String, u64>,
    throttled: u64,
    resets: u64,
    /// The longest `$batch` response body sent, in bytes.
    largest_batch_response: u64,
}

/// Most distinct keys kept in one map (bounds memory against odd paths).
const MAX_KEYS: usize = 4096;

#[derive(Default)]
pub struct Stats {
    counters: Mutex<Counters>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_KEYS {
        map.insert(key.to_string(), 1);
    }
}

impl Stats {
    /// Count one outer request answered with `status`.
    pub fn record(&self, route: &str, status: u16, graph: bool) {
        if let Ok(mut c) = self.counters.lock() {
            c.requests += 1;
            if graph {
                c.graph_requests += 1;
            }
            bump(&mut c.by_route, route);
            bump(&mut c.by_status, &status.to_string());
            if status == 429 {
                c.throttled += 1;
            }
        }
    }

    /// Count one inner request of a `$batch`.
    pub fn record_inner(&self, route: &str) {
        if let Ok(mut c) = self.counters.lock() {
            c.batch_inner_requests += 1;
            bump(&mut c.batch_inner_by_route, route);
        }
    }

    /// Count a request addressed to `mailbox` (a UPN).
    pub fn record_mailbox(&self, mailbox: &str) {
        if let Ok(mut c) = self.counters.lock() {
            bump(&mut c.by_mailbox, mailbox);
        }
    }

    /// Note the length of a `$batch` response body.
    pub fn record_batch_response(&self, bytes: usize) {
        if let Ok(mut c) = self.counters.lock() {
            c.largest_batch_response = c.largest_batch_response.max(bytes as u64);
        }
    }

    /// Count a connection dropped by the reset fault.
    pub fn record_reset(&self) {
        if let Ok(mut c) = self.counters.lock() {
            c.resets += 1;
        }
    }

    /// Requests answered so far on `route` (a template such as
    /// `POST /{tenant}/oauth2/v2.0/token`).
    pub fn route_count(&self, route: &str) -> u64 {
        self.counters
            .lock()
            .map(|c| c.by_route.get(route).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn reset(&self) {
        if let Ok(mut c) = self.counters.lock() {
            *c = Counters::default();
        }
    }

    /// The `/_sim/stats` document.
    pub fn snapshot(&self) -> Value {
        let c = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        json!({
            "requests": c.requests,
            "graph_requests": c.graph_requests,
            "by_route": c.by_route,
            "by_status": c.by_status,
            "batch_inner_requests": c.batch_inner_requests,
            "batch_inner_by_route": c.batch_inner_by_route,
            "by_mailbox": c.by_mailbox,
            "throttled": c.throttled,
            "resets": c.resets,
            "largest_batch_response_bytes": c.largest_batch_response,
        })
    }
}
