//! The envelope commands of a session: MAIL FROM, RCPT TO and DATA.
//!
//! - MAIL FROM: the sender must be one the account may use, and the
//!   account must be able to reach Microsoft 365 now: an account the
//!   gateway knows to be signed out (OFFLINE) gets `451 4.7.0` naming it
//!   and `graphgate login <account>`, before the client sends any data
//!   (RFC 5321 §4.2.5: 4yz, the client keeps the message and retries) —
//!   or, with `smtp.queue_while_signed_out`, 250 saying the message will
//!   wait in the spool for that sign-in.
//! - RCPT TO: without the SMTPUTF8 parameter on MAIL FROM the envelope is
//!   ASCII (RFC 5321 §2.3.1, §4.1.2; RFC 6531 §3.3): a non-ASCII address —
//!   a raw 8-bit byte — is refused with `553 5.6.7`, the code RFC 6531
//!   §3.7.4.1 prescribes ("Non-ASCII addresses not permitted for that
//!   sender/recipient", RFC 5248's registry entry for X.6.7).
//! - DATA: there must be a recipient.

use std::sync::Arc;

use smtp_proto::request::receiver::DataReceiver;

use super::{Action, Authenticated, Envelope, FromRewrite, Session, State, printable, reply};
use crate::config::SenderPolicy;

/// The shell's view of whether an account can send now (the store's
/// ONLINE/OFFLINE, which survives restarts), asked at MAIL FROM.
pub trait AccountGate: Send + Sync {
    /// `Some(reason)` when mail from `login` must wait: the account is
    /// OFFLINE, and why (the AADSTS code and sentence when Entra gave one).
    fn offline(&self, login: &str) -> Option<String>;
}

impl Session {
    /// A relay session (no AUTH): the client's network sends as
    /// `account`, with its sender policy, STARTTLS first if `require_tls`.
    pub fn with_relay(
        mut self,
        account: Authenticated,
        policy: SenderPolicy,
        require_tls: bool,
    ) -> Session {
        self.auth = Some(account.clone());
        self.relay = Some(account);
        self.sender_policy = policy;
        self.require_tls = require_tls;
        self
    }

    /// The sender policy of the account signing in with AUTH (before
    /// [`Session::auth_result`]; a relay session keeps its network's).
    pub fn set_sender_policy(&mut self, policy: SenderPolicy) {
        if self.relay.is_none() {
            self.sender_policy = policy;
        }
    }

    /// Whether this is a relay session (signed in by network).
    pub fn is_relay(&self) -> bool {
        self.relay.is_some()
    }

    /// Ask `gate` at each MAIL FROM whether the account can send.
    pub fn with_gate(mut self, gate: Arc<dyn AccountGate>) -> Session {
        self.gate = Some(gate);
        self
    }

