//! Configuration: one TOML file plus `GRAPHGATE_*` environment variables.
//!
//! Every key `section.key` of the file can also be set with the variable
//! `GRAPHGATE_SECTION_KEY` (top-level keys: `GRAPHGATE_KEY_NAME`), which wins
//! over the file; this is how a Docker sidecar is configured. Secrets can
//! come from files (`client_secret_file`, `GRAPHGATE_KEY_FILE`) so that they
//! need not sit in the environment.
//!
//! The documentation of every key lives in one table, [`KEYS`], from which
//! `graphgate config example` prints a complete commented file; a test checks
//! that the table and the types agree, so the documentation cannot fall
//! behind the code. Defaults are safe: everything listens on 127.0.0.1 only,
//! and the admin HTTP endpoint is off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::private_file::PrivateFileError;

mod keys;
mod relay;
mod validate;

use keys::lookup;
pub use keys::{KEYS, KeyDoc, OTHER_VARIABLES, example};
pub use relay::{RelayConfig, RelayNetworkConfig, SenderPolicy};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, key file, spool and cache live.
    pub data_dir: PathBuf,
    pub microsoft: MicrosoftConfig,
    pub graph: GraphClientConfig,
    pub smtp: SmtpConfig,
    pub imap: ImapConfig,
    pub pop3: Pop3Config,
    pub login_limit: LoginLimitConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub relay: RelayConfig,
    pub alerts: AlertsConfig,
}

/// Where alerts go (`crate::alerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// A URL that gets a JSON POST per alert; empty = off.
    pub webhook_url: String,
    /// Alert when a message has waited this many seconds for delivery;
    /// 0 = never.
    pub queued_after_s: u64,
    /// Also mail each alert to this address; empty = no mail.
    pub mail_to: String,
    /// The local account (login) that sends the alert mail.
    pub mail_from_account: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: String::new(),
            queued_after_s: 4 * 3600,
            mail_to: String::new(),
            mail_from_account: String::new(),
        }
    }
}

/// The SMTP submission listeners and the spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Submission with STARTTLS; empty = off.
    pub listen: String,
    /// Implicit TLS (the port-465 style); empty = off.
    pub implicit_tls_listen: String,
    /// Name in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message in bytes.
    pub max_message_size: u64,
    pub max_recipients: u64,
    pub max_connections: u64,
    /// AUTH without TLS from 127.0.0.1/::1.
    pub plaintext_auth_on_loopback: bool,
    /// Seconds a client waits for Graph's outcome before it gets 250.
    pub sync_window_s: u64,
    /// Hours after which an undeliverable message is bounced.
    pub bounce_after_h: u64,
    /// Seconds an interrupted send waits to show up in Sent Items.
    pub in_doubt_grace_s: u64,
    /// Seconds before the first retry (doubled per attempt, up to 30 min).
    pub retry_base_s: u64,
    /// Seconds of silence after which a connection is closed.
    pub idle_timeout_s: u64,
    /// Accept mail of a signed-out account into the spool (250, saying
    /// so) instead of 451.
    pub queue_while_signed_out: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: "127.0.0.1:2525".into(),
            implicit_tls_listen: "127.0.0.1:2465".into(),
            hostname: "localhost".into(),
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 500,
            max_connections: 1024,
            plaintext_auth_on_loopback: true,
            sync_window_s: 10,
            bounce_after_h: 48,
            in_doubt_grace_s: 120,
            retry_base_s: 30,
            idle_timeout_s: 300,
            queue_while_signed_out: false,
        }
    }
}

/// The IMAP listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// IMAP with STARTTLS; empty = off.
    pub listen: String,
    /// IMAP with implicit TLS (the port-993 style); empty = off.
    pub implicit_tls_listen: String,
    /// LOGIN without TLS from 127.0.0.1/::1.
    pub plaintext_login_on_loopback: bool,
    /// Seconds between Graph delta checks while a client IDLEs.
    pub idle_poll_s: u64,
    /// EXPUNGE deletes for good instead of moving to Deleted Items.
    pub expunge_permanently: bool,
    pub max_connections: u64,
    /// Seconds of silence (outside IDLE) after which a connection is
    /// logged out; a TLS handshake gets at most a minute of it.
    pub idle_timeout_s: u64,
    /// Size cap of the on-disk message cache, in MiB (least recently
    /// used messages go first); 0 = no cap.
    pub cache_max_mb: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            listen: "127.0.0.1:1143".into(),
            implicit_tls_listen: "127.0.0.1:1993".into(),
            plaintext_login_on_loopback: true,
            idle_poll_s: 30,
            expunge_permanently: false,
            max_connections: 1024,
            idle_timeout_s: 30 * 60,
            cache_max_mb: 2048,
        }
    }
}

