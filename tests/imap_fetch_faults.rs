//! Message bodies under connection resets (issue 22 item 6), over real
//! sockets against the simulator:
//! - the simulator answers an inner `$batch` request cut by a reset with a
//!   failure status and Graph's error body, never a 200 without a body
//!   (Microsoft's JSON batching: each inner response has its own status);
//! - the gateway never serves or keeps an empty body: after the faults
//!   stop, every message has its real size and bytes, the store holds no
//!   content with the SHA-256 of nothing, and cached files are 0600.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

mod support;

/// SHA-256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

async fn deliver(sim: &str, n: usize) {
    let http = reqwest::Client::new();
    for i in 0..n {
        let mime = format!(
            "From: sender{i}@external.example\r\nTo: alice@example.com\r\nSubject: reset test \
             {i}\r\nMessage-ID: <reset{i}@external.example>\r\n\r\nbody of message {i}\r\n"
        );
        let response = http
            .post(format!("{sim}/_sim/mail/deliver?to=alice@example.com"))
            .body(mime)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}

async fn faults(sim: &str, method: reqwest::Method, body: Option<Value>) {
    let mut request = reqwest::Client::new().request(method, format!("{sim}/_sim/faults"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    assert!(request.send().await.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_request_cut_by_a_reset_is_answered_with_a_failure_status() {
    let sim = support::sim(true);
    deliver(&sim.url, 20).await;
    let token = support::token(&sim.url, "alice@example.com").await;
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!(
            "{}/v1.0/me/mailFolders/inbox/messages?$select=id&$top=20",
            sim.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests: Vec<Value> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({"id": i.to_string(), "method": "GET",
                   "url": format!("/me/messages/{}/$value", m["id"].as_str().unwrap())})
        })
        .collect();
    assert_eq!(requests.len(), 20);
    faults(
        &sim.url,
        reqwest::Method::POST,
        Some(json!({"reset_rate": 0.3})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut answered, mut failed) = (0, 0);
    while failed == 0 || answered < 3 {
        assert!(
            Instant::now() < deadline,
            "{answered} batches, {failed} failures"
        );
        // The outer request may be reset itself: then try again.
        let Ok(response) = http
            .post(format!("{}/v1.0/$batch", sim.url))
            .bearer_auth(&token)
            .json(&json!({ "requests": requests }))
            .send()
            .await
        else {
            continue;
        };
        if response.status() != 200 {
            continue;
        }
        let Ok(body) = response.json::<Value>().await else {
            continue;
        };
        answered += 1;
        for inner in body["responses"].as_array().unwrap() {
            let status = inner["status"].as_u64().unwrap();
            if status == 200 {
                let bytes = inner["body"].as_str().unwrap_or_default();
                assert!(
                    !bytes.is_empty(),
                    "an inner 200 without a body (a reset reported as success): {inner}"
                );
            } else {
                assert!(status >= 500, "{inner}");
                assert!(inner["body"]["error"]["code"].is_string(), "{inner}");
                failed += 1;
            }
        }
    }
}

struct Imap {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    tag: u32,
}

impl Imap {
    async fn login(addr: &str) -> Imap {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Imap {
            read: BufReader::new(r),
            write: w,
            tag: 0,
        };
        c.response().await;
        let (_, done) = c.cmd("LOGIN alice@example.com alice").await;
        assert!(done.starts_with("OK"), "{done}");
        c
    }

    /// One response, literals included (`{N}` then N bytes).
    async fn response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = tokio::time::timeout(
                Duration::from_secs(300),
                self.read.read_until(b'\n', &mut line),
            )
            .await
            .expect("an answer within 300 s")
            .unwrap();
            assert!(n > 0, "connection closed");
            out.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let literal = text
                .trim_end()
                .strip_suffix('}')
                .and_then(|r| r.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            match literal {
                Some(len) => {
                    let mut bytes = vec![0; len];
                    self.read.read_exact(&mut bytes).await.unwrap();
                    out.extend_from_slice(&bytes);
                }
                None => return out,
            }
        }
    }

    /// The untagged responses and the tagged line's text after the tag.
    async fn cmd(&mut self, command: &str) -> (Vec<Vec<u8>>, String) {
        self.tag += 1;
        let tag = format!("t{} ", self.tag);
        self.write
            .write_all(format!("{tag}{command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut untagged = Vec::new();
        loop {
            let r = self.response().await;
            if let Some(rest) = r.strip_prefix(tag.as_bytes()) {
                return (
                    untagged,
                    String::from_utf8_lossy(rest).trim_end().to_string(),
                );
            }
            untagged.push(r);
        }
    }
}

/// (RFC822.SIZE, length of the BODY[] literal) of a FETCH response.
fn size_and_body(response: &[u8]) -> (u64, usize) {
    let text = String::from_utf8_lossy(response);
    let size = text
        .split("RFC822.SIZE ")
        .nth(1)
        .and_then(|r| r.split([' ', ')']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no RFC822.SIZE in {text}"));
    let body = text
        .split("BODY[] {")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no BODY[] literal in {text}"));
    (size, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_fetched_under_resets_are_never_served_or_kept_empty() {
    let demo = support::demo();
    deliver(&demo.sim, 36).await;
    let mut c = Imap::login(&demo.imap).await;
    let (_, done) = c.cmd("SELECT INBOX").await;
    assert!(done.starts_with("OK"), "{done}");

    faults(
        &demo.sim,
        reqwest::Method::POST,
        Some(json!({"reset_rate": 0.3})),
    )
    .await;
    // Cold fetches of every body while connections break: each may end
    // in OK or NO (a transient failure), never with an empty body served.
    for _ in 0..3 {
        let (responses, _) = c.cmd("UID FETCH 1:* (RFC822.SIZE BODY.PEEK[])").await;
        for r in responses
            .iter()
            .filter(|r| r.starts_with(b"* ") && r.ends_with(b")\r\n"))
        {
            if String::from_utf8_lossy(r).contains("BODY[]") {
                let (size, body) = size_and_body(r);
                assert!(size > 0 && body > 0, "served empty under resets");
            }
        }
    }
    faults(&demo.sim, reqwest::Method::DELETE, None).await;

    let (responses, done) = c.cmd("UID FETCH 1:* (RFC822.SIZE BODY.PEEK[])").await;
    assert!(done.starts_with("OK"), "{done}");
    let fetched: Vec<(u64, usize)> = responses
        .iter()
        .filter(|r| String::from_utf8_lossy(r).contains("BODY[]"))
        .map(|r| size_and_body(r))
        .collect();
    assert!(fetched.len() >= 36, "{} messages", fetched.len());
    for (size, body) in &fetched {
        assert!(*size > 0, "RFC822.SIZE 0 after the faults stopped");
        assert_eq!(*size as usize, *body);
    }

    // Nothing empty was kept: no content is the SHA-256 of nothing.
    let db = rusqlite::Connection::open(demo.dir.path().join("graphgate.sqlite3")).unwrap();
    let (empty, kept): (i64, i64) = db
        .query_row(
            "SELECT SUM(content_hash = ?1), COUNT(content_hash) FROM messages",
            [EMPTY_SHA256],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(empty, 0, "{empty} messages recorded with empty contents");
    assert!(kept >= 36);

    // The cached files are the owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let cache = demo.dir.path().join("cache");
        let mut files = 0;
        for prefix in std::fs::read_dir(&cache).unwrap() {
            let prefix = prefix.unwrap().path();
            let mode = std::fs::metadata(&prefix).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", prefix.display());
            for file in std::fs::read_dir(&prefix).unwrap() {
                let path = file.unwrap().path();
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                files += 1;
            }
        }
        assert!(files >= 36, "{files} cached files");
    }
}

/// Cache files an older version wrote 0644 (in 0755 directories) are
/// made the owner's alone when the gateway starts.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_files_of_older_versions_are_made_private_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("cache").join("ab");
    std::fs::create_dir_all(&prefix).unwrap();
    let file = prefix.join(format!("ab{}", "0".repeat(62)));
    std::fs::write(&file, b"Subject: old\r\n\r\nbody\r\n").unwrap();
    for p in [dir.path().join("cache"), prefix.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = support::demo_command(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::banner(&mut child, "control");
    let _demo = support::Proc(child);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let deadline = Instant::now() + Duration::from_secs(30);
    while mode(&file) != 0o600 {
        assert!(
            Instant::now() < deadline,
            "the old cache file is still {:o}",
            mode(&file)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mode(&prefix), 0o700);
    assert_eq!(mode(&dir.path().join("cache")), 0o700);
}
