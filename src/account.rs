//! A local account at run time: its sealed tokens in the store, the token
//! source that refreshes them (persisting every rotated refresh token before
//! the new access token is used), and its Graph mailbox handle.
//!
//! This is where the store, `auth/` and `graph/` meet; the protocol
//! front-ends get an [`AccountRuntime`] and never see a token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::client::EntraClient;
use crate::auth::config::ClientCredential;
use crate::auth::source::{ClientCredentialsTokenSource, RefreshingTokenSource, TokenPersister};
use crate::auth::token_set::SignedInIdentity;
use crate::auth::{AuthError, TokenSet, TokenSource};
use crate::graph::{GraphClient, GraphMailbox, Mailbox};
use crate::secret::Secret;
use crate::store::{Account, AccountId, AccountState, AuthProfile, Store, StoreKey};

/// The token set as sealed into the store (JSON, then XChaCha20-Poly1305).
#[derive(Serialize, Deserialize)]
struct StoredTokens {
    access_token: String,
    refresh_token: Option<String>,
    /// Unix seconds.
    expires_at: i64,
    scopes: Vec<String>,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    tid: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Seal `tokens` into the store for `account` (one statement: a crash keeps
/// either the old or the new set, never none).
pub fn save_tokens(
    store: &Store,
    key: &StoreKey,
    account: AccountId,
    tokens: &TokenSet,
) -> Result<(), AuthError> {
    let json = token_json(tokens)?;
    store
        .put_tokens(account, key, json.0.expose(), Some(json.1))
        .map_err(|e| AuthError::Config(format!("cannot store the tokens: {e}")))
}

/// Save rotated tokens over the account's stored ones — never for an
/// account signed out meanwhile (`graphgate logout` deleted its tokens,
/// `accounts remove` the account): that is [`AuthError::SignedOut`], and
/// the refresh token Entra just issued is dropped.
fn save_rotated_tokens(
    store: &Store,
    key: &StoreKey,
    account: AccountId,
    tokens: &TokenSet,
) -> Result<(), AuthError> {
    let json = token_json(tokens)?;
    match store.put_tokens_if_present(account, key, json.0.expose(), Some(json.1)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(AuthError::SignedOut(format!("account #{}", account.0))),
        Err(e) => Err(AuthError::Config(format!("cannot store the tokens: {e}"))),
    }
}

/// The sealed form's plaintext (JSON) and its expiry.
fn token_json(tokens: &TokenSet) -> Result<(Secret<Vec<u8>>, i64), AuthError> {
    let identity = tokens.identity.clone().unwrap_or_default();
    let stored = StoredTokens {
        access_token: tokens.access_token.expose().clone(),
        refresh_token: tokens.refresh_token.as_ref().map(|r| r.expose().clone()),
        expires_at: unix(tokens.expires_at),
        scopes: tokens.scopes.clone(),
        oid: identity.oid,
        tid: identity.tid,
        username: identity.preferred_username,
        name: identity.name,
    };
    let json =
        Secret::new(serde_json::to_vec(&stored).map_err(|e| AuthError::Protocol(e.to_string()))?);
    Ok((json, stored.expires_at))
}

/// The account's tokens from the store, if it ever signed in.
pub fn load_tokens(
    store: &Store,
    key: &StoreKey,
    account: AccountId,
) -> Result<Option<TokenSet>, AuthError> {
    let Some(json) = store
        .tokens(account, key)
        .map_err(|e| AuthError::Config(e.to_string()))?
    else {
        return Ok(None);
    };
    let stored: StoredTokens = serde_json::from_slice(json.expose())
        .map_err(|e| AuthError::Protocol(format!("stored tokens are unreadable: {e}")))?;
    let expires_at = UNIX_EPOCH + Duration::from_secs(stored.expires_at.max(0) as u64);
    Ok(Some(TokenSet {
        access_token: Secret::new(stored.access_token),
        refresh_token: stored.refresh_token.map(Secret::new),
        expires_at,
        scopes: stored.scopes,
        identity: Some(SignedInIdentity {
            oid: stored.oid,
            tid: stored.tid,
            preferred_username: stored.username,
            name: stored.name,
        }),
    }))
}

/// Persists rotated tokens into the store and keeps the account ONLINE.
struct StorePersister {
    store: Store,
    key: StoreKey,
    account: AccountId,
}

impl TokenPersister for StorePersister {
    fn persist(&self, tokens: &TokenSet) -> Result<(), AuthError> {
        save_rotated_tokens(&self.store, &self.key, self.account, tokens)?;
        let _ = self
            .store
            .set_account_state(self.account, AccountState::Online, None);
        Ok(())
    }
}

/// The Entra ID client an account uses: the configuration's, or — for an
/// app-only account with its own app registration — one built from it
/// (same authority, the account's client id, tenant and credential files).
pub fn entra_for(
    account: &Account,
    entra: &Arc<EntraClient>,
) -> Result<Arc<EntraClient>, AuthError> {
    let Some(own) = &account.app_credential else {
        return Ok(entra.clone());
    };
    if account.auth_profile != AuthProfile::AppOnly {
        return Ok(entra.clone());
    }
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| {
            AuthError::Config(format!(
                "{}'s {what} {}: {e}; fix it with `graphgate accounts add {} --app-only …` \
                 or make the file readable",
                account.login,
                path.display(),
                account.login
            ))
        })
    };
    let mut config = entra.config().clone();
    if let Some(id) = &own.client_id {
        config.client_id = id.clone();
    }
    if let Some(tenant) = &own.tenant {
        config.tenant = tenant.clone();
    }
    config.credential = match (
        &own.client_secret_file,
        &own.certificate_file,
        &own.private_key_file,
    ) {
        (Some(secret), None, None) => ClientCredential::Secret {
            secret: Secret::new(read("client secret file", secret)?.trim().to_string()),
        },
        (None, Some(cert), Some(key)) => ClientCredential::Certificate {
            cert_pem: read("certificate file", cert)?,
            key_pem: Secret::new(read("private key file", key)?),
            algorithm: if own.rs256 {
                crate::auth::AssertionAlgorithm::RS256
            } else {
                crate::auth::AssertionAlgorithm::PS256
            },
        },
        (None, None, None) => config.credential,
        _ => {
            return Err(AuthError::Config(format!(
                "{} has an incomplete app credential: give a client secret file, or a \
                 certificate file and its private key file",
                account.login
            )));
        }
    };
    Ok(Arc::new(EntraClient::new(config)?))
}

