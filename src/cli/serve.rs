//! `graphgate serve`: the gateway from configuration.

use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::store::{Store, StoreKey};

#[derive(Debug, Args)]
pub struct ServeArgs {}

pub async fn run(config: Config) -> anyhow::Result<ExitCode> {
    super::logging::init(&config.log.level, &config.log.format);
    let store = Store::open(&config.data_dir)?;
    let key = StoreKey::load(&config.data_dir)?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        key_id = %key.id(),
        schema = store.schema_version()?,
        "store opened"
    );
    let accounts = store.accounts()?;
    if accounts.is_empty() {
        tracing::warn!(
            "no account is configured yet; add one with `graphgate accounts add` and sign it in"
        );
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = config.admin_listen()? {
        let listener = super::bind(addr, "admin endpoint", "admin.listen").await?;
        tracing::info!(addr = %listener.local_addr()?, "admin endpoint listening");
        let state = crate::admin::AdminState::new(store.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            crate::admin::serve(listener, state, async move { stop.cancelled().await }).await
        });
    }
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "a listener ended with an error");
        }
    }
    Ok(ExitCode::SUCCESS)
}
