//! The end of a delegated sign-in, whichever way the tokens came (device
//! code or browser, from `graphgate login` or the console's "Sign in with
//! Microsoft"): the signed-in user must be the account's mailbox owner,
//! the tokens are sealed into the store, the account's queued mail is due
//! at once, and one Graph read proves it all works.

use std::sync::Arc;

use super::OpsError;
use crate::account::{AccountRuntime, save_tokens};
use crate::auth::{AuthError, EntraClient, TokenSet, check_identity};
use crate::graph::{GraphClient, WellKnownFolder};
use crate::store::{Account, AccountState, Store, StoreKey};

/// A finished sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Who signed in (the token's username).
    pub who: String,
    pub inbox_unread: u64,
    pub inbox_total: u64,
    /// Queued messages of the account made due now.
    pub due_now: usize,
}

/// "What happened. What to do." for an Entra error of `login`.
pub fn auth_sentence(login: &str, e: &AuthError) -> String {
    format!(
        "{}. {}",
        e.to_string().trim_end_matches('.'),
        e.remedy(login)
    )
}

/// Keep `tokens` for `account` and prove them with one Graph read. A
/// different user than the mailbox owner changes nothing.
pub async fn complete_delegated(
    store: &Store,
    key: &StoreKey,
    entra: Arc<EntraClient>,
    graph: &GraphClient,
    account: &Account,
    tokens: TokenSet,
) -> Result<SignedIn, OpsError> {
    if let Err(e) = check_identity(&account.mailbox, &tokens) {
        return Err(OpsError::refused(format!(
            "user mismatch: {}. Nothing was changed for {}",
            auth_sentence(&account.login, &e),
            account.login
        )));
    }
    save_tokens(store, key, account.id, &tokens)
        .map_err(|e| OpsError::refused(auth_sentence(&account.login, &e)))?;
    store.set_account_state(account.id, AccountState::Online, None)?;
    let due_now = match store.spool_due_now(account.id) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot make the queued mail due");
            0
        }
    };
    let who = tokens.username().unwrap_or(&account.mailbox).to_string();
    let fresh = store.account(&account.login)?.unwrap_or(account.clone());
    let runtime = AccountRuntime::open(fresh, store, key, entra, graph)
        .map_err(|e| OpsError::refused(auth_sentence(&account.login, &e)))?;
    match runtime.mailbox.list_folders().await {
        Ok(folders) => {
            let (inbox_unread, inbox_total) = folders
                .iter()
                .find(|f| f.well_known == Some(WellKnownFolder::Inbox))
                .map_or((0, 0), |f| (f.unread, f.total));
            Ok(SignedIn {
                who,
                inbox_unread,
                inbox_total,
                due_now,
            })
        }
        Err(e) => {
            let text = format!(
                "signed in as {who}, but Graph refused to read the mailbox: {e}. {}",
                e.remedy()
            );
            store.set_account_state(account.id, AccountState::Offline, Some(&text))?;
            Err(OpsError::refused(text))
        }
    }
}
