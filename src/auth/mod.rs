//! OAuth 2.0 against Microsoft Entra ID (identity platform v2): sign-in
//! flows and the token sources the Graph client uses.
//!
//! Follows "OAuth 2.0 and OpenID Connect protocols on the Microsoft identity
//! platform" (learn.microsoft.com/entra/identity-platform/v2-protocols) and
//! the RFCs it builds on (6749, 7636, 8252, 8628). Library API only: no
//! printing; progress goes through callbacks.
//!
//! Layout:
//! - [`config`]: [`AuthorityConfig`] (authority, tenant, client id,
//!   credential) and the Graph scopes.
//! - [`client`]: [`EntraClient`], the token requests (authorization code,
//!   refresh, client credentials) via the `oauth2` crate.
//! - [`device_code`]: the device authorization grant with progress events.
//! - [`loopback`]: browser sign-in with PKCE and a loopback redirect.
//! - [`assertion`]: the certificate's JWT client assertion.
//! - [`token_set`]: [`TokenSet`], [`SignedInIdentity`], [`check_identity`].
//! - [`source`]: [`RefreshingTokenSource`], [`ClientCredentialsTokenSource`].
//! - [`error`]: [`AuthError`] with `remedy()` and `requires_login()`.
//!
//! Typical use: build an [`EntraClient`] from an [`AuthorityConfig`]; sign
//! in with `start_device_code` + `poll_device_code` or with
//! [`LoopbackLogin::start`] → open `authorize_url()` → `finish` (wrap it in
//! a timeout: it waits for the browser as long as it takes); check the
//! [`TokenSet`] with [`check_identity`]; store it; then hand a
//! [`RefreshingTokenSource`] (with a [`TokenPersister`] writing to the
//! store) to the Graph client. App-only accounts use
//! [`ClientCredentialsTokenSource`].

use std::fmt;
use std::time::SystemTime;

use futures::future::BoxFuture;

use crate::secret::Secret;

pub mod assertion;
pub mod client;
pub mod config;
pub mod device_code;
pub mod error;
pub mod http;
pub mod loopback;
pub mod source;
pub mod token_set;
#[cfg(test)]
mod wire_tests;

pub use client::{AuthorizationRequest, EntraClient};
pub use config::{AssertionAlgorithm, AuthorityConfig, ClientCredential};
pub use device_code::{DeviceCodeEvent, DeviceCodeGrant, DevicePoll};
pub use error::{AuthError, EntraErrorResponse};
pub use loopback::LoopbackLogin;
pub use source::{ClientCredentialsTokenSource, RefreshingTokenSource, TokenPersister};
pub use token_set::{SignedInIdentity, TokenSet, check_identity};

/// A bearer token for Graph and when it stops being valid.
#[derive(Clone)]
pub struct AccessToken {
    pub token: Secret<String>,
    pub expires_at: SystemTime,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where the Graph client gets its bearer tokens. One per account.
pub trait TokenSource: Send + Sync {
    /// A token valid for at least a little while (refreshing if needed).
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>>;

    /// Graph rejected `token` with 401: drop it so the next call refreshes.
    fn invalidate(&self, token: &AccessToken);

    /// Prove the grant still works by redeeming it now (a refresh, or a
    /// new client-credentials token), whatever the cached token's age:
    /// finds a revoked grant before a user does, and keeps a rarely used
    /// refresh token from expiring by inactivity (AADSTS700082).
    fn check(&self) -> BoxFuture<'_, Result<(), AuthError>> {
        Box::pin(async { self.access_token().await.map(|_| ()) })
    }
}
