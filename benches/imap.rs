//! IMAP over a large folder (issue 8, targets 2 to 4), graphgate in
//! process in front of the simulator, driven by a raw-socket client that
//! reads until the tagged OK:
//!
//! - `imap_warm_fetch`: `FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE
//!   RFC822.SIZE)` over 10,000 messages whose bodies graphgate has already
//!   cached, next to a private Dovecot serving the same bytes from a
//!   Maildir, same client code (skipped, with the reason printed, when
//!   Dovecot is not installed).
//! - `imap_cold_sync` (50 ms of simulated Graph latency, a fresh data dir
//!   for every iteration): login + SELECT + `UID FETCH 1:* (UID FLAGS
//!   INTERNALDATE)` over the 10,000 messages, and login + SELECT + `UID
//!   FETCH 1:* (RFC822.SIZE ENVELOPE)` over a folder of 1,000 (10,000 would
//!   need 500 `$batch` requests, over 30 s an iteration).
//! - `imap_body_download` (50 ms, cold cache): `FETCH 1:1000 BODY.PEEK[]`.
//!
//! The Graph requests of each cold iteration and the bound that Graph's 4
//! concurrent requests per mailbox allow are printed next to the times:
//! the nominal bound counts 50 ms per `$batch`; the simulator, like
//! Outlook, also runs the 20 requests inside a batch 4 at a time, each with
//! the latency, so there one batch takes (1 + 20 / 4) x 50 ms = 300 ms and
//! the bound it allows is six times the nominal one for the batches.
//!
//! `cargo bench --bench imap`. Without `--bench` (`cargo test
//! --all-targets` runs each benchmark once) the folders hold 60 and 40
//! messages.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "../tests/support/dovecot.rs"]
mod dovecot;
#[path = "support/imap_gateway.rs"]
mod imap_gateway;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dovecot::{Dovecot, dovecot_binary};
use graphgate::sim::{SimConfig, SimState};
use imap_gateway::{Client, Gateway, message};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Simulated Graph latency of the cold benchmarks.
const LATENCY_MS: u64 = 50;
/// Graph's concurrent requests per mailbox (and graphgate's default).
const CONCURRENT: u64 = 4;
/// Inner requests per `$batch`.
const PER_BATCH: u64 = 20;
/// What one full `$batch` takes in the simulator: its own latency, then
/// its inner requests 4 at a time, each with the latency.
const BATCH_MS: u64 = (1 + PER_BATCH.div_ceil(CONCURRENT)) * LATENCY_MS;

/// Whether criterion measures (`cargo bench`) or runs each benchmark
/// once (`cargo test`).
fn measuring() -> bool {
    static M: OnceLock<bool> = OnceLock::new();
    *M.get_or_init(|| std::env::args().any(|a| a == "--bench"))
}

/// Messages in alice's Inbox (warm FETCH, cold flag sync, body download).
fn large() -> usize {
    if measuring() { 10_000 } else { 60 }
}

/// Messages in bob's Inbox (cold RFC822.SIZE ENVELOPE).
fn medium() -> usize {
    if measuring() { 1_000 } else { 40 }
}

/// The simulator, filled once.
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

// ---------------------------------------------------------------------
// The benchmarks.
// ---------------------------------------------------------------------

const WARM_FETCH: &str = "FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn warm_fetch(c: &mut Criterion, rt: &Runtime, sim: &Sim) {
    let n = large();
    // graphgate, its cache filled by one cold FETCH (which also yields
    // the bytes it serves, for Dovecot's Maildir).
    let (gateway, mut ours, served) = rt.block_on(async {
        sim.latency(0).await;
        let gateway = Gateway::start(&sim.url, "alice@example.com").await;
        let mut client = Client::connect(gateway.imap).await;
        client.run("LOGIN alice@example.com pw", false).await;
        client.run("SELECT INBOX", false).await;
        let (_, served) = client.run("FETCH 1:* BODY.PEEK[]", true).await;
        assert_eq!(served.len(), n);
        let (count, _) = client.run(WARM_FETCH, false).await;
        assert_eq!(count, n);
        (gateway, client, served)
    });
    let dovecot = dovecot_binary().map(|binary| Dovecot::start(&binary, &served));
    let mut theirs = dovecot.as_ref().map(|d| {
        rt.block_on(async {
            let mut client = Client::connect(([127, 0, 0, 1], d.port).into()).await;
            client.run("LOGIN u x", false).await;
            client.run("SELECT INBOX", false).await;
            // Dovecot's first FETCH fills its index cache.
            let (count, _) = client.run(WARM_FETCH, false).await;
            assert_eq!(count, n);
            client
        })
    });
    if theirs.is_none() {
        eprintln!("imap_warm_fetch/dovecot skipped: dovecot is not installed (dovecot-imapd)");
    }

    let mut group = c.benchmark_group("imap_warm_fetch");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("graphgate/{n}"), |b| {
        b.iter(|| rt.block_on(ours.run(WARM_FETCH, false)))
    });
    if let Some(client) = theirs.as_mut() {
        group.bench_function(format!("dovecot/{n}"), |b| {
            b.iter(|| rt.block_on(client.run(WARM_FETCH, false)))
        });
    }
    group.finish();
    drop(gateway);
}

