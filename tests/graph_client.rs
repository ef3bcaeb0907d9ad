//! The production Graph client (`graphgate::graph`) over real sockets on
//! 127.0.0.1:0: first against a scripted stub (headers, retries, limits,
//! batching, paging, upload sessions), then through `MailBackend` against
//! the simulator (`graphgate::sim`).

#[path = "graph_client/stub.rs"]
mod stub;

#[path = "graph_client/against_sim.rs"]
mod against_sim;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use graphgate::auth::{AccessToken, AuthError, TokenSource};
use graphgate::graph::{
    DeltaChange, FlagStatus, GraphClient, GraphConfig, GraphError, GraphErrorKind, GraphMailbox,
    Mailbox, OutgoingAttachment, RemoteFolderId, RemoteMessageId, RetryPolicy, WellKnownFolder,
};
use graphgate::secret::Secret;

/// Hands out `first` until invalidated, then `fresh`.
struct ScriptedTokens {
    invalidated: AtomicUsize,
    first: &'static str,
}

impl TokenSource for ScriptedTokens {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        let token = if self.invalidated.load(Ordering::SeqCst) == 0 {
            self.first
        } else {
            "fresh"
        };
        Box::pin(async move {
            Ok(AccessToken {
                token: Secret::new(token.to_string()),
                expires_at: SystemTime::now() + Duration::from_secs(3600),
            })
        })
    }

    fn invalidate(&self, _token: &AccessToken) {
        self.invalidated.fetch_add(1, Ordering::SeqCst);
    }
}

fn tokens(first: &'static str) -> Arc<ScriptedTokens> {
    Arc::new(ScriptedTokens {
        invalidated: AtomicUsize::new(0),
        first,
    })
}

fn config(base: &str) -> GraphConfig {
    GraphConfig {
        base_url: base.to_string(),
        retry: RetryPolicy {
            max_attempts: 4,
            max_retry_after_s: 2,
            max_total_wait_s: 10,
            base_backoff_ms: 10,
        },
        ..GraphConfig::default()
    }
}

fn me(base: &str) -> (GraphClient, Arc<GraphMailbox>, Arc<ScriptedTokens>) {
    let client = GraphClient::new(config(base)).unwrap();
    let source = tokens("fresh");
    let mailbox = Arc::new(client.mailbox(Mailbox::Me, source.clone()));
    (client, mailbox, source)
}

fn id(s: &str) -> RemoteMessageId {
    RemoteMessageId::new(s)
}

#[tokio::test]
async fn every_request_carries_graph_headers() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let mime = mailbox.fetch_mime(&id("plain")).await.unwrap();
    assert_eq!(&mime[..], b"Subject: plain\r\n\r\nbody of plain");
    let seen = stub.seen.lock().unwrap();
    let headers = seen.headers.last().unwrap();
    assert_eq!(headers["authorization"], "Bearer fresh");
    assert_eq!(headers["prefer"], "IdType=\"ImmutableId\"");
    let request_id = headers["client-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(request_id).is_ok());
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("graphgate/")
    );
}