/// The POP3 listeners (`pop3.*`, docs/pop3.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// POP3 with STLS; empty = off.
    pub listen: String,
    /// POP3 with implicit TLS (the port-995 style); empty = off.
    pub implicit_tls_listen: String,
    /// USER/PASS and AUTH without TLS from 127.0.0.1/::1.
    pub plaintext_login_on_loopback: bool,
    pub max_connections: u64,
    /// Seconds of silence after which a connection is closed (no UPDATE).
    pub idle_timeout_s: u64,
    /// What DELE means at QUIT: `keep`, `trash` or `delete`.
    pub on_delete: String,
    /// Per-account exceptions: `login=mode,login=mode`.
    pub on_delete_accounts: String,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: "127.0.0.1:1110".into(),
            implicit_tls_listen: "127.0.0.1:1995".into(),
            plaintext_login_on_loopback: true,
            max_connections: 256,
            idle_timeout_s: 10 * 60,
            on_delete: "trash".into(),
            on_delete_accounts: String::new(),
        }
    }
}

/// The auth penalty after failed SMTP AUTH / IMAP LOGIN attempts, per
/// (client address, login) pair and per address
/// ([`crate::login_guard`]), and the cost of a password check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginLimitConfig {
    /// Failures of a pair answered without delay.
    pub free_failures: u64,
    /// First delay in milliseconds, doubled per further failure.
    pub delay_ms: u64,
    /// Longest delay in seconds.
    pub max_delay_s: u64,
    /// Failures of a pair after which it is refused; 0 = never.
    pub lockout_after: u64,
    /// Seconds a pair is refused.
    pub lockout_s: u64,
    /// Other logins failing from one address before it is throttled.
    pub address_budget: u64,
    /// Seconds after the last failure when a count is forgotten.
    pub forget_after_s: u64,
    /// Argon2id memory of new password hashes, in KiB.
    pub argon2_memory_kib: u64,
    /// Argon2id passes of new password hashes.
    pub argon2_iterations: u64,
    /// Argon2id lanes of new password hashes.
    pub argon2_parallelism: u64,
    /// Password checks running at once; 0 = one per core.
    pub password_checks_at_once: u64,
    /// Seconds a verified password is checked against the in-memory
    /// verified-credentials cache instead of Argon2id; 0 = off.
    pub verified_cache_s: u64,
}

impl Default for LoginLimitConfig {
    fn default() -> Self {
        let d = crate::login_guard::LoginLimits::default();
        let p = crate::store::accounts::PasswordParams::default();
        LoginLimitConfig {
            free_failures: d.free_failures.into(),
            delay_ms: u64::try_from(d.delay.as_millis()).unwrap_or(u64::MAX),
            max_delay_s: d.max_delay.as_secs(),
            lockout_after: d.lockout_after.into(),
            lockout_s: d.lockout.as_secs(),
            address_budget: d.address_budget.into(),
            forget_after_s: d.forget_after.as_secs(),
            argon2_memory_kib: p.memory_kib.into(),
            argon2_iterations: p.iterations.into(),
            argon2_parallelism: p.parallelism.into(),
            password_checks_at_once: 0,
            verified_cache_s: d.verified_for.as_secs(),
        }
    }
}

impl LoginLimitConfig {
    pub fn limits(&self) -> crate::login_guard::LoginLimits {
        use std::time::Duration;
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        crate::login_guard::LoginLimits {
            free_failures: count(self.free_failures),
            delay: Duration::from_millis(self.delay_ms),
            max_delay: Duration::from_secs(self.max_delay_s),
            lockout_after: count(self.lockout_after),
            lockout: Duration::from_secs(self.lockout_s),
            address_budget: count(self.address_budget),
            forget_after: Duration::from_secs(self.forget_after_s.max(1)),
            verified_for: Duration::from_secs(self.verified_cache_s),
        }
    }

    /// The Argon2id parameters of new hashes (checked when applied).
    pub fn password_params(&self) -> crate::store::accounts::PasswordParams {
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        crate::store::accounts::PasswordParams {
            memory_kib: count(self.argon2_memory_kib),
            iterations: count(self.argon2_iterations),
            parallelism: count(self.argon2_parallelism),
        }
    }
}

