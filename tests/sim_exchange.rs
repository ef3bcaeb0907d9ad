//! The simulator's Exchange fidelity over raw HTTP: MIME re-rendered on
//! store (`SimConfig::exchange_mime`), the folder hierarchy delta, and the
//! list queries a mail client needs (`$orderby`, `$filter`, `$count`).
//! Raw requests, not graphgate's client, so that a misreading shared by
//! both sides cannot hide.

use base64::Engine;
use graphgate::sim::caller::Caller;
use graphgate::sim::{SimConfig, SimState};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};

mod support;

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

struct Sim {
    url: String,
    state: SimState,
    http: reqwest::Client,
}

async fn start(exchange_mime: bool) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = SimState::new(SimConfig {
        public_url: url.clone(),
        exchange_mime,
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
    fn token(&self, user: &str) -> String {
        self.state
            .entra()
            .issue_access_token(Caller {
                app_id: graphgate::sim::tenant::DEMO_PUBLIC_CLIENT_ID.into(),
                user_id: Some(user.to_string()),
                permissions: ["Mail.ReadWrite", "Mail.Send"]
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
            })
            .0
    }

    /// GET `path` (a path or a full link) with query pairs and headers.
    async fn get_with(
        &self,
        token: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.url)
        };
        if !query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&serde_urlencoded::to_string(query).unwrap());
        }
        let mut request = self.http.get(url).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.get_with(token, path, &[], &[]).await
    }

    async fn value(&self, token: &str, id: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!("{}/v1.0/me/messages/{id}/$value", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }

    /// The size extended property (`Integer 0x0E08`) of a message.
    async fn size(&self, token: &str, id: &str) -> usize {
        let (_, m) = self
            .get_with(
                token,
                &format!("/v1.0/me/messages/{id}"),
                &[
                    ("$select", "id"),
                    (
                        "$expand",
                        "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')",
                    ),
                ],
                &[],
            )
            .await;
        m["singleValueExtendedProperties"][0]["value"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST base64 MIME (`sendMail` or create).
    async fn post_mime(&self, token: &str, path: &str, mime: &[u8]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("Content-Type", "text/plain")
            .body(base64::engine::general_purpose::STANDARD.encode(mime))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The id of the message with `subject` in a folder of `user`.
    fn id_of(&self, user: &str, folder: &str, subject: &str) -> String {
        self.state
            .mail()
            .messages(user, folder)
            .into_iter()
            .find(|m| m.1 == subject)
            .unwrap_or_else(|| panic!("no {subject:?} in {folder}"))
            .0
    }
}

const SUBMITTED: &[u8] = b"From: Alice Example <alice@example.com>\r\nTo: Bob Example <bob@example.com>, \"Doe, John\" <john@fabrikam.example>\r\nCc: alice@example.com\r\nBcc: carol@fabrikam.example\r\nSubject: =?utf-8?q?Angebot_f=C3=BCr_M=C3=BCnchen?=\r\nDate: Tue, 17 Nov 2026 10:00:00 +0100\r\nMessage-ID: <offer-2026@example.com>\r\nX-Mailer: legacy-app 1.0\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe aus M\xc3\xbcnchen,\r\nanbei das Angebot. A long line that runs on for well over seventy-six characters, to be wrapped.\r\n--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Gr\xc3\xbc\xc3\x9fe aus M\xc3\xbcnchen</p>\r\n--inner--\r\n--outer\r\nContent-Type: application/octet-stream; name=\"angebot.bin\"\r\nContent-Disposition: attachment; filename=\"angebot.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==\r\n--outer--\r\n";

/// Subject, addresses, text, HTML and attachments (name, bytes) as
/// mail-parser decodes them.
fn decoded(bytes: &[u8]) -> Value {
    let m = MessageParser::default().parse(bytes).expect("parses");
    let addresses = |a: Option<&mail_parser::Address<'_>>| -> Vec<(String, String)> {
        a.map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x.name().unwrap_or_default().to_string(),
                        x.address().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let attachments: Vec<Value> = m
        .attachments()
        .map(|a| {
            json!([
                a.attachment_name(),
                base64::engine::general_purpose::STANDARD.encode(a.contents())
            ])
        })
        .collect();
    json!({
        "subject": m.subject(),
        "from": addresses(m.from()),
        "to": addresses(m.to()),
        "cc": addresses(m.cc()),
        "bcc": addresses(m.bcc()),
        "date": m.date().map(|d| d.to_timestamp()),
        "message_id": m.message_id(),
        "text": m.body_text(0),
        "html": m.body_html(0),
        "attachments": attachments,
    })
}

/// Header names of the top-level header block, in order.
fn header_names(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

fn strip_bcc(mime: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(mime.to_vec()).unwrap();
    text.split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Bcc:"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn sent_mail_is_rerendered_and_decodes_to_the_same_content() {
    let sim = start(true).await;
    let alice = sim.token(ALICE);
    let bob = sim.token(BOB);
    let (status, _) = sim.post_mime(&alice, "/v1.0/me/sendMail", SUBMITTED).await;
    assert_eq!(status, 202);

    // Bob's copy: other bytes, the same content (less the Bcc).
    let id = sim.id_of(BOB, "inbox", "Angebot für München");
    let value = sim.value(&bob, &id).await;
    assert_ne!(value, SUBMITTED);
    assert_eq!(decoded(&value), decoded(&strip_bcc(SUBMITTED)));
    let text = String::from_utf8(value.clone()).expect("7-bit output");
    assert!(
        !value.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "CRLF only"
    );
    let names = header_names(&value);
    assert_eq!(names.first().map(String::as_str), Some("Received"));
    assert_eq!(names.last().map(String::as_str), Some("MIME-Version"));
    for exchange_header in [
        "Thread-Topic",
        "Thread-Index",
        "Content-Language",
        "X-MS-Has-Attach",
        "X-MS-Exchange-Organization-Network-Message-Id",
        "X-MS-TNEF-Correlator",
        "msip_labels",
    ] {
        assert!(
            names.iter().any(|n| n == exchange_header),
            "{exchange_header} in {names:?}"
        );
    }
    assert!(
        text.contains("Date: Tue, 17 Nov 2026 09:00:00 +0000\r\n"),
        "Date in UTC"
    );
    assert!(
        text.contains("boundary=\"_004_offer2026examplecom_\""),
        "{text}"
    );
    assert!(text.contains("Content-Transfer-Encoding: quoted-printable"));
    assert!(!text.contains("boundary=\"outer\""));
    let base64_lines: Vec<&str> = text
        .split("Content-Transfer-Encoding: base64\r\n\r\n")
        .nth(1)
        .unwrap()
        .split("\r\n")
        .take_while(|l| !l.starts_with("--"))
        .collect();
    assert!(
        base64_lines.len() > 1
            && base64_lines[..base64_lines.len() - 1]
                .iter()
                .all(|l| l.len() == 76)
    );

    // Stable for the item's life; the size property is Exchange's storage
    // size, not the length of $value, and does not move either.
    assert_eq!(sim.value(&bob, &id).await, value);
    let size = sim.size(&bob, &id).await;
    assert_ne!(size, value.len());
    assert_eq!(sim.size(&bob, &id).await, size);
    let (status, _) = sim
        .send(
            reqwest::Method::PATCH,
            &bob,
            &format!("/v1.0/me/messages/{id}"),
            json!({"isRead": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sim.value(&bob, &id).await, value);
    assert_eq!(sim.size(&bob, &id).await, size);

    // Alice's Sent Items copy is re-rendered too, Bcc kept, no transport
    // hop.
    let sent_id = sim.id_of(ALICE, "sentitems", "Angebot für München");
    let sent = sim.value(&alice, &sent_id).await;
    assert_ne!(sent, SUBMITTED);
    assert_eq!(decoded(&sent), decoded(SUBMITTED));
    assert!(!header_names(&sent).iter().any(|n| n == "Received"));
}

#[tokio::test]
async fn drafts_json_items_and_copies_are_rerendered() {
    let sim = start(true).await;
    let alice = sim.token(ALICE);
    let mime = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: appended\r\nMessage-ID: <append-1@example.com>\r\nDate: Fri, 20 Nov 2026 12:00:00 +0000\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nbody of the appended message\r\n";
    let (status, draft) = sim.post_mime(&alice, "/v1.0/me/messages", mime).await;
    assert_eq!(status, 201);
    let draft_id = draft["id"].as_str().unwrap();
    let draft_value = sim.value(&alice, draft_id).await;
    assert_ne!(draft_value, mime);
    assert_eq!(decoded(&draft_value), decoded(mime));

    // The DavMail route: re-POST the JSON as a non-draft in the Inbox.
    let mut item = draft.clone();
    item["singleValueExtendedProperties"] = json!([{"id": "Integer 0x0E07", "value": "1"}]);
    let (status, created) = sim
        .send(
            reqwest::Method::POST,
            &alice,
            "/v1.0/me/mailFolders/inbox/messages",
            item,
        )
        .await;
    assert_eq!(status, 201);
    let created_id = created["id"].as_str().unwrap();
    let created_value = sim.value(&alice, created_id).await;
    let created_text = String::from_utf8_lossy(&created_value).to_string();
    assert!(created_text.contains("X-MS-Exchange-Organization-Network-Message-Id"));
    assert!(
        header_names(&created_value)
            .last()
            .is_some_and(|n| n == "MIME-Version")
    );
    let parsed = MessageParser::default().parse(&created_value).unwrap();
    assert_eq!(parsed.subject(), Some("appended"));
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim_end),
        Some("body of the appended message")
    );

    // A copy is a new item: generated again, same content.
    let (status, copy) = sim
        .send(
            reqwest::Method::POST,
            &alice,
            &format!("/v1.0/me/messages/{created_id}/copy"),
            json!({"destinationId": "archive"}),
        )
        .await;
    assert_eq!(status, 201);
    let copy_value = sim.value(&alice, copy["id"].as_str().unwrap()).await;
    assert_ne!(copy_value, created_value);
    assert_eq!(decoded(&copy_value), decoded(&created_value));
}

#[tokio::test]
async fn exact_bytes_are_an_opt_in_and_value_is_then_the_submitted_bytes() {
    let sim = start(false).await;
    let alice = sim.token(ALICE);
    let bob = sim.token(BOB);
    let (status, draft) = sim.post_mime(&alice, "/v1.0/me/messages", SUBMITTED).await;
    assert_eq!(status, 201);
    let draft_value = sim.value(&alice, draft["id"].as_str().unwrap()).await;
    assert_eq!(draft_value, SUBMITTED);
    assert_eq!(
        sim.post_mime(&alice, "/v1.0/me/sendMail", SUBMITTED)
            .await
            .0,
        202
    );
    let id = sim.id_of(BOB, "inbox", "Angebot für München");
    assert_eq!(sim.value(&bob, &id).await, strip_bcc(SUBMITTED));
}

/// Every page of a folder delta round from `url`; the items and the delta
/// link.
async fn folder_round(sim: &Sim, token: &str, url: &str, page: usize) -> (Vec<Value>, String) {
    let prefer = format!("odata.maxpagesize={page}");
    let mut url = url.to_string();
    let mut items = Vec::new();
    loop {
        let (status, body) = sim.get_with(token, &url, &[], &[("Prefer", &prefer)]).await;
        assert_eq!(status, 200, "{body}");
        let values = body["value"].as_array().unwrap();
        assert!(values.len() <= page);
        items.extend(values.iter().cloned());
        assert!(!(body["@odata.nextLink"].is_string() && body["@odata.deltaLink"].is_string()));
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => {
                return (
                    items,
                    body["@odata.deltaLink"].as_str().unwrap().to_string(),
                );
            }
        }
    }
}

#[tokio::test]
async fn folder_delta_reports_creates_renames_and_deletes() {
    let sim = start(false).await;
    let alice = sim.token(ALICE);
    let (items, link) = folder_round(
        &sim,
        &alice,
        &format!(
            "{}/v1.0/me/mailFolders/delta?$select=displayName,parentFolderId",
            sim.url
        ),
        3,
    )
    .await;
    let names: Vec<&str> = items
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    for wanted in [
        "Inbox",
        "Drafts",
        "Sent Items",
        "Deleted Items",
        "Junk Email",
        "Archive",
    ] {
        assert!(names.contains(&wanted), "{wanted} in {names:?}");
    }
    // $select: only what was asked for, and the id.
    assert!(
        items
            .iter()
            .all(|f| f["id"].is_string() && f.get("totalItemCount").is_none())
    );
    // Nothing changed: an empty round.
    let (same, link) = folder_round(&sim, &alice, &link, 3).await;
    assert!(same.is_empty(), "{same:?}");

    let post = |path: &'static str, name: &'static str| {
        sim.send(
            reqwest::Method::POST,
            &alice,
            path,
            json!({"displayName": name}),
        )
    };
    let (status, projects) = post("/v1.0/me/mailFolders", "Projects").await;
    assert_eq!(status, 201);
    let projects_id = projects["id"].as_str().unwrap().to_string();
    let (status, child) = sim
        .send(
            reqwest::Method::POST,
            &alice,
            &format!("/v1.0/me/mailFolders/{projects_id}/childFolders"),
            json!({"displayName": "2026"}),
        )
        .await;
    assert_eq!(status, 201);
    let child_id = child["id"].as_str().unwrap().to_string();
    let (status, _) = sim
        .send(
            reqwest::Method::PATCH,
            &alice,
            &format!("/v1.0/me/mailFolders/{projects_id}"),
            json!({"displayName": "Work"}),
        )
        .await;
    assert_eq!(status, 200);
    let (changes, link) = folder_round(&sim, &alice, &link, 1).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes
            .iter()
            .any(|f| f["id"] == projects_id.as_str() && f["displayName"] == "Work")
    );
    assert!(
        changes
            .iter()
            .any(|f| f["id"] == child_id.as_str() && f["parentFolderId"] == projects_id.as_str())
    );

    let r = sim
        .http
        .delete(format!("{}/v1.0/me/mailFolders/{projects_id}", sim.url))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (removed, link) = folder_round(&sim, &alice, &link, 10).await;
    let mut removed_ids: Vec<&str> = removed
        .iter()
        .inspect(|f| assert_eq!(f["@removed"]["reason"], "deleted", "{f}"))
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    removed_ids.sort();
    let mut expected = vec![projects_id.as_str(), child_id.as_str()];
    expected.sort();
    assert_eq!(removed_ids, expected);

    // The /users/{id} form, an unknown $select, and expired tokens.
    let (status, body) = sim
        .get(&alice, "/v1.0/users/alice@example.com/mailFolders/delta")
        .await;
    assert_eq!(status, 200);
    assert!(
        body["@odata.deltaLink"]
            .as_str()
            .unwrap()
            .contains("/users/alice@example.com/mailFolders/delta?")
    );
    let (status, body) = sim
        .get(&alice, "/v1.0/me/mailFolders/delta?$select=bogus")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'bogus'")
    );
    // A message delta link is not a folder delta token.
    let (_, messages) = sim
        .get(&alice, "/v1.0/me/mailFolders/inbox/messages/delta")
        .await;
    let message_token = messages["@odata.deltaLink"]
        .as_str()
        .unwrap()
        .split("$deltatoken=")
        .nth(1)
        .unwrap()
        .to_string();
    let (status, _) = sim
        .get_with(
            &alice,
            "/v1.0/me/mailFolders/delta",
            &[("$deltatoken", &message_token)],
            &[],
        )
        .await;
    assert_eq!(status, 410);
    sim.state.mail().expire_delta_tokens();
    let (status, body) = sim.get(&alice, &link).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "SyncStateNotFound");
}

