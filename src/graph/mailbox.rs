//! `MailBackend` for [`GraphMailbox`]: the trait methods, each delegating to
//! the operation in [`super::folders`], [`super::messages`] or
//! [`super::send`].

use async_trait::async_trait;
use bytes::Bytes;

use super::GraphError;
use super::backend::{
    AppendOptions, DeltaLink, DeltaSync, FlagUpdate, FolderSync, MailBackend, OutgoingAttachment,
    RemoteFolder, RemoteFolderId, RemoteMessage, RemoteMessageId, WellKnownFolder,
};
use super::client::GraphMailbox;

#[async_trait]
impl MailBackend for GraphMailbox {
    async fn list_folders(&self) -> Result<Vec<RemoteFolder>, GraphError> {
        self.list_folders_impl().await
    }
    async fn sync_folders(&self, since: Option<&DeltaLink>) -> Result<FolderSync, GraphError> {
        self.sync_folders_impl(since).await
    }
    async fn well_known_folders(
        &self,
    ) -> Result<Vec<(RemoteFolderId, WellKnownFolder)>, GraphError> {
        Ok(self.well_known_ids().await?.into_iter().collect())
    }
    async fn create_folder(
        &self,
        parent: Option<&RemoteFolderId>,
        name: &str,
    ) -> Result<RemoteFolder, GraphError> {
        self.create_folder_impl(parent, name).await
    }
    async fn rename_folder(
        &self,
        folder: &RemoteFolderId,
        name: &str,
    ) -> Result<RemoteFolder, GraphError> {
        self.rename_folder_impl(folder, name).await
    }
    async fn delete_folder(&self, folder: &RemoteFolderId) -> Result<(), GraphError> {
        self.delete_folder_impl(folder).await
    }
    async fn list_messages(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<Vec<RemoteMessage>, GraphError> {
        self.list_messages_impl(folder).await
    }
    async fn sync_messages(
        &self,
        folder: &RemoteFolderId,
        since: Option<&DeltaLink>,
    ) -> Result<DeltaSync, GraphError> {
        self.sync_messages_impl(folder, since).await
    }
    async fn get_message(&self, id: &RemoteMessageId) -> Result<RemoteMessage, GraphError> {
        self.get_message_impl(id).await
    }
    async fn fetch_mime(&self, id: &RemoteMessageId) -> Result<Bytes, GraphError> {
        self.fetch_mime_impl(id).await
    }
    async fn fetch_mimes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<Bytes, GraphError>)>, GraphError> {
        self.fetch_mimes_impl(ids).await
    }
    async fn message_sizes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<u64, GraphError>)>, GraphError> {
        self.message_sizes_impl(ids).await
    }
    async fn update_flags(
        &self,
        id: &RemoteMessageId,
        update: &FlagUpdate,
    ) -> Result<(), GraphError> {
        self.update_flags_impl(id, update).await
    }
    async fn move_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, GraphError> {
        self.move_message_impl(id, to).await
    }
    async fn copy_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, GraphError> {
        self.copy_message_impl(id, to).await
    }
    async fn delete_message(&self, id: &RemoteMessageId) -> Result<(), GraphError> {
        self.delete_message_impl(id).await
    }
    async fn permanent_delete(&self, id: &RemoteMessageId) -> Result<(), GraphError> {
        self.permanent_delete_impl(id).await
    }
    async fn create_draft_from_mime(&self, mime: Bytes) -> Result<RemoteMessage, GraphError> {
        self.create_draft_from_mime_impl(mime).await
    }
    async fn append_message(
        &self,
        folder: &RemoteFolderId,
        mime: Bytes,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, GraphError> {
        self.append_message_impl(folder, mime, options).await
    }
    async fn send_mime(&self, mime: Bytes, save_to_sent_items: bool) -> Result<(), GraphError> {
        self.send_mime_impl(mime, save_to_sent_items).await
    }
    async fn send_large(
        &self,
        draft_mime: Bytes,
        attachments: Vec<OutgoingAttachment>,
    ) -> Result<(), GraphError> {
        self.send_large_impl(draft_mime, attachments).await
    }
    async fn find_by_internet_message_id(
        &self,
        folder: &RemoteFolderId,
        message_id: &str,
    ) -> Result<Vec<RemoteMessage>, GraphError> {
        self.find_by_internet_message_id_impl(folder, message_id)
            .await
    }
    async fn add_attachment(
        &self,
        draft: &RemoteMessageId,
        attachment: OutgoingAttachment,
    ) -> Result<(), GraphError> {
        self.add_attachment_impl(draft, attachment).await
    }
    async fn set_delete_after_submit(&self, draft: &RemoteMessageId) -> Result<(), GraphError> {
        self.set_delete_after_submit_impl(draft).await
    }
    async fn send_draft(&self, draft: &RemoteMessageId) -> Result<(), GraphError> {
        self.send_draft_impl(draft).await
    }
}