/// One account, ready to talk to Graph.
pub struct AccountRuntime {
    pub account: Account,
    pub tokens: Arc<dyn TokenSource>,
    pub mailbox: GraphMailbox,
}

impl AccountRuntime {
    /// Build the runtime of `account` from its stored tokens (delegated) or
    /// the app's credential (app-only). A delegated account that never
    /// signed in is an error naming the command that fixes it.
    pub fn open(
        account: Account,
        store: &Store,
        key: &StoreKey,
        entra: Arc<EntraClient>,
        graph: &GraphClient,
    ) -> Result<AccountRuntime, AuthError> {
        let (tokens, mailbox): (Arc<dyn TokenSource>, Mailbox) = match account.auth_profile {
            AuthProfile::Delegated => {
                let Some(set) = load_tokens(store, key, account.id)? else {
                    return Err(AuthError::Config(format!(
                        "{} has never signed in; run `graphgate login {}`",
                        account.login, account.login
                    )));
                };
                let persister = Arc::new(StorePersister {
                    store: store.clone(),
                    key: key.clone(),
                    account: account.id,
                });
                (
                    Arc::new(RefreshingTokenSource::new(entra, set, persister)),
                    Mailbox::Me,
                )
            }
            AuthProfile::AppOnly => (
                Arc::new(ClientCredentialsTokenSource::new(entra_for(
                    &account, &entra,
                )?)),
                Mailbox::User(account.mailbox.clone()),
            ),
        };
        // The account's own mailbox shares one concurrency limit whether
        // it is reached as `/me` or as `/users/{address}`.
        let mailbox = match mailbox {
            Mailbox::Me => graph.own_mailbox(&account.mailbox, tokens.clone()),
            other => graph.mailbox(other, tokens.clone()),
        };
        Ok(AccountRuntime {
            account,
            tokens,
            mailbox,
        })
    }
}