/// Subjects of every page of a message list, following nextLink.
async fn subjects(
    sim: &Sim,
    token: &str,
    query: &[(&str, &str)],
) -> (u16, Vec<String>, Vec<Value>) {
    let (status, mut body) = sim
        .get_with(token, "/v1.0/me/mailFolders/inbox/messages", query, &[])
        .await;
    let mut out = Vec::new();
    let mut counts = Vec::new();
    if status != 200 {
        return (status, out, vec![body]);
    }
    loop {
        counts.push(body["@odata.count"].clone());
        out.extend(
            body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["subject"].as_str().unwrap().to_string()),
        );
        match body["@odata.nextLink"].as_str() {
            Some(next) => body = sim.get(token, next).await.1,
            None => return (status, out, counts),
        }
    }
}

#[tokio::test]
async fn message_lists_order_filter_and_count() {
    let sim = start(false).await;
    let alice = sim.token(ALICE);
    // The seeded Inbox: received 16, 17, 18, 19 November 09:00 UTC; only
    // the first is read.
    let plain = "Quarterly report";
    let html = "Grüße aus München";
    let invoice = "Invoice 2026-117";
    let fwd = "Fwd: Server maintenance window";
    let (_, newest_first, _) = subjects(&sim, &alice, &[]).await;
    assert_eq!(newest_first, [fwd, invoice, html, plain]);
    let (_, asc, _) = subjects(&sim, &alice, &[("$orderby", "receivedDateTime asc")]).await;
    assert_eq!(asc, [plain, html, invoice, fwd]);
    let (_, desc, _) = subjects(&sim, &alice, &[("$orderby", "receivedDateTime desc")]).await;
    assert_eq!(desc, [fwd, invoice, html, plain]);

    let cases: &[(&str, &[&str])] = &[
        ("isRead eq false", &[fwd, invoice, html]),
        ("isRead eq true", &[plain]),
        (
            "receivedDateTime ge 2026-11-17T09:00:00Z",
            &[fwd, invoice, html],
        ),
        ("receivedDateTime lt 2026-11-18T00:00:00Z", &[html, plain]),
        (
            "receivedDateTime ge 2026-11-17T00:00:00Z and receivedDateTime lt 2026-11-19T00:00:00Z",
            &[invoice, html],
        ),
        (
            "receivedDateTime ge 2026-11-16T00:00:00Z and isRead eq false and receivedDateTime lt 2026-11-19T00:00:00Z",
            &[invoice, html],
        ),
        (
            "internetMessageId eq '<seed-html@contoso.example>'",
            &[html],
        ),
        ("internetMessageId eq '<nobody@example.com>'", &[]),
    ];
    for (filter, expected) in cases {
        let (status, got, _) = subjects(&sim, &alice, &[("$filter", filter)]).await;
        assert_eq!(status, 200, "{filter}");
        assert_eq!(&got, expected, "{filter}");
    }

    // Filter, order, count and paging together: the nextLink carries them.
    let query = [
        (
            "$filter",
            "receivedDateTime ge 2026-11-17T00:00:00Z and isRead eq false",
        ),
        ("$orderby", "receivedDateTime asc"),
        ("$count", "true"),
        ("$top", "1"),
        ("$select", "subject"),
    ];
    let (status, paged, counts) = subjects(&sim, &alice, &query).await;
    assert_eq!(status, 200);
    assert_eq!(paged, [html, invoice, fwd]);
    assert_eq!(counts, [json!(3), json!(3), json!(3)]);
    let (_, _, no_count) = subjects(&sim, &alice, &[("$filter", "isRead eq false")]).await;
    assert_eq!(no_count, [Value::Null]);

    // Graph's rule: an $orderby property must lead the $filter.
    let (status, _, body) = subjects(
        &sim,
        &alice,
        &[
            ("$filter", "isRead eq false"),
            ("$orderby", "receivedDateTime desc"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["error"]["code"], "InefficientFilter");
    for unsupported in [
        "subject eq 'Quarterly report'",
        "isRead eq false or isRead eq true",
        "startswith(subject,'Q')",
        "receivedDateTime ge yesterday",
    ] {
        let (status, _, body) = subjects(&sim, &alice, &[("$filter", unsupported)]).await;
        assert_eq!(status, 400, "{unsupported}");
        assert!(
            body[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Invalid filter clause")
        );
    }
    let (status, _, _) = subjects(&sim, &alice, &[("$orderby", "subject")]).await;
    assert_eq!(status, 400);

    // Plain lists page by $top; Prefer: odata.maxpagesize is documented for
    // delta only, and the simulator does not honour it here.
    let (_, body) = sim
        .get_with(
            &alice,
            "/v1.0/me/mailFolders/inbox/messages",
            &[],
            &[("Prefer", "odata.maxpagesize=2")],
        )
        .await;
    assert_eq!(body["value"].as_array().unwrap().len(), 4);
    // The whole mailbox takes the same options.
    let (status, body) = sim
        .get_with(
            &alice,
            "/v1.0/me/messages",
            &[("$filter", "isRead eq true"), ("$count", "true")],
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["@odata.count"], 2, "Inbox and Sent Items: {body}");
}

#[tokio::test]
async fn a_rerendered_draft_with_an_attachment_is_sent_intact() {
    let sim = start(true).await;
    let alice = sim.token(ALICE);
    let bob = sim.token(BOB);
    let (status, draft) = sim
        .send(
            reqwest::Method::POST,
            &alice,
            "/v1.0/me/messages",
            json!({
                "subject": "report attached",
                "body": {"contentType": "text", "content": "see the attachment"},
                "toRecipients": [{"emailAddress": {"address": "bob@example.com"}}],
            }),
        )
        .await;
    assert_eq!(status, 201);
    let id = draft["id"].as_str().unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let (status, _) = sim
        .send(
            reqwest::Method::POST,
            &alice,
            &format!("/v1.0/me/messages/{id}/attachments"),
            json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "report.bin",
                "contentType": "application/octet-stream",
                "contentBytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
            }),
        )
        .await;
    assert_eq!(status, 201);
    let r = sim
        .http
        .post(format!("{}/v1.0/me/messages/{id}/send", sim.url))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let received = sim.id_of(BOB, "inbox", "report attached");
    let value = sim.value(&bob, &received).await;
    let parsed = MessageParser::default().parse(&value).unwrap();
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim_end),
        Some("see the attachment")
    );
    let attachment = parsed.attachments().next().expect("the attachment");
    assert_eq!(attachment.attachment_name(), Some("report.bin"));
    assert_eq!(attachment.contents(), &bytes[..]);
    assert!(String::from_utf8_lossy(&value).contains("X-MS-Has-Attach: yes"));
}

/// `graphgate sim` re-renders by default, as Exchange does (issue 16:
/// "Exchange-style MIME re-rendering is the default of `sim` and
/// `demo`"); `--exact-mime` gives the submitted bytes back.
#[tokio::test]
async fn the_sim_command_rerenders_by_default_and_exact_mime_opts_out() {
    assert!(SimConfig::default().exchange_mime);
    for (extra, rerendered) in [
        (&["--no-seed"][..], true),
        (&["--no-seed", "--exact-mime"][..], false),
    ] {
        let sim = support::sim_with(extra);
        let token = support::token(&sim.url, "alice@example.com").await;
        let http = reqwest::Client::new();
        let created: Value = http
            .post(format!("{}/v1.0/me/messages", sim.url))
            .bearer_auth(&token)
            .header("Content-Type", "text/plain")
            .body(base64::engine::general_purpose::STANDARD.encode(SUBMITTED))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap();
        let value = http
            .get(format!("{}/v1.0/me/messages/{id}/$value", sim.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&value[..] != SUBMITTED, rerendered, "{extra:?}");
        if rerendered {
            assert!(header_names(&value).iter().any(|h| h == "Thread-Topic"));
        }
    }
}