/// The certificate of the SMTP and IMAP listeners.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; unset: a self-signed one generated in the
    /// data directory.
    pub certificate_file: Option<PathBuf>,
    /// PEM private key of `certificate_file`.
    pub private_key_file: Option<PathBuf>,
}

/// Entra ID's authority in the global cloud.
pub const GLOBAL_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Microsoft Graph in the global cloud.
pub const GLOBAL_GRAPH: &str = "https://graph.microsoft.com";

/// The Microsoft cloud an installation works in ("National cloud
/// deployments", learn.microsoft.com/graph/deployments; graph-facts.md,
/// "Tokens per cloud"). One setting gives the Entra authority, the Graph
/// endpoint and the resource that prefixes every scope; a token of one
/// cloud is not valid in another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// Microsoft's global service.
    #[default]
    Global,
    /// Microsoft Graph for US Government L4.
    Usgov,
    /// Microsoft Graph for US Government L5 (DOD).
    UsgovDod,
    /// Microsoft Graph China, operated by 21Vianet.
    China,
}

impl Cloud {
    /// The Entra ID authority of this cloud.
    pub fn authority(self) -> &'static str {
        match self {
            Cloud::Global => GLOBAL_AUTHORITY,
            Cloud::Usgov | Cloud::UsgovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }

    /// Microsoft Graph in this cloud: its endpoint and the resource URI of
    /// its scopes (`{resource}/Mail.ReadWrite`, `{resource}/.default`).
    pub fn graph(self) -> &'static str {
        match self {
            Cloud::Global => GLOBAL_GRAPH,
            Cloud::Usgov => "https://graph.microsoft.us",
            Cloud::UsgovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// What graphgate uses that this cloud does not offer, in words (empty:
    /// nothing). Message delta is not available in the 21Vianet cloud
    /// (deployments.md, "Supported features"); the mailbox model then
    /// lists folders in full on every sync, which costs more requests.
    pub fn missing_features(self) -> &'static str {
        match self {
            Cloud::China => {
                "message delta is not available in the China (21Vianet) cloud: every folder \
                 sync lists the folder in full, one request per 1,000 messages"
            }
            _ => "",
        }
    }
}

/// Microsoft endpoints and the app registration used to sign in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MicrosoftConfig {
    /// The Microsoft cloud: gives the authority, the Graph endpoint and the
    /// scope resource; `authority_url` / `graph_url` set to anything but
    /// the global defaults override the first two.
    pub cloud: Cloud,
    /// Entra ID authority host.
    pub authority_url: String,
    /// Microsoft Graph host.
    pub graph_url: String,
    /// `organizations`, `common`, a tenant GUID or a verified domain.
    pub tenant: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// A file holding the client secret's value (confidential apps).
    pub client_secret_file: Option<PathBuf>,
    /// PEM certificate registered with the app (certificate credentials).
    pub certificate_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub private_key_file: Option<PathBuf>,
    /// How often (seconds) the gateway redeems each account's grant to
    /// prove it still works; 0 = never.
    pub token_check_s: u64,
    /// Append every Graph request and answer, redacted, to this file.
    pub graph_trace: Option<PathBuf>,
}

impl MicrosoftConfig {
    /// The Entra ID authority in use: `authority_url` when set to anything
    /// but the global default, else the cloud's.
    pub fn authority(&self) -> String {
        if self.authority_url.trim_end_matches('/') == GLOBAL_AUTHORITY {
            self.cloud.authority().to_string()
        } else {
            self.authority_url.clone()
        }
    }

    /// The Graph endpoint in use: `graph_url` when set to anything but the
    /// global default, else the cloud's.
    pub fn graph_endpoint(&self) -> String {
        if self.graph_url.trim_end_matches('/') == GLOBAL_GRAPH {
            self.cloud.graph().to_string()
        } else {
            self.graph_url.clone()
        }
    }

    /// The resource that prefixes scopes: always the cloud's (a proxy or
    /// the simulator at another URL still serves that cloud's Graph).
    pub fn graph_resource(&self) -> String {
        self.cloud.graph().to_string()
    }
}

