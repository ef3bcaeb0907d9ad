//! Token sources the Graph client draws bearer tokens from: a delegated
//! account's refreshing source and the app-only client-credentials source.
//!
//! Follows "Refresh tokens in the Microsoft identity platform"
//! (learn.microsoft.com/entra/identity-platform/refresh-tokens): every
//! refresh returns a new refresh token that must be stored. So the source
//! runs at most one refresh at a time (concurrent callers wait for it and
//! share its result), and hands the rotated tokens to a [`TokenPersister`]
//! BEFORE giving out the new access token: the store never lacks the
//! current refresh token.

use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::Mutex;

use super::client::EntraClient;
use super::{AccessToken, AuthError, TokenSet, TokenSource};
use crate::secret::Secret;

/// Refresh when the access token has less than this left.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where rotated tokens are saved (the encrypted token store).
pub trait TokenPersister: Send + Sync {
    fn persist(&self, tokens: &TokenSet) -> Result<(), AuthError>;
}

impl<F> TokenPersister for F
where
    F: Fn(&TokenSet) -> Result<(), AuthError> + Send + Sync,
{
    fn persist(&self, tokens: &TokenSet) -> Result<(), AuthError> {
        self(tokens)
    }
}

/// Shared machinery: the current tokens behind an async mutex (the
/// single-flight), a generation counter, and the token Graph rejected.
struct Cache {
    tokens: Mutex<Option<TokenSet>>,
    /// Bumped after each acquisition; a caller that waited for the lock
    /// and sees a newer generation takes the fresh token as is.
    generation: AtomicU64,
    rejected: StdMutex<Option<Secret<String>>>,
    margin: Duration,
    /// The margin applied to the current token: `margin`, or half the
    /// token's lifetime if that is shorter (a short-lived token would
    /// otherwise be refreshed on every call), in milliseconds.
    effective_margin_ms: AtomicU64,
}

impl Cache {
    fn new(tokens: Option<TokenSet>, margin: Duration) -> Cache {
        Cache {
            tokens: Mutex::new(tokens),
            generation: AtomicU64::new(0),
            rejected: StdMutex::new(None),
            margin,
            effective_margin_ms: AtomicU64::new(millis(margin)),
        }
    }

    fn set_margin(&mut self, margin: Duration) {
        self.margin = margin;
        self.effective_margin_ms = AtomicU64::new(millis(margin));
    }

    fn effective_margin(&self) -> Duration {
        Duration::from_millis(self.effective_margin_ms.load(Ordering::Acquire))
    }

    fn is_rejected(&self, tokens: &TokenSet) -> bool {
        self.rejected
            .lock()
            .map(|r| r.as_ref() == Some(&tokens.access_token))
            .unwrap_or(false)
    }

    fn reject(&self, token: &AccessToken) {
        if let Ok(mut r) = self.rejected.lock() {
            *r = Some(token.token.clone());
        }
    }

    /// The cached token if usable, else `acquire(previous)` under the lock.
    async fn get<F, Fut>(&self, acquire: F) -> Result<AccessToken, AuthError>
    where
        F: FnOnce(Option<TokenSet>) -> Fut,
        Fut: Future<Output = Result<TokenSet, AuthError>>,
    {
        let seen = self.generation.load(Ordering::Acquire);
        let mut guard = self.tokens.lock().await;
        if let Some(tokens) = guard.as_ref() {
            let fresh_from_other =
                self.generation.load(Ordering::Acquire) != seen && tokens.valid_for(Duration::ZERO);
            if !self.is_rejected(tokens)
                && (fresh_from_other || tokens.valid_for(self.effective_margin()))
            {
                return Ok(tokens.bearer());
            }
        }
        let tokens = acquire(guard.clone()).await?;
        let lifetime = tokens
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        self.effective_margin_ms
            .store(millis(self.margin.min(lifetime / 2)), Ordering::Release);
        let bearer = tokens.bearer();
        *guard = Some(tokens);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(bearer)
    }
}

