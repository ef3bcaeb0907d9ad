//! `graphgate accounts add|list|remove|set|unlock|passwd`: the local accounts legacy
//! applications log in with. A legacy app never sees a Microsoft
//! credential; a Microsoft credential is never typed into a legacy app.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::gateway::ops::accounts as ops;
use crate::secret::Secret;
use crate::store::Store;

#[derive(Debug, Clone, Subcommand)]
pub enum AccountsCommand {
    /// Add a local account bound to a Microsoft 365 mailbox.
    Add(AddArgs),
    /// List local accounts and their state.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a local account and its tokens (refused while it has mail in
    /// the spool).
    Remove {
        /// The local login name.
        login: String,
    },
    /// Change a local account's settings.
    Set(SetArgs),
    /// Lift the login penalty (delays and refusals after failed logins) of
    /// LOGIN, of every login from --address, or with neither, all of them.
    /// A running gateway honours it at the next attempt.
    Unlock {
        /// The login name (as the client typed it; any case).
        login: Option<String>,
        /// Only failures from this client address (e.g. 127.0.0.1).
        #[arg(long, value_name = "ADDR")]
        address: Option<std::net::IpAddr>,
    },
    /// Change a local account's password.
    Passwd {
        /// The local login name.
        login: String,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Per-account settings, for `accounts set` (and `accounts add`).
#[derive(Debug, Clone, Default, Args)]
pub struct Settings {
    /// The folder IMAP shows as INBOX, by the name IMAP LIST gives it
    /// (e.g. `INBOX/Support`, `Tickets`, `Shared/support@contoso.com/INBOX`),
    /// for mail handlers that only read INBOX. An empty value resets it to
    /// the mailbox's own Inbox.
    #[arg(long, value_name = "FOLDER")]
    imap_inbox: Option<String>,
    /// Whether messages an IMAP session fetched in full (BODY[], RFC822)
    /// stay on the server. `no`: they are deleted (to Deleted Items, or
    /// for good with imap.expunge_permanently) when the session closes the
    /// folder or logs out cleanly — a dropped connection deletes nothing.
    #[arg(long, value_name = "yes|no", value_parser = yes_no)]
    keep_fetched: Option<bool>,
    /// Whether SMTP submissions leave a copy in Sent Items.
    #[arg(long, value_name = "yes|no", value_parser = yes_no)]
    sent_copy: Option<bool>,
    /// What SMTP submission does with a sender the account may not use:
    /// `keep` (refused with 550; the default), `rewrite` (sent as the
    /// mailbox, the original address in Reply-To and the display name:
    /// cron's root@host, plus-addresses) or `reject` (the mailbox only,
    /// no aliases).
    #[arg(long, value_name = "keep|rewrite|reject")]
    sender_policy: Option<crate::config::SenderPolicy>,
}

#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The local login name.
    login: String,
    /// Add a From address the account may use (an alias, or a mailbox it
    /// has Send As on). Repeatable.
    #[arg(long = "alias", value_name = "ADDRESS")]
    add_aliases: Vec<String>,
    /// Remove a From address added with --alias. Repeatable.
    #[arg(long = "no-alias", value_name = "ADDRESS")]
    remove_aliases: Vec<String>,
    /// Add a shared mailbox the account reads (Full Access). Repeatable.
    #[arg(long = "shared", value_name = "ADDRESS")]
    add_shared: Vec<String>,
    /// Remove a shared mailbox added with --shared. Repeatable.
    #[arg(long = "no-shared", value_name = "ADDRESS")]
    remove_shared: Vec<String>,
    #[command(flatten)]
    settings: Settings,
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("{s:?}: say yes or no")),
    }
}

