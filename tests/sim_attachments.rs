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

const FORWARDED: &str = "From: a@external.example\r\nTo: alice@example.com\r\n\
Subject: forwarded item\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"f\"\r\n\r\n\
--f\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee the original\r\n\
--f\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n\
From: b@external.example\r\nTo: a@external.example\r\nSubject: the original\r\n\r\noriginal body\r\n\
--f--\r\n";

/// An attached message is an `itemAttachment` whose `item` comes only with
/// `$expand=microsoft.graph.itemattachment/item`; an inline image is listed
/// with `isInline` true.
#[tokio::test]
async fn attached_messages_are_item_attachments_expanded_on_request() {
    let sim = support::sim(false);
    let http = reqwest::Client::new();
    for mime in [FORWARDED, INLINE_ONLY] {
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
    let list: Value = http
        .get(format!(
            "{}/v1.0/me/messages?$select=subject&$top=100",
            sim.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_of = |subject: &str| {
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["subject"] == subject)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let attachments = |id: String, expand: bool| {
        let mut url = format!("{}/v1.0/me/messages/{id}/attachments", sim.url);
        if expand {
            url.push_str("?$expand=microsoft.graph.itemattachment/item");
        }
        let request = http.get(url).bearer_auth(&token);
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["value"].as_array().unwrap().clone()
        }
    };
    let plain = attachments(id_of("forwarded item"), false).await;
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!(plain[0]["@odata.type"], "#microsoft.graph.itemAttachment");
    assert!(plain[0].get("item").is_none(), "{plain:?}");
    assert!(plain[0].get("contentBytes").is_none(), "{plain:?}");
    let expanded = attachments(id_of("forwarded item"), true).await;
    assert_eq!(
        expanded[0]["item"]["subject"], "the original",
        "{expanded:?}"
    );
    let inline = attachments(id_of("inline only"), false).await;
    assert_eq!(inline[0]["isInline"], true, "{inline:?}");
}
