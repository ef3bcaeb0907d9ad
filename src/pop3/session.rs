//! One POP3 session: the AUTHORIZATION and TRANSACTION states of RFC 1939
//! §§4–6 and the UPDATE at QUIT, with CAPA (RFC 2449), STLS (RFC 2595),
//! AUTH PLAIN (RFC 5034, RFC 4616) and the response codes of RFC 2449 §8
//! (`[IN-USE]`) and RFC 3206 (`[AUTH]`, `[SYS/TEMP]`).
//!
//! [`allowed`] is the one table of which command each state takes; then
//! one `match` dispatches. Every refusal says what to do next.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::body::Stuffer;
use super::maildrop::{Maildrop, MaildropError, split_login};
use super::protocol::{Command, ParseError, SaslLine, parse_command, parse_sasl_line};
use super::server::{Out, Pop3Server};
use crate::login_guard::Checked;
use crate::secret::Secret;

/// What the connection loop does after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Start TLS now (the `+OK` is written).
    StartTls,
    /// Close the connection (after QUIT, or a fatal refusal).
    Close,
}

enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Maildrop>),
}

pub struct Session {
    server: Arc<Pop3Server>,
    peer: SocketAddr,
    tls_active: bool,
    state: State,
    /// AUTH PLAIN sent `+ ` and waits for the client's line.
    sasl: bool,
}

type IoResult = std::io::Result<Next>;

pub async fn greet(out: &mut Out) -> std::io::Result<()> {
    out.write_all(b"+OK graphgate POP3 ready (Microsoft 365 through Graph)\r\n")
        .await
}

/// Which states a command is valid in (RFC 1939 §§4–6; CAPA in both,
/// RFC 2449 §5; STLS and AUTH in AUTHORIZATION, RFC 2595 §4, RFC 5034 §4).
pub fn allowed(command: &str, transaction: bool) -> Result<(), String> {
    let any = ["CAPA", "QUIT", "NOOP"];
    let authorization = ["STLS", "USER", "PASS", "AUTH"];
    let transaction_only = ["STAT", "LIST", "UIDL", "RETR", "DELE", "TOP", "RSET"];
    let ok = any.contains(&command)
        || if transaction {
            transaction_only.contains(&command)
        } else {
            authorization.contains(&command)
        };
    match (ok, transaction) {
        (true, _) => Ok(()),
        (false, false) => Err(format!(
            "{command} needs you to log in first (USER and PASS, or AUTH PLAIN)"
        )),
        (false, true) => Err(format!("{command} is only valid before logging in")),
    }
}

async fn ok(out: &mut Out, text: &str) -> IoResult {
    out.write_all(format!("+OK {text}\r\n").as_bytes()).await?;
    Ok(Next::Continue)
}

async fn err(out: &mut Out, text: &str) -> IoResult {
    // One line (RFC 2449 §4: at most 512 octets with the CRLF).
    let text: String = text.chars().filter(|c| !c.is_control()).take(500).collect();
    out.write_all(format!("-ERR {text}\r\n").as_bytes()).await?;
    Ok(Next::Continue)
}

impl Session {
    pub fn new(server: Arc<Pop3Server>, peer: SocketAddr, tls_active: bool) -> Session {
        Session {
            server,
            peer,
            tls_active,
            state: State::Authorization { user: None },
            sasl: false,
        }
    }

    /// The next line belongs to an AUTH exchange.
    pub fn in_sasl(&self) -> bool {
        self.sasl
    }

