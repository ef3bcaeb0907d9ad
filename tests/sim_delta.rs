//! Message delta sync generations (issue 16, "Simulator"): Exchange keeps
//! only the last few sync states of a folder, so a delta link older than a
//! few newer generations answers 410 Gone `syncStateNotFound`
//! (learn.microsoft.com/graph/delta-query-overview, "Token duration";
//! graph-facts.md "Sync-state expiry"), and graphgate answers it with a
//! full resync that keeps every UID (seen over IMAP with Python's imaplib).

use serde_json::Value;

mod support;

async fn get(token: &str, url: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .header("Prefer", "IdType=\"ImmutableId\"")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Follow a delta round from `url` to its delta link.
async fn round(token: &str, url: &str) -> String {
    let mut next = url.to_string();
    loop {
        let (status, page) = get(token, &next).await;
        assert_eq!(status, 200, "{next}: {page}");
        if let Some(link) = page["@odata.deltaLink"].as_str() {
            return link.to_string();
        }
        next = page["@odata.nextLink"]
            .as_str()
            .unwrap_or_else(|| panic!("neither link: {page}"))
            .to_string();
    }
}

#[tokio::test]
async fn a_delta_link_expires_after_three_newer_generations_of_its_folder() {
    let sim = support::sim(true);
    let token = support::token(&sim.url, "alice@example.com").await;
    let inbox = format!("{}/v1.0/me/mailFolders/inbox/messages/delta", sim.url);
    let sent = format!("{}/v1.0/me/mailFolders/sentitems/messages/delta", sim.url);
    let first = round(&token, &inbox).await; // generation 1
    let second = round(&token, &first).await; // 2
    // One newer generation: the first link still works (a replay), and
    // starts generation 3.
    round(&token, &first).await;
    // Rounds of another folder do not count against this one.
    for _ in 0..3 {
        round(&token, &sent).await;
    }
    let (status, _) = get(&token, &first).await;
    assert_eq!(status, 200, "two newer generations keep it");
    // That was generation 4: three newer than the first link's.
    let (status, body) = get(&token, &first).await;
    assert_eq!(status, 410, "{body}");
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("syncStateNotFound")),
        "{body}"
    );
    // The second link (generation 2) is two behind: still served.
    let (status, body) = get(&token, &second).await;
    assert_eq!(status, 200, "{body}");
}

/// `(uid, subject)` of every message of INBOX, over IMAP.
fn inbox_over_imap(imap: &str) -> Vec<(u32, String)> {
    let (host, port) = imap.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import imaplib, email, re
m = imaplib.IMAP4("{host}", {port})
m.login("alice@example.com", "alice")
typ, data = m.select("INBOX")
assert typ == "OK", data
typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert typ == "OK", data
for item in data:
    if isinstance(item, tuple):
        uid = re.search(rb"UID (\d+)", item[0]).group(1).decode()
        subject = email.message_from_bytes(item[1])["Subject"]
        print(uid + "\t" + subject)
m.logout()
"#
    );
    let out = std::process::Command::new(support::python())
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut list: Vec<(u32, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(uid, subject)| (uid.parse().unwrap(), subject.to_string()))
        .collect();
    list.sort();
    list
}

async fn gone_answers(sim: &str) -> u64 {
    let stats: Value = reqwest::get(format!("{sim}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["by_status"]["410"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn the_gateway_resyncs_after_its_delta_link_expired_and_keeps_every_uid() {
    let d = support::demo();
    let before = inbox_over_imap(&d.imap);
    assert!(!before.is_empty());
    // Another client syncs the same folder three times: the gateway's
    // delta link is now three generations old.
    let token = support::token(&d.sim, "alice@example.com").await;
    let inbox = format!("{}/v1.0/me/mailFolders/inbox/messages/delta", d.sim);
    for _ in 0..3 {
        round(&token, &inbox).await;
    }
    let response = reqwest::Client::new()
        .post(format!("{}/_sim/mail/deliver?to=alice@example.com", d.sim))
        .body("From: late@external.example\r\nTo: alice@example.com\r\nSubject: after the reset\r\n\r\nhello\r\n")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(gone_answers(&d.sim).await, 0);
    let after = inbox_over_imap(&d.imap);
    assert!(
        gone_answers(&d.sim).await >= 1,
        "the gateway's old delta link was not refused"
    );
    // Same messages under the same UIDs, and the new one after them.
    assert_eq!(&after[..before.len()], &before[..], "{after:?}");
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    let (uid, subject) = &after[before.len()];
    assert!(*uid > before.last().unwrap().0);
    assert_eq!(subject, "after the reset");
}

#[tokio::test]
async fn a_folder_hierarchy_delta_link_expires_after_three_newer_generations() {
    let sim = support::sim(true);
    let token = support::token(&sim.url, "alice@example.com").await;
    let hierarchy = format!("{}/v1.0/me/mailFolders/delta", sim.url);
    let first = round(&token, &hierarchy).await; // generation 1
    let second = round(&token, &first).await; // 2
    round(&token, &hierarchy).await; // 3
    let (status, _) = get(&token, &first).await;
    assert_eq!(status, 200, "two newer generations keep it");
    // That round was generation 4: three newer than the first link's.
    let (status, body) = get(&token, &first).await;
    assert_eq!(status, 410, "{body}");
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("syncStateNotFound")),
        "{body}"
    );
    let (status, body) = get(&token, &second).await;
    assert_eq!(status, 200, "{body}");
}

/// The folder names LIST shows, over IMAP.
fn folders_over_imap(imap: &str) -> Vec<String> {
    let (host, port) = imap.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import imaplib, re
m = imaplib.IMAP4("{host}", {port})
m.login("alice@example.com", "alice")
typ, data = m.list()
assert typ == "OK", data
for line in data:
    name = re.match(r'\((.*?)\) (".*?"|NIL) (.*)$', line.decode()).group(3)
    print(name.strip('"'))
m.logout()
"#
    );
    let out = std::process::Command::new(support::python())
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_gateway_resyncs_its_folder_tree_after_its_hierarchy_link_expired() {
    // Folder trees are fresh for one second (imap.idle_poll_s), so a later
    // LIST runs the hierarchy delta from the stored link.
    let d = support::demo_env(&[("GRAPHGATE_IMAP_IDLE_POLL_S", "1")]);
    let before = folders_over_imap(&d.imap);
    assert!(before.iter().any(|f| f == "INBOX"), "{before:?}");
    // Another client syncs the hierarchy three times: the gateway's link
    // is now three generations old.
    let token = support::token(&d.sim, "alice@example.com").await;
    let hierarchy = format!("{}/v1.0/me/mailFolders/delta", d.sim);
    for _ in 0..3 {
        round(&token, &hierarchy).await;
    }
    let created = reqwest::Client::new()
        .post(format!("{}/v1.0/me/mailFolders", d.sim))
        .bearer_auth(&token)
        .json(&serde_json::json!({"displayName": "After the reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(gone_answers(&d.sim).await, 0);
    // Poll until the tree is stale and LIST has synced it again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let after = loop {
        let list = folders_over_imap(&d.imap);
        if list.iter().any(|f| f == "After the reset") {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new folder never appeared: {list:?}"
        );
        tokio::task::yield_now().await;
    };
    assert!(
        gone_answers(&d.sim).await >= 1,
        "the gateway's old hierarchy link was not refused"
    );
    // Every folder it listed before is still there.
    for f in &before {
        assert!(after.contains(f), "{f} vanished: {after:?}");
    }
}