    pub(super) fn handle_mail(
        &mut self,
        from: smtp_proto::MailFrom<String>,
        out: &mut Vec<Action>,
    ) {
        if !self.ehlo {
            return self.error(503, "5.5.1", "Send EHLO first", out);
        }
        if self.require_tls && !self.tls_active {
            // RFC 3207 §4: the reply for a command refused until TLS.
            return self.error(
                530,
                "5.7.0",
                "Must issue a STARTTLS command first (relay.networks require_tls = true for \
                 this network)",
                out,
            );
        }
        let Some(auth) = &self.auth else {
            return self.error(
                530,
                "5.7.0",
                "Authentication required: graphgate only relays for its local accounts (AUTH PLAIN or LOGIN)",
                out,
            );
        };
        if self.envelope.is_some() {
            return self.error(503, "5.5.1", "Nested MAIL command; send RSET first", out);
        }
        if from.size > self.config.max_message_size {
            return self.error(
                552,
                "5.3.4",
                &format!(
                    "Message size {} exceeds the limit of {} octets",
                    from.size, self.config.max_message_size
                ),
                out,
            );
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        let address = from.address;
        if let Some(text) = envelope_charset(&address, smtputf8, "sender") {
            return self.error(553, "5.6.7", &text, out);
        }
        let mut rewrite = None;
        let mut mail_from = address;
        match sender_check(&self.sender_policy, &auth.allowed_senders, &mail_from) {
            SenderCheck::Allowed => {}
            SenderCheck::Rewrite => {
                // The envelope too: Graph sends as the mailbox, and a
                // bounce goes to it. The null sender stays null.
                let mailbox = auth.allowed_senders.first().cloned().unwrap_or_default();
                let original = std::mem::replace(&mut mail_from, mailbox);
                rewrite = Some(original);
            }
            SenderCheck::Refused => {
                let text = refusal(&self.sender_policy, self.relay.is_some(), auth, &mail_from);
                return self.error(550, "5.7.1", &text, out);
            }
        }
        let rewrite = (self.sender_policy == SenderPolicy::Rewrite).then(|| FromRewrite {
            allowed: auth.allowed_senders.clone(),
            original: rewrite.unwrap_or_else(|| mail_from.clone()),
        });
        let offline = self.gate.as_ref().and_then(|g| g.offline(&auth.login));
        let mut sender_ok = "Sender OK".to_string();
        if let Some(reason) = offline
            .as_ref()
            .filter(|_| self.config.queue_while_signed_out)
        {
            // smtp.queue_while_signed_out: take it into the spool, and
            // say where it waits (the 250 after DATA says so again).
            let login = printable(&auth.login);
            sender_ok = format!(
                "Sender OK; {login} is signed out of Microsoft 365 (OFFLINE), so the message \
                 will wait in the queue until `graphgate login {login}` (smtp.queue_while_signed_out). \
                 Reason: {}",
                printable(reason)
            );
        } else if let Some(reason) = offline {
            // Not a client error: nothing counts against max_errors.
            let login = printable(&auth.login);
            out.push(reply(
                451,
                "4.7.0",
                &format!(
                    "{login} is signed out of Microsoft 365 (OFFLINE), so its mail cannot be \
                     sent: run `graphgate login {login}`, then send again. Reason: {}",
                    printable(&reason)
                ),
            ));
            return;
        }
        self.envelope = Some(Envelope {
            mail_from,
            rcpt_to: Vec::new(),
            eight_bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8,
            rewrite,
        });
        out.push(reply(250, "2.1.0", &sender_ok));
    }

    pub(super) fn handle_rcpt(&mut self, address: &str, out: &mut Vec<Action>) {
        let max = self.config.max_recipients;
        let Some(envelope) = &mut self.envelope else {
            return self.error(503, "5.5.1", "Send MAIL FROM first", out);
        };
        if let Some(text) = envelope_charset(address, envelope.smtputf8, "recipient") {
            return self.error(553, "5.6.7", &text, out);
        }
        if address.is_empty() || !address.contains('@') {
            return self.error(
                501,
                "5.1.3",
                "A recipient needs a full address (user@domain)",
                out,
            );
        }
        if envelope.rcpt_to.len() >= max {
            out.push(reply(
                452,
                "4.5.3",
                &format!("Too many recipients (limit {max}); send the rest in another message"),
            ));
            return;
        }
        if !envelope
            .rcpt_to
            .iter()
            .any(|r| r.eq_ignore_ascii_case(address))
        {
            envelope.rcpt_to.push(address.to_string());
        }
        out.push(reply(250, "2.1.5", "Recipient OK"));
    }

    pub(super) fn handle_data(&mut self, out: &mut Vec<Action>) {
        let Some(envelope) = &self.envelope else {
            return self.error(503, "5.5.1", "Send MAIL FROM and RCPT TO first", out);
        };
        if envelope.rcpt_to.is_empty() {
            return self.error(554, "5.5.1", "No valid recipients", out);
        }
        out.push(Action::MessageStart(envelope.clone()));
        out.push(reply(354, "", "End data with <CR><LF>.<CR><LF>"));
        self.state = State::Data;
        self.data = DataReceiver::new();
        // The receiver recognises "." lines only after a CRLF; the first
        // line of the data follows one (the DATA command's), so prime it.
        let mut primer = Vec::new();
        self.data.ingest(&mut b"\r\n".iter(), &mut primer);
        self.data_buf.clear();
        self.data_size = 0;
        self.data_too_big = false;
        self.data_last_cr = false;
    }
}

/// What a sender policy says about an envelope sender.
enum SenderCheck {
    Allowed,
    Rewrite,
    Refused,
}

fn sender_check(policy: &SenderPolicy, allowed: &[String], address: &str) -> SenderCheck {
    // Null sender (bounces, RFC 5321 §4.5.5): unchanged by every policy.
    if address.is_empty() {
        return SenderCheck::Allowed;
    }
    let is = |a: &String| a.eq_ignore_ascii_case(address);
    match policy {
        SenderPolicy::Keep if allowed.iter().any(is) => SenderCheck::Allowed,
        SenderPolicy::Reject if allowed.first().is_some_and(is) => SenderCheck::Allowed,
        SenderPolicy::Rewrite if allowed.iter().any(is) => SenderCheck::Allowed,
        SenderPolicy::Rewrite => SenderCheck::Rewrite,
        SenderPolicy::Keep | SenderPolicy::Reject => SenderCheck::Refused,
    }
}

/// The 550 for a sender the account may not use, with the fix that
/// applies: Send As only helps for an address of the tenant's own domains
/// (a domain none of the account's addresses has, such as a host name of
/// cron's `root@myhost.local`, cannot get it).
fn refusal(policy: &SenderPolicy, relay: bool, auth: &Authenticated, address: &str) -> String {
    let address = printable(address);
    let login = printable(&auth.login);
    let mailbox = auth.allowed_senders.first().map_or("", String::as_str);
    let domain_of = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
    let ours = domain_of(&address).is_some_and(|d| {
        auth.allowed_senders
            .iter()
            .any(|a| domain_of(a).as_deref() == Some(d.as_str()))
    });
    let rewrite = if relay {
        "set sender_policy = \"rewrite\" on its relay.networks entry (From becomes the \
         mailbox, the original address goes into Reply-To)"
            .to_string()
    } else {
        format!(
            "let graphgate send it as {mailbox} with the original address in Reply-To: \
             `graphgate accounts set {login} --sender-policy rewrite`"
        )
    };
    match policy {
        SenderPolicy::Reject => format!(
            "{login} may send only as its mailbox {mailbox} (sender_policy = \"reject\"), not \
             as {address}: use {mailbox}, or {rewrite}"
        ),
        _ if ours => format!(
            "{login} may not send as {address}: use {mailbox} or a configured alias, add this \
             one with `graphgate accounts set {login} --alias {address}` after granting Send As \
             (or Send on Behalf) on it in the Exchange admin center, or {rewrite}"
        ),
        _ => format!(
            "{login} may not send as {address}: it is not an address of {login}'s domains, so \
             Send As cannot be granted for it; use {mailbox}, or {rewrite}"
        ),
    }
}

/// Why an envelope address cannot be used with the SMTPUTF8 parameter as
/// given, if it cannot (the 553 5.6.7 sentence). smtp-proto passes bytes
/// that are not UTF-8 on as U+FFFD, so a raw 8-bit byte shows as that.
fn envelope_charset(address: &str, smtputf8: bool, role: &str) -> Option<String> {
    if address.is_ascii() {
        return None;
    }
    if !smtputf8 {
        return Some(format!(
            "The {role} address {} is not ASCII, which the envelope must be without SMTPUTF8 \
             (RFC 5321 §2.3.1, RFC 6531 §3.3): give SMTPUTF8 on MAIL FROM and send the \
             address as UTF-8, or use an ASCII address",
            printable(address)
        ));
    }
    address.contains('\u{FFFD}').then(|| {
        format!(
            "The {role} address {} is not valid UTF-8, which SMTPUTF8 requires (RFC 6531 \
             §3.3): send it encoded as UTF-8",
            printable(address)
        )
    })
}
