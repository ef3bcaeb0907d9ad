//! `graphgate demo`: the simulator and the gateway in one process.
//!
//! Fixed interface (documentation and checks rely on it):
//! `graphgate demo [--smtp ADDR] [--smtps ADDR] [--imap ADDR] [--imaps ADDR]
//! [--relay ADDR] [--pop3 ADDR] [--pop3s ADDR] [--sim ADDR] [--admin ADDR]
//! [--data-dir DIR]`, defaults 127.0.0.1:2525, :2465, :1143, :1993, :2526,
//! :1110, :1995, :8787, :8025. The relay
//! listener takes mail without AUTH from 127.0.0.0/8 as alice@example.com
//! with the `rewrite` sender policy. Local accounts alice@example.com /
//! `alice` and bob@example.com / `bob`, each bound to the simulated mailbox
//! of the same name through real OAuth tokens that the gateway obtains from
//! the simulator over HTTP (authorization code + PKCE, the same code path as
//! `graphgate login --browser` against Microsoft).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::account::save_tokens;
use crate::auth::{
    AuthorityConfig, ClientCredential, EntraClient, LoopbackLogin, TokenSet, check_identity,
};
use crate::gateway::{KeyMode, Runtime, StoreMode};
use crate::secret::Secret;
use crate::sim::{SimConfig, SimState};
use crate::store::{AccountState, AuthProfile, NewAccount};

/// The demo's local accounts: (login = mailbox, password).
pub const DEMO_ACCOUNTS: &[(&str, &str)] =
    &[("alice@example.com", "alice"), ("bob@example.com", "bob")];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// SMTP submission listener.
    #[arg(long, default_value = "127.0.0.1:2525", value_name = "ADDR")]
    smtp: SocketAddr,
    /// SMTP with implicit TLS (port-465 style; self-signed certificate in
    /// the data directory). Default 127.0.0.1:2465 — or any free port when
    /// --smtp asks for one (port 0).
    #[arg(long, value_name = "ADDR")]
    smtps: Option<SocketAddr>,
    /// SMTP relay listener: mail without AUTH from 127.0.0.0/8 (and ::1),
    /// sent as alice@example.com with the `rewrite` sender policy. Default
    /// 127.0.0.1:2526 — or any free port when --smtp asks for one (port 0).
    #[arg(long, value_name = "ADDR")]
    relay: Option<SocketAddr>,
    /// IMAP listener.
    #[arg(long, default_value = "127.0.0.1:1143", value_name = "ADDR")]
    imap: SocketAddr,
    /// IMAP with implicit TLS (port-993 style; self-signed certificate in
    /// the data directory). Default 127.0.0.1:1993 — or any free port when
    /// --imap asks for one (port 0).
    #[arg(long, value_name = "ADDR")]
    imaps: Option<SocketAddr>,
    /// POP3 listener (STLS offered). Default 127.0.0.1:1110 — or any free
    /// port when --imap asks for one (port 0), so that scripts written
    /// before POP3 existed still get only free ports.
    #[arg(long, value_name = "ADDR")]
    pop3: Option<SocketAddr>,
    /// POP3 with implicit TLS (port-995 style). Default 127.0.0.1:1995 —
    /// or any free port when --pop3 asks for one (port 0).
    #[arg(long, value_name = "ADDR")]
    pop3s: Option<SocketAddr>,
    /// The simulated Microsoft Graph + Entra ID.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    sim: SocketAddr,
    /// Admin HTTP endpoint (/healthz, /readyz, /metrics, and the web
    /// console at /, opened by a one-time link in the banner).
    #[arg(long, default_value = "127.0.0.1:8025", value_name = "ADDR")]
    admin: SocketAddr,
    /// Make the simulated tenant store the bytes submitted instead of
    /// re-rendering the MIME of every message it makes the way Exchange
    /// Online does (header order and folding, boundaries, transfer
    /// encodings). Re-rendering is the default, as with the real service,
    /// so that what IMAP serves is not the bytes that were sent; this is
    /// for tests that need them back.
    #[arg(long, conflicts_with = "exchange_mime")]
    exact_mime: bool,
    /// Re-render stored MIME as Exchange Online does (the default; kept
    /// so that older scripts still run).
    #[arg(long, hide = true)]
    exchange_mime: bool,
    /// Append every Graph request and answer (redacted) to FILE, as
    /// `serve --graph-trace` does (docs/graph-trace.md).
    #[arg(long, value_name = "FILE")]
    graph_trace: Option<PathBuf>,
}

