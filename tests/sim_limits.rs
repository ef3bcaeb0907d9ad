//! The simulator's per-request layer over real sockets: request counting
//! (`/_sim/stats`), fault injection (`/_sim/faults`: 429, 503, resets,
//! latency), Graph's per-mailbox concurrency limit and request budget, and
//! `$batch` (validation, dependsOn, inner counting, inner throttling,
//! base64 bodies).

use graphgate::sim::caller::Caller;
use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::sim::{SimConfig, SimState};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

struct Sim {
    base: String,
    state: SimState,
    http: reqwest::Client,
    token: String,
    _shutdown: oneshot::Sender<()>,
}

async fn start(configure: impl FnOnce(&mut SimConfig)) -> Sim {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = SimConfig {
        public_url: base.clone(),
        seed_messages: true,
        fault_seed: Some(7),
        ..SimConfig::default()
    };
    configure(&mut config);
    let state = SimState::new(config).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(graphgate::sim::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    let (token, _) = state.entra().issue_access_token(Caller {
        app_id: DEMO_PUBLIC_CLIENT_ID.into(),
        user_id: Some(ALICE.into()),
        permissions: vec!["Mail.ReadWrite".into(), "Mail.Send".into()],
    });
    Sim {
        base,
        state,
        http: reqwest::Client::new(),
        token,
        _shutdown: tx,
    }
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn batch_raw(&self, body: Value) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .post(self.url("/v1.0/$batch"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
    }

    async fn batch(&self, body: Value) -> (u16, Value) {
        let response = self.batch_raw(body).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn faults(&self, body: Value) -> Value {
        let response = self
            .http
            .post(self.url("/_sim/faults"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn stats(&self) -> Value {
        self.http
            .get(self.url("/_sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// One inner request that never succeeds (no such Graph segment).
fn failing(id: &str) -> Value {
    json!({"id": id, "method": "GET", "url": "/noSuchSegment/at/all"})
}

fn response<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no response {id} in {body}"))
}

#[tokio::test]
async fn batch_validation_is_400() {
    let sim = start(|_| {}).await;
    let too_many: Vec<Value> = (0..21).map(|i| failing(&i.to_string())).collect();
    let (status, body) = sim.batch(json!({"requests": too_many})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "BadRequest");

    let (status, _) = sim
        .batch(json!({"requests": [failing("1"), failing("1")]}))
        .await;
    assert_eq!(status, 400, "duplicate ids");

    let (status, _) = sim
        .batch(json!({"requests": [{"id": "1", "method": "POST", "url": "/me/messages", "body": {"subject": "x"}}]}))
        .await;
    assert_eq!(status, 400, "a body without Content-Type");

    let (status, _) = sim
        .batch(json!({"requests": [{"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"}]}))
        .await;
    assert_eq!(status, 400, "absolute url");

    let (status, _) = sim
        .batch(
            json!({"requests": [{"id": "1", "method": "GET", "url": "/me", "dependsOn": ["9"]}]}),
        )
        .await;
    assert_eq!(status, 400, "unknown dependsOn");

    let (status, _) = sim
        .batch(json!({"requests": [
            {"id": "1", "method": "GET", "url": "/me", "dependsOn": ["2"]},
            {"id": "2", "method": "GET", "url": "/me", "dependsOn": ["1"]}
        ]}))
        .await;
    assert_eq!(status, 400, "cycle");

    let (status, _) = sim.batch(json!({"nothing": []})).await;
    assert_eq!(status, 400, "no requests");

    // Without a token: Graph's 401 for the batch itself.
    let response = sim
        .http
        .post(sim.url("/v1.0/$batch"))
        .json(&json!({"requests": [failing("1")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn batch_failed_dependency_is_424_and_inner_requests_counted_apart() {
    let sim = start(|_| {}).await;
    let (status, body) = sim
        .batch(json!({"requests": [
            failing("a"),
            {"id": "b", "method": "GET", "url": "me/mailFolders", "dependsOn": ["a"]},
            {"id": "c", "method": "GET", "url": "me/mailFolders", "dependsOn": ["b"]},
        ]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["responses"].as_array().unwrap().len(), 3);
    assert_eq!(response(&body, "a")["status"], 400);
    assert_eq!(response(&body, "a")["body"]["error"]["code"], "BadRequest");
    assert_eq!(response(&body, "b")["status"], 424);
    assert_eq!(response(&body, "c")["status"], 424);

    let stats = sim.stats().await;
    assert_eq!(stats["requests"], 1, "{stats}");
    assert_eq!(stats["graph_requests"], 1, "{stats}");
    assert_eq!(stats["by_route"]["POST /v1.0/$batch"], 1, "{stats}");
    assert_eq!(stats["by_status"]["200"], 1, "{stats}");
    assert_eq!(stats["batch_inner_requests"], 1, "only `a` ran: {stats}");
    assert_eq!(
        stats["batch_inner_by_route"]["GET (unmatched)"], 1,
        "{stats}"
    );
    assert_eq!(stats["by_mailbox"]["alice@example.com"], 1, "{stats}");
}

#[tokio::test]
async fn stats_count_templates_statuses_and_unmatched_but_not_controls() {
    let sim = start(|_| {}).await;
    let response = sim
        .http
        .get(sim.url("/v1.0/noSuchThing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = sim.http.get(sim.url("/elsewhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = sim
        .http
        .post(sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    sim.http.get(sim.url("/_sim/faults")).send().await.unwrap();
    let stats = sim.stats().await;
    assert_eq!(stats["requests"], 3, "{stats}");
    assert_eq!(stats["graph_requests"], 1, "{stats}");
    assert_eq!(stats["by_route"]["GET (unmatched)"], 2, "{stats}");
    assert_eq!(
        stats["by_route"]["POST /{tenant}/oauth2/v2.0/token"], 1,
        "{stats}"
    );
    assert_eq!(stats["by_status"]["400"], 2, "{stats}");
    assert_eq!(stats["by_status"]["404"], 1, "{stats}");

    let response = sim
        .http
        .delete(sim.url("/_sim/stats"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(sim.stats().await["requests"], 0);
    assert_eq!(sim.state.stats_snapshot()["requests"], 0);
}

#[tokio::test]
async fn faults_are_merged_read_and_cleared() {
    let sim = start(|c| {
        c.initial_faults.latency_ms = 5;
    })
    .await;
    let current: Value = sim
        .http
        .get(sim.url("/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["latency_ms"], 5);
    assert_eq!(current["retry_after_s"], 1);
    let merged = sim
        .faults(json!({"throttle_rate": 0.25, "retry_after_s": 7}))
        .await;
    assert_eq!(merged["latency_ms"], 5);
    assert_eq!(merged["throttle_rate"], 0.25);
    assert_eq!(merged["retry_after_s"], 7);
    let response = sim
        .http
        .post(sim.url("/_sim/faults"))
        .json(&json!({"throttle": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "unknown fault field");
    let cleared: Value = sim
        .http
        .delete(sim.url("/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["latency_ms"], 0);
    assert_eq!(cleared["throttle_rate"], 0.0);
}

#[tokio::test]
async fn throttle_and_error_faults_answer_429_and_503_with_retry_after() {
    let sim = start(|_| {}).await;
    sim.faults(json!({"throttle_rate": 1.0, "retry_after_s": 3}))
        .await;
    let response = sim
        .batch_raw(json!({"requests": [failing("1")]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");

    sim.faults(json!({"throttle_rate": 0.0, "error_rate": 1.0}))
        .await;
    let response = sim
        .batch_raw(json!({"requests": [failing("1")]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "3");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "serviceNotAvailable");

    // Entra gets the 503 too, in its own shape.
    let response = sim
        .http
        .post(sim.url(&format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");

    let stats = sim.stats().await;
    assert_eq!(stats["by_status"]["429"], 1, "{stats}");
    assert_eq!(stats["by_status"]["503"], 2, "{stats}");
}

#[tokio::test]
async fn reset_fault_drops_the_connection() {
    let sim = start(|_| {}).await;
    sim.faults(json!({"reset_rate": 1.0})).await;
    let outcome = sim.batch_raw(json!({"requests": [failing("1")]})).await;
    // No status line reaches the client: the request itself fails.
    let err = outcome.expect_err("the client got an answer");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    let stats = sim.stats().await;
    assert_eq!(stats["resets"], 1, "{stats}");
}

#[tokio::test]
async fn seeded_faults_are_reproducible() {
    async fn statuses() -> Vec<u16> {
        let sim = start(|c| {
            c.fault_seed = Some(42);
            c.initial_faults.throttle_rate = 0.5;
        })
        .await;
        let mut out = Vec::new();
        for _ in 0..12 {
            out.push(
                sim.batch_raw(json!({"requests": [failing("1")]}))
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        out
    }
    let first = statuses().await;
    assert_eq!(first, statuses().await);
    assert!(first.contains(&429) && first.contains(&200), "{first:?}");
}

/// An inner request that addresses alice's mailbox (and so counts against
/// its limits; the `$batch` envelope itself addresses none).
fn mailbox_read(id: &str) -> Value {
    json!({"id": id, "method": "GET", "url": "/me/mailFolders/inbox"})
}

/// Microsoft counts a `$batch`'s inner requests one by one against the
/// mailbox's 4 concurrent requests (graph-facts.md, "$batch and the
/// 4-concurrent limit"): five slow batches of one mailbox read at once all
/// answer 200, and exactly one of their inner requests is an inner 429
/// "MailboxConcurrency" with its own Retry-After.
#[tokio::test]
async fn five_concurrent_slow_requests_to_one_mailbox_get_exactly_one_429() {
    // 429, as Graph's throttling guidance documents (the default is the
    // unverified 503: the next test).
    let sim = start(|c| {
        c.initial_faults.latency_ms = 1500;
        c.concurrency_refusal_status = 429;
    })
    .await;
    let requests = (0..5).map(|_| sim.batch(json!({"requests": [mailbox_read("1")]})));
    let responses = futures::future::join_all(requests).await;
    let mut throttled = Vec::new();
    for (status, body) in responses {
        assert_eq!(status, 200, "the envelope takes no place: {body}");
        let inner = response(&body, "1");
        if inner["status"] == 429 {
            assert!(inner["headers"]["Retry-After"].is_string(), "{inner}");
            throttled.push(inner["body"].clone());
        } else {
            assert_eq!(inner["status"], 200, "{inner}");
        }
    }
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!(throttled[0]["error"]["code"], "ApplicationThrottled");
    assert_eq!(
        throttled[0]["error"]["message"],
        "Application is over its MailboxConcurrency limit."
    );
}

/// The per-mailbox request budget counts inner requests too; once spent,
/// an inner request is answered 429 with a Retry-After within the window.
#[tokio::test]
async fn mailbox_budget_answers_429_once_spent() {
    let sim = start(|c| c.mailbox_budget = Some(2)).await;
    for _ in 0..2 {
        let (status, body) = sim.batch(json!({"requests": [mailbox_read("1")]})).await;
        assert_eq!(status, 200);
        assert_eq!(response(&body, "1")["status"], 200, "{body}");
    }
    let (status, body) = sim.batch(json!({"requests": [mailbox_read("1")]})).await;
    assert_eq!(status, 200);
    let inner = response(&body, "1");
    assert_eq!(inner["status"], 429, "{inner}");
    let retry: u64 = inner["headers"]["Retry-After"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
}

#[tokio::test]
async fn inner_requests_are_throttled_one_by_one() {
    let sim = start(|c| {
        c.fault_seed = Some(3);
        c.initial_faults.throttle_rate = 0.5;
        c.initial_faults.retry_after_s = 2;
    })
    .await;
    let requests: Vec<Value> = (0..20).map(|i| failing(&i.to_string())).collect();
    // The batch itself may be throttled: a bounded number of tries.
    let mut answered = None;
    for _ in 0..20 {
        let (status, body) = sim.batch(json!({"requests": requests.clone()})).await;
        if status == 200 {
            answered = Some(body);
            break;
        }
        assert_eq!(status, 429);
    }
    let body = answered.expect("every batch was throttled");
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 20);
    let throttled: Vec<&Value> = responses.iter().filter(|r| r["status"] == 429).collect();
    assert!(!throttled.is_empty() && throttled.len() < 20, "{body}");
    for r in &throttled {
        assert_eq!(r["headers"]["Retry-After"], "2", "{r}");
        assert_eq!(r["body"]["error"]["code"], "TooManyRequests");
    }
    assert!(
        responses
            .iter()
            .all(|r| r["status"] == 429 || r["status"] == 400)
    );
    let stats = sim.stats().await;
    assert_eq!(stats["batch_inner_requests"].as_u64(), Some(20), "{stats}");
}

// The following go through the Graph mail routes of `sim::mail`.

#[tokio::test]
async fn batch_depends_on_success_and_base64_value_bodies() {
    let sim = start(|_| {}).await;
    let list: Value = sim
        .http
        .get(sim.url("/v1.0/me/mailFolders/inbox/messages?$top=1&$select=id"))
        .bearer_auth(&sim.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["value"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = sim
        .batch(json!({"requests": [
            {"id": "folders", "method": "GET", "url": "/me/mailFolders"},
            {"id": "mime", "method": "GET", "url": format!("me/messages/{id}/$value"), "dependsOn": ["folders"]},
        ]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let folders = response(&body, "folders");
    assert_eq!(folders["status"], 200);
    assert!(
        folders["body"]["value"].is_array(),
        "JSON embedded: {folders}"
    );
    let mime = response(&body, "mime");
    assert_eq!(mime["status"], 200, "{mime}");
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(mime["body"].as_str().unwrap())
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("Subject:"), "{text}");
    let stats = sim.stats().await;
    assert_eq!(stats["requests"], 2, "{stats}");
    assert_eq!(
        stats["batch_inner_by_route"]["GET /v1.0/me/messages/{message_id}/$value"], 1,
        "{stats}"
    );
}

/// By default a MailboxConcurrency refusal is a 503 (unverified whether
/// Exchange answers 429 or 503; the riskier one is the default:
/// graph-facts.md "Unverified", `SimConfig::concurrency_refusal_status`).
#[tokio::test]
async fn concurrency_limit_on_plain_graph_requests() {
    let sim = start(|c| c.initial_faults.latency_ms = 1500).await;
    let requests = (0..5).map(|_| {
        sim.http
            .get(sim.url("/v1.0/me/mailFolders"))
            .bearer_auth(&sim.token)
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    let stats = sim.stats().await;
    assert_eq!(stats["by_route"]["GET /v1.0/me/mailFolders"], 5, "{stats}");
}
