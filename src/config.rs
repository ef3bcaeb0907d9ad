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

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, key file, spool and cache live.
    pub data_dir: PathBuf,
    pub microsoft: MicrosoftConfig,
    pub smtp: SmtpConfig,
    pub imap: ImapConfig,
    pub login_limit: LoginLimitConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
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

    /// The Graph client's settings from these keys (Microsoft's defaults
    /// for the rest): the one place every command builds them from.
    pub fn graph_config(&self) -> crate::graph::GraphConfig {
        crate::graph::GraphConfig {
            base_url: self.graph_endpoint(),
            message_delta: self.cloud.missing_features().is_empty(),
            trace: self
                .graph_trace
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            ..crate::graph::GraphConfig::default()
        }
    }
}

/// The optional admin HTTP endpoint (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on, e.g. `127.0.0.1:8025`; empty = off.
    pub listen: String,
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
            smtp: SmtpConfig::default(),
            imap: ImapConfig::default(),
            login_limit: LoginLimitConfig::default(),
            tls: TlsConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
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

/// One documented key.
pub struct KeyDoc {
    /// `section.key` or `key`.
    pub key: &'static str,
    /// What it does, and when to change it.
    pub doc: &'static str,
    /// An example value for `config example` when the default is empty.
    pub example: Option<&'static str>,
}

