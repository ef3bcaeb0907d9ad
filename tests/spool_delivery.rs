//! The spool's promise, tested on real processes: `graphgate sim` as the
//! tenant and `graphgate serve` as the gateway, talking over HTTP; the
//! gateway is killed (SIGKILL, or aborted at a chosen point of a delivery)
//! and restarted, the simulator injects 429 storms, 503s, connection resets
//! and revoked grants — and every message that got 250 arrives exactly once
//! in the recipient's simulated mailbox.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use graphgate::secret::Secret;
use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::store::{AuthProfile, NewAccount, SpoolState, Store, StoreKey};
use mail_parser::MimeHeaders;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

mod support;

use support::{BIN, Proc, Sim};

#[path = "spool_delivery/evidence.rs"]
mod evidence;

#[path = "spool_delivery/size.rs"]
mod size;

fn start_sim() -> Sim {
    support::sim(false)
}

/// Read stdout lines until one contains `marker`; `None` if the process
/// ends (or says nothing) first.
fn try_wait_for_line(child: &mut std::process::Child, marker: &str) -> Option<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(&marker) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).ok()
}

impl Sim {
    /// A token of `upn` (password = local part) by the password grant.
    async fn token(&self, upn: &str) -> String {
        support::token(&self.url, upn).await
    }

    /// Subjects of the messages in a folder of `upn`.
    async fn subjects(&self, upn: &str, folder: &str) -> Vec<String> {
        let token = self.token(upn).await;
        let mut url = format!(
            "{}/v1.0/me/mailFolders/{folder}/messages?$select=subject&$top=100",
            self.url
        );
        let mut out = Vec::new();
        loop {
            let page: Value = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for m in page["value"].as_array().unwrap() {
                out.push(m["subject"].as_str().unwrap_or_default().to_string());
            }
            match page["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_string(),
                None => return out,
            }
        }
    }

    /// The raw MIME of the message of `upn`'s Inbox with this subject.
    async fn mime_by_subject(&self, upn: &str, subject: &str) -> Vec<u8> {
        let token = self.token(upn).await;
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1.0/me/mailFolders/inbox/messages?$select=id,subject&$top=100",
                self.url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["subject"] == subject)
            .map(|m| m["id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no message {subject:?} in {upn}'s Inbox"));
        reqwest::Client::new()
            .get(format!("{}/v1.0/me/messages/{id}/$value", self.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }
}

/// A data directory with a configuration pointing at `sim`, accounts alice
/// and bob, alice signed in.
struct Data {
    dir: tempfile::TempDir,
}

impl Data {
    async fn new(sim: &Sim, extra: &str) -> Data {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "data_dir = {data:?}\n\
             [microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
             tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
             [smtp]\nlisten = \"127.0.0.1:0\"\nimplicit_tls_listen = \"\"\n\
             in_doubt_grace_s = 1\nretry_base_s = 1\n{extra}\n\
             [imap]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n[pop3]\nlisten = \"\"\nimplicit_tls_listen = \"\"\n",
            data = dir.path().display().to_string(),
            url = sim.url,
        );
        graphgate::config::write_private_file(
            &dir.path().join("graphgate.toml"),
            config.as_bytes(),
        )
        .unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (login, password) in [("alice@example.com", "alice"), ("bob@example.com", "bob")] {
            store
                .add_account(&NewAccount {
                    login: login.into(),
                    password: Secret::new(password.into()),
                    mailbox: login.into(),
                    auth_profile: AuthProfile::Delegated,
                    aliases: if login.starts_with("alice") {
                        vec!["support@example.com".into(), "bob@example.com".into()]
                    } else {
                        vec![]
                    },
                    shared_mailboxes: vec![],
                })
                .unwrap();
        }
        let data = Data { dir };
        data.sign_in(sim, "alice@example.com").await;
        data
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self) -> Store {
        Store::open(self.path()).unwrap()
    }

    /// Sign `upn` in (as `graphgate login --browser` would) and store the
    /// tokens where the gateway reads them.
    async fn sign_in(&self, sim: &Sim, upn: &str) {
        let tokens = graphgate::cli::sign_in_via_simulator(&sim.url, upn)
            .await
            .unwrap();
        let store = self.store();
        let key = StoreKey::load(self.path()).unwrap();
        let account = store.account(upn).unwrap().unwrap();
        graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    }

