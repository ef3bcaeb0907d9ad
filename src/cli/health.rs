//! `graphgate health`: is the gateway described by this configuration up?
//! Made for container health checks (`HEALTHCHECK CMD ["graphgate",
//! "health"]`) and service monitors: exit status 0 when healthy, 1 when not,
//! with one line saying what is wrong and which setting or command fixes it.
//!
//! With `admin.listen` set it asks the admin endpoint: `GET /readyz` (every
//! account signed in, the store answering), or `GET /healthz` with `--live`
//! (the process answers). Without it, it connects to every configured SMTP
//! and IMAP listener and reads the greeting (`220` for SMTP, RFC 5321 §4.2;
//! `* OK` for IMAP, RFC 3501 §7.1.1), over TLS for the implicit-TLS ones.
//! A listener on an unspecified address (`0.0.0.0`, `[::]`) is reached on
//! loopback, so the check works inside a container.
//!
//! It only reads the configuration; it never opens the store, so it cannot
//! change the state of the gateway it checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{Config, env_name};

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Only check that the process answers (`/healthz`) instead of that it
    /// is ready to serve (`/readyz`: every account signed in). Needs
    /// admin.listen; without it the listeners' greetings are checked either
    /// way.
    #[arg(long)]
    live: bool,
    /// Seconds each check may take before the gateway counts as unhealthy.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    timeout: u64,
}

/// The protocol a listener speaks, for its greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Smtp,
    Imap,
}

/// One listener to check.
struct Listener {
    what: &'static str,
    key: &'static str,
    addr: SocketAddr,
    protocol: Protocol,
    implicit_tls: bool,
}

pub async fn run(config: &Config, args: &HealthArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let outcome = match config.admin_listen()? {
        Some(addr) => check_admin(reachable(addr), args.live, timeout).await,
        None => check_listeners(config, timeout).await,
    };
    Ok(match outcome {
        Ok(line) => {
            println!("healthy: {line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("unhealthy: {line}");
            ExitCode::FAILURE
        }
    })
}

/// Where to connect to reach a listener bound to `addr`: loopback for the
/// unspecified addresses.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// `GET /readyz` (or `/healthz`) on the admin endpoint.
async fn check_admin(addr: SocketAddr, live: bool, timeout: Duration) -> Result<String, String> {
    let path = if live { "/healthz" } else { "/readyz" };
    let url = format!("http://{addr}{path}");
    let key = format!("admin.listen / {}", env_name("admin.listen"));
    let client = reqwest::Client::builder()
        // The endpoint is local; a proxy from the environment must not
        // stand in for it.
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let response = client.get(&url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "the admin endpoint {url} gave no answer within {} s: the gateway is stuck or \
                 overloaded; see its log (or raise --timeout on a slow host)",
                timeout.as_secs()
            )
        } else {
            format!(
                "nothing answers on the admin endpoint {url} ({key}): {}; is `graphgate serve` \
                 running with this configuration?",
                root_cause(&e)
            )
        }
    })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let text = one_line(&body);
    if status.is_success() {
        Ok(format!("{text} ({url})"))
    } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        Err(format!("{text} ({url})"))
    } else {
        Err(format!(
            "{url} answered {status}, not a graphgate admin endpoint? Check {key}: {text}"
        ))
    }
}

