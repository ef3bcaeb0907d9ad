//! The simulator's Graph mail over HTTP with raw requests: the wire shapes
//! and answers Microsoft gives (not through graphgate's client, so that a
//! misreading shared by both sides cannot hide).

use base64::Engine;
use graphgate::sim::caller::Caller;
use graphgate::sim::{SimConfig, SimState};
use serde_json::{Value, json};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

struct Sim {
    url: String,
    state: SimState,
    http: reqwest::Client,
}

async fn start() -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = SimState::new(SimConfig {
        public_url: url.clone(),
        ..SimConfig::default()
    })
    .unwrap();
    tokio::spawn(graphgate::sim::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    Sim {
        url,
        state,
        http: reqwest::Client::new(),
    }
}

impl Sim {
    fn token(&self, user: Option<&str>, permissions: &[&str]) -> String {
        self.state
            .entra()
            .issue_access_token(Caller {
                app_id: graphgate::sim::tenant::DEMO_PUBLIC_CLIENT_ID.into(),
                user_id: user.map(str::to_string),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
            })
            .0
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("Prefer", "IdType=\"ImmutableId\"")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn send_mime(&self, token: &str, mime: &str) -> u16 {
        self.http
            .post(format!("{}/v1.0/me/sendMail", self.url))
            .bearer_auth(token)
            .header("Content-Type", "text/plain")
            .body(base64::engine::general_purpose::STANDARD.encode(mime))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn access_rules_and_error_shapes() {
    let sim = start().await;
    let app = sim.token(None, &["Mail.ReadWrite"]);
    let (status, body) = sim.get(&app, "/v1.0/me/mailFolders").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "/me request is only valid with delegated authentication flow."
    );
    let (status, body) = sim
        .get(&app, "/v1.0/users/carol@example.com/mailFolders")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("MailboxNotEnabledForRESTAPI"))
    );
    let alice = sim.token(Some(ALICE), &["Mail.ReadWrite"]);
    let (status, body) = sim
        .get(&alice, "/v1.0/users/bob@example.com/messages")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("ErrorAccessDenied"))
    );
    let (status, body) = sim.get(&alice, "/v1.0/me/messages?$select=bogus").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'bogus'"),
        "{body}"
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let (_, inbox) = sim.get(&alice, "/v1.0/me/mailFolders/inbox/messages").await;
    let id = inbox["value"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = sim
        .get(
            &alice,
            &format!("/v1.0/me/mailFolders/inbox/messages/{id}/$value"),
        )
        .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn folders_page_and_seeded_inbox_has_counts() {
    let sim = start().await;
    let alice = sim.token(Some(ALICE), &["Mail.ReadWrite"]);
    let (status, first) = sim.get(&alice, "/v1.0/me/mailFolders?$top=3").await;
    assert_eq!(status, 200);
    assert_eq!(first["value"].as_array().unwrap().len(), 3);
    let next = first["@odata.nextLink"].as_str().unwrap();
    let (_, second) = sim.get(&alice, next.trim_start_matches(&sim.url)).await;
    assert!(!second["value"].as_array().unwrap().is_empty());
    let (_, inbox) = sim.get(&alice, "/v1.0/me/mailFolders/inbox").await;
    assert_eq!(inbox["displayName"], "Inbox");
    // The root answers by its well-known name, as at Microsoft, and is the
    // parent of the top-level folders.
    let (status, root) = sim.get(&alice, "/v1.0/me/mailFolders/msgfolderroot").await;
    assert_eq!(status, 200, "{root}");
    assert_eq!(root["id"], inbox["parentFolderId"]);
    assert_eq!(root["displayName"], "Top of Information Store");
    assert!(root["childFolderCount"].as_u64().unwrap() >= 6, "{root}");
    // `$filter=displayName eq '…'` finds the folder; a filter the
    // simulator does not support is refused, never ignored (it answered
    // with the first folder).
    let (status, found) = sim
        .get(
            &alice,
            "/v1.0/me/mailFolders?$filter=displayName%20eq%20'Sent%20Items'",
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let found = found["value"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["displayName"], "Sent Items");
    let (status, refused) = sim
        .get(
            &alice,
            "/v1.0/me/mailFolders?$filter=startswith(displayName,'S')",
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(inbox["totalItemCount"], 4);
    assert_eq!(inbox["unreadItemCount"], 3);
    let (status, body) = sim
        .post(
            &alice,
            "/v1.0/me/mailFolders",
            json!({"displayName": "Inbox"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ErrorFolderExists"))
    );
}

#[tokio::test]
async fn send_mail_delivers_without_bcc_and_refuses_the_impossible() {
    let sim = start().await;
    let alice = sim.token(Some(ALICE), &["Mail.ReadWrite", "Mail.Send"]);
    let mime = "From: alice@example.com\r\nTo: someone@fabrikam.example\r\nBcc: bob@example.com\r\nSubject: secret copy\r\n\r\nbody\r\n";
    assert_eq!(sim.send_mime(&alice, mime).await, 202);
    let bob_inbox = sim.state.mail().messages(BOB, "inbox");
    let (_, subject, read, bytes) = bob_inbox.last().unwrap();
    assert_eq!((subject.as_str(), *read), ("secret copy", false));
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.to_ascii_lowercase().contains("bcc:"), "{text}");
    // The sender's copy keeps the Bcc header; the external copy is recorded.
    let sent = sim.state.mail().messages(ALICE, "sentitems");
    // (Re-rendered as Exchange does, the field may carry a display name.)
    let copy = String::from_utf8_lossy(&sent.last().unwrap().3).to_string();
    assert!(
        copy.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:") && l.contains("bob@example.com")),
        "{copy}"
    );
    let outbound = sim.state.mail().external_deliveries();
    assert_eq!(outbound[0].to, "someone@fabrikam.example");

    let no_rcpt = "From: alice@example.com\r\nSubject: nobody\r\n\r\nx\r\n";
    assert_eq!(sim.send_mime(&alice, no_rcpt).await, 400);
    let spoof = "From: bob@example.com\r\nTo: bob@example.com\r\nSubject: spoof\r\n\r\nx\r\n";
    assert_eq!(sim.send_mime(&alice, spoof).await, 403);
    // Unknown address in the tenant's domain: an NDR in the sender's Inbox.
    let ndr = "From: alice@example.com\r\nTo: nobody@example.com\r\nSubject: lost\r\n\r\nx\r\n";
    assert_eq!(sim.send_mime(&alice, ndr).await, 202);
    let inbox = sim.state.mail().messages(ALICE, "inbox");
    assert_eq!(inbox.last().unwrap().1, "Undeliverable: lost");
    // Bad base64.
    let r = sim
        .http
        .post(format!("{}/v1.0/me/sendMail", sim.url))
        .bearer_auth(&alice)
        .header("Content-Type", "text/plain")
        .body("!!!")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ErrorMimeContentInvalidBase64String");
}

#[tokio::test]
async fn delta_reports_changes_removals_and_expiry() {
    let sim = start().await;
    let alice = sim.token(Some(ALICE), &["Mail.ReadWrite"]);
    let first_path = "/v1.0/me/mailFolders/inbox/messages/delta?$select=subject,isRead";
    // Page through the first round with pages of 2.
    let mut ids = Vec::new();
    let mut url = first_path.to_string();
    let delta_link = loop {
        let r = sim
            .http
            .get(format!("{}{url}", sim.url))
            .bearer_auth(&alice)
            .header("Prefer", "odata.maxpagesize=2")
            .send()
            .await
            .unwrap();
        let page: Value = r.json().await.unwrap();
        assert!(page["value"].as_array().unwrap().len() <= 2);
        ids.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string()),
        );
        assert!(!(page["@odata.nextLink"].is_string() && page["@odata.deltaLink"].is_string()));
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.trim_start_matches(&sim.url).to_string(),
            None => break page["@odata.deltaLink"].as_str().unwrap().to_string(),
        }
    };
    assert_eq!(ids.len(), 4);
    // Nothing changed: an empty round.
    let (_, same) = sim
        .get(&alice, delta_link.trim_start_matches(&sim.url))
        .await;
    assert!(same["value"].as_array().unwrap().is_empty());
    // A flag change, a move out, and an arrival.
    let patch = sim
        .http
        .patch(format!("{}/v1.0/me/messages/{}", sim.url, ids[0]))
        .bearer_auth(&alice)
        .json(&json!({"isRead": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let (status, moved) = sim
        .post(
            &alice,
            &format!("/v1.0/me/messages/{}/move", ids[1]),
            json!({"destinationId": "archive"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_ne!(
        moved["id"], ids[1],
        "without ImmutableId a move changes the id"
    );
    sim.state
        .mail()
        .deliver(ALICE, "inbox", b"Subject: new\r\n\r\nhi\r\n".to_vec());
    let (_, changes) = sim
        .get(&alice, delta_link.trim_start_matches(&sim.url))
        .await;
    let values = changes["value"].as_array().unwrap();
    assert_eq!(values.len(), 3, "{changes}");
    assert!(
        values
            .iter()
            .any(|v| v["id"] == ids[1] && v["@removed"]["reason"] == "deleted")
    );
    assert!(values.iter().any(|v| v["subject"] == "new"));
    // The same round a page at a time: the changes in the order they
    // happened, removals among them, each once.
    let mut paged = Vec::new();
    let mut url = delta_link.trim_start_matches(&sim.url).to_string();
    loop {
        let page: Value = sim
            .http
            .get(format!("{}{url}", sim.url))
            .bearer_auth(&alice)
            .header("Prefer", "odata.maxpagesize=1")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        paged.extend(page["value"].as_array().unwrap().iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.trim_start_matches(&sim.url).to_string(),
            None => break,
        }
    }
    assert_eq!(paged.len(), 3, "{paged:?}");
    assert_eq!(paged[0]["id"], ids[0]);
    assert_eq!(paged[0]["isRead"], true);
    assert_eq!(paged[1]["id"], ids[1]);
    assert_eq!(paged[1]["@removed"]["reason"], "deleted");
    assert_eq!(paged[2]["subject"], "new");
    // $select renders what it names (and the etag and id), nothing else.
    let mut keys: Vec<&str> = paged[2]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["@odata.etag", "id", "isRead", "subject"]);
    // Expired tokens: 410 Gone.
    sim.state.mail().expire_delta_tokens();
    let (status, gone) = sim
        .get(&alice, delta_link.trim_start_matches(&sim.url))
        .await;
    assert_eq!(status, 410, "{gone}");
}

#[tokio::test]
async fn mime_creates_drafts_json_with_0e07_creates_non_drafts() {
    let sim = start().await;
    let alice = sim.token(Some(ALICE), &["Mail.ReadWrite"]);
    let r = sim
        .http
        .post(format!("{}/v1.0/me/messages", sim.url))
        .bearer_auth(&alice)
        .header("Content-Type", "text/plain")
        .body(base64::engine::general_purpose::STANDARD.encode("Subject: d\r\n\r\nx\r\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let draft: Value = r.json().await.unwrap();
    assert_eq!(draft["isDraft"], true);
    let (_, drafts) = sim.get(&alice, "/v1.0/me/mailFolders/drafts").await;
    assert_eq!(draft["parentFolderId"], drafts["id"]);
    let mut item = draft.clone();
    item["singleValueExtendedProperties"] = json!([{"id": "Integer 0x0E07", "value": "1"}]);
    let (status, created) = sim
        .post(&alice, "/v1.0/me/mailFolders/inbox/messages", item)
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["isDraft"], false);
    let id = created["id"].as_str().unwrap();
    let (_, with_size) = sim
        .get(&alice, &format!("/v1.0/me/messages/{id}?$select=id&$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')"))
        .await;
    assert_eq!(
        with_size["singleValueExtendedProperties"][0]["id"],
        "Integer 0xe08"
    );
}