/// Every configuration key, in file order.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "data_dir",
        doc: "Directory for the database (graphgate.sqlite3), the token key (graphgate.key), \
              the spool and the message cache. Created with mode 0700. In the container image: /data.",
        example: None,
    },
    KeyDoc {
        key: "microsoft.cloud",
        doc: "The Microsoft cloud: `global`, `usgov` (US Government L4), `usgov-dod` (L5) or \
              `china` (21Vianet). Sets the Entra authority, the Graph endpoint and the scope \
              prefix together (tokens of one cloud are refused by another); \
              `authority_url` and `graph_url` override the first two when set. In `china` \
              message delta does not exist, so folder syncs list folders in full.",
        example: Some("global"),
    },
    KeyDoc {
        key: "microsoft.authority_url",
        doc: "Entra ID authority, when it is not the one `microsoft.cloud` gives (a proxy, \
              the simulator: http://127.0.0.1:8787).",
        example: None,
    },
    KeyDoc {
        key: "microsoft.graph_url",
        doc: "Microsoft Graph, when it is not the one `microsoft.cloud` gives (a proxy, the \
              simulator: http://127.0.0.1:8787). Scopes keep the cloud's prefix.",
        example: None,
    },
    KeyDoc {
        key: "microsoft.tenant",
        doc: "Tenant to sign in to: `organizations` (any work account), a tenant GUID or a \
              verified domain such as contoso.com. Single-tenant apps need the GUID or domain.",
        example: None,
    },
    KeyDoc {
        key: "microsoft.client_id",
        doc: "Application (client) ID of your app registration in the Entra admin center \
              (App registrations > your app > Overview).",
        example: Some("00000000-0000-0000-0000-000000000000"),
    },
    KeyDoc {
        key: "microsoft.client_secret_file",
        doc: "For app-only (client credentials) accounts: a file holding the client secret's \
              *Value* (not its Secret ID). Mode 0600.",
        example: Some("/run/secrets/graphgate_client_secret"),
    },
    KeyDoc {
        key: "microsoft.certificate_file",
        doc: "For app-only accounts with certificate credentials: the PEM certificate uploaded \
              to the app registration (Certificates & secrets).",
        example: Some("/run/secrets/graphgate_cert.pem"),
    },
    KeyDoc {
        key: "microsoft.private_key_file",
        doc: "The PEM private key of `certificate_file`. Mode 0600.",
        example: Some("/run/secrets/graphgate_key.pem"),
    },
    KeyDoc {
        key: "microsoft.graph_trace",
        doc: "Append every Microsoft Graph request and answer to this file, one JSON object a \
              line, with tokens, upload-session keys and message bodies redacted (subjects, \
              addresses and ids stay: review before sharing). For bug reports: \
              docs/graph-trace.md. Same as `serve --graph-trace FILE`. Empty: off.",
        example: Some("/var/lib/graphgate/graph-trace.jsonl"),
    },
    KeyDoc {
        key: "microsoft.token_check_s",
        doc: "How often, in seconds, a running gateway redeems each signed-in account's grant \
              to prove it still works: a revoked grant turns the account OFFLINE (and /readyz \
              not ready) within this time rather than when mail waits for it, and a rarely used \
              account's refresh token never expires by inactivity (AADSTS700082). 0: never.",
        example: Some("3600"),
    },
    KeyDoc {
        key: "smtp.listen",
        doc: "SMTP submission listener (STARTTLS offered). Empty: off. Point legacy \
              applications here (host 127.0.0.1, this port). Listening beyond loopback makes \
              graphgate reachable from the network: every client must still authenticate.",
        example: None,
    },
    KeyDoc {
        key: "smtp.implicit_tls_listen",
        doc: "SMTP with implicit TLS (the port-465 style, `smtps://`). Empty: off.",
        example: None,
    },
    KeyDoc {
        key: "smtp.hostname",
        doc: "The name graphgate gives in its SMTP greeting and EHLO reply.",
        example: None,
    },
    KeyDoc {
        key: "smtp.max_message_size",
        doc: "Largest message in bytes, announced in EHLO SIZE (Exchange Online's default is \
              35 MB); larger ones get 552 5.3.4. IMAP APPEND takes at most this or 3 MB \
              (one Graph request), whichever is smaller, announced as APPENDLIMIT.",
        example: None,
    },
    KeyDoc {
        key: "smtp.max_recipients",
        doc: "Recipients per message (Exchange Online allows 500).",
        example: None,
    },
    KeyDoc {
        key: "smtp.max_connections",
        doc: "Simultaneous SMTP connections; more get 421 and may retry.",
        example: None,
    },
    KeyDoc {
        key: "smtp.plaintext_auth_on_loopback",
        doc: "Allow AUTH without TLS from 127.0.0.1/::1 (legacy applications on the same host). \
              From any other address AUTH always needs STARTTLS or implicit TLS.",
        example: None,
    },
    KeyDoc {
        key: "smtp.sync_window_s",
        doc: "Seconds a client waits after DATA for Graph's answer: within it the client gets \
              the real outcome (250, or 5xx with Graph's reason); after it, 250 and the spool \
              delivers in the background.",
        example: None,
    },
    KeyDoc {
        key: "smtp.bounce_after_h",
        doc: "Hours a message may wait in the spool (Graph unreachable, account signed out) \
              before it is bounced: a delivery status notification goes to the sender's Inbox.",
        example: None,
    },
    KeyDoc {
        key: "smtp.in_doubt_grace_s",
        doc: "When a send was interrupted after the request left (crash, lost answer), seconds \
              to wait for its copy in Sent Items before concluding it was not sent and sending it.",
        example: None,
    },
    KeyDoc {
        key: "smtp.retry_base_s",
        doc: "Seconds before the first retry of a deferred message; doubled per attempt up to \
              30 minutes. Graph's Retry-After is honoured within each attempt.",
        example: None,
    },
    KeyDoc {
        key: "smtp.idle_timeout_s",
        doc: "Seconds a silent SMTP connection stays open.",
        example: None,
    },
    KeyDoc {
        key: "imap.listen",
        doc: "IMAP listener (STARTTLS offered). Empty: off. Mail clients and mail handlers \
              connect here with a local account's login and password.",
        example: None,
    },
    KeyDoc {
        key: "imap.implicit_tls_listen",
        doc: "IMAP with implicit TLS (the port-993 style, `imaps://`). Empty: off.",
        example: None,
    },
    KeyDoc {
        key: "imap.plaintext_login_on_loopback",
        doc: "Allow LOGIN/AUTHENTICATE without TLS from 127.0.0.1/::1. From any other address \
              login needs STARTTLS or implicit TLS (LOGINDISABLED is announced before).",
        example: None,
    },
    KeyDoc {
        key: "imap.idle_timeout_s",
        doc: "Seconds a silent IMAP connection stays logged in outside IDLE (RFC 3501's \
              autologout: at least 30 minutes for real clients). A TLS handshake gets at most \
              60 seconds of it.",
        example: None,
    },
    KeyDoc {
        key: "imap.idle_poll_s",
        doc: "While a client IDLEs, seconds between checks for changes in Microsoft 365 (one \
              Graph delta request each). Also how long a mailbox's folder tree is used \
              without asking Graph again: LOGIN and LIST within it cost no Graph request, \
              after it one folder delta request.",
        example: None,
    },
    KeyDoc {
        key: "imap.expunge_permanently",
        doc: "false: EXPUNGE moves messages to Deleted Items (recoverable, like Outlook). \
              true: EXPUNGE deletes them for good.",
        example: None,
    },
    KeyDoc {
        key: "imap.max_connections",
        doc: "Simultaneous IMAP connections; more are refused with BYE.",
        example: None,
    },
    KeyDoc {
        key: "imap.cache_max_mb",
        doc: "Size cap, in MiB, of the on-disk cache of message bytes (<data dir>/cache): the \
              least recently used messages are dropped first and fetched again from Graph when \
              a client asks for them. 0: no cap.",
        example: Some("2048"),
    },
    KeyDoc {
        key: "login_limit.free_failures",
        doc: "Failed SMTP AUTH / IMAP LOGIN attempts of one login from one client address \
              (SMTP and IMAP together, loopback included) answered at once. After them each \
              attempt of that pair waits first; other logins from the same address do not.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.delay_ms",
        doc: "The first such wait in milliseconds; doubled per further failure of the pair up \
              to login_limit.max_delay_s.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.max_delay_s",
        doc: "Longest wait before a login attempt, in seconds (Dovecot's cap is 15).",
        example: None,
    },
    KeyDoc {
        key: "login_limit.lockout_after",
        doc: "Failures of one login from one address (attempts still being checked included, so \
              parallel guesses cannot pass it) after which that pair is refused without checking \
              the password, the right one too (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE], saying how \
              long; `graphgate accounts unlock LOGIN` lifts it at once). The same login from \
              other addresses and other logins from that address are not refused. A successful \
              login clears its pair. 0: never refuse.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.lockout_s",
        doc: "Seconds a pair stays refused after login_limit.lockout_after failures.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.address_budget",
        doc: "Logins that may fail from one client address before it is throttled: then a login \
              that failed from there too is refused unchecked, while a login that did not is \
              still checked (a correct password passes at once). Guessing across logins gets one \
              check per login per login_limit.forget_after_s. \
              `graphgate accounts unlock --address ADDR` lifts it. 0: no budget.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.forget_after_s",
        doc: "Seconds after a pair's last failure (or the end of its lock) when it is forgotten.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.argon2_memory_kib",
        doc: "Argon2id memory cost, in KiB, of password hashes made from now on (`accounts add`, \
              `accounts passwd`). Existing hashes keep verifying with the parameters they carry \
              (the PHC string); change a password to rehash it. Each check holds this much memory \
              while it runs. Default: OWASP's 19 MiB, 2 passes, 1 lane.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.argon2_iterations",
        doc: "Argon2id passes (time cost) of new password hashes.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.argon2_parallelism",
        doc: "Argon2id lanes of new password hashes.",
        example: None,
    },
    KeyDoc {
        key: "login_limit.password_checks_at_once",
        doc: "Password checks (Argon2id, one core and argon2_memory_kib each) running at once, \
              gateway-wide; others queue. N logins arriving together are all answered within \
              ceil(N / this) × one check's time, plus the waits of logins that failed (the \
              gateway logs both at start; at the defaults a check took about 56 ms on a 2-core \
              machine, 500 logins 14 s). 0: one per core.",
        example: None,
    },
    KeyDoc {
        key: "tls.certificate_file",
        doc: "PEM certificate (chain) for STARTTLS and implicit TLS. Unset: graphgate generates \
              a self-signed certificate in the data directory on first start (see certs/README.md \
              to trust it).",
        example: Some("/etc/graphgate/cert.pem"),
    },
    KeyDoc {
        key: "tls.private_key_file",
        doc: "PEM private key of tls.certificate_file. Mode 0600.",
        example: Some("/etc/graphgate/key.pem"),
    },
    KeyDoc {
        key: "admin.listen",
        doc: "Admin HTTP endpoint (/healthz, /readyz, /metrics). Empty: off. Keep it on \
              loopback unless a firewall protects it.",
        example: Some("127.0.0.1:8025"),
    },
    KeyDoc {
        key: "log.level",
        doc: "Log filter (tracing syntax): error, warn, info, debug, trace, or per module such \
              as `graphgate::graph=debug,info`. Tokens and passwords are never logged at any level.",
        example: None,
    },
    KeyDoc {
        key: "log.format",
        doc: "`text` for people, `json` for log collectors (one object per line).",
        example: None,
    },
    KeyDoc {
        key: "log.protocol_trace",
        doc: "Log every SMTP and IMAP command and reply line (target `graphgate::wire`, trace \
              level) for debugging a client. Passwords, AUTH payloads and message bodies are \
              left out. Same as `--trace-protocol`.",
        example: Some("false"),
    },
];

