//! JSON batching ("Combine multiple HTTP requests using JSON batching"):
//! `POST /v1.0/$batch` and `/beta/$batch`. At most 20 requests, unique ids,
//! a Content-Type header for every request with a body, relative URLs
//! mapped under the batch's version; each inner request is dispatched to
//! [`super::graph_service`] with the batch's Authorization header and the
//! [`super::InnerRequest`] mark, at most 4 at a time (Outlook's limit), in
//! `dependsOn` order (a failed dependency answers 424); an inner answer
//! that breaks off (an injected reset) is reported as an inner 504, as
//! Graph reports an inner failure, never as a 200 without a body. The
//! responses come
//! back in completion order; JSON bodies are embedded, other bodies are
//! base64 (Graph's observed behaviour for binary and `$value` bodies).

use std::collections::{HashMap, HashSet};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::errors::GraphError;
use super::{InnerRequest, SimState};

const MAX_REQUESTS: usize = 20;
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
const MAX_INNER_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const INNER_CONCURRENCY: usize = 4;

#[derive(Debug, Deserialize)]
struct BatchBody {
    requests: Vec<InnerSpec>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct InnerSpec {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    depends_on: Vec<String>,
}

fn invalid(message: impl Into<String>) -> Response {
    GraphError::bad_request("BadRequest", message).into_response()
}

pub async fn batch(State(state): State<SimState>, request: Request) -> Response {
    let version = if request.uri().path().starts_with("/beta/") {
        "/beta"
    } else {
        "/v1.0"
    };
    let authorization = request.headers().get(http::header::AUTHORIZATION).cloned();
    if let Err(e) = state
        .entra()
        .authenticate(authorization.as_ref().and_then(|v| v.to_str().ok()))
    {
        return e.into_response();
    }
    let bytes = match axum::body::to_bytes(request.into_body(), MAX_BATCH_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return GraphError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "The batch request is too large.",
            )
            .into_response();
        }
    };
    let body: BatchBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return invalid(format!("Invalid batch payload format: {e}")),
    };
    if body.requests.is_empty() {
        return invalid("Invalid batch payload format.");
    }
    if body.requests.len() > MAX_REQUESTS {
        return invalid("The number of batch requests exceeds the maximum of 20.");
    }
    let mut ids = HashSet::new();
    for r in &body.requests {
        if !ids.insert(r.id.as_str()) {
            return invalid(format!("Batch request id '{}' is duplicated.", r.id));
        }
        if r.body.is_some()
            && !r
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
        {
            return invalid(format!(
                "Request '{}' has a body but no Content-Type header.",
                r.id
            ));
        }
        if r.url.starts_with("http://") || r.url.starts_with("https://") {
            return invalid(format!("Request '{}': the url must be relative.", r.id));
        }
    }
    for r in &body.requests {
        if let Some(missing) = r
            .depends_on
            .iter()
            .find(|d| !ids.contains(d.as_str()) || *d == &r.id)
        {
            return invalid(format!(
                "Request '{}' depends on unknown request '{missing}'.",
                r.id
            ));
        }
    }
    let responses = run(&state, version, authorization, body.requests).await;
    match responses {
        Some(responses) => {
            let body = json!({"responses": responses}).to_string();
            state.stats().record_batch_response(body.len());
            ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        None => invalid("The dependsOn graph of the batch has a cycle."),
    }
}

