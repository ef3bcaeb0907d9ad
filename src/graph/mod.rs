//! The production Microsoft Graph mail client: the one way graphgate talks
//! to Graph (v1.0 mail API: mailFolders, messages, delta, `$value`,
//! `$batch`, sendMail, upload sessions), used unchanged against Microsoft
//! and against the simulator (the base URL is configuration). It follows
//! Microsoft's "Outlook mail API overview", "Microsoft Graph throttling
//! guidance" and "JSON batching" documents as summarised in graph-facts.md,
//! and shares no code with `crate::sim`.
//!
//! Layout:
//! - `backend`: re-exports `crate::backend` (the `MailBackend` trait and
//!   its domain types moved there); [`mailbox`] implements it and maps
//!   `GraphError` to `BackendError`.
//! - [`client`]: `GraphClient` (connection pool, headers, per-mailbox
//!   concurrency, retries, counters) and the per-mailbox handle.
//! - [`folders`], [`messages`], [`bodies`], [`batch`], [`send`]: the operations.
//! - [`decode`]: pure, panic-free JSON decoders (fuzzed).
//! - [`error`]: `GraphError` with remedies.
//! - [`trace`]: the optional, redacted record of every exchange.

pub mod append;
pub mod batch;
pub mod bodies;
pub mod client;
pub mod decode;
pub mod error;
pub mod folders;
pub mod mailbox;
pub mod messages;
pub mod send;
pub mod trace;

use serde::{Deserialize, Serialize};

/// The trait and its domain types live in `crate::backend`; these
/// re-exports keep `crate::graph::{MailBackend, RemoteFolder, ...}` paths
/// working.
pub use crate::backend;
pub use crate::backend::{
    Absent, AppendOptions, BackendError, DeltaChange, DeltaLink, DeltaSync, FlagStatus, FlagUpdate,
    FolderChange, FolderSync, MailAddress, MailBackend, OutgoingAttachment, RemoteFolder,
    RemoteFolderId, RemoteMessage, RemoteMessageId, WellKnownFolder,
};
pub use client::{GraphClient, GraphCounters, GraphMailbox};
pub use error::{ApiError, GraphError, GraphErrorKind};

/// How the client retries throttled and failed requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The longest `Retry-After` honoured, in seconds (longer ones are capped).
    pub max_retry_after_s: u64,
    /// Give up when the waits of one request would add up to more than this.
    pub max_total_wait_s: u64,
    /// First backoff without `Retry-After`, doubled each attempt, jittered.
    pub base_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            max_retry_after_s: 60,
            max_total_wait_s: 180,
            base_backoff_ms: 500,
        }
    }
}

/// Settings of the Graph client. Defaults are Microsoft's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphConfig {
    /// `https://graph.microsoft.com` (or the simulator's URL).
    pub base_url: String,
    /// API version path segment.
    pub version: String,
    /// Requests in flight per mailbox (Graph's MailboxConcurrency limit: 4).
    pub concurrency_per_mailbox: usize,
    /// Timeout of one HTTP request, in seconds.
    pub request_timeout_s: u64,
    /// Include hidden folders when listing.
    pub include_hidden_folders: bool,
    /// Page size asked of delta (`Prefer: odata.maxpagesize`).
    pub delta_page_size: u32,
    /// Largest response body accepted, in bytes (raw MIME included).
    pub max_response_bytes: usize,
    pub retry: RetryPolicy,
    /// Append every exchange, redacted, to this file ([`trace`]).
    pub trace: Option<std::path::PathBuf>,
    /// The cloud offers message delta (not in 21Vianet's): without it a
    /// folder sync is a full listing, which the mailbox model diffs.
    pub message_delta: bool,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            base_url: "https://graph.microsoft.com".into(),
            version: "v1.0".into(),
            concurrency_per_mailbox: 4,
            request_timeout_s: 120,
            include_hidden_folders: false,
            delta_page_size: 500,
            max_response_bytes: 200 * 1024 * 1024,
            retry: RetryPolicy::default(),
            trace: None,
            message_delta: true,
        }
    }
}

/// Which mailbox a handle addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mailbox {
    /// The signed-in user's own mailbox (`/me`; delegated tokens only).
    Me,
    /// `/users/{upn}`: app-only accounts and shared mailboxes.
    User(String),
}

impl Mailbox {
    /// The path segment(s) after the version: `me` or `users/{upn}`.
    pub fn path(&self) -> String {
        match self {
            Mailbox::Me => "me".into(),
            Mailbox::User(upn) => format!("users/{}", client::encode_segment(upn)),
        }
    }
}
