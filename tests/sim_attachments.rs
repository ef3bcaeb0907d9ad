//! `hasAttachments` leaves inline attachments out (issue 16, "Simulator";
//! graph-facts.md "`hasAttachments` excludes inline attachments"): false
//! for a message whose only attachments are inline images, true when one
//! is a real attachment, and an inline attachment added to a draft through
//! Graph does not make it true.

use serde_json::{Value, json};

mod support;

const INLINE_ONLY: &str = "From: a@external.example\r\nTo: alice@example.com\r\n\
Subject: inline only\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/related; boundary=\"r\"\r\n\r\n\
--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>logo <img src=\"cid:logo@x\"></p>\r\n\
--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--r--\r\n";

const ONE_ATTACHED: &str = "From: a@external.example\r\nTo: alice@example.com\r\n\
Subject: one attached\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n\
--m\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n\
--m--\r\n";

async fn has_attachments(sim: &str, token: &str, subject: &str) -> bool {
    let list: Value = reqwest::Client::new()
        .get(format!(
            "{sim}/v1.0/me/messages?$select=subject,hasAttachments&$top=100"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == subject)
        .unwrap_or_else(|| panic!("no {subject}: {list}"))["hasAttachments"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn inline_attachments_do_not_count_for_has_attachments() {
    let sim = support::sim(false);
    let http = reqwest::Client::new();
    for mime in [INLINE_ONLY, ONE_ATTACHED] {
        let r = http
            .post(format!(
                "{}/_sim/mail/deliver?to=alice@example.com",
                sim.url
            ))
            .body(mime)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let token = support::token(&sim.url, "alice@example.com").await;
    assert!(!has_attachments(&sim.url, &token, "inline only").await);
    assert!(has_attachments(&sim.url, &token, "one attached").await);

    // A draft with an inline attachment added through Graph.
    let draft: Value = http
        .post(format!("{}/v1.0/me/messages", sim.url))
        .bearer_auth(&token)
        .json(&json!({"subject": "draft inline",
                      "body": {"contentType": "html", "content": "<img src=\"cid:i@x\">"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = draft["id"].as_str().unwrap();
    let r = http
        .post(format!("{}/v1.0/me/messages/{id}/attachments", sim.url))
        .bearer_auth(&token)
        .json(
            &json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "i.png",
                      "contentType": "image/png", "isInline": true, "contentId": "i@x",
                      "contentBytes": "iVBORw0KGgo="}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert!(!has_attachments(&sim.url, &token, "draft inline").await);
}
