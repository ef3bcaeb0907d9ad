//! `graphgate login` and `graphgate logout`: an admin signs a local account
//! in to Microsoft 365 once (or out), and nothing else ever needs a
//! Microsoft credential.
//!
//! - Delegated accounts: device code by default (works over SSH and in a
//!   container: a URL and a code to type on any device), or `--browser`
//!   for authorization code + PKCE through a loopback redirect. The user
//!   who signs in must be the account's mailbox owner (a re-login as
//!   someone else is refused and changes nothing).
//! - App-only accounts: a client-credentials token with the configured
//!   secret or certificate, and one Graph read of the mailbox to prove
//!   the application permission and any RBAC scope.
//!
//! Progress goes to standard error (a countdown to the code's expiry); the
//! URL and code go to standard output, one per line, for scripts.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::auth::{
    AuthError, ClientCredentialsTokenSource, DeviceCodeEvent, EntraClient, LoopbackLogin, TokenSet,
    TokenSource,
};
use crate::config::Config;
use crate::gateway::{KeyMode, Runtime, StoreMode};
use crate::graph::{GraphClient, Mailbox, WellKnownFolder};
use crate::store::{Account, AccountState, AuthProfile, Store};

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The local account (`graphgate accounts add` created it).
    login: String,
    /// Sign in with a browser on this machine (authorization code + PKCE,
    /// loopback redirect) instead of a device code.
    #[arg(long)]
    browser: bool,
    /// With --browser: print the sign-in URL but do not try to open it.
    #[arg(long)]
    no_open: bool,
    /// With --browser: the loopback port to listen on (default: any free
    /// one; the app registration must allow http://localhost).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Give up after this many seconds (default: 300 with --browser; for
    /// a device code, the 900 s Entra ID gives the code to live).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// The local account.
    login: String,
}

fn fail(text: String) -> anyhow::Result<ExitCode> {
    eprintln!("graphgate: {text}");
    Ok(ExitCode::FAILURE)
}

use crate::gateway::ops::signin::auth_sentence as sentence;

fn account(store: &Store, login: &str) -> anyhow::Result<Account> {
    store.account(login)?.ok_or_else(|| {
        anyhow::anyhow!(
            "there is no local account {login:?}; create it first with \
             `graphgate accounts add {login}` (its login and password are what applications use)"
        )
    })
}

/// Inbox counts through Graph: proves the token works for this mailbox.
async fn inbox(
    mailbox: &crate::graph::GraphMailbox,
) -> Result<(u64, u64), crate::graph::GraphError> {
    let folders = mailbox.list_folders().await?;
    Ok(folders
        .iter()
        .find(|f| f.well_known == Some(WellKnownFolder::Inbox))
        .map_or((0, 0), |f| (f.unread, f.total)))
}