/// Login + SELECT + `command` against a fresh gateway with `LATENCY_MS`
/// of Graph latency: (time, Graph requests, untagged answers, the time of
/// each of the three commands).
async fn cold(sim: &Sim, user: &str, command: &str) -> (Duration, u64, usize, String) {
    sim.latency(0).await;
    let gateway = Gateway::start(&sim.url, user).await;
    let mut client = Client::connect(gateway.imap).await;
    sim.latency(LATENCY_MS).await;
    let before = sim.graph_requests().await;
    let start = Instant::now();
    client.run(&format!("LOGIN {user} pw"), false).await;
    let login = start.elapsed();
    client.run("SELECT INBOX", false).await;
    let select = start.elapsed() - login;
    let (count, _) = client.run(command, false).await;
    let took = start.elapsed();
    let requests = sim.graph_requests().await - before;
    sim.latency(0).await;
    let steps = format!(
        "LOGIN {} ms + SELECT {} ms + FETCH {} ms",
        login.as_millis(),
        select.as_millis(),
        (took - login - select).as_millis()
    );
    (took, requests, count, steps)
}

fn report(what: &str, took: Duration, requests: u64, bound_ms: u64, detail: &str) {
    eprintln!(
        "{what}: {:.0} ms, {requests} Graph requests ({} ms at {LATENCY_MS} ms each in \
         sequence); bound {bound_ms} ms {detail}",
        took.as_secs_f64() * 1000.0,
        requests * LATENCY_MS,
    );
}

fn cold_sync(c: &mut Criterion, rt: &Runtime, sim: &Sim) {
    let mut group = c.benchmark_group("imap_cold_sync");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let n = large();
    let command = "UID FETCH 1:* (UID FLAGS INTERNALDATE)";
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("uid_flags_internaldate/{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, requests, count, steps) =
                    rt.block_on(cold(sim, "alice@example.com", command));
                assert_eq!(count, n);
                assert!(requests <= 25, "{requests} Graph requests");
                report(
                    "cold login+SELECT+UID FETCH (UID FLAGS INTERNALDATE)",
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
    let command = "UID FETCH 1:* (RFC822.SIZE ENVELOPE)";
    let batches = (n as u64).div_ceil(PER_BATCH);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("rfc822size_envelope/{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, requests, count, steps) =
                    rt.block_on(cold(sim, "bob@example.com", command));
                assert_eq!(count, n);
                let listing = requests.saturating_sub(batches);
                let rounds = batches.div_ceil(CONCURRENT);
                let bound = (listing + rounds) * LATENCY_MS;
                report(
                    "cold login+SELECT+UID FETCH (RFC822.SIZE ENVELOPE)",
                    took,
                    requests,
                    bound,
                    &format!(
                        "= ({listing} listing + ceil({batches} $batch / {CONCURRENT})) x \
                         {LATENCY_MS} ms; in the simulator's model {} ms = {listing} x \
                         {LATENCY_MS} + {rounds} x {BATCH_MS} ms; {steps}",
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

fn body_download(c: &mut Criterion, rt: &Runtime, sim: &Sim) {
    let mut group = c.benchmark_group("imap_body_download");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let n = large().min(1000);
    let command = format!("FETCH 1:{n} BODY.PEEK[]");
    let batches = (n as u64).div_ceil(PER_BATCH);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("body_peek/{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, requests, count) = rt.block_on(async {
                    // Listed (SELECT, flags) before the clock starts: only
                    // the bodies are cold.
                    let gateway = Gateway::start(&sim.url, "alice@example.com").await;
                    let mut client = Client::connect(gateway.imap).await;
                    client.run("LOGIN alice@example.com pw", false).await;
                    client.run("SELECT INBOX", false).await;
                    client.run("UID FETCH 1:* (UID FLAGS)", false).await;
                    sim.latency(LATENCY_MS).await;
                    let before = sim.graph_requests().await;
                    let start = Instant::now();
                    let (count, _) = client.run(&command, false).await;
                    let took = start.elapsed();
                    let requests = sim.graph_requests().await - before;
                    sim.latency(0).await;
                    (took, requests, count)
                });
                assert_eq!(count, n);
                let rounds = batches.div_ceil(CONCURRENT);
                report(
                    &format!("cold {command}"),
                    took,
                    requests,
                    rounds * LATENCY_MS,
                    &format!(
                        "= ceil({batches} $batch / {CONCURRENT}) x {LATENCY_MS} ms; in the \
                         simulator's model {} ms = {rounds} x {BATCH_MS} ms",
                        rounds * BATCH_MS
                    ),
                );
                total += took;
            }
            total
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let sim = rt.block_on(Sim::start());
    warm_fetch(c, &rt, &sim);
    cold_sync(c, &rt, &sim);
    body_download(c, &rt, &sim);
}

criterion_group!(benches, bench);
criterion_main!(benches);
