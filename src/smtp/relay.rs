//! The relay listener: mail without AUTH from listed networks.
//!
//! Devices that cannot authenticate (scanners, printers, NAS boxes, cron
//! through msmtp) connect to `relay.listen`. The client's address decides
//! everything: the most specific `[[relay.networks]]` entry containing it
//! names the one account the mail is sent as, its sender policy and
//! whether STARTTLS is required. A client in no listed network is refused
//! before the greeting (RFC 5321 §3.1 lets a server answer 554 instead of
//! 220), with a reply naming the setting. Recipients follow the rules of
//! authenticated submission, so this is never an open relay: every message
//! leaves as the network's account, through Graph.
//!
//! The `rewrite` sender policy changes the header block as it streams past
//! ([`HeaderRewriter`]): a From the account may not use becomes the
//! mailbox, with the original address in the display name and in Reply-To
//! (when the message has none), so replies still reach whoever sent it.

use std::net::IpAddr;

use crate::config::{RelayConfig, SenderPolicy};
use crate::mime::submission::{header_block_len, header_facts};
use crate::store::Store;

use super::session::{Authenticated, FromRewrite};

/// An address range: `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `192.168.1.0/24`, `2001:db8::/64`, or one address (a full prefix).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr {
            addr: canonical(addr),
            prefix: if addr.is_ipv4() || canonical(addr).is_ipv6() {
                prefix
            } else {
                // ::ffff:a.b.c.d/n counts as a.b.c.d/(n - 96).
                prefix.saturating_sub(96)
            },
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4
/// client) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// One allowed network, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayNetwork {
    pub cidr: Cidr,
    /// What the configuration said (a host name stays readable in logs).
    pub configured: String,
    pub account: String,
    pub sender_policy: SenderPolicy,
    pub require_tls: bool,
}

/// The relay's allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayNetworks {
    networks: Vec<RelayNetwork>,
}

/// A `[[relay.networks]]` entry that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "relay.networks entry {index} (cidr = {cidr:?}): not an address range such as \
         192.168.1.0/24 or 2001:db8::/64, and the host name does not resolve ({reason}); fix \
         the cidr value"
    )]
    Unresolvable {
        index: usize,
        cidr: String,
        reason: String,
    },
    #[error(
        "relay.networks entry {index} (cidr = {cidr:?}) has no account: set account = \
         \"<local login>\" (graphgate accounts list)"
    )]
    NoAccount { index: usize, cidr: String },
}

impl RelayNetworks {
    /// Parse every entry; host names are resolved now (each address they
    /// have becomes a network of one address).
    pub async fn resolve(config: &RelayConfig) -> Result<RelayNetworks, RelayError> {
        let mut networks = Vec::new();
        for (i, entry) in config.networks.iter().enumerate() {
            let index = i + 1;
            if entry.account.trim().is_empty() {
                return Err(RelayError::NoAccount {
                    index,
                    cidr: entry.cidr.clone(),
                });
            }
            let network = |cidr| RelayNetwork {
                cidr,
                configured: entry.cidr.clone(),
                account: entry.account.trim().to_string(),
                sender_policy: entry.sender_policy,
                require_tls: entry.require_tls,
            };
            if let Some(cidr) = Cidr::parse(&entry.cidr) {
                networks.push(network(cidr));
                continue;
            }
            let host = entry.cidr.trim();
            let unresolvable = |reason: String| RelayError::Unresolvable {
                index,
                cidr: entry.cidr.clone(),
                reason,
            };
            if host.is_empty() || host.contains('/') {
                return Err(unresolvable("not a host name".into()));
            }
            let addrs = tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| unresolvable(e.to_string()))?;
            let mut any = false;
            for addr in addrs {
                any = true;
                networks.push(network(Cidr::parse(&addr.ip().to_string()).ok_or_else(
                    || unresolvable(format!("resolved to {addr}, not an address")),
                )?));
            }
            if !any {
                return Err(unresolvable("no addresses".into()));
            }
        }
        Ok(RelayNetworks { networks })
    }

    /// The most specific network holding `ip`.
    pub fn find(&self, ip: IpAddr) -> Option<&RelayNetwork> {
        self.networks
            .iter()
            .filter(|n| n.cidr.contains(ip))
            .max_by_key(|n| n.cidr.prefix)
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn networks(&self) -> &[RelayNetwork] {
        &self.networks
    }
}

/// The allowlist a relay listener consults for each new client, replaced
/// whole when the configuration is reloaded (`SIGHUP` to `graphgate
/// serve`): host names are resolved again then, and a connection already
/// admitted keeps the network it was admitted by.
#[derive(Debug, Default)]
pub struct RelayAllowlist(std::sync::RwLock<std::sync::Arc<RelayNetworks>>);

impl RelayAllowlist {
    pub fn new(networks: RelayNetworks) -> RelayAllowlist {
        RelayAllowlist(std::sync::RwLock::new(std::sync::Arc::new(networks)))
    }

    /// The networks now.
    pub fn current(&self) -> std::sync::Arc<RelayNetworks> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Use `networks` for every client from now on.
    pub fn replace(&self, networks: RelayNetworks) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(networks);
    }
}