/// How the Graph client retries and how many requests it keeps in flight
/// (`[graph]`). The defaults are Microsoft's: 4 concurrent requests per
/// mailbox ("Application is over its MailboxConcurrency limit" past them),
/// 429/503 answered by waiting as `Retry-After` says (graph-facts.md,
/// "Throttling" and "$batch and the 4-concurrent limit"; Microsoft Learn,
/// "Microsoft Graph service-specific throttling limits", Outlook service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphClientConfig {
    /// Requests in flight per mailbox (a `$batch` takes one place per
    /// inner request).
    pub concurrency_per_mailbox: u64,
    /// Times a throttled (429) or unavailable (503/504, idempotent
    /// requests only) request is sent again.
    pub max_retries: u64,
    /// The longest `Retry-After` honoured, in seconds.
    pub max_retry_after_s: u64,
    /// Give a request up when its waits would add up to more than this.
    pub max_total_wait_s: u64,
    /// First backoff without `Retry-After`, in ms (doubled, jittered).
    pub base_backoff_ms: u64,
    /// Timeout of one HTTP request, in seconds.
    pub request_timeout_s: u64,
}

impl Default for GraphClientConfig {
    fn default() -> Self {
        let d = crate::graph::GraphConfig::default();
        GraphClientConfig {
            concurrency_per_mailbox: d.concurrency_per_mailbox as u64,
            max_retries: u64::from(d.retry.max_attempts.saturating_sub(1)),
            max_retry_after_s: d.retry.max_retry_after_s,
            max_total_wait_s: d.retry.max_total_wait_s,
            base_backoff_ms: d.retry.base_backoff_ms,
            request_timeout_s: d.request_timeout_s,
        }
    }
}

impl Config {
    /// The Graph client's settings: the endpoint and trace of
    /// `[microsoft]`, the limits of `[graph]`, Microsoft's defaults for the
    /// rest. The one place every command builds them from
    /// ([`crate::gateway::Runtime`]).
    pub fn graph_config(&self) -> Result<crate::graph::GraphConfig, ConfigError> {
        let m = &self.microsoft;
        let g = &self.graph;
        if g.concurrency_per_mailbox == 0 {
            return Err(ConfigError::Invalid {
                origin: format!(
                    "`graph.concurrency_per_mailbox` ({})",
                    env_name("graph.concurrency_per_mailbox")
                ),
                message: "0 would send nothing; Microsoft allows 4 requests in flight per                           mailbox, the default"
                    .into(),
            });
        }
        let defaults = crate::graph::GraphConfig::default();
        Ok(crate::graph::GraphConfig {
            base_url: m.graph_endpoint(),
            message_delta: m.cloud.missing_features().is_empty(),
            trace: m.graph_trace.clone().filter(|p| !p.as_os_str().is_empty()),
            concurrency_per_mailbox: usize::try_from(g.concurrency_per_mailbox)
                .unwrap_or(usize::MAX),
            request_timeout_s: g.request_timeout_s,
            retry: crate::graph::RetryPolicy {
                max_attempts: u32::try_from(g.max_retries.saturating_add(1)).unwrap_or(u32::MAX),
                max_retry_after_s: g.max_retry_after_s,
                max_total_wait_s: g.max_total_wait_s,
                base_backoff_ms: g.base_backoff_ms,
            },
            ..defaults
        })
    }
}

/// The optional admin HTTP endpoint (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on, e.g. `127.0.0.1:8025`; empty = off.
    pub listen: String,
    /// `/metrics` also by account login and Graph mailbox address.
    pub account_metrics: bool,
    /// Let the web console answer clients that are not on loopback (it
    /// still needs its admin password). Off by default.
    pub console_remote: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `graphgate=debug,info`…
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Log every SMTP and IMAP line (credentials redacted) at trace level
    /// under `graphgate::wire`.
    pub protocol_trace: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            microsoft: MicrosoftConfig::default(),
            graph: GraphClientConfig::default(),
            smtp: SmtpConfig::default(),
            imap: ImapConfig::default(),
            pop3: Pop3Config::default(),
            login_limit: LoginLimitConfig::default(),
            tls: TlsConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            relay: RelayConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl Default for MicrosoftConfig {
    fn default() -> Self {
        MicrosoftConfig {
            cloud: Cloud::Global,
            authority_url: GLOBAL_AUTHORITY.into(),
            graph_url: GLOBAL_GRAPH.into(),
            tenant: "organizations".into(),
            client_id: String::new(),
            client_secret_file: None,
            certificate_file: None,
            private_key_file: None,
            token_check_s: 3600,
            graph_trace: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
            protocol_trace: false,
        }
    }
}

/// `$XDG_DATA_HOME/graphgate` (usually `~/.local/share/graphgate`), or
/// `./graphgate-data` when no home directory is known.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("graphgate"))
        .unwrap_or_else(|| PathBuf::from("graphgate-data"))
}

