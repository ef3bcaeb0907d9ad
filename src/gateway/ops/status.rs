//! What `graphgate status` and the console's dashboard say about each
//! account: ONLINE or OFFLINE (with the reason and its remedy), token
//! expiry, the Inbox counts one Graph read gives. Checking an account
//! records what it found (`accounts.state`, `last_error`), as a sign-in
//! or a delivery would.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::account::AccountRuntime;
use crate::auth::EntraClient;
use crate::graph::{GraphClient, GraphError, WellKnownFolder};
use crate::store::{Account, AccountState, Store, StoreKey};

#[derive(Debug, Serialize)]
pub struct AccountStatus {
    pub login: String,
    pub mailbox: String,
    /// "online" or "offline".
    pub state: &'static str,
    /// Unix seconds when the current access token expires.
    pub token_expires_at: Option<i64>,
    pub inbox_unread: Option<u64>,
    pub inbox_total: Option<u64>,
    /// What went wrong and how to fix it.
    pub error: Option<String>,
    /// What a POP3 DELE does at QUIT (`pop3.on_delete`, docs/pop3.md).
    pub pop3_on_delete: String,
}

pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Check one account with one Graph read (see the module comment).
pub async fn check(
    account: Account,
    store: &Store,
    key: &StoreKey,
    entra: Result<&Arc<EntraClient>, &crate::auth::AuthError>,
    graph: &GraphClient,
) -> AccountStatus {
    let mut status = AccountStatus {
        login: account.login.clone(),
        mailbox: account.mailbox.clone(),
        state: "offline",
        token_expires_at: None,
        inbox_unread: None,
        inbox_total: None,
        error: account.last_error.clone(),
        pop3_on_delete: String::new(),
    };
    let entra = match entra {
        Ok(e) => e.clone(),
        Err(e) => {
            status.error = Some(sentence(&e.to_string(), &e.remedy(&account.login)));
            return status;
        }
    };
    let id = account.id;
    let login = account.login.clone();
    // Known to be OFFLINE (a refused refresh, with its AADSTS reason): only
    // Entra's answer to a refresh changes that, not a Graph call made with
    // the access token cached from before (Entra honours it until it
    // expires, though the grant is gone).
    let known_offline = account.state == AccountState::Offline && account.last_error.is_some();
    let runtime = match AccountRuntime::open(account, store, key, entra, graph) {
        Ok(r) => r,
        Err(e) => {
            let text = sentence(&e.to_string(), &e.remedy(&login));
            let _ = store.set_account_state(id, AccountState::Offline, Some(&text));
            status.error = Some(text);
            return status;
        }
    };
    if known_offline && let Err(e) = runtime.tokens.check().await {
        if e.requires_login() {
            let text = sentence(&e.to_string(), &e.remedy(&login));
            let _ = store.set_account_state(id, AccountState::Offline, Some(&text));
            status.error = Some(text);
        }
        return status;
    }
    let folders = runtime.mailbox.list_folders().await;
    if let Ok(token) = runtime.tokens.access_token().await {
        status.token_expires_at = Some(unix(token.expires_at));
    }
    match folders {
        Ok(folders) => {
            if let Some(inbox) = folders
                .iter()
                .find(|f| f.well_known == Some(WellKnownFolder::Inbox))
            {
                status.inbox_unread = Some(inbox.unread);
                status.inbox_total = Some(inbox.total);
            }
            status.state = "online";
            status.error = None;
            let _ = store.set_account_state(id, AccountState::Online, None);
        }
        Err(e) => {
            let text = describe(&e, &login);
            if matches!(&e, GraphError::Auth(a) if a.requires_login()) || !e.is_transient() {
                let _ = store.set_account_state(id, AccountState::Offline, Some(&text));
            } else {
                // Transient trouble: the account is fine, Graph is not.
                status.state = "online";
            }
            status.error = Some(text);
        }
    }
    status
}

fn describe(error: &GraphError, login: &str) -> String {
    match error {
        GraphError::Auth(a) => sentence(&a.to_string(), &a.remedy(login)),
        other => sentence(&other.to_string(), other.remedy()),
    }
}

/// "What happened. What to do." without doubled full stops.
pub fn sentence(what: &str, remedy: &str) -> String {
    format!("{}. {remedy}", what.trim_end_matches('.'))
}
