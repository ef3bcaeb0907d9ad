//! One SMTP submission session as a sans-I/O state machine.
//!
//! Bytes from the client go in with [`Session::ingest`]; what the shell must
//! do comes out as [`Action`]s, in order: write a reply, check a password,
//! stream message data to the spool, upgrade to TLS, close. Where the session
//! needs an answer (a password check, the outcome of a submission, a TLS
//! handshake) it stops reading and keeps the client's pipelined bytes until
//! the shell calls [`Session::auth_result`], [`Session::submit_result`] or
//! [`Session::tls_started`]. No socket is touched here, so every transcript
//! can be tested in memory and fuzzed.
//!
//! Standards: RFC 5321 (SMTP), RFC 6409 (submission), RFC 4954 (AUTH, with
//! the PLAIN mechanism of RFC 4616 and the LOGIN mechanism of
//! draft-murchison-sasl-login), RFC 3207 (STARTTLS), RFC 1870 (SIZE),
//! RFC 2920 (PIPELINING), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8),
//! RFC 2034 / RFC 3463 (enhanced status codes).
//!
//! Parsing of commands is smtp-proto's (lines bounded to 4096 octets);
//! dot-unstuffing of DATA too. Bare LF inside message data is normalised to
//! CRLF here, since Graph expects RFC 5322 line ends.

use base64::Engine;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ProtoError, Request};

use crate::secret::Secret;

mod auth;
mod envelope;

pub use envelope::AccountGate;

/// Limits and facts about the connection, fixed when it is accepted.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    /// SIZE limit in octets (Exchange Online's default is 35 MB).
    pub max_message_size: usize,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Commands per connection before it is closed.
    pub max_commands: usize,
    /// Bad commands per connection before it is closed.
    pub max_errors: usize,
    /// STARTTLS can be offered (a certificate is configured).
    pub tls_available: bool,
    /// The connection is already encrypted (implicit TLS).
    pub tls_active: bool,
    /// AUTH may be used without TLS (loopback clients, when configured).
    pub plaintext_auth_allowed: bool,
    /// A signed-out account's mail goes into the spool instead of 451
    /// (`smtp.queue_while_signed_out`).
    pub queue_while_signed_out: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 500,
            max_commands: 10_000,
            max_errors: 20,
            tls_available: false,
            tls_active: false,
            plaintext_auth_allowed: true,
            queue_while_signed_out: false,
        }
    }
}

// What a session hands over with a complete message, and the answer it
// gets: the spool's contract, defined there (`spool::submit`).
pub use crate::spool::submit::{Authenticated, Envelope, FromRewrite, SubmitOutcome};

/// What the shell must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the client.
    Reply(Vec<u8>),
    /// Check this login and password, then call [`Session::auth_result`].
    Authenticate {
        login: String,
        password: Secret<String>,
    },
    /// A message begins: open a spool file for it.
    MessageStart(Envelope),
    /// Message bytes (unstuffed, CRLF line ends), in order.
    MessageData(Vec<u8>),
    /// The message is complete: make it durable, submit it, then call
    /// [`Session::submit_result`].
    MessageEnd(Envelope),
    /// Discard what was written for the current message.
    MessageAbort,
    /// Start a TLS handshake, then call [`Session::tls_started`].
    StartTls,
    /// Close the connection (after writing any reply before this).
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading commands.
    Command,
    /// AUTH PLAIN sent `334 `; waiting for the response line.
    AuthPlain,
    /// AUTH LOGIN asked for the user name.
    AuthLoginUser,
    /// AUTH LOGIN asked for the password.
    AuthLoginPassword {
        login: String,
    },
    /// Waiting for [`Session::auth_result`].
    AwaitAuth,
    /// Reading message data after `354`.
    Data,
    /// Waiting for [`Session::submit_result`].
    AwaitSubmit,
    /// Waiting for [`Session::tls_started`].
    AwaitTls,
    Closed,
}

