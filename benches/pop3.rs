//! POP3 over a large INBOX (issue 19), graphgate in process in front of
//! the simulator with 50 ms of Graph latency and a fresh data directory
//! for every iteration (cold: no UID map, no cached bytes), driven by a
//! raw-socket client — the same folders and message mix as `benches/imap.rs`'s
//! `imap_cold_sync`, so the two read side by side:
//!
//! - `pop3_cold/uidl`: USER + PASS + UIDL over 10,000 messages. The login
//!   numbers the maildrop (one folder listing, the delta pages of the
//!   INBOX); UIDL needs no body.
//! - `pop3_cold/stat_uidl`: USER + PASS + STAT + UIDL over 1,000. STAT's
//!   sizes are the octets RETR sends, which Graph does not give without
//!   the bytes: every body is fetched (20 per `$batch`, 4 at once) and
//!   cached. Over 10,000 that is 500 `$batch` requests, about 40 s an
//!   iteration in the simulator's model — as long as IMAP's cold
//!   RFC822.SIZE of the same folder, which `benches/imap.rs` measures over
//!   1,000 for the same reason.
//!
//! The Graph requests of each iteration and the bound Graph's 4 concurrent
//! requests per mailbox allow are printed next to the times.
//!
//! `cargo bench --bench pop3`. Without `--bench` (`cargo test
//! --all-targets` runs each benchmark once) the folders hold 60 and 40
//! messages.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::{NewAccount, Store, StoreKey};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

const LATENCY_MS: u64 = 50;
const CONCURRENT: u64 = 4;
const PER_BATCH: u64 = 20;
/// One full `$batch` in the simulator: its latency, then its inner
/// requests 4 at a time, each with the latency.
const BATCH_MS: u64 = (1 + PER_BATCH.div_ceil(CONCURRENT)) * LATENCY_MS;

fn measuring() -> bool {
    static M: OnceLock<bool> = OnceLock::new();
    *M.get_or_init(|| std::env::args().any(|a| a == "--bench"))
}

fn large() -> usize {
    if measuring() { 10_000 } else { 60 }
}

fn medium() -> usize {
    if measuring() { 1_000 } else { 40 }
}

/// Message `i`: a few header fields and `3 + i % 20` lines of text.
fn message(i: usize) -> Vec<u8> {
    let text: String = (0..(3 + i % 20))
        .map(|l| format!("Line {l} of message {i}: the quarterly numbers as usual.\r\n"))
        .collect();
    format!(
        "From: \"Sender {s}\" <sender{s}@external.example>\r\n\
         To: Alice <alice@example.com>\r\n\
         Subject: Status report number {i}\r\n\
         Date: Mon, {d} Jun 2026 10:{m:02}:00 +0000\r\n\
         Message-ID: <m{i}.{s}@external.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}",
        s = i % 97,
        d = 1 + i % 28,
        m = i % 60,
    )
    .into_bytes()
}

struct Sim {
    url: String,
    http: reqwest::Client,
    _sim: SimState,
    _stop: CancellationToken,
}

