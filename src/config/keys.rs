//! The documentation of every configuration key, in one table ([`KEYS`]),
//! and the complete commented file `graphgate config example` prints from
//! it. A test (`config::tests`) checks that the table and the types agree.

use super::{Config, env_name};

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
              the spool and the message cache. Created with mode 0700. In the container image: /data. \
              Default: $XDG_DATA_HOME/graphgate (~/.local/share/graphgate) of the user \
              graphgate runs as.",
        example: Some("/var/lib/graphgate"),
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
        key: "graph.concurrency_per_mailbox",
        doc: "Microsoft Graph requests graphgate keeps in flight per mailbox, SMTP, IMAP and the \
              spool together (a $batch takes one place per request inside it). Microsoft allows \
              4 and answers more with 429 \"Application is over its MailboxConcurrency limit\" \
              (Graph throttling limits, Outlook service): raise it only behind a proxy that \
              queues. At least 1.",
        example: None,
    },
    KeyDoc {
        key: "graph.max_retries",
        doc: "Times a Graph request answered 429 (throttled), or 503/504 when it is safe to \
              repeat (reads, updates; never a send), is sent again before the error reaches the \
              client or the spool (which retries a send later on its own schedule). 0: never.",
        example: None,
    },
    KeyDoc {
        key: "graph.max_retry_after_s",
        doc: "The longest Retry-After of a 429/503 that graphgate waits, in seconds; a longer \
              one is cut to this.",
        example: None,
    },
    KeyDoc {
        key: "graph.max_total_wait_s",
        doc: "A request whose retries would wait longer than this in all, in seconds, fails \
              with the throttling error instead.",
        example: None,
    },
    KeyDoc {
        key: "graph.base_backoff_ms",
        doc: "Wait before the first retry when Graph gives no Retry-After, in milliseconds; \
              doubled each retry (up to graph.max_retry_after_s), jittered.",
        example: None,
    },
    KeyDoc {
        key: "graph.request_timeout_s",
        doc: "Seconds one Graph HTTP request may take (a large MIME download included).",
        example: None,
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
              35 MB); larger ones get 552 5.3.4. IMAP APPEND takes the same, announced as \
              APPENDLIMIT (above 3 MB the attachments go through upload sessions).",
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
        key: "smtp.queue_while_signed_out",
        doc: "false (default): mail from an account that needs sign-in (OFFLINE) is answered \
              451 4.7.0 at MAIL FROM, naming `graphgate login`, and the client keeps it. true: \
              it is accepted into the spool (the 250 replies say it waits for the sign-in) \
              and sent once `graphgate login` succeeds; unsent past smtp.bounce_after_h, it \
              bounces.",
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
        key: "pop3.listen",
        doc: "POP3 listener (STLS offered). Empty: off. Help desks and fetchers (Jira, Zammad, \
              fetchmail, getmail) poll the account's INBOX here; docs/pop3.md.",
        example: None,
    },
    KeyDoc {
        key: "pop3.implicit_tls_listen",
        doc: "POP3 with implicit TLS (the port-995 style, `pop3s://`). Empty: off.",
        example: None,
    },
    KeyDoc {
        key: "pop3.plaintext_login_on_loopback",
        doc: "Allow USER/PASS and AUTH without TLS from 127.0.0.1/::1. From any other address \
              login needs STLS or implicit TLS.",
        example: None,
    },
    KeyDoc {
        key: "pop3.max_connections",
        doc: "Simultaneous POP3 connections; more are refused with -ERR [SYS/TEMP].",
        example: None,
    },
    KeyDoc {
        key: "pop3.idle_timeout_s",
        doc: "Seconds a silent POP3 connection stays open (RFC 1939: at least 600). It is \
              closed without deleting anything.",
        example: None,
    },
    KeyDoc {
        key: "pop3.on_delete",
        doc: "What DELE means when the client QUITs: `keep` (nothing is deleted, the message \
              is marked read: \"leave mail on server\"), `trash` (moved to Deleted Items) or \
              `delete` (deleted for good). A session that ends without QUIT deletes nothing.",
        example: None,
    },
    KeyDoc {
        key: "pop3.on_delete_accounts",
        doc: "Per-account exceptions to pop3.on_delete, as `login=mode` pairs separated by \
              commas.",
        example: Some("helpdesk@contoso.com=keep,scanner@contoso.com=delete"),
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
        key: "login_limit.verified_cache_s",
        doc: "Seconds a password that passed the Argon2id check is remembered in memory (as an \
              HMAC-SHA-256 tag under a random per-process key, never the password) so that the \
              same login with the same password is answered without Argon2id, like Dovecot's \
              auth cache. A failed login drops the login's entry; `accounts passwd`, \
              `accounts remove`, `logout` and `keys rotate` make it miss at once; the \
              login_limit penalties and locks apply first. graphgate_login_cache_hits_total / \
              _misses_total on /metrics. 0: off (every login runs Argon2id).",
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
        key: "admin.account_metrics",
        doc: "true: /metrics also reports per account (label `account`, the login: online, \
              queued messages, oldest queued age) and per Graph mailbox (label `mailbox`, the \
              address: answers and 429s). Off by default because those labels name people; \
              turn it on where the metrics stay with the admin.",
        example: None,
    },
    KeyDoc {
        key: "admin.console_remote",
        doc: "Let the web console on the admin endpoint answer clients that are not on \
              loopback (they still need the admin password of `graphgate console passwd`). \
              Off: loopback only; reach it through an SSH tunnel. Put TLS in front if on.",
        example: Some("false"),
    },
    KeyDoc {
        key: "relay.listen",
        doc: "Relay listener for devices that cannot authenticate (scanners, printers, NAS \
              boxes, cron via msmtp): it takes mail WITHOUT AUTH, but only from the networks \
              of `relay.networks`, each sending as its one account; every other client is \
              refused with a reply naming this setting. STARTTLS is offered when a certificate \
              is configured. Empty: off. `serve --relay ADDR` sets it too.",
        example: Some("127.0.0.1:2526"),
    },
    KeyDoc {
        key: "relay.networks",
        doc: "The relay's allowlist, one `[[relay.networks]]` table per network: `cidr` \
              (192.168.1.0/24, 2001:db8::/64, one address, or a host name resolved at start), \
              `account` (the local login its mail is sent as), `sender_policy` (`rewrite`, the \
              default: From becomes the account's mailbox, the original address goes into \
              Reply-To and the display name; `keep`: From must be the mailbox or an alias; \
              `reject`: the mailbox only) and `require_tls` (default false: MAIL FROM is \
              refused until STARTTLS when true). Recipients follow the rules of authenticated \
              submission: never an open relay. The most specific matching network wins.",
        example: Some(
            "[[relay.networks]]\ncidr = \"192.168.1.0/24\"\naccount = \"scanner@contoso.com\"\n\
             sender_policy = \"rewrite\"\nrequire_tls = false",
        ),
    },
    KeyDoc {
        key: "alerts.webhook_url",
        doc: "A URL that receives a JSON POST (retried up to 5 times) when an account needs \
              a new sign-in (`event`: account_needs_sign_in) or a message bounced \
              (message_bounced) or has waited alerts.queued_after_s for delivery \
              (message_queued; both with `queue_id`), with `account`, `text`, `fix` (the \
              command that helps), `host` and `at` (Unix seconds). Empty: off.",
        example: Some("https://alerts.example.com/graphgate"),
    },
    KeyDoc {
        key: "alerts.mail_to",
        doc: "Also mail every alert to this address (Subject `graphgate alert: <event> \
              (<account>)`), sent through the spool as alerts.mail_from_account. Alerts about \
              that account itself go to the webhook only (its mail may be what fails). Empty: \
              no mail.",
        example: Some("admin@contoso.com"),
    },
    KeyDoc {
        key: "alerts.mail_from_account",
        doc: "The local account (graphgate accounts list) that sends the alert mail of \
              alerts.mail_to; use another account than the ones the alerts are about.",
        example: Some("monitoring@contoso.com"),
    },
    KeyDoc {
        key: "alerts.queued_after_s",
        doc: "Seconds a message may wait in the queue (not yet delivered, not bounced) before \
              it is reported to alerts.webhook_url as `message_queued`, once per message and \
              gateway run. Default 14400 (4 hours); 0: never.",
        example: None,
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
            // The default data directory is the home of whoever runs
            // `config example`, wrong in a system configuration: shown
            // commented, with a system path as the example.
            (_, Some(example)) if key.key == "data_dir" => {
                out.push_str(&format!("# {name} = {example:?}\n"));
            }
            // A list of tables: its example as commented TOML lines.
            (Some(toml::Value::Array(list)), Some(example)) if list.is_empty() => {
                for line in example.lines() {
                    out.push_str(&format!("# {line}\n"));
                }
            }
            (Some(v), _) if !is_empty(v) => out.push_str(&format!("{name} = {v}\n")),
            (_, Some(example)) => out.push_str(&format!("# {name} = {:?}\n", example)),
            (Some(v), None) => out.push_str(&format!("{name} = {v}\n")),
            (None, None) => out.push_str(&format!("# {name} =\n")),
        }
    }
    out
}

pub(super) fn lookup<'a>(value: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
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