    /// Entries not yet in a final state.
    fn waiting(&self) -> usize {
        self.store()
            .spool_list(None, None)
            .unwrap()
            .iter()
            .filter(|e| matches!(e.state, SpoolState::Queued | SpoolState::Sending))
            .count()
    }

    /// Poll until the spool has nothing waiting.
    async fn drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.waiting() > 0 {
            assert!(
                Instant::now() < deadline,
                "the spool still has {} message(s) waiting: {:#?}",
                self.waiting(),
                self.store().spool_list(None, None).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Gateway {
    proc: Proc,
    smtp: String,
}

fn start_gateway(data: &Data, env: &[(&str, &str)]) -> Gateway {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config"])
        .arg(data.path().join("graphgate.toml"))
        .env("RUST_LOG", "graphgate=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(data.path().join("gateway.log"))
                .unwrap(),
        ));
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let Some(line) = try_wait_for_line(&mut child, "graphgate is running") else {
        let log = std::fs::read_to_string(data.path().join("gateway.log")).unwrap_or_default();
        panic!("the gateway did not start; its log:\n{log}");
    };
    let smtp = line
        .split("SMTP ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    Gateway {
        proc: Proc(child),
        smtp,
    }
}

impl Gateway {
    fn kill(self) {
        drop(self.proc);
    }

    /// Wait until the process exits by itself (an abort at a crash point).
    fn wait_exit(mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.proc.0.try_wait().unwrap() {
                assert!(!status.success(), "the gateway exited cleanly: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the gateway did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The final reply line of one SMTP submission as alice (AUTH PLAIN on
/// loopback), or `None` if the connection closed before it.
async fn submit(addr: &str, rcpt: &[&str], message: &[u8]) -> Option<String> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = AsyncBufReader::new(read);
    async fn reply(lines: &mut AsyncBufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line.trim_end().to_string());
            }
        }
    }
    let expect = |r: Option<String>, code: &str| {
        let r = r.expect("connection closed");
        assert!(r.starts_with(code), "expected {code}, got {r}");
    };
    expect(reply(&mut lines).await, "220");
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alice@example.com\0alice");
    let mut commands = vec![
        "EHLO test".to_string(),
        format!("AUTH PLAIN {plain}"),
        "MAIL FROM:<alice@example.com>".into(),
    ];
    commands.extend(rcpt.iter().map(|r| format!("RCPT TO:<{r}>")));
    commands.push("DATA".into());
    let codes = ["250", "235", "250"];
    for (i, command) in commands.iter().enumerate() {
        write
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let want = codes
            .get(i)
            .copied()
            .unwrap_or(if command == "DATA" { "354" } else { "250" });
        expect(reply(&mut lines).await, want);
    }
    write.write_all(message).await.unwrap();
    write.write_all(b"\r\n.\r\n").await.unwrap();
    let last = reply(&mut lines).await;
    let _ = write.write_all(b"QUIT\r\n").await;
    last
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\nSubject: {subject}\r\n\
         Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nHello Bob, this is {subject}.\r\n"
    )
    .into_bytes()
}

/// A multipart message of about `size` bytes whose attachment is `content`.
fn large_message(subject: &str, content: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(content);
    let mut body = String::with_capacity(b64.len() + b64.len() / 38);
    for chunk in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap());
        body.push_str("\r\n");
    }
    format!(
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n--b1\r\n\
         Content-Type: application/octet-stream; name=\"blob.bin\"\r\n\
         Content-Disposition: attachment; filename=\"blob.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--b1--\r\n"
    )
    .into_bytes()
}

fn count(subjects: &[String], subject: &str) -> usize {
    subjects.iter().filter(|s| *s == subject).count()
}

#[tokio::test]
async fn delivered_at_once_and_reported_in_the_reply() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[]);
    let reply = submit(&gw.smtp, &["bob@example.com"], &message("plain one"))
        .await
        .unwrap();
    assert!(reply.starts_with("250 "), "{reply}");
    assert!(reply.contains("delivered to Microsoft 365"), "{reply}");
    assert_eq!(
        count(&sim.subjects("bob@example.com", "inbox").await, "plain one"),
        1
    );
    assert_eq!(
        count(
            &sim.subjects("alice@example.com", "sentitems").await,
            "plain one"
        ),
        1
    );
    let entries = data.store().spool_list(None, None).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, SpoolState::Delivered);
    assert!(
        !Path::new(&entries[0].path).exists(),
        "the spool file of a delivered message is removed"
    );
}

