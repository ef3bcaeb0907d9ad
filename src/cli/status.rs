//! `graphgate status`: the "ping" of every account — ONLINE or OFFLINE,
//! token expiry, the mailbox it reaches and how many messages wait in its
//! Inbox, and the last error with its remedy. `--json` for scripts; the
//! exit status is non-zero when any account is OFFLINE.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use crate::account::AccountRuntime;
use crate::auth::EntraClient;
use crate::config::Config;
use crate::gateway::{KeyMode, Runtime, StoreMode};
use crate::graph::{GraphClient, GraphError, WellKnownFolder};
use crate::store::{Account, AccountState, Store, StoreKey};

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Machine-readable output (one JSON object).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct AccountStatus {
    login: String,
    mailbox: String,
    /// "online" or "offline".
    state: &'static str,
    /// Unix seconds when the current access token expires.
    token_expires_at: Option<i64>,
    inbox_unread: Option<u64>,
    inbox_total: Option<u64>,
    /// What went wrong and how to fix it.
    error: Option<String>,
    /// What a POP3 DELE does at QUIT (`pop3.on_delete`, docs/pop3.md).
    pop3_on_delete: String,
}

pub async fn run(config: &Config, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::from_config(config, StoreMode::Existing, KeyMode::LoadOrCreate)?;
    let store = &runtime.store;
    let accounts = store.accounts()?;
    let mut statuses = Vec::new();
    let pop3 = crate::pop3::server::Pop3Config::default()
        .with_on_delete(&config.pop3.on_delete, &config.pop3.on_delete_accounts);
    for account in accounts {
        let mut status = check(
            account,
            store,
            &runtime.key,
            runtime.entra.as_ref(),
            &runtime.graph,
        )
        .await;
        status.pop3_on_delete = match &pop3 {
            Ok(p) => p.on_delete_for(&status.login).describe().to_string(),
            Err(e) => format!("unusable setting: {e}"),
        };
        statuses.push(status);
    }
    let spool = store.spool_list(None, None)?;
    let queued = spool
        .iter()
        .filter(|e| {
            matches!(
                e.state,
                crate::store::SpoolState::Queued | crate::store::SpoolState::Sending
            )
        })
        .count();
    let now = unix(SystemTime::now());
    let oldest = spool
        .iter()
        .filter(|e| {
            matches!(
                e.state,
                crate::store::SpoolState::Queued | crate::store::SpoolState::Sending
            )
        })
        .map(|e| now - e.accepted_at)
        .max();
    let any_offline = statuses.iter().any(|s| s.state == "offline");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "accounts": statuses,
                "spool": {"queued": queued, "oldest_age_s": oldest},
            })
        );
    } else if statuses.is_empty() {
        println!("No accounts. Add one with `graphgate accounts add LOGIN`.");
    } else {
        for s in &statuses {
            print_human(s, now);
        }
        match oldest {
            Some(age) => println!("Spool: {queued} message(s) waiting, oldest {age} s."),
            None => println!("Spool: empty."),
        }
    }
    Ok(if any_offline || statuses.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_human(s: &AccountStatus, now: i64) {
    let state = if s.state == "online" {
        "ONLINE"
    } else {
        "OFFLINE"
    };
    println!("{}  {state}", s.login);
    println!("  mailbox   {}", s.mailbox);
    if let Some(exp) = s.token_expires_at {
        let left = exp - now;
        if left > 0 {
            println!("  token     valid for {} min more", left / 60);
        } else {
            println!("  token     access token expired (refreshed on next use)");
        }
    }
    if let (Some(unread), Some(total)) = (s.inbox_unread, s.inbox_total) {
        println!("  Inbox     {unread} unread / {total} total");
    }
    println!("  POP3 DELE {}", s.pop3_on_delete);
    if let Some(e) = &s.error {
        println!("  problem   {e}");
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn check(
    account: Account,
    store: &Store,
    key: &StoreKey,
    entra: Result<&Arc<EntraClient>, &crate::auth::AuthError>,
    graph: &GraphClient,
) -> AccountStatus {
    let mut status = AccountStatus {
        login: account.login.clone(),
        mailbox: account.mailbox.clone(),
        state: "offline",
        token_expires_at: None,
        inbox_unread: None,
        inbox_total: None,
        error: account.last_error.clone(),
        pop3_on_delete: String::new(),
    };
    let entra = match entra {
        Ok(e) => e.clone(),
        Err(e) => {
            status.error = Some(sentence(&e.to_string(), &e.remedy(&account.login)));
            return status;
        }
    };
    let id = account.id;
    let login = account.login.clone();
    // Known to be OFFLINE (a refused refresh, with its AADSTS reason): only
    // Entra's answer to a refresh changes that, not a Graph call made with
    // the access token cached from before (Entra honours it until it
    // expires, though the grant is gone).
    let known_offline = account.state == AccountState::Offline && account.last_error.is_some();
    let runtime = match AccountRuntime::open(account, store, key, entra, graph) {
        Ok(r) => r,
        Err(e) => {
            let text = sentence(&e.to_string(), &e.remedy(&login));
            let _ = store.set_account_state(id, AccountState::Offline, Some(&text));
            status.error = Some(text);
            return status;
        }
    };
    if known_offline && let Err(e) = runtime.tokens.check().await {
        if e.requires_login() {
            let text = sentence(&e.to_string(), &e.remedy(&login));
            let _ = store.set_account_state(id, AccountState::Offline, Some(&text));
            status.error = Some(text);
        }
        return status;
    }
    let folders = runtime.mailbox.list_folders().await;
    if let Ok(token) = runtime.tokens.access_token().await {
        status.token_expires_at = Some(unix(token.expires_at));
    }
    match folders {
        Ok(folders) => {
            if let Some(inbox) = folders
                .iter()
                .find(|f| f.well_known == Some(WellKnownFolder::Inbox))
            {
                status.inbox_unread = Some(inbox.unread);
                status.inbox_total = Some(inbox.total);
            }
            status.state = "online";
            status.error = None;
            let _ = store.set_account_state(id, AccountState::Online, None);
        }
        Err(e) => {
            let text = describe(&e, &login);
            if matches!(&e, GraphError::Auth(a) if a.requires_login()) || !e.is_transient() {
                let _ = store.set_account_state(id, AccountState::Offline, Some(&text));
            } else {
                // Transient trouble: the account is fine, Graph is not.
                status.state = "online";
            }
            status.error = Some(text);
        }
    }
    status
}

fn describe(error: &GraphError, login: &str) -> String {
    match error {
        GraphError::Auth(a) => sentence(&a.to_string(), &a.remedy(login)),
        other => sentence(&other.to_string(), other.remedy()),
    }
}

/// "What happened. What to do." without doubled full stops.
fn sentence(what: &str, remedy: &str) -> String {
    format!("{}. {remedy}", what.trim_end_matches('.'))
}
