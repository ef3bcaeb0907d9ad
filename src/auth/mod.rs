//! OAuth 2.0 against Microsoft Entra ID (identity platform v2): the token
//! source the Graph client uses. (Flows: work in progress.)

use std::fmt;
use std::time::SystemTime;

use futures::future::BoxFuture;

use crate::secret::Secret;

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

/// Errors of the auth layer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Other(String),
}

/// Where the Graph client gets its bearer tokens. One per account.
pub trait TokenSource: Send + Sync {
    /// A token valid for at least a little while (refreshing if needed).
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>>;

    /// Graph rejected `token` with 401: drop it so the next call refreshes.
    fn invalidate(&self, token: &AccessToken);
}