#[tokio::test]
async fn folders_are_walked_with_paging_children_and_well_known_names() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let folders = mailbox.list_folders().await.unwrap();
    let names: Vec<&str> = folders.iter().map(|f| f.display_name.as_str()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    for name in ["Inbox", "Sent Items", "Archive", "X", "Child"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let inbox = folders.iter().find(|f| f.id.as_str() == "F-inbox").unwrap();
    assert_eq!(inbox.well_known, Some(WellKnownFolder::Inbox));
    let child = folders.iter().find(|f| f.id.as_str() == "F-child").unwrap();
    assert_eq!(child.parent_id, Some(RemoteFolderId::new("F-inbox")));
    assert_eq!(child.well_known, None);
    let archive = folders
        .iter()
        .find(|f| f.id.as_str() == "F-archive")
        .unwrap();
    assert_eq!(archive.well_known, Some(WellKnownFolder::Archive));
    // The six well-known names cost one $batch.
    assert_eq!(stub.count("POST /v1.0/$batch"), 1);
}

#[tokio::test]
async fn delta_pages_then_increments_then_resets() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let inbox = RemoteFolderId::new("F-inbox");
    let first = mailbox.sync_messages(&inbox, None).await.unwrap();
    assert_eq!(first.changes.len(), 3);
    let DeltaChange::Upsert(m1) = &first.changes[0] else {
        panic!("{:?}", first.changes)
    };
    assert_eq!(m1.flag, FlagStatus::Flagged);
    assert!(m1.received.is_some());
    assert!(first.delta_link.as_str().contains("deltatoken=t1"));

    let next = mailbox
        .sync_messages(&inbox, Some(&first.delta_link))
        .await
        .unwrap();
    assert_eq!(next.changes[0], DeltaChange::Removed(id("M2")));
    // M1 came with only its changed field: completed through $batch.
    assert!(
        matches!(&next.changes[1], DeltaChange::Upsert(m) if m.is_read && m.subject.as_deref() == Some("full")),
        "{:?}",
        next.changes
    );
    assert!(next.delta_link.as_str().contains("deltatoken=t2"));

    let expired = graphgate::graph::DeltaLink::new(format!(
        "{}/v1.0/me/mailFolders/F-inbox/messages/delta?$deltatoken=expired",
        stub.base
    ));
    let err = mailbox
        .sync_messages(&inbox, Some(&expired))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::DeltaReset), "{err:?}");
    let again = mailbox.sync_messages(&inbox, None).await.unwrap();
    assert_eq!(again.changes.len(), 3);
}

#[tokio::test]
async fn links_outside_the_base_url_are_refused() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let foreign = graphgate::graph::DeltaLink::new("https://attacker.example/v1.0/me/x");
    let err = mailbox
        .sync_messages(&RemoteFolderId::new("F-inbox"), Some(&foreign))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Malformed(_)), "{err:?}");
    assert_eq!(stub.seen.lock().unwrap().requests.len(), 0);
}

#[tokio::test]
async fn batch_fetches_45_mimes_in_groups_of_20_and_retries_inner_429() {
    let stub = stub::start().await;
    let (client, mailbox, _) = me(&stub.base);
    let ids: Vec<RemoteMessageId> = (0..45).map(|i| id(&format!("m{i}"))).collect();
    let results = mailbox.fetch_mimes(&ids).await.unwrap();
    assert_eq!(results.len(), 45);
    for (i, (got_id, mime)) in results.iter().enumerate() {
        assert_eq!(got_id, &ids[i]);
        let mime = mime.as_ref().unwrap();
        assert_eq!(
            &mime[..],
            format!("Subject: m{i}\r\n\r\nbody of m{i}").as_bytes()
        );
    }
    let sizes = stub.seen.lock().unwrap().batch_sizes.clone();
    // First the sizes (`Integer 0x0E08`, src/graph/bodies.rs), 20 at a
    // time; then the bodies, small enough to go 20 to a batch.
    assert_eq!(&sizes[..3], &[20, 20, 5]);
    let mut bodies = sizes[3..6].to_vec();
    bodies.sort();
    assert_eq!(bodies, [5, 20, 20]);
    // m3, m10, m17, m24, m31, m38 were throttled once and sent again.
    assert_eq!(sizes[6..].iter().sum::<usize>(), 6);
    let counters = client.counters();
    assert_eq!(counters.throttled, 6);
    assert_eq!(counters.batch_inner_requests, 45 + 51);
}

#[tokio::test]
async fn sizes_come_from_the_0e08_property_in_batches() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let ids: Vec<RemoteMessageId> = (0..25).map(|i| id(&format!("m{i}"))).collect();
    let sizes = mailbox.message_sizes(&ids).await.unwrap();
    for (i, (_, size)) in sizes.iter().enumerate() {
        assert_eq!(*size.as_ref().unwrap(), 1000 + i as u64);
    }
    assert_eq!(stub.count("POST /v1.0/$batch"), 2);
}

