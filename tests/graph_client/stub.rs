//! A small scripted Graph server for the client's own behaviour (headers,
//! retries, concurrency, batching, paging, upload sessions), served over a
//! real socket on 127.0.0.1:0. It is not the simulator: it answers only the
//! exact requests these tests make, and records what it saw.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use base64::Engine;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Seen {
    /// `METHOD path?query` of every request.
    pub requests: Vec<String>,
    pub headers: Vec<HeaderMap>,
    /// Calls per key, for "fail the first n times".
    pub calls: HashMap<String, usize>,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub sent_mime: Vec<Vec<u8>>,
    /// (Content-Range, length, had Authorization) of each upload PUT.
    pub chunks: Vec<(String, usize, bool)>,
    pub uploaded: usize,
    pub batch_sizes: Vec<usize>,
    /// (folder, JSON body) of each `POST mailFolders/{id}/messages`.
    pub created_in_folder: Vec<(String, Value)>,
    /// (message id, JSON body) of each PATCH that succeeded.
    pub patches: Vec<(String, Value)>,
}

#[derive(Clone)]
pub struct Stub {
    pub base: String,
    pub seen: Arc<Mutex<Seen>>,
}

impl Stub {
    fn call(&self, key: &str) -> usize {
        let mut s = self.seen.lock().unwrap();
        let n = s.calls.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": "stub",
            "innerError": {"request-id": "req-1", "date": "2026-01-01T00:00:00"}}})),
    )
        .into_response()
}

async fn record(
    State(stub): State<Stub>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    {
        let mut s = stub.seen.lock().unwrap();
        let uri = request.uri();
        s.requests.push(format!(
            "{} {}",
            request.method(),
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
        ));
        s.headers.push(request.headers().clone());
    }
    next.run(request).await
}

fn folder(id: &str, parent: &str, name: &str, children: u64) -> Value {
    json!({"id": id, "parentFolderId": parent, "displayName": name, "childFolderCount": children,
           "unreadItemCount": 1, "totalItemCount": 2, "isHidden": false})
}

async fn folders(State(stub): State<Stub>, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    if q.contains("page=2") {
        axum::Json(json!({"value": [folder("F-archive", "ROOT", "Archive", 0), folder("F-x", "ROOT", "X", 0)]}))
            .into_response()
    } else {
        axum::Json(json!({
            "value": [folder("F-inbox", "ROOT", "Inbox", 1), folder("F-sent", "ROOT", "Sent Items", 0)],
            "@odata.nextLink": format!("{}/v1.0/me/mailFolders?%24top=100&page=2", stub.base)
        }))
        .into_response()
    }
}

async fn child_folders(Path(id): Path<String>) -> Response {
    if id == "F-inbox" {
        axum::Json(json!({"value": [folder("F-child", "F-inbox", "Child", 0)]})).into_response()
    } else {
        axum::Json(json!({"value": []})).into_response()
    }
}

async fn delta(
    State(stub): State<Stub>,
    Path(_id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = q.unwrap_or_default();
    let prefers: Vec<String> = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    if !prefers.iter().any(|p| p.contains("odata.maxpagesize=500")) {
        return error(StatusCode::BAD_REQUEST, "stubMissingMaxPageSize");
    }
    let link = |k: &str, v: &str| {
        format!(
            "{}/v1.0/me/mailFolders/F-inbox/messages/delta?{k}={v}",
            stub.base
        )
    };
    if q.contains("deltatoken=expired") {
        return error(StatusCode::GONE, "syncStateNotFound");
    }
    if q.contains("deltatoken=t1") {
        return axum::Json(json!({
            "value": [{"id": "M2", "@removed": {"reason": "deleted"}}, {"id": "M1", "isRead": true}],
            "@odata.deltaLink": link("%24deltatoken", "t2")
        }))
        .into_response();
    }
    if q.contains("skiptoken=p2") {
        return axum::Json(json!({
            "value": [{"id": "M3", "subject": "three", "isRead": false, "isDraft": false}],
            "@odata.deltaLink": link("%24deltatoken", "t1")
        }))
        .into_response();
    }
    if !q.contains("%24select=") && !q.contains("$select=") {
        return error(StatusCode::BAD_REQUEST, "stubMissingSelect");
    }
    axum::Json(json!({
        "value": [
            {"id": "M1", "subject": "one", "isRead": false, "isDraft": false, "flag": {"flagStatus": "flagged"},
             "receivedDateTime": "2026-03-01T10:00:00Z"},
            {"id": "M2", "subject": "two", "isRead": true, "isDraft": false}],
        "@odata.nextLink": link("%24skiptoken", "p2")
    }))
    .into_response()
}

async fn value(State(stub): State<Stub>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let n = stub.call(&id);
    match id.as_str() {
        "throttled" if n == 1 => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests");
            r.headers_mut().insert("Retry-After", "1".parse().unwrap());
            r
        }
        "unavailable" if n <= 2 => error(StatusCode::SERVICE_UNAVAILABLE, "serviceNotAvailable"),
        "always-throttled" => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests");
            r.headers_mut().insert("Retry-After", "1".parse().unwrap());
            r
        }
        "auth" => {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if auth == "Bearer fresh" {
                "Subject: ok\r\n\r\nok".into_response()
            } else {
                error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
            }
        }
        "gone" => error(StatusCode::NOT_FOUND, "ErrorItemNotFound"),
        slow if slow.starts_with("slow") => {
            {
                let mut s = stub.seen.lock().unwrap();
                s.in_flight += 1;
                s.max_in_flight = s.max_in_flight.max(s.in_flight);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            stub.seen.lock().unwrap().in_flight -= 1;
            format!("Subject: {slow}\r\n\r\n").into_response()
        }
        other => format!("Subject: {other}\r\n\r\nbody of {other}").into_response(),
    }
}

