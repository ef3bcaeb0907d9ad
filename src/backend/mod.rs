//! `MailBackend`: the one interface between graphgate and a remote mailbox,
//! in domain types only (no HTTP, no Graph JSON) and with its own error,
//! [`BackendError`], so the mailbox model and IMAP decide on what went
//! wrong (not found, throttled, try again, refused, sign in again), never
//! on HTTP statuses. The production implementation is
//! [`crate::graph::GraphMailbox`] (Microsoft Graph v1.0 mail API, "Use the
//! Outlook mail REST API"), which maps `GraphError` to `BackendError` in one
//! place (`crate::graph::mailbox`); tests and the IMAP/SMTP layers hold it
//! as `Arc<dyn MailBackend>`, in the spirit of Gluon's `Connector`.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

mod error;

/// The largest message Graph takes in one request body (larger APPENDs
/// split their attachments off into upload sessions, graph/append.rs): a
/// request is at most 4 MB ("Create message in MIME format": 4 MB per
/// request, base64-encoded), and a user reports MIME of about 2.2 MB
/// refused, so 2 MiB keeps a margin (graph-facts.md; the sources are cited
/// at `crate::graph::send::MAX_DIRECT_MIME`, the same bound, asserted
/// equal in `crate::graph::mailbox`).
pub const MAX_APPEND_BYTES: usize = 2 * 1024 * 1024;

pub use error::BackendError;

macro_rules! remote_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

remote_id!(
    /// A Graph mail folder id (immutable id), or a well-known name such as
    /// `inbox` where Graph accepts one.
    RemoteFolderId
);
remote_id!(
    /// A Graph message id (immutable id: it survives moves).
    RemoteMessageId
);
remote_id!(
    /// The opaque link that resumes a folder's delta sync.
    DeltaLink
);

/// Folders Graph knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WellKnownFolder {
    Inbox,
    Drafts,
    SentItems,
    DeletedItems,
    JunkEmail,
    Archive,
}

impl WellKnownFolder {
    pub const ALL: [WellKnownFolder; 6] = [
        WellKnownFolder::Inbox,
        WellKnownFolder::Drafts,
        WellKnownFolder::SentItems,
        WellKnownFolder::DeletedItems,
        WellKnownFolder::JunkEmail,
        WellKnownFolder::Archive,
    ];

    /// Graph's well-known folder name.
    pub fn graph_name(self) -> &'static str {
        match self {
            WellKnownFolder::Inbox => "inbox",
            WellKnownFolder::Drafts => "drafts",
            WellKnownFolder::SentItems => "sentitems",
            WellKnownFolder::DeletedItems => "deleteditems",
            WellKnownFolder::JunkEmail => "junkemail",
            WellKnownFolder::Archive => "archive",
        }
    }

    /// As a folder id usable wherever Graph takes one.
    pub fn id(self) -> RemoteFolderId {
        RemoteFolderId::new(self.graph_name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFolder {
    pub id: RemoteFolderId,
    pub parent_id: Option<RemoteFolderId>,
    pub display_name: String,
    pub well_known: Option<WellKnownFolder>,
    pub total: u64,
    pub unread: u64,
    pub child_count: u64,
    pub hidden: bool,
}

/// Outlook's follow-up flag (`flag.flagStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagStatus {
    #[default]
    NotFlagged,
    Flagged,
    Complete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAddress {
    pub name: Option<String>,
    pub address: String,
}

/// What IMAP needs of a message, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteMessage {
    pub id: RemoteMessageId,
    pub folder_id: Option<RemoteFolderId>,
    pub is_read: bool,
    pub is_draft: bool,
    pub flag: FlagStatus,
    /// From `PR_LAST_VERB_EXECUTED` (0x1081) = 102 or 103, when fetched.
    pub answered: bool,
    /// From `PR_LAST_VERB_EXECUTED` (0x1081) = 104, when fetched.
    pub forwarded: bool,
    pub categories: Vec<String>,
    pub received: Option<DateTime<Utc>>,
    pub sent: Option<DateTime<Utc>>,
    pub internet_message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<MailAddress>,
    /// Exchange's storage size (`Integer 0x0E08`), when fetched.
    pub size: Option<u64>,
    /// The fields the answer left out: their values above are defaults
    /// that mean nothing (a delta update may carry only what changed;
    /// `PR_LAST_VERB_EXECUTED` comes only when expanded).
    pub absent: Absent,
}

/// Which of a message's flag-bearing fields Graph did not send. Absent
/// means unchanged, never empty ("Delta updates can be partial",
/// microsoft-graph-docs issue #7776: after a read toggle an updated item
/// came back as `id`, `isRead`, `parentFolderId` only). The default (all
/// present) is a complete message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Absent {
    pub is_read: bool,
    pub is_draft: bool,
    pub flag: bool,
    pub categories: bool,
    /// `PR_LAST_VERB_EXECUTED` (`\Answered`, `$Forwarded`) was not read.
    pub last_verb: bool,
    pub received: bool,
}

