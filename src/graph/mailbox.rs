//! `MailBackend` for [`GraphMailbox`]. The Graph-level methods (same
//! names, `GraphError`, for callers that need Graph's codes: the SMTP
//! spool, the CLI) delegate to the operation in [`super::folders`],
//! [`super::messages`] or [`super::send`]; the trait methods call them and
//! map `GraphError` to [`BackendError`] in one place
//! (`From<GraphError> for BackendError` below).

use async_trait::async_trait;
use bytes::Bytes;

use super::backend::{
    AppendOptions, DeltaLink, DeltaSync, FlagUpdate, FolderSync, MailBackend, OutgoingAttachment,
    RemoteFolder, RemoteFolderId, RemoteMessage, RemoteMessageId, WellKnownFolder,
};
use super::client::GraphMailbox;
use super::{GraphError, GraphErrorKind};
use crate::backend::BackendError;

// The backend's APPEND bound is the client's one-request MIME bound.
const _: () = assert!(crate::backend::MAX_APPEND_BYTES == super::send::MAX_DIRECT_MIME);

impl GraphMailbox {
    pub async fn list_folders(&self) -> Result<Vec<RemoteFolder>, GraphError> {
        self.list_folders_impl().await
    }
    pub async fn sync_folders(&self, since: Option<&DeltaLink>) -> Result<FolderSync, GraphError> {
        self.sync_folders_impl(since).await
    }
    pub async fn well_known_folders(
        &self,
    ) -> Result<Vec<(RemoteFolderId, WellKnownFolder)>, GraphError> {
        Ok(self.well_known_ids().await?.into_iter().collect())
    }
    pub async fn create_folder(
        &self,
        parent: Option<&RemoteFolderId>,
        name: &str,
    ) -> Result<RemoteFolder, GraphError> {
        self.create_folder_impl(parent, name).await
    }
    pub async fn rename_folder(
        &self,
        folder: &RemoteFolderId,
        name: &str,
    ) -> Result<RemoteFolder, GraphError> {
        self.rename_folder_impl(folder, name).await
    }
    pub async fn delete_folder(&self, folder: &RemoteFolderId) -> Result<(), GraphError> {
        self.delete_folder_impl(folder).await
    }
    pub async fn list_messages(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<Vec<RemoteMessage>, GraphError> {
        self.list_messages_impl(folder).await
    }
    pub async fn sync_messages(
        &self,
        folder: &RemoteFolderId,
        since: Option<&DeltaLink>,
    ) -> Result<DeltaSync, GraphError> {
        self.sync_messages_impl(folder, since).await
    }
    pub async fn get_message(&self, id: &RemoteMessageId) -> Result<RemoteMessage, GraphError> {
        self.get_message_impl(id).await
    }
    pub async fn fetch_mime(&self, id: &RemoteMessageId) -> Result<Bytes, GraphError> {
        self.fetch_mime_impl(id).await
    }
    pub async fn fetch_mimes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<Bytes, GraphError>)>, GraphError> {
        self.fetch_mimes_impl(ids).await
    }
    pub async fn message_sizes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<u64, GraphError>)>, GraphError> {
        self.message_sizes_impl(ids).await
    }
    pub async fn update_flags(
        &self,
        id: &RemoteMessageId,
        update: &FlagUpdate,
    ) -> Result<(), GraphError> {
        self.update_flags_impl(id, update).await
    }
    pub async fn move_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, GraphError> {
        self.move_message_impl(id, to).await
    }
    pub async fn copy_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, GraphError> {
        self.copy_message_impl(id, to).await
    }
    pub async fn delete_message(&self, id: &RemoteMessageId) -> Result<(), GraphError> {
        self.delete_message_impl(id).await
    }
    pub async fn permanent_delete(&self, id: &RemoteMessageId) -> Result<(), GraphError> {
        self.permanent_delete_impl(id).await
    }
    pub async fn create_draft_from_mime(&self, mime: Bytes) -> Result<RemoteMessage, GraphError> {
        self.create_draft_from_mime_impl(mime).await
    }
    pub async fn append_message(
        &self,
        folder: &RemoteFolderId,
        mime: Bytes,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, GraphError> {
        self.append_message_impl(folder, mime, options).await
    }
    pub async fn send_mime(&self, mime: Bytes, save_to_sent_items: bool) -> Result<(), GraphError> {
        self.send_mime_impl(mime, save_to_sent_items).await
    }
    pub async fn send_large(
        &self,
        draft_mime: Bytes,
        attachments: Vec<OutgoingAttachment>,
    ) -> Result<(), GraphError> {
        self.send_large_impl(draft_mime, attachments).await
    }
    pub async fn find_by_internet_message_id(
        &self,
        folder: &RemoteFolderId,
        message_id: &str,
    ) -> Result<Vec<RemoteMessage>, GraphError> {
        self.find_by_internet_message_id_impl(folder, message_id)
            .await
    }
    pub async fn set_delete_after_submit(&self, draft: &RemoteMessageId) -> Result<(), GraphError> {
        self.set_delete_after_submit_impl(draft).await
    }
    pub async fn send_draft(&self, draft: &RemoteMessageId) -> Result<(), GraphError> {
        self.send_draft_impl(draft).await
    }
}