/// Errors reading the configuration, each naming the file, key or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    /// A file that holds or names secrets is open to other users.
    #[error(transparent)]
    NotPrivate(PrivateFileError),
    #[error(
        "unknown environment variable {name}: no configuration key `{key}` exists; \
         `graphgate config example` lists every key (variable names are GRAPHGATE_ + the key \
         with dots as underscores, upper case)"
    )]
    UnknownVariable { name: String, key: String },
}

/// Refuse `path` when group or others may read or write it
/// ([`crate::private_file::check`]); `what` names the file in the message.
pub fn check_private_file(path: &Path, what: &'static str) -> Result<(), ConfigError> {
    crate::private_file::check(path, what).map_err(|e| match e {
        PrivateFileError::Read { path, source } => ConfigError::Read { path, source },
        other => ConfigError::NotPrivate(other),
    })
}

pub use crate::private_file::write as write_private_file;

/// The environment variable for a key: `microsoft.client_id` →
/// `GRAPHGATE_MICROSOFT_CLIENT_ID`.
pub fn env_name(key: &str) -> String {
    format!("GRAPHGATE_{}", key.replace('.', "_").to_ascii_uppercase())
}

impl Config {
    /// Read `path` (if given) and apply the environment on top.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let origin = path.map_or("the configuration".to_string(), |p| p.display().to_string());
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Config::from_parts(&text, &origin, &vars)
    }

    /// Parse TOML `text` and apply `GRAPHGATE_*` variables from `vars`.
    pub fn from_parts(
        text: &str,
        origin: &str,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let defaults =
            toml::Value::try_from(Config::default()).map_err(|e| ConfigError::Invalid {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("GRAPHGATE_") else {
                continue;
            };
            if OTHER_VARIABLES.iter().any(|(n, _)| n == name) || rest.is_empty() {
                continue;
            }
            let Some(doc) = KEYS.iter().find(|k| env_name(k.key) == *name) else {
                return Err(ConfigError::UnknownVariable {
                    name: name.clone(),
                    key: rest.to_ascii_lowercase(),
                });
            };
            let typed = parse_env_value(name, value, lookup(&defaults, doc.key))?;
            set_key(&mut table, doc.key, typed);
        }
        Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
            origin: format!("{origin} (with GRAPHGATE_* variables)"),
            message: e.to_string(),
        })
    }

    /// The SMTP listen addresses (STARTTLS, implicit TLS), when on.
    pub fn smtp_listen(&self) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ConfigError> {
        Ok((
            parse_listen("smtp.listen", &self.smtp.listen)?,
            parse_listen("smtp.implicit_tls_listen", &self.smtp.implicit_tls_listen)?,
        ))
    }

    /// The IMAP listen addresses (STARTTLS, implicit TLS), when on.
    pub fn imap_listen(&self) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ConfigError> {
        Ok((
            parse_listen("imap.listen", &self.imap.listen)?,
            parse_listen("imap.implicit_tls_listen", &self.imap.implicit_tls_listen)?,
        ))
    }

    /// The POP3 listen addresses (STLS, implicit TLS), when on.
    pub fn pop3_listen(&self) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ConfigError> {
        Ok((
            parse_listen("pop3.listen", &self.pop3.listen)?,
            parse_listen("pop3.implicit_tls_listen", &self.pop3.implicit_tls_listen)?,
        ))
    }

    /// The relay listener's address, if it is on.
    pub fn relay_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("relay.listen", &self.relay.listen)
    }

    /// The admin listen address, if the endpoint is on.
    pub fn admin_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("admin.listen", &self.admin.listen)
    }
}

fn parse_listen(key: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| ConfigError::Invalid {
            origin: format!("`{key}` ({})", env_name(key)),
            message: format!("{value:?} is not an address such as 127.0.0.1:8025"),
        })
}

/// An environment value takes the type of the key's default: booleans and
/// integers are parsed, everything else stays a string.
fn parse_env_value(
    name: &str,
    value: &str,
    default: Option<&toml::Value>,
) -> Result<toml::Value, ConfigError> {
    let invalid = |what: &str| ConfigError::Invalid {
        origin: name.to_string(),
        message: format!("{value:?} is not {what}"),
    };
    Ok(match default {
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(value.parse().map_err(|_| invalid("true or false"))?)
        }
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(value.parse().map_err(|_| invalid("a whole number"))?)
        }
        Some(toml::Value::Array(_)) => {
            return Err(invalid(
                "settable by a variable: this key is a list of tables, set it in the \
                 configuration file",
            ));
        }
        _ => toml::Value::String(value.to_string()),
    })
}

fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set_key(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