/// Environment variables that are not configuration keys.
pub const OTHER_VARIABLES: &[(&str, &str)] = &[
    ("GRAPHGATE_CONFIG", "path of the TOML configuration file"),
    (
        "GRAPHGATE_KEY",
        "token-encryption key: 32 bytes as 64 hex digits or base64",
    ),
    (
        "GRAPHGATE_KEY_FILE",
        "a file holding GRAPHGATE_KEY (a Docker secret)",
    ),
    (
        "GRAPHGATE_CRASH_AT",
        "test hook only: abort the process at a point of an SMTP delivery \
         (before-send, after-send, after-draft) to prove exactly-once delivery",
    ),
];

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
    #[error(
        "{what} {} is readable or writable by group or others (mode {mode:04o}), so graphgate \
         refuses to use it; fix: chmod 600 {} (owned by the user graphgate runs as; a Docker \
         secret: mount it with mode 0400)",
        path.display(),
        path.display()
    )]
    NotPrivate {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "unknown environment variable {name}: no configuration key `{key}` exists; \
         `graphgate config example` lists every key (variable names are GRAPHGATE_ + the key \
         with dots as underscores, upper case)"
    )]
    UnknownVariable { name: String, key: String },
}

/// Refuse `path` when group or others may read or write it (mode bits,
/// so this holds for root too): the configuration names where secrets
/// are, and the key file is one. `what` names the file in the message.
pub fn check_private_file(path: &Path, what: &'static str) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o066 != 0 {
            return Err(ConfigError::NotPrivate {
                what,
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// Write a file only its owner may read (mode 0600, also when it existed
/// with a wider mode), fsync'ed.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(contents)?;
        file.sync_all()
    }
}

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

/// A complete commented configuration file with every key at its default
/// (or, for empty ones, a commented-out example).
pub fn example() -> String {
    let defaults =
        toml::Value::try_from(Config::default()).unwrap_or(toml::Value::Table(toml::Table::new()));
    let mut out = String::from(
        "# graphgate configuration. Every key can also be set with an environment\n\
         # variable: GRAPHGATE_ + the key with dots as underscores, upper case\n\
         # (microsoft.client_id -> GRAPHGATE_MICROSOFT_CLIENT_ID). Variables win.\n\
         # Other variables:\n",
    );
    for (name, doc) in OTHER_VARIABLES {
        out.push_str(&format!("#   {name}: {doc}\n"));
    }
    let mut section = "";
    for key in KEYS {
        let (sec, name) = key.key.split_once('.').unwrap_or(("", key.key));
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec;
        } else {
            out.push('\n');
        }
        for line in wrap(key.doc, 76) {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&format!("# ({})\n", env_name(key.key)));
        let default = lookup(&defaults, key.key);
        match (default, key.example) {
            (Some(v), _) if !is_empty(v) => out.push_str(&format!("{name} = {v}\n")),
            (_, Some(example)) => out.push_str(&format!("# {name} = {:?}\n", example)),
            (Some(v), None) => out.push_str(&format!("{name} = {v}\n")),
            (None, None) => out.push_str(&format!("# {name} =\n")),
        }
    }
    out
}