/// `/users/{upn}/…/$value`: the slow messages are the same mailbox as
/// `/me`'s (for the shared concurrency test); anything else names a
/// mailbox without Exchange Online.
async fn user_value(
    State(stub): State<Stub>,
    Path((_user, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if id.starts_with("slow") {
        return value(State(stub), Path(id), headers).await;
    }
    error(StatusCode::NOT_FOUND, "MailboxNotEnabledForRESTAPI")
}

async fn batch(State(stub): State<Stub>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return error(StatusCode::BAD_REQUEST, "BadRequest"),
    };
    let requests = request["requests"].as_array().cloned().unwrap_or_default();
    if requests.len() > 20 {
        return error(StatusCode::BAD_REQUEST, "stubBatchTooLarge");
    }
    stub.seen.lock().unwrap().batch_sizes.push(requests.len());
    let mut responses = Vec::new();
    // Answer in reverse order: the client must match by id.
    for r in requests.iter().rev() {
        let id = r["id"].as_str().unwrap_or("").to_string();
        let url = r["url"].as_str().unwrap_or("").to_string();
        let reply = if let Some(name) = url
            .strip_prefix("/me/mailFolders/")
            .and_then(|u| u.strip_suffix("?$select=id"))
        {
            match name {
                "inbox" => json!({"status": 200, "body": {"id": "F-inbox"}}),
                "sentitems" => json!({"status": 200, "body": {"id": "F-sent"}}),
                "archive" => json!({"status": 200, "body": {"id": "F-archive"}}),
                _ => {
                    json!({"status": 404, "body": {"error": {"code": "ErrorItemNotFound", "message": "x"}}})
                }
            }
        } else if let Some(mid) = url
            .strip_prefix("/me/messages/")
            .and_then(|u| u.strip_suffix("/$value"))
        {
            let n = stub.call(&format!("batch {mid}"));
            let mime = format!("Subject: {mid}\r\n\r\nbody of {mid}");
            let index: usize = mid.trim_start_matches('m').parse().unwrap_or(0);
            if index % 7 == 3 && n == 1 {
                json!({"status": 429, "headers": {"Retry-After": "1"},
                       "body": {"error": {"code": "TooManyRequests", "message": "x"}}})
            } else if index.is_multiple_of(2) {
                json!({"status": 200, "headers": {"Content-Type": "text/plain"},
                       "body": base64::engine::general_purpose::STANDARD.encode(mime)})
            } else {
                json!({"status": 200, "headers": {"Content-Type": "text/plain"}, "body": mime})
            }
        } else if url.starts_with("/me/messages/") && url.contains("$select=id,parentFolderId") {
            let mid = url
                .trim_start_matches("/me/messages/")
                .split('?')
                .next()
                .unwrap_or("");
            json!({"status": 200, "headers": {"Content-Type": "application/json"},
                   "body": {"id": mid, "isRead": true, "isDraft": false, "subject": "full"}})
        } else if url.starts_with("/me/messages/") && url.contains("0x0E08") {
            let mid = url
                .trim_start_matches("/me/messages/")
                .split('?')
                .next()
                .unwrap_or("");
            let size = 1000 + mid.trim_start_matches('m').parse::<u64>().unwrap_or(0);
            json!({"status": 200, "headers": {"Content-Type": "application/json"},
                   "body": {"id": mid, "singleValueExtendedProperties":
                            [{"id": "Integer 0xe08", "value": size.to_string()}]}})
        } else {
            json!({"status": 404, "body": {"error": {"code": "ErrorItemNotFound", "message": "x"}}})
        };
        let mut reply = reply;
        reply["id"] = json!(id);
        responses.push(reply);
    }
    axum::Json(json!({"responses": responses})).into_response()
}

async fn send_mail(State(stub): State<Stub>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/plain") {
        return error(StatusCode::BAD_REQUEST, "stubWrongContentType");
    }
    match base64::engine::general_purpose::STANDARD.decode(&body) {
        Ok(mime) => {
            stub.seen.lock().unwrap().sent_mime.push(mime);
            StatusCode::ACCEPTED.into_response()
        }
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalidBase64String",
        ),
    }
}