impl Absent {
    /// Whether the item is a partial update rather than a message (a whole
    /// item always carries `isRead` and `isDraft`; a missing `flag` or
    /// `categories` on a message not known yet reads as "none").
    pub fn incomplete(&self) -> bool {
        self.is_read || self.is_draft
    }
}

/// One change reported by a delta sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaChange {
    /// New or changed (later delta pages may carry only the changed fields;
    /// [`RemoteMessage::absent`] says which are missing).
    Upsert(RemoteMessage),
    /// Deleted or moved out of the folder.
    Removed(RemoteMessageId),
}

/// The result of one delta sync round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaSync {
    pub changes: Vec<DeltaChange>,
    /// Resume here next time.
    pub delta_link: DeltaLink,
}

/// One change of the folder hierarchy reported by `mailFolders/delta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderChange {
    /// A new folder, or a changed one. A field Graph did not send is
    /// `None`: unchanged (an update may carry only what changed).
    Upsert {
        id: RemoteFolderId,
        display_name: Option<String>,
        parent_id: Option<RemoteFolderId>,
        hidden: Option<bool>,
    },
    /// Deleted (or otherwise gone from the hierarchy).
    Removed(RemoteFolderId),
}

/// The result of one folder hierarchy delta round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSync {
    pub changes: Vec<FolderChange>,
    /// Resume here next time.
    pub delta_link: DeltaLink,
}

/// A flag change; `None` leaves a property as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlagUpdate {
    pub is_read: Option<bool>,
    pub flag: Option<FlagStatus>,
    pub categories: Option<Vec<String>>,
    /// IMAP `\Answered`: 0x1081 = 102, icon 0x1080 = 261.
    pub answered: Option<bool>,
    /// IMAP `$Forwarded`: 0x1081 = 104, icon 0x1080 = 262.
    pub forwarded: Option<bool>,
}

/// How an IMAP APPEND should land.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppendOptions {
    pub is_read: bool,
    pub received: Option<DateTime<Utc>>,
    /// Other flags the new item carries from its creation (`\Flagged`,
    /// `\Answered`, `$Forwarded`, keywords as categories); `is_read` here
    /// is ignored.
    pub flags: FlagUpdate,
}

/// An attachment of the large send path, read as a stream.
pub struct OutgoingAttachment {
    pub name: String,
    pub content_type: String,
    /// Exact length of `content` in bytes.
    pub size: u64,
    pub content_id: Option<String>,
    pub is_inline: bool,
    pub content: Box<dyn AsyncRead + Send + Unpin>,
}

impl fmt::Debug for OutgoingAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingAttachment")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The remote mailbox, as the gateway sees it.
#[async_trait]
pub trait MailBackend: Send + Sync {
    /// Every folder (top level and all descendants), well-known ones marked.
    async fn list_folders(&self) -> Result<Vec<RemoteFolder>, BackendError>;
    /// One round of the folder hierarchy delta (Graph "mailFolder:
    /// delta"): every folder of the mailbox, nested ones too, when `since`
    /// is `None`; the changes since then otherwise. Whatever the folder
    /// count, it costs one request per page, not one per folder.
    /// [`BackendError::SyncReset`] means: call again with `None`.
    async fn sync_folders(&self, since: Option<&DeltaLink>) -> Result<FolderSync, BackendError>;
    /// The ids of the well-known folders the mailbox has (a name it lacks,
    /// e.g. `archive`, is left out).
    async fn well_known_folders(
        &self,
    ) -> Result<Vec<(RemoteFolderId, WellKnownFolder)>, BackendError>;
    /// Create a folder at the top level or under `parent`.
    async fn create_folder(
        &self,
        parent: Option<&RemoteFolderId>,
        name: &str,
    ) -> Result<RemoteFolder, BackendError>;
    async fn rename_folder(
        &self,
        folder: &RemoteFolderId,
        name: &str,
    ) -> Result<RemoteFolder, BackendError>;
    async fn delete_folder(&self, folder: &RemoteFolderId) -> Result<(), BackendError>;

