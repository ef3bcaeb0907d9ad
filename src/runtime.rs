//! The gateway's accounts at run time: each account's [`AccountRuntime`]
//! (token source + Graph mailbox), opened on first use and kept.
//!
//! An account whose grant was revoked is evicted and marked OFFLINE with
//! the sentence that fixes it; the next use opens it again from the store,
//! so a `graphgate login` run in another process (which writes new tokens)
//! brings it back without restarting the gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::account::AccountRuntime;
use crate::auth::{AuthError, EntraClient};
use crate::graph::GraphClient;
use crate::store::{AccountId, AccountState, Store, StoreKey};

pub struct Accounts {
    store: Store,
    key: StoreKey,
    /// The Entra ID client, or why the configuration gives none.
    entra: Result<Arc<EntraClient>, String>,
    graph: GraphClient,
    open: Mutex<HashMap<AccountId, Arc<AccountRuntime>>>,
    /// The store's sign-out count when `open` was last emptied for it.
    sign_outs: std::sync::atomic::AtomicI64,
}

impl Accounts {
    pub fn new(
        store: Store,
        key: StoreKey,
        entra: Result<Arc<EntraClient>, String>,
        graph: GraphClient,
    ) -> Arc<Accounts> {
        Arc::new(Accounts {
            key,
            entra,
            graph,
            open: Mutex::new(HashMap::new()),
            sign_outs: std::sync::atomic::AtomicI64::new(store.sign_out_generation().unwrap_or(0)),
            store,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn graph(&self) -> &GraphClient {
        &self.graph
    }

    /// The account's runtime, opened if needed; the error is a sentence
    /// saying what is wrong and what to do.
    pub fn get(&self, id: AccountId) -> Result<Arc<AccountRuntime>, String> {
        self.forget_signed_out();
        if let Some(rt) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(rt.clone());
        }
        let account = self
            .store
            .account_by_id(id)
            .map_err(|e| format!("the store failed: {e}"))?
            .ok_or_else(|| format!("account #{} no longer exists", id.0))?;
        let entra = self.entra.clone()?;
        let login = account.login.clone();
        let runtime = AccountRuntime::open(account, &self.store, &self.key, entra, &self.graph)
            .map_err(|e| sentence(&login, &e))?;
        let runtime = Arc::new(runtime);
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, runtime.clone());
        Ok(runtime)
    }

    /// A sign-out in another process (`graphgate logout`, `accounts
    /// remove`) since the last look: drop every runtime held open, so
    /// each account is opened again from the store — a signed-out one
    /// then fails with the fix instead of using the tokens held here.
    /// One indexed read of one row per use.
    fn forget_signed_out(&self) {
        use std::sync::atomic::Ordering;
        let Ok(now) = self.store.sign_out_generation() else {
            return;
        };
        if self.sign_outs.swap(now, Ordering::AcqRel) != now {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            tracing::info!(
                held = open.len(),
                "an account was signed out or removed: reopening accounts from the store"
            );
            open.clear();
        }
    }

    /// Prove every signed-in account's grant (see [`TokenSource::check`]):
    /// a dead one goes OFFLINE with its remedy now, not when a message
    /// waits for it. Transient failures (network) are only logged. An
    /// OFFLINE account that still has tokens is checked too: when Entra
    /// accepts its refresh again (the outage is over, the grant was
    /// restored) it comes back ONLINE; a signed-out one is left alone.
    ///
    /// [`TokenSource::check`]: crate::auth::TokenSource::check
    pub async fn check_all(&self) {
        let Ok(accounts) = self.store.accounts() else {
            return;
        };
        for account in accounts {
            let offline = account.state != AccountState::Online;
            let rt = match self.get(account.id) {
                Ok(rt) => rt,
                // Signed out or never signed in: only a login helps.
                Err(_) if offline => continue,
                Err(why) => {
                    tracing::warn!(account = %account.login, "token check: {why}");
                    continue;
                }
            };
            match rt.tokens.check().await {
                Ok(()) if offline => {
                    tracing::info!(account = %account.login, "token check: the grant works again; account ONLINE");
                    let _ = self
                        .store
                        .set_account_state(account.id, AccountState::Online, None);
                }
                Ok(()) => tracing::debug!(account = %account.login, "token check: the grant works"),
                Err(e) => {
                    let sentence = self.auth_failed(account.id, &account.login, &e);
                    tracing::warn!(account = %account.login, "token check failed: {sentence}");
                }
            }
        }
    }

    /// An authentication failure of `id`: forget its runtime so the next use
    /// reopens it from the store; when only a new sign-in helps, mark it
    /// OFFLINE with the remedy. Returns the sentence.
    pub fn auth_failed(&self, id: AccountId, login: &str, error: &AuthError) -> String {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let text = sentence(login, error);
        if error.requires_login() {
            tracing::error!(account = %login, "account OFFLINE: {text}");
            let was_online = self
                .store
                .account_by_id(id)
                .is_ok_and(|a| a.is_some_and(|a| a.state == AccountState::Online));
            let _ = self
                .store
                .set_account_state(id, AccountState::Offline, Some(&text));
            if was_online {
                crate::alerts::emit(crate::alerts::Alert {
                    event: "account_needs_sign_in",
                    account: login.to_string(),
                    text: text.clone(),
                    fix: format!("graphgate login {login}"),
                    queue_id: None,
                });
            }
        }
        text
    }
}

/// "What happened. What to do." for `login`.
pub fn sentence(login: &str, error: &AuthError) -> String {
    format!(
        "{login}: {}. {}",
        error.to_string().trim_end_matches('.'),
        error.remedy(login)
    )
}
