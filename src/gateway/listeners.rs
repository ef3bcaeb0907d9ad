//! The gateway's moving parts, as `serve` and `demo` start them from a
//! [`Runtime`]: the account registry's token checks, the spool and its
//! worker, and every listener (SMTP, relay, IMAP, POP3). `cli/` only parses
//! and prints (DESIGN.md: the composition root leaves `cli/`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gateway::Runtime;
use crate::smtp::server::{Server, ServerConfig};
use crate::smtp::session::SessionConfig;
use crate::spool::owner::{OwnerRole, SpoolOwner};
use crate::spool::{Spool, SpoolConfig};
use crate::tls::Tls;

/// What is running.
pub struct Gateway {
    pub smtp: Option<SocketAddr>,
    pub smtps: Option<SocketAddr>,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub relay: Option<SocketAddr>,
    /// The relay listener's allowlist, for [`reload_relay`].
    pub relay_networks: Option<Arc<crate::smtp::relay::RelayAllowlist>>,
    /// The listeners started and whether each still accepts (for /readyz).
    pub listeners: crate::gateway::registry::Listeners,
    /// The login penalty of SMTP, IMAP and POP3 (the console's password
    /// goes through it too).
    pub login_guard: Arc<crate::login_guard::LoginGuard>,
}

/// Listen addresses chosen on the command line (demo) win over the
/// configuration.
#[derive(Debug, Default, Clone, Copy)]
pub struct Listen {
    pub smtp: Option<SocketAddr>,
    pub smtps: Option<SocketAddr>,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub relay: Option<SocketAddr>,
}

pub type Tasks = JoinSet<std::io::Result<()>>;

/// The spool settings of the configuration (`smtp.*`).
pub fn spool_config(config: &Config) -> SpoolConfig {
    let s = &config.smtp;
    SpoolConfig {
        sync_window: Duration::from_secs(s.sync_window_s),
        bounce_after: Duration::from_secs(s.bounce_after_h * 3600),
        in_doubt_grace: Duration::from_secs(s.in_doubt_grace_s),
        retry_base: Duration::from_secs(s.retry_base_s.max(1)),
        queued_alert_after: Some(config.alerts.queued_after_s)
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        ..SpoolConfig::default()
    }
}

