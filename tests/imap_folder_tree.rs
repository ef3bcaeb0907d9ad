//! The folder tree over IMAP (issue 22 item 7 and the `Shared/` prefix),
//! against the demo's simulated tenant over real sockets:
//! - LOGIN does not cost one Graph request per folder: the tree is kept in
//!   the store by `mailFolders/delta`; a LOGIN with a fresh tree costs no
//!   Graph request, a stale one (LIST included) one delta request.
//! - folders created, renamed and deleted in Graph directly reach LIST
//!   after the freshness interval (`imap.idle_poll_s`).
//! - CREATE refuses names deeper or longer than Exchange allows, and names
//!   under `Shared/` that are no shared mailbox's, before any Graph call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

mod support;

struct Imap {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    tag: u32,
}

impl Imap {
    async fn connect(addr: &str) -> Imap {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Imap {
            read: BufReader::new(r),
            write: w,
            tag: 0,
        };
        let greeting = c.line().await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(120), self.read.read_line(&mut l))
            .await
            .expect("an answer within 120 s")
            .unwrap();
        assert!(n > 0, "connection closed");
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    /// Send `command`; the untagged lines and the tagged one.
    async fn cmd(&mut self, command: &str) -> (Vec<String>, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.write
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut untagged = Vec::new();
        loop {
            let l = self.line().await;
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                return (untagged, rest.to_string());
            }
            untagged.push(l);
        }
    }

    async fn ok(&mut self, command: &str) -> Vec<String> {
        let (lines, done) = self.cmd(command).await;
        assert!(done.starts_with("OK"), "{command}: {done}\n{lines:#?}");
        lines
    }

    async fn login(addr: &str) -> Imap {
        let mut c = Imap::connect(addr).await;
        c.ok("LOGIN alice@example.com alice").await;
        c
    }

    /// The folder names LIST "" "*" shows.
    async fn names(&mut self) -> Vec<String> {
        self.ok("LIST \"\" \"*\"")
            .await
            .iter()
            .filter_map(|l| l.strip_prefix("* LIST "))
            .map(|l| {
                // `(attrs) "/" name`: the name is quoted or an atom.
                let name = l.rsplit_once(" \"/\" ").map(|(_, n)| n).unwrap_or(l);
                name.trim_matches('"').to_string()
            })
            .collect()
    }
}

