//! `graphgate serve`: the gateway from configuration.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use crate::account::open_accounts;
use crate::config::Config;
use crate::gateway::{KeyMode, Runtime, StoreMode};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Append every Graph request and answer, redacted, to FILE (the
    /// config key `microsoft.graph_trace`; docs/graph-trace.md).
    #[arg(long, value_name = "FILE")]
    pub graph_trace: Option<std::path::PathBuf>,
    /// POP3 listener (STLS offered); overrides `pop3.listen`.
    #[arg(long, value_name = "ADDR")]
    pub pop3: Option<std::net::SocketAddr>,
    /// POP3 with implicit TLS; overrides `pop3.implicit_tls_listen`.
    #[arg(long, value_name = "ADDR")]
    pub pop3s: Option<std::net::SocketAddr>,
    /// Start the relay listener (mail without AUTH from relay.networks)
    /// on ADDR; the config key `relay.listen`.
    #[arg(long, value_name = "ADDR")]
    pub relay: Option<std::net::SocketAddr>,
}

/// `config_path`: the file the configuration came from, read again on
/// `SIGHUP` (see [`crate::gateway::listeners::reload_relay`]) and shown by
/// the console's Doctor page.
pub async fn run(
    config: Config,
    config_path: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    super::logging::init_config(&config.log);
    let runtime = Runtime::from_config(&config, StoreMode::Create, KeyMode::LoadOrCreate)?;
    let (store, key) = (&runtime.store, &runtime.key);
    tracing::info!(
        data_dir = %config.data_dir.display(),
        key_id = %key.id(),
        schema = store.schema_version()?,
        "store opened"
    );
    let g = &config.graph;
    tracing::info!(
        concurrency_per_mailbox = g.concurrency_per_mailbox,
        max_retries = g.max_retries,
        max_retry_after_s = g.max_retry_after_s,
        "Graph client (graph.*)"
    );
    let missing = config.microsoft.cloud.missing_features();
    if !missing.is_empty() {
        tracing::warn!("microsoft.cloud = {:?}: {missing}", config.microsoft.cloud);
    }
    if store.accounts()?.is_empty() {
        tracing::warn!(
            "no account is configured yet; add one with `graphgate accounts add` and sign it in"
        );
    }
    match &runtime.entra {
        Ok(entra) => {
            let ready = open_accounts(store, key, entra.clone(), &runtime.graph).await?;
            tracing::info!(online = ready.len(), "accounts checked");
        }
        Err(e) => tracing::error!(
            "the Entra ID settings are unusable, so no account can sign in: {e}. {}",
            e.remedy("<account>")
        ),
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut tasks: crate::gateway::listeners::Tasks = tokio::task::JoinSet::new();
    let gateway = crate::gateway::listeners::start(
        &config,
        &runtime,
        crate::gateway::listeners::Listen::default(),
        &shutdown,
        &mut tasks,
    )
    .await?;
    if gateway.smtp.is_none() && gateway.smtps.is_none() {
        tracing::warn!("no SMTP listener: smtp.listen and smtp.implicit_tls_listen are both empty");
    }
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    let mut admin = "off".to_string();
    if let Some(addr) = config.admin_listen()? {
        let listener = super::bind(addr, "admin endpoint", "admin.listen").await?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, "admin endpoint listening");
        admin = format!("http://{local}");
        // The console: closed until `graphgate console passwd`.
        let console =
            super::console::console(&config, config_path.clone(), &runtime, &gateway, local);
        let state = crate::admin::AdminState::with_console(
            store.clone(),
            gateway.listeners.clone(),
            Some(config.microsoft.graph_endpoint()),
            Some(console),
        );
        let stop = shutdown.clone();
        tasks.spawn(async move {
            crate::admin::serve(listener, state, async move { stop.cancelled().await }).await
        });
    }
    // The banner is for whoever started graphgate; a closed stdout (a
    // service manager that does not read it) must not stop the gateway.
    let _ = writeln!(
        std::io::stdout(),
        "graphgate is running. SMTP {} · SMTPS {} · relay {} · IMAP {} · IMAPS {} · POP3 {} · \
         POP3S {} · admin {admin} · data {}",
        show(gateway.smtp),
        show(gateway.smtps),
        show(gateway.relay),
        show(gateway.imap),
        show(gateway.imaps),
        show(gateway.pop3),
        show(gateway.pop3s),
        config.data_dir.display()
    );
    // SIGHUP: read relay.networks again and resolve its host names.
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = &mut stop => break,
            Some(()) = hup => {
                tracing::info!("SIGHUP: reloading the configuration's relay.networks");
                crate::gateway::listeners::reload_relay(&gateway, config_path.as_deref()).await;
            }
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "a listener ended with an error");
        }
    }
    Ok(ExitCode::SUCCESS)
}
