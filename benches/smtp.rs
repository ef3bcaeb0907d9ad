//! SMTP submission end to end: a client on a kept-open connection sends a
//! small message through graphgate (spool file + fsync + SQLite row +
//! Graph `sendMail` to the simulator + row update) and waits for the 250
//! that says it was delivered. The baseline is the same `sendMail` made
//! directly with graphgate's Graph client, so the difference is what the
//! gateway adds per message. Both run with the simulator answering at once
//! and with 20 ms of injected Graph latency.
//!
//! Criterion reports means only; before its groups the bench also sends
//! N messages one after another on one connection, timing each transaction
//! (MAIL … the final 250), interleaved with N direct `sendMail` calls, and
//! prints p50, p99 and the mean of both and of their difference — the
//! latency graphgate adds — and the messages per second through it.
//! N is 2,000 at 0 ms and 500 at 20 ms (`SMTP_BENCH_N` overrides both).
//!
//! `cargo bench --bench smtp`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graphgate::account::{AccountRuntime, save_tokens};
use graphgate::auth::{AuthorityConfig, ClientCredential, EntraClient};
use graphgate::graph::{GraphClient, GraphConfig};
use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::{NewAccount, Store, StoreKey};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

const MESSAGE: &[u8] = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: bench\r\n\
Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nA short notification from a monitoring system.\r\n";

struct Setup {
    sim_url: String,
    sim: SimState,
    smtp: std::net::SocketAddr,
    runtime: AccountRuntime,
    _stop: CancellationToken,
    _dir: tempfile::TempDir,
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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = StoreKey::load(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    let tokens = graphgate::cli::sign_in_via_simulator(&sim_url, "alice@example.com")
        .await
        .unwrap();
    save_tokens(&store, &key, account.id, &tokens).unwrap();

    let mut config = graphgate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.microsoft.authority_url = sim_url.clone();
    config.microsoft.graph_url = sim_url.clone();
    config.microsoft.tenant = DEMO_TENANT_ID.into();
    config.microsoft.client_id = DEMO_PUBLIC_CLIENT_ID.into();
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
            smtp: Some("127.0.0.1:0".parse().unwrap()),
            smtps: None,
            imap: None,
            imaps: None,
            pop3: None,
            pop3s: None,
            relay: None,
        },
        &stop,
        &mut tasks,
    )
    .await
    .unwrap();
    // Keep the gateway's tasks alive for the whole run.
    std::mem::forget(tasks);

    // The baseline: graphgate's own Graph client, same account.
    let entra = Arc::new(
        EntraClient::new(AuthorityConfig {
            authority_url: sim_url.clone(),
            tenant: DEMO_TENANT_ID.into(),
            client_id: DEMO_PUBLIC_CLIENT_ID.into(),
            credential: ClientCredential::None,
            graph_resource: "https://graph.microsoft.com".into(),
        })
        .unwrap(),
    );
    let graph = GraphClient::new(GraphConfig {
        base_url: sim_url.clone(),
        ..GraphConfig::default()
    })
    .unwrap();
    let account = store.account("alice@example.com").unwrap().unwrap();
    let runtime = AccountRuntime::open(account, &store, &key, entra, &graph).unwrap();
    Setup {
        sim_url,
        sim,
        smtp: gateway.smtp.unwrap(),
        runtime,
        _stop: stop,
        _dir: dir,
    }
}

struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    addr: std::net::SocketAddr,
    sent: usize,
}

impl Client {
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.read.read_line(&mut line).await.unwrap();
            assert!(!line.is_empty(), "connection closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        // As a real client: no Nagle delay on the final ".".
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        let mut c = Client {
            read: BufReader::new(read),
            write,
            addr,
            sent: 0,
        };
        c.reply().await;
        c.write
            .write_all(b"EHLO bench\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNl\r\n")
            .await
            .unwrap();
        c.reply().await;
        let auth = c.reply().await;
        assert!(auth.starts_with("235"), "{auth}");
        c
    }