    /// All messages of a folder, newest first, page by page.
    async fn list_messages(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<Vec<RemoteMessage>, BackendError>;
    /// Changes since `since` (or everything when `None`).
    /// [`BackendError::SyncReset`] means: call again with `None`.
    async fn sync_messages(
        &self,
        folder: &RemoteFolderId,
        since: Option<&DeltaLink>,
    ) -> Result<DeltaSync, BackendError>;
    /// One message's metadata, including size and answered/forwarded.
    async fn get_message(&self, id: &RemoteMessageId) -> Result<RemoteMessage, BackendError>;
    /// The raw RFC 5322 message, as Exchange generates it.
    async fn fetch_mime(&self, id: &RemoteMessageId) -> Result<Bytes, BackendError>;
    /// Many raw messages, batched; one result per id, in the order given.
    async fn fetch_mimes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<Bytes, BackendError>)>, BackendError>;
    /// Exchange storage sizes, batched; one result per id, in order.
    async fn message_sizes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<u64, BackendError>)>, BackendError>;

    async fn update_flags(
        &self,
        id: &RemoteMessageId,
        update: &FlagUpdate,
    ) -> Result<(), BackendError>;
    /// Move; the returned message carries the (immutable) id.
    async fn move_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, BackendError>;
    async fn copy_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, BackendError>;
    /// Flag changes of many messages (Graph: `$batch`, 20 per request);
    /// one result per item, in the order given. One item's failure
    /// (`NotFound`: another client expunged it) does not stop the others;
    /// the outer error means the whole request failed.
    async fn update_flags_many(
        &self,
        updates: &[(RemoteMessageId, FlagUpdate)],
    ) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        let mut out = Vec::with_capacity(updates.len());
        for (id, update) in updates {
            out.push(self.update_flags(id, update).await);
        }
        Ok(out)
    }
    /// Move many messages into `to` (Graph: `$batch`); one result per id,
    /// in order, as [`MailBackend::update_flags_many`].
    async fn move_messages(
        &self,
        ids: &[RemoteMessageId],
        to: &RemoteFolderId,
    ) -> Result<Vec<Result<RemoteMessage, BackendError>>, BackendError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.move_message(id, to).await);
        }
        Ok(out)
    }
    /// Copy many messages into `to` (Graph: `$batch`); as
    /// [`MailBackend::move_messages`].
    async fn copy_messages(
        &self,
        ids: &[RemoteMessageId],
        to: &RemoteFolderId,
    ) -> Result<Vec<Result<RemoteMessage, BackendError>>, BackendError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.copy_message(id, to).await);
        }
        Ok(out)
    }
    /// Delete many messages, into Deleted Items or for good when
    /// `permanently` (Graph: `$batch`); one result per id, in order, as
    /// [`MailBackend::update_flags_many`].
    async fn delete_messages(
        &self,
        ids: &[RemoteMessageId],
        permanently: bool,
    ) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(if permanently {
                self.permanent_delete(id).await
            } else {
                self.delete_message(id).await
            });
        }
        Ok(out)
    }
    /// Delete into Deleted Items (Graph `DELETE`).
    async fn delete_message(&self, id: &RemoteMessageId) -> Result<(), BackendError>;
    /// Delete for good (`permanentDelete`).
    async fn permanent_delete(&self, id: &RemoteMessageId) -> Result<(), BackendError>;

    /// Create a draft in Drafts from raw MIME.
    async fn create_draft_from_mime(&self, mime: Bytes) -> Result<RemoteMessage, BackendError>;
    /// IMAP APPEND: create a non-draft message in `folder` from raw MIME.
    async fn append_message(
        &self,
        folder: &RemoteFolderId,
        mime: Bytes,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, BackendError>;
    /// Send raw MIME (`sendMail`, up to about 3 MB of MIME).
    async fn send_mime(&self, mime: Bytes, save_to_sent_items: bool) -> Result<(), BackendError>;
    /// The large path: a draft from `draft_mime` (no attachments), the
    /// attachments added (streamed through upload sessions from 3 MB), then
    /// sent.
    async fn send_large(
        &self,
        draft_mime: Bytes,
        attachments: Vec<OutgoingAttachment>,
    ) -> Result<(), BackendError>;

    // The large path step by step, for a caller that records each step
    // (the SMTP spool's exactly-once state machine).

    /// Messages of `folder` with this `internetMessageId` (one `$filter`).
    async fn find_by_internet_message_id(
        &self,
        folder: &RemoteFolderId,
        message_id: &str,
    ) -> Result<Vec<RemoteMessage>, BackendError>;
    /// Add one attachment to a draft (direct below 3 MB, upload session
    /// from 3 MB, streamed).
    async fn add_attachment(
        &self,
        draft: &RemoteMessageId,
        attachment: OutgoingAttachment,
    ) -> Result<(), BackendError>;
    /// Exchange keeps no Sent Items copy of this draft once sent.
    async fn set_delete_after_submit(&self, draft: &RemoteMessageId) -> Result<(), BackendError>;
    /// Send a draft (`POST messages/{id}/send`); never retried after a
    /// connection failure.
    async fn send_draft(&self, draft: &RemoteMessageId) -> Result<(), BackendError>;
}
