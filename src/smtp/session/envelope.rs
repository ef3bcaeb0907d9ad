//! The envelope commands of a session: MAIL FROM, RCPT TO and DATA.
//!
//! - MAIL FROM: the sender must be one the account may use, and the
//!   account must be able to reach Microsoft 365 now: an account the
//!   gateway knows to be signed out (OFFLINE) gets `451 4.7.0` naming it
//!   and `graphgate login <account>`, before the client sends any data
//!   (RFC 5321 §4.2.5: 4yz, the client keeps the message and retries).
//! - RCPT TO: without the SMTPUTF8 parameter on MAIL FROM the envelope is
//!   ASCII (RFC 5321 §2.3.1, §4.1.2; RFC 6531 §3.3): a non-ASCII address —
//!   a raw 8-bit byte — is refused with `553 5.6.7`, the code RFC 6531
//!   §3.7.4.1 prescribes ("Non-ASCII addresses not permitted for that
//!   sender/recipient", RFC 5248's registry entry for X.6.7).
//! - DATA: there must be a recipient.

use std::sync::Arc;

use smtp_proto::request::receiver::DataReceiver;

use super::{Action, Envelope, Session, State, printable, reply};

/// The shell's view of whether an account can send now (the store's
/// ONLINE/OFFLINE, which survives restarts), asked at MAIL FROM.
pub trait AccountGate: Send + Sync {
    /// `Some(reason)` when mail from `login` must wait: the account is
    /// OFFLINE, and why (the AADSTS code and sentence when Entra gave one).
    fn offline(&self, login: &str) -> Option<String>;
}

impl Session {
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
        if !address.is_empty()
            && !auth
                .allowed_senders
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&address))
        {
            let text = format!(
                "{} may not send as {}: use the account's own address, or add it with \
                 `graphgate accounts add --alias` after granting Send As (or Send on Behalf) \
                 in the Exchange admin center",
                auth.login,
                printable(&address)
            );
            return self.error(550, "5.7.1", &text, out);
        }
        if let Some(reason) = self.gate.as_ref().and_then(|g| g.offline(&auth.login)) {
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
            mail_from: address,
            rcpt_to: Vec::new(),
            eight_bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8,
        });
        out.push(reply(250, "2.1.0", "Sender OK"));
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
