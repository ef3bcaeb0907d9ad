//! The admin verbs, one implementation for both front ends: the command
//! line (`graphgate accounts|queue|status|login`, in `cli/`) prints what
//! they return, the web console (`admin::console`) renders it. A rule
//! (which spool states may be dropped, what a valid address is, what
//! "ONLINE" means) lives here once.

pub mod accounts;
pub mod consent;
pub mod queue;
pub mod signin;
pub mod status;

use crate::store::StoreError;

/// Why an admin verb refused or failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The request itself is wrong (a bad address, a message in the
    /// wrong state); nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpsError {
    pub(crate) fn refused(text: impl Into<String>) -> OpsError {
        OpsError::Refused(text.into())
    }
}
