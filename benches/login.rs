//! Repeat IMAP LOGIN (issue 20, "Fast, safe logins"): a client that
//! connects, reads the greeting, sends `LOGIN` with the same correct
//! password every time and reads the tagged OK — a help desk polling every
//! minute, or a client opening parallel connections — against:
//!
//! - `graphgate/cached`: graphgate with the verified-credentials cache at
//!   its default (`login_limit.verified_cache_s` = 300): Argon2id ran once;
//! - `graphgate/argon2id`: the cache off (`verified_cache_s` = 0): every
//!   LOGIN runs Argon2id (19 MiB, 2 passes, at most one per core at once);
//! - `dovecot`: a private Dovecot (`tests/support/dovecot.rs`; its passdb
//!   is `static` with a plain password, so no hash runs at all — a floor,
//!   not a like-for-like password scheme), skipped with the reason printed
//!   when Dovecot is not installed.
//!
//! Before criterion's groups, p50 / p99 of each target are printed for 1,
//! 5 and 20 clients logging in at once (each client a fresh connection per
//! LOGIN), from the same run. graphgate runs in process in front of the
//! simulator at 0 ms Graph latency (its LOGIN opens the mailbox too).
//!
//! `cargo bench --bench login`. Without `--bench` (`cargo test
//! --all-targets` runs each benchmark once) the loops are a few logins.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "../tests/support/dovecot.rs"]
mod dovecot;

use criterion::{Criterion, criterion_group, criterion_main};
use dovecot::{Dovecot, dovecot_binary};
use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::{NewAccount, Store, StoreKey};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

fn measuring() -> bool {
    static M: OnceLock<bool> = OnceLock::new();
    *M.get_or_init(|| std::env::args().any(|a| a == "--bench"))
}

/// Logins per client in the percentile loops.
fn per_client() -> usize {
    if measuring() { 10 } else { 2 }
}

/// The simulator (no mail needed), stopped when dropped.
struct Sim {
    url: String,
    _sim: SimState,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn sim() -> Sim {
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
    Sim {
        url,
        _sim: sim,
        stop,
    }
}

/// A gateway (IMAP only) with one signed-in account, password `pw`.
struct Gateway {
    imap: std::net::SocketAddr,
    stop: CancellationToken,
    _tasks: graphgate::gateway::listeners::Tasks,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn gateway(sim: &Sim, user: &str, verified_cache_s: u64) -> Gateway {
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
    config.imap.implicit_tls_listen = String::new();
    config.pop3.listen = String::new();
    config.pop3.implicit_tls_listen = String::new();
    config.login_limit.verified_cache_s = verified_cache_s;
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let started = graphgate::gateway::listeners::start(
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
    Gateway {
        imap: started.imap.unwrap(),
        stop,
        _tasks: tasks,
        _dir: dir,
    }
}

/// Connect, read the greeting, LOGIN, read the tagged answer, close:
/// whether it was OK (the login guard may refuse a pair with too many
/// attempts in flight: `NO [UNAVAILABLE]`).
async fn try_login(addr: std::net::SocketAddr, user: &str, password: &str) -> bool {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    write
        .write_all(format!("a LOGIN {user} {password}\r\n").as_bytes())
        .await
        .unwrap();
    loop {
        line.clear();
        let n = read.read_line(&mut line).await.unwrap();
        assert!(n > 0, "connection closed during LOGIN");
        if line.starts_with("a ") {
            assert!(
                line.starts_with("a OK") || line.starts_with("a NO [UNAVAILABLE]"),
                "{line}"
            );
            return line.starts_with("a OK");
        }
    }
}

async fn login(addr: std::net::SocketAddr, user: &str, password: &str) {
    assert!(
        try_login(addr, user, password).await,
        "LOGIN {user} refused"
    );
}

/// `clients` clients logging in `per_client()` times each at once:
/// (p50, p99) of one login, and the logins refused.
async fn percentiles(
    addr: std::net::SocketAddr,
    user: &'static str,
    password: &'static str,
    clients: usize,
) -> (Duration, Duration, usize) {
    let tasks = (0..clients).map(|_| {
        tokio::spawn(async move {
            let mut took = Vec::new();
            for _ in 0..per_client() {
                let start = Instant::now();
                let ok = try_login(addr, user, password).await;
                took.push((start.elapsed(), ok));
            }
            took
        })
    });
    let outcomes: Vec<(Duration, bool)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    let refused = outcomes.iter().filter(|(_, ok)| !ok).count();
    let mut all: Vec<Duration> = outcomes.into_iter().map(|(d, _)| d).collect();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    (at(0.50), at(0.99), refused)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (sim, cached, uncached) = rt.block_on(async {
        let sim = sim().await;
        let cached = gateway(&sim, "alice@example.com", 300).await;
        let uncached = gateway(&sim, "bob@example.com", 0).await;
        // The first LOGIN of the cached gateway runs Argon2id and fills
        // the cache; the rest are repeats.
        login(cached.imap, "alice@example.com", "pw").await;
        login(uncached.imap, "bob@example.com", "pw").await;
        (sim, cached, uncached)
    });
    let dovecot = dovecot_binary().map(|binary| Dovecot::start(&binary, &[]));
    if dovecot.is_none() {
        eprintln!("login/dovecot skipped: dovecot is not installed (dovecot-imapd)");
    }
    let dovecot_addr: Option<std::net::SocketAddr> =
        dovecot.as_ref().map(|d| ([127, 0, 0, 1], d.port).into());

    let mut targets: Vec<(&str, std::net::SocketAddr, &'static str, &'static str)> = vec![
        ("graphgate/cached", cached.imap, "alice@example.com", "pw"),
        ("graphgate/argon2id", uncached.imap, "bob@example.com", "pw"),
    ];
    if let Some(addr) = dovecot_addr {
        targets.push(("dovecot", addr, "u", "x"));
    }
    // In test mode (an unoptimised Argon2id) 20 at once would outlast
    // the login guard's wait for a place among a pair's attempts.
    let loads: &[usize] = if measuring() { &[1, 5, 20] } else { &[1, 2] };
    for &clients in loads {
        for (name, addr, user, password) in &targets {
            let (p50, p99, refused) = rt.block_on(percentiles(*addr, user, password, clients));
            eprintln!(
                "login {name}, {clients} clients at once, {} logins each: p50 {}, p99 {}, \
                 {refused} refused",
                per_client(),
                ms(p50),
                ms(p99)
            );
        }
    }

    let mut group = c.benchmark_group("login");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (name, addr, user, password) in &targets {
        group.bench_function(*name, |b| {
            b.iter(|| rt.block_on(login(*addr, user, password)))
        });
    }
    group.finish();
    drop((cached, uncached, dovecot));
    drop(sim);
}

criterion_group!(benches, bench);
criterion_main!(benches);