async fn graph_requests(sim: &str) -> u64 {
    let stats: Value = reqwest::get(format!("{sim}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["graph_requests"].as_u64().unwrap()
}

/// A Graph call of alice's with her token; the JSON answer.
async fn graph(sim: &str, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("{sim}/v1.0/me/{path}"))
        .bearer_auth(token);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    assert!(status.is_success(), "{path}: {status}");
    response.json().await.unwrap_or(Value::Null)
}

/// 30 top-level folders with 9 children each, created in Graph directly.
async fn three_hundred_folders(sim: &str, token: &str) {
    for p in 0..30 {
        let parent = graph(
            sim,
            token,
            reqwest::Method::POST,
            "mailFolders",
            json!({"displayName": format!("Project {p:02}")}),
        )
        .await;
        let id = parent["id"].as_str().unwrap().to_string();
        for c in 0..9 {
            graph(
                sim,
                token,
                reqwest::Method::POST,
                &format!("mailFolders/{id}/childFolders"),
                json!({"displayName": format!("Part {c}")}),
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_a_fresh_folder_tree_costs_no_graph_request() {
    let demo = support::demo_env(&[("GRAPHGATE_IMAP_IDLE_POLL_S", "3600")]);
    let token = support::token(&demo.sim, "alice@example.com").await;
    three_hundred_folders(&demo.sim, &token).await;

    let before = graph_requests(&demo.sim).await;
    let mut first = Imap::login(&demo.imap).await;
    let cold = graph_requests(&demo.sim).await - before;
    eprintln!("first LOGIN over 300+ folders: {cold} Graph requests");
    let names = first.names().await;
    assert!(
        names.contains(&"Project 07/Part 8".to_string()),
        "{names:?}"
    );
    assert!(names.iter().filter(|n| n.starts_with("Project ")).count() >= 300);

    let before = graph_requests(&demo.sim).await;
    let mut second = Imap::login(&demo.imap).await;
    let warm = graph_requests(&demo.sim).await - before;
    assert!(
        warm <= 1,
        "a second LOGIN cost {warm} Graph requests over 300 folders"
    );
    // LIST within the freshness interval asks Graph nothing either.
    let before = graph_requests(&demo.sim).await;
    assert_eq!(second.names().await.len(), names.len());
    assert_eq!(graph_requests(&demo.sim).await - before, 0);
    // SPECIAL-USE still comes from the well-known folders.
    let lines = second.ok("LIST \"\" \"*\"").await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\\Sent") && l.contains("Sent Items")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_changed_in_graph_reach_list_after_the_freshness_interval() {
    let demo = support::demo_env(&[("GRAPHGATE_IMAP_IDLE_POLL_S", "1")]);
    let token = support::token(&demo.sim, "alice@example.com").await;
    three_hundred_folders(&demo.sim, &token).await;
    let mut c = Imap::login(&demo.imap).await;
    assert!(!c.names().await.contains(&"Outside".to_string()));

    // Poll LIST (each costs at most one Graph request, 300 folders or
    // not) until `done` holds for its names.
    async fn until(c: &mut Imap, sim: &str, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let before = graph_requests(sim).await;
            let names = c.names().await;
            let cost = graph_requests(sim).await - before;
            assert!(cost <= 1, "a LIST cost {cost} Graph requests");
            if done(&names) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: LIST still shows {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let created = graph(
        &demo.sim,
        &token,
        reqwest::Method::POST,
        "mailFolders",
        json!({"displayName": "Outside"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    graph(
        &demo.sim,
        &token,
        reqwest::Method::POST,
        &format!("mailFolders/{id}/childFolders"),
        json!({"displayName": "Inner"}),
    )
    .await;
    until(&mut c, &demo.sim, "created in Graph", |n| {
        n.contains(&"Outside/Inner".to_string())
    })
    .await;

    graph(
        &demo.sim,
        &token,
        reqwest::Method::PATCH,
        &format!("mailFolders/{id}"),
        json!({"displayName": "Renamed"}),
    )
    .await;
    until(&mut c, &demo.sim, "renamed in Graph", |n| {
        n.contains(&"Renamed/Inner".to_string()) && !n.iter().any(|x| x.starts_with("Outside"))
    })
    .await;

    graph(
        &demo.sim,
        &token,
        reqwest::Method::DELETE,
        &format!("mailFolders/{id}"),
        Value::Null,
    )
    .await;
    until(&mut c, &demo.sim, "deleted in Graph", |n| {
        !n.iter().any(|x| x.starts_with("Renamed"))
    })
    .await;
    // A folder created over IMAP is listed at once, at no extra cost.
    let before = graph_requests(&demo.sim).await;
    c.ok("CREATE Local/Child").await;
    assert_eq!(graph_requests(&demo.sim).await - before, 2);
    let names = c.names().await;
    assert!(names.contains(&"Local/Child".to_string()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_names_deeper_or_longer_than_exchange_allows() {
    let demo = support::demo();
    let mut c = Imap::login(&demo.imap).await;
    let before = graph_requests(&demo.sim).await;

    let deep = vec!["d"; 251].join("/");
    let (_, done) = c.cmd(&format!("CREATE \"{deep}\"")).await;
    assert!(
        done.starts_with("NO [LIMIT]") && done.contains("at most 250 levels"),
        "{done}"
    );
    let long = "x".repeat(256);
    let (_, done) = c.cmd(&format!("CREATE \"Top/{long}\"")).await;
    assert!(
        done.starts_with("NO [LIMIT]") && done.contains("at most 255"),
        "{done}"
    );
    c.ok("CREATE Work").await;
    let (_, done) = c.cmd(&format!("RENAME Work \"{long}\"")).await;
    assert!(done.starts_with("NO [LIMIT]"), "{done}");
    // Only the good CREATE reached Graph.
    assert_eq!(graph_requests(&demo.sim).await - before, 1);

    // At the limit, it works.
    let at_limit = vec!["e"; 250].join("/");
    c.ok(&format!("CREATE \"{at_limit}\"")).await;
    let names = c.names().await;
    assert!(names.contains(&at_limit), "the 250-level folder is listed");
    let name = "y".repeat(255);
    c.ok(&format!("CREATE \"{name}\"")).await;
    assert!(c.names().await.contains(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_prefix_is_reserved_for_shared_mailboxes() {
    let demo = support::demo();
    let mut c = Imap::login(&demo.imap).await;
    let before = graph_requests(&demo.sim).await;
    for name in [
        "Shared/support@example.com/INBOX/x",
        "Shared",
        "shared/whatever",
    ] {
        let (_, done) = c.cmd(&format!("CREATE \"{name}\"")).await;
        assert!(
            done.starts_with("NO [CANNOT]") && done.contains("reserved for shared mailboxes"),
            "CREATE {name}: {done}"
        );
    }
    assert_eq!(graph_requests(&demo.sim).await - before, 0);
    c.ok("CREATE Mine").await;
    let (_, done) = c.cmd("RENAME Mine Shared").await;
    assert!(done.starts_with("NO [CANNOT]"), "{done}");
    let names = c.names().await;
    assert!(names.contains(&"Mine".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("Shared")), "{names:?}");
}