/// Start the spool worker and the SMTP listeners; they stop when
/// `shutdown` is cancelled (a connection inside a message finishes it, the
/// worker records the outcome of attempts in flight).
pub async fn start(
    config: &Config,
    runtime: &Runtime,
    listen: Listen,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
) -> anyhow::Result<Gateway> {
    crate::alerts::init(&config.alerts.webhook_url).map_err(anyhow::Error::msg)?;
    crate::metrics::set_per_account(config.admin.account_metrics);
    let store = &runtime.store;
    let accounts = runtime.accounts.clone();
    let registry = accounts.clone();
    if config.microsoft.token_check_s > 0 {
        let every = Duration::from_secs(config.microsoft.token_check_s);
        let accounts = accounts.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tick.tick() => accounts.check_all().await,
                }
            }
        });
    }
    let s = &config.smtp;
    let spool = Spool::new(store.clone(), accounts.clone(), spool_config(config));
    super::alert_mail::install(config, store, &spool)?;
    // One deliverer per data directory (see `spool::owner`).
    let owner = own_spool(&config.data_dir).await?;
    {
        let spool = spool.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let _owner = owner;
            spool.run(stop).await;
            Ok(())
        });
    }

    let (cfg_smtp, cfg_smtps) = config.smtp_listen()?;
    let smtp_addr = listen.smtp.or(cfg_smtp);
    let smtps_addr = listen.smtps.or(cfg_smtps);
    let (cfg_imap, cfg_imaps) = config.imap_listen()?;
    let imap_addr = listen.imap.or(cfg_imap);
    let imaps_addr = listen.imaps.or(cfg_imaps);
    let (cfg_pop3, cfg_pop3s) = config.pop3_listen()?;
    let (pop3_addr, pop3s_addr) = (listen.pop3.or(cfg_pop3), listen.pop3s.or(cfg_pop3s));
    let relay_addr = listen.relay.or(config.relay_listen()?);
    let mut gateway = Gateway {
        smtp: None,
        smtps: None,
        imap: None,
        imaps: None,
        pop3: None,
        pop3s: None,
        relay: None,
        relay_networks: None,
        listeners: crate::gateway::registry::Listeners::default(),
        login_guard: Arc::new(crate::login_guard::LoginGuard::new(
            config.login_limit.limits(),
        )),
    };
    if [
        smtp_addr, smtps_addr, imap_addr, imaps_addr, pop3_addr, pop3s_addr, relay_addr,
    ]
    .iter()
    .all(Option::is_none)
    {
        return Ok(gateway);
    }
    let tls = match Tls::load(
        config.tls.certificate_file.as_deref(),
        config.tls.private_key_file.as_deref(),
        &config.data_dir,
    ) {
        Ok(tls) => Some(tls),
        Err(e) => {
            if smtps_addr.is_some() || imaps_addr.is_some() || pop3s_addr.is_some() {
                anyhow::bail!("{e}; fix tls.certificate_file / tls.private_key_file");
            }
            tracing::error!("TLS is unavailable, STARTTLS will not be offered: {e}");
            None
        }
    };
    // Each connection is a descriptor: say so if the open-file limit (raised
    // to its hard limit at start) cannot carry every listener full.
    let listeners = |a: &Option<_>, b: &Option<_>| (a.is_some() as u64) + (b.is_some() as u64);
    let needed = listeners(&smtp_addr, &smtps_addr) * s.max_connections
        + listeners(&imap_addr, &imaps_addr) * config.imap.max_connections
        + listeners(&pop3_addr, &pop3s_addr) * config.pop3.max_connections
        + 64;
    if let Some(limit) = super::net::raise_open_file_limit().filter(|l| *l < needed) {
        tracing::warn!(
            "the open-file limit is {limit}, below the {needed} descriptors that full listeners \
             need: connections beyond it will be refused; raise it (ulimit -n, LimitNOFILE= in \
             systemd, --ulimit nofile= in Docker) or lower smtp.max_connections / \
             imap.max_connections / pop3.max_connections"
        );
    }
    // One guard for SMTP and IMAP: guesses count against both.
    password_checks(config)?;
    let login_guard = gateway.login_guard.clone();
    let server = Server::new(
        ServerConfig {
            session: SessionConfig {
                hostname: s.hostname.clone(),
                max_message_size: usize::try_from(s.max_message_size).unwrap_or(usize::MAX),
                max_recipients: usize::try_from(s.max_recipients).unwrap_or(usize::MAX),
                queue_while_signed_out: s.queue_while_signed_out,
                ..SessionConfig::default()
            },
            incoming_dir: crate::spool::incoming::incoming_dir(&config.data_dir),
            max_connections: usize::try_from(s.max_connections).unwrap_or(256).max(1),
            idle_timeout: Duration::from_secs(s.idle_timeout_s.max(1)),
            plaintext_auth_on_loopback: s.plaintext_auth_on_loopback,
            login_guard: login_guard.clone(),
            ..ServerConfig::default()
        },
        store.clone(),
        tls.clone(),
        Arc::new(spool.clone()),
    );
    for (addr, implicit, what, key) in [
        (
            smtp_addr,
            false,
            "SMTP submission listener",
            "smtp.listen (demo: --smtp)",
        ),
        (
            smtps_addr,
            true,
            "SMTP implicit-TLS listener",
            "smtp.implicit_tls_listen (demo: --smtps)",
        ),
    ] {
        let Some(addr) = addr else { continue };
        let server = server.clone();
        let local = serve_on(
            addr,
            what,
            key,
            &gateway,
            shutdown,
            tasks,
            move |l, stop| crate::smtp::server::run(l, implicit, server, stop),
        )
        .await?;
        tracing::info!(addr = %local, implicit_tls = implicit, "SMTP listening");
        if implicit {
            gateway.smtps = Some(local);
        } else {
            gateway.smtp = Some(local);
        }
    }
    if let Some(addr) = relay_addr {
        // The relay: the same spool and limits, no AUTH, by network.
        let networks = crate::smtp::relay::RelayNetworks::resolve(&config.relay).await?;
        if networks.is_empty() {
            tracing::warn!(
                "the relay listener is on but relay.networks is empty: it refuses every client"
            );
        }
        let mut relay_config = server.config.clone();
        let allowlist = Arc::new(crate::smtp::relay::RelayAllowlist::new(networks));
        relay_config.relay = Some(allowlist.clone());
        gateway.relay_networks = Some(allowlist);
        let relay = Server::new(
            relay_config,
            store.clone(),
            tls.clone(),
            server.submitter.clone(),
        );
        let what = "SMTP relay listener";
        let key = "relay.listen (or --relay)";
        let local = serve_on(
            addr,
            what,
            key,
            &gateway,
            shutdown,
            tasks,
            move |l, stop| crate::smtp::server::run(l, false, relay, stop),
        )
        .await?;
        tracing::info!(addr = %local, "SMTP relay listening");
        gateway.relay = Some(local);
    }
    // Contents cached by earlier versions are 0644: made the owner's
    // alone once, in the background.
    {
        let dir = crate::mailbox::content::cache_dir(&config.data_dir);
        tokio::task::spawn_blocking(move || {
            let changed = crate::mailbox::content::restrict_existing(&dir);
            if changed > 0 {
                tracing::info!(changed, "message cache: made readable by the owner only");
            }
        });
    }
    let imap_server = crate::imap::server::ImapServer::new(
        crate::imap::server::ImapConfig {
            plaintext_login_on_loopback: config.imap.plaintext_login_on_loopback,
            login_guard: login_guard.clone(),
            // A literal is an APPENDed message at most: APPEND takes what
            // SMTP takes (graph/send.rs, append_large); a larger literal is
            // refused when announced, before its bytes are read (and held).
            max_literal: u32::try_from(s.max_message_size).unwrap_or(u32::MAX),
            idle_poll: Duration::from_secs(config.imap.idle_poll_s.max(1)),
            max_connections: usize::try_from(config.imap.max_connections)
                .unwrap_or(1024)
                .max(1),
            idle_timeout: Duration::from_secs(config.imap.idle_timeout_s.max(1)),
        },
        crate::imap::session::Shared {
            accounts: registry,
            cache: crate::mailbox::content::ContentCache::new(
                crate::mailbox::content::cache_dir(&config.data_dir),
                store.clone(),
            )
            .with_cap(config.imap.cache_max_mb.saturating_mul(1024 * 1024)),
            expunge_permanently: config.imap.expunge_permanently,
            folder_freshness: Duration::from_secs(config.imap.idle_poll_s.max(1)),
        },
        tls.clone(),
    );
    for (addr, implicit, what, key) in [
        (
            imap_addr,
            false,
            "IMAP listener",
            "imap.listen (demo: --imap)",
        ),
        (
            imaps_addr,
            true,
            "IMAP implicit-TLS listener",
            "imap.implicit_tls_listen (demo: --imaps)",
        ),
    ] {
        let Some(addr) = addr else { continue };
        let server = imap_server.clone();
        let local = serve_on(
            addr,
            what,
            key,
            &gateway,
            shutdown,
            tasks,
            move |l, stop| crate::imap::server::run(l, implicit, server, stop),
        )
        .await?;
        tracing::info!(addr = %local, implicit_tls = implicit, "IMAP listening");
        if implicit {
            gateway.imaps = Some(local);
        } else {
            gateway.imap = Some(local);
        }
    }
    start_pop3(
        config,
        pop3_addr,
        pop3s_addr,
        imap_server,
        login_guard,
        tls,
        &mut gateway,
        shutdown,
        tasks,
    )
    .await?;
    Ok(gateway)
}