/// Longest base64 SASL response line accepted.
const MAX_AUTH_LINE: usize = 4096;
/// Message data beyond the limit is discarded until the end of DATA, but
/// past this many octets more the connection is closed.
const MAX_DISCARD_BEYOND_LIMIT: usize = 64 * 1024 * 1024;
/// Data is handed to the shell in chunks of at most this size.
const DATA_CHUNK: usize = 64 * 1024;

pub struct Session {
    config: SessionConfig,
    state: State,
    greeted: bool,
    ehlo: bool,
    tls_active: bool,
    auth: Option<Authenticated>,
    envelope: Option<Envelope>,
    requests: RequestReceiver,
    data: DataReceiver,
    /// Bytes received while waiting for the shell.
    held: Vec<u8>,
    /// Partial line of a SASL exchange.
    line: Vec<u8>,
    data_buf: Vec<u8>,
    data_size: usize,
    data_too_big: bool,
    /// The last data byte was a CR (for bare-LF normalisation across chunks).
    data_last_cr: bool,
    commands: usize,
    errors: usize,
    /// Asked at MAIL FROM whether the account can send now.
    gate: Option<std::sync::Arc<dyn AccountGate>>,
    /// A relay session: the account its network sends as, kept across
    /// STARTTLS (which resets a password sign-in, RFC 3207 §4.2).
    relay: Option<Authenticated>,
    /// MAIL FROM waits for STARTTLS (a relay network's `require_tls`).
    require_tls: bool,
    /// What to do with a sender the account may not use.
    sender_policy: crate::config::SenderPolicy,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        let tls_active = config.tls_active;
        Session {
            config,
            state: State::Command,
            greeted: false,
            ehlo: false,
            tls_active,
            auth: None,
            envelope: None,
            requests: RequestReceiver::default(),
            data: DataReceiver::new(),
            held: Vec::new(),
            line: Vec::new(),
            data_buf: Vec::new(),
            data_size: 0,
            data_too_big: false,
            data_last_cr: false,
            commands: 0,
            errors: 0,
            gate: None,
            relay: None,
            require_tls: false,
            sender_policy: crate::config::SenderPolicy::Keep,
        }
    }

    /// The `220` greeting, written once when the connection opens.
    pub fn greeting(&mut self) -> Action {
        self.greeted = true;
        reply(
            220,
            "",
            &format!(
                "{} ESMTP graphgate ready (submission to Microsoft 365)",
                self.config.hostname
            ),
        )
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The signed-in account, if any.
    pub fn authenticated(&self) -> Option<&Authenticated> {
        self.auth.as_ref()
    }

    /// Whether the session is inside a message (for graceful shutdown:
    /// finish the message in flight).
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Data | State::AwaitSubmit)
    }

    /// Feed bytes from the client.
    pub fn ingest(&mut self, input: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        if self.waiting() {
            self.hold(input, &mut out);
            return out;
        }
        self.process(input, &mut out);
        out
    }

    /// The shell checked the password of the last [`Action::Authenticate`].
    pub fn auth_result(&mut self, account: Option<Authenticated>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::AwaitAuth {
            return out;
        }
        self.state = State::Command;
        match account {
            Some(account) => {
                self.auth = Some(account);
                out.push(reply(235, "2.7.0", "Authentication successful"));
            }
            None => {
                self.errors += 1;
                out.push(reply(
                    535,
                    "5.7.8",
                    "Authentication credentials invalid: check the local login and password \
                     (graphgate accounts list)",
                ));
            }
        }
        self.resume(&mut out);
        out
    }

    /// The shell refused the AUTH unchecked after failed logins; `text`
    /// says why, for how long and the fix (RFC 4954 §6: 454 4.7.0,
    /// temporary).
    pub fn auth_refused(&mut self, text: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::AwaitAuth {
            return out;
        }
        self.state = State::Command;
        self.errors += 1;
        out.push(reply(454, "4.7.0", text));
        self.resume(&mut out);
        out
    }

    /// The shell handled the last [`Action::MessageEnd`].
    pub fn submit_result(&mut self, outcome: SubmitOutcome) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::AwaitSubmit {
            return out;
        }
        self.state = State::Command;
        self.envelope = None;
        out.push(match outcome {
            SubmitOutcome::Accepted { queue_id } => {
                reply(250, "2.0.0", &format!("OK: queued as {queue_id}"))
            }
            SubmitOutcome::Rejected {
                code,
                enhanced,
                text,
            } => reply(code, &enhanced, &text),
            SubmitOutcome::TryLater { text } => reply(451, "4.3.0", &text),
        });
        self.resume(&mut out);
        out
    }

    /// The TLS handshake after STARTTLS finished. RFC 3207 §4.2: the
    /// session starts over (no EHLO, no authentication), and anything the
    /// client pipelined before the handshake was discarded.
    pub fn tls_started(&mut self) -> Vec<Action> {
        let out = Vec::new();
        if self.state != State::AwaitTls {
            return out;
        }
        self.state = State::Command;
        self.tls_active = true;
        self.ehlo = false;
        self.auth = self.relay.clone();
        self.envelope = None;
        self.held.clear();
        self.requests = RequestReceiver::default();
        out
    }

    fn waiting(&self) -> bool {
        matches!(
            self.state,
            State::AwaitAuth | State::AwaitSubmit | State::AwaitTls
        )
    }

    fn hold(&mut self, input: &[u8], out: &mut Vec<Action>) {
        if self.state == State::AwaitTls {
            // Plaintext bytes after STARTTLS are never carried over into the
            // TLS session (the command-injection attack of CVE-2011-0411).
            return;
        }
        if self.held.len() + input.len() > MAX_AUTH_LINE * 16 {
            out.push(reply(421, "4.7.0", "Too much pipelined input; closing"));
            self.close(out);
            return;
        }
        self.held.extend_from_slice(input);
    }

    fn resume(&mut self, out: &mut Vec<Action>) {
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.process(&held, out);
        }
    }

    fn process(&mut self, input: &[u8], out: &mut Vec<Action>) {
        let mut bytes = input.iter();
        loop {
            if self.state == State::Closed {
                return;
            }
            if self.waiting() {
                let rest = bytes.as_slice().to_vec();
                self.hold(&rest, out);
                return;
            }
            if bytes.as_slice().is_empty() {
                return;
            }
            match self.state {
                State::Data => self.ingest_data(&mut bytes, out),
                State::AuthPlain | State::AuthLoginUser | State::AuthLoginPassword { .. } => {
                    self.ingest_auth_line(&mut bytes, out)
                }
                _ => self.ingest_command(&mut bytes, out),
            }
        }
    }

    fn ingest_command(&mut self, bytes: &mut std::slice::Iter<'_, u8>, out: &mut Vec<Action>) {
        let result = self.requests.ingest(bytes).map(Request::into_owned);
        match result {
            Ok(request) => {
                if crate::wire::enabled() {
                    tracing::trace!(target: crate::wire::TARGET, "C: {}", wire_request(&request));
                }
                self.commands += 1;
                if self.commands > self.config.max_commands {
                    out.push(reply(421, "4.7.0", "Too many commands; closing"));
                    self.close(out);
                    return;
                }
                self.handle(request, out);
            }
            Err(ProtoError::NeedsMoreData { .. }) => {
                // The receiver keeps the partial line; all input is consumed.
                *bytes = [].iter();
            }
            Err(e) => self.protocol_error(e, out),
        }
    }

    fn protocol_error(&mut self, error: ProtoError, out: &mut Vec<Action>) {
        let (code, enhanced, text) = match error {
            ProtoError::UnknownCommand => {
                (500, "5.5.2", "Syntax error, command unrecognized".into())
            }
            ProtoError::InvalidSenderAddress => (501, "5.1.7", "Bad sender address syntax".into()),
            ProtoError::InvalidRecipientAddress => {
                (501, "5.1.3", "Bad recipient address syntax".into())
            }
            ProtoError::SyntaxError { syntax } => (501, "5.5.4", format!("Syntax: {syntax}")),
            ProtoError::InvalidParameter { param } => {
                (501, "5.5.4", format!("Invalid value for parameter {param}"))
            }
            ProtoError::UnsupportedParameter { param } => (
                555,
                "5.5.4",
                format!("Unsupported parameter {}", printable(&param)),
            ),
            ProtoError::ResponseTooLong => {
                (500, "5.5.2", "Line too long (limit 4096 octets)".into())
            }
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                (500, "5.5.2", "Syntax error".into())
            }
        };
        self.error(code, enhanced, &text, out);
    }

    fn error(&mut self, code: u16, enhanced: &str, text: &str, out: &mut Vec<Action>) {
        self.errors += 1;
        out.push(reply(code, enhanced, text));
        if self.errors >= self.config.max_errors {
            out.push(reply(
                421,
                "4.7.0",
                "Too many errors; closing the connection",
            ));
            self.close(out);
        }
    }

    fn close(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Data {
            out.push(Action::MessageAbort);
        }
        self.state = State::Closed;
        out.push(Action::Close);
    }

    fn auth_allowed(&self) -> bool {
        self.tls_active || self.config.plaintext_auth_allowed
    }

    fn handle(&mut self, request: Request<String>, out: &mut Vec<Action>) {
        match request {
            Request::Ehlo { host } => self.handle_ehlo(&host, out),
            Request::Helo { host } => {
                self.ehlo = true;
                self.envelope = None;
                out.push(reply(
                    250,
                    "",
                    &format!("{} greets {}", self.config.hostname, printable(&host)),
                ));
            }
            Request::Lhlo { .. } => self.error(500, "5.5.1", "LHLO is for LMTP; use EHLO", out),
            Request::StartTls => self.handle_starttls(out),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.handle_auth(mechanism, &initial_response, out),
            Request::Mail { from } => self.handle_mail(from, out),
            Request::Rcpt { to } => self.handle_rcpt(&to.address, out),
            Request::Data => self.handle_data(out),
            Request::Bdat { .. } => self.error(
                502,
                "5.5.1",
                "BDAT (CHUNKING) is not supported; use DATA",
                out,
            ),
            Request::Rset => {
                self.envelope = None;
                out.push(reply(250, "2.0.0", "OK"));
            }
            Request::Noop { .. } => out.push(reply(250, "2.0.0", "OK")),
            Request::Quit => {
                out.push(reply(221, "2.0.0", "Bye"));
                self.close(out);
            }
            Request::Help { .. } => out.push(reply(
                214,
                "2.0.0",
                "graphgate submits mail to Microsoft 365 through Graph: EHLO, STARTTLS, AUTH \
                 PLAIN|LOGIN, MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT",
            )),
            Request::Vrfy { .. } => out.push(reply(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept the message and attempt delivery",
            )),
            Request::Expn { .. } => self.error(502, "5.5.1", "EXPN is not supported", out),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.error(502, "5.5.1", "Command not implemented", out)
            }
        }
    }

    fn handle_ehlo(&mut self, host: &str, out: &mut Vec<Action>) {
        self.ehlo = true;
        self.envelope = None;
        let mut lines = vec![
            format!("{} greets {}", self.config.hostname, printable(host)),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.config.tls_available && !self.tls_active {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_allowed() && self.auth.is_none() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        lines.push("HELP".to_string());
        out.push(multiline(250, &lines));
    }

    fn handle_starttls(&mut self, out: &mut Vec<Action>) {
        if self.tls_active {
            self.error(503, "5.5.1", "TLS is already active", out);
        } else if !self.config.tls_available {
            self.error(
                454,
                "4.7.0",
                "TLS not available: no certificate is configured for this listener",
                out,
            );
        } else {
            out.push(reply(220, "2.0.0", "Ready to start TLS"));
            out.push(Action::StartTls);
            self.state = State::AwaitTls;
        }
    }

    fn ingest_data(&mut self, bytes: &mut std::slice::Iter<'_, u8>, out: &mut Vec<Action>) {
        let mut chunk = Vec::new();
        let done = self.data.ingest(bytes, &mut chunk);
        self.data_size = self.data_size.saturating_add(chunk.len());
        if self.data_size > self.config.max_message_size {
            if !self.data_too_big {
                self.data_too_big = true;
                out.push(Action::MessageAbort);
            }
            if self.data_size > self.config.max_message_size + MAX_DISCARD_BEYOND_LIMIT {
                self.state = State::Command;
                out.push(reply(
                    552,
                    "5.3.4",
                    &format!(
                        "Message exceeds the limit of {} octets; closing",
                        self.config.max_message_size
                    ),
                ));
                self.close(out);
                return;
            }
        } else {
            self.push_data(&chunk, out);
        }
        if done {
            self.state = State::Command;
            if self.data_too_big {
                self.envelope = None;
                self.errors += 1;
                out.push(reply(
                    552,
                    "5.3.4",
                    &format!(
                        "Message exceeds the limit of {} octets",
                        self.config.max_message_size
                    ),
                ));
                return;
            }
            if !self.data_buf.is_empty() {
                out.push(Action::MessageData(std::mem::take(&mut self.data_buf)));
            }
            let envelope = self.envelope.clone().unwrap_or_default();
            out.push(Action::MessageEnd(envelope));
            self.state = State::AwaitSubmit;
        }
    }

    /// Append data, turning bare LF into CRLF, and emit full chunks.
    fn push_data(&mut self, chunk: &[u8], out: &mut Vec<Action>) {
        for &b in chunk {
            if b == b'\n' && !self.data_last_cr {
                self.data_buf.push(b'\r');
            }
            self.data_buf.push(b);
            self.data_last_cr = b == b'\r';
        }
        if self.data_buf.len() >= DATA_CHUNK {
            out.push(Action::MessageData(std::mem::take(&mut self.data_buf)));
        }
    }
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn decode_b64(text: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Client-supplied text echoed in a reply: printable ASCII only, bounded.
fn printable(text: &str) -> String {
    text.chars()
        .take(256)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn reply(code: u16, enhanced: &str, text: &str) -> Action {
    let mut line = code.to_string();
    line.push(' ');
    if !enhanced.is_empty() {
        line.push_str(enhanced);
        line.push(' ');
    }
    line.push_str(text);
    if text.is_empty() && enhanced.is_empty() {
        line.truncate(4);
    }
    line.push_str("\r\n");
    Action::Reply(line.into_bytes())
}

fn multiline(code: u16, lines: &[String]) -> Action {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{line}\r\n"));
    }
    Action::Reply(out.into_bytes())
}

/// A parsed command as the protocol trace shows it: close to its wire
/// form, without AUTH's payload.
fn wire_request(request: &Request<String>) -> String {
    match request {
        Request::Ehlo { host } => format!("EHLO {host}"),
        Request::Helo { host } => format!("HELO {host}"),
        Request::Lhlo { host } => format!("LHLO {host}"),
        Request::Auth { mechanism, .. } => {
            let name = match *mechanism {
                AUTH_PLAIN => "PLAIN".to_string(),
                AUTH_LOGIN => "LOGIN".to_string(),
                other => format!("mechanism {other:#x}"),
            };
            format!("AUTH {name} {}", crate::wire::REDACTED)
        }
        Request::Mail { from } => format!(
            "MAIL FROM:<{}>{}",
            from.address,
            if from.size > 0 {
                format!(" SIZE={}", from.size)
            } else {
                String::new()
            }
        ),
        Request::Rcpt { to } => format!("RCPT TO:<{}>", to.address),
        Request::Data => "DATA".into(),
        Request::Bdat {
            chunk_size,
            is_last,
        } => {
            format!("BDAT {chunk_size}{}", if *is_last { " LAST" } else { "" })
        }
        Request::Rset => "RSET".into(),
        Request::Quit => "QUIT".into(),
        Request::StartTls => "STARTTLS".into(),
        Request::Noop { .. } => "NOOP".into(),
        Request::Vrfy { value } => format!("VRFY {value}"),
        other => format!("{other:?}"),
    }
}