impl Settings {
    fn ops(&self) -> ops::Settings {
        ops::Settings {
            imap_inbox: self.imap_inbox.clone(),
            keep_fetched: self.keep_fetched,
            sent_copy: self.sent_copy,
            sender_policy: self.sender_policy,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    /// The login name legacy applications use (default: the mailbox address).
    login: String,
    /// The Microsoft 365 mailbox (UPN or primary SMTP address); default: the
    /// login name.
    #[arg(long, value_name = "ADDRESS")]
    mailbox: Option<String>,
    /// Another From address the account may use (an alias, or a mailbox it
    /// has Send As on). Repeatable.
    #[arg(long = "alias", value_name = "ADDRESS")]
    aliases: Vec<String>,
    /// A shared mailbox the account may read (Full Access). Repeatable.
    #[arg(long = "shared", value_name = "ADDRESS")]
    shared: Vec<String>,
    /// Use application permissions (client credentials from the
    /// configuration) instead of a signed-in user.
    #[arg(long)]
    app_only: bool,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Keep no copy of what it sends through SMTP in its Sent Items (such
    /// messages are sent through a draft marked to be deleted after
    /// submission).
    #[arg(long)]
    no_sent_copy: bool,
    /// App-only: this account's own app registration (client id) instead
    /// of `microsoft.client_id`.
    #[arg(long, value_name = "ID", requires = "app_only")]
    client_id: Option<String>,
    /// App-only: its tenant (id or domain) instead of `microsoft.tenant`.
    #[arg(long, value_name = "TENANT", requires = "app_only")]
    tenant: Option<String>,
    /// App-only: a file holding its client secret's Value (kept in the
    /// file; the store records only the path).
    #[arg(long, value_name = "FILE", requires = "app_only")]
    client_secret_file: Option<std::path::PathBuf>,
    /// App-only: its PEM certificate (with --private-key-file).
    #[arg(long, value_name = "FILE", requires = "app_only")]
    certificate_file: Option<std::path::PathBuf>,
    /// App-only: the PEM private key of --certificate-file.
    #[arg(long, value_name = "FILE", requires = "app_only")]
    private_key_file: Option<std::path::PathBuf>,
    /// App-only: sign the certificate assertion RS256 with `x5t` (older
    /// tenants) instead of PS256 with `x5t#S256`.
    #[arg(long, requires = "app_only")]
    rs256: bool,
    #[command(flatten)]
    settings: Settings,
}

pub fn run(store: &Store, command: &AccountsCommand) -> anyhow::Result<ExitCode> {
    match command.clone() {
        AccountsCommand::Add(args) => {
            let mailbox = args.mailbox.clone().unwrap_or_else(|| args.login.clone());
            ops::check_address("--mailbox", &mailbox)?;
            for a in args.aliases.iter().chain(&args.shared) {
                ops::check_address("--alias/--shared", a)?;
            }
            let password = read_password(args.password_stdin, &args.login)?;
            let account = ops::add(
                store,
                ops::NewAccountRequest {
                    login: args.login.clone(),
                    mailbox: Some(mailbox),
                    password,
                    app_only: args.app_only,
                    aliases: args.aliases.clone(),
                    shared: args.shared.clone(),
                    sent_copy: !args.no_sent_copy,
                    credential: crate::store::AppCredential {
                        client_id: args.client_id.clone(),
                        tenant: args.tenant.clone(),
                        client_secret_file: args.client_secret_file.clone(),
                        certificate_file: args.certificate_file.clone(),
                        private_key_file: args.private_key_file.clone(),
                        rs256: args.rs256,
                    },
                    settings: args.settings.ops(),
                },
            )?;
            println!(
                "Added {} → {} ({}).",
                account.login,
                account.mailbox,
                if args.app_only {
                    "app-only"
                } else {
                    "delegated"
                }
            );
            if !args.app_only {
                println!("Next: sign it in with `graphgate login {}`.", account.login);
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::List { json } => {
            let accounts = store.accounts()?;
            let mut out = String::new();
            if json {
                let list: Vec<serde_json::Value> = accounts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "login": a.login,
                            "mailbox": a.mailbox,
                            "auth": a.auth_profile,
                            "state": a.state,
                            "aliases": a.aliases,
                            "shared_mailboxes": a.shared_mailboxes,
                            "save_to_sent_items": a.save_to_sent_items,
                            "imap_inbox": a.imap_inbox,
                            "keep_fetched": a.keep_fetched,
                            "last_error": a.last_error,
                        })
                    })
                    .collect();
                out.push_str(&format!("{}\n", serde_json::Value::Array(list)));
            } else if accounts.is_empty() {
                out.push_str("No accounts. Add one with `graphgate accounts add LOGIN`.\n");
            } else {
                for a in accounts {
                    let state = match a.state {
                        crate::store::AccountState::Online => "ONLINE",
                        crate::store::AccountState::Offline => "OFFLINE",
                    };
                    out.push_str(&format!("{:<32} {:<32} {state}\n", a.login, a.mailbox));
                }
            }
            print_all(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Set(args) => {
            if store.account(&args.login)?.is_none() {
                return Err(crate::store::StoreError::NoSuchAccount(args.login).into());
            }
            let edits = ops::ListEdits {
                add_aliases: args.add_aliases.clone(),
                remove_aliases: args.remove_aliases.clone(),
                add_shared: args.add_shared.clone(),
                remove_shared: args.remove_shared.clone(),
            };
            let mut said = ops::apply_lists(store, &args.login, &edits)?;
            said.extend(ops::apply_settings(
                store,
                &args.login,
                &args.settings.ops(),
            )?);
            if said.is_empty() {
                anyhow::bail!(
                    "nothing to change: give --alias/--no-alias ADDRESS, --shared/--no-shared \
                     ADDRESS, --sender-policy keep|rewrite|reject, --imap-inbox FOLDER, \
                     --keep-fetched yes|no or --sent-copy yes|no (an alias already there, or \
                     one to remove that is not, changes nothing)"
                );
            }
            for line in said {
                println!("{}: {line}.", args.login);
            }
            println!(
                "A running gateway applies it to the next SMTP AUTH and IMAP login (no new \
                 sign-in needed)."
            );
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Remove { login } => {
            ops::remove(store, &login)?;
            println!("Removed {login}.");
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Unlock { login, address } => {
            let now = crate::login_guard::now_ms();
            let key = login.as_deref().map(crate::login_guard::login_key);
            let address = address.map(crate::login_guard::address_key);
            let lifted = store.unlock_logins(key.as_deref(), address.as_deref(), now)?;
            let what = match (&login, &address) {
                (Some(l), Some(a)) => format!("{l} from {a}"),
                (Some(l), None) => l.clone(),
                (None, Some(a)) => format!("logins from {a}"),
                (None, None) => "any login".into(),
            };
            if lifted.is_empty() {
                println!("No failed logins recorded for {what}; nothing to lift.");
            }
            for row in &lifted {
                let f = &row.failures;
                let state = match f.locked_until.filter(|t| *t > now) {
                    Some(t) => format!(
                        "was refused for {} more seconds",
                        crate::login_guard::seconds(std::time::Duration::from_millis(
                            u64::try_from(t - now).unwrap_or(0)
                        ))
                    ),
                    None => format!("{} failure(s)", f.failures),
                };
                println!("Lifted {} from {}: {state}.", row.login, row.address);
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Passwd {
            login,
            password_stdin,
        } => {
            if store.account(&login)?.is_none() {
                return Err(crate::store::StoreError::NoSuchAccount(login).into());
            }
            let password = read_password(password_stdin, &login)?;
            store.set_password(&login, &password)?;
            println!("Password of {login} changed.");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Write `text` to stdout; a reader that went away (`accounts list |
/// head`) is no error — `println!` panicked on the broken pipe.
fn print_all(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A new local password: from stdin with `--password-stdin`, else asked
/// twice on the terminal without echo.
pub(super) fn read_password(from_stdin: bool, login: &str) -> anyhow::Result<Secret<String>> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Local password for {login}: "))?;
        let second = rpassword::prompt_password("Again: ")?;
        if first != second {
            anyhow::bail!("the two passwords differ; nothing was changed");
        }
        first
    } else {
        anyhow::bail!(
            "no terminal to ask for the password on; pass --password-stdin and write it to \
             standard input"
        )
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty; legacy applications need a non-empty password");
    }
    Ok(Secret::new(password))
}