/// Start the POP3 listeners (`pop3.*`): the maildrop is the INBOX the
/// IMAP side sees, through what `imap_server` shares (docs/pop3.md).
#[allow(clippy::too_many_arguments)]
async fn start_pop3(
    config: &Config,
    plain: Option<SocketAddr>,
    implicit: Option<SocketAddr>,
    imap_server: Arc<crate::imap::server::ImapServer>,
    login_guard: Arc<crate::login_guard::LoginGuard>,
    tls: Option<Tls>,
    gateway: &mut Gateway,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let p = &config.pop3;
    let pop3_config = crate::pop3::server::Pop3Config {
        plaintext_login_on_loopback: p.plaintext_login_on_loopback,
        max_connections: usize::try_from(p.max_connections).unwrap_or(256).max(1),
        idle_timeout: Duration::from_secs(p.idle_timeout_s.max(1)),
        login_guard,
        ..Default::default()
    }
    .with_on_delete(&p.on_delete, &p.on_delete_accounts)
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let server = crate::pop3::server::Pop3Server::new(pop3_config, imap_server, tls);
    for (addr, implicit, what, key) in [
        (plain, false, "POP3 listener", "pop3.listen (or --pop3)"),
        (
            implicit,
            true,
            "POP3 implicit-TLS listener",
            "pop3.implicit_tls_listen (or --pop3s)",
        ),
    ] {
        let Some(addr) = addr else { continue };
        let server = server.clone();
        let local = serve_on(addr, what, key, gateway, shutdown, tasks, move |l, stop| {
            crate::pop3::server::run(l, implicit, server, stop)
        })
        .await?;
        tracing::info!(addr = %local, implicit_tls = implicit, "POP3 listening");
        if implicit {
            gateway.pop3s = Some(local);
        } else {
            gateway.pop3 = Some(local);
        }
    }
    Ok(())
}

