//! `BackendError`: what the mailbox model and IMAP need to know when the
//! remote mailbox failed a request, in five classes (plus the expired sync
//! token), each with a sentence saying what to do. Which HTTP status or
//! Graph code led to it is the backend's business (`crate::graph` maps
//! `GraphError` here in one place) and travels only in `detail`.

/// A failed request to the remote mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The message or folder no longer exists there (another client
    /// deleted or moved it).
    #[error(
        "{detail}; the item no longer exists on the server: refresh the folder (NOOP or SELECT)"
    )]
    NotFound { detail: String },
    /// The service is throttling this mailbox, after the retries allowed.
    #[error("{detail}; Microsoft is throttling this mailbox: wait a minute and try again")]
    Throttled { detail: String },
    /// The network or the service failed for now; the same request may
    /// succeed later.
    #[error("{detail}; the mail service could not be reached or failed for now: try again shortly")]
    Transient { detail: String },
    /// The service refused the request; repeating it will not help.
    #[error("{detail}; {remedy}")]
    Permanent { detail: String, remedy: String },
    /// No valid sign-in: the account must sign in again (or the app's
    /// credentials are wrong).
    #[error("{detail}; {remedy}")]
    Auth { detail: String, remedy: String },
    /// The folder's change (delta) token expired: synchronise the folder
    /// again from scratch (call again without a token).
    #[error(
        "the change token of this folder expired; the folder is synchronised again from scratch"
    )]
    SyncReset,
}

impl BackendError {
    pub fn not_found(detail: impl Into<String>) -> Self {
        BackendError::NotFound {
            detail: detail.into(),
        }
    }

    pub fn transient(detail: impl Into<String>) -> Self {
        BackendError::Transient {
            detail: detail.into(),
        }
    }

    /// A refusal with the sentence saying what to do about it.
    pub fn permanent(detail: impl Into<String>, remedy: impl Into<String>) -> Self {
        BackendError::Permanent {
            detail: detail.into(),
            remedy: remedy.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BackendError::Throttled { .. } | BackendError::Transient { .. }
        )
    }
}
