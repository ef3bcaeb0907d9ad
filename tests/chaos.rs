//! The chaos soak (issue 7): `graphgate sim` as the tenant, injecting about
//! 20% faults (429 with Retry-After, 503, connection resets, added latency),
//! and `graphgate serve` as the gateway, killed with SIGKILL and restarted
//! on the same data directory and ports several times while concurrent
//! clients work through it.
//!
//! - SMTP: every message that got 250 is in the recipient's mailbox exactly
//!   once, with the body bytes that were sent and the same Subject and
//!   Message-ID; every message that did not get 250 is there once or not
//!   at all.
//! - IMAP: concurrent clients store flags, move and expunge; afterwards the
//!   simulated mailbox (read through Graph) and every client's view agree,
//!   whatever an acknowledged operation promised holds, and no UID ever
//!   named two different messages.
//!
//! The short form runs in `cargo test`; the long form on demand:
//! `GRAPHGATE_CHAOS_N=10000 cargo test --release --test chaos -- --nocapture`
//! (N messages through SMTP, N/10 messages worked on over IMAP). Each test
//! prints one summary line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use graphgate::secret::Secret;
use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::store::{AuthProfile, NewAccount, SpoolState, Store, StoreKey};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

mod support;

use support::{BIN, Proc, Sim, banner};

/// The size of the run: messages sent through SMTP (the IMAP part works on
/// a tenth of it, at least 48).
const SIZE_VAR: &str = "GRAPHGATE_CHAOS_N";
const SHORT_N: usize = 500;

fn size() -> usize {
    match std::env::var(SIZE_VAR) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{SIZE_VAR}={v:?} is not a number")),
        Err(_) => SHORT_N,
    }
}

/// About 20% of the Graph and Entra requests fail: 5% resets, 5% 429 with
/// Retry-After: 1, 5% 503 — and every request waits 5 ms more. (The 5%
/// throttle plus 5% errors plus 5% resets is 15% of requests drawn; with
/// the retries they cause, about a fifth of what the gateway sends fails.)
fn faults() -> Value {
    serde_json::json!({
        "throttle_rate": 0.05, "retry_after_s": 1, "error_rate": 0.05,
        "reset_rate": 0.05, "latency_ms": 5
    })
}

/// How long anything may take to come back before the test gives up.
const PATIENCE: Duration = Duration::from_secs(300);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// The tenant, seen from outside the gateway.

struct Tenant {
    sim: Sim,
    http: reqwest::Client,
}

