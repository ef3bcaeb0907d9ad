//! The composition root: [`Runtime::from_config`] turns the configuration
//! into the gateway's parts — the store, its token key, the one Graph
//! client (with `[graph]`'s retry and concurrency settings), the Entra ID
//! client and the account registry — for every command (`serve`, `demo`,
//! `status`, `login`, `send-test`, `doctor`). Wiring only: no command
//! builds a Graph or Entra client of its own, so a setting of the
//! configuration reaches all of them.

pub mod alert_mail;
pub mod doctor;
pub mod listeners;
pub mod net;
pub mod ops;
pub mod registry;
pub mod send_test;

use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::{AuthError, AuthorityConfig, ClientCredential, EntraClient};
use crate::config::{Config, ConfigError};
use crate::graph::{GraphClient, GraphError};
use crate::runtime::Accounts;
use crate::secret::Secret;
use crate::store::{Store, StoreError, StoreKey};

/// The store of the data directory: made if missing, or required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `serve` and `demo`: create the directory and database when missing.
    Create,
    /// Every other command: the database must exist already (a command
    /// never creates one by accident in the wrong directory).
    Existing,
}

/// The token-encryption key: made if missing, or required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// Load it, creating `graphgate.key` when no key is set anywhere.
    LoadOrCreate,
    /// Load it only if one is set (`GRAPHGATE_KEY`, `GRAPHGATE_KEY_FILE`
    /// or `<data dir>/graphgate.key`): a new key would orphan every stored
    /// token, which checks (`doctor`, `send-test`) must never do.
    Existing,
}

/// Why the gateway's parts could not be built; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "no graphgate database at {}; pass --data-dir (or set data_dir / GRAPHGATE_DATA_DIR) \
         to the directory `graphgate serve` or `graphgate demo` uses",
        .0.display()
    )]
    NoDatabase(PathBuf),
    #[error(
        "cannot use the data directory {}: {reason}. Make it a directory the user graphgate \
         runs as can write (mkdir -p DIR; chown USER DIR; chmod 700 DIR), or point data_dir \
         (GRAPHGATE_DATA_DIR, --data-dir) at one; `graphgate doctor` checks it",
        .path.display()
    )]
    DataDir { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(StoreError),
    #[error(
        "the token key (graphgate.key) is missing from the data directory {}: the stored \
         tokens cannot be opened; restore it from a backup, or sign every account in again",
        .0.display()
    )]
    KeyMissing(PathBuf),
    #[error(transparent)]
    Key(StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// The gateway's parts, built once from the configuration.
pub struct Runtime {
    pub store: Store,
    pub key: StoreKey,
    /// The one Graph client: its connection pool, its per-mailbox
    /// concurrency limits and its counters are shared by every account.
    pub graph: GraphClient,
    /// The Entra ID client, or why the configuration gives none (not
    /// fatal: the gateway runs, and every account says what to fix).
    pub entra: Result<Arc<EntraClient>, AuthError>,
    /// Each account's tokens and Graph mailbox, opened on first use.
    pub accounts: Arc<Accounts>,
}

impl Runtime {
    /// Open the store (`store`), then as [`Runtime::from_store`].
    pub fn from_config(
        config: &Config,
        store: StoreMode,
        key: KeyMode,
    ) -> Result<Runtime, GatewayError> {
        let store = open_store(config, store)?;
        Runtime::from_store(config, store, key)
    }

    /// The parts around a store already open (a command that reports on
    /// the database first): the key (`key`), the Graph client from
    /// `[microsoft]` and `[graph]`, the Entra ID client, the accounts.
    pub fn from_store(
        config: &Config,
        store: Store,
        key: KeyMode,
    ) -> Result<Runtime, GatewayError> {
        let dir = &config.data_dir;
        if key == KeyMode::Existing && !key_is_set(dir) {
            return Err(GatewayError::KeyMissing(dir.clone()));
        }
        let key = StoreKey::load(dir).map_err(GatewayError::Key)?;
        let graph_config = config.graph_config()?;
        if graph_config.concurrency_per_mailbox > 4 {
            tracing::warn!(
                "graph.concurrency_per_mailbox is {}: Microsoft allows 4 requests in flight per \
                 mailbox and throttles more (429 MailboxConcurrency); lower it unless a proxy \
                 queues them",
                graph_config.concurrency_per_mailbox
            );
        }
        let graph = GraphClient::new(graph_config)?;
        let entra = authority_from_config(config)
            .and_then(EntraClient::new)
            .map(Arc::new);
        let registry_entra = match &entra {
            Ok(client) => Ok(client.clone()),
            Err(e) => Err(format!("{e}. {}", e.remedy("<account>"))),
        };
        let accounts = Accounts::new(store.clone(), key.clone(), registry_entra, graph.clone());
        Ok(Runtime {
            store,
            key,
            graph,
            entra,
            accounts,
        })
    }
}

/// The store of `config.data_dir` as `mode` says.
pub fn open_store(config: &Config, mode: StoreMode) -> Result<Store, GatewayError> {
    let path = Store::path_in(&config.data_dir);
    if mode == StoreMode::Existing && !path.exists() {
        return Err(GatewayError::NoDatabase(path));
    }
    if mode == StoreMode::Create {
        // Said once, with the fix (issue 18), instead of the store's OS
        // error repeated by its source chain.
        let dir = &config.data_dir;
        let probe = std::fs::create_dir_all(dir).and_then(|()| {
            tempfile::Builder::new()
                .prefix(".graphgate-probe-")
                .tempfile_in(dir)
                .map(drop)
        });
        if let Err(e) = probe {
            return Err(GatewayError::DataDir {
                path: dir.clone(),
                reason: e.to_string(),
            });
        }
    }
    Store::open(&config.data_dir).map_err(GatewayError::Store)
}

/// A token key is set: in the environment, or as the data directory's file.
pub fn key_is_set(data_dir: &std::path::Path) -> bool {
    std::env::var_os("GRAPHGATE_KEY").is_some()
        || std::env::var_os("GRAPHGATE_KEY_FILE").is_some()
        || data_dir.join("graphgate.key").exists()
}

/// The Entra ID settings from the configuration (reading the secret or
/// certificate files it names).
pub fn authority_from_config(config: &Config) -> Result<AuthorityConfig, AuthError> {
    let m = &config.microsoft;
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| AuthError::Config(format!("microsoft.{key} {}: {e}", path.display())))
    };
    let credential = match (
        &m.client_secret_file,
        &m.certificate_file,
        &m.private_key_file,
    ) {
        (Some(secret), None, None) => ClientCredential::Secret {
            secret: Secret::new(read("client_secret_file", secret)?.trim().to_string()),
        },
        (None, Some(cert), Some(key)) => ClientCredential::Certificate {
            cert_pem: read("certificate_file", cert)?,
            key_pem: Secret::new(read("private_key_file", key)?),
            algorithm: Default::default(),
        },
        (None, None, None) => ClientCredential::None,
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(AuthError::Config(
                "microsoft.certificate_file and microsoft.private_key_file go together".into(),
            ));
        }
        _ => {
            return Err(AuthError::Config(
                "set either microsoft.client_secret_file or the certificate files, not both".into(),
            ));
        }
    };
    Ok(AuthorityConfig {
        authority_url: m.authority(),
        tenant: m.tenant.clone(),
        client_id: m.client_id.clone(),
        credential,
        graph_resource: m.graph_resource(),
    })
}
