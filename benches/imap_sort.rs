//! SORT and THREAD (RFC 5256) over 10,000 kept messages (issue 20):
//! graphgate in process in front of the simulator, the folder's messages
//! cached and their keys kept by one first SORT, then warm `SORT (DATE)`,
//! `SORT (SUBJECT FROM)`, `THREAD REFERENCES` and `THREAD ORDEREDSUBJECT`
//! over the whole folder, each next to a private Dovecot serving the same
//! bytes from a Maildir with the same client code (skipped, with the
//! reason printed, when Dovecot is not installed). The messages are
//! benches/imap.rs's: every third replies to the one before it.
//!
//! `cargo bench --bench imap_sort`. Without `--bench` (`cargo test
//! --all-targets` runs each benchmark once) the folder holds 60 messages.

use std::sync::OnceLock;
use std::time::Duration;

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

/// The simulator, filled once.
struct Sim {
    url: String,
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
        for (user, count) in [("alice@example.com", large())] {
            let id = sim.tenant().user(user).unwrap().id.clone();
            for i in 0..count {
                sim.mail().deliver(&id, "inbox", message(i));
            }
        }
        Sim {
            url,
            _sim: sim,
            _stop: stop,
        }
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

const COMMANDS: [(&str, &str); 4] = [
    ("sort_date", "SORT (DATE) UTF-8 ALL"),
    ("sort_subject_from", "SORT (SUBJECT FROM) UTF-8 ALL"),
    ("thread_references", "THREAD REFERENCES UTF-8 ALL"),
    ("thread_orderedsubject", "THREAD ORDEREDSUBJECT UTF-8 ALL"),
];

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let sim = rt.block_on(Sim::start());
    let n = large();
    let (gateway, mut ours, served) = rt.block_on(async {
        let gateway = Gateway::start(&sim.url, "alice@example.com").await;
        let mut client = Client::connect(gateway.imap).await;
        client.run("LOGIN alice@example.com pw", false).await;
        client.run("SELECT INBOX", false).await;
        let (_, served) = client.run("FETCH 1:* BODY.PEEK[]", true).await;
        assert_eq!(served.len(), n);
        // The first SORT reads every message's keys and keeps them.
        client.run("SORT (DATE) UTF-8 ALL", false).await;
        (gateway, client, served)
    });
    let dovecot = dovecot_binary().map(|binary| Dovecot::start(&binary, &served));
    let mut theirs = dovecot.as_ref().map(|d| {
        rt.block_on(async {
            let mut client = Client::connect(([127, 0, 0, 1], d.port).into()).await;
            client.run("LOGIN u x", false).await;
            client.run("SELECT INBOX", false).await;
            // Dovecot's first SORT and THREAD fill its index cache.
            for (_, command) in COMMANDS {
                client.run(command, false).await;
            }
            client
        })
    });
    if theirs.is_none() {
        eprintln!("imap_sort/dovecot skipped: dovecot is not installed (dovecot-imapd)");
    }
    for (name, command) in COMMANDS {
        let mut group = c.benchmark_group(format!("imap_{name}"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(5));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("graphgate/{n}"), |b| {
            b.iter(|| rt.block_on(ours.run(command, false)))
        });
        if let Some(client) = theirs.as_mut() {
            group.bench_function(format!("dovecot/{n}"), |b| {
                b.iter(|| rt.block_on(client.run(command, false)))
            });
        }
        group.finish();
    }
    drop(gateway);
}

criterion_group!(benches, bench);
criterion_main!(benches);
