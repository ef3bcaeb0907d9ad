//! APPEND that keeps the message (issue 17), over real sockets against the
//! demo: Python's imaplib APPENDs, the simulated Graph is read back over
//! HTTP as any Graph client would read the item.

use serde_json::Value;

mod support;

use support::{demo, py_with, token};

/// A reply from a mailing list, shaped like real mail: a Received chain,
/// list fields, a sender distinct from From, Reply-To, threading fields, a
/// non-UTC Date and custom X- fields.
const REPLY: &str = "Return-Path: <list-bounces@lists.example.org>\r
Received: from mx.example.org (mx.example.org [192.0.2.1])\r
\tby mail.example.com with ESMTPS id 4Q; Mon, 7 Dec 2026 10:00:02 +0100\r
Received: from ann.example.org by mx.example.org; Mon, 7 Dec 2026 10:00:01 +0100\r
From: \"Ann Example\" <ann@example.org>\r
Sender: Dev List <list-bounces@lists.example.org>\r
Reply-To: dev@lists.example.org\r
To: Dev List <dev@lists.example.org>\r
Cc: bob@example.com\r
Subject: Re: release plans\r
Date: Mon, 7 Dec 2026 10:00:00 +0100\r
Message-ID: <r1.ann@example.org>\r
In-Reply-To: <q1.bob@example.com>\r
References: <p1.carol@example.net>\r
 <q1.bob@example.com>\r
List-Id: Developers <dev.lists.example.org>\r
Precedence: list\r
X-TUID: Xy7pQ3kLm9Ab\r
X-Mailer: Example Mailer 1.0\r
MIME-Version: 1.0\r
Content-Type: text/plain; charset=utf-8\r
\r
Sounds good to me.\r
";

/// APPEND `message` to INBOX as alice through imaplib.
fn append(imap: &str, message: &str) {
    py_with(
        r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(':', 1)
c = imaplib.IMAP4(host, int(port))
c.login('alice@example.com', 'alice')
typ, data = c.append('INBOX', '(\\Seen)', None, sys.argv[2].encode())
assert typ == 'OK', data
assert b'APPENDUID' in data[0], data
c.logout()
"#,
        &[imap, message],
    );
}

async fn stats(sim: &str) -> Value {
    reqwest::get(format!("{sim}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Requests per route between two snapshots, only the routes that moved.
fn routes_between(before: &Value, after: &Value) -> Vec<(String, u64)> {
    let empty = serde_json::Map::new();
    let b = before["by_route"].as_object().unwrap_or(&empty);
    after["by_route"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|(route, n)| {
            let n = n.as_u64()? - b.get(route).and_then(Value::as_u64).unwrap_or(0);
            (n > 0).then(|| (route.clone(), n))
        })
        .collect()
}

#[tokio::test]
async fn append_creates_one_non_draft_item_with_the_headers_graph_can_hold() {
    let d = demo();
    let before = stats(&d.sim).await;
    append(&d.imap, REPLY);
    let after = stats(&d.sim).await;
    let moved = routes_between(&before, &after);
    let creates: Vec<&(String, u64)> = moved
        .iter()
        .filter(|(r, _)| {
            (r.starts_with("POST") || r.starts_with("DELETE")) && !r.contains("$batch")
        })
        .collect();
    // The `$batch` is the folder sync's (GETs of the new item's extended
    // properties), not part of the creation.
    let inner: Vec<(String, u64)> = {
        let b = before["batch_inner_by_route"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        after["batch_inner_by_route"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(r, n)| {
                let n = n.as_u64()? - b.get(&r).and_then(Value::as_u64).unwrap_or(0);
                (n > 0).then_some((r, n))
            })
            .collect()
    };
    assert!(inner.iter().all(|(r, _)| r.starts_with("GET")), "{inner:?}");
    eprintln!(
        "Graph requests for one APPEND (creation + the folder's sync): {moved:?}, batched: {inner:?}"
    );
    // One request makes the item: no draft, no re-creation, no delete.
    assert_eq!(
        creates.len(),
        1,
        "write requests for one APPEND: {creates:?} (all: {moved:?})"
    );
    assert!(creates[0].0.contains("mailFolders"), "{creates:?}");
    assert_eq!(creates[0].1, 1, "{creates:?}");

    let token = token(&d.sim, "alice@example.com").await;
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!(
            "{}/v1.0/me/mailFolders/inbox/messages?$top=100&$filter=internetMessageId eq '<r1.ann@example.org>'",
            d.sim
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = list["value"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|m| m["internetMessageId"] == "<r1.ann@example.org>")
        })
        .unwrap_or_else(|| panic!("no item with the Message-ID: {list}"))
        .clone();
    assert_eq!(item["isDraft"], false, "{item}");
    assert_eq!(item["isRead"], true, "{item}");
    assert_eq!(item["sentDateTime"], "2026-12-07T09:00:00Z", "{item}");
    assert_eq!(
        item["from"]["emailAddress"]["name"], "Ann Example",
        "{item}"
    );
    let id = item["id"].as_str().unwrap();
    let mime = http
        .get(format!("{}/v1.0/me/messages/{id}/$value", d.sim))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let head = mime
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    for field in [
        "From: \"Ann Example\" <ann@example.org>",
        "Sender: \"Dev List\" <list-bounces@lists.example.org>",
        "Reply-To: dev@lists.example.org",
        "Date: Mon, 07 Dec 2026 09:00:00 +0000",
        "Message-ID: <r1.ann@example.org>",
        "In-Reply-To: <q1.bob@example.com>",
        "References: <p1.carol@example.net> <q1.bob@example.com>",
        "X-TUID: Xy7pQ3kLm9Ab",
        "X-Mailer: Example Mailer 1.0",
    ] {
        assert!(
            head.contains(field),
            "{field:?} missing from Graph's MIME:\n{head}"
        );
    }
    // The rest of the header block is in the transport headers property.
    let expanded: Value = http
        .get(format!(
            "{}/v1.0/me/messages/{id}?$expand=singleValueExtendedProperties($filter=id eq 'String 0x007D')",
            d.sim
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let transport = expanded["singleValueExtendedProperties"]
        .as_array()
        .and_then(|p| p.first())
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no transport headers: {expanded}"))
        .to_string();
    for field in [
        "Return-Path:",
        "Received: from mx.example.org",
        "List-Id:",
        "Precedence: list",
    ] {
        assert!(
            transport.contains(field),
            "{field:?} not in 0x007D: {transport}"
        );
    }
}
