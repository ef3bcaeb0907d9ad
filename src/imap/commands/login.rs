//! LOGIN (RFC 3501 §6.2.3) and AUTHENTICATE PLAIN (§6.2.2, RFC 4616):
//! check a graphgate local account's password (failures slow down, then
//! are refused, per (address, login) pair, shared with SMTP:
//! [`crate::login_guard`]), then open its mailbox and list its
//! folders — one Graph folder listing per mailbox the account reads. The
//! AUTHENTICATE exchange itself (continuation, client data, cancel) is
//! framing and stays in [`crate::imap::server`]; this file decides whether
//! it may start and finishes it.

use super::Ctx;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::auth::AuthMechanism;
use imap_next::imap_types::core::{AString, Tag};
use imap_next::imap_types::response::{Code, Status};
use imap_next::imap_types::secret::Secret as ImapSecret;
use imap_next::server::Server as ImapNext;

use super::capability::capabilities;
use crate::imap::server::{Conn, ImapServer};
use crate::imap::session::{Refusal, Reply, State, text};
use crate::login_guard::Checked;
use crate::secret::Secret;

/// LOGIN.
pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    username: &AString<'_>,
    password: &ImapSecret<AString<'_>>,
) -> Reply {
    let server = ctx.server;
    let conn = &mut *ctx.conn;
    if !conn.login_allowed(server) {
        return Reply::no(
            "Plaintext login is disabled here: use STARTTLS or the implicit-TLS port",
        );
    }
    let login = String::from_utf8_lossy(username.as_ref()).to_string();
    let password = Secret::new(String::from_utf8_lossy(password.declassify().as_ref()).to_string());
    match login_account(server, conn, &login, password).await {
        Ok(()) => Reply::ok("LOGIN completed"),
        Err(t) => Reply::no(t),
    }
}

/// May an AUTHENTICATE with `mechanism` start here?
pub(crate) fn may_authenticate(
    server: &ImapServer,
    conn: &Conn,
    mechanism: &AuthMechanism<'_>,
) -> Result<(), Refusal> {
    if !matches!(conn.state, State::NotAuthenticated) {
        return Err(Refusal::bad("Already authenticated"));
    }
    if !conn.login_allowed(server) {
        return Err(Refusal::no(
            "Use STARTTLS (or the implicit-TLS port) before logging in",
        ));
    }
    if *mechanism != AuthMechanism::Plain {
        return Err(Refusal::no("Only AUTHENTICATE PLAIN is supported"));
    }
    Ok(())
}

/// Finish AUTHENTICATE PLAIN with the client's (decoded) response.
pub(crate) async fn finish_authenticate(
    server: &ImapServer,
    conn: &mut Conn,
    imap: &mut ImapNext,
    tag: Tag<'static>,
    data: &[u8],
) {
    let status = match sasl_plain(data) {
        None => Status::bad(Some(tag), None, "Malformed PLAIN credentials"),
        Some((login, password)) => match login_account(server, conn, &login, password).await {
            Ok(()) => Status::ok(
                Some(tag),
                Some(Code::Capability(capabilities(
                    conn.tls_active,
                    false,
                    true,
                    true,
                    server.config.max_literal,
                ))),
                "Authenticated",
            ),
            Err(t) => Status::no(Some(tag), None, text(&t)),
        },
    };
    if let Ok(status) = status {
        let _ = imap.authenticate_finish(status.into_static());
    }
}

/// Split `\0authz\0authc\0password` (RFC 4616).
fn sasl_plain(data: &[u8]) -> Option<(String, Secret<String>)> {
    let mut parts = data.split(|&b| b == 0);
    let _authz = parts.next()?;
    let login = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((login, Secret::new(password)))
}

/// Check the password, open the account and list its folders; the
/// session is then authenticated.
async fn login_account(
    server: &ImapServer,
    conn: &mut Conn,
    login: &str,
    password: Secret<String>,
) -> Result<(), String> {
    // RFC 5530 response codes: AUTHENTICATIONFAILED for wrong
    // credentials, UNAVAILABLE for a temporary refusal.
    let account = match crate::mailbox::open::check_login(
        &server.shared.accounts,
        &server.config.login_guard,
        "imap",
        conn.peer.ip(),
        login,
        password,
    )
    .await
    {
        Checked::Account(account) => *account,
        Checked::Wrong => {
            return Err(
                "[AUTHENTICATIONFAILED] Wrong login or password (graphgate local \
                 account; see `graphgate accounts list`)"
                    .into(),
            );
        }
        Checked::Refused(refused) => {
            return Err(format!("[UNAVAILABLE] {}", refused.sentence()));
        }
    };
    // Signed out, or its grant known dead (OFFLINE with the reason): say
    // so with the fix, without a token request per connection. RFC 5530
    // UNAVAILABLE, so that clients do not ask for a new password.
    if let Some(reason) = crate::mailbox::open::signed_out_reason(&account) {
        return Err(format!(
            "[UNAVAILABLE] {login} is signed out of Microsoft 365: run `graphgate login {login}`, \
             then log in again. Reason: {reason}",
            login = account.login
        ));
    }
    let authed = server.shared.open(account.clone()).map_err(|e| {
        format!(
            "[UNAVAILABLE] {} cannot reach its mailbox: {e}",
            account.login
        )
    })?;
    authed
        .model
        .refresh_folders_if_stale()
        .await
        .map_err(|e| format!("cannot list the folders of {}: {e}", account.mailbox))?;
    tracing::info!(account = %account.login, "imap login");
    conn.state = State::Authenticated(Box::new(authed));
    Ok(())
}
