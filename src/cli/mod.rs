//! The command line: `graphgate <command>`. Each command is a file here;
//! `main.rs` only calls [`main`].

mod accounts;
pub(crate) mod consent;
mod console;
mod demo;
mod doctor;
mod health;
mod keys;
mod logging;
mod queue;
mod send_test;
mod serve;
mod signin;
mod sim;
mod status;

use crate::gateway::net::bind;
pub use crate::gateway::net::raise_open_file_limit;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use demo::{sign_in_via_simulator, sign_in_via_simulator_with};

/// graphgate: a local SMTP and IMAP gateway to Microsoft 365 mailboxes
/// through Microsoft Graph, signed in with OAuth 2.0 (Entra ID).
///
/// Legacy applications keep speaking SMTP and IMAP to localhost with a local
/// password; graphgate turns every command into Graph calls.
#[derive(Debug, Parser)]
#[command(name = "graphgate", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Every key can also be set with a
    /// GRAPHGATE_* variable; `graphgate config example` prints them all.
    #[arg(long, global = true, env = "GRAPHGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Data directory (database, token key, spool, cache); overrides the
    /// configuration's `data_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log filter (overrides log.level), e.g. `debug` or
    /// `graphgate::graph=debug,info`.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,

    /// Log format (overrides log.format).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,

    /// Log every SMTP and IMAP line, credentials redacted (log.protocol_trace).
    #[arg(long, global = true)]
    trace_protocol: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Try graphgate with nothing to set up: a simulated Microsoft 365 tenant
    /// and the gateway in one process, with accounts alice@example.com
    /// (password alice) and bob@example.com (password bob).
    Demo(demo::DemoArgs),
    /// Run the gateway from configuration.
    Serve(serve::ServeArgs),
    /// Run only the Microsoft Graph + Entra ID simulator (for tests and
    /// trying things against a fake tenant).
    Sim(sim::SimArgs),
    /// Sign a local account in to Microsoft 365 (device code; --browser
    /// for a browser on this machine; app-only accounts check their app
    /// credential).
    Login(signin::LoginArgs),
    /// Sign a local account out: delete its tokens (its login and spool stay).
    Logout(signin::LogoutArgs),
    /// Manage the local accounts legacy applications log in with.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// The web console on the admin endpoint: `console passwd` sets its
    /// admin password (the console is closed without one).
    #[command(subcommand)]
    Console(console::ConsoleCommand),
    /// Show every account: ONLINE or OFFLINE, token expiry, Inbox counts,
    /// the last error and its fix. Exit status 1 when any is OFFLINE.
    Status(status::StatusArgs),
    /// Print the admin consent URL for the configured app and tenant.
    ConsentUrl(consent::ConsentArgs),
    /// Inspect and act on the SMTP spool (messages waiting for Graph).
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The token-encryption key: `keys rotate` makes a new one and
    /// re-seals every stored token with it.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Send one test message through the spool and Graph, as SMTP would
    /// (with --read-back: wait until it shows up in the recipient's Inbox).
    SendTest(send_test::SendTestArgs),
    /// Check configuration, file permissions, ports, the TLS certificate,
    /// the clock and every account's token and permissions; print each
    /// finding with its fix. Exit status 1 when anything FAILs.
    Doctor(doctor::DoctorArgs),
    /// Check the running gateway (for container health checks): its admin
    /// endpoint's /readyz when admin.listen is set, else the greetings of its
    /// SMTP and IMAP listeners. Exit status 0 healthy, 1 not.
    Health(health::HealthArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a complete, commented configuration file with every key.
    Example,
    /// Read the configuration (file + GRAPHGATE_* variables), report the
    /// first problem or print the effective settings.
    Check,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_open_file_limit();
    // One TLS crypto provider for the whole process (rustls panics at run
    // time if two are linked and none is chosen).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("graphgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("graphgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration, with `--data-dir` applied.
///
/// Without `--config`, a `graphgate.toml` inside `--data-dir` is used if
/// there is one (`graphgate demo` leaves one describing its simulator, so
/// `graphgate status --data-dir DIR` works against a running demo).
fn load_config(cli: &Cli) -> anyhow::Result<crate::config::Config> {
    let path = config_file(cli);
    let mut config = crate::config::Config::load(path.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

/// The configuration file [`load_config`] reads: `--config`, else a
/// `graphgate.toml` inside `--data-dir` if there is one.
fn config_file(cli: &Cli) -> Option<PathBuf> {
    let beside_data = cli
        .data_dir
        .as_ref()
        .map(|d| d.join("graphgate.toml"))
        .filter(|p| p.exists());
    cli.config.clone().or(beside_data)
}

/// The store in the configured data directory, which must exist already
/// (commands other than `serve` and `demo` never create one by accident).
fn open_store(config: &crate::config::Config) -> anyhow::Result<crate::store::Store> {
    Ok(crate::gateway::open_store(
        config,
        crate::gateway::StoreMode::Existing,
    )?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    logging::set_overrides(logging::Overrides {
        level: cli.log_level.clone(),
        format: cli.log_format.clone(),
        protocol_trace: cli.trace_protocol,
    });
    match cli.command {
        Command::Demo(ref args) => demo::run(args, cli.data_dir.clone()).await,
        Command::Serve(ref args) => {
            if let Some(path) = config_file(&cli) {
                crate::config::check_private_file(&path, "the configuration file")?;
            }
            let mut config = load_config(&cli)?;
            config.validate()?;
            if let Some(trace) = &args.graph_trace {
                config.microsoft.graph_trace = Some(trace.clone());
            }
            if let Some(addr) = args.pop3 {
                config.pop3.listen = addr.to_string();
            }
            if let Some(addr) = args.pop3s {
                config.pop3.implicit_tls_listen = addr.to_string();
            }
            if let Some(relay) = args.relay {
                config.relay.listen = relay.to_string();
            }
            serve::run(config, config_file(&cli)).await
        }
        Command::Accounts(ref command) => {
            let config = load_config(&cli)?;
            if matches!(
                command,
                accounts::AccountsCommand::Add(_) | accounts::AccountsCommand::Passwd { .. }
            ) {
                // New hashes use login_limit.argon2_*.
                crate::store::accounts::set_password_params(config.login_limit.password_params())?;
            }
            let store = match command {
                accounts::AccountsCommand::Add(_) => crate::store::Store::open(&config.data_dir)?,
                _ => open_store(&config)?,
            };
            accounts::run(&store, command)
        }
        Command::Console(ref command) => {
            let config = load_config(&cli)?;
            // New hashes use login_limit.argon2_*.
            crate::store::accounts::set_password_params(config.login_limit.password_params())?;
            console::run(&crate::store::Store::open(&config.data_dir)?, command)
        }
        Command::Sim(args) => sim::run(args).await,
        Command::Status(ref args) => status::run(&load_config(&cli)?, args).await,
        Command::ConsentUrl(ref args) => consent::run(&load_config(&cli)?, args),
        Command::Login(ref args) => {
            let config = load_config(&cli)?;
            logging::init_config(&config.log);
            signin::login(&config, args).await
        }
        Command::Logout(ref args) => {
            let config = load_config(&cli)?;
            signin::logout(&open_store(&config)?, args)
        }
        Command::Queue(ref command) => {
            let config = load_config(&cli)?;
            queue::run(&open_store(&config)?, command)
        }
        Command::SendTest(ref args) => {
            let config = load_config(&cli)?;
            let store = open_store(&config)?;
            send_test::run(&config, &store, args).await
        }
        Command::Doctor(ref args) => {
            doctor::run(config_file(&cli), cli.data_dir.clone(), args).await
        }
        Command::Keys(ref command) => keys::run(&load_config(&cli)?, command),
        Command::Health(ref args) => health::run(&load_config(&cli)?, args).await,
        Command::Config(ConfigCommand::Example) => {
            print!("{}", crate::config::example());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => {
            // What `serve` refuses, refused here too.
            if let Some(path) = config_file(&cli) {
                crate::config::check_private_file(&path, "the configuration file")?;
            }
            let config = load_config(&cli)?;
            config.validate()?;
            print!(
                "{}",
                toml::to_string_pretty(&config).unwrap_or_else(|e| e.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
