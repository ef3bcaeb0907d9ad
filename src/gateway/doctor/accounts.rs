//! Each account: a freshly refreshed token (so a revoked grant shows now,
//! not at the next send), the Graph permissions the token really carries
//! (the `scp` claim of a delegated token, `roles` of an app-only one — read
//! from the token's payload without checking its signature, as `auth/`
//! reads identities: the token came from the token endpoint over TLS), a
//! probe read of the Inbox (and of each shared mailbox), and what can be
//! said about sending without sending (Graph has no dry run of sendMail).

use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

use super::{Finding, Report};
use crate::account::AccountRuntime;
use crate::auth::EntraClient;
use crate::config::Config;
use crate::gateway::{GatewayError, KeyMode, Runtime};
use crate::graph::{GraphClient, GraphError, Mailbox, WellKnownFolder};
use crate::store::{Account, AuthProfile, Store, StoreKey};

/// The Graph permissions an access token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Permissions {
    /// `scp`: delegated permissions (the app acting for a signed-in user).
    Delegated(Vec<String>),
    /// `roles`: application permissions (app-only).
    Application(Vec<String>),
}

impl Permissions {
    pub fn names(&self) -> &[String] {
        match self {
            Permissions::Delegated(n) | Permissions::Application(n) => n,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.names().iter().any(|n| {
            let short = n.rsplit('/').next().unwrap_or(n);
            short.eq_ignore_ascii_case(name)
        })
    }

    /// "delegated" or "application", as the Entra admin center says.
    pub fn kind(&self) -> &'static str {
        match self {
            Permissions::Delegated(_) => "delegated",
            Permissions::Application(_) => "application",
        }
    }
}

/// The permissions in an access token's payload; `None` when it is not a
/// JWT or carries neither claim (tokens are opaque by contract).
pub(crate) fn token_permissions(jwt: &str) -> Option<Permissions> {
    #[derive(Deserialize)]
    struct Claims {
        scp: Option<String>,
        roles: Option<Vec<String>>,
    }
    let claims: Claims = crate::auth::token_set::jwt_claims(jwt)?;
    match (claims.scp, claims.roles) {
        (Some(scp), _) => Some(Permissions::Delegated(
            scp.split_whitespace()
                .take(64)
                .map(str::to_string)
                .collect(),
        )),
        (None, Some(roles)) => Some(Permissions::Application(
            roles.into_iter().take(64).collect(),
        )),
        (None, None) => None,
    }
}

/// The fix for missing permissions `missing` of `kind` for `login`.
pub(crate) fn permission_fix(kind: &str, missing: &[&str], login: &str) -> String {
    let list = missing.join(", ");
    if kind == "application" {
        format!(
            "add the Microsoft Graph application permission(s) {list} to the app registration \
             (API permissions) and grant admin consent (`graphgate consent-url`); the next \
             token carries them"
        )
    } else {
        format!(
            "add the Microsoft Graph delegated permission(s) {list} to the app registration \
             (API permissions), consent to them (admin consent: `graphgate consent-url`), then \
             `graphgate login {login}` so that a new token carries them"
        )
    }
}

/// A token just issued: a delegated account's refresh token is redeemed
/// even when the cached access token is still valid, since that would hide
/// a revoked grant for up to an hour.
pub(crate) async fn fresh_token(
    runtime: &AccountRuntime,
) -> Result<crate::auth::AccessToken, crate::auth::AuthError> {
    let first = runtime.tokens.access_token().await?;
    if runtime.account.auth_profile != AuthProfile::Delegated {
        return Ok(first);
    }
    runtime.tokens.invalidate(&first);
    runtime.tokens.access_token().await
}