#[tokio::test]
async fn throttling_honours_retry_after_then_succeeds() {
    let stub = stub::start().await;
    let (client, mailbox, _) = me(&stub.base);
    let mime = mailbox.fetch_mime(&id("throttled")).await.unwrap();
    assert!(mime.starts_with(b"Subject: throttled"));
    let c = client.counters();
    assert_eq!(c.throttled, 1);
    assert_eq!(c.retry_wait, Duration::from_secs(1));
    assert_eq!(c.statuses.get(&429), Some(&1));
    assert_eq!(c.statuses.get(&200), Some(&1));
    assert_eq!(c.requests.get("GET messages/{id}/$value"), Some(&2));
}

#[tokio::test]
async fn throttling_gives_up_after_max_attempts_as_transient() {
    let stub = stub::start().await;
    let mut cfg = config(&stub.base);
    cfg.retry.max_attempts = 2;
    let client = GraphClient::new(cfg).unwrap();
    let mailbox = client.mailbox(Mailbox::Me, tokens("fresh"));
    let err = mailbox
        .fetch_mime(&id("always-throttled"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(GraphErrorKind::Throttled));
    assert!(err.is_transient());
    assert_eq!(stub.count("GET /v1.0/me/messages/always-throttled"), 2);
}

#[tokio::test]
async fn service_unavailable_is_retried_for_gets() {
    let stub = stub::start().await;
    let (client, mailbox, _) = me(&stub.base);
    let mime = mailbox.fetch_mime(&id("unavailable")).await.unwrap();
    assert!(mime.starts_with(b"Subject: unavailable"));
    assert_eq!(client.counters().statuses.get(&503), Some(&2));
    assert_eq!(client.counters().retries, 2);
}

#[tokio::test]
async fn expired_token_is_invalidated_and_retried_once() {
    let stub = stub::start().await;
    let client = GraphClient::new(config(&stub.base)).unwrap();
    let source = tokens("stale");
    let mailbox = client.mailbox(Mailbox::Me, source.clone());
    let mime = mailbox.fetch_mime(&id("auth")).await.unwrap();
    assert_eq!(&mime[..], b"Subject: ok\r\n\r\nok");
    assert_eq!(source.invalidated.load(Ordering::SeqCst), 1);
    assert_eq!(client.counters().statuses.get(&401), Some(&1));
}

#[tokio::test]
async fn never_more_than_four_requests_in_flight_per_mailbox() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let ids: Vec<RemoteMessageId> = (0..30).map(|i| id(&format!("slow{i}"))).collect();
    let results = futures::future::join_all(ids.iter().map(|i| mailbox.fetch_mime(i))).await;
    assert!(results.iter().all(Result::is_ok));
    let max = stub.seen.lock().unwrap().max_in_flight;
    assert!((1..=4).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn connection_resets_are_retried_for_gets_only() {
    let (url, accepted) = stub::start_resetting(1).await;
    let (_client, mailbox, _) = me(&url);
    let mime = mailbox.fetch_mime(&id("x")).await.unwrap();
    assert_eq!(&mime[..], b"Subject: after reset\r\n\r\nok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // sendMail is not sent twice: the first attempt may have been delivered.
    let (url, accepted) = stub::start_resetting(1).await;
    let (client, mailbox, _) = me(&url);
    let err = mailbox
        .send_mime(Bytes::from_static(b"To: a@example.com\r\n\r\nhi"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Transport(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(client.counters().requests.get("POST sendMail"), Some(&1));
}

#[tokio::test]
async fn errors_are_classified_with_remedies() {
    let stub = stub::start().await;
    let client = GraphClient::new(config(&stub.base)).unwrap();
    let shared = client.mailbox(Mailbox::User("onprem@example.com".into()), tokens("fresh"));
    let err = shared.fetch_mime(&id("x")).await.unwrap_err();
    assert_eq!(err.kind(), Some(GraphErrorKind::MailboxNotEnabled));
    assert_eq!(err.code(), Some("MailboxNotEnabledForRESTAPI"));
    assert!(err.remedy().contains("on-premises"));
    assert!(!err.is_transient());
    assert_eq!(
        stub.count("GET /v1.0/users/onprem@example.com/messages/x/$value"),
        1
    );

    let (_c, mailbox, _) = me(&stub.base);
    let err = mailbox.fetch_mime(&id("gone")).await.unwrap_err();
    assert_eq!(err.kind(), Some(GraphErrorKind::NotFound));
}

#[tokio::test]
async fn send_mime_posts_base64() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let mime = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello".to_vec();
    mailbox
        .send_mime(Bytes::from(mime.clone()), true)
        .await
        .unwrap();
    assert_eq!(stub.seen.lock().unwrap().sent_mime, vec![mime]);
    let too_big = Bytes::from(vec![b'a'; graphgate::graph::send::MAX_DIRECT_MIME + 1]);
    let err = mailbox.send_mime(too_big, true).await.unwrap_err();
    assert!(matches!(err, GraphError::TooLarge(_)));
}

#[tokio::test]
async fn large_send_streams_attachments_through_an_upload_session() {
    use tokio::io::AsyncReadExt;
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let big: u64 = 7 * 1024 * 1024 + 123;
    let attachments = vec![
        OutgoingAttachment {
            name: "big.bin".into(),
            content_type: "application/octet-stream".into(),
            size: big,
            content_id: None,
            is_inline: false,
            content: Box::new(tokio::io::repeat(b'x').take(big)),
        },
        OutgoingAttachment {
            name: "small.txt".into(),
            content_type: "text/plain".into(),
            size: 5,
            content_id: None,
            is_inline: false,
            content: Box::new(&b"hello"[..]),
        },
    ];
    let draft = Bytes::from_static(b"To: b@example.com\r\nSubject: big\r\n\r\nsee attached");
    mailbox.send_large(draft, attachments).await.unwrap();
    let seen = stub.seen.lock().unwrap();
    assert_eq!(seen.uploaded as u64, big);
    assert_eq!(seen.chunks.len(), 3);
    for (i, (range, len, had_auth)) in seen.chunks.iter().enumerate() {
        assert!(!had_auth, "upload PUT must not carry Authorization");
        assert!(*len <= 4 * 1024 * 1024);
        if i + 1 < seen.chunks.len() {
            assert_eq!(len % (320 * 1024), 0);
        }
        assert!(range.starts_with("bytes ") && range.ends_with(&format!("/{big}")));
    }
    assert_eq!(seen.chunks[1].0, format!("bytes 3276800-6553599/{big}"));
    let order: Vec<&String> = seen
        .requests
        .iter()
        .filter(|r| r.starts_with("POST"))
        .collect();
    assert_eq!(
        order.first().map(|s| s.as_str()),
        Some("POST /v1.0/me/messages")
    );
    assert_eq!(
        order.last().map(|s| s.as_str()),
        Some("POST /v1.0/me/messages/D1/send")
    );
    assert!(
        order
            .iter()
            .any(|r| r.as_str() == "POST /v1.0/me/messages/D1/attachments")
    );
}

#[tokio::test]
async fn append_creates_the_non_draft_item_in_one_request_with_its_flags() {
    let stub = stub::start().await;
    let (_client, mailbox, _) = me(&stub.base);
    let mime =
        Bytes::from_static(b"From: a@example.com\r\nTo: b@example.com\r\nSubject: draft\r\n\r\nhi");
    let options = graphgate::graph::AppendOptions {
        is_read: true,
        received: None,
        flags: graphgate::graph::FlagUpdate {
            flag: Some(graphgate::graph::FlagStatus::Flagged),
            categories: Some(vec!["Blue".into()]),
            answered: Some(true),
            ..Default::default()
        },
    };
    let m = mailbox
        .append_message(&RemoteFolderId::new("F-inbox"), mime, &options)
        .await
        .unwrap();
    assert!(!m.is_draft && m.is_read);
    assert_eq!(m.folder_id, Some(RemoteFolderId::new("F-inbox")));
    let seen = stub.seen.lock().unwrap();
    let (folder, body) = &seen.created_in_folder[0];
    assert_eq!(folder, "F-inbox");
    for server_field in [
        "id",
        "@odata.etag",
        "@odata.context",
        "changeKey",
        "isDraft",
    ] {
        assert!(body.get(server_field).is_none(), "{server_field} sent back");
    }
    assert_eq!(body["subject"], "draft");
    assert_eq!(
        body["singleValueExtendedProperties"][0]["id"],
        "Integer 0x0E07"
    );
    // The other flags ride on the same request.
    assert_eq!(body["flag"]["flagStatus"], "flagged");
    assert_eq!(body["categories"], serde_json::json!(["Blue"]));
    let props = body["singleValueExtendedProperties"].as_array().unwrap();
    assert!(
        props.contains(&serde_json::json!({"id": "Integer 0x1081", "value": "102"})),
        "{props:?}"
    );
    assert!(body.get("isRead").is_some_and(|r| r == true));
    // One request: no draft made, none deleted (graph/append.rs).
    assert!(
        !seen
            .requests
            .iter()
            .any(|r| r == "POST /v1.0/me/messages" || r.contains("permanentDelete")),
        "{:?}",
        seen.requests
    );
}

#[tokio::test]
async fn flag_patch_is_retried_after_503_but_a_create_is_not() {
    let stub = stub::start().await;
    let (client, mailbox, _) = me(&stub.base);
    let update = graphgate::graph::FlagUpdate {
        is_read: Some(true),
        flag: Some(FlagStatus::Flagged),
        categories: Some(vec!["Blue".into()]),
        answered: Some(true),
        forwarded: None,
    };
    mailbox.update_flags(&id("M1"), &update).await.unwrap();
    {
        let seen = stub.seen.lock().unwrap();
        let (patched, body) = &seen.patches[0];
        assert_eq!(patched, "M1");
        assert_eq!(body["isRead"], true);
        assert_eq!(body["flag"]["flagStatus"], "flagged");
        assert_eq!(body["categories"][0], "Blue");
        assert_eq!(body["singleValueExtendedProperties"][0]["value"], "102");
    }
    assert_eq!(
        client.counters().requests.get("PATCH messages/{id}"),
        Some(&2)
    );

    // A 503 may come after the folder was created: not sent again.
    let err = mailbox.create_folder(None, "New").await.unwrap_err();
    assert_eq!(err.kind(), Some(GraphErrorKind::Unavailable));
    assert!(err.is_transient());
    assert_eq!(stub.count("POST /v1.0/me/mailFolders"), 1);
}

#[tokio::test]
async fn handles_on_one_mailbox_share_its_four_slots() {
    let stub = stub::start().await;
    let client = GraphClient::new(config(&stub.base)).unwrap();
    // One mailbox reached as `/me` of its account and as `/users/{upn}`
    // (a bare `/me` names no mailbox, so it shares nothing with other
    // accounts' `/me`: GraphClient::own_mailbox says whose it is).
    let first = client.own_mailbox("alice@contoso.com", tokens("fresh"));
    let second = client.mailbox(Mailbox::User("Alice@Contoso.com".into()), tokens("fresh"));
    let ids: Vec<RemoteMessageId> = (0..16).map(|i| id(&format!("slow{i}"))).collect();
    let (a, b) = tokio::join!(
        futures::future::join_all(ids.iter().map(|i| first.fetch_mime(i))),
        futures::future::join_all(ids.iter().map(|i| second.fetch_mime(i)))
    );
    assert!(a.iter().chain(b.iter()).all(Result::is_ok));
    let max = stub.seen.lock().unwrap().max_in_flight;
    assert!((1..=4).contains(&max), "max in flight {max}");
}

#[test]
fn default_config_targets_microsoft() {
    let c = GraphConfig::default();
    assert_eq!(c.base_url, "https://graph.microsoft.com");
    assert_eq!(c.version, "v1.0");
    assert_eq!(c.concurrency_per_mailbox, 4);
    let parsed: GraphConfig =
        serde_json::from_str(r#"{"base_url":"http://127.0.0.1:1","retry":{"max_attempts":2}}"#)
            .unwrap();
    assert_eq!(parsed.retry.max_attempts, 2);
    assert_eq!(
        parsed.retry.base_backoff_ms,
        RetryPolicy::default().base_backoff_ms
    );
    assert_eq!(parsed.version, "v1.0");
}
