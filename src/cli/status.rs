//! `graphgate status`: the "ping" of every account — ONLINE or OFFLINE,
//! token expiry, the mailbox it reaches and how many messages wait in its
//! Inbox, and the last error with its remedy. `--json` for scripts; the
//! exit status is non-zero when any account is OFFLINE.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;

use crate::config::Config;
use crate::gateway::ops::status::{AccountStatus, check, unix};
use crate::gateway::{KeyMode, Runtime, StoreMode};

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Machine-readable output (one JSON object).
    #[arg(long)]
    json: bool,
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
    let (queued, oldest) = crate::gateway::ops::queue::waiting_summary(store)?;
    let now = unix(SystemTime::now());
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