#[async_trait]
impl MailBackend for GraphMailbox {
    async fn update_flags_many(
        &self,
        updates: &[(RemoteMessageId, FlagUpdate)],
    ) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        Ok(each(self.update_flags_many_impl(updates).await?))
    }
    async fn delete_messages(
        &self,
        ids: &[RemoteMessageId],
        permanently: bool,
    ) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        Ok(each(self.delete_many_impl(ids, permanently).await?))
    }
    async fn move_messages(
        &self,
        ids: &[RemoteMessageId],
        to: &RemoteFolderId,
    ) -> Result<Vec<Result<RemoteMessage, BackendError>>, BackendError> {
        Ok(each(self.move_many_impl(ids, to, "move").await?))
    }
    async fn copy_messages(
        &self,
        ids: &[RemoteMessageId],
        to: &RemoteFolderId,
    ) -> Result<Vec<Result<RemoteMessage, BackendError>>, BackendError> {
        Ok(each(self.move_many_impl(ids, to, "copy").await?))
    }
    async fn list_folders(&self) -> Result<Vec<RemoteFolder>, BackendError> {
        GraphMailbox::list_folders(self)
            .await
            .map_err(BackendError::from)
    }
    async fn sync_folders(&self, since: Option<&DeltaLink>) -> Result<FolderSync, BackendError> {
        GraphMailbox::sync_folders(self, since)
            .await
            .map_err(BackendError::from)
    }
    async fn well_known_folders(
        &self,
    ) -> Result<Vec<(RemoteFolderId, WellKnownFolder)>, BackendError> {
        GraphMailbox::well_known_folders(self)
            .await
            .map_err(BackendError::from)
    }
    async fn create_folder(
        &self,
        parent: Option<&RemoteFolderId>,
        name: &str,
    ) -> Result<RemoteFolder, BackendError> {
        GraphMailbox::create_folder(self, parent, name)
            .await
            .map_err(BackendError::from)
    }
    async fn rename_folder(
        &self,
        folder: &RemoteFolderId,
        name: &str,
    ) -> Result<RemoteFolder, BackendError> {
        GraphMailbox::rename_folder(self, folder, name)
            .await
            .map_err(BackendError::from)
    }
    async fn delete_folder(&self, folder: &RemoteFolderId) -> Result<(), BackendError> {
        GraphMailbox::delete_folder(self, folder)
            .await
            .map_err(BackendError::from)
    }
    async fn list_messages(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<Vec<RemoteMessage>, BackendError> {
        GraphMailbox::list_messages(self, folder)
            .await
            .map_err(BackendError::from)
    }
    async fn sync_messages(
        &self,
        folder: &RemoteFolderId,
        since: Option<&DeltaLink>,
    ) -> Result<DeltaSync, BackendError> {
        GraphMailbox::sync_messages(self, folder, since)
            .await
            .map_err(BackendError::from)
    }
    async fn get_message(&self, id: &RemoteMessageId) -> Result<RemoteMessage, BackendError> {
        GraphMailbox::get_message(self, id)
            .await
            .map_err(BackendError::from)
    }
    async fn fetch_mime(&self, id: &RemoteMessageId) -> Result<Bytes, BackendError> {
        GraphMailbox::fetch_mime(self, id)
            .await
            .map_err(BackendError::from)
    }
    async fn fetch_mimes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<Bytes, BackendError>)>, BackendError> {
        GraphMailbox::fetch_mimes(self, ids)
            .await
            .map(|all| {
                all.into_iter()
                    .map(|(id, r)| (id, r.map_err(BackendError::from)))
                    .collect()
            })
            .map_err(BackendError::from)
    }
    async fn message_sizes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<u64, BackendError>)>, BackendError> {
        GraphMailbox::message_sizes(self, ids)
            .await
            .map(|all| {
                all.into_iter()
                    .map(|(id, r)| (id, r.map_err(BackendError::from)))
                    .collect()
            })
            .map_err(BackendError::from)
    }
    async fn update_flags(
        &self,
        id: &RemoteMessageId,
        update: &FlagUpdate,
    ) -> Result<(), BackendError> {
        GraphMailbox::update_flags(self, id, update)
            .await
            .map_err(BackendError::from)
    }
    async fn move_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, BackendError> {
        GraphMailbox::move_message(self, id, to)
            .await
            .map_err(BackendError::from)
    }
    async fn copy_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, BackendError> {
        GraphMailbox::copy_message(self, id, to)
            .await
            .map_err(BackendError::from)
    }
    async fn delete_message(&self, id: &RemoteMessageId) -> Result<(), BackendError> {
        GraphMailbox::delete_message(self, id)
            .await
            .map_err(BackendError::from)
    }
    async fn permanent_delete(&self, id: &RemoteMessageId) -> Result<(), BackendError> {
        GraphMailbox::permanent_delete(self, id)
            .await
            .map_err(BackendError::from)
    }
    async fn create_draft_from_mime(&self, mime: Bytes) -> Result<RemoteMessage, BackendError> {
        GraphMailbox::create_draft_from_mime(self, mime)
            .await
            .map_err(BackendError::from)
    }
    async fn append_message(
        &self,
        folder: &RemoteFolderId,
        mime: Bytes,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, BackendError> {
        GraphMailbox::append_message(self, folder, mime, options)
            .await
            .map_err(BackendError::from)
    }
    async fn send_mime(&self, mime: Bytes, save_to_sent_items: bool) -> Result<(), BackendError> {
        GraphMailbox::send_mime(self, mime, save_to_sent_items)
            .await
            .map_err(BackendError::from)
    }
    async fn send_large(
        &self,
        draft_mime: Bytes,
        attachments: Vec<OutgoingAttachment>,
    ) -> Result<(), BackendError> {
        GraphMailbox::send_large(self, draft_mime, attachments)
            .await
            .map_err(BackendError::from)
    }
    async fn find_by_internet_message_id(
        &self,
        folder: &RemoteFolderId,
        message_id: &str,
    ) -> Result<Vec<RemoteMessage>, BackendError> {
        GraphMailbox::find_by_internet_message_id(self, folder, message_id)
            .await
            .map_err(BackendError::from)
    }
    async fn add_attachment(
        &self,
        draft: &RemoteMessageId,
        attachment: OutgoingAttachment,
    ) -> Result<(), BackendError> {
        self.add_attachment_impl(draft, attachment)
            .await
            .map_err(BackendError::from)
    }
    async fn set_delete_after_submit(&self, draft: &RemoteMessageId) -> Result<(), BackendError> {
        GraphMailbox::set_delete_after_submit(self, draft)
            .await
            .map_err(BackendError::from)
    }
    async fn send_draft(&self, draft: &RemoteMessageId) -> Result<(), BackendError> {
        GraphMailbox::send_draft(self, draft)
            .await
            .map_err(BackendError::from)
    }
}