pub async fn login(config: &Config, args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let store = crate::gateway::open_store(config, StoreMode::Existing)?;
    let store = &store;
    let account = account(store, &args.login)?;
    let Runtime {
        key, graph, entra, ..
    } = Runtime::from_store(config, store.clone(), KeyMode::LoadOrCreate)?;
    let entra = match entra {
        Ok(e) => e,
        Err(e) => return fail(sentence(&account.login, &e)),
    };
    if account.auth_profile == AuthProfile::AppOnly {
        return app_only(store, &account, entra, &graph).await;
    }
    let scopes = entra
        .config()
        .delegated_scopes(!account.shared_mailboxes.is_empty());
    let timeout = args.timeout.unwrap_or(if args.browser { 300 } else { 900 });
    let signed_in = tokio::time::timeout(Duration::from_secs(timeout), async {
        if args.browser {
            browser(&entra, &scopes, &account, args).await
        } else {
            device_code(&entra, &scopes, &account).await
        }
    })
    .await;
    let tokens = match signed_in {
        Err(_) => {
            return fail(format!(
                "the sign-in did not finish within {timeout} s; run `graphgate login {}` again",
                account.login
            ));
        }
        Ok(Err(e)) => return fail(sentence(&account.login, &e)),
        Ok(Ok(tokens)) => tokens,
    };
    match crate::gateway::ops::signin::complete_delegated(
        store, &key, entra, &graph, &account, tokens,
    )
    .await
    {
        Ok(done) => {
            if done.due_now > 0 {
                println!(
                    "{} queued message(s) of {} are due now; a running gateway sends them \
                     within seconds.",
                    done.due_now, account.login
                );
            }
            println!(
                "Signed in as {}; {} is ONLINE. Inbox: {} unread / {} total.",
                done.who, account.login, done.inbox_unread, done.inbox_total
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail(e.to_string()),
    }
}

async fn device_code(
    entra: &EntraClient,
    scopes: &[String],
    account: &Account,
) -> Result<TokenSet, AuthError> {
    let grant = entra.start_device_code(scopes).await?;
    println!(
        "To sign in {} to Microsoft 365, open this page on any device and enter the code.",
        account.mailbox
    );
    println!("URL: {}", grant.verification_uri);
    println!("Code: {}", grant.user_code);
    let _ = std::io::stdout().flush();
    let terminal = std::io::stderr().is_terminal();
    let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut tick = 0usize;
    let mut last_line = Instant::now();
    let result = entra
        .poll_device_code(&grant, |event| match event {
            DeviceCodeEvent::Pending { remaining } => {
                let left = format!(
                    "{}:{:02}",
                    remaining.as_secs() / 60,
                    remaining.as_secs() % 60
                );
                if terminal {
                    tick += 1;
                    eprint!(
                        "\r{} waiting for the sign-in of {} … code expires in {left}  ",
                        spinner[tick % spinner.len()],
                        account.mailbox
                    );
                } else if last_line.elapsed() >= Duration::from_secs(30) {
                    eprintln!("still waiting for the sign-in; the code expires in {left}");
                    last_line = Instant::now();
                }
            }
            DeviceCodeEvent::SlowDown { interval } => {
                eprintln!(
                    "{}Entra ID asked to poll less often: every {} s now",
                    if terminal { "\r" } else { "" },
                    interval.as_secs()
                );
            }
        })
        .await;
    if terminal {
        eprintln!();
    }
    result
}

async fn browser(
    entra: &EntraClient,
    scopes: &[String],
    account: &Account,
    args: &LoginArgs,
) -> Result<TokenSet, AuthError> {
    let login = LoopbackLogin::start(entra, args.port, scopes, Some(&account.mailbox)).await?;
    println!(
        "To sign in {}, open this URL in a browser on this machine:",
        account.mailbox
    );
    println!("URL: {}", login.authorize_url());
    let _ = std::io::stdout().flush();
    if !args.no_open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let _ = std::process::Command::new(opener)
            .arg(login.authorize_url())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    eprintln!(
        "waiting for the browser to come back to {} …",
        login.redirect_uri()
    );
    login.finish(entra).await
}

async fn app_only(
    store: &Store,
    account: &Account,
    entra: Arc<EntraClient>,
    graph: &GraphClient,
) -> anyhow::Result<ExitCode> {
    let entra = match crate::account::entra_for(account, &entra) {
        Ok(e) => e,
        Err(e) => return fail(sentence(&account.login, &e)),
    };
    let tokens: Arc<dyn TokenSource> = Arc::new(ClientCredentialsTokenSource::new(entra));
    if let Err(e) = tokens.access_token().await {
        let text = sentence(&account.login, &e);
        store.set_account_state(account.id, AccountState::Offline, Some(&text))?;
        return fail(text);
    }
    let mailbox = graph.mailbox(Mailbox::User(account.mailbox.clone()), tokens);
    match inbox(&mailbox).await {
        Ok((unread, total)) => {
            store.set_account_state(account.id, AccountState::Online, None)?;
            due_now(store, account);
            println!(
                "App-only access to {} works; {} is ONLINE. Inbox: {unread} unread / {total} total.",
                account.mailbox, account.login
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = format!(
                "the app got a token but Graph refused to read {}: {e}. {}",
                account.mailbox,
                e.remedy()
            );
            store.set_account_state(account.id, AccountState::Offline, Some(&text))?;
            fail(text)
        }
    }
}

/// The account's queued mail is due now: it waited for this sign-in.
fn due_now(store: &Store, account: &crate::store::Account) {
    match store.spool_due_now(account.id) {
        Ok(0) => {}
        Ok(n) => println!(
            "{n} queued message(s) of {} are due now; a running gateway sends them within \
             seconds.",
            account.login
        ),
        Err(e) => tracing::warn!(error = %e, "cannot make the queued mail due"),
    }
}

pub fn logout(store: &Store, args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let account = account(store, &args.login)?;
    store.delete_tokens(account.id)?;
    let text = format!(
        "signed out; run `graphgate login {}` to sign in again",
        account.login
    );
    store.set_account_state(account.id, AccountState::Offline, Some(&text))?;
    println!(
        "{} is signed out: its tokens are deleted, its local login and spool stay. \
         Mail to and from it waits until `graphgate login {}`.",
        account.login, account.login
    );
    Ok(ExitCode::SUCCESS)
}