#[tokio::test]
async fn graph_refusal_in_the_window_is_the_smtp_reply() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[]);
    // Alice's local configuration lists bob@example.com as an address she
    // may use, but the tenant grants her no Send As on it: Graph refuses,
    // within the window, and the client hears why.
    let msg = b"From: bob@example.com\r\nTo: bob@example.com\r\nSubject: as bob\r\n\r\nx\r\n";
    let reply = submit(&gw.smtp, &["bob@example.com"], msg).await.unwrap();
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    assert!(reply.contains("ErrorSendAsDenied"), "{reply}");
    assert!(reply.contains("Send As"), "{reply}");
    // Send As on the shared mailbox is granted: delivered.
    let msg =
        b"From: support@example.com\r\nTo: bob@example.com\r\nSubject: as support\r\n\r\nx\r\n";
    let reply = submit(&gw.smtp, &["bob@example.com"], msg).await.unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    let states: Vec<SpoolState> = data
        .store()
        .spool_list(None, None)
        .unwrap()
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(states, vec![SpoolState::Rejected, SpoolState::Delivered]);
    let bad =
        b"From: alice@example.com\r\nTo: carol@example.com\r\nSubject: header only\r\n\r\nx\r\n";
    let reply = submit(&gw.smtp, &["bob@example.com"], bad).await.unwrap();
    assert!(reply.starts_with("554 5.5.4"), "{reply}");
    assert!(reply.contains("carol@example.com"), "{reply}");
}

#[tokio::test]
async fn abort_between_graphs_202_and_the_spool_update_delivers_once() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "after-send")]);
    let reply = submit(&gw.smtp, &["bob@example.com"], &message("crash after 202")).await;
    // The process died before it could answer.
    assert_eq!(reply, None);
    gw.wait_exit();
    assert_eq!(data.waiting(), 1, "the message is in the spool, in doubt");
    // A small message: its bytes are in the row, no file anywhere.
    let entry = &data.store().spool_list(None, None).unwrap()[0];
    assert!(entry.inline && entry.path.is_empty(), "{entry:?}");
    // (The test client ends the data with CRLF . CRLF.)
    assert_eq!(
        data.store().spool_body(entry.id).unwrap().unwrap(),
        [message("crash after 202"), b"\r\n".to_vec()].concat()
    );
    assert_eq!(spool_files(&data), Vec::<PathBuf>::new());
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    assert_eq!(
        count(
            &sim.subjects("bob@example.com", "inbox").await,
            "crash after 202"
        ),
        1
    );
    let entry = &data.store().spool_list(None, None).unwrap()[0];
    assert_eq!(entry.state, SpoolState::Delivered);
    assert_eq!(entry.attempts, 1, "found in Sent Items, not sent again");
    assert!(!entry.inline, "the bytes go once it is delivered");
}

/// Message files in the spool's incoming directory.
fn spool_files(data: &Data) -> Vec<PathBuf> {
    let dir = graphgate::spool::spool_dir(data.path()).join("incoming");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test]
async fn a_message_too_large_for_the_row_is_spooled_in_a_file_and_delivered_once_after_a_crash() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    // About 540 KB: above the in-row limit (256 KiB), still one sendMail.
    let content: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
    let msg = large_message("file-backed", &content);
    assert!(msg.len() > graphgate::smtp::server::INLINE_MAX);
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "after-send")]);
    assert_eq!(submit(&gw.smtp, &["bob@example.com"], &msg).await, None);
    gw.wait_exit();
    let entry = data.store().spool_list(None, None).unwrap().remove(0);
    assert_eq!(entry.state, SpoolState::Sending);
    assert!(!entry.inline, "{entry:?}");
    assert_eq!(spool_files(&data), vec![PathBuf::from(&entry.path)]);
    assert_eq!(
        std::fs::read(&entry.path).unwrap(),
        [msg, b"\r\n".to_vec()].concat()
    );
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    assert_eq!(
        count(
            &sim.subjects("bob@example.com", "inbox").await,
            "file-backed"
        ),
        1
    );
    let entry = &data.store().spool_list(None, None).unwrap()[0];
    assert_eq!(entry.state, SpoolState::Delivered);
    assert_eq!(entry.attempts, 1, "found in Sent Items, not sent again");
    assert_eq!(spool_files(&data), Vec::<PathBuf>::new(), "file removed");
    let mime = sim.mime_by_subject("bob@example.com", "file-backed").await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).unwrap();
    let attachment = parsed.attachments().next().expect("an attachment");
    assert_eq!(attachment.contents(), content.as_slice());
}

