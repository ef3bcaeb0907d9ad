//! Graph answers that a real client meets in the wild, from a hostile
//! server on 127.0.0.1:0: malformed and truncated JSON, HTML from a proxy,
//! absurd `Retry-After`, redirects to other hosts, and a delta stream that
//! replays items. Each is an error that names what went wrong, or is
//! handled — never a panic, never corrupted state in the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::future::BoxFuture;
use graphgate::auth::{AccessToken, AuthError, TokenSource};
use graphgate::graph::{
    BackendError, GraphClient, GraphConfig, GraphError, GraphMailbox, MailBackend, Mailbox,
    RemoteMessageId, RetryPolicy,
};
use graphgate::mailbox::{MailboxModel, flags};
use graphgate::secret::Secret;
use graphgate::store::folders::FolderId;
use graphgate::store::{AccountId, NewAccount, Store};
use serde_json::{Value, json};

/// One canned answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Canned {
    fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: body.into(),
        }
    }

    fn json(value: Value) -> Canned {
        Canned::raw(200, "application/json", value.to_string())
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Canned {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
struct Script {
    /// Answers by request path, in order; the last one repeats.
    answers: HashMap<String, VecDeque<Canned>>,
    /// `METHOD path?query` of every request seen.
    seen: Vec<String>,
}

#[derive(Clone)]
struct Hostile {
    base: String,
    script: Arc<Mutex<Script>>,
}

impl Hostile {
    async fn start() -> Hostile {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().fallback(answer).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hostile { base, script }
    }

    fn on(&self, path: &str, answers: impl IntoIterator<Item = Canned>) {
        self.script
            .lock()
            .unwrap()
            .answers
            .insert(path.to_string(), answers.into_iter().collect());
    }

    fn seen(&self) -> Vec<String> {
        self.script.lock().unwrap().seen.clone()
    }

    fn mailbox(&self) -> (GraphClient, Arc<GraphMailbox>) {
        let client = GraphClient::new(GraphConfig {
            base_url: self.base.clone(),
            retry: RetryPolicy {
                max_attempts: 3,
                max_retry_after_s: 1,
                max_total_wait_s: 10,
                base_backoff_ms: 10,
            },
            ..GraphConfig::default()
        })
        .unwrap();
        let backend = Arc::new(client.mailbox(Mailbox::Me, Arc::new(Token)));
        (client, backend)
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let mut script = script.lock().unwrap();
    let uri = request.uri();
    script.seen.push(format!(
        "{} {}",
        request.method(),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    ));
    let canned = match script.answers.get_mut(uri.path()) {
        Some(queue) if queue.len() > 1 => queue.pop_front(),
        Some(queue) => queue.front().cloned(),
        None => None,
    };
    let canned = canned.unwrap_or_else(|| {
        Canned::raw(
            404,
            "application/json",
            json!({"error": {"code": "ErrorItemNotFound", "message": "not scripted"}}).to_string(),
        )
    });
    let mut response = Response::builder().status(StatusCode::from_u16(canned.status).unwrap());
    for (name, value) in &canned.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(canned.body)).unwrap()
}

struct Token;

impl TokenSource for Token {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(async {
            Ok(AccessToken {
                token: Secret::new("token".to_string()),
                expires_at: SystemTime::now() + Duration::from_secs(3600),
            })
        })
    }

    fn invalidate(&self, _token: &AccessToken) {}
}

const FOLDERS: &str = "/v1.0/me/mailFolders";
const DELTA: &str = "/v1.0/me/mailFolders/F1/messages/delta";

fn malformed(err: &GraphError) -> String {
    match err {
        GraphError::Malformed(text) => text.clone(),
        other => panic!("expected a malformed-answer error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_truncated_and_mistyped_json_is_an_error_that_says_so() {
    let graph = Hostile::start().await;
    let (_client, backend) = graph.mailbox();
    let whole = json!({"value": [{"id": "F1", "displayName": "Inbox", "parentFolderId": "R",
                                  "childFolderCount": 0}]})
    .to_string();
    let cases = [
        ("truncated", whole[..whole.len() / 2].to_string()),
        ("not an object", "[1, 2, 3]".to_string()),
        (
            "wrong types",
            r#"{"value": [{"id": 5, "displayName": ["x"]}]}"#.to_string(),
        ),
        ("empty", String::new()),
        (
            "binary",
            String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x7b]).into_owned(),
        ),
        ("deep nesting", "[".repeat(100_000)),
    ];
    for (what, body) in cases {
        graph.on(FOLDERS, [Canned::raw(200, "application/json", body)]);
        let err = backend.list_folders().await.unwrap_err();
        let text = malformed(&err);
        assert!(text.contains("folder page"), "{what}: {text}");
    }
}

#[tokio::test]
async fn a_proxy_page_instead_of_json_is_named_in_the_error() {
    let graph = Hostile::start().await;
    let (_client, backend) = graph.mailbox();
    // 200 with HTML: a captive portal or a misconfigured proxy.
    graph.on(
        FOLDERS,
        [Canned::raw(
            200,
            "text/html",
            "<html><body>Please sign in to the proxy</body></html>",
        )],
    );
    let err = backend.list_folders().await.unwrap_err();
    assert!(malformed(&err).contains("folder page"), "{err}");

    // An error status with an HTML page: the page's words are the clue.
    graph.on(
        FOLDERS,
        [Canned::raw(
            403,
            "text/html",
            "<html><title>Blocked by corporate proxy</title>\r\n</html>",
        )],
    );
    let err = backend.list_folders().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("403"), "{text}");
    assert!(text.contains("Blocked by corporate proxy"), "{text}");
    assert!(text.contains("not Graph's JSON error shape"), "{text}");

    // An empty error answer says it was empty.
    graph.on(FOLDERS, [Canned::raw(400, "text/plain", "")]);
    let text = backend.list_folders().await.unwrap_err().to_string();
    assert!(text.contains("an empty answer"), "{text}");
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_and_a_garbled_one_backs_off() {
    let graph = Hostile::start().await;
    let (client, backend) = graph.mailbox();
    let ok = Canned::raw(200, "message/rfc822", "Subject: ok\r\n\r\nok\r\n");
    let throttled = |after: &str| {
        Canned::raw(
            429,
            "application/json",
            json!({"error": {"code": "TooManyRequests", "message": "slow down"}}).to_string(),
        )
        .header("retry-after", after)
    };
    graph.on(
        "/v1.0/me/messages/M1/$value",
        [throttled("18446744073709551615"), ok.clone()],
    );
    let mime = backend
        .fetch_mime(&RemoteMessageId::new("M1"))
        .await
        .unwrap();
    assert!(mime.starts_with(b"Subject: ok"));
    // Capped at the policy's max_retry_after_s (1 s), not 584 billion years.
    assert_eq!(client.counters().retry_wait, Duration::from_secs(1));

    for garbled in ["-5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "1e9"] {
        let before = client.counters().retry_wait;
        graph.on(
            "/v1.0/me/messages/M2/$value",
            [throttled(garbled), ok.clone()],
        );
        backend
            .fetch_mime(&RemoteMessageId::new("M2"))
            .await
            .unwrap();
        // Exponential backoff from 10 ms instead: well under the cap.
        let waited = client.counters().retry_wait - before;
        assert!(waited < Duration::from_secs(1), "{garbled}: {waited:?}");
    }
}

#[tokio::test]
async fn redirects_are_never_followed_and_carry_no_token_away() {
    let graph = Hostile::start().await;
    let elsewhere = Hostile::start().await;
    let (_client, backend) = graph.mailbox();
    for status in [301, 302, 303, 307, 308] {
        graph.on(
            "/v1.0/me/messages/M1/$value",
            [Canned::raw(status, "text/plain", "").header(
                "location",
                format!("{}/steal?status={status}", elsewhere.base),
            )],
        );
        let err = backend
            .fetch_mime(&RemoteMessageId::new("M1"))
            .await
            .unwrap_err();
        let text = malformed(&err);
        assert!(text.contains(&format!("{status} redirecting to")), "{text}");
        assert!(text.contains("never follows redirects"), "{text}");
    }
    assert!(
        elsewhere.seen().is_empty(),
        "the other host was reached: {:?}",
        elsewhere.seen()
    );
}

/// A store with one account and folder `F1`, and a model over `backend`.
fn model(dir: &std::path::Path, backend: Arc<dyn MailBackend>) -> (MailboxModel, FolderId, Store) {
    let store = Store::open(dir).unwrap();
    let account: AccountId = match store.account("alice@example.com").unwrap() {
        Some(a) => a.id,
        None => {
            store
                .add_account(&NewAccount::delegated("alice@example.com", "alice"))
                .unwrap()
                .id
        }
    };
    let folder = store
        .upsert_folder(account, "alice@example.com", "F1", "INBOX", None, None)
        .unwrap()
        .id;
    let model = MailboxModel::new(store.clone(), account, "alice@example.com", backend);
    (model, folder, store)
}

fn message(id: &str, received: &str, read: bool) -> Value {
    json!({"id": id, "subject": id, "isRead": read, "isDraft": false,
           "receivedDateTime": received})
}

fn removed(id: &str) -> Value {
    json!({"id": id, "@removed": {"reason": "deleted"}})
}

/// (UID, Graph id, \Seen) of every message the store holds for `folder`.
fn held(store: &Store, folder: FolderId) -> Vec<(u32, String, bool)> {
    let mut rows: Vec<(u32, String, bool)> = store
        .messages(folder)
        .unwrap()
        .into_iter()
        .map(|m| (m.uid.0, m.remote_id, m.flags & flags::SEEN != 0))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_delta_stream_that_replays_items_keeps_one_uid_per_message_and_the_last_word() {
    let graph = Hostile::start().await;
    let (_client, backend) = graph.mailbox();
    let dir = tempfile::tempdir().unwrap();
    let (model, folder, store) = model(dir.path(), backend);
    let link = |token: &str| format!("{}{DELTA}?$deltatoken={token}", graph.base);

    // The initial listing names A twice across pages and B three times,
    // ending with B removed and then back (moved out and in again).
    graph.on(
        DELTA,
        [
            Canned::json(json!({
                "value": [message("A", "2026-01-01T00:00:00Z", false),
                          message("B", "2026-01-02T00:00:00Z", false)],
                "@odata.nextLink": format!("{}{DELTA}?$skiptoken=p2", graph.base)})),
            Canned::json(json!({
                "value": [message("A", "2026-01-01T00:00:00Z", true), removed("B"),
                          message("C", "2026-01-03T00:00:00Z", false),
                          message("B", "2026-01-02T00:00:00Z", true)],
                "@odata.deltaLink": link("t1")})),
        ],
    );
    let changes = model.sync(folder).await.unwrap();
    assert_eq!(changes.added.len(), 3, "{changes:?}");
    let first = held(&store, folder);
    let ids: Vec<&str> = first.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids, ["A", "B", "C"], "UIDs in arrival order, one each");
    // The last word on A and B was "read".
    assert!(first[0].2 && first[1].2 && !first[2].2, "{first:?}");

    // An increment that replays what is already known, removes C, brings it
    // back, and removes A twice.
    graph.on(
        DELTA,
        [Canned::json(json!({
            "value": [message("B", "2026-01-02T00:00:00Z", true), removed("C"),
                      message("C", "2026-01-03T00:00:00Z", true), removed("A"), removed("A")],
            "@odata.deltaLink": link("t2")}))],
    );
    let changes = model.sync(folder).await.unwrap();
    assert!(changes.added.is_empty(), "{changes:?}");
    let after = held(&store, folder);
    assert_eq!(
        after,
        vec![
            (first[1].0, "B".to_string(), true),
            (first[2].0, "C".to_string(), true)
        ],
        "B and C keep their UIDs, C's flag change applied, A gone"
    );
}

#[tokio::test]
async fn a_truncated_delta_page_changes_nothing_and_the_next_round_resumes() {
    let graph = Hostile::start().await;
    let (_client, backend) = graph.mailbox();
    let dir = tempfile::tempdir().unwrap();
    let (model, folder, store) = model(dir.path(), backend);
    let link = |token: &str| format!("{}{DELTA}?$deltatoken={token}", graph.base);
    graph.on(
        DELTA,
        [Canned::json(json!({
            "value": [message("A", "2026-01-01T00:00:00Z", false)],
            "@odata.deltaLink": link("t1")}))],
    );
    model.sync(folder).await.unwrap();
    let before = held(&store, folder);
    let link_before = delta_link(&store, folder);

    // Page 1 is fine (it adds B and removes A), page 2 is cut off mid-way.
    let page2 = json!({"value": [message("C", "2026-01-03T00:00:00Z", false)],
                       "@odata.deltaLink": link("t2")})
    .to_string();
    graph.on(
        DELTA,
        [
            Canned::json(json!({
                "value": [message("B", "2026-01-02T00:00:00Z", false), removed("A")],
                "@odata.nextLink": format!("{}{DELTA}?$skiptoken=p2", graph.base)})),
            Canned::raw(200, "application/json", &page2[..page2.len() - 20]),
        ],
    );
    let err = model.sync(folder).await.unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");
    assert_eq!(
        held(&store, folder),
        before,
        "nothing applied from half a round"
    );
    let link_after = delta_link(&store, folder);
    assert_eq!(link_after, link_before, "the delta link did not move");

    // The round is repeated from the same link and now completes.
    graph.on(
        DELTA,
        [Canned::json(json!({
            "value": [message("B", "2026-01-02T00:00:00Z", false), removed("A"),
                      message("C", "2026-01-03T00:00:00Z", false)],
            "@odata.deltaLink": link("t2")}))],
    );
    let changes = model.sync(folder).await.unwrap();
    assert_eq!(changes.added.len(), 2);
    let ids: Vec<String> = held(&store, folder)
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(ids, ["B", "C"]);
    // The last delta request (an incremental round then reads the changed
    // messages whole in `$batch`, for their last verb).
    let last = graph
        .seen()
        .into_iter()
        .rev()
        .find(|r| r.contains("/messages/delta"))
        .unwrap();
    assert!(last.contains("deltatoken=t1"), "resumed from t1: {last}");
}

/// The delta link the store holds for `folder`.
fn delta_link(store: &Store, folder: FolderId) -> Option<String> {
    let account = store.account("alice@example.com").unwrap().unwrap().id;
    store
        .folders(account)
        .unwrap()
        .into_iter()
        .find(|f| f.id == folder)
        .unwrap()
        .delta_link
}

/// A `$batch` answer for inner ids 0..20: each message's size (`Integer
/// 0x0E08`, asked first so that bodies are grouped by it).
fn size_batch() -> Canned {
    let responses: Vec<Value> = (0..20)
        .map(|i| {
            json!({"id": i.to_string(), "status": 200,
                   "headers": {"Content-Type": "application/json"},
                   "body": {"id": format!("M{i}"), "singleValueExtendedProperties":
                            [{"id": "Integer 0xe08", "value": "100"}]}})
        })
        .collect();
    Canned::json(json!({ "responses": responses }))
}

/// A `$batch` answer for inner ids 0..20: `$value` bodies (base64), the
/// message of id 3 gone (404), the one of id 5 with a NUL in it.
fn mime_batch() -> Canned {
    use base64::Engine;
    let responses: Vec<Value> = (0..20)
        .map(|i| match i {
            3 => json!({"id": "3", "status": 404, "headers": {"Content-Type": "application/json"},
                        "body": {"error": {"code": "ErrorItemNotFound", "message": "gone"}}}),
            _ => {
                let mime = format!("Subject: m{i}\r\n\r\nbody{}\r\n", if i == 5 { "\0" } else { "" });
                json!({"id": i.to_string(), "status": 200, "headers": {"Content-Type": "text/plain"},
                       "body": base64::engine::general_purpose::STANDARD.encode(mime)})
            }
        })
        .collect();
    Canned::json(json!({ "responses": responses }))
}

#[tokio::test]
async fn a_cold_fetch_whose_batch_fails_keeps_what_the_other_batches_brought() {
    use graphgate::mailbox::content::ContentCache;
    use graphgate::store::folders::NewMessage;
    let graph = Hostile::start().await;
    let (_client, backend) = graph.mailbox();
    let dir = tempfile::tempdir().unwrap();
    let (_model, folder, store) = model(dir.path(), backend.clone());
    let new: Vec<NewMessage> = (0..60)
        .map(|i| NewMessage {
            remote_id: format!("M{i}"),
            flags: 0,
            keywords: String::new(),
            size: None,
            internal_date: None,
        })
        .collect();
    store.add_messages(folder, &new).unwrap();
    let cache = ContentCache::new(dir.path().join("cache"), store.clone());
    // Three groups in flight at once, each asking its sizes first (the
    // mailbox's slots serve them in turn), then its bodies; the third
    // answer of bodies is a 400.
    let refused = Canned::raw(
        400,
        "application/json",
        json!({"error": {"code": "BadRequest", "message": "no"}}).to_string(),
    );
    graph.on(
        "/v1.0/$batch",
        [
            size_batch(),
            size_batch(),
            size_batch(),
            mime_batch(),
            mime_batch(),
            refused,
        ],
    );
    let err = cache
        .ensure(backend.as_ref(), folder, store.messages(folder).unwrap())
        .await
        .expect_err("a refused batch fails the FETCH");
    assert!(
        matches!(err, BackendError::Permanent { ref detail, .. } if detail.contains("400")),
        "{err:?}"
    );
    // The two answered batches are on disk and recorded (less the message
    // that was gone), in the messages' rows and in the cache index.
    let fetched: Vec<_> = store
        .messages(folder)
        .unwrap()
        .into_iter()
        .filter(|m| m.content_hash.is_some())
        .collect();
    assert_eq!(fetched.len(), 38);
    let mut total = 0;
    for m in &fetched {
        let path = dir
            .path()
            .join("cache")
            .join(&m.content_hash.as_ref().unwrap()[..2])
            .join(m.content_hash.as_ref().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(Some(bytes.len() as u64), m.size);
        assert!(!bytes.contains(&0), "NUL replaced before caching");
        total += bytes.len() as u64;
    }
    // Two batches brought the same 19 contents: stored (and indexed) once.
    let distinct: std::collections::HashSet<_> =
        fetched.iter().map(|m| m.content_hash.clone()).collect();
    assert_eq!(distinct.len(), 19);
    assert_eq!(store.cache_size().unwrap(), total / 2);
    assert!(fetched.iter().any(|m| {
        std::fs::read(
            dir.path()
                .join("cache")
                .join(&m.content_hash.as_ref().unwrap()[..2])
                .join(m.content_hash.as_ref().unwrap()),
        )
        .unwrap()
        .contains(&0x80)
    }));
    // Again: only the 22 missing ones are asked for (a batch of 20 and one
    // of 2; their sizes are known from the first time; the canned answer
    // has the fourth of a batch gone again).
    graph.on("/v1.0/$batch", [mime_batch()]);
    let before = graph.seen().len();
    let ready = cache
        .ensure(backend.as_ref(), folder, store.messages(folder).unwrap())
        .await
        .unwrap();
    let asked: Vec<String> = graph.seen()[before..].to_vec();
    assert_eq!(asked, ["POST /v1.0/$batch"; 2]);
    assert_eq!(ready.len(), 38 + 19 + 2);
    assert!(ready.windows(2).all(|w| w[0].uid < w[1].uid));
}

/// A STORE over 25 messages goes as two `$batch`es (20 + 5). When the
/// first was carried out and the second is refused, the 20 changes Graph
/// made are reported as made: dropping them made the index part from
/// Graph, and a later sync changed flags no client had touched (imaptest
/// "Owned keyword changed").
#[tokio::test]
async fn a_flag_batch_that_fails_after_an_earlier_one_succeeded_keeps_the_earlier_results() {
    let graph = Hostile::start().await;
    let (_client, backend) = graph.mailbox();
    let done: Vec<Value> = (0..20)
        .map(|i| json!({"id": i.to_string(), "status": 200, "headers": {"Content-Type": "application/json"}, "body": {"id": format!("M{i}")}}))
        .collect();
    let refused = Canned::raw(
        400,
        "application/json",
        json!({"error": {"code": "BadRequest", "message": "no"}}).to_string(),
    );
    graph.on(
        "/v1.0/$batch",
        [Canned::json(json!({ "responses": done })), refused],
    );
    let updates: Vec<(RemoteMessageId, graphgate::backend::FlagUpdate)> = (0..25)
        .map(|i| {
            (
                RemoteMessageId::new(format!("M{i}")),
                graphgate::backend::FlagUpdate {
                    categories: Some(vec!["k".into()]),
                    ..Default::default()
                },
            )
        })
        .collect();
    let results = backend
        .update_flags_many(&updates)
        .await
        .expect("the first batch was carried out: per-message results, not one failure");
    assert_eq!(results.len(), 25);
    assert!(results[..20].iter().all(Result::is_ok), "{results:?}");
    assert!(results[20..].iter().all(Result::is_err), "{results:?}");
    assert_eq!(graph.seen(), ["POST /v1.0/$batch", "POST /v1.0/$batch"]);
}
