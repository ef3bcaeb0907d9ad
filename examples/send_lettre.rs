//! Send one message through graphgate's SMTP submission port with
//! [lettre](https://docs.rs/lettre), as an application would.
//!
//! With `graphgate demo` running, nothing to set:
//!
//! ```sh
//! cargo run --example send_lettre
//! cargo run --example send_lettre -- --to bob@example.com --subject "Build 42 passed"
//! ```
//!
//! Against your own gateway:
//!
//! ```sh
//! cargo run --example send_lettre -- --host mail.internal --port 2525 \
//!     --tls starttls --ca-file /var/lib/graphgate/tls/cert.pem \
//!     --user app@contoso.com --password "$APP_PASSWORD" --to someone@contoso.com
//! ```
//!
//! Options (each also read from the environment variable in brackets):
//! `--host` [SMTP_HOST] (127.0.0.1), `--port` [SMTP_PORT] (2525; 2465 for
//! `--tls implicit`), `--user` [SMTP_USER] (alice@example.com), `--password`
//! [SMTP_PASSWORD] (alice), `--from` [MAIL_FROM] (the user), `--to` [MAIL_TO]
//! (bob@example.com), `--subject` [MAIL_SUBJECT], `--tls` [SMTP_TLS]:
//!
//! - `none` (default): no TLS. graphgate accepts AUTH without TLS only from
//!   127.0.0.1/::1 (`smtp.plaintext_auth_on_loopback`).
//! - `starttls`: STARTTLS, then AUTH. The certificate is checked against the
//!   public CAs, or against `--ca-file` [SMTP_CA_FILE] — for graphgate's
//!   generated certificate, `<data dir>/tls/cert.pem` (see certs/README.md).
//! - `implicit`: TLS from the first byte (graphgate's
//!   `smtp.implicit_tls_listen`, port 2465 in the demo).
//!
//! AUTH PLAIN with the local account's login and password — never a
//! Microsoft password: graphgate holds the OAuth tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: send_lettre [--host H] [--port P] [--user U] [--password PW] [--from A] \
             [--to A] [--subject S] [--tls none|starttls|implicit] [--ca-file PEM]"
        );
        return Ok(());
    }
    let tls_mode = option(&args, "tls", "SMTP_TLS", "none");
    let host = option(&args, "host", "SMTP_HOST", "127.0.0.1");
    let default_port = if tls_mode == "implicit" {
        "2465"
    } else {
        "2525"
    };
    let port: u16 = option(&args, "port", "SMTP_PORT", default_port)
        .parse()
        .map_err(|_| anyhow::anyhow!("--port must be a port number"))?;
    let user = option(&args, "user", "SMTP_USER", "alice@example.com");
    let password = option(&args, "password", "SMTP_PASSWORD", "alice");
    let from = option(&args, "from", "MAIL_FROM", &user);
    let to = option(&args, "to", "MAIL_TO", "bob@example.com");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let subject = option(
        &args,
        "subject",
        "MAIL_SUBJECT",
        &format!("Hello from lettre through graphgate ({now})"),
    );
    let ca_file = option(&args, "ca-file", "SMTP_CA_FILE", "");

    let tls_parameters = || -> anyhow::Result<TlsParameters> {
        let mut builder = TlsParameters::builder(host.clone());
        if !ca_file.is_empty() {
            let pem =
                std::fs::read(&ca_file).map_err(|e| anyhow::anyhow!("--ca-file {ca_file}: {e}"))?;
            builder = builder.add_root_certificate(Certificate::from_pem(&pem)?);
        }
        Ok(builder.build_rustls()?)
    };
    let tls = match tls_mode.as_str() {
        "none" => Tls::None,
        "starttls" => Tls::Required(tls_parameters()?),
        "implicit" => Tls::Wrapper(tls_parameters()?),
        other => anyhow::bail!("--tls {other}: use none, starttls or implicit"),
    };

    let message = Message::builder()
        .from(from.parse::<Mailbox>()?)
        .to(to.parse::<Mailbox>()?)
        .subject(subject.clone())
        .body(format!(
            "This message was submitted with lettre to graphgate on {host}:{port} and sent \
             through Microsoft Graph.\r\n"
        ))?;

    // `builder_dangerous` only means "no TLS chosen for me": the TLS mode
    // is set explicitly on the next line.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(port)
        .tls(tls)
        .credentials(Credentials::new(user.clone(), password))
        .authentication(vec![Mechanism::Plain])
        .build();
    let response = transport.send(message).await.map_err(|e| {
        anyhow::anyhow!(
            "sending through {host}:{port} as {user} failed: {e} (535: wrong login or password; \
             530/538: AUTH needs TLS from this address, try --tls starttls; 550 5.7.1: the From \
             address is not the account's mailbox or one of its aliases)"
        )
    })?;
    let text: Vec<&str> = response.message().collect();
    println!(
        "sent {subject:?} from {from} to {to}: {} {}",
        response.code(),
        text.join(" ")
    );
    Ok(())
}
