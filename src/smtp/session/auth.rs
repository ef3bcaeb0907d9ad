//! SMTP AUTH (RFC 4954) of a session: PLAIN and LOGIN, with an initial
//! response or on continuation lines, bounded, and only where the session
//! allows plain credentials (inside TLS, or on loopback when configured).
//! The password itself is checked outside, by the login guard
//! (`Session::auth_result` / `auth_refused` give the answer).

use super::*;

impl Session {
    pub(super) fn handle_auth(&mut self, mechanism: u64, initial: &str, out: &mut Vec<Action>) {
        if !self.ehlo {
            return self.error(503, "5.5.1", "Send EHLO first", out);
        }
        if let Some(account) = &self.relay {
            let text = format!(
                "No AUTH on the relay listener: your network sends as {} (relay.networks); \
                 go on with MAIL FROM",
                printable(&account.login)
            );
            return self.error(503, "5.5.1", &text, out);
        }
        if self.auth.is_some() {
            return self.error(503, "5.5.1", "Already authenticated", out);
        }
        if self.envelope.is_some() {
            return self.error(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
                out,
            );
        }
        if !self.auth_allowed() {
            // RFC 3207 §4's reply for a command refused until STARTTLS
            // (what clients and admins recognise; RFC 4954's 538 5.7.11
            // is for a mechanism that needs encryption).
            return self.error(
                530,
                "5.7.0",
                "Must issue a STARTTLS command first (or use the implicit-TLS port): AUTH \
                 needs TLS here (smtp.plaintext_auth_on_loopback = true allows it without TLS \
                 from loopback clients only)",
                out,
            );
        }
        if mechanism == AUTH_PLAIN {
            if initial.is_empty() {
                out.push(reply(334, "", ""));
                self.state = State::AuthPlain;
            } else if initial == "=" {
                self.error(535, "5.7.8", "Authentication credentials invalid", out);
            } else {
                self.finish_plain(initial, out);
            }
        } else if mechanism == AUTH_LOGIN {
            if initial.is_empty() {
                out.push(reply(334, "", "VXNlcm5hbWU6"));
                self.state = State::AuthLoginUser;
            } else {
                match decode_b64(initial) {
                    Some(login) => {
                        out.push(reply(334, "", "UGFzc3dvcmQ6"));
                        self.state = State::AuthLoginPassword { login };
                    }
                    None => self.error(501, "5.5.2", "Cannot decode the base64 response", out),
                }
            }
        } else {
            self.error(
                504,
                "5.5.4",
                "Unrecognized authentication mechanism; use PLAIN or LOGIN",
                out,
            );
        }
    }

    pub(super) fn ingest_auth_line(
        &mut self,
        bytes: &mut std::slice::Iter<'_, u8>,
        out: &mut Vec<Action>,
    ) {
        tracing::trace!(target: crate::wire::TARGET, "C: {}", crate::wire::REDACTED);
        let rest = bytes.as_slice();
        let Some(pos) = memchr_lf(rest) else {
            if self.line.len() + rest.len() > MAX_AUTH_LINE {
                self.line.clear();
                self.state = State::Command;
                *bytes = [].iter();
                return self.error(500, "5.5.6", "Authentication line too long", out);
            }
            self.line.extend_from_slice(rest);
            *bytes = [].iter();
            return;
        };
        let (head, tail) = rest.split_at(pos + 1);
        *bytes = tail.iter();
        self.line.extend_from_slice(head);
        let line = std::mem::take(&mut self.line);
        if line.len() > MAX_AUTH_LINE {
            self.state = State::Command;
            return self.error(500, "5.5.6", "Authentication line too long", out);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let state = std::mem::replace(&mut self.state, State::Command);
        if text == "*" {
            return self.error(501, "5.0.0", "Authentication cancelled", out);
        }
        match state {
            State::AuthPlain => self.finish_plain(text, out),
            State::AuthLoginUser => match decode_b64(text) {
                Some(login) => {
                    out.push(reply(334, "", "UGFzc3dvcmQ6"));
                    self.state = State::AuthLoginPassword { login };
                }
                None => self.error(501, "5.5.2", "Cannot decode the base64 response", out),
            },
            State::AuthLoginPassword { login } => match decode_b64(text) {
                Some(password) => {
                    out.push(Action::Authenticate {
                        login,
                        password: Secret::new(password),
                    });
                    self.state = State::AwaitAuth;
                }
                None => self.error(501, "5.5.2", "Cannot decode the base64 response", out),
            },
            _ => {}
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`.
    fn finish_plain(&mut self, response: &str, out: &mut Vec<Action>) {
        let Some(decoded) = base64::engine::general_purpose::STANDARD
            .decode(response.trim())
            .ok()
        else {
            return self.error(501, "5.5.2", "Cannot decode the base64 response", out);
        };
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(501, "5.5.2", "Malformed PLAIN response", out);
        };
        let (Ok(authz), Ok(login), Ok(password)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(password),
        ) else {
            return self.error(501, "5.5.2", "PLAIN response is not UTF-8", out);
        };
        if !authz.is_empty() && authz != login {
            return self.error(
                535,
                "5.7.8",
                "Authorization identity differs from the login; proxy authorization is not supported",
                out,
            );
        }
        out.push(Action::Authenticate {
            login: login.to_string(),
            password: Secret::new(password.to_string()),
        });
        self.state = State::AwaitAuth;
    }
}
