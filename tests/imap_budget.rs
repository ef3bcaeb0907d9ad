//! The Graph call budget of IMAP over a folder of 10,000 messages, counted
//! by the simulator (`/_sim/stats`): a cold `UID FETCH 1:* (UID FLAGS
//! INTERNALDATE)` — login and SELECT included — costs at most 25 Graph
//! requests (delta pages of 500); a cold `UID FETCH 1:* (RFC822.SIZE ENVELOPE)`
//! costs one `$batch` per 20 messages; repeating either costs nothing.

use std::time::Duration;

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::{NewAccount, Store, StoreKey};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 10_000;

async fn graph_requests(http: &reqwest::Client, sim: &str) -> u64 {
    let stats: serde_json::Value = http
        .get(format!("{sim}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["graph_requests"].as_u64().unwrap()
}

struct Client {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    /// Send a command; return (untagged line count, tagged line).
    async fn cmd(&mut self, line: &str) -> (usize, String) {
        let tag = line.split(' ').next().unwrap().to_string();
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let mut untagged = 0;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = tokio::time::timeout(
                Duration::from_secs(600),
                self.read.read_until(b'\n', &mut buf),
            )
            .await
            .expect("an answer")
            .unwrap();
            assert!(n > 0, "connection closed");
            let l = String::from_utf8_lossy(&buf).to_string();
            // Skip literal bodies: `{N}` at the end of a line.
            if let Some(len) = l
                .trim_end()
                .strip_suffix('}')
                .and_then(|r| r.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                let mut skip = vec![0u8; len];
                tokio::io::AsyncReadExt::read_exact(&mut self.read, &mut skip)
                    .await
                    .unwrap();
            }
            if l.starts_with(&format!("{tag} ")) {
                return (untagged, l.trim_end().to_string());
            }
            if l.starts_with("* ") {
                untagged += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_cost_what_the_budget_allows() {
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

    let http = reqwest::Client::new();
    let (read, write) = TcpStream::connect(gateway.imap.unwrap())
        .await
        .unwrap()
        .into_split();
    let mut c = Client {
        read: BufReader::new(read),
        write,
    };
    let mut greeting = String::new();
    c.read.read_line(&mut greeting).await.unwrap();

    let before = graph_requests(&http, &sim_url).await;
    c.cmd("a LOGIN alice@example.com alice").await;
    let (_, selected) = c.cmd("b SELECT INBOX").await;
    assert!(selected.starts_with("b OK"), "{selected}");
    let (n, done) = c.cmd("c UID FETCH 1:* (UID FLAGS INTERNALDATE)").await;
    assert!(done.starts_with("c OK"), "{done}");
    assert_eq!(n, MESSAGES);
    let cold_flags = graph_requests(&http, &sim_url).await - before;
    eprintln!(
        "cold login + SELECT + UID FETCH (UID FLAGS INTERNALDATE): {cold_flags} Graph requests"
    );
    assert!(cold_flags <= 25, "{cold_flags} Graph requests");

    let before = graph_requests(&http, &sim_url).await;
    c.cmd("d UID FETCH 1:* (UID FLAGS INTERNALDATE)").await;
    assert_eq!(graph_requests(&http, &sim_url).await - before, 0);

    let before = graph_requests(&http, &sim_url).await;
    let (n, done) = c.cmd("e UID FETCH 1:* (RFC822.SIZE ENVELOPE)").await;
    assert!(done.starts_with("e OK"), "{done}");
    assert_eq!(n, MESSAGES);
    let cold_sizes = graph_requests(&http, &sim_url).await - before;
    eprintln!("cold UID FETCH 1:* (RFC822.SIZE ENVELOPE): {cold_sizes} Graph requests");
    // One `$batch` per 20 bodies, grouped by the sizes Graph reports
    // (`Integer 0x0E08`) so that an answer stays bounded; the sizes of the
    // folder listed first, 1,000 a request (src/graph/bodies.rs).
    assert!(
        cold_sizes <= (MESSAGES / 20 + MESSAGES.div_ceil(1000)) as u64,
        "{cold_sizes}"
    );

    let before = graph_requests(&http, &sim_url).await;
    c.cmd("f UID FETCH 1:* (RFC822.SIZE ENVELOPE)").await;
    assert_eq!(graph_requests(&http, &sim_url).await - before, 0);
    stop.cancel();
}