impl Sim {
    async fn start() -> Sim {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sim = SimState::new(SimConfig {
            public_url: url.clone(),
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
        for (user, count) in [
            ("alice@example.com", large()),
            ("bob@example.com", medium()),
        ] {
            let id = sim.tenant().user(user).unwrap().id.clone();
            for i in 0..count {
                sim.mail().deliver(&id, "inbox", message(i));
            }
        }
        Sim {
            url,
            http: reqwest::Client::new(),
            _sim: sim,
            _stop: stop,
        }
    }

    async fn graph_requests(&self) -> u64 {
        let stats: serde_json::Value = self
            .http
            .get(format!("{}/_sim/stats", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["graph_requests"].as_u64().unwrap()
    }

    async fn latency(&self, ms: u64) {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.url))
            .json(&serde_json::json!({ "latency_ms": ms }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

/// A gateway with only its POP3 listener, stopped when dropped.
struct Gateway {
    pop3: std::net::SocketAddr,
    stop: CancellationToken,
    _tasks: graphgate::gateway::listeners::Tasks,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Gateway {
    async fn start(sim: &Sim, user: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = StoreKey::load(dir.path()).unwrap();
        let account = store
            .add_account(&NewAccount::delegated(user, "pw"))
            .unwrap();
        let tokens = graphgate::cli::sign_in_via_simulator(&sim.url, user)
            .await
            .unwrap();
        graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
        let mut config = graphgate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        config.microsoft.authority_url = sim.url.clone();
        config.microsoft.graph_url = sim.url.clone();
        config.microsoft.tenant = DEMO_TENANT_ID.into();
        config.microsoft.client_id = DEMO_PUBLIC_CLIENT_ID.into();
        config.smtp.listen = String::new();
        config.smtp.implicit_tls_listen = String::new();
        config.imap.listen = String::new();
        config.imap.implicit_tls_listen = String::new();
        config.pop3.implicit_tls_listen = String::new();
        let stop = CancellationToken::new();
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
                pop3: Some("127.0.0.1:0".parse().unwrap()),
                ..Default::default()
            },
            &stop,
            &mut tasks,
        )
        .await
        .unwrap();
        Gateway {
            pop3: gateway.pop3.unwrap(),
            stop,
            _tasks: tasks,
            _dir: dir,
        }
    }
}

/// A raw-socket POP3 client.
struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        let mut c = Client {
            read: BufReader::with_capacity(64 * 1024, read),
            write,
        };
        assert!(c.line().await.starts_with(b"+OK"));
        c
    }

    async fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        let n = self.read.read_until(b'\n', &mut line).await.unwrap();
        assert!(n > 0, "connection closed");
        line
    }

    /// Send `command`; its status line, and the lines of a multi-line
    /// answer when `multi`. Panics unless `+OK`.
    async fn run(&mut self, command: &str, multi: bool) -> (Vec<u8>, usize) {
        self.write
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let status = self.line().await;
        assert!(
            status.starts_with(b"+OK"),
            "{command}: {}",
            String::from_utf8_lossy(&status)
        );
        let mut lines = 0;
        if multi {
            while self.line().await != b".\r\n" {
                lines += 1;
            }
        }
        (status, lines)
    }
}

fn report(what: &str, took: Duration, requests: u64, bound_ms: u64, detail: &str) {
    eprintln!(
        "{what}: {:.0} ms, {requests} Graph requests ({} ms at {LATENCY_MS} ms each in \
         sequence); bound {bound_ms} ms {detail}",
        took.as_secs_f64() * 1000.0,
        requests * LATENCY_MS,
    );
}

/// One cold session of `user`: login, then `commands` (name, multi-line);
/// time, Graph requests, lines of the last answer, per-step times.
async fn cold(sim: &Sim, user: &str, commands: &[(&str, bool)]) -> (Duration, u64, usize, String) {
    sim.latency(0).await;
    let gateway = Gateway::start(sim, user).await;
    let mut client = Client::connect(gateway.pop3).await;
    sim.latency(LATENCY_MS).await;
    let before = sim.graph_requests().await;
    let start = Instant::now();
    client.run(&format!("USER {user}"), false).await;
    client.run("PASS pw", false).await;
    let mut steps = format!("login {} ms", start.elapsed().as_millis());
    let mut last = 0;
    for (command, multi) in commands {
        let at = Instant::now();
        last = client.run(command, *multi).await.1;
        steps.push_str(&format!(" + {command} {} ms", at.elapsed().as_millis()));
    }
    let took = start.elapsed();
    let requests = sim.graph_requests().await - before;
    sim.latency(0).await;
    client.run("QUIT", false).await;
    (took, requests, last, steps)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(Sim::start());
    let mut group = c.benchmark_group("pop3_cold");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let n = large();
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("uidl/{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, requests, lines, steps) =
                    rt.block_on(cold(&sim, "alice@example.com", &[("UIDL", true)]));
                assert_eq!(lines, n);
                assert!(requests <= 25, "{requests} Graph requests");
                report(
                    "cold USER+PASS+UIDL",
                    took,
                    requests,
                    requests * LATENCY_MS,
                    &format!("(the listing is sequential: delta pages); {steps}"),
                );
                total += took;
            }
            total
        })
    });

    let n = medium();
    let batches = (n as u64).div_ceil(PER_BATCH);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("stat_uidl/{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, requests, lines, steps) = rt.block_on(cold(
                    &sim,
                    "bob@example.com",
                    &[("STAT", false), ("UIDL", true)],
                ));
                assert_eq!(lines, n);
                let listing = requests.saturating_sub(batches);
                let rounds = batches.div_ceil(CONCURRENT);
                report(
                    "cold USER+PASS+STAT+UIDL",
                    took,
                    requests,
                    (listing + rounds) * LATENCY_MS,
                    &format!(
                        "= ({listing} listing + ceil({batches} $batch / {CONCURRENT})) x \
                         {LATENCY_MS} ms; in the simulator's model {} ms; {steps}",
                        listing * LATENCY_MS + rounds * BATCH_MS
                    ),
                );
                total += took;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
