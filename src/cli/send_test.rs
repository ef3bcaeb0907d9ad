//! `graphgate send-test`: prints each step of [`crate::gateway::send_test`]
//! as it happens.

use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::gateway::doctor::Finding;
use crate::gateway::send_test::{SendTest, steps};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// The local account to send from (its login or mailbox address).
    #[arg(long, value_name = "ACCOUNT")]
    from: String,
    /// The recipient address.
    #[arg(long, value_name = "ADDRESS")]
    to: String,
    /// Subject (a unique token is appended to it).
    #[arg(long, value_name = "TEXT")]
    subject: Option<String>,
    /// Wait until the message can be read back through Graph: in the
    /// recipient's Inbox when the recipient is an account of this gateway,
    /// else in the sender's Sent Items.
    #[arg(long)]
    read_back: bool,
    /// Seconds to wait for delivery (and the read-back) in all.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
}

impl SendTestArgs {
    fn test(&self) -> SendTest {
        SendTest {
            from: self.from.clone(),
            to: self.to.clone(),
            subject: self.subject.clone(),
            read_back: self.read_back,
            timeout: self.timeout,
        }
    }
}

pub async fn run(config: &Config, store: &Store, args: &SendTestArgs) -> anyhow::Result<ExitCode> {
    let mut print = |finding: &Finding| println!("{}", finding.line());
    if steps(config, store, &args.test(), &mut print).await {
        println!("\nsend-test passed.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nsend-test FAILED: see the line above for the reason and its fix.");
        Ok(ExitCode::FAILURE)
    }
}