/// Who a relay client sends as, or the reply that refuses it (a whole
/// line, sent instead of the greeting).
pub(super) enum Admission {
    Admitted {
        account: Authenticated,
        policy: SenderPolicy,
        require_tls: bool,
    },
    Refused(String),
}

/// The account a client at `ip` sends as, read from the store now (so
/// that `graphgate accounts remove` holds for the next connection).
pub(super) fn admit(networks: &RelayNetworks, store: &Store, ip: IpAddr) -> Admission {
    let ip = canonical(ip);
    let Some(network) = networks.find(ip) else {
        return Admission::Refused(format!(
            "554 5.7.1 {ip} is not in relay.networks: this relay listener takes mail without \
             AUTH only from the networks listed there. Add a [[relay.networks]] entry (cidr = \
             \"{ip}\", account = \"<local login>\") and reload (kill -HUP the graphgate serve \
             process) or restart, or submit with AUTH to the \
             submission port (smtp.listen)\r\n"
        ));
    };
    let account = match store.account(&network.account) {
        Ok(Some(account)) => account,
        Ok(None) => {
            return Admission::Refused(format!(
                "554 5.7.1 relay.networks maps {} to the account {}, which does not exist: add \
                 it (graphgate accounts add) or fix the account value\r\n",
                network.configured, network.account
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "relay: cannot read the account");
            return Admission::Refused(
                "421 4.3.0 The account database is unavailable; try again later\r\n".into(),
            );
        }
    };
    let mut allowed = vec![account.mailbox.clone()];
    allowed.extend(account.aliases.iter().cloned());
    tracing::debug!(network = %network.cidr, account = %account.login, "relay client admitted");
    Admission::Admitted {
        account: Authenticated {
            login: account.login,
            allowed_senders: allowed,
        },
        policy: network.sender_policy,
        require_tls: network.require_tls,
    }
}

/// The sender policy of `login`'s authenticated submissions (`graphgate
/// accounts set LOGIN --sender-policy`): keep unless recorded otherwise.
pub(super) fn account_policy(store: &Store, login: &str) -> SenderPolicy {
    match store.sender_policy(login) {
        Ok(Some(text)) => text.parse().unwrap_or_else(|e| {
            tracing::warn!(account = login, "ignoring a stored sender policy: {e}");
            SenderPolicy::Keep
        }),
        Ok(None) => SenderPolicy::Keep,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the account's sender policy");
            SenderPolicy::Keep
        }
    }
}

/// The longest header block the rewriter holds in memory (per
/// connection, outside the listeners' inline budget); a longer one passes
/// unchanged, and the spool's From check then refuses a From the account
/// may not use (550), as without the policy.
pub const REWRITE_MAX_HEADER: usize = 256 * 1024;

/// Rewrites From in the header block of a message as its bytes stream
/// past (CRLF line ends: the session normalises them). Bytes are held only
/// until the header block ends, at most [`REWRITE_MAX_HEADER`].
#[derive(Debug)]
pub struct HeaderRewriter {
    rewrite: FromRewrite,
    head: Vec<u8>,
    done: bool,
}

impl HeaderRewriter {
    pub fn new(rewrite: FromRewrite) -> HeaderRewriter {
        HeaderRewriter {
            rewrite,
            head: Vec::new(),
            done: false,
        }
    }

    /// The bytes to pass on for `bytes` received (possibly none yet).
    pub fn feed(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        if self.done {
            return bytes;
        }
        self.head.extend_from_slice(&bytes);
        if let Some(len) = header_block_len(&self.head) {
            self.done = true;
            let mut out = rewrite_header(&self.head[..len], &self.rewrite);
            out.extend_from_slice(&self.head[len..]);
            self.head = Vec::new();
            return out;
        }
        if self.head.len() > REWRITE_MAX_HEADER {
            self.done = true;
            return std::mem::take(&mut self.head);
        }
        Vec::new()
    }

    /// The end of the data: a message that is all header.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        let head = std::mem::take(&mut self.head);
        rewrite_header(&head, &self.rewrite)
    }
}

