//! Process-wide counters for `/metrics` (Prometheus / OpenMetrics text,
//! through the `prometheus-client` crate).
//!
//! Each layer bumps its own counters where the event happens: the SMTP
//! and IMAP listeners (sessions, commands), the spool (accepted,
//! delivered, bounced), the Graph client (requests by route template and
//! status, throttling, Retry-After), the token sources (refreshes and
//! failures) and the IMAP content cache (hits, misses, bytes). Gauges that
//! describe stored state (accounts by state, spool depth and age) are set
//! from the store when `/metrics` is read, so they are right even for work
//! another process (a `graphgate queue retry`) did.
//!
//! Labels are bounded sets: route *templates* (never raw URLs, which carry
//! ids), HTTP status codes, command names, fixed outcome words. Nothing
//! that identifies a person or carries a secret is a label — except the
//! per-account families (account login, mailbox address), which are filled
//! only when the admin sets `admin.account_metrics = true`.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    /// `METHOD route-template`, e.g. `GET users/{id}/messages/{id}/$value`.
    pub route: String,
    /// HTTP status, or `transport` for a connection failure.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Command {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolOutcome {
    pub protocol: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabel {
    /// `known` or `unknown` (a dummy hash was verified).
    pub login: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// A local account (its login). Accounts are configured by the admin, so
/// the set is bounded; no other personal data becomes a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabel {
    pub account: String,
}

/// The Graph mailbox a request was for (`users/{address}` or the
/// signed-in `me` of that address); `me` when the address is not known.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailboxLabel {
    pub mailbox: String,
}

/// Every metric graphgate exports.
pub struct Metrics {
    registry: Registry,
    pub smtp_sessions: Counter,
    pub smtp_sessions_active: Gauge,
    /// Messages answered 250 after DATA (and spooled).
    pub smtp_messages_accepted: Counter,
    /// Messages refused at SMTP, by reply code class (`5xx`, `4xx`).
    pub smtp_messages_refused: Family<Outcome, Counter>,
    /// Relay-listener clients by outcome: `admitted` (in relay.networks)
    /// or `refused` (554 before the greeting).
    pub smtp_relay_clients: Family<Outcome, Counter>,
    pub spool_delivered: Counter,
    pub spool_bounced: Counter,
    pub spool_retries: Counter,
    pub imap_sessions: Counter,
    pub imap_sessions_active: Gauge,
    pub imap_commands: Family<Command, Counter>,
    pub pop3_sessions: Counter,
    pub pop3_sessions_active: Gauge,
    pub pop3_commands: Family<Command, Counter>,
    /// Octets of RETR / TOP answers sent (byte-stuffed).
    pub pop3_bytes_sent: Counter,
    pub graph_requests: Family<RouteStatus, Counter>,
    pub graph_throttled: Counter,
    pub graph_retry_after_seconds: Counter<f64, AtomicU64>,
    pub token_refreshes: Family<Outcome, Counter>,
    pub mime_cache_hits: Counter,
    pub mime_cache_misses: Counter,
    pub mime_cache_bytes_served: Counter,
    pub mime_cache_bytes_fetched: Counter,
    /// Failed SMTP AUTH / IMAP LOGIN, by protocol and outcome (`wrong`:
    /// checked; `refused`: refused unchecked by the login guard).
    pub login_failures: Family<ProtocolOutcome, Counter>,
    /// Argon2id verifications, by whether the login exists.
    pub login_password_checks: Family<LoginLabel, Counter>,
    /// Logins answered by / missing the verified-credentials cache.
    pub login_cache_hits: Counter,
    pub login_cache_misses: Counter,
    // Set from the store when /metrics is read.
    pub accounts: Family<StateLabel, Gauge>,
    pub spool_messages: Family<StateLabel, Gauge>,
    pub spool_oldest_queued_seconds: Gauge,
    /// (address, login) pairs refused unchecked now / with live failures.
    pub login_locked_pairs: Gauge,
    pub login_failing_pairs: Gauge,
    pub uptime_seconds: Gauge,
    // Per account (issue 18): set from the store when /metrics is read …
    pub account_online: Family<AccountLabel, Gauge>,
    pub account_queued: Family<AccountLabel, Gauge>,
    pub account_oldest_queued_seconds: Family<AccountLabel, Gauge>,
    // … and counted as Graph answers, per mailbox.
    pub mailbox_graph_requests: Family<MailboxLabel, Counter>,
    pub mailbox_graph_throttled: Family<MailboxLabel, Counter>,
    /// (answers, 429s) by mailbox address, kept whatever
    /// `admin.account_metrics` says (see [`Metrics::mailbox_totals`]).
    mailbox_tally: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    /// Seconds from sending a Graph request to its status line (each
    /// attempt; `graph::client` times it).
    pub graph_request_seconds: Histogram,
    /// Seconds from the end of DATA to the SMTP reply (spool write plus
    /// the synchronous delivery window).
    pub smtp_submission_seconds: Histogram,
}