/// The innermost error's text (reqwest wraps the I/O error that says what
/// happened, e.g. "Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Several lines of an answer as one.
fn one_line(text: &str) -> String {
    let mut line = String::new();
    for part in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(part);
    }
    if line.len() > 1000 {
        let mut end = 1000;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// Every configured listener greets as it should.
async fn check_listeners(config: &Config, timeout: Duration) -> Result<String, String> {
    let (smtp, smtps) = config.smtp_listen().map_err(|e| e.to_string())?;
    let (imap, imaps) = config.imap_listen().map_err(|e| e.to_string())?;
    let candidates = [
        ("SMTP", "smtp.listen", smtp, Protocol::Smtp, false),
        (
            "SMTPS",
            "smtp.implicit_tls_listen",
            smtps,
            Protocol::Smtp,
            true,
        ),
        ("IMAP", "imap.listen", imap, Protocol::Imap, false),
        (
            "IMAPS",
            "imap.implicit_tls_listen",
            imaps,
            Protocol::Imap,
            true,
        ),
    ];
    let listeners: Vec<Listener> = candidates
        .into_iter()
        .filter_map(|(what, key, addr, protocol, implicit_tls)| {
            addr.map(|addr| Listener {
                what,
                key,
                addr: reachable(addr),
                protocol,
                implicit_tls,
            })
        })
        .collect();
    if listeners.is_empty() {
        return Err(format!(
            "nothing to check: admin.listen, smtp.listen, smtp.implicit_tls_listen, imap.listen \
             and imap.implicit_tls_listen are all empty; set admin.listen ({}) to check the \
             admin endpoint, or the listeners `graphgate serve` uses",
            env_name("admin.listen")
        ));
    }
    let results =
        futures::future::join_all(listeners.iter().map(|l| check_listener(l, timeout))).await;
    // Listeners that do not answer at all are named together: the usual
    // cause, a gateway that is not running, is one finding, not four.
    let mut silent = Vec::new();
    let mut first_refusal = None;
    let mut failures = Vec::new();
    for (listener, result) in listeners.iter().zip(results) {
        match result {
            Ok(()) => {}
            Err(Failure::NotAnswering(e)) => {
                silent.push(listener_name(listener));
                first_refusal.get_or_insert(e);
            }
            Err(Failure::Other(text)) => failures.push(text),
        }
    }
    if let Some(e) = first_refusal {
        failures.insert(
            0,
            format!(
                "nothing answers on {}: {e}; is `graphgate serve` running with this \
                 configuration?",
                silent.join(", ")
            ),
        );
    }
    if failures.is_empty() {
        let up: Vec<String> = listeners
            .iter()
            .map(|l| format!("{} {}", l.what, l.addr))
            .collect();
        Ok(format!("{} greet", up.join(", ")))
    } else {
        Err(failures.join("; "))
    }
}

fn listener_name(listener: &Listener) -> String {
    format!(
        "the {} listener {} ({} / {})",
        listener.what,
        listener.addr,
        listener.key,
        env_name(listener.key)
    )
}

/// Why one listener is not healthy.
enum Failure {
    /// The connection was refused or could not be made.
    NotAnswering(std::io::Error),
    /// Anything else, as a sentence with its remedy.
    Other(String),
}

async fn check_listener(listener: &Listener, timeout: Duration) -> Result<(), Failure> {
    let name = listener_name(listener);
    let text = match tokio::time::timeout(timeout, greeting(listener)).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(GreetingError::Connect(e))) => return Err(Failure::NotAnswering(e)),
        Err(_) => format!(
            "{name} gave no greeting within {} s: the gateway is stuck or overloaded; see its \
             log (or raise --timeout on a slow host)",
            timeout.as_secs()
        ),
        Ok(Err(GreetingError::Tls(e))) => format!(
            "{name} accepts connections but no TLS handshake: {e}; check tls.certificate_file \
             / tls.private_key_file and that no other program holds the port"
        ),
        Ok(Err(GreetingError::Read(e))) => format!(
            "{name} accepted the connection but sent no greeting: {e}; see the gateway's log"
        ),
        Ok(Err(GreetingError::Unexpected(line))) => format!(
            "{name} greets with {line:?} instead of {}: another program holds the port, or the \
             gateway refuses connections (too many?); see its log",
            match listener.protocol {
                Protocol::Smtp => "`220`",
                Protocol::Imap => "`* OK`",
            }
        ),
    };
    Err(Failure::Other(text))
}

enum GreetingError {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Read(String),
    Unexpected(String),
}

async fn greeting(listener: &Listener) -> Result<(), GreetingError> {
    let tcp = TcpStream::connect(listener.addr)
        .await
        .map_err(GreetingError::Connect)?;
    if listener.implicit_tls {
        let name = rustls::pki_types::ServerName::IpAddress(listener.addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(crate::tls::any_certificate_client()))
            .connect(name, tcp)
            .await
            .map_err(GreetingError::Tls)?;
        read_greeting(tls, listener.protocol).await
    } else {
        read_greeting(tcp, listener.protocol).await
    }
}

/// Read the greeting, then say goodbye politely.
async fn read_greeting<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    protocol: Protocol,
) -> Result<(), GreetingError> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        // A greeting line is short; a peer sending more is not a mail server.
        let read = (&mut reader)
            .take(1024)
            .read_line(&mut line)
            .await
            .map_err(|e| GreetingError::Read(e.to_string()))?;
        if read == 0 {
            return Err(GreetingError::Read("the connection was closed".into()));
        }
        let text = line.trim_end();
        match protocol {
            // RFC 5321 §4.2: "220-" continues a multi-line greeting.
            Protocol::Smtp if text.starts_with("220-") => continue,
            Protocol::Smtp if text == "220" || text.starts_with("220 ") => break,
            // RFC 3501 §7.1.1 (PREAUTH would be a misconfiguration here).
            Protocol::Imap if text.starts_with("* OK") => break,
            _ => return Err(GreetingError::Unexpected(text.chars().take(200).collect())),
        }
    }
    let bye: &[u8] = match protocol {
        Protocol::Smtp => b"QUIT\r\n",
        Protocol::Imap => b"h LOGOUT\r\n",
    };
    let mut stream = reader.into_inner();
    let _ = stream.write_all(bye).await;
    let _ = stream.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:2525".parse().unwrap();
        assert_eq!(reachable(v4), "127.0.0.1:2525".parse().unwrap());
        let v6: SocketAddr = "[::]:1143".parse().unwrap();
        assert_eq!(reachable(v6), "[::1]:1143".parse().unwrap());
        let other: SocketAddr = "10.0.0.5:25".parse().unwrap();
        assert_eq!(reachable(other), other);
    }

    #[test]
    fn answers_become_one_line() {
        assert_eq!(
            one_line("not ready:\na: OFFLINE: x\n\nb: OFFLINE: y\n"),
            "not ready: a: OFFLINE: x; b: OFFLINE: y"
        );
        assert!(one_line(&"é".repeat(800)).ends_with('…'));
    }
}