/// Open every account and make sure it can get a token, recording ONLINE
/// or OFFLINE (with the remedy sentence) in the store. Accounts that fail
/// are reported and left out; the others keep working.
///
/// An account the store already knows to be OFFLINE (with its reason: a
/// refused refresh, AADSTS code and all) stays so until Entra says
/// otherwise: it is proven by a refresh, not by the access token cached
/// from before, which Entra keeps honouring until it expires even after
/// it revoked the grant ("Refresh tokens in the Microsoft identity
/// platform", learn.microsoft.com/entra/identity-platform/refresh-tokens:
/// revocation acts on refresh tokens; access tokens live out their
/// lifetime). A start-up that cannot reach Entra keeps the known reason.
pub async fn open_accounts(
    store: &Store,
    key: &StoreKey,
    entra: Arc<EntraClient>,
    graph: &GraphClient,
) -> Result<Vec<AccountRuntime>, crate::store::StoreError> {
    let mut ready = Vec::new();
    for account in store.accounts()? {
        let (id, login) = (account.id, account.login.clone());
        let known_offline = account.state == AccountState::Offline && account.last_error.is_some();
        let opened = AccountRuntime::open(account, store, key, entra.clone(), graph);
        let checked = match opened {
            Ok(runtime) if known_offline => runtime.tokens.check().await.map(|()| runtime),
            Ok(runtime) => runtime.tokens.access_token().await.map(|_| runtime),
            Err(e) => Err(e),
        };
        match checked {
            Ok(runtime) => {
                store.set_account_state(id, AccountState::Online, None)?;
                tracing::info!(account = %login, "account online");
                ready.push(runtime);
            }
            Err(e) if known_offline && !e.requires_login() => {
                // Entra did not answer about the grant: what it said last
                // (kept in the store) still holds.
                tracing::error!(
                    account = %login,
                    "account still OFFLINE: could not check it again ({e})"
                );
            }
            Err(e) => {
                let text = format!(
                    "{}. {}",
                    e.to_string().trim_end_matches('.'),
                    e.remedy(&login)
                );
                tracing::error!(account = %login, "account OFFLINE: {text}");
                store.set_account_state(id, AccountState::Offline, Some(&text))?;
            }
        }
    }
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_the_sealed_store() {
        let store = Store::open_in_memory().unwrap();
        let account = store
            .add_account(&crate::store::NewAccount::delegated("a@example.com", "p"))
            .unwrap();
        let key = StoreKey::from_bytes([1; 32]);
        assert!(load_tokens(&store, &key, account.id).unwrap().is_none());
        let set = TokenSet {
            access_token: Secret::new("AT".into()),
            refresh_token: Some(Secret::new("RT".into())),
            expires_at: UNIX_EPOCH + Duration::from_secs(2_000_000_000),
            scopes: vec!["Mail.Send".into()],
            identity: Some(SignedInIdentity {
                oid: "o".into(),
                tid: "t".into(),
                preferred_username: Some("a@example.com".into()),
                name: None,
            }),
        };
        save_tokens(&store, &key, account.id, &set).unwrap();
        let back = load_tokens(&store, &key, account.id).unwrap().unwrap();
        assert_eq!(back.refresh_token.as_ref().unwrap().expose(), "RT");
        assert_eq!(back.expires_at, set.expires_at);
        assert_eq!(back.username(), Some("a@example.com"));
        // Another key cannot read them.
        let other = StoreKey::from_bytes([2; 32]);
        assert!(load_tokens(&store, &other, account.id).is_err());
    }
}