#[tokio::test]
async fn spool_entries_from_before_the_upgrade_are_delivered_from_their_files() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    // A data directory as graphgate left it at schema 4 (message bytes
    // only in files), with a message queued.
    let store = data.store();
    let alice = store.account("alice@example.com").unwrap().unwrap();
    drop(store);
    let dir = graphgate::spool::spool_dir(data.path()).join("incoming");
    std::fs::create_dir_all(&dir).unwrap();
    let queued = dir.join("old-queued.eml");
    std::fs::write(&queued, message("from before, queued")).unwrap();
    let conn = rusqlite::Connection::open(Store::path_in(data.path())).unwrap();
    conn.execute_batch(
        "DROP INDEX spool_by_fingerprint; ALTER TABLE spool DROP COLUMN fingerprint;
         ALTER TABLE spool DROP COLUMN body; PRAGMA user_version = 4;",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO spool (account_id, state, mail_from, rcpt_to, path, size, message_id,
             attempts, next_attempt_at, accepted_at, updated_at, prefix)
         VALUES (?1, 'queued', 'alice@example.com', '[\"bob@example.com\"]', ?2, ?3,
             'old-queued@example.com', 0, 0, 0, 0,
             'Message-ID: <old-queued@example.com>\r\n')",
        rusqlite::params![
            alice.id.0,
            queued.to_string_lossy(),
            message("from before, queued").len() as i64
        ],
    )
    .unwrap();
    drop(conn);
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    assert_eq!(
        data.store().schema_version().unwrap(),
        graphgate::store::schema::latest()
    );
    assert_eq!(
        count(
            &sim.subjects("bob@example.com", "inbox").await,
            "from before, queued"
        ),
        1
    );
    let entry = &data.store().spool_list(None, None).unwrap()[0];
    assert_eq!(entry.state, SpoolState::Delivered);
    assert!(!queued.exists(), "its file is removed once delivered");
}

#[tokio::test]
async fn abort_before_the_request_sends_after_restart() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "before-send")]);
    assert_eq!(
        submit(
            &gw.smtp,
            &["bob@example.com"],
            &message("crash before send")
        )
        .await,
        None
    );
    gw.wait_exit();
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    assert_eq!(
        count(
            &sim.subjects("bob@example.com", "inbox").await,
            "crash before send"
        ),
        1
    );
}

#[tokio::test]
async fn sigkill_right_after_250_loses_nothing_and_doubles_nothing() {
    let sim = start_sim();
    // A zero window: 250 comes as soon as the message is durable, while the
    // delivery runs — the kill lands at some point of it.
    let data = Data::new(&sim, "sync_window_s = 0").await;
    let gw = start_gateway(&data, &[]);
    let mut subjects = Vec::new();
    for i in 0..8 {
        let subject = format!("kill {i}");
        let reply = submit(&gw.smtp, &["bob@example.com"], &message(&subject))
            .await
            .unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        subjects.push(subject);
    }
    gw.kill();
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    for s in &subjects {
        assert_eq!(count(&inbox, s), 1, "{s}: {inbox:?}");
    }
}

#[tokio::test]
async fn abort_after_the_draft_of_a_large_message_leaves_no_orphan() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let content: Vec<u8> = (0..3_500_000u32).map(|i| (i % 253) as u8).collect();
    let msg = large_message("large crash", &content);
    let gw = start_gateway(&data, &[("GRAPHGATE_CRASH_AT", "after-draft")]);
    assert_eq!(submit(&gw.smtp, &["bob@example.com"], &msg).await, None);
    gw.wait_exit();
    let _gw = start_gateway(&data, &[]);
    data.drained(Duration::from_secs(60)).await;
    assert_eq!(
        count(
            &sim.subjects("bob@example.com", "inbox").await,
            "large crash"
        ),
        1
    );
    assert_eq!(
        count(
            &sim.subjects("alice@example.com", "drafts").await,
            "large crash"
        ),
        0,
        "the interrupted draft was removed"
    );
    let mime = sim.mime_by_subject("bob@example.com", "large crash").await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).unwrap();
    let attachment = parsed.attachments().next().expect("an attachment");
    assert_eq!(attachment.contents(), content.as_slice());
}

