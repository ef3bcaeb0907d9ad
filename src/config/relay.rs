//! The `[relay]` section: a listener that takes mail *without* AUTH from
//! listed networks (scanners, printers, NAS boxes, cron on other hosts),
//! each network sending as one local account, and the sender policy that
//! decides what happens to a From address the account may not use.
//!
//! ```toml
//! [relay]
//! listen = "0.0.0.0:2526"
//!
//! [[relay.networks]]
//! cidr = "192.168.10.0/24"        # or "2001:db8::/64", "10.0.0.7", "scanner.lan"
//! account = "scanner@contoso.com"  # the local account (graphgate accounts list)
//! sender_policy = "rewrite"        # keep | rewrite | reject
//! require_tls = false              # old printers cannot do STARTTLS
//! ```

use serde::{Deserialize, Serialize};

/// What happens to an envelope sender or From address that is not the
/// account's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderPolicy {
    /// As written; it must be the mailbox or a configured alias (the rule
    /// of authenticated submission), otherwise 550.
    Keep,
    /// Any sender is accepted and From becomes the mailbox; the original
    /// address goes into Reply-To (when there is none) and into the display
    /// name: `"root@host via graphgate" <scanner@contoso.com>`.
    #[default]
    Rewrite,
    /// Only the mailbox itself: aliases are refused too (550).
    Reject,
}

impl SenderPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SenderPolicy::Keep => "keep",
            SenderPolicy::Rewrite => "rewrite",
            SenderPolicy::Reject => "reject",
        }
    }
}

impl std::str::FromStr for SenderPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "keep" => Ok(SenderPolicy::Keep),
            "rewrite" => Ok(SenderPolicy::Rewrite),
            "reject" => Ok(SenderPolicy::Reject),
            _ => Err(format!(
                "{s:?} is not a sender policy: use keep, rewrite or reject"
            )),
        }
    }
}

/// The relay listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Address of the relay listener; empty = off.
    pub listen: String,
    /// The networks it accepts mail from, each sending as one account.
    pub networks: Vec<RelayNetworkConfig>,
}

/// One `[[relay.networks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayNetworkConfig {
    /// `192.168.1.0/24`, `2001:db8::/64`, one address, or a host name
    /// (resolved when the gateway starts; every address it has counts).
    pub cidr: String,
    /// The local account (login) the network's mail is sent as.
    pub account: String,
    #[serde(default)]
    pub sender_policy: SenderPolicy,
    /// Refuse MAIL FROM until the client has used STARTTLS.
    #[serde(default)]
    pub require_tls: bool,
}