/// The header block with From set to the mailbox when it names anything
/// else (and a Sender the account may not use removed); unchanged when
/// From is already allowed.
pub fn rewrite_header(head: &[u8], rewrite: &FromRewrite) -> Vec<u8> {
    let allowed = |a: &str| {
        rewrite
            .allowed
            .iter()
            .any(|x| !a.is_empty() && x.eq_ignore_ascii_case(a))
    };
    let facts = header_facts(head);
    let from_ok = !facts.from.is_empty() && facts.from.iter().all(|a| allowed(a));
    let sender_ok = facts.sender.iter().all(|a| allowed(a));
    if from_ok && sender_ok && facts.duplicate != Some("From") {
        return head.to_vec();
    }
    let original = facts
        .from
        .iter()
        .find(|a| !a.is_empty() && !allowed(a))
        .cloned()
        // `From: root` (cron): the envelope sender says more.
        .filter(|a| a.contains('@') || !rewrite.original.contains('@'))
        .unwrap_or_else(|| rewrite.original.to_ascii_lowercase());
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut rest = head;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        match fields.last_mut() {
            Some(last) if matches!(line.first(), Some(b' ' | b'\t')) => {
                // A folded continuation: part of the field before it.
                let start = last.as_ptr() as usize - head.as_ptr() as usize;
                *last = &head[start..start + last.len() + line.len()];
            }
            _ => fields.push(line),
        }
    }
    let name_is = |field: &[u8], name: &str| {
        field.iter().position(|&b| b == b':').is_some_and(|p| {
            field[..p]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        })
    };
    let has_reply_to = fields.iter().any(|f| name_is(f, "Reply-To"));
    let mailbox = rewrite.allowed.first().map_or("", String::as_str);
    let mut new_from = if original.is_empty() {
        format!("From: <{mailbox}>\r\n")
    } else {
        format!(
            "From: {} <{mailbox}>\r\n",
            display_name(&format!("{original} via graphgate"))
        )
    };
    if !has_reply_to && original.contains('@') {
        new_from.push_str(&format!("Reply-To: <{original}>\r\n"));
    }
    let mut out = Vec::with_capacity(head.len() + new_from.len());
    let mut placed = false;
    for field in fields {
        let blank = field == b"\r\n" || field == b"\n";
        if name_is(field, "From") || (name_is(field, "Sender") && !sender_ok) {
            if !placed {
                out.extend_from_slice(new_from.as_bytes());
                placed = true;
            }
            continue;
        }
        if blank && !placed {
            out.extend_from_slice(new_from.as_bytes());
            placed = true;
        }
        out.extend_from_slice(field);
    }
    if !placed {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(new_from.as_bytes());
    }
    out
}

/// A display name as a quoted string (RFC 5322 §3.2.4), or an encoded
/// word (RFC 2047) when it is not ASCII.
fn display_name(name: &str) -> String {
    if name.is_ascii() {
        let mut quoted = String::from("\"");
        for c in name.chars().filter(|c| !c.is_ascii_control()) {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        use base64::Engine;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite() -> FromRewrite {
        FromRewrite {
            allowed: vec!["alice@example.com".into(), "alias@example.com".into()],
            original: "root@myhost.local".into(),
        }
    }

    #[test]
    fn cidrs_match_their_addresses_only() {
        let net = Cidr::parse("192.168.1.0/24").unwrap();
        assert!(net.contains("192.168.1.77".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.1.77".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/64").unwrap();
        assert!(v6.contains("2001:db8::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        let one = Cidr::parse("10.0.0.7").unwrap();
        assert!(one.contains("10.0.0.7".parse().unwrap()));
        assert!(!one.contains("10.0.0.8".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("scanner.lan"), None);
    }

    #[test]
    fn a_foreign_from_becomes_the_mailbox_with_the_original_kept() {
        let head = b"Subject: disk full\r\nFrom: root@myhost.local (Cron Daemon)\r\n\r\n";
        let out = String::from_utf8(rewrite_header(head, &rewrite())).unwrap();
        assert_eq!(
            out,
            "Subject: disk full\r\nFrom: \"root@myhost.local via graphgate\" \
             <alice@example.com>\r\nReply-To: <root@myhost.local>\r\n\r\n"
        );
        // An allowed From is left alone.
        let ok = b"From: Alias <alias@example.com>\r\nSubject: x\r\n\r\n";
        assert_eq!(rewrite_header(ok, &rewrite()), ok.to_vec());
    }

    #[test]
    fn folded_from_and_reply_to_are_respected_and_missing_from_is_added() {
        let head = b"From: \"Scanner\"\r\n <scan@printer.lan>\r\nReply-To: me@x.org\r\n\r\n";
        let out = String::from_utf8(rewrite_header(head, &rewrite())).unwrap();
        assert_eq!(
            out,
            "From: \"scan@printer.lan via graphgate\" <alice@example.com>\r\n\
             Reply-To: me@x.org\r\n\r\n"
        );
        let none = b"Subject: x\r\n\r\n";
        let out = String::from_utf8(rewrite_header(none, &rewrite())).unwrap();
        assert!(out.starts_with("Subject: x\r\nFrom: \"root@myhost.local via graphgate\""));
        assert!(
            out.ends_with("Reply-To: <root@myhost.local>\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn the_rewriter_streams_across_chunks() {
        let mut r = HeaderRewriter::new(rewrite());
        assert!(r.feed(b"From: root\r\nSubj".to_vec()).is_empty());
        let out = r.feed(b"ect: x\r\n\r\nbody\r\n".to_vec());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("From: \"root@myhost.local via graphgate\" <alice@example.com>\r\n")
        );
        assert!(text.ends_with("Subject: x\r\n\r\nbody\r\n"), "{text}");
        assert_eq!(r.feed(b"more".to_vec()), b"more".to_vec());
        assert!(r.finish().is_empty());
        // A header block past the bound passes unchanged, not held.
        let mut r = HeaderRewriter::new(rewrite());
        let long = vec![b'x'; REWRITE_MAX_HEADER + 1];
        assert_eq!(r.feed(long.clone()), long);
    }
}