pub(super) async fn check_accounts(config: &Config, report: &mut Report) {
    let dir = &config.data_dir;
    if !Store::path_in(dir).exists() {
        return; // reported with the data directory
    }
    let store = match Store::open(dir) {
        Ok(s) => s,
        Err(e) => {
            report.push(Finding::fail(
                "database",
                e.to_string(),
                "check that the data directory is readable and writable",
            ));
            return;
        }
    };
    let accounts = match store.accounts() {
        Ok(a) => a,
        Err(e) => {
            report.push(Finding::fail(
                "database",
                e.to_string(),
                "check the database",
            ));
            return;
        }
    };
    if accounts.is_empty() {
        report.push(Finding::fail(
            "accounts",
            "none: legacy applications have nothing to log in to",
            "`graphgate accounts add LOGIN`, then `graphgate login LOGIN`",
        ));
        return;
    }
    report.push(Finding::ok(
        "accounts",
        format!("{} configured", accounts.len()),
    ));
    // Never create a key here (that would orphan the stored tokens); a
    // missing or unusable key was reported already.
    let runtime = match Runtime::from_store(config, store.clone(), KeyMode::Existing) {
        Ok(r) => r,
        Err(GatewayError::KeyMissing(_) | GatewayError::Key(_)) => return,
        Err(e @ GatewayError::Config(_)) => {
            report.push(Finding::fail(
                "configuration graph.*",
                e.to_string(),
                "fix the [graph] settings (`graphgate config example` documents them)",
            ));
            return;
        }
        Err(e) => {
            report.push(Finding::fail(
                "configuration microsoft.graph_url",
                e.to_string(),
                "give the Graph base URL, e.g. https://graph.microsoft.com",
            ));
            return;
        }
    };
    let Ok(entra) = &runtime.entra else {
        return; // reported with the configuration
    };
    let (key, graph) = (&runtime.key, &runtime.graph);
    for account in accounts {
        check_account(account, &store, key, entra, graph, report).await;
    }
}

async fn check_account(
    account: Account,
    store: &Store,
    key: &StoreKey,
    entra: &Arc<EntraClient>,
    graph: &GraphClient,
    report: &mut Report,
) {
    let login = account.login.clone();
    let name = format!("account {login}");
    let delegated = account.auth_profile == AuthProfile::Delegated;
    let runtime = match AccountRuntime::open(account.clone(), store, key, entra.clone(), graph) {
        Ok(r) => r,
        Err(e) => {
            report.push(Finding::fail(
                format!("{name} token"),
                e.to_string(),
                e.remedy(&login),
            ));
            return;
        }
    };
    let token = match fresh_token(&runtime).await {
        Ok(t) => t,
        Err(e) => {
            report.push(Finding::fail(
                format!("{name} token"),
                format!(
                    "{} could not get a new token: {e}",
                    if delegated {
                        "refreshing"
                    } else {
                        "the client credentials grant"
                    }
                ),
                e.remedy(&login),
            ));
            return;
        }
    };
    let minutes = token
        .expires_at
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0);
    report.push(Finding::ok(
        format!("{name} token"),
        format!(
            "{} for {}; valid for {minutes} min",
            if delegated {
                "refreshed (delegated sign-in)"
            } else {
                "obtained (app-only, client credentials)"
            },
            account.mailbox
        ),
    ));
    let permissions = token_permissions(token.token.expose());
    check_permissions(&account, permissions.as_ref(), report);
    check_reads(&account, &runtime, graph, report).await;
}