impl Cache {
    /// `acquire(previous)` under the lock, whatever the cached token's age.
    async fn force<F, Fut>(&self, acquire: F) -> Result<(), AuthError>
    where
        F: FnOnce(Option<TokenSet>) -> Fut,
        Fut: Future<Output = Result<TokenSet, AuthError>>,
    {
        let mut guard = self.tokens.lock().await;
        let tokens = acquire(guard.clone()).await?;
        *guard = Some(tokens);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A delegated account's tokens, refreshed with its refresh token.
pub struct RefreshingTokenSource {
    client: Arc<EntraClient>,
    scopes: Vec<String>,
    persister: Arc<dyn TokenPersister>,
    cache: Cache,
}

impl RefreshingTokenSource {
    /// Start from stored `tokens` (which must hold a refresh token to be
    /// refreshable). Scopes for refreshing are the ones granted.
    pub fn new(
        client: Arc<EntraClient>,
        tokens: TokenSet,
        persister: Arc<dyn TokenPersister>,
    ) -> RefreshingTokenSource {
        let scopes = refresh_scopes(&client, &tokens);
        RefreshingTokenSource {
            client,
            scopes,
            persister,
            cache: Cache::new(Some(tokens), DEFAULT_REFRESH_MARGIN),
        }
    }

    /// Refresh when less than `margin` is left (default 5 minutes).
    pub fn with_margin(mut self, margin: Duration) -> RefreshingTokenSource {
        self.cache.set_margin(margin);
        self
    }

    /// The current tokens (e.g. to show who is signed in).
    pub async fn tokens(&self) -> Option<TokenSet> {
        self.cache.tokens.lock().await.clone()
    }

    /// Redeem the refresh token, persist the answer, then hand it out. If
    /// persisting fails the new tokens are dropped and the error returned;
    /// the next call refreshes again with the refresh token the store has.
    async fn refresh(&self, previous: Option<TokenSet>) -> Result<TokenSet, AuthError> {
        let Some(refresh_token) = previous.as_ref().and_then(|t| t.refresh_token.clone()) else {
            return Err(AuthError::Entra {
                code: None,
                error: "invalid_grant".into(),
                description: "no refresh token stored".into(),
                trace_id: None,
                correlation_id: None,
            });
        };
        let mut tokens = self
            .client
            .refresh(&refresh_token, &self.scopes)
            .await
            .inspect_err(|e| crate::metrics::get().token_refresh(&e.metric_label()))?;
        crate::metrics::get().token_refresh("ok");
        if tokens.identity.is_none() {
            tokens.identity = previous.and_then(|p| p.identity);
        }
        self.persister.persist(&tokens)?;
        Ok(tokens)
    }
}

/// The scopes to ask for on refresh: the granted ones (Entra's `scope`
/// lists only the resource's), plus `offline_access openid profile` as MSAL
/// does, so that each answer keeps carrying a refresh token and an id_token.
fn refresh_scopes(client: &EntraClient, tokens: &TokenSet) -> Vec<String> {
    let mut scopes = if tokens.scopes.is_empty() {
        client.config().delegated_scopes(false)
    } else {
        tokens.scopes.clone()
    };
    for base in ["openid", "profile", "offline_access"] {
        if !scopes.iter().any(|s| s.eq_ignore_ascii_case(base)) {
            scopes.insert(0, base.to_string());
        }
    }
    scopes
}

impl TokenSource for RefreshingTokenSource {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.cache.get(|previous| self.refresh(previous)))
    }

    fn check(&self) -> BoxFuture<'_, Result<(), AuthError>> {
        Box::pin(self.cache.force(|previous| self.refresh(previous)))
    }

    fn invalidate(&self, token: &AccessToken) {
        self.cache.reject(token);
    }
}

/// App-only tokens from the client credentials grant, re-acquired ahead of
/// expiry.
pub struct ClientCredentialsTokenSource {
    client: Arc<EntraClient>,
    cache: Cache,
}

impl ClientCredentialsTokenSource {
    pub fn new(client: Arc<EntraClient>) -> ClientCredentialsTokenSource {
        ClientCredentialsTokenSource {
            client,
            cache: Cache::new(None, DEFAULT_REFRESH_MARGIN),
        }
    }

    /// Re-acquire when less than `margin` is left (default 5 minutes).
    pub fn with_margin(mut self, margin: Duration) -> ClientCredentialsTokenSource {
        self.cache.set_margin(margin);
        self
    }
}

impl ClientCredentialsTokenSource {
    async fn acquire(&self) -> Result<TokenSet, AuthError> {
        let result = self.client.client_credentials().await;
        crate::metrics::get().token_refresh(&match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.metric_label(),
        });
        result
    }
}

impl TokenSource for ClientCredentialsTokenSource {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.cache.get(|_| self.acquire()))
    }

    fn check(&self) -> BoxFuture<'_, Result<(), AuthError>> {
        Box::pin(self.cache.force(|_| self.acquire()))
    }

    fn invalidate(&self, token: &AccessToken) {
        self.cache.reject(token);
    }
}
