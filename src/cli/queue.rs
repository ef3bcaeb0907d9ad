//! `graphgate queue list|show|retry|drop`: the SMTP spool, for an admin.
//!
//! These commands change the spool's rows in the database; a running
//! gateway picks the change up within seconds (its worker reads the spool
//! every few seconds). The rules (compare-and-set, no drop while sending)
//! are [`crate::gateway::ops::queue`]'s, shared with the web console.

use std::process::ExitCode;

use clap::Subcommand;

use crate::gateway::ops::queue::{self as ops, age};
use crate::store::{SpoolEntry, SpoolState, Store, now_unix};

#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// Messages waiting to be delivered (with --all: delivered, bounced,
    /// rejected and dropped ones too).
    List {
        #[arg(long)]
        all: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Everything known about one message.
    Show {
        /// The queue id (the number in the SMTP reply "queued as N").
        id: i64,
    },
    /// Try a waiting message now instead of at its next scheduled attempt
    /// (or every waiting message with --all).
    Retry {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Give up on a waiting message: it is not delivered and no bounce is
    /// sent. Refused while a send of it may be in flight.
    Drop { id: i64 },
}

fn json(e: &SpoolEntry, login: &str) -> serde_json::Value {
    serde_json::json!({
        "id": e.id.0,
        "account": login,
        "state": e.state.as_str(),
        "mail_from": e.mail_from,
        "rcpt_to": e.rcpt_to,
        "size": e.size,
        "message_id": e.message_id,
        "attempts": e.attempts,
        "accepted_at": e.accepted_at,
        "next_attempt_at": e.next_attempt_at,
        "method": e.method.map(|m| m.as_str()),
        "last_error": e.last_error,
        "delivered_at": e.delivered_at,
    })
}

pub fn run(store: &Store, command: &QueueCommand) -> anyhow::Result<ExitCode> {
    let logins: std::collections::HashMap<_, _> = store
        .accounts()?
        .into_iter()
        .map(|a| (a.id, a.login))
        .collect();
    let login = |e: &SpoolEntry| {
        logins
            .get(&e.account)
            .cloned()
            .unwrap_or_else(|| format!("#{}", e.account.0))
    };
    let now = now_unix();
    match command {
        QueueCommand::List { all, json: as_json } => {
            let list = ops::list(store, *all)?;
            if *as_json {
                let out: Vec<_> = list.iter().map(|e| json(e, &login(e))).collect();
                println!("{}", serde_json::Value::Array(out));
            } else if list.is_empty() {
                println!(
                    "The spool is empty{}.",
                    if *all { "" } else { " (nothing waiting)" }
                );
            } else {
                println!(
                    "{:>6}  {:<9}  {:>6}  {:>8}  {:<24}  {:<28}  LAST ERROR",
                    "ID", "STATE", "AGE", "ATTEMPTS", "ACCOUNT", "TO"
                );
                for e in &list {
                    let to = match e.rcpt_to.len() {
                        0 => String::new(),
                        1 => e.rcpt_to[0].clone(),
                        n => format!("{} (+{})", e.rcpt_to[0], n - 1),
                    };
                    println!(
                        "{:>6}  {:<9}  {:>6}  {:>8}  {:<24}  {:<28}  {}",
                        e.id.0,
                        e.state.as_str(),
                        age(now - e.accepted_at),
                        e.attempts,
                        login(e),
                        to,
                        e.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Show { id } => {
            let e = ops::entry(store, *id)?;
            println!("Message {} ({})", e.id.0, e.state.as_str());
            println!("  account      {}", login(&e));
            println!(
                "  from         {}",
                if e.mail_from.is_empty() {
                    "<> (null sender)"
                } else {
                    &e.mail_from
                }
            );
            println!("  to           {}", e.rcpt_to.join(", "));
            println!("  size         {} bytes", e.size);
            if let Some(mid) = &e.message_id {
                println!("  message-id   <{mid}>");
            }
            println!("  accepted     {} ago", age(now - e.accepted_at));
            println!("  attempts     {}", e.attempts);
            if let Some(m) = &e.method {
                println!("  method       {m}");
            }
            match e.state {
                SpoolState::Queued => {
                    let wait = e.next_attempt_at - now;
                    if wait > 0 {
                        println!("  next try     in {}", age(wait));
                    } else {
                        println!("  next try     now");
                    }
                }
                SpoolState::Sending => {
                    println!("  next step    being sent, or being checked after an interruption")
                }
                _ => {}
            }
            if let Some(at) = e.delivered_at {
                println!("  delivered    {} ago", age(now - at));
            }
            if let Some(err) = &e.last_error {
                println!("  last error   {err}");
            }
            if !e.path.is_empty() {
                // Issue 18: never print a path that no longer exists.
                let waiting = matches!(e.state, SpoolState::Queued | SpoolState::Sending);
                if std::path::Path::new(&e.path).exists() {
                    println!("  file         {}", e.path);
                } else if waiting {
                    println!(
                        "  file         MISSING ({}): the message cannot be sent; restore the \
                         file from a backup, or give up on it with `graphgate queue drop {}`",
                        e.path, e.id.0
                    );
                } else {
                    println!(
                        "  file         removed: the message is {}, so only this record stays",
                        e.state.as_str()
                    );
                }
            } else if e.inline {
                println!("  bytes        in the spool database");
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Retry { id, all } => {
            if id.is_none() && !*all {
                anyhow::bail!("name a message id, or pass --all");
            }
            let moved = ops::retry(store, *id)?;
            println!(
                "{moved} message(s) due now; a running gateway tries them within a few seconds."
            );
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Drop { id } => {
            ops::drop_message(store, *id)?;
            println!("Message {id} dropped: it will not be delivered.");
            Ok(ExitCode::SUCCESS)
        }
    }
}