/// Bind `addr` (advice naming `key` when taken), count it among the
/// listeners `/readyz` reports as `what`, and run `serve` on it until
/// `shutdown`. Returns the bound address (port 0 resolved). Every
/// listener — SMTP, relay, IMAP, POP3 — starts here.
async fn serve_on<Fut>(
    addr: SocketAddr,
    what: &str,
    key: &str,
    gateway: &Gateway,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    serve: impl FnOnce(tokio::net::TcpListener, CancellationToken) -> Fut,
) -> anyhow::Result<SocketAddr>
where
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = super::net::bind(addr, what, key).await?;
    let local = listener.local_addr()?;
    let up = gateway.listeners.started(what, local);
    let running = serve(listener, shutdown.clone());
    tasks.spawn(async move {
        let _up = up;
        running.await
    });
    Ok(local)
}

/// Take the spool of `data_dir`: refused while another gateway has it;
/// while a `graphgate send-test` has it (one message, at most a few
/// minutes), wait for it to finish.
async fn own_spool(data_dir: &std::path::Path) -> anyhow::Result<SpoolOwner> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut told = false;
    loop {
        let holder = match SpoolOwner::try_acquire(data_dir, OwnerRole::Gateway) {
            Ok(Ok(owner)) => return Ok(owner),
            Ok(Err(holder)) => holder,
            Err(e) => anyhow::bail!(
                "cannot lock the spool in {}: {e}; check that the data directory is writable",
                data_dir.display()
            ),
        };
        if holder.role == Some(OwnerRole::Gateway) {
            anyhow::bail!(
                "{holder} already delivers the spool of {}; two gateways on one data directory \
                 could send a message twice. Stop that one first, or give this one another \
                 data directory (--data-dir / GRAPHGATE_DATA_DIR)",
                data_dir.display()
            );
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{holder} has held the spool of {} for 10 minutes; stop it and start again",
                data_dir.display()
            );
        }
        if !told && holder.role.is_some() {
            tracing::warn!("waiting for {holder} to finish with the spool");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Apply `login_limit.argon2_*` and `login_limit.password_checks_at_once`
/// and log the bound they give: N logins arriving together are answered
/// within ceil(N / pool) × one check (plus the penalty waits of pairs that
/// failed).
fn password_checks(config: &crate::config::Config) -> anyhow::Result<()> {
    let l = &config.login_limit;
    crate::store::accounts::set_password_params(l.password_params())?;
    let pool = crate::login_guard::password_checks_at_once(
        usize::try_from(l.password_checks_at_once).unwrap_or(usize::MAX),
    );
    let one = crate::store::accounts::time_one_check();
    let storm = one.saturating_mul(u32::try_from(500usize.div_ceil(pool)).unwrap_or(u32::MAX));
    tracing::info!(
        at_once = pool,
        one_check_ms = one.as_millis() as u64,
        "password checks (Argon2id m={} KiB, t={}, p={}): {pool} at once, one takes about \
         {} ms here, so 500 logins arriving together are all answered within about {:.1} s \
         (login_limit.password_checks_at_once, login_limit.argon2_*)",
        l.argon2_memory_kib,
        l.argon2_iterations,
        l.argon2_parallelism,
        one.as_millis(),
        storm.as_secs_f64()
    );
    Ok(())
}

/// Read `relay.networks` again from the configuration file at `path` (and
/// the environment) and resolve its host names again: what `SIGHUP` to
/// `graphgate serve` does. A configuration that does not load or resolve
/// is logged with its fix and the relay keeps the networks it had.
pub async fn reload_relay(gateway: &Gateway, path: Option<&std::path::Path>) {
    let Some(allowlist) = &gateway.relay_networks else {
        tracing::info!(
            "reload: no relay listener is running, so there is nothing to reload (set              relay.listen and restart to start one)"
        );
        return;
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("reload: {e}; the relay keeps the networks it had");
            return;
        }
    };
    match crate::smtp::relay::RelayNetworks::resolve(&config.relay).await {
        Ok(networks) => {
            let list: Vec<String> = networks
                .networks()
                .iter()
                .map(|n| format!("{} ({}) as {}", n.cidr, n.configured, n.account))
                .collect();
            tracing::info!(networks = %list.join(", "), "reload: relay.networks resolved again");
            allowlist.replace(networks);
        }
        Err(e) => tracing::error!("reload: {e}; the relay keeps the networks it had"),
    }
}
