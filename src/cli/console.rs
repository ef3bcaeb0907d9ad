//! `graphgate console passwd|close`: the web console's admin password
//! (Argon2id in the store, `login_limit.argon2_*`). The console on the
//! admin endpoint (`admin.listen`) is closed until one is set; a running
//! gateway honours a new one at the next sign-in.

use std::process::ExitCode;

use clap::Subcommand;

use crate::store::Store;

#[derive(Debug, Clone, Subcommand)]
pub enum ConsoleCommand {
    /// Set (or change) the console's admin password; this opens the
    /// console at http://ADMIN/ (admin.listen) to whoever knows it.
    Passwd {
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove the admin password: the console closes (open sessions
    /// last until the gateway restarts or they go idle).
    Close,
}

pub fn run(store: &Store, command: &ConsoleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConsoleCommand::Passwd { password_stdin } => {
            let password = super::accounts::read_password(*password_stdin, "the console admin")?;
            store.set_console_password(&password)?;
            println!(
                "Console admin password set. Open the admin endpoint (admin.listen) in a browser \
                 on this machine and sign in with it."
            );
        }
        ConsoleCommand::Close => {
            if store.clear_console_password()? {
                println!("Console admin password removed: the console is closed.");
            } else {
                println!("No console admin password was set; the console was closed already.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The web console of a gateway: its configuration, store, clients,
/// listeners and login penalty, on the admin listener at `admin`.
pub(super) fn console(
    config: &crate::config::Config,
    config_file: Option<std::path::PathBuf>,
    runtime: &crate::gateway::Runtime,
    gateway: &crate::gateway::listeners::Gateway,
    admin: std::net::SocketAddr,
) -> crate::admin::console::Console {
    crate::admin::console::Console::new(crate::admin::console::ConsoleParts {
        config: config.clone(),
        config_file,
        store: runtime.store.clone(),
        key: runtime.key.clone(),
        graph: runtime.graph.clone(),
        entra: runtime
            .entra
            .as_ref()
            .map(std::sync::Arc::clone)
            .map_err(|e| crate::gateway::ops::signin::auth_sentence("<account>", e)),
        guard: gateway.login_guard.clone(),
        listeners: gateway.listeners.clone(),
        admin,
    })
}