/// Run the requests in waves: every request whose dependencies have all
/// answered, at most 4 at a time. `None` when dependencies form a cycle.
async fn run(
    state: &SimState,
    version: &str,
    authorization: Option<HeaderValue>,
    requests: Vec<InnerSpec>,
) -> Option<Vec<Value>> {
    // One router for the whole batch; each inner request gets a clone.
    let service = super::graph_service(state.clone());
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut pending = requests;
    let mut responses = Vec::new();
    while !pending.is_empty() {
        let (ready, waiting): (Vec<InnerSpec>, Vec<InnerSpec>) = pending
            .into_iter()
            .partition(|r| r.depends_on.iter().all(|d| statuses.contains_key(d)));
        if ready.is_empty() {
            return None;
        }
        pending = waiting;
        let (failed, runnable): (Vec<InnerSpec>, Vec<InnerSpec>) =
            ready.into_iter().partition(|r| {
                r.depends_on
                    .iter()
                    .any(|d| statuses.get(d).is_none_or(|s| !(200..300).contains(s)))
            });
        for r in failed {
            statuses.insert(r.id.clone(), 424);
            responses.push(json!({
                "id": r.id,
                "status": 424,
                "headers": {"Content-Type": "application/json"},
                "body": GraphError::new(StatusCode::FAILED_DEPENDENCY, "FailedDependency", "The request could not be processed because a request it depends on failed.").body(),
            }));
        }
        let outcomes: Vec<(String, u16, Value)> = futures::stream::iter(runnable)
            .map(|r| {
                let authorization = authorization.clone();
                let service = service.clone();
                async move {
                    let (status, value) = dispatch(service, version, authorization, &r).await;
                    (r.id, status, value)
                }
            })
            .buffer_unordered(INNER_CONCURRENCY)
            .collect()
            .await;
        for (id, status, value) in outcomes {
            statuses.insert(id, status);
            responses.push(value);
        }
    }
    Some(responses)
}

async fn dispatch(
    service: Router,
    version: &str,
    authorization: Option<HeaderValue>,
    spec: &InnerSpec,
) -> (u16, Value) {
    let answer = |status: u16, value: Value| (status, value);
    let relative = spec.url.trim_start_matches('/');
    let uri = format!("{version}/{relative}");
    let Ok(method) = Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes()) else {
        let e = GraphError::bad_request("BadRequest", format!("Unknown method '{}'.", spec.method));
        return answer(400, json!({"id": spec.id, "status": 400, "body": e.body()}));
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    if let Some(auth) = authorization {
        headers.insert(http::header::AUTHORIZATION, auth);
    }
    let is_json_request = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let body = match &spec.body {
        None => Body::empty(),
        Some(Value::String(s)) if !is_json_request => Body::from(s.clone()),
        Some(v) => Body::from(v.to_string()),
    };
    let mut builder = Request::builder().method(method).uri(&uri);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let request = match builder.body(body) {
        Ok(mut r) => {
            r.extensions_mut().insert(InnerRequest);
            r
        }
        Err(_) => {
            let e = GraphError::bad_request("BadRequest", format!("Invalid url '{}'.", spec.url));
            return answer(400, json!({"id": spec.id, "status": 400, "body": e.body()}));
        }
    };
    let response = match service.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let mut out_headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        if let Ok(v) = value.to_str() {
            out_headers.insert(canonical(name.as_str()), Value::String(v.to_string()));
        }
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bytes: Bytes =
        match axum::body::to_bytes(response.into_body(), MAX_INNER_RESPONSE_BYTES).await {
            Ok(bytes) => bytes,
            // The inner answer broke off (an injected connection reset
            // breaks its body): Graph's front end answers such an inner
            // request with its own failure, never with the 200 it had begun
            // and an empty body ("Combine multiple HTTP requests using JSON
            // batching": each inner response carries its own status; the
            // errors page lists 504 Gateway Timeout for an upstream that did
            // not answer; the code `UnknownError` is what graph-facts.md
            // records for 5xx).
            Err(_) => return upstream_failed(&spec.id),
        };
    let mut value = json!({"id": spec.id, "status": status, "headers": out_headers});
    if !bytes.is_empty() {
        value["body"] = if content_type.contains("json") {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(STANDARD.encode(&bytes)))
        } else {
            Value::String(STANDARD.encode(&bytes))
        };
    }
    answer(status, value)
}

/// The inner answer of a request whose upstream answer broke off: 504
/// with Graph's error body.
fn upstream_failed(id: &str) -> (u16, Value) {
    let e = GraphError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "UnknownError",
        "The upstream service did not complete its answer. Retry the request.",
    );
    (
        504,
        json!({
            "id": id,
            "status": 504,
            "headers": {"Content-Type": "application/json"},
            "body": e.body(),
        }),
    )
}

/// `content-type` → `Content-Type`, as Graph spells batch headers.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

pub fn routes() -> Router<SimState> {
    Router::new()
        .route("/v1.0/$batch", post(batch))
        .route("/beta/$batch", post(batch))
}
