//! Message `$filter` forms mail clients use, on the wire against
//! `graphgate sim` (issue 16, "Simulator"): `contains(subject,'…')`
//! (learn.microsoft.com/graph/filter-query-parameter, "contains"),
//! `lastModifiedDateTime` ranges joined with `and`, and
//! `singleValueExtendedProperties/any(ep: ep/id eq '…' and ep/value eq '…')`
//! (learn.microsoft.com/graph/api/singlevalueextendedproperty-get). A form
//! the simulator does not support is refused with 400, never ignored.

use serde_json::{Value, json};

mod support;

const REF: &str = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name GraphgateRef";

struct Mail {
    sim: support::Sim,
    token: String,
    http: reqwest::Client,
}

impl Mail {
    async fn get(&self, path: &str, filter: &str) -> (u16, Value) {
        let filter =
            percent_encoding::utf8_percent_encode(filter, percent_encoding::NON_ALPHANUMERIC);
        let r = self
            .http
            .get(format!(
                "{}{path}?$filter={filter}&$select=subject",
                self.sim.url
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Subjects of the inbox messages `filter` selects, sorted.
    async fn subjects(&self, filter: &str) -> Vec<String> {
        let (status, body) = self
            .get("/v1.0/me/mailFolders/inbox/messages", filter)
            .await;
        assert_eq!(status, 200, "{filter}: {body}");
        let mut list: Vec<String> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["subject"].as_str().unwrap().to_string())
            .collect();
        list.sort();
        list
    }
}

async fn mail() -> Mail {
    let sim = support::sim(false);
    let http = reqwest::Client::new();
    for subject in [
        "Quarterly report",
        "Lunch on Friday",
        "the QUARTERLY numbers",
    ] {
        let mime = format!("From: x@external.example\r\nSubject: {subject}\r\n\r\nbody\r\n");
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
    Mail { sim, token, http }
}

#[tokio::test]
async fn contains_subject_is_a_case_insensitive_substring() {
    let m = mail().await;
    assert_eq!(
        m.subjects("contains(subject, 'quarterly')").await,
        ["Quarterly report", "the QUARTERLY numbers"]
    );
    assert_eq!(
        m.subjects("contains(subject,'Friday') and isRead eq false")
            .await,
        ["Lunch on Friday"]
    );
}

#[tokio::test]
async fn last_modified_ranges_and_extended_property_lambdas_select() {
    let m = mail().await;
    let now = chrono::Utc::now();
    let hour = chrono::Duration::hours(1);
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let range = format!(
        "lastModifiedDateTime ge {} and lastModifiedDateTime lt {}",
        at(now - hour),
        at(now + hour)
    );
    assert_eq!(m.subjects(&range).await.len(), 3);
    let later = format!("lastModifiedDateTime ge {}", at(now + hour));
    assert!(m.subjects(&later).await.is_empty());

    // Tag one message with a named string property, then find it by it.
    let (_, all) = m
        .get("/v1.0/me/mailFolders/inbox/messages", "isRead eq false")
        .await;
    let lunch = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["subject"] == "Lunch on Friday")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = m
        .http
        .patch(format!("{}/v1.0/me/messages/{lunch}", m.sim.url))
        .bearer_auth(&m.token)
        .json(&json!({"singleValueExtendedProperties": [{"id": REF, "value": "ref-42"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let tagged =
        format!("singleValueExtendedProperties/Any(ep: ep/id eq '{REF}' and ep/value eq 'ref-42')");
    assert_eq!(m.subjects(&tagged).await, ["Lunch on Friday"]);
    let other =
        format!("singleValueExtendedProperties/any(ep: ep/id eq '{REF}' and ep/value eq 'ref-43')");
    assert!(m.subjects(&other).await.is_empty());
}

#[tokio::test]
async fn filters_it_does_not_support_are_refused_not_ignored() {
    let m = mail().await;
    for filter in [
        "startswith(subject,'Lunch')",
        "contains(body/content,'x')",
        "contains(subject,'a') or isRead eq true",
        "singleValueExtendedProperties/any(ep: ep/id eq 'x')",
    ] {
        let (status, body) = m.get("/v1.0/me/mailFolders/inbox/messages", filter).await;
        assert_eq!(status, 400, "{filter}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
}

/// `$expand=childFolders` on a folder list and on one folder brings the
/// direct children inline (mailFolder's `childFolders` relationship); an
/// `$expand` the simulator does not support is refused, not ignored.
#[tokio::test]
async fn folders_expand_their_child_folders() {
    let m = mail().await;
    let post = |path: String, name: &str| {
        let request = m
            .http
            .post(format!("{}{path}", m.sim.url))
            .bearer_auth(&m.token)
            .json(&json!({"displayName": name}));
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 201);
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let projects = post("/v1.0/me/mailFolders".into(), "Projects").await;
    post(
        format!("/v1.0/me/mailFolders/{projects}/childFolders"),
        "2026",
    )
    .await;
    let get = |path: String| {
        let request = m
            .http
            .get(format!("{}{path}", m.sim.url))
            .bearer_auth(&m.token);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, list) = get("/v1.0/me/mailFolders?$top=50&$expand=childFolders".into()).await;
    assert_eq!(status, 200, "{list}");
    let entry = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == projects.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["childFolders"][0]["displayName"], "2026", "{entry}");
    assert_eq!(entry["childFolders"].as_array().unwrap().len(), 1);
    let (status, one) = get(format!(
        "/v1.0/me/mailFolders/{projects}?$expand=childFolders"
    ))
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["childFolders"][0]["displayName"], "2026", "{one}");
    let (status, refused) = get(format!("/v1.0/me/mailFolders/{projects}?$expand=rules")).await;
    assert_eq!(status, 400, "{refused}");
}