/// Per-item results of a batch, mapped.
fn each<T>(results: Vec<Result<T, GraphError>>) -> Vec<Result<T, BackendError>> {
    results
        .into_iter()
        .map(|r| r.map_err(BackendError::from))
        .collect()
}

/// The one mapping from Graph's errors to the backend's classes: Graph's
/// class (from its `code` first, then the status: `error::classify`)
/// decides, never a status read elsewhere.
impl From<GraphError> for BackendError {
    fn from(e: GraphError) -> Self {
        let detail = e.to_string();
        let remedy = e.remedy().to_string();
        match &e {
            GraphError::DeltaReset => BackendError::SyncReset,
            GraphError::Api(api) => match api.kind {
                GraphErrorKind::NotFound => BackendError::NotFound { detail },
                GraphErrorKind::Throttled => BackendError::Throttled { detail },
                GraphErrorKind::Unavailable => BackendError::Transient { detail },
                GraphErrorKind::Unauthorized => BackendError::Auth { detail, remedy },
                _ => BackendError::Permanent { detail, remedy },
            },
            GraphError::Transport(_) | GraphError::Unreachable(_) => {
                BackendError::Transient { detail }
            }
            GraphError::Auth(_) if e.is_transient() => BackendError::Transient { detail },
            GraphError::Auth(_) => BackendError::Auth { detail, remedy },
            GraphError::Malformed(_) | GraphError::TooLarge(_) | GraphError::Invalid(_) => {
                BackendError::Permanent { detail, remedy }
            }
        }
    }
}