/// Whether the per-account and per-mailbox families are filled
/// (`admin.account_metrics`; their labels name people, so off unless the
/// admin turns them on).
static PER_ACCOUNT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Fill the per-account and per-mailbox families from now on (or not).
pub fn set_per_account(on: bool) {
    PER_ACCOUNT.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn per_account() -> bool {
    PER_ACCOUNT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Buckets from 5 ms to about 82 s (doubling).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.005, 2.0, 15)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("graphgate");
        let m = Metrics {
            smtp_sessions: Counter::default(),
            smtp_sessions_active: Gauge::default(),
            smtp_messages_accepted: Counter::default(),
            smtp_messages_refused: Family::default(),
            smtp_relay_clients: Family::default(),
            spool_delivered: Counter::default(),
            spool_bounced: Counter::default(),
            spool_retries: Counter::default(),
            imap_sessions: Counter::default(),
            imap_sessions_active: Gauge::default(),
            imap_commands: Family::default(),
            pop3_sessions: Counter::default(),
            pop3_sessions_active: Gauge::default(),
            pop3_commands: Family::default(),
            pop3_bytes_sent: Counter::default(),
            graph_requests: Family::default(),
            graph_throttled: Counter::default(),
            graph_retry_after_seconds: Counter::default(),
            token_refreshes: Family::default(),
            mime_cache_hits: Counter::default(),
            mime_cache_misses: Counter::default(),
            mime_cache_bytes_served: Counter::default(),
            mime_cache_bytes_fetched: Counter::default(),
            login_failures: Family::default(),
            login_password_checks: Family::default(),
            login_cache_hits: Counter::default(),
            login_cache_misses: Counter::default(),
            accounts: Family::default(),
            spool_messages: Family::default(),
            spool_oldest_queued_seconds: Gauge::default(),
            login_locked_pairs: Gauge::default(),
            login_failing_pairs: Gauge::default(),
            uptime_seconds: Gauge::default(),
            account_online: Family::default(),
            account_queued: Family::default(),
            account_oldest_queued_seconds: Family::default(),
            mailbox_graph_requests: Family::default(),
            mailbox_graph_throttled: Family::default(),
            mailbox_tally: Default::default(),
            graph_request_seconds: Histogram::new(latency_buckets()),
            smtp_submission_seconds: Histogram::new(latency_buckets()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "smtp_sessions",
            "SMTP connections accepted",
            m.smtp_sessions.clone(),
        );
        r.register(
            "smtp_sessions_active",
            "SMTP connections open now",
            m.smtp_sessions_active.clone(),
        );
        r.register(
            "smtp_messages_accepted",
            "Messages answered 250 after DATA and spooled",
            m.smtp_messages_accepted.clone(),
        );
        r.register(
            "smtp_messages_refused",
            "Messages refused at SMTP, by reply class",
            m.smtp_messages_refused.clone(),
        );
        r.register(
            "smtp_relay_clients",
            "Connections to the relay listener, by outcome (admitted by relay.networks, refused)",
            m.smtp_relay_clients.clone(),
        );
        r.register(
            "spool_delivered",
            "Spooled messages Graph accepted (202)",
            m.spool_delivered.clone(),
        );
        r.register(
            "spool_bounced",
            "Spooled messages given up on (a DSN went to the sender)",
            m.spool_bounced.clone(),
        );
        r.register(
            "spool_retries",
            "Delivery attempts that will be tried again",
            m.spool_retries.clone(),
        );
        r.register(
            "imap_sessions",
            "IMAP connections accepted",
            m.imap_sessions.clone(),
        );
        r.register(
            "imap_sessions_active",
            "IMAP connections open now",
            m.imap_sessions_active.clone(),
        );
        r.register(
            "imap_commands",
            "IMAP commands received, by command",
            m.imap_commands.clone(),
        );
        r.register(
            "pop3_sessions",
            "POP3 connections accepted",
            m.pop3_sessions.clone(),
        );
        r.register(
            "pop3_sessions_active",
            "POP3 connections open now",
            m.pop3_sessions_active.clone(),
        );
        r.register(
            "pop3_commands",
            "POP3 commands received, by command",
            m.pop3_commands.clone(),
        );
        r.register(
            "pop3_bytes_sent",
            "Octets of POP3 RETR and TOP answers sent",
            m.pop3_bytes_sent.clone(),
        );
        r.register(
            "graph_requests",
            "HTTP requests to Microsoft Graph, by route template and status (each attempt)",
            m.graph_requests.clone(),
        );
        r.register(
            "graph_throttled",
            "429 answers from Graph (outer and inside $batch)",
            m.graph_throttled.clone(),
        );
        r.register(
            "graph_retry_after_seconds",
            "Seconds Graph asked graphgate to wait (Retry-After)",
            m.graph_retry_after_seconds.clone(),
        );
        r.register(
            "token_refreshes",
            "Access token acquisitions (refresh or client credentials), by outcome",
            m.token_refreshes.clone(),
        );
        r.register(
            "mime_cache_hits",
            "Messages served from the on-disk MIME cache",
            m.mime_cache_hits.clone(),
        );
        r.register(
            "mime_cache_misses",
            "Messages whose MIME had to be fetched from Graph",
            m.mime_cache_misses.clone(),
        );
        r.register(
            "mime_cache_served_bytes",
            "Bytes of message MIME served from the cache",
            m.mime_cache_bytes_served.clone(),
        );
        r.register(
            "mime_cache_fetched_bytes",
            "Bytes of message MIME fetched from Graph into the cache",
            m.mime_cache_bytes_fetched.clone(),
        );
        r.register(
            "login_failures",
            "Failed SMTP AUTH / IMAP LOGIN attempts, by protocol and outcome (wrong: checked; \
             refused: refused unchecked after failed logins)",
            m.login_failures.clone(),
        );
        r.register(
            "login_password_checks",
            "Argon2id password verifications, by whether the login exists (unknown: a dummy hash)",
            m.login_password_checks.clone(),
        );
        r.register(
            "login_cache_hits",
            "Logins whose password was checked against the verified-credentials cache instead \
             of Argon2id (login_limit.verified_cache_s)",
            m.login_cache_hits.clone(),
        );
        r.register(
            "login_cache_misses",
            "Logins the verified-credentials cache could not answer (checked by Argon2id)",
            m.login_cache_misses.clone(),
        );
        r.register(
            "login_locked_pairs",
            "Client address and login pairs refused unchecked now (graphgate accounts unlock)",
            m.login_locked_pairs.clone(),
        );
        r.register(
            "login_failing_pairs",
            "Client address and login pairs with failed logins not yet forgotten",
            m.login_failing_pairs.clone(),
        );
        r.register("accounts", "Local accounts by state", m.accounts.clone());
        r.register(
            "spool_messages",
            "Spooled messages by state",
            m.spool_messages.clone(),
        );
        r.register(
            "spool_oldest_queued_seconds",
            "Age of the oldest message waiting to be delivered (0 when none)",
            m.spool_oldest_queued_seconds.clone(),
        );
        r.register(
            "build",
            "Version of the running graphgate",
            prometheus_client::metrics::info::Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
        r.register(
            "uptime_seconds",
            "Seconds since the process started",
            m.uptime_seconds.clone(),
        );
        r.register(
            "account_online",
            "1 when the account is ONLINE, 0 when it needs sign-in (graphgate status)",
            m.account_online.clone(),
        );
        r.register(
            "account_queued_messages",
            "Messages of the account waiting for delivery (queued or sending)",
            m.account_queued.clone(),
        );
        r.register(
            "account_oldest_queued_seconds",
            "Age of the account's oldest message waiting for delivery (0 when none)",
            m.account_oldest_queued_seconds.clone(),
        );
        r.register(
            "mailbox_graph_requests",
            "HTTP answers from Microsoft Graph (each attempt), by mailbox",
            m.mailbox_graph_requests.clone(),
        );
        r.register(
            "mailbox_graph_throttled",
            "429 answers from Microsoft Graph, by mailbox",
            m.mailbox_graph_throttled.clone(),
        );
        r.register(
            "graph_request_seconds",
            "Time from sending a Graph request to its status line (each attempt)",
            m.graph_request_seconds.clone(),
        );
        r.register(
            "smtp_submission_seconds",
            "Time from the end of DATA to the SMTP reply (spool write and synchronous delivery)",
            m.smtp_submission_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One Graph HTTP answer (or transport failure) for `route`.
    pub fn graph_request(&self, route: &str, status: Option<u16>) {
        self.graph_requests
            .get_or_create(&RouteStatus {
                route: route.to_string(),
                status: status.map_or_else(|| "transport".into(), |s| s.to_string()),
            })
            .inc();
    }

    /// One Graph answer for `mailbox` (its status), `elapsed` after the
    /// request was sent.
    pub fn graph_answer(&self, mailbox: &str, status: u16, elapsed: std::time::Duration) {
        self.graph_request_seconds.observe(elapsed.as_secs_f64());
        // Always tallied in memory (the console shows each mailbox's share
        // of Microsoft's budget); exported by label only when asked.
        {
            let mut tally = self.mailbox_tally.lock().unwrap_or_else(|e| e.into_inner());
            let entry = tally.entry(mailbox.to_string()).or_default();
            entry.0 += 1;
            if status == 429 {
                entry.1 += 1;
            }
        }
        if !per_account() {
            return;
        }
        let label = MailboxLabel {
            mailbox: if mailbox.is_empty() { "me" } else { mailbox }.to_string(),
        };
        self.mailbox_graph_requests.get_or_create(&label).inc();
        if status == 429 {
            self.mailbox_graph_throttled.get_or_create(&label).inc();
        }
    }

    /// Graph answers and 429s so far, by mailbox address (`""`: a `/me`
    /// handle of no known address), whatever `admin.account_metrics` says.
    pub fn mailbox_totals(&self) -> std::collections::HashMap<String, (u64, u64)> {
        self.mailbox_tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The per-account gauges: for each account its login, whether it is
    /// online, how many messages wait for delivery and the oldest one's
    /// age in seconds (the admin endpoint reads them from the store; plain
    /// figures here, so that the store, which counts password checks
    /// here, is not imported back). Accounts gone since the last call
    /// disappear.
    pub fn set_accounts(&self, accounts: &[AccountFigures]) {
        self.account_online.clear();
        self.account_queued.clear();
        self.account_oldest_queued_seconds.clear();
        if !per_account() {
            return;
        }
        for a in accounts {
            let label = AccountLabel {
                account: a.login.clone(),
            };
            self.account_online
                .get_or_create(&label)
                .set(i64::from(a.online));
            self.account_queued
                .get_or_create(&label)
                .set(a.queued as i64);
            self.account_oldest_queued_seconds
                .get_or_create(&label)
                .set(a.oldest_queued_s.max(0));
        }
    }

    /// One IMAP command, by its name (`FETCH`, `UID FETCH`, …).
    pub fn imap_command(&self, name: &str) {
        self.imap_commands
            .get_or_create(&Command {
                command: name.to_ascii_uppercase(),
            })
            .inc();
    }

    /// One POP3 command, by its keyword.
    pub fn pop3_command(&self, name: &str) {
        self.pop3_commands
            .get_or_create(&Command {
                command: name.to_ascii_uppercase(),
            })
            .inc();
    }

    /// A token acquisition's outcome (`ok`, or the AADSTS code / error).
    pub fn token_refresh(&self, outcome: &str) {
        self.token_refreshes
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A failed login over `protocol`: `wrong` or `refused`.
    pub fn login_failure(&self, protocol: &str, outcome: &str) {
        self.login_failures
            .get_or_create(&ProtocolOutcome {
                protocol: protocol.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    fn login_label(known: bool) -> LoginLabel {
        LoginLabel {
            login: if known { "known" } else { "unknown" }.to_string(),
        }
    }

    /// One Argon2id verification (`known`: the login exists).
    pub fn password_check(&self, known: bool) {
        self.login_password_checks
            .get_or_create(&Metrics::login_label(known))
            .inc();
    }

    pub fn login_cache_hit(&self) {
        self.login_cache_hits.inc();
    }

    pub fn login_cache_miss(&self) {
        self.login_cache_misses.inc();
    }

    /// Verifications so far.
    pub fn password_checks(&self, known: bool) -> u64 {
        self.login_password_checks
            .get_or_create(&Metrics::login_label(known))
            .get()
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// A short id for a new SMTP or IMAP session, unique in this process
/// (log lines of one session carry it).
pub fn session_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Counts a session as active while held.
pub struct Active(&'static Gauge);

impl Active {
    pub fn new(gauge: &'static Gauge) -> Active {
        gauge.inc();
        Active(gauge)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_exposition() {
        let m = get();
        m.graph_request("GET me/mailFolders", Some(200));
        m.imap_command("uid fetch");
        m.token_refresh("ok");
        let text = m.encode();
        assert!(
            text.contains(
                "graphgate_graph_requests_total{route=\"GET me/mailFolders\",status=\"200\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("graphgate_imap_commands_total{command=\"UID FETCH\"}"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

/// One account's figures for [`Metrics::set_accounts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFigures {
    pub login: String,
    pub online: bool,
    /// Messages queued or being sent.
    pub queued: usize,
    /// Age of the oldest of them, in seconds (0: none).
    pub oldest_queued_s: i64,
}
