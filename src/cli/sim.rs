//! `graphgate sim`: the Graph + Entra ID simulator alone.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use clap::builder::TypedValueParser as _;

use crate::sim::{SimConfig, SimState, tenant};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    listen: SocketAddr,
    /// The URL clients reach the simulator at, if not http://ADDR (behind a
    /// proxy or in a container).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Approve every device-code sign-in after this many seconds, as this
    /// user (e.g. `--device-auto-approve alice@example.com`).
    #[arg(long, value_name = "UPN")]
    device_auto_approve: Option<String>,
    /// Access token lifetime in seconds (Entra ID: about 3599).
    #[arg(long, default_value_t = 3599, value_name = "SECONDS")]
    token_lifetime: u64,
    /// Start with empty mailboxes instead of the demo messages.
    #[arg(long)]
    no_seed: bool,
    /// Store the messages the simulator makes (sent, created, copied) as
    /// the bytes submitted instead of the MIME Exchange Online generates —
    /// its own headers in its order, new boundaries, quoted-printable and
    /// base64. Re-rendering is the default, as at Microsoft, where
    /// `$value` differs from what was submitted; this is for tests that
    /// need the submitted bytes back.
    #[arg(long, conflicts_with = "exchange_mime")]
    exact_mime: bool,
    /// Re-render stored MIME as Exchange Online does (the default; kept
    /// so that older scripts still run).
    #[arg(long, hide = true)]
    exchange_mime: bool,
    /// Largest MIME message, in decoded bytes, that a MIME sendMail or a
    /// message created from MIME takes before 413 (default: the 2,240,000
    /// a user saw Microsoft refuse above; Microsoft documents about 4 MB
    /// per request, i.e. 3145728 of MIME).
    #[arg(long, default_value_t = crate::sim::REPORTED_MIME_LIMIT, value_name = "BYTES")]
    mime_request_limit: usize,
    /// The status of a MailboxConcurrency refusal: 429 (as Microsoft
    /// documents) or 503 (the default: whether Exchange answers 503 too is
    /// unverified, and it is the riskier answer for a client).
    #[arg(long, default_value_t = 503, value_name = "STATUS",
          value_parser = clap::builder::PossibleValuesParser::new(["429", "503"])
              .map(|s| s.parse::<u16>().unwrap_or(503)))]
    concurrency_refusal_status: u16,
    /// Write the demo confidential app's certificate and private key (PEM)
    /// into this directory, for trying certificate credentials.
    #[arg(long, value_name = "DIR")]
    write_credentials: Option<std::path::PathBuf>,
}

pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    super::logging::init("info", "text");
    let listener = super::bind(args.listen, "simulator", "--listen").await?;
    let local = listener.local_addr()?;
    let config = SimConfig {
        public_url: args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}")),
        access_token_lifetime: Duration::from_secs(args.token_lifetime),
        device_auto_approve: args
            .device_auto_approve
            .clone()
            .map(|upn| (Duration::from_secs(2), upn)),
        seed_messages: !args.no_seed,
        exchange_mime: !args.exact_mime,
        mime_request_limit: args.mime_request_limit,
        concurrency_refusal_status: args.concurrency_refusal_status,
        ..SimConfig::default()
    };
    let state = SimState::new(config)?;
    if let Some(dir) = &args.write_credentials {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("demo-app-cert.pem"), &state.certificate().cert_pem)?;
        std::fs::write(dir.join("demo-app-key.pem"), &state.certificate().key_pem)?;
    }
    println!("{}", describe(&state, local));
    crate::sim::serve(listener, state, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// What a person needs to point something at the simulator.
pub fn describe(state: &SimState, local: SocketAddr) -> String {
    let url = &state.config().public_url;
    format!(
        "Microsoft Graph + Entra ID simulator on http://{local}\n\
         \x20 tenant            {tid} (or {domain})\n\
         \x20 token endpoint    {url}/{tid}/oauth2/v2.0/token\n\
         \x20 Graph             {url}/v1.0/me/messages\n\
         \x20 public client id  {public}\n\
         \x20 confidential app  {conf} (secret value {secret})\n\
         \x20 users             alice@example.com, bob@example.com (passwords alice, bob),\n\
         \x20                   support@example.com (shared), carol@example.com (no licence)\n\
         \x20 control           GET {url}/_sim/stats, POST {url}/_sim/faults, POST {url}/_sim/devicelogin",
        tid = tenant::DEMO_TENANT_ID,
        domain = tenant::DEMO_TENANT_DOMAIN,
        public = tenant::DEMO_PUBLIC_CLIENT_ID,
        conf = tenant::DEMO_CONFIDENTIAL_CLIENT_ID,
        secret = tenant::DEMO_CLIENT_SECRET,
    )
}
