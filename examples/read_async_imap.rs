//! Read a mailbox through graphgate's IMAP port with
//! [async-imap](https://docs.rs/async-imap): log in, list the folders,
//! select one and print the envelopes of its newest messages.
//!
//! With `graphgate demo` running, nothing to set:
//!
//! ```sh
//! cargo run --example read_async_imap
//! cargo run --example read_async_imap -- --user bob@example.com --password bob --limit 3
//! ```
//!
//! Against your own gateway:
//!
//! ```sh
//! cargo run --example read_async_imap -- --host mail.internal --port 1143 \
//!     --tls starttls --ca-file /var/lib/graphgate/tls/cert.pem \
//!     --user helpdesk@contoso.com --password "$APP_PASSWORD"
//! ```
//!
//! Options (each also read from the environment variable in brackets):
//! `--host` [IMAP_HOST] (127.0.0.1), `--port` [IMAP_PORT] (1143; 1993 for
//! `--tls implicit`), `--user` [IMAP_USER] (alice@example.com), `--password`
//! [IMAP_PASSWORD] (alice), `--mailbox` [IMAP_MAILBOX] (INBOX), `--limit`
//! [IMAP_LIMIT] (10 newest messages), `--tls` [IMAP_TLS]:
//!
//! - `none` (default): no TLS. graphgate accepts LOGIN without TLS only from
//!   127.0.0.1/::1 (`imap.plaintext_login_on_loopback`).
//! - `starttls`: STARTTLS before LOGIN; `implicit`: TLS from the first byte
//!   (`imap.implicit_tls_listen`, port 1993 in the demo). The certificate is
//!   checked against `--ca-file` [IMAP_CA_FILE]: the system's CA bundle
//!   (/etc/ssl/certs/ca-certificates.crt) by default, or for graphgate's
//!   generated certificate `<data dir>/tls/cert.pem` (see certs/README.md).
//!
//! The login is a local graphgate account, never a Microsoft password.

use std::sync::Arc;

use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Any stream async-imap can speak over: plain TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}

