//! `graphgate queue list|show|retry|drop`: the SMTP spool, for an admin.
//!
//! These commands change the spool's rows in the database; a running
//! gateway picks the change up within seconds (its worker reads the spool
//! every few seconds). Every change is a compare-and-set, so a command
//! racing the worker never undoes a delivery.

use std::process::ExitCode;

use clap::Subcommand;

use crate::store::{SpoolEntry, SpoolId, SpoolState, SpoolUpdate, Store, now_unix};

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

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
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

fn entry(store: &Store, id: i64) -> anyhow::Result<SpoolEntry> {
    store.spool_entry(SpoolId(id))?.ok_or_else(|| {
        anyhow::anyhow!("no message {id} in the spool; `graphgate queue list --all` lists them")
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
            let list: Vec<SpoolEntry> = store
                .spool_list(None, None)?
                .into_iter()
                .filter(|e| *all || matches!(e.state, SpoolState::Queued | SpoolState::Sending))
                .collect();
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
            let e = entry(store, *id)?;
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
            let targets: Vec<SpoolEntry> = match (id, all) {
                (Some(id), _) => vec![entry(store, *id)?],
                (None, true) => store.spool_list(Some(SpoolState::Queued), None)?,
                (None, false) => anyhow::bail!("name a message id, or pass --all"),
            };
            let mut moved = 0;
            for e in &targets {
                if !matches!(e.state, SpoolState::Queued | SpoolState::Sending) {
                    anyhow::bail!(
                        "message {} is {}: only waiting messages can be retried (its file is \
                         gone once it is delivered, bounced, rejected or dropped)",
                        e.id.0,
                        e.state.as_str()
                    );
                }
                if store.spool_update(
                    e.id,
                    e.state,
                    &SpoolUpdate {
                        next_attempt_at: Some(now),
                        ..Default::default()
                    },
                )? {
                    moved += 1;
                }
            }
            println!(
                "{moved} message(s) due now; a running gateway tries them within a few seconds."
            );
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Drop { id } => {
            let e = entry(store, *id)?;
            match e.state {
                SpoolState::Queued => {
                    if store.spool_update(
                        e.id,
                        SpoolState::Queued,
                        &SpoolUpdate {
                            state: Some(SpoolState::Dropped),
                            last_error: Some("dropped by an administrator"),
                            ..Default::default()
                        },
                    )? {
                        if !e.path.is_empty() {
                            let _ = std::fs::remove_file(&e.path);
                        }
                        println!("Message {id} dropped: it will not be delivered.");
                        Ok(ExitCode::SUCCESS)
                    } else {
                        anyhow::bail!(
                            "message {id} changed state meanwhile (a send began); run \
                             `graphgate queue show {id}` and try again"
                        )
                    }
                }
                SpoolState::Sending => anyhow::bail!(
                    "message {id} may be on its way to Microsoft 365 right now; dropping it \
                     could not stop that. Wait until `graphgate queue show {id}` no longer says \
                     sending, or stop the gateway first"
                ),
                other => anyhow::bail!(
                    "message {id} is already {}; nothing to drop",
                    other.as_str()
                ),
            }
        }
    }
}