/// The implicit-TLS (or relay) twin of a plain listener: as given, else
/// the standard port — or a free one when the plain listener takes a free
/// one.
fn tls_twin(given: Option<SocketAddr>, plain: SocketAddr, port: u16) -> SocketAddr {
    given.unwrap_or_else(|| {
        let mut addr = plain;
        addr.set_port(if plain.port() == 0 { 0 } else { port });
        addr
    })
}

/// The POP3 listener: as given, else 1110 on --imap's address (a free
/// port when --imap takes one).
fn pop3_plain(args: &DemoArgs) -> SocketAddr {
    tls_twin(args.pop3, args.imap, 1110)
}

/// `data_dir` is the global `--data-dir`: keep state there (default: a
/// temporary directory removed on exit).
pub async fn run(args: &DemoArgs, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    super::logging::init("info", "text");
    let started = std::time::Instant::now();
    let keep = data_dir.is_some();
    let (data_dir, _temp) = match data_dir {
        Some(dir) => (dir, None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("graphgate-demo-")
                .tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };

    // The simulated tenant.
    let sim_listener = super::bind(args.sim, "simulator", "--sim").await?;
    let sim_addr = sim_listener.local_addr()?;
    let sim_url = format!("http://{sim_addr}");
    let sim = SimState::new(SimConfig {
        public_url: sim_url.clone(),
        exchange_mime: !args.exact_mime,
        ..SimConfig::default()
    })?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    {
        let stop = shutdown.clone();
        let sim = sim.clone();
        tasks.spawn(async move {
            crate::sim::serve(sim_listener, sim, async move { stop.cancelled().await }).await
        });
    }

    // The gateway's state and its two accounts, signed in for real.
    let mut config = write_demo_config(&data_dir, &sim_url)?;
    config.microsoft.graph_trace = args.graph_trace.clone();
    let runtime = Runtime::from_config(&config, StoreMode::Create, KeyMode::LoadOrCreate)?;
    let (store, key) = (&runtime.store, &runtime.key);
    for (login, password) in DEMO_ACCOUNTS {
        let account = match store.account(login)? {
            Some(account) => account,
            None => store.add_account(&NewAccount {
                login: (*login).into(),
                password: Secret::new((*password).into()),
                mailbox: (*login).into(),
                auth_profile: AuthProfile::Delegated,
                aliases: Vec::new(),
                shared_mailboxes: Vec::new(),
            })?,
        };
        match sign_in_via_simulator(&sim_url, login).await {
            Ok(tokens) => {
                save_tokens(store, key, account.id, &tokens)?;
                store.set_account_state(account.id, AccountState::Online, None)?;
            }
            Err(e) => {
                let message = format!("demo sign-in failed: {e:#}");
                store.set_account_state(account.id, AccountState::Offline, Some(&message))?;
                tracing::error!(account = login, "{message}");
            }
        }
    }

    // The gateway: spool worker and SMTP listeners.
    let gateway = crate::gateway::listeners::start(
        &config,
        &runtime,
        crate::gateway::listeners::Listen {
            smtp: Some(args.smtp),
            smtps: Some(tls_twin(args.smtps, args.smtp, 2465)),
            imap: Some(args.imap),
            imaps: Some(tls_twin(args.imaps, args.imap, 1993)),
            pop3: Some(pop3_plain(args)),
            pop3s: Some(tls_twin(args.pop3s, pop3_plain(args), 1995)),
            relay: Some(tls_twin(args.relay, args.smtp, 2526)),
        },
        &shutdown,
        &mut tasks,
    )
    .await?;
    let smtp = gateway.smtp.unwrap_or(args.smtp);
    let smtps = gateway
        .smtps
        .unwrap_or(tls_twin(args.smtps, args.smtp, 2465));
    let relay = gateway
        .relay
        .unwrap_or(tls_twin(args.relay, args.smtp, 2526));
    let imap = gateway.imap.unwrap_or(args.imap);
    let imaps = gateway
        .imaps
        .unwrap_or(tls_twin(args.imaps, args.imap, 1993));
    let pop3 = gateway.pop3.unwrap_or(pop3_plain(args));
    let pop3s = gateway
        .pop3s
        .unwrap_or(tls_twin(args.pop3s, pop3_plain(args), 1995));

    // Admin endpoint.
    let admin_listener = super::bind(args.admin, "admin endpoint", "--admin").await?;
    let admin_addr = admin_listener.local_addr()?;
    // The web console, opened by a one-time link printed below.
    let console = super::console::console(
        &config,
        Some(data_dir.join("graphgate.toml")),
        &runtime,
        &gateway,
        admin_addr,
    );
    let console_link = console.one_time_link(admin_addr);
    {
        let stop = shutdown.clone();
        let state = crate::admin::AdminState::with_console(
            store.clone(),
            gateway.listeners.clone(),
            Some(sim_url.clone()),
            Some(console.clone()),
        );
        tasks.spawn(async move {
            crate::admin::serve(admin_listener, state, async move { stop.cancelled().await }).await
        });
    }

    println!(
        "graphgate demo is running (started in {} ms). Press Ctrl-C to stop.\n\
         \n\
         Accounts (local login / password → simulated Microsoft 365 mailbox):\n\
         \x20 alice@example.com / alice\n\
         \x20 bob@example.com   / bob\n\
         \n\
         SMTP         {smtp} (STARTTLS; plain AUTH allowed on loopback)\n\
         SMTPS        {smtps} (implicit TLS, self-signed certificate)\n\
         \x20 try: curl smtp://{smtp} --mail-from alice@example.com --mail-rcpt bob@example.com \\\n\
         \x20        --user alice@example.com:alice --upload-file message.eml\n\
         Relay        {relay} (no AUTH from 127.0.0.0/8, sent as alice@example.com, sender \
         policy rewrite)\n\
         \x20 try: swaks --server {relay} --from root@myhost.local --to bob@example.com\n\
         Admin        http://{admin_addr}/healthz  /readyz  /metrics\n\
         Console      {console_link} (one-time sign-in link)\n\
         Data         {data_dir}{temp_note}\n\
         IMAP         {imap} (STARTTLS; plain LOGIN allowed on loopback)\n\
         IMAPS        {imaps} (implicit TLS, self-signed certificate)\n\
         \x20 try: curl imap://{imap}/INBOX --user alice@example.com:alice\n\
         POP3         {pop3} (STLS; plain USER/PASS allowed on loopback)\n\
         POP3S        {pop3s} (implicit TLS, self-signed certificate)\n\
         \x20 try: curl pop3://{pop3}/ --user alice@example.com:alice\n\
         \n\
         {sim_text}",
        started.elapsed().as_millis(),
        data_dir = data_dir.display(),
        temp_note = if !keep {
            " (temporary; removed on exit)"
        } else {
            ""
        },
        sim_text = super::sim::describe(&sim, sim_addr),
        console_link = console_link.0,
    );

    super::shutdown_signal().await;
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "a listener ended with an error");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A configuration file in the data directory that points at the demo's
/// simulator, so that other commands (`graphgate status --data-dir DIR`)
/// reach the same tenant.
fn write_demo_config(
    data_dir: &std::path::Path,
    sim_url: &str,
) -> anyhow::Result<crate::config::Config> {
    let mut config = crate::config::Config {
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    config.microsoft.authority_url = sim_url.to_string();
    config.microsoft.graph_url = sim_url.to_string();
    config.microsoft.tenant = crate::sim::tenant::DEMO_TENANT_ID.to_string();
    config.microsoft.client_id = crate::sim::tenant::DEMO_PUBLIC_CLIENT_ID.to_string();
    // The database goes here too (`Store::open` keeps the directory 0700).
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(data_dir)?;
    // The relay listener (its address comes from --relay): loopback
    // clients send as alice without AUTH, From rewritten to her mailbox.
    for cidr in ["127.0.0.0/8", "::1/128"] {
        config
            .relay
            .networks
            .push(crate::config::RelayNetworkConfig {
                cidr: cidr.into(),
                account: DEMO_ACCOUNTS[0].0.into(),
                sender_policy: crate::config::SenderPolicy::Rewrite,
                require_tls: false,
            });
    }
    let text = format!(
        "# Written by `graphgate demo`: the demo's simulated tenant.\n{}",
        toml::to_string_pretty(&config)?
    );
    // 0600: `serve` and the key loader refuse files others can read.
    crate::config::write_private_file(&data_dir.join("graphgate.toml"), text.as_bytes())?;
    // GRAPHGATE_* variables tune the demo as they tune `serve` (its
    // listeners come from the demo's own flags).
    let vars: Vec<(String, String)> = std::env::vars().collect();
    Ok(crate::config::Config::from_parts(
        &text,
        "graphgate demo",
        &vars,
    )?)
}

/// Sign `upn` in against the simulator with the production browser flow
/// (authorization code + PKCE, loopback redirect). The demo (or a test) plays
/// the browser: it opens the authorize URL (the simulator signs the user
/// named by `login_hint` in, as single sign-on would) and follows the
/// redirect to the loopback listener.
pub async fn sign_in_via_simulator(sim_url: &str, upn: &str) -> anyhow::Result<TokenSet> {
    sign_in_via_simulator_with(sim_url, upn, false).await
}

/// [`sign_in_via_simulator`], asking for the `.Shared` scopes too when
/// `shared` (an account that reads or sends from shared mailboxes).
pub async fn sign_in_via_simulator_with(
    sim_url: &str,
    upn: &str,
    shared: bool,
) -> anyhow::Result<TokenSet> {
    let client = EntraClient::new(AuthorityConfig {
        authority_url: sim_url.to_string(),
        tenant: crate::sim::tenant::DEMO_TENANT_ID.to_string(),
        client_id: crate::sim::tenant::DEMO_PUBLIC_CLIENT_ID.to_string(),
        credential: ClientCredential::None,
        graph_resource: "https://graph.microsoft.com".to_string(),
    })?;
    let scopes = client.config().delegated_scopes(shared);
    let login = LoopbackLogin::start(&client, None, &scopes, Some(upn)).await?;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let authorize_url = login.authorize_url().to_string();
    let open = async {
        let response = browser.get(&authorize_url).send().await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| l.replacen("http://localhost:", "http://127.0.0.1:", 1))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the simulator's authorize endpoint answered {} without a redirect",
                    response.status()
                )
            })?;
        browser.get(location).send().await?;
        Ok::<_, anyhow::Error>(())
    };
    // Listen for the redirect while "the browser" works; if the browser
    // fails, stop waiting for a redirect that will never come.
    let finish = login.finish(&client);
    tokio::pin!(finish);
    let tokens = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            tokens = &mut finish => tokens.map_err(anyhow::Error::from),
            opened = open => {
                opened?;
                (&mut finish).await.map_err(anyhow::Error::from)
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the simulated sign-in did not finish within 30 s"))??;
    check_identity(upn, &tokens)?;
    Ok(tokens)
}