/// `--name VALUE` or `--name=VALUE` from the command line, else the
/// environment variable, else the default.
fn option(args: &[String], name: &str, var: &str, default: &str) -> String {
    let flag = format!("--{name}");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if *arg == flag {
            if let Some(value) = iter.next() {
                return value.clone();
            }
        } else if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
            return value.to_string();
        }
    }
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// A TLS client that trusts the certificates in `ca_file` (PEM).
fn tls_connector(ca_file: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| anyhow::anyhow!("--ca-file {ca_file}: {e}"))?
    {
        roots.add(cert.map_err(|e| anyhow::anyhow!("--ca-file {ca_file}: {e}"))?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Connected, greeted, and (for STARTTLS) switched to TLS.
async fn connect(
    host: &str,
    port: u16,
    tls_mode: &str,
    ca_file: &str,
) -> anyhow::Result<async_imap::Client<Box<dyn Stream>>> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {host}:{port}: {e}"))?;
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let stream: Box<dyn Stream> = match tls_mode {
        "none" => Box::new(tcp),
        "implicit" => Box::new(tls_connector(ca_file)?.connect(server_name, tcp).await?),
        "starttls" => {
            let mut client = async_imap::Client::new(tcp);
            client
                .read_response()
                .await?
                .ok_or_else(|| anyhow::anyhow!("{host}:{port} closed before its greeting"))?;
            client.run_command_and_check_ok("STARTTLS", None).await?;
            let tcp = client.into_inner();
            let tls = tls_connector(ca_file)?.connect(server_name, tcp).await?;
            // After STARTTLS the server sends no new greeting.
            return Ok(async_imap::Client::new(Box::new(tls) as Box<dyn Stream>));
        }
        other => anyhow::bail!("--tls {other}: use none, starttls or implicit"),
    };
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await?
        .ok_or_else(|| anyhow::anyhow!("{host}:{port} closed before its greeting"))?;
    Ok(client)
}

/// A LIST attribute as IMAP writes it (`\HasNoChildren`, `\Sent`).
fn attribute(a: &async_imap::types::NameAttribute<'_>) -> String {
    match a {
        async_imap::types::NameAttribute::Extension(s) => s.to_string(),
        other => format!("\\{other:?}"),
    }
}

/// A flag as IMAP writes it (`\Seen`, or a keyword).
fn flag(f: &async_imap::types::Flag<'_>) -> String {
    match f {
        async_imap::types::Flag::Custom(s) => s.to_string(),
        other => format!("\\{other:?}"),
    }
}

/// An ENVELOPE field as text (encoded words are left as they are).
fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: read_async_imap [--host H] [--port P] [--user U] [--password PW] \
             [--mailbox M] [--limit N] [--tls none|starttls|implicit] [--ca-file PEM]"
        );
        return Ok(());
    }
    let tls_mode = option(&args, "tls", "IMAP_TLS", "none");
    let host = option(&args, "host", "IMAP_HOST", "127.0.0.1");
    let default_port = if tls_mode == "implicit" {
        "1993"
    } else {
        "1143"
    };
    let port: u16 = option(&args, "port", "IMAP_PORT", default_port)
        .parse()
        .map_err(|_| anyhow::anyhow!("--port must be a port number"))?;
    let user = option(&args, "user", "IMAP_USER", "alice@example.com");
    let password = option(&args, "password", "IMAP_PASSWORD", "alice");
    let mailbox = option(&args, "mailbox", "IMAP_MAILBOX", "INBOX");
    let limit: u32 = option(&args, "limit", "IMAP_LIMIT", "10")
        .parse()
        .map_err(|_| anyhow::anyhow!("--limit must be a number"))?;
    let ca_file = option(
        &args,
        "ca-file",
        "IMAP_CA_FILE",
        "/etc/ssl/certs/ca-certificates.crt",
    );

    let client = connect(&host, port, &tls_mode, &ca_file).await?;
    let mut session = client.login(&user, &password).await.map_err(|(e, _)| {
        anyhow::anyhow!(
            "LOGIN as {user} at {host}:{port} failed: {e} (a wrong login or password, or \
             LOGIN without TLS from a non-loopback address: try --tls starttls)"
        )
    })?;

    let folders: Vec<_> = session
        .list(Some(""), Some("*"))
        .await?
        .try_collect()
        .await?;
    println!("folders:");
    for folder in &folders {
        let attributes: Vec<String> = folder.attributes().iter().map(attribute).collect();
        println!("  {} {}", folder.name(), attributes.join(" "));
    }

    let selected = session.select(&mailbox).await?;
    println!(
        "{mailbox}: {} message(s), UIDVALIDITY {}",
        selected.exists,
        selected.uid_validity.unwrap_or_default()
    );
    if selected.exists > 0 {
        let first = selected.exists.saturating_sub(limit.max(1) - 1).max(1);
        let range = format!("{first}:{}", selected.exists);
        let fetched: Vec<_> = session
            .fetch(&range, "(UID FLAGS ENVELOPE)")
            .await?
            .try_collect()
            .await?;
        for message in &fetched {
            let Some(envelope) = message.envelope() else {
                continue;
            };
            let from = envelope
                .from
                .as_ref()
                .and_then(|list| list.first())
                .map(|a| format!("{}@{}", text(a.mailbox.as_deref()), text(a.host.as_deref())))
                .unwrap_or_default();
            let flags: Vec<String> = message.flags().map(|f| flag(&f)).collect();
            println!(
                "  UID {} | {} | {} | {} | {}",
                message.uid.unwrap_or_default(),
                text(envelope.date.as_deref()),
                from,
                text(envelope.subject.as_deref()),
                flags.join(" ")
            );
        }
    }
    session.logout().await?;
    Ok(())
}