fn lookup<'a>(value: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(value, |v, part| v.get(part))
}

fn is_empty(value: &toml::Value) -> bool {
    matches!(value, toml::Value::String(s) if s.is_empty())
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    leaf_keys(v, &key, out);
                } else {
                    out.push(key);
                }
            }
        }
    }

    #[test]
    fn every_key_is_documented_and_settable_by_environment() {
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut keys = Vec::new();
        leaf_keys(&defaults, "", &mut keys);
        for key in &keys {
            assert!(
                KEYS.iter().any(|k| k.key == key),
                "key {key} has no documentation in config::KEYS"
            );
        }
        for doc in KEYS {
            let default = lookup(&defaults, doc.key);
            let value = match (doc.key, default) {
                ("data_dir", _) => "/tmp/x",
                ("microsoft.cloud", _) => "usgov",
                (k, _) if k.ends_with("listen") => "127.0.0.1:9",
                (_, Some(toml::Value::Integer(_))) => "7",
                (_, Some(toml::Value::Boolean(_))) => "false",
                _ => "value",
            };
            let vars = vec![(env_name(doc.key), value.to_string())];
            let config = Config::from_parts("", "test", &vars)
                .unwrap_or_else(|e| panic!("{}: {e}", doc.key));
            let back = toml::Value::try_from(config).unwrap();
            let got = lookup(&back, doc.key).map(|v| match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            assert_eq!(got.as_deref(), Some(value), "{}", doc.key);
        }
    }

    #[test]
    fn example_parses_back_to_the_defaults() {
        let text = example();
        let parsed = Config::from_parts(&text, "example", &[]).unwrap();
        assert_eq!(parsed, Config::default());
        assert!(text.contains("GRAPHGATE_MICROSOFT_CLIENT_ID"));
    }

    #[test]
    fn environment_wins_and_unknown_names_are_refused() {
        let text = "[microsoft]\ntenant = \"contoso.com\"\nclient_id = \"file\"\n";
        let vars = vec![(
            "GRAPHGATE_MICROSOFT_CLIENT_ID".to_string(),
            "env".to_string(),
        )];
        let config = Config::from_parts(text, "f.toml", &vars).unwrap();
        assert_eq!(config.microsoft.client_id, "env");
        assert_eq!(config.microsoft.tenant, "contoso.com");
        let bad = vec![("GRAPHGATE_MICROSFT_TENANT".to_string(), "x".to_string())];
        let err = Config::from_parts("", "f.toml", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("GRAPHGATE_MICROSFT_TENANT"), "{err}");
        let err = Config::from_parts("[microsoft]\ntenant = 3\n", "f.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.toml"), "{err}");
        let err = Config::from_parts("nonsense = 1\n", "f.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonsense"), "{err}");
    }

    #[test]
    fn admin_listen_is_checked() {
        let mut config = Config::default();
        assert_eq!(config.admin_listen().unwrap(), None);
        config.admin.listen = "127.0.0.1:8025".into();
        assert!(config.admin_listen().unwrap().is_some());
        config.admin.listen = "localhost".into();
        assert!(
            config
                .admin_listen()
                .unwrap_err()
                .to_string()
                .contains("GRAPHGATE_ADMIN_LISTEN")
        );
    }

    #[test]
    fn the_cloud_sets_authority_graph_and_scope_prefix_and_explicit_urls_win() {
        let config = Config::from_parts(
            "[microsoft]\ncloud = \"usgov-dod\"\nclient_id = \"c\"\n",
            "f.toml",
            &[],
        )
        .unwrap();
        let m = &config.microsoft;
        assert_eq!(m.cloud, Cloud::UsgovDod);
        assert_eq!(m.authority(), "https://login.microsoftonline.us");
        assert_eq!(m.graph_endpoint(), "https://dod-graph.microsoft.us");
        assert_eq!(m.graph_resource(), "https://dod-graph.microsoft.us");
        assert!(m.graph_config().message_delta);

        let config = Config::from_parts(
            "[microsoft]\ncloud = \"china\"\ngraph_url = \"http://127.0.0.1:8787\"\n",
            "f.toml",
            &[],
        )
        .unwrap();
        let m = &config.microsoft;
        assert_eq!(m.authority(), "https://login.chinacloudapi.cn");
        assert_eq!(m.graph_endpoint(), "http://127.0.0.1:8787");
        assert_eq!(
            m.graph_resource(),
            "https://microsoftgraph.chinacloudapi.cn"
        );
        assert!(!m.graph_config().message_delta);
        assert!(m.cloud.missing_features().contains("message delta"));

        let global = MicrosoftConfig::default();
        assert_eq!(global.authority(), GLOBAL_AUTHORITY);
        assert_eq!(global.graph_resource(), GLOBAL_GRAPH);

        let err = Config::from_parts("[microsoft]\ncloud = \"mars\"\n", "f.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloud") || err.contains("mars"), "{err}");
    }
}
