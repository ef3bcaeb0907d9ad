//! Logging set-up: tracing to stderr, text or JSON. Secrets never reach a
//! log line: they are `Secret<T>`, whose `Debug` prints `[redacted]`.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `RUST_LOG` wins over `level`.
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