impl Tenant {
    fn start() -> Tenant {
        Tenant {
            sim: support::sim(false),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self) -> &str {
        &self.sim.url
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let mut request = self.http.request(method, format!("{}{path}", self.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    async fn faults_on(&self) {
        self.control(reqwest::Method::POST, "/_sim/faults", Some(faults()))
            .await;
    }

    async fn faults_off(&self) {
        self.control(reqwest::Method::DELETE, "/_sim/faults", None)
            .await;
    }

    async fn token(&self, upn: &str) -> String {
        support::token(self.url(), upn).await
    }

    /// Every message of a folder (`folder` is an id or a well-known name),
    /// all pages, with the properties `select`.
    async fn messages(&self, token: &str, folder: &str, select: &str) -> Vec<Value> {
        let mut url = format!(
            "{}/v1.0/me/mailFolders/{folder}/messages?$select={select}&$top=100",
            self.url()
        );
        let mut out = Vec::new();
        loop {
            let page: Value = self
                .http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let values = page["value"]
                .as_array()
                .unwrap_or_else(|| panic!("no messages in {page}"));
            out.extend(values.iter().cloned());
            match page["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_string(),
                None => return out,
            }
        }
    }

    async fn mime(&self, token: &str, id: &str) -> Vec<u8> {
        let response = self
            .http
            .get(format!("{}/v1.0/me/messages/{id}/$value", self.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap().to_vec()
    }

    async fn create_folder(&self, token: &str, name: &str) -> String {
        let created: Value = self
            .http
            .post(format!("{}/v1.0/me/mailFolders", self.url()))
            .bearer_auth(token)
            .json(&serde_json::json!({ "displayName": name }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"]
            .as_str()
            .unwrap_or_else(|| panic!("folder not created: {created}"))
            .to_string()
    }

    async fn deliver(&self, to: &str, mime: &str) {
        let response = self
            .http
            .post(format!("{}/_sim/mail/deliver?to={to}", self.url()))
            .body(mime.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

// ---------------------------------------------------------------------------
// The gateway: one data directory and fixed ports, any number of lives.

struct Gateway {
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    /// The highest VmHWM (kB) any of its processes reached.
    peak_rss_kb: u64,
    kills: usize,
}

impl Gateway {
    /// A data directory whose configuration points at `tenant` with these
    /// listeners (`""` = off), and alice signed in.
    async fn new(tenant: &Tenant, smtp: &str, imap: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "data_dir = {data:?}\n\
             [microsoft]\nauthority_url = {url:?}\ngraph_url = {url:?}\n\
             tenant = {DEMO_TENANT_ID:?}\nclient_id = {DEMO_PUBLIC_CLIENT_ID:?}\n\
             [smtp]\nlisten = {smtp:?}\nimplicit_tls_listen = \"\"\n\
             sync_window_s = 2\nin_doubt_grace_s = 1\nretry_base_s = 1\n\
             [imap]\nlisten = {imap:?}\nimplicit_tls_listen = \"\"\nidle_poll_s = 1\n\
             [admin]\nlisten = \"\"\n",
            data = dir.path().display().to_string(),
            url = tenant.url(),
        );
        std::fs::write(dir.path().join("graphgate.toml"), config).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let account = store
            .add_account(&NewAccount {
                login: "alice@example.com".into(),
                password: Secret::new("alice".into()),
                mailbox: "alice@example.com".into(),
                auth_profile: AuthProfile::Delegated,
                aliases: vec![],
                shared_mailboxes: vec![],
            })
            .unwrap();
        let tokens = graphgate::cli::sign_in_via_simulator(tenant.url(), "alice@example.com")
            .await
            .unwrap();
        let key = StoreKey::load(dir.path()).unwrap();
        graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
        Gateway {
            dir,
            proc: None,
            peak_rss_kb: 0,
            kills: 0,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.path().join("gateway.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `graphgate serve` on the data directory, once it says it runs.
    fn start(&mut self) {
        assert!(self.proc.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.path().join("graphgate.toml"))
            .env("RUST_LOG", "graphgate=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        banner(&mut child, "graphgate is running");
        self.proc = Some(Proc(child));
    }

    fn sample_rss(&mut self) {
        if let Some(proc) = &self.proc {
            let status = std::fs::read_to_string(format!("/proc/{}/status", proc.0.id()))
                .unwrap_or_default();
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .unwrap_or(0);
            self.peak_rss_kb = self.peak_rss_kb.max(hwm);
        }
    }

    /// SIGKILL (`Child::kill`), and wait for the process to be gone.
    fn kill(&mut self) {
        self.sample_rss();
        if let Some(mut proc) = self.proc.take() {
            if let Ok(Some(status)) = proc.0.try_wait() {
                panic!(
                    "the gateway died by itself ({status}); log:\n{}",
                    self.log()
                );
            }
            proc.0.kill().unwrap();
            proc.0.wait().unwrap();
            self.kills += 1;
        }
    }

    /// The gateway is still running (did not exit or panic on its own).
    fn assert_alive(&mut self) {
        if let Some(proc) = &mut self.proc
            && let Ok(Some(status)) = proc.0.try_wait()
        {
            panic!(
                "the gateway died by itself ({status}); log:\n{}",
                self.log()
            );
        }
    }

    /// Spool entries not yet in a final state.
    fn waiting(&self) -> Vec<String> {
        Store::open(self.path())
            .unwrap()
            .spool_list(None, None)
            .unwrap()
            .iter()
            .filter(|e| matches!(e.state, SpoolState::Queued | SpoolState::Sending))
            .map(|e| format!("{e:?}"))
            .collect()
    }

    async fn drained(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let waiting = self.waiting();
            if waiting.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the spool still has {} message(s) waiting: {waiting:#?}",
                waiting.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Kill and restart the gateway each time `progress` passes one of
/// `kills` evenly spaced marks of `total`; gives the gateway back when
/// `finished` reaches `total`.
fn killer(
    mut gateway: Gateway,
    kills: usize,
    total: usize,
    progress: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Gateway> {
    tokio::spawn(async move {
        for k in 1..=kills {
            let mark = total * k / (kills + 1);
            while progress.load(Ordering::SeqCst) < mark && finished.load(Ordering::SeqCst) < total
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
                tokio::task::block_in_place(|| gateway.assert_alive());
            }
            if finished.load(Ordering::SeqCst) >= total {
                break;
            }
            tokio::task::block_in_place(|| {
                gateway.kill();
                gateway.start();
            });
        }
        gateway
    })
}

// ---------------------------------------------------------------------------
// SMTP.

/// A submission session as alice (AUTH PLAIN, allowed on loopback).
struct Smtp {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 250 after the final dot.
    Accepted,
    /// Any other reply (to MAIL, RCPT, DATA or the final dot).
    Refused(String),
    /// The connection died after the final dot was sent, before a reply.
    InDoubt,
}

async fn timed<T>(f: impl std::future::Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

impl Smtp {
    async fn open(addr: &str) -> std::io::Result<Smtp> {
        let (read, write) = TcpStream::connect(addr).await?.into_split();
        let mut smtp = Smtp {
            read: BufReader::new(read),
            write,
        };
        smtp.expect("220").await?;
        smtp.say("EHLO chaos").await?;
        smtp.expect("250").await?;
        let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alice@example.com\0alice");
        smtp.say(&format!("AUTH PLAIN {plain}")).await?;
        smtp.expect("235").await?;
        Ok(smtp)
    }

    async fn say(&mut self, line: &str) -> std::io::Result<()> {
        timed(self.write.write_all(format!("{line}\r\n").as_bytes())).await
    }

    /// The last line of the next reply.
    async fn reply(&mut self) -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if timed(self.read.read_line(&mut line)).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.trim_end().to_string());
            }
        }
    }

    async fn expect(&mut self, code: &str) -> std::io::Result<()> {
        let reply = self.reply().await?;
        if reply.starts_with(code) {
            Ok(())
        } else {
            Err(std::io::Error::other(reply))
        }
    }

    /// Submit `message` (unstuffed); `Err` when the connection failed
    /// before the final dot was sent (so the message was not submitted).
    async fn send(&mut self, message: &[u8]) -> std::io::Result<Outcome> {
        for (command, code) in [
            ("MAIL FROM:<alice@example.com>", "250"),
            ("RCPT TO:<bob@example.com>", "250"),
            ("DATA", "354"),
        ] {
            self.say(command).await?;
            let reply = self.reply().await?;
            if !reply.starts_with(code) {
                self.say("RSET").await?;
                self.reply().await?;
                return Ok(Outcome::Refused(format!("{reply} (to {command})")));
            }
        }
        let mut stuffed = Vec::with_capacity(message.len() + 16);
        for line in message.split_inclusive(|b| *b == b'\n') {
            if line.first() == Some(&b'.') {
                stuffed.push(b'.');
            }
            stuffed.extend_from_slice(line);
        }
        stuffed.extend_from_slice(b".\r\n");
        timed(self.write.write_all(&stuffed)).await?;
        Ok(match self.reply().await {
            Ok(reply) if reply.starts_with("250") => Outcome::Accepted,
            Ok(reply) => Outcome::Refused(reply),
            Err(_) => Outcome::InDoubt,
        })
    }
}

/// A session, waiting for the gateway to come back if it is down.
async fn smtp_session(addr: &str) -> Smtp {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match Smtp::open(addr).await {
            Ok(smtp) => return smtp,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no SMTP session at {addr} for {PATIENCE:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn message_id(run: &str, i: usize) -> String {
    format!("<chaos-{i}.{run}@example.com>")
}

/// Message `i`: its own Message-ID, Subject and body marker, a line that
/// needs dot-stuffing, and a length that varies.
fn smtp_message(run: &str, i: usize) -> Vec<u8> {
    let mut text = format!(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n\
         Subject: chaos {i} of {run}\r\nMessage-ID: {mid}\r\n\
         Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         marker chaos-body-{i}-{run}\r\n\
         .a line that starts with a dot\r\n",
        mid = message_id(run, i)
    );
    for k in 0..i % 7 {
        text.push_str(&format!(
            "line {k} of message {i}: {}\r\n",
            "x".repeat(k * 10)
        ));
    }
    text.push_str("the end\r\n");
    text.into_bytes()
}

fn split_header(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, b""),
    }
}

/// The unfolded value of header `name` (first occurrence).
fn header(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header)
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    text.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_under_faults_and_sigkills_delivers_every_250_exactly_once() {
    let started = Instant::now();
    let n = size();
    let clients = 8;
    let kills = if n > SHORT_N { 8 } else { 3 };
    let run = format!("{:x}", rand::random::<u32>());

    let tenant = Tenant::start();
    let smtp_addr = format!("127.0.0.1:{}", free_port());
    let mut gateway = Gateway::new(&tenant, &smtp_addr, "").await;
    tokio::task::block_in_place(|| gateway.start());
    tenant.faults_on().await;

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<BTreeMap<usize, Outcome>>> = Arc::default();
    let killing = killer(gateway, kills, n, done.clone(), done.clone());
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, done, outcomes) = (next.clone(), done.clone(), outcomes.clone());
        let (addr, run) = (smtp_addr.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut session: Option<Smtp> = None;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let message = smtp_message(&run, i);
                // A connection that fails before the final dot has not
                // submitted the message: try again on a new one.
                let outcome = loop {
                    let mut smtp = match session.take() {
                        Some(smtp) => smtp,
                        None => smtp_session(&addr).await,
                    };
                    match smtp.send(&message).await {
                        Ok(Outcome::InDoubt) => break Outcome::InDoubt,
                        Ok(outcome) => {
                            session = Some(smtp);
                            break outcome;
                        }
                        Err(_) => continue,
                    }
                };
                outcomes.lock().unwrap().insert(i, outcome);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut gateway = killing.await.unwrap();
    let sent_in = started.elapsed();

    tenant.faults_off().await;
    gateway.drained().await;
    gateway.assert_alive();
    gateway.sample_rss();

    // The recipient's mailbox, through Graph.
    let token = tenant.token("bob@example.com").await;
    let inbox = tenant
        .messages(&token, "inbox", "id,subject,internetMessageId")
        .await;
    let mut copies: HashMap<String, Vec<String>> = HashMap::new();
    for m in &inbox {
        copies
            .entry(
                m["internetMessageId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_default()
            .push(m["id"].as_str().unwrap().to_string());
    }
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), n);
    let (mut accepted, mut refused, mut in_doubt) = (0, 0, 0);
    let (mut delivered, mut duplicates, mut lost, mut unaccepted_delivered) = (0, 0, 0, 0);
    let (mut identical, mut mismatched) = (0, Vec::new());
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (&i, outcome) in &outcomes {
        let mid = message_id(&run, i);
        let ids = copies.get(&mid).cloned().unwrap_or_default();
        match outcome {
            Outcome::Accepted => accepted += 1,
            Outcome::Refused(reply) => {
                refused += 1;
                *refusals.entry(reply.chars().take(3).collect()).or_default() += 1;
            }
            Outcome::InDoubt => in_doubt += 1,
        }
        if !ids.is_empty() {
            delivered += 1;
        }
        if ids.len() > 1 {
            duplicates += 1;
            problems.push(format!("{mid} ({outcome:?}) delivered {} times", ids.len()));
        }
        if *outcome == Outcome::Accepted && ids.is_empty() {
            lost += 1;
            problems.push(format!("{mid} got 250 and was never delivered"));
        }
        if *outcome != Outcome::Accepted && !ids.is_empty() {
            unaccepted_delivered += 1;
        }
        let sent = smtp_message(&run, i);
        let (sent_header, sent_body) = split_header(&sent);
        for id in &ids {
            let stored = tenant.mime(&token, id).await;
            if stored == sent {
                identical += 1;
            }
            let (stored_header, stored_body) = split_header(&stored);
            for name in ["Subject", "Message-ID", "From", "To"] {
                if header(stored_header, name) != header(sent_header, name) {
                    mismatched.push(format!("{mid}: {name} differs"));
                }
            }
            if stored_body != sent_body {
                mismatched.push(format!(
                    "{mid}: body differs:\n{:?}\nvs sent\n{:?}",
                    String::from_utf8_lossy(stored_body),
                    String::from_utf8_lossy(sent_body)
                ));
            }
        }
    }
    println!(
        "chaos smtp: n={n} clients={clients} kills={kills} accepted={accepted} \
         refused={refused} {refusals:?} in_doubt={in_doubt} delivered={delivered} \
         duplicates={duplicates} lost={lost} not_accepted_but_delivered={unaccepted_delivered} \
         byte_identical={identical} peak_rss_kb={} sent_in={:.1}s total={:.1}s",
        gateway.peak_rss_kb,
        sent_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        gateway.kills, kills,
        "the gateway was not killed as planned"
    );
    assert!(accepted > 0, "nothing was accepted");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(mismatched.is_empty(), "{mismatched:#?}");
}

// ---------------------------------------------------------------------------
// IMAP.

/// A raw IMAP session as alice (LOGIN, allowed on loopback).
struct Imap {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    tag: u32,
}

/// The untagged lines (literals inlined) and the tagged status of one
/// command.
struct Answer {
    untagged: Vec<String>,
    status: String,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }
}

/// `{n}` or `{n+}` at the end of a line: a literal of n bytes follows.
fn literal_len(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

impl Imap {
    async fn open(addr: &str) -> std::io::Result<Imap> {
        let (read, write) = TcpStream::connect(addr).await?.into_split();
        let mut imap = Imap {
            read: BufReader::new(read),
            write,
            tag: 0,
        };
        let greeting = imap.line().await?;
        if !greeting.starts_with("* OK") {
            return Err(std::io::Error::other(greeting));
        }
        let login = imap.command("LOGIN alice@example.com alice").await?;
        if !login.ok() {
            return Err(std::io::Error::other(login.status));
        }
        Ok(imap)
    }

    /// One response line, with any literals it announces inlined.
    async fn line(&mut self) -> std::io::Result<String> {
        let mut out = String::new();
        loop {
            let mut raw = Vec::new();
            if timed(self.read.read_until(b'\n', &mut raw)).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let text = String::from_utf8_lossy(&raw).into_owned();
            out.push_str(&text);
            match literal_len(text.trim_end()) {
                Some(len) => {
                    let mut literal = vec![0; len];
                    timed(self.read.read_exact(&mut literal)).await?;
                    out.push_str(&String::from_utf8_lossy(&literal));
                }
                None => return Ok(out.trim_end().to_string()),
            }
        }
    }

    async fn command(&mut self, command: &str) -> std::io::Result<Answer> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        timed(
            self.write
                .write_all(format!("{tag} {command}\r\n").as_bytes()),
        )
        .await?;
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await?;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                return Ok(Answer {
                    untagged,
                    status: status.to_string(),
                });
            }
            untagged.push(line);
        }
    }

    /// SELECT `folder`, noting its UIDVALIDITY in `book`.
    async fn select(&mut self, folder: &str, book: &UidBook) -> std::io::Result<Answer> {
        let answer = self.command(&format!("SELECT \"{folder}\"")).await?;
        if answer.ok() {
            for line in &answer.untagged {
                if let Some(rest) = line.split("[UIDVALIDITY ").nth(1) {
                    let validity = rest.split(']').next().unwrap_or_default().to_string();
                    book.validity(folder, &validity);
                }
            }
        }
        Ok(answer)
    }

    /// `UID FETCH set (UID FLAGS Message-ID)` in the selected `folder`,
    /// each answer noted in `book`.
    async fn fetch(
        &mut self,
        folder: &str,
        set: &str,
        book: &UidBook,
    ) -> std::io::Result<Option<Vec<Fetched>>> {
        let answer = self
            .command(&format!(
                "UID FETCH {set} (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
            ))
            .await?;
        if !answer.ok() {
            return Ok(None);
        }
        let fetched: Vec<Fetched> = answer.untagged.iter().filter_map(|l| fetched(l)).collect();
        for f in &fetched {
            book.saw(folder, f.uid, &f.message_id);
        }
        Ok(Some(fetched))
    }
}

/// One message as a FETCH shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Fetched {
    uid: u32,
    message_id: String,
    seen: bool,
    flagged: bool,
}

fn fetched(line: &str) -> Option<Fetched> {
    let items = line.strip_prefix("* ")?.split_once(" FETCH (")?.1;
    let uid = items
        .split("UID ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let flags = items.split("FLAGS (").nth(1)?.split(')').next()?;
    let lower = items.to_ascii_lowercase();
    let at = lower.find("message-id:")? + "message-id:".len();
    let message_id = items[at..]
        .trim_start()
        .split_whitespace()
        .next()?
        .to_string();
    Some(Fetched {
        uid,
        message_id,
        seen: flags.contains("\\Seen"),
        flagged: flags.contains("\\Flagged"),
    })
}

/// Every (folder, UID) → Message-ID and folder → UIDVALIDITY any client
/// ever saw; a second meaning is a broken promise, noted.
#[derive(Default)]
struct UidBook {
    uids: Mutex<HashMap<(String, u32), String>>,
    validities: Mutex<HashMap<String, String>>,
    broken: Mutex<Vec<String>>,
}

impl UidBook {
    fn saw(&self, folder: &str, uid: u32, message_id: &str) {
        let mut uids = self.uids.lock().unwrap();
        let known = uids
            .entry((folder.to_string(), uid))
            .or_insert_with(|| message_id.to_string());
        if known != message_id {
            self.broken
                .lock()
                .unwrap()
                .push(format!("{folder} UID {uid} was {known}, now {message_id}"));
        }
    }

    fn validity(&self, folder: &str, validity: &str) {
        let mut validities = self.validities.lock().unwrap();
        let known = validities
            .entry(folder.to_string())
            .or_insert_with(|| validity.to_string());
        if known != validity {
            self.broken
                .lock()
                .unwrap()
                .push(format!("{folder} UIDVALIDITY was {known}, now {validity}"));
        }
    }
}

/// What a client does to one message, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Seen,
    Flag,
    Delete,
    Expunge,
    Move,
}

impl Op {
    fn command(self, uid: u32) -> String {
        match self {
            Op::Seen => format!("UID STORE {uid} +FLAGS.SILENT (\\Seen)"),
            Op::Flag => format!("UID STORE {uid} +FLAGS.SILENT (\\Flagged)"),
            Op::Delete => format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
            Op::Expunge => format!("UID EXPUNGE {uid}"),
            Op::Move => format!("UID MOVE {uid} {MOVED}"),
        }
    }
}

fn plan(j: usize) -> &'static [Op] {
    match j % 5 {
        0 => &[Op::Seen],
        1 => &[Op::Seen, Op::Flag],
        2 => &[Op::Flag, Op::Move],
        3 => &[Op::Delete, Op::Expunge],
        _ => &[Op::Seen, Op::Move],
    }
}

const MOVED: &str = "Moved";

/// The last answer each operation got: OK, NO/BAD, or none (the
/// connection died, every time it was tried).
#[derive(Debug, Clone, PartialEq)]
enum Acked {
    Ok,
    Refused(String),
    Unknown,
}

/// A session with INBOX selected, waiting for the gateway to come back.
async fn imap_session(addr: &str, book: &UidBook) -> Imap {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let attempt = async {
            let mut imap = Imap::open(addr).await?;
            let selected = imap.select("INBOX", book).await?;
            if selected.ok() {
                Ok(imap)
            } else {
                Err(std::io::Error::other(selected.status))
            }
        };
        match attempt.await {
            Ok(imap) => return imap,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no IMAP session at {addr} for {PATIENCE:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A folder as Graph has it: Message-ID → (isRead, flagged), and how many
/// copies of each.
async fn graph_folder(
    tenant: &Tenant,
    token: &str,
    folder: &str,
) -> (BTreeMap<String, (bool, bool)>, HashMap<String, usize>) {
    let mut state = BTreeMap::new();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in tenant
        .messages(token, folder, "internetMessageId,isRead,flag")
        .await
    {
        let mid = m["internetMessageId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *copies.entry(mid.clone()).or_default() += 1;
        state.insert(
            mid,
            (m["isRead"] == true, m["flag"]["flagStatus"] == "flagged"),
        );
    }
    (state, copies)
}

/// A client's view of a folder in the same terms.
fn imap_folder(fetched: &[Fetched]) -> BTreeMap<String, (bool, bool)> {
    fetched
        .iter()
        .map(|f| (f.message_id.clone(), (f.seen, f.flagged)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imap_under_faults_and_sigkills_agrees_with_the_mailbox_and_keeps_uids() {
    let started = Instant::now();
    let m = (size() / 10).max(48);
    let clients = 4;
    let kills = if m > SHORT_N / 10 { 5 } else { 2 };
    let run = format!("{:x}", rand::random::<u32>());

    let tenant = Tenant::start();
    let token = tenant.token("alice@example.com").await;
    let moved_id = tenant.create_folder(&token, MOVED).await;
    let ids: Vec<String> = (0..m)
        .map(|j| format!("<imap-chaos-{j}.{run}@example.com>"))
        .collect();
    for (j, mid) in ids.iter().enumerate() {
        tenant
            .deliver(
                "alice@example.com",
                &format!(
                    "From: x@external.example\r\nTo: alice@example.com\r\n\
                     Subject: imap chaos {j}\r\nMessage-ID: {mid}\r\n\r\nbody {j}\r\n"
                ),
            )
            .await;
    }
    let imap_addr = format!("127.0.0.1:{}", free_port());
    let mut gateway = Gateway::new(&tenant, "", &imap_addr).await;
    tokio::task::block_in_place(|| gateway.start());

    // Before the chaos: every message's UID.
    let book = Arc::new(UidBook::default());
    let mut first = imap_session(&imap_addr, &book).await;
    let listed = first.fetch("INBOX", "1:*", &book).await.unwrap().unwrap();
    let uid_of: HashMap<String, u32> = listed
        .iter()
        .map(|f| (f.message_id.clone(), f.uid))
        .collect();
    assert_eq!(uid_of.len(), m, "{listed:?}");
    drop(first);

    tenant.faults_on().await;
    let total_ops: usize = (0..m).map(|j| plan(j).len()).sum();
    let done = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<BTreeMap<(usize, usize), Acked>>> = Arc::default();
    let killing = killer(gateway, kills, total_ops, done.clone(), done.clone());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (done, acked, book) = (done.clone(), acked.clone(), book.clone());
        let addr = imap_addr.clone();
        let mine: Vec<(usize, u32)> = (c..m)
            .step_by(clients)
            .map(|j| (j, uid_of[&ids[j]]))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut session: Option<Imap> = None;
            for (j, uid) in mine {
                for (k, op) in plan(j).iter().enumerate() {
                    // A dropped connection leaves the operation undecided:
                    // try it again (each is idempotent) on a new one.
                    let mut outcome = Acked::Unknown;
                    for _ in 0..10 {
                        let mut imap = match session.take() {
                            Some(imap) => imap,
                            None => imap_session(&addr, &book).await,
                        };
                        let Ok(answer) = imap.command(&op.command(uid)).await else {
                            continue;
                        };
                        outcome = if answer.ok() {
                            Acked::Ok
                        } else {
                            Acked::Refused(answer.status.clone())
                        };
                        // What the UID means now (still in INBOX unless
                        // moved or expunged).
                        if imap.fetch("INBOX", &uid.to_string(), &book).await.is_ok() {
                            session = Some(imap);
                        }
                        break;
                    }
                    acked.lock().unwrap().insert((j, k), outcome);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
            session
        }));
    }
    let mut survivors = Vec::new();
    for task in tasks {
        survivors.push(task.await.unwrap());
    }
    let mut gateway = killing.await.unwrap();
    let worked_in = started.elapsed();
    tenant.faults_off().await;
    gateway.assert_alive();
    gateway.sample_rss();

    // The mailbox as Graph has it.
    let (inbox, inbox_copies) = graph_folder(&tenant, &token, "inbox").await;
    let (moved, moved_copies) = graph_folder(&tenant, &token, &moved_id).await;
    let (deleted, deleted_copies) = graph_folder(&tenant, &token, "deleteditems").await;
    let mut problems = Vec::new();
    let acked = acked.lock().unwrap().clone();
    let (mut ok, mut refused, mut unknown) = (0, 0, 0);
    for outcome in acked.values() {
        match outcome {
            Acked::Ok => ok += 1,
            Acked::Refused(_) => refused += 1,
            Acked::Unknown => unknown += 1,
        }
    }
    for (j, mid) in ids.iter().enumerate() {
        let n = |copies: &HashMap<String, usize>| copies.get(mid).copied().unwrap_or(0);
        let (i, mv, d) = (n(&inbox_copies), n(&moved_copies), n(&deleted_copies));
        if i + mv + d != 1 {
            problems.push(format!(
                "{mid}: {i} in INBOX, {mv} in {MOVED}, {d} in Deleted Items"
            ));
            continue;
        }
        let state = inbox.get(mid).or(moved.get(mid)).or(deleted.get(mid));
        let (read, flagged) = state.copied().unwrap_or_default();
        let ops = plan(j);
        let acked_ok = |op: Op| {
            ops.iter()
                .position(|o| *o == op)
                .is_some_and(|k| acked[&(j, k)] == Acked::Ok)
        };
        let mut promise = |what: &str, kept: bool| {
            if !kept {
                problems.push(format!("{mid}: {what} was acknowledged but did not happen"));
            }
        };
        if acked_ok(Op::Seen) {
            promise("\\Seen", read);
        }
        if acked_ok(Op::Flag) {
            promise("\\Flagged", flagged);
        }
        if acked_ok(Op::Move) {
            promise("MOVE", mv == 1);
        }
        if acked_ok(Op::Delete) && acked_ok(Op::Expunge) {
            promise("\\Deleted + UID EXPUNGE", d == 1);
        }
        if !ops.contains(&Op::Move) && !ops.contains(&Op::Expunge) {
            promise("nothing moved it, yet it left INBOX:", i == 1);
        }
    }

    // Every client's view: the session it still holds (after a NOOP;
    // one opened before the last kill is gone), then a fresh one.
    let mut views = 0;
    for (c, session) in survivors.into_iter().enumerate() {
        if let Some(mut imap) = session
            && imap.command("NOOP").await.is_ok()
        {
            let seen = imap.fetch("INBOX", "1:*", &book).await.unwrap().unwrap();
            if imap_folder(&seen) != inbox {
                problems.push(format!(
                    "client {c}'s open session sees INBOX as {:?}, Graph as {inbox:?}",
                    imap_folder(&seen)
                ));
            }
            views += 1;
        }
        let mut imap = imap_session(&imap_addr, &book).await;
        for (folder, graph) in [("INBOX", &inbox), (MOVED, &moved)] {
            let selected = imap.select(folder, &book).await.unwrap();
            assert!(selected.ok(), "SELECT {folder}: {}", selected.status);
            let seen = imap.fetch(folder, "1:*", &book).await.unwrap().unwrap();
            if imap_folder(&seen) != *graph {
                problems.push(format!(
                    "client {c} sees {folder} as {:?}, Graph as {graph:?}",
                    imap_folder(&seen)
                ));
            }
            views += 1;
        }
    }
    let broken = book.broken.lock().unwrap().clone();
    println!(
        "chaos imap: messages={m} clients={clients} kills={} ops={total_ops} ok={ok} \
         refused={refused} unknown={unknown} inbox={} moved={} deleted={} views_compared={views} \
         uids_seen={} uid_meaning_changes={} problems={} peak_rss_kb={} worked_in={:.1}s total={:.1}s",
        gateway.kills,
        inbox.len(),
        moved.len(),
        deleted.len(),
        book.uids.lock().unwrap().len(),
        broken.len(),
        problems.len(),
        gateway.peak_rss_kb,
        worked_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        gateway.kills, kills,
        "the gateway was not killed as planned"
    );
    assert!(broken.is_empty(), "UIDs changed meaning: {broken:#?}");
    assert!(problems.is_empty(), "{problems:#?}");
}
