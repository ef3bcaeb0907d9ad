//! A sent draft's Sent Items copy and immutable ids (issue 16,
//! "Simulator"): with `Prefer: IdType="ImmutableId"` the copy keeps the
//! draft's id (an immutable id survives moves, and sending moves the draft
//! to Sent Items: learn.microsoft.com/graph/outlook-immutable-id;
//! graph-facts.md "Sent copy and immutable ids"); without it the copy has
//! a new id, as any moved item does.

use serde_json::{Value, json};

mod support;

const IMMUTABLE: &str = "IdType=\"ImmutableId\"";

async fn send_a_draft(sim: &support::Sim, token: &str, immutable: bool) -> (String, Vec<String>) {
    let http = reqwest::Client::new();
    let with = |r: reqwest::RequestBuilder| {
        if immutable {
            r.header("Prefer", IMMUTABLE)
        } else {
            r
        }
    };
    let subject = format!("draft immutable={immutable}");
    let r = with(http.post(format!("{}/v1.0/me/messages", sim.url)))
        .bearer_auth(token)
        .json(&json!({
            "subject": subject,
            "body": {"contentType": "text", "content": "hello"},
            "toRecipients": [{"emailAddress": {"address": "bob@example.com"}}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let draft: Value = r.json().await.unwrap();
    assert_eq!(draft["isDraft"], true, "{draft}");
    let id = draft["id"].as_str().unwrap().to_string();
    let r = with(http.post(format!("{}/v1.0/me/messages/{id}/send", sim.url)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let sent: Value = with(http.get(format!(
        "{}/v1.0/me/mailFolders/sentitems/messages?$select=subject&$top=100",
        sim.url
    )))
    .bearer_auth(token)
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let copies = sent["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["subject"] == subject.as_str())
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    (id, copies)
}

/// A delegated token of alice with Mail.ReadWrite and Mail.Send.
async fn token(sim: &str) -> String {
    use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
    let body: Value = reqwest::Client::new()
        .post(format!("{sim}/{DEMO_TENANT_ID}/oauth2/v2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(support::form(&[
            ("grant_type", "password"),
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("username", "alice@example.com"),
            ("password", "alice"),
            (
                "scope",
                "https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send",
            ),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string()
}

#[tokio::test]
async fn a_sent_drafts_copy_keeps_its_id_only_under_immutable_ids() {
    let sim = support::sim(false);
    let token = token(&sim.url).await;
    let (draft, copies) = send_a_draft(&sim, &token, true).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0], draft);
    // Found by the draft's id, in Sent Items, no longer a draft.
    let r = reqwest::Client::new()
        .get(format!("{}/v1.0/me/messages/{draft}", sim.url))
        .header("Prefer", IMMUTABLE)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let copy: Value = r.json().await.unwrap();
    assert_eq!(copy["isDraft"], false, "{copy}");
    let sentitems: Value = reqwest::Client::new()
        .get(format!("{}/v1.0/me/mailFolders/sentitems", sim.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(copy["parentFolderId"], sentitems["id"], "{copy}");

    let (draft, copies) = send_a_draft(&sim, &token, false).await;
    assert_eq!(copies.len(), 1);
    assert_ne!(copies[0], draft);
}