fn check_permissions(account: &Account, permissions: Option<&Permissions>, report: &mut Report) {
    let login = &account.login;
    let name = format!("account {login} permissions");
    let Some(p) = permissions else {
        report.push(Finding::warn(
            name,
            "the access token is not a readable JWT, so its permissions cannot be listed",
            format!(
                "prove sending and reading with `graphgate send-test --from {login} --to \
                 ADDRESS --read-back`"
            ),
        ));
        return;
    };
    let mut needed: Vec<(&str, &str)> = vec![
        ("Mail.ReadWrite", "IMAP reads, flags, moves and APPEND"),
        ("Mail.Send", "SMTP sends"),
    ];
    if p.kind() == "delegated" && !account.shared_mailboxes.is_empty() {
        needed.push(("Mail.ReadWrite.Shared", "the shared mailboxes it reads"));
    }
    let missing: Vec<(&str, &str)> = needed.into_iter().filter(|(n, _)| !p.has(n)).collect();
    let carried = if p.names().is_empty() {
        "none".to_string()
    } else {
        p.names().join(" ")
    };
    if missing.is_empty() {
        report.push(Finding::ok(name, format!("{} {carried}", p.kind())));
    } else {
        let read_only = missing.iter().any(|(n, _)| *n == "Mail.ReadWrite") && p.has("Mail.Read");
        let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
        let uses: Vec<&str> = missing.iter().map(|(_, u)| *u).collect();
        report.push(Finding::fail(
            name,
            format!(
                "the token carries {} {carried}; missing {} (needed for {}){}",
                p.kind(),
                names.join(", "),
                uses.join("; "),
                if read_only {
                    " — with Mail.Read only, IMAP can read but every change fails"
                } else {
                    ""
                }
            ),
            permission_fix(p.kind(), &names, login),
        ));
    }
    // Sending: Graph has no dry run; say what the token allows and what
    // only a real send shows.
    let send = format!("account {login} send (dry run)");
    if p.has("Mail.Send") {
        let mut detail = format!(
            "the token carries Mail.Send for {}; Graph has no dry run of sendMail, so `graphgate \
             send-test --from {login} --to ADDRESS` proves it",
            account.mailbox
        );
        if p.kind() == "application" {
            detail.push_str(
                " (Exchange RBAC for Applications or an application access policy can still \
                 refuse this mailbox; only a send shows it)",
            );
        }
        report.push(Finding::ok(send, detail));
    }
    if !account.aliases.is_empty() {
        let aliases = account.aliases.join(", ");
        let what = format!("account {login} send as");
        if p.kind() == "delegated" && !p.has("Mail.Send.Shared") {
            report.push(Finding::warn(
                what,
                format!(
                    "From {aliases} cannot be verified without sending; if any is another \
                     mailbox (Send As), the token lacks Mail.Send.Shared"
                ),
                format!(
                    "for another mailbox: grant {} Send As on it in the Exchange admin center \
                     and {}",
                    account.mailbox,
                    permission_fix("delegated", &["Mail.Send.Shared"], login)
                ),
            ));
        } else {
            report.push(Finding::ok(
                what,
                format!(
                    "From {aliases}: Exchange checks Send As only when a message is sent \
                     (ErrorSendAsDenied then means: grant Send As in the Exchange admin center)"
                ),
            ));
        }
    }
}

/// GET mailFolders/inbox of the account's mailbox and of each shared one.
async fn check_reads(
    account: &Account,
    runtime: &AccountRuntime,
    graph: &GraphClient,
    report: &mut Report,
) {
    let login = &account.login;
    let inbox = WellKnownFolder::Inbox.id();
    let describe = |e: &GraphError| match e {
        GraphError::Auth(a) => a.remedy(login),
        other => other.remedy().to_string(),
    };
    match runtime.mailbox.get_folder(&inbox).await {
        Ok(f) => report.push(Finding::ok(
            format!("account {login} read probe"),
            format!(
                "GET mailFolders/inbox of {}: {} unread / {} total",
                account.mailbox, f.unread, f.total
            ),
        )),
        Err(e) => report.push(Finding::fail(
            format!("account {login} read probe"),
            format!("GET mailFolders/inbox of {}: {e}", account.mailbox),
            describe(&e),
        )),
    }
    for shared in &account.shared_mailboxes {
        let mailbox = graph.mailbox(Mailbox::User(shared.clone()), runtime.tokens.clone());
        match mailbox.get_folder(&inbox).await {
            Ok(f) => report.push(Finding::ok(
                format!("account {login} shared mailbox {shared}"),
                format!("Inbox readable: {} unread / {} total", f.unread, f.total),
            )),
            Err(e) => {
                let fix = if matches!(e.status(), Some(403) | Some(404)) {
                    format!(
                        "grant {} Full Access on {shared} in the Exchange admin center (and \
                         Mail.ReadWrite.Shared for a delegated sign-in)",
                        account.mailbox
                    )
                } else {
                    describe(&e)
                };
                report.push(Finding::fail(
                    format!("account {login} shared mailbox {shared}"),
                    e.to_string(),
                    fix,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"RS256"}"#),
            enc(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn scp_and_roles_are_read() {
        let d = token_permissions(&jwt(serde_json::json!({"scp": "Mail.ReadWrite Mail.Send"})))
            .unwrap();
        assert_eq!(d.kind(), "delegated");
        assert!(d.has("mail.send") && !d.has("Mail.Send.Shared"));
        let a = token_permissions(&jwt(serde_json::json!({"roles": ["Mail.Send"]}))).unwrap();
        assert_eq!(a, Permissions::Application(vec!["Mail.Send".into()]));
        assert!(token_permissions("opaque").is_none());
        assert!(token_permissions(&jwt(serde_json::json!({"aud": "x"}))).is_none());
    }
}
