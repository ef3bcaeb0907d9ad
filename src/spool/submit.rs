//! The hand-over from a protocol front-end to the spool: a complete
//! message ([`SpooledMessage`]: who sent it, its envelope, its bytes in
//! memory or in a durable file of [`super::incoming`]), the [`Submitter`]
//! that takes it, and the [`SubmitOutcome`] the client's final reply is
//! made from. Defined here, below the front-ends, so that `smtp/` calls
//! down into `spool/` and the spool needs nothing of `smtp/`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncReadExt;

/// The authenticated local account, as the session needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub login: String,
    /// Addresses MAIL FROM may use (the mailbox, aliases, Send As).
    pub allowed_senders: Vec<String>,
}

/// The SMTP envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Empty for the null reverse-path `<>`.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
    /// The `rewrite` sender policy applies: From becomes the mailbox.
    pub rewrite: Option<FromRewrite>,
}

/// What the `rewrite` sender policy needs to rewrite a message's From
/// (`crate::smtp::relay::HeaderRewriter`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FromRewrite {
    /// The addresses the account may send as, the mailbox first.
    pub allowed: Vec<String>,
    /// The envelope sender the client gave (empty for `<>`).
    pub original: String,
}

/// The outcome of handing a complete message to the spool/Graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Durable and accepted (delivered, or queued for retry): 250.
    Accepted { queue_id: String },
    /// Refused for good: a 5xx with this enhanced code and sentence.
    Rejected {
        code: u16,
        enhanced: String,
        text: String,
    },
    /// Could not be made durable: a 4xx, the client should retry.
    TryLater { text: String },
}

/// The first `limit` bytes of a file (a spooled message's header block).
pub(crate) async fn file_head(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let file = tokio::fs::File::open(path).await?;
    let mut head = Vec::with_capacity(limit.min(8 * 1024));
    file.take(limit as u64).read_to_end(&mut head).await?;
    Ok(head)
}

/// Where a complete message's bytes are.
#[derive(Debug, Clone)]
pub enum SpooledBody {
    /// In memory, not yet durable: the submitter commits them (small
    /// messages).
    Inline(Bytes),
    /// An fsync'ed file (larger messages).
    File(PathBuf),
}

/// A complete message for the submitter.
#[derive(Debug)]
pub struct SpooledMessage {
    pub account: Authenticated,
    pub envelope: Envelope,
    pub body: SpooledBody,
    pub size: u64,
}

impl SpooledMessage {
    /// The start of the message: at most `limit` bytes.
    pub async fn head(&self, limit: usize) -> std::io::Result<Vec<u8>> {
        match &self.body {
            SpooledBody::Inline(bytes) => Ok(bytes[..bytes.len().min(limit)].to_vec()),
            SpooledBody::File(path) => file_head(path, limit).await,
        }
    }

    /// All of the message's bytes (tests, small messages).
    pub async fn read_all(&self) -> std::io::Result<Vec<u8>> {
        match &self.body {
            SpooledBody::Inline(bytes) => Ok(bytes.to_vec()),
            SpooledBody::File(path) => tokio::fs::read(path).await,
        }
    }

    /// The message was refused: remove its file, if it has one.
    pub async fn discard(&self) {
        if let SpooledBody::File(path) = &self.body {
            let _ = tokio::fs::remove_file(path).await;
        }
    }
}

/// What happens to a message once its bytes are durable: the spool's
/// business (queue it, try Graph within the synchronous window, answer).
#[async_trait::async_trait]
pub trait Submitter: Send + Sync {
    async fn submit(&self, message: SpooledMessage) -> SubmitOutcome;
}