    /// TLS is up after STLS: the session starts over (RFC 2595 §4).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.state = State::Authorization { user: None };
    }

    /// USER/PASS and AUTH may be used: over TLS, or from loopback when
    /// `pop3.plaintext_login_on_loopback` allows it.
    fn login_allowed(&self) -> bool {
        self.tls_active
            || (self.server.config.plaintext_login_on_loopback && self.peer.ip().is_loopback())
    }

    fn stls_offered(&self) -> bool {
        !self.tls_active && self.server.tls.is_some()
    }

    pub async fn too_long(&mut self, limit: usize, out: &mut Out) -> IoResult {
        self.sasl = false;
        err(out, &ParseError::TooLong(limit).to_string()).await
    }

    /// Answer one line.
    pub async fn line(&mut self, line: &[u8], out: &mut Out) -> IoResult {
        if self.sasl {
            self.sasl = false;
            tracing::trace!(target: crate::wire::TARGET, "C: {}", crate::wire::REDACTED);
            return match parse_sasl_line(line) {
                SaslLine::Cancel => err(out, "AUTH cancelled").await,
                SaslLine::Response(data) => self.finish_plain(&data, out).await,
            };
        }
        let command = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                crate::metrics::get().pop3_command("(unparsed)");
                return err(out, &e.to_string()).await;
            }
        };
        tracing::trace!(target: crate::wire::TARGET, "C: {}", command.trace());
        let name = command.name();
        crate::metrics::get().pop3_command(name);
        let transaction = matches!(self.state, State::Transaction(_));
        if let Err(why) = allowed(name, transaction) {
            return err(out, &why).await;
        }
        self.dispatch(command, out).await
    }

    async fn dispatch(&mut self, command: Command, out: &mut Out) -> IoResult {
        match command {
            Command::Capa => self.capa(out).await,
            Command::Noop => ok(out, "").await,
            Command::Quit => self.quit(out).await,
            Command::Stls => {
                if self.tls_active {
                    return err(out, "TLS is already active").await;
                }
                if self.server.tls.is_none() {
                    return err(
                        out,
                        "TLS is unavailable here: tls.certificate_file is unusable",
                    )
                    .await;
                }
                out.write_all(b"+OK Begin TLS negotiation\r\n").await?;
                Ok(Next::StartTls)
            }
            Command::User(name) => {
                if !self.login_allowed() {
                    return err(
                        out,
                        "[AUTH] Plaintext login is disabled here: use STLS or the implicit-TLS \
                         port first",
                    )
                    .await;
                }
                self.state = State::Authorization { user: Some(name) };
                ok(out, "send PASS").await
            }
            Command::Pass(password) => {
                let State::Authorization { user: Some(user) } = &self.state else {
                    return err(out, "PASS needs USER first").await;
                };
                let login = user.clone();
                self.state = State::Authorization { user: None };
                self.login(&login, password, out).await
            }
            Command::AuthList => {
                out.write_all(b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n")
                    .await?;
                Ok(Next::Continue)
            }
            Command::Auth { mechanism, initial } => {
                if !self.login_allowed() {
                    return err(
                        out,
                        "[AUTH] Use STLS (or the implicit-TLS port) before logging in",
                    )
                    .await;
                }
                if mechanism != "PLAIN" {
                    return err(out, "Only AUTH PLAIN is supported (CAPA lists it)").await;
                }
                match initial {
                    Some(data) => self.finish_plain(&data, out).await,
                    None => {
                        // RFC 5034 §4: an empty challenge is "+ ".
                        self.sasl = true;
                        out.write_all(b"+ \r\n").await?;
                        Ok(Next::Continue)
                    }
                }
            }
            other => {
                let State::Transaction(drop) = &mut self.state else {
                    return err(out, "log in first").await;
                };
                super::transaction::handle(drop, other, out).await
            }
        }
    }

    /// CAPA (RFC 2449 §5): only what is true now.
    async fn capa(&self, out: &mut Out) -> IoResult {
        let mut text = String::from("+OK Capability list follows\r\nTOP\r\nUIDL\r\n");
        text.push_str("RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
        let authorization = matches!(self.state, State::Authorization { .. });
        if authorization && self.login_allowed() {
            text.push_str("USER\r\nSASL PLAIN\r\n");
        }
        if authorization && self.stls_offered() {
            text.push_str("STLS\r\n");
        }
        text.push_str("IMPLEMENTATION graphgate\r\n.\r\n");
        out.write_all(text.as_bytes()).await?;
        Ok(Next::Continue)
    }

    /// QUIT: in TRANSACTION, the UPDATE state (RFC 1939 §6).
    async fn quit(&mut self, out: &mut Out) -> IoResult {
        let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
        let State::Transaction(drop) = state else {
            out.write_all(b"+OK graphgate POP3 signing off\r\n").await?;
            return Ok(Next::Close);
        };
        let on_delete = self.server.config.on_delete_for(&drop.account().login);
        let updated = drop.update(on_delete).await;
        match updated.failure {
            None => {
                tracing::info!(account = %drop.account().login, deleted = updated.done, ?on_delete, "pop3 update");
                out.write_all(
                    format!(
                        "+OK graphgate POP3 signing off ({} message(s) {})\r\n",
                        updated.done,
                        match on_delete {
                            super::maildrop::OnDelete::Keep => "kept and marked read",
                            super::maildrop::OnDelete::Trash => "moved to Deleted Items",
                            super::maildrop::OnDelete::Delete => "deleted",
                        }
                    )
                    .as_bytes(),
                )
                .await?;
            }
            Some(e) => {
                tracing::warn!(account = %drop.account().login, "pop3 update failed: {e}");
                err(
                    out,
                    &format!(
                        "[SYS/TEMP] some deleted messages not removed ({} done): {e}",
                        updated.done
                    ),
                )
                .await?;
            }
        }
        Ok(Next::Close)
    }

    /// AUTH PLAIN's response (RFC 4616): `authzid NUL authcid NUL passwd`,
    /// base64. An authzid naming `account/shared@address` reads that
    /// shared mailbox.
    async fn finish_plain(&mut self, data: &Secret<String>, out: &mut Out) -> IoResult {
        let text = data.expose().trim();
        let decoded = if text == "=" {
            Ok(Vec::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(text)
        };
        let Ok(decoded) = decoded else {
            return err(out, "AUTH PLAIN: the response is not base64 (RFC 5034 §4)").await;
        };
        let mut parts = decoded.split(|&b| b == 0);
        let fields = (parts.next(), parts.next(), parts.next(), parts.next());
        let (Some(authz), Some(authc), Some(password), None) = fields else {
            return err(
                out,
                "AUTH PLAIN: expected authzid NUL authcid NUL password (RFC 4616)",
            )
            .await;
        };
        let (Ok(authz), Ok(authc), Ok(password)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(password),
        ) else {
            return err(out, "AUTH PLAIN: the identities and password must be UTF-8").await;
        };
        let login = if authz.is_empty() || authz == authc {
            authc.to_string()
        } else if split_login(authz)
            .0
            .eq_ignore_ascii_case(split_login(authc).0)
        {
            authz.to_string()
        } else {
            return err(
                out,
                "[AUTH] the authorization identity must be the login itself, or \
                 login/shared-mailbox",
            )
            .await;
        };
        self.login(&login, Secret::new(password.to_string()), out)
            .await
    }

    /// Check the password, then open the maildrop (TRANSACTION state).
    async fn login(&mut self, login: &str, password: Secret<String>, out: &mut Out) -> IoResult {
        let account_login = split_login(login).0;
        let server = &self.server;
        let checked = crate::mailbox::open::check_login(
            &server.imap.shared.accounts,
            &server.config.login_guard,
            "pop3",
            self.peer.ip(),
            account_login,
            password,
        )
        .await;
        let account = match checked {
            Checked::Account(account) => *account,
            Checked::Wrong => {
                return err(
                    out,
                    "[AUTH] Wrong login or password (graphgate local account; see `graphgate \
                     accounts list`)",
                )
                .await;
            }
            Checked::Refused(refused) => {
                return err(out, &format!("[SYS/TEMP] {}", refused.sentence())).await;
            }
        };
        match Maildrop::open(server.imap.clone(), account, login).await {
            Ok(drop) => {
                tracing::info!(account = %drop.account().login, folder = %drop.folder.name, messages = drop.entries.len(), "pop3 login");
                let n = drop.entries.len();
                self.state = State::Transaction(Box::new(drop));
                ok(out, &format!("maildrop has {n} message(s)")).await
            }
            Err(e @ MaildropError::InUse) => {
                tracing::info!(login, "pop3 login refused: maildrop in use");
                err(out, &e.to_string()).await
            }
            Err(e) => {
                tracing::warn!(login, "pop3 login: {e}");
                err(out, &e.to_string()).await
            }
        }
    }
}

/// Stream message bytes from `file` through `stuffer` to `out`, in chunks
/// (memory stays flat whatever the message's size). Returns the octets of
/// the message read.
pub async fn stream_file(
    mut file: tokio::fs::File,
    mut stuffer: Stuffer,
    out: &mut Out,
) -> std::io::Result<u64> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut encoded = Vec::with_capacity(66 * 1024);
    let mut total = 0u64;
    loop {
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        encoded.clear();
        stuffer.feed(chunk.get(..n).unwrap_or_default(), &mut encoded);
        out.write_all(&encoded).await?;
        crate::metrics::get()
            .pop3_bytes_sent
            .inc_by(encoded.len() as u64);
        if stuffer.done() {
            break;
        }
    }
    encoded.clear();
    stuffer.finish(&mut encoded);
    out.write_all(&encoded).await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pop3::maildrop::OnDelete;
    use crate::pop3::server::Pop3Config;

    #[test]
    fn the_state_table() {
        for c in ["CAPA", "QUIT", "NOOP", "STLS", "USER", "PASS", "AUTH"] {
            assert!(allowed(c, false).is_ok(), "{c}");
        }
        for c in ["STAT", "LIST", "UIDL", "RETR", "DELE", "TOP", "RSET"] {
            let refused = allowed(c, false).unwrap_err();
            assert!(refused.contains("log in first"), "{refused}");
            assert!(allowed(c, true).is_ok(), "{c}");
        }
        for c in ["STLS", "USER", "PASS", "AUTH"] {
            assert!(allowed(c, true).unwrap_err().contains("before logging in"));
        }
    }

    #[test]
    fn logins_may_name_a_shared_mailbox() {
        assert_eq!(split_login("alice@x"), ("alice@x", None));
        assert_eq!(
            split_login("alice@x/support@x"),
            ("alice@x", Some("support@x"))
        );
        assert_eq!(
            split_login("alice@x\\support@x"),
            ("alice@x", Some("support@x"))
        );
        assert_eq!(split_login("alice@x/"), ("alice@x", None));
    }

    #[test]
    fn deletion_modes_by_account() {
        let c = Pop3Config::default()
            .with_on_delete("keep", " Helpdesk@x = delete , scanner@x=TRASH")
            .unwrap();
        assert_eq!(c.on_delete_for("other@x"), OnDelete::Keep);
        assert_eq!(c.on_delete_for("helpdesk@X"), OnDelete::Delete);
        assert_eq!(c.on_delete_for("scanner@x"), OnDelete::Trash);
        let e = Pop3Config::default()
            .with_on_delete("purge", "")
            .unwrap_err();
        assert!(
            e.contains("pop3.on_delete") && e.contains("keep, trash or delete"),
            "{e}"
        );
        let e = Pop3Config::default()
            .with_on_delete("trash", "a@x")
            .unwrap_err();
        assert!(
            e.contains("pop3.on_delete_accounts") && e.contains("login=mode"),
            "{e}"
        );
    }
}
