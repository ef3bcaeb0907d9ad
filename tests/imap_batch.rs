//! STORE and MOVE over a set cost one `$batch` per 20 messages, not one
//! Graph request per message (issue 15), counted by the simulator
//! (`/_sim/stats`); a message another client deleted meanwhile does not
//! stop the others (Graph answers its inner request 404
//! `ErrorItemNotFound`): the rest are changed and the gone one is
//! expunged from the session.

use std::time::Duration;

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::{NewAccount, Store, StoreKey};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 100;

async fn stats(http: &reqwest::Client, sim: &str) -> Value {
    http.get(format!("{sim}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Graph requests and `$batch` inner requests so far.
async fn counts(http: &reqwest::Client, sim: &str) -> (u64, u64) {
    let s = stats(http, sim).await;
    (
        s["graph_requests"].as_u64().unwrap(),
        s["batch_inner_requests"].as_u64().unwrap(),
    )
}

struct Client {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    /// Send a command; return (untagged lines, tagged line).
    async fn cmd(&mut self, line: &str) -> (Vec<String>, String) {
        let tag = line.split(' ').next().unwrap().to_string();
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let mut untagged = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = tokio::time::timeout(
                Duration::from_secs(120),
                self.read.read_until(b'\n', &mut buf),
            )
            .await
            .expect("an answer")
            .unwrap();
            assert!(n > 0, "connection closed");
            let l = String::from_utf8_lossy(&buf).trim_end().to_string();
            if l.starts_with(&format!("{tag} ")) {
                return (untagged, l);
            }
            untagged.push(l);
        }
    }
}

struct Setup {
    sim: SimState,
    sim_url: String,
    token: String,
    imap: std::net::SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
    _tasks: tokio::task::JoinSet<std::io::Result<()>>,
}

async fn setup() -> Setup {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", listener.local_addr().unwrap());
    let sim = SimState::new(SimConfig {
        public_url: sim_url.clone(),
        seed_messages: false,
        ..SimConfig::default()
    })
    .unwrap();
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(graphgate::sim::serve(listener, sim.clone(), async move {
            stop.cancelled().await
        }));
    }
    let alice = sim.tenant().user("alice@example.com").unwrap().id.clone();
    for i in 0..MESSAGES {
        let mime = format!(
            "From: sender{i}@external.example\r\nTo: alice@example.com\r\nSubject: message {i}\r\n\
             Message-ID: <m{i}@external.example>\r\n\r\nbody {i}\r\n"
        );
        sim.mail().deliver(&alice, "inbox", mime.into_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator(&sim_url, "alice@example.com")
        .await
        .unwrap();
    let token = tokens.access_token.expose().clone();
    graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
    let mut config = graphgate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.microsoft.authority_url = sim_url.clone();
    config.microsoft.graph_url = sim_url.clone();
    config.microsoft.tenant = DEMO_TENANT_ID.into();
    config.microsoft.client_id = DEMO_PUBLIC_CLIENT_ID.into();
    config.smtp.listen = String::new();
    config.smtp.implicit_tls_listen = String::new();
    config.imap.implicit_tls_listen = String::new();
    config.pop3.listen = String::new();
    config.pop3.implicit_tls_listen = String::new();
    let mut tasks = tokio::task::JoinSet::new();
    let gateway = graphgate::gateway::listeners::start(
        &config,
        &graphgate::gateway::Runtime::from_store(
            &config,
            store.clone(),
            graphgate::gateway::KeyMode::LoadOrCreate,
        )
        .unwrap(),
        graphgate::gateway::listeners::Listen {
            imap: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        &stop,
        &mut tasks,
    )
    .await
    .unwrap();
    Setup {
        sim,
        sim_url,
        token,
        imap: gateway.imap.unwrap(),
        stop,
        _dir: dir,
        _tasks: tasks,
    }
}

async fn login(s: &Setup) -> Client {
    let (read, write) = TcpStream::connect(s.imap).await.unwrap().into_split();
    let mut c = Client {
        read: BufReader::new(read),
        write,
    };
    let mut greeting = String::new();
    c.read.read_line(&mut greeting).await.unwrap();
    let (_, ok) = c.cmd("a LOGIN alice@example.com alice").await;
    assert!(ok.starts_with("a OK"), "{ok}");
    let (_, ok) = c.cmd("b SELECT INBOX").await;
    assert!(ok.starts_with("b OK"), "{ok}");
    c
}

/// Delete a message in Graph as another client would (not through the
/// gateway).
async fn delete_behind(s: &Setup, http: &reqwest::Client, subject: &str) {
    let alice = s.sim.tenant().user("alice@example.com").unwrap().id.clone();
    let (id, ..) = s
        .sim
        .mail()
        .messages(&alice, "inbox")
        .into_iter()
        .find(|(_, subj, ..)| subj == subject)
        .unwrap();
    let status = http
        .delete(format!("{}/v1.0/me/messages/{id}", s.sim_url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_over_a_set_is_batched_and_survives_a_gone_message() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let mut c = login(&s).await;
    // Another client deletes one of the messages after this session saw
    // it.
    delete_behind(&s, &http, "message 2").await;

    let (requests, inner) = counts(&http, &s.sim_url).await;
    let (untagged, done) = c.cmd("c STORE 1:100 +FLAGS (\\Flagged)").await;
    assert!(done.starts_with("c OK"), "{done}");
    let (requests_after, inner_after) = counts(&http, &s.sim_url).await;
    // 100 PATCHes in 5 batches of 20 (one request each); no per-message
    // request.
    assert_eq!(inner_after - inner, 100, "inner requests");
    assert!(
        requests_after - requests <= 5,
        "{} Graph requests for STORE 1:100",
        requests_after - requests
    );
    // The gone message does not stop the others: 100 FETCH FLAGS with
    // \Flagged (the gone one as this session's view has it, RFC 2180
    // §4.2.1, as Dovecot answers), and the gone one is expunged from the
    // session at the next NOOP; the others keep \Flagged (below).
    let flagged = untagged
        .iter()
        .filter(|l| l.contains("FETCH") && l.contains("\\Flagged"))
        .count();
    assert_eq!(flagged, 100, "{untagged:?}");
    let (untagged, done) = c.cmd("d NOOP").await;
    assert!(done.starts_with("d OK"), "{done}");
    let (all, _) = c.cmd("e FETCH 1:* (FLAGS)").await;
    let expunged = untagged.iter().any(|l| l == "* 3 EXPUNGE") || all.len() == MESSAGES - 1;
    assert!(expunged, "{untagged:?} {all:?}");
    assert!(
        all.iter()
            .filter(|l| l.contains("FETCH"))
            .all(|l| l.contains("\\Flagged")),
        "{all:?}"
    );
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_over_a_set_is_batched() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let mut c = login(&s).await;
    let (_, ok) = c.cmd("c CREATE Target").await;
    assert!(ok.starts_with("c OK"), "{ok}");

    let (requests, inner) = counts(&http, &s.sim_url).await;
    let (untagged, done) = c.cmd("d MOVE 1:50 Target").await;
    assert!(done.starts_with("d OK"), "{done}");
    let (requests_after, inner_after) = counts(&http, &s.sim_url).await;
    assert!(
        inner_after - inner >= 50,
        "{} inner requests",
        inner_after - inner
    );
    // 50 POSTs in 3 batches, then the target's sync: never 50 requests.
    assert!(
        requests_after - requests <= 10,
        "{} Graph requests for MOVE 1:50",
        requests_after - requests
    );
    let expunges = untagged.iter().filter(|l| l.ends_with("EXPUNGE")).count();
    assert_eq!(expunges, 50, "{untagged:?}");
    assert!(
        untagged.iter().any(|l| l.contains("COPYUID")),
        "{untagged:?}"
    );
    let alice = s.sim.tenant().user("alice@example.com").unwrap().id.clone();
    assert_eq!(s.sim.mail().messages(&alice, "inbox").len(), MESSAGES - 50);
    let (_, ok) = c.cmd("e SELECT Target").await;
    assert!(ok.starts_with("e OK"), "{ok}");
    let (status, _) = c.cmd("f STATUS INBOX (MESSAGES)").await;
    assert!(
        status.iter().any(|l| l.contains("MESSAGES 50")),
        "{status:?}"
    );
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunge_over_a_set_is_batched_and_survives_a_gone_message() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let mut c = login(&s).await;
    let (_, done) = c.cmd("c STORE 1:40 +FLAGS.SILENT (\\Deleted)").await;
    assert!(done.starts_with("c OK"), "{done}");
    // UIDs follow received time, which ties here: ask which message is 4.
    let (lines, _) = c
        .cmd("s FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    let subject = lines
        .iter()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap()
        .to_string();
    delete_behind(&s, &http, &subject).await;

    let (requests, inner) = counts(&http, &s.sim_url).await;
    let (untagged, done) = c.cmd("d EXPUNGE").await;
    assert!(done.starts_with("d OK"), "{done}");
    let (requests_after, inner_after) = counts(&http, &s.sim_url).await;
    // 40 deletions in 2 batches of 20; not one request per message.
    assert_eq!(inner_after - inner, 40, "inner requests");
    assert!(
        requests_after - requests <= 3,
        "{} Graph requests for EXPUNGE of 40",
        requests_after - requests
    );
    let expunges = untagged.iter().filter(|l| l.ends_with("EXPUNGE")).count();
    assert_eq!(expunges, 40, "{untagged:?}");
    let alice = s.sim.tenant().user("alice@example.com").unwrap().id.clone();
    let left: Vec<String> = s
        .sim
        .mail()
        .messages(&alice, "inbox")
        .into_iter()
        .map(|m| m.1)
        .collect();
    assert_eq!(left.len(), MESSAGES - 40, "{left:?}");
    s.stop.cancel();
}
