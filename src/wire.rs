//! The protocol trace (`--trace-protocol`, `log.protocol_trace`): every
//! SMTP and IMAP line in and out, at trace level under the target
//! `graphgate::wire`, inside the session's span. Credentials never appear:
//! AUTH payloads, LOGIN passwords and AUTHENTICATE data are replaced by
//! `[credentials redacted]`, and message data is summarised by its size.

/// The tracing target of protocol lines.
pub const TARGET: &str = "graphgate::wire";

/// What stands in for a credential.
pub const REDACTED: &str = "[credentials redacted]";

/// Whether the trace is on (saves formatting lines nobody reads).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::TRACE)
}

/// A protocol line for the trace: printable, bounded (a FETCH of a
/// message body is not logged whole).
pub fn line(bytes: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let mut line: String = text
        .trim_end_matches(['\r', '\n'])
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    if bytes.len() > MAX {
        line.push_str(&format!(" … ({} bytes)", bytes.len()));
    }
    line
}