#[tokio::test]
async fn thirty_megabytes_go_through_upload_sessions_byte_for_byte() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[]);
    // 22 MB of attachment: about 30 MB of message once base64-encoded.
    let content: Vec<u8> = (0..22_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let msg = large_message("thirty", &content);
    assert!(msg.len() > 29_000_000, "{}", msg.len());
    // The baseline: a small message first (authentication hashes with
    // Argon2id, which alone takes 19 MiB).
    let reply = submit(&gw.smtp, &["bob@example.com"], &message("warm-up"))
        .await
        .unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    let hwm = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let before = hwm(gw.proc.0.id());
    let reply = submit(&gw.smtp, &["bob@example.com"], &msg).await.unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    data.drained(Duration::from_secs(120)).await;
    let mime = sim.mime_by_subject("bob@example.com", "thirty").await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).unwrap();
    let attachment = parsed.attachments().next().expect("an attachment");
    assert_eq!(attachment.attachment_name(), Some("blob.bin"));
    assert!(attachment.contents() == content.as_slice());
    // Peak memory of the gateway process, for the record (not asserted:
    // measurements go in the closing note and the benchmarks).
    eprintln!(
        "gateway peak RSS: {before} kB before, {} kB after a {} byte message",
        hwm(gw.proc.0.id()),
        msg.len()
    );
    let stats: Value = reqwest::get(format!("{}/_sim/stats", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!("simulator routes: {}", stats["by_route"]);
}

#[tokio::test]
async fn faults_429_503_and_resets_still_deliver_each_message_once() {
    let sim = start_sim();
    let data = Data::new(&sim, "sync_window_s = 2").await;
    let gw = start_gateway(&data, &[]);
    sim.control(
        reqwest::Method::POST,
        "/_sim/faults",
        Some(serde_json::json!({
            "throttle_rate": 0.3, "retry_after_s": 1, "error_rate": 0.2, "reset_rate": 0.15
        })),
    )
    .await;
    let mut subjects = Vec::new();
    for i in 0..12 {
        let subject = format!("storm {i}");
        let reply = submit(&gw.smtp, &["bob@example.com"], &message(&subject))
            .await
            .unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        subjects.push(subject);
    }
    sim.control(reqwest::Method::DELETE, "/_sim/faults", None)
        .await;
    data.drained(Duration::from_secs(120)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    for s in &subjects {
        assert_eq!(count(&inbox, s), 1, "{s}: {inbox:?}");
    }
    drop(gw);
}

#[tokio::test]
async fn revoked_grant_mid_queue_waits_for_a_new_sign_in_then_delivers_once() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    let gw = start_gateway(&data, &[]);
    let reply = submit(&gw.smtp, &["bob@example.com"], &message("before revoke"))
        .await
        .unwrap();
    assert!(reply.contains("delivered"), "{reply}");
    sim.control(
        reqwest::Method::POST,
        "/_sim/revoke",
        Some(serde_json::json!({"user": "alice@example.com"})),
    )
    .await;
    sim.control(reqwest::Method::POST, "/_sim/expire_access_tokens", None)
        .await;
    let reply = submit(&gw.smtp, &["bob@example.com"], &message("after revoke"))
        .await
        .unwrap();
    assert!(reply.starts_with("250"), "queued, not refused: {reply}");
    // The account is OFFLINE with the command that fixes it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let account = data.store().account("alice@example.com").unwrap().unwrap();
        if account.state == graphgate::store::AccountState::Offline {
            let error = account.last_error.unwrap_or_default();
            assert!(
                error.contains("graphgate login alice@example.com"),
                "{error}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "alice never went OFFLINE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(data.waiting(), 1);
    // The admin signs in again; the running gateway picks the new tokens up.
    data.sign_in(&sim, "alice@example.com").await;
    graphgate::store::Store::open(data.path())
        .unwrap()
        .spool_list(Some(SpoolState::Queued), None)
        .unwrap()
        .iter()
        .for_each(|e| {
            data.store()
                .spool_update(
                    e.id,
                    SpoolState::Queued,
                    &graphgate::store::SpoolUpdate {
                        next_attempt_at: Some(0),
                        ..Default::default()
                    },
                )
                .unwrap();
        });
    data.drained(Duration::from_secs(60)).await;
    let inbox = sim.subjects("bob@example.com", "inbox").await;
    assert_eq!(count(&inbox, "after revoke"), 1);
    assert_eq!(count(&inbox, "before revoke"), 1);
    drop(gw);
}

#[test]
fn queue_commands_show_retry_and_drop() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(async { start_sim() });
    let data = rt.block_on(Data::new(&sim, ""));
    // bob never signed in: his message waits in the queue.
    let store = data.store();
    let bob = store.account("bob@example.com").unwrap().unwrap();
    let path: PathBuf = data.path().join("waiting.eml");
    std::fs::write(&path, message("waiting")).unwrap();
    let entry = store
        .spool_insert(&graphgate::store::NewSpoolEntry {
            account: bob.id,
            mail_from: "bob@example.com",
            rcpt_to: &["alice@example.com".to_string()],
            path: &path.to_string_lossy(),
            body: None,
            size: 10,
            message_id: Some("w@example.com"),
            prefix: "",
            not_before: None,
            claimed_with: None,
            fingerprint: None,
        })
        .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = run(&["queue", "list"]);
    assert!(
        ok && text.contains("bob@example.com") && text.contains("queued"),
        "{text}"
    );
    let (ok, text) = run(&["queue", "show", &entry.id.0.to_string()]);
    assert!(ok && text.contains("<w@example.com>"), "{text}");
    let (ok, text) = run(&["queue", "retry", &entry.id.0.to_string()]);
    assert!(ok && text.contains("1 message(s) due now"), "{text}");
    let (ok, text) = run(&["queue", "drop", &entry.id.0.to_string()]);
    assert!(ok && text.contains("dropped"), "{text}");
    assert!(!path.exists());
    // Issue 18: `queue show` no longer names the file it removed.
    let (ok, text) = run(&["queue", "show", &entry.id.0.to_string()]);
    assert!(ok, "{text}");
    assert!(!text.contains(&*path.to_string_lossy()), "{text}");
    assert!(
        text.contains("file         removed: the message is dropped"),
        "{text}"
    );
    let (ok, text) = run(&["queue", "drop", &entry.id.0.to_string()]);
    assert!(!ok && text.contains("already dropped"), "{text}");
    let (ok, text) = run(&["queue", "show", "999"]);
    assert!(!ok && text.contains("no message 999"), "{text}");
    let (ok, text) = run(&["queue", "list", "--json", "--all"]);
    assert!(ok, "{text}");
    let list: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(list[0]["state"], "dropped");
}

#[tokio::test]
async fn undeliverable_past_bounce_after_gets_a_dsn_in_the_senders_inbox() {
    let sim = start_sim();
    // 250 at once, and any failure is already past the bounce time.
    let data = Data::new(&sim, "sync_window_s = 0\nbounce_after_h = 0").await;
    let gw = start_gateway(&data, &[]);
    sim.control(
        reqwest::Method::POST,
        "/_sim/faults",
        Some(serde_json::json!({"error_rate": 1.0, "retry_after_s": 1})),
    )
    .await;
    let reply = submit(&gw.smtp, &["bob@example.com"], &message("doomed"))
        .await
        .unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    // Bounced while Graph is down; the notice itself waits for Graph.
    let deadline = Instant::now() + Duration::from_secs(60);
    while data
        .store()
        .spool_list(Some(SpoolState::Bounced), None)
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "never bounced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.control(reqwest::Method::DELETE, "/_sim/faults", None)
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let subject = "Undeliverable: your message was not sent";
    loop {
        if count(&sim.subjects("alice@example.com", "inbox").await, subject) == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no bounce notice in alice's Inbox"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dsn = sim.mime_by_subject("alice@example.com", subject).await;
    // Placed through Graph as an ordinary message (Exchange re-renders the
    // MIME of what it stores), so the person-readable text is what counts.
    let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
    let text = parsed.body_text(0).unwrap_or_default().to_string();
    assert!(text.contains("\"doomed\""), "{text}");
    assert!(text.contains("bob@example.com"), "{text}");
    assert!(text.contains("Reason:"), "{text}");
    assert_eq!(
        count(&sim.subjects("bob@example.com", "inbox").await, "doomed"),
        0
    );
    // Exactly one notice, even as the worker keeps running.
    assert_eq!(
        count(&sim.subjects("alice@example.com", "inbox").await, subject),
        1
    );
    drop(gw);
}

#[tokio::test]
async fn an_account_without_a_sent_copy_sends_through_a_draft_deleted_after_submission() {
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    data.store()
        .set_save_to_sent_items("alice@example.com", false)
        .unwrap();
    let gw = start_gateway(&data, &[]);
    let reply = submit(&gw.smtp, &["bob@example.com"], &message("no copy"))
        .await
        .unwrap();
    assert!(reply.contains("delivered"), "{reply}");
    assert_eq!(
        count(&sim.subjects("bob@example.com", "inbox").await, "no copy"),
        1
    );
    assert_eq!(
        count(
            &sim.subjects("alice@example.com", "sentitems").await,
            "no copy"
        ),
        0
    );
    assert_eq!(
        count(
            &sim.subjects("alice@example.com", "drafts").await,
            "no copy"
        ),
        0
    );
    let entry = &data.store().spool_list(None, None).unwrap()[0];
    assert_eq!(entry.method.map(|m| m.as_str()), Some("draft-ready"));
}

#[tokio::test]
async fn an_app_only_account_sends_as_the_mailboxes_it_lists() {
    use graphgate::sim::tenant::{DEMO_CLIENT_SECRET, DEMO_CONFIDENTIAL_CLIENT_ID};
    let sim = start_sim();
    let data = Data::new(&sim, "").await;
    // The app registration's credential, from a file as in production.
    let secret = data.path().join("client_secret");
    std::fs::write(&secret, DEMO_CLIENT_SECRET).unwrap();
    let config_path = data.path().join("graphgate.toml");
    let config = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace(DEMO_PUBLIC_CLIENT_ID, DEMO_CONFIDENTIAL_CLIENT_ID)
        .replace(
            "[smtp]",
            &format!(
                "client_secret_file = {:?}\n[smtp]",
                secret.display().to_string()
            ),
        );
    graphgate::config::write_private_file(&config_path, config.as_bytes()).unwrap();
    data.store()
        .add_account(&NewAccount {
            login: "scanner".into(),
            password: Secret::new("scan".into()),
            mailbox: "bob@example.com".into(),
            auth_profile: AuthProfile::AppOnly,
            aliases: vec!["alice@example.com".into()],
            shared_mailboxes: vec![],
        })
        .unwrap();
    let gw = start_gateway(&data, &[]);
    let send = |from: &'static str, subject: &'static str| {
        let smtp = gw.smtp.clone();
        async move {
            let stream = TcpStream::connect(&smtp).await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = AsyncBufReader::new(read);
            let plain = base64::engine::general_purpose::STANDARD.encode(b"\0scanner\0scan");
            let script = format!(
                "EHLO t\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<{from}>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n"
            );
            write.write_all(script.as_bytes()).await.unwrap();
            let mut replies = Vec::new();
            while replies.len() < 6 {
                let mut line = String::new();
                lines.read_line(&mut line).await.unwrap();
                if line.as_bytes().get(3) != Some(&b'-') {
                    replies.push(line);
                }
            }
            assert!(replies[5].starts_with("354"), "{replies:?}");
            let body = format!(
                "From: {from}\r\nTo: carol@example.org\r\nSubject: {subject}\r\n\r\nscan\r\n.\r\n"
            );
            write.write_all(body.as_bytes()).await.unwrap();
            let mut line = String::new();
            lines.read_line(&mut line).await.unwrap();
            line
        }
    };
    let own = send("bob@example.com", "from the app as bob").await;
    assert!(own.contains("delivered"), "{own}");
    let other = send("alice@example.com", "from the app as alice").await;
    assert!(other.contains("delivered"), "{other}");
    // Each copy lands in the Sent Items of the mailbox it was sent as.
    assert_eq!(
        count(
            &sim.subjects("bob@example.com", "sentitems").await,
            "from the app as bob"
        ),
        1
    );
    assert_eq!(
        count(
            &sim.subjects("alice@example.com", "sentitems").await,
            "from the app as alice"
        ),
        1
    );
    let stats: Value = reqwest::get(format!("{}/_sim/stats", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["by_route"]["POST /v1.0/users/{id}/sendMail"], 2,
        "{stats}"
    );
}