async fn create_draft(body: Bytes) -> Response {
    if base64::engine::general_purpose::STANDARD
        .decode(&body)
        .is_err()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalidBase64String",
        );
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({"@odata.context": "x", "@odata.etag": "W/\"1\"", "id": "D1",
            "changeKey": "ck", "createdDateTime": "2026-01-01T00:00:00Z", "isDraft": true,
            "hasAttachments": false, "subject": "draft", "body": {"contentType": "text", "content": "hi"},
            "toRecipients": [{"emailAddress": {"address": "b@example.com"}}]})),
    )
        .into_response()
}

async fn upload_session(State(stub): State<Stub>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    if v["AttachmentItem"]["size"].as_u64().unwrap_or(0) < 3 * 1024 * 1024 {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
        );
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({"uploadUrl": format!("{}/upload/S1", stub.base),
                          "expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": ["0-"]})),
    )
        .into_response()
}

async fn upload_put(State(stub): State<Stub>, headers: HeaderMap, body: Bytes) -> Response {
    let range = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let auth = headers.contains_key("authorization");
    let total: usize = range
        .rsplit('/')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let mut s = stub.seen.lock().unwrap();
    s.chunks.push((range, body.len(), auth));
    s.uploaded += body.len();
    if s.uploaded >= total {
        (
            StatusCode::CREATED,
            [("Location", "https://stub/attachments/A1")],
        )
            .into_response()
    } else {
        axum::Json(json!({"nextExpectedRanges": [format!("{}-", s.uploaded)]})).into_response()
    }
}

async fn create_in_folder(
    State(stub): State<Stub>,
    Path(folder): Path<String>,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    stub.seen
        .lock()
        .unwrap()
        .created_in_folder
        .push((folder.clone(), v.clone()));
    let flags = v["singleValueExtendedProperties"][0]["value"]
        .as_str()
        .unwrap_or("8");
    let is_draft = flags.parse::<u32>().unwrap_or(8) & 8 != 0;
    (
        StatusCode::CREATED,
        axum::Json(
            json!({"id": "N1", "parentFolderId": folder, "isDraft": is_draft,
            "isRead": v["isRead"], "subject": v["subject"]}),
        ),
    )
        .into_response()
}

async fn patch_message(State(stub): State<Stub>, Path(id): Path<String>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    if stub.call(&format!("patch {id}")) == 1 {
        return error(StatusCode::SERVICE_UNAVAILABLE, "serviceNotAvailable");
    }
    stub.seen.lock().unwrap().patches.push((id.clone(), v));
    axum::Json(json!({"id": id})).into_response()
}

async fn create_folder_unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "serviceNotAvailable")
}

async fn no_content() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn accepted() -> StatusCode {
    StatusCode::ACCEPTED
}

async fn created() -> Response {
    (StatusCode::CREATED, axum::Json(json!({"id": "A-small"}))).into_response()
}

/// Serve the stub on 127.0.0.1:0.
pub async fn start() -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub = Stub {
        base: format!("http://{}", listener.local_addr().unwrap()),
        seen: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/v1.0/me/mailFolders",
            get(folders).post(create_folder_unavailable),
        )
        .route(
            "/v1.0/me/messages/{id}",
            axum::routing::patch(patch_message),
        )
        .route("/v1.0/me/mailFolders/{id}/childFolders", get(child_folders))
        .route("/v1.0/me/mailFolders/{id}/messages/delta", get(delta))
        .route("/v1.0/me/messages/{id}/$value", get(value))
        .route("/v1.0/users/{user}/messages/{id}/$value", get(user_value))
        .route("/v1.0/$batch", post(batch))
        .route("/v1.0/me/sendMail", post(send_mail))
        .route("/v1.0/me/messages", post(create_draft))
        .route(
            "/v1.0/me/messages/{id}/attachments/createUploadSession",
            post(upload_session),
        )
        .route("/v1.0/me/messages/{id}/attachments", post(created))
        .route("/v1.0/me/messages/{id}/send", post(accepted))
        .route("/v1.0/me/messages/{id}/permanentDelete", post(no_content))
        .route("/v1.0/me/mailFolders/{id}/messages", post(create_in_folder))
        .route("/upload/S1", put(upload_put).delete(accepted))
        .fallback(any(|| async {
            error(StatusCode::NOT_FOUND, "stubNoRoute")
        }))
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(stub.clone(), record))
        .with_state(stub.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    stub
}

/// A server that drops the first `drops` connections without answering,
/// then answers every request with a small 200. Returns its URL and the
/// count of connections accepted.
pub async fn start_resetting(drops: usize) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                if n < drops {
                    drop(socket);
                    return;
                }
                let body = "Subject: after reset\r\n\r\nok";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, accepted)
}