    /// One message, pipelined (RFC 2920): MAIL, RCPT, DATA in one write.
    /// A new connection every 1,000 messages (graphgate closes one after
    /// 10,000 commands).
    async fn send(&mut self) {
        if self.sent == 1000 {
            *self = Client::connect(self.addr).await;
        }
        self.sent += 1;
        self.write
            .write_all(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
            .await
            .unwrap();
        for _ in 0..3 {
            self.reply().await;
        }
        let mut data = MESSAGE.to_vec();
        data.extend_from_slice(b".\r\n");
        self.write.write_all(&data).await.unwrap();
        let done = self.reply().await;
        assert!(
            done.starts_with("250") && done.contains("delivered"),
            "{done}"
        );
    }
}

async fn set_latency(http: &reqwest::Client, setup: &Setup, latency_ms: u64) {
    http.post(format!("{}/_sim/faults", setup.sim_url))
        .json(&serde_json::json!({ "latency_ms": latency_ms }))
        .send()
        .await
        .unwrap();
}

/// The `q` quantile (0..=1) of sorted durations, in milliseconds.
fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn summary(name: &str, mut times: Vec<Duration>) -> (f64, f64, f64) {
    times.sort();
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64 * 1e3;
    let (p50, p99) = (quantile(&times, 0.5), quantile(&times, 0.99));
    println!(
        "  {name:<22} p50 {p50:7.3} ms  p99 {p99:7.3} ms  mean {mean:7.3} ms  max {:7.3} ms",
        quantile(&times, 1.0)
    );
    (p50, p99, mean)
}

/// N messages through graphgate on one connection, each followed by one
/// direct `sendMail` (interleaved, so that the machine's load hits both
/// alike); per-transaction percentiles of both.
async fn percentiles(setup: &Setup, http: &reqwest::Client, latency_ms: u64, n: usize) {
    set_latency(http, setup, latency_ms).await;
    let mut client = Client::connect(setup.smtp).await;
    // Warm up: connections, tokens, SQLite pages.
    for _ in 0..20 {
        client.send().await;
    }
    let mut through = Vec::with_capacity(n);
    let mut direct = Vec::with_capacity(n);
    let mut busy = Duration::ZERO;
    for _ in 0..n {
        if client.sent == 1000 {
            // The reconnection is not part of a message's time.
            client = Client::connect(setup.smtp).await;
        }
        let t = Instant::now();
        client.send().await;
        let d = t.elapsed();
        busy += d;
        through.push(d);
        let t = Instant::now();
        setup
            .runtime
            .mailbox
            .send_mime(Bytes::from_static(MESSAGE), true)
            .await
            .unwrap();
        direct.push(t.elapsed());
    }
    let added: Vec<Duration> = through
        .iter()
        .zip(&direct)
        .map(|(t, d)| t.saturating_sub(*d))
        .collect();
    println!("smtp_percentiles/graph_latency_{latency_ms}ms: {n} messages, one connection");
    let (tp50, tp99, tmean) = summary("through graphgate", through);
    let (dp50, dp99, dmean) = summary("direct sendMail", direct);
    summary("pairwise difference", added);
    println!(
        "  added (percentile of through - same percentile of direct): p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms",
        tp50 - dp50,
        tp99 - dp99,
        tmean - dmean
    );
    println!(
        "  {:.1} msg/s through graphgate on one connection",
        n as f64 / busy.as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = rt.block_on(setup());
    let http = reqwest::Client::new();
    // `cargo test --benches` runs this binary with --test: a short pass.
    let quick = std::env::args().any(|a| a == "--test");
    let n_env = std::env::var("SMTP_BENCH_N")
        .ok()
        .and_then(|n| n.parse::<usize>().ok());
    for (latency_ms, n) in [(0u64, 2000usize), (20, 500)] {
        let n = if quick { 5 } else { n_env.unwrap_or(n) };
        if n > 0 {
            rt.block_on(percentiles(&setup, &http, latency_ms, n));
        }
    }
    let mut group = c.benchmark_group("smtp_submit");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    for latency_ms in [0u64, 20] {
        rt.block_on(set_latency(&http, &setup, latency_ms));
        let mut client = rt.block_on(Client::connect(setup.smtp));
        group.bench_function(
            format!("through_graphgate/graph_latency_{latency_ms}ms"),
            |b| b.iter(|| rt.block_on(client.send())),
        );
        group.bench_function(
            format!("direct_sendmail/graph_latency_{latency_ms}ms"),
            |b| {
                b.iter(|| {
                    rt.block_on(async {
                        setup
                            .runtime
                            .mailbox
                            .send_mime(Bytes::from_static(MESSAGE), true)
                            .await
                            .unwrap()
                    })
                })
            },
        );
    }
    group.finish();
    let _ = &setup.sim;
}

criterion_group!(benches, bench);
criterion_main!(benches);
