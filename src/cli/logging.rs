//! Logging set-up: tracing to stderr, text or JSON. Secrets never reach a
//! log line: they are `Secret<T>`, whose `Debug` prints `[redacted]`.
//!
//! The command line's `--log-level`, `--log-format` and `--trace-protocol`
//! win over the configuration (`log.*`), and `RUST_LOG` over both.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// The command line's logging flags, set once before any command runs.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub level: Option<String>,
    pub format: Option<String>,
    pub protocol_trace: bool,
}

static OVERRIDES: OnceLock<Overrides> = OnceLock::new();

/// Log targets of libraries that log raw protocol bytes below info.
const RAW_WIRE_TARGETS: &[&str] = &["imap_next"];

/// Log targets whose warnings are about clients' harmless faults.
const NOISY_TARGETS: &[&str] = &["rustls::msgs::handshake"];

pub fn set_overrides(overrides: Overrides) {
    let _ = OVERRIDES.set(overrides);
}

/// Install the global subscriber from `config` (and the overrides).
pub fn init_config(config: &LogConfig) {
    install(&config.level, &config.format, config.protocol_trace);
}

/// Install the global subscriber with these defaults (and the overrides).
pub fn init(level: &str, format: &str) {
    install(level, format, false);
}

fn install(level: &str, format: &str, protocol_trace: bool) {
    let o = OVERRIDES.get().cloned().unwrap_or_default();
    let level = o.level.as_deref().unwrap_or(level);
    let format = o.format.as_deref().unwrap_or(format);
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    if (protocol_trace || o.protocol_trace)
        && let Ok(d) = format!("{}=trace", crate::wire::TARGET).parse()
    {
        filter = filter.add_directive(d);
    }
    // Libraries that log raw protocol bytes (imap-next logs every read and
    // write, LOGIN passwords and AUTHENTICATE payloads included, at trace)
    // are capped whatever the filter asks: `--trace-protocol` is the
    // redacted way to see the dialogue. Later directives win over earlier
    // ones for the same target, so RUST_LOG cannot lift the cap.
    for target in RAW_WIRE_TARGETS {
        if let Ok(d) = format!("{target}=info").parse() {
            filter = filter.add_directive(d);
        }
    }
    // rustls warns about every client that sends an IP address as SNI
    // ("Illegal SNI extension: ignoring IP address presented as
    // hostname"; RFC 6066 §3 forbids it, and many clients connecting to
    // 127.0.0.1 do it): the client's harmless fault, not the gateway's.
    for target in NOISY_TARGETS {
        if let Ok(d) = format!("{target}=error").parse() {
            filter = filter.add_directive(d);
        }
    }
    // A closed stderr (a log pipe whose reader died) loses log lines but
    // must not bring the gateway down: the layer's own report of a failed
    // write would go to stderr too, and `eprint!` panics there.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file,
        // a pipe or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
