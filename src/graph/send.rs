//! Creating and sending: drafts from MIME ("Create message", MIME format),
//! IMAP APPEND as a non-draft item (the DavMail route of graph-facts.md:
//! draft from MIME, re-created in the folder with `Integer 0x0E07`, draft
//! deleted), `sendMail` with base64 MIME, and the large path of "Attach
//! large files to Outlook messages": draft, attachments (direct below 3 MB,
//! upload session with chunked PUTs from 3 MB, streamed from an
//! `AsyncRead`), then `send`.

use base64::Engine;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::GraphError;
use super::backend::{
    AppendOptions, OutgoingAttachment, RemoteFolderId, RemoteMessage, RemoteMessageId,
};
use super::client::{Call, GraphMailbox, encode_segment};
use super::decode::{decode_message, decode_upload_session, next_expected_start};

/// Largest raw MIME sent in one request (`sendMail` or a draft created
/// from MIME); anything larger takes the draft + attachments path.
///
/// Sources: Microsoft documents about 4 MB per request ("Attach large
/// files to Outlook messages": "request size limit of 4 MB"; base64 makes
/// raw MIME 4/3 larger), and a user reports MIME messages above 2240 KB
/// refused by sendMail and createMessage
/// (microsoftgraph/microsoft-graph-docs#13979, also
/// microsoft-graph-docs-contrib#3079; graph-facts.md, "Corrections and
/// additions"). The exact threshold is not documented, so the margin:
/// 2 MiB raw (about 2.8 MB of base64) stays below the reported 2240 KB
/// and well below 4 MB. Should Graph still refuse a request under this
/// size (413, `ErrorMessageSizeExceeded`), the spool takes the draft +
/// attachments path (spool/deliver.rs), the way above this size.
pub const MAX_DIRECT_MIME: usize = 2 * 1024 * 1024;
/// Attachments from this size go through an upload session.
pub const UPLOAD_SESSION_THRESHOLD: u64 = 3 * 1024 * 1024;
/// Upload chunk: 10 × 320 KiB (multiples of 320 KiB, at most 4 MB).
pub const UPLOAD_CHUNK: usize = 10 * 320 * 1024;
/// Graph's largest attachment through an upload session.
pub const MAX_ATTACHMENT: u64 = 150 * 1024 * 1024;

fn base64_body(mime: &[u8]) -> Bytes {
    Bytes::from(base64::engine::general_purpose::STANDARD.encode(mime))
}

/// Fields of a created message that must not be sent back when the item is
/// re-created (identity, server-maintained and OData annotations).
const SERVER_FIELDS: &[&str] = &[
    "id",
    "changeKey",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "webLink",
    "createdDateTime",
    "lastModifiedDateTime",
    "isDraft",
    "hasAttachments",
];

impl GraphMailbox {
    /// `POST messages` with base64 MIME: the draft as Graph JSON.
    async fn create_draft_json(&self, mime: &[u8]) -> Result<Value, GraphError> {
        if mime.len() > MAX_DIRECT_MIME {
            return Err(GraphError::TooLarge(format!(
                "MIME of {} bytes is above the {MAX_DIRECT_MIME} bytes of one request",
                mime.len()
            )));
        }
        // Not retried after a connection failure: it may have been created.
        let call =
            Call::new(Method::POST, "messages", self.url("messages")).text(base64_body(mime));
        let reply = self.execute(&call).await?;
        serde_json::from_slice(&reply.body)
            .map_err(|e| GraphError::Malformed(format!("draft: {e}")))
    }

    pub(crate) async fn create_draft_from_mime_impl(
        &self,
        mime: Bytes,
    ) -> Result<RemoteMessage, GraphError> {
        let draft = self.create_draft_json(&mime).await?;
        decode_message(draft.to_string().as_bytes())
    }

    pub(crate) async fn append_message_impl(
        &self,
        folder: &RemoteFolderId,
        mime: Bytes,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, GraphError> {
        if mime.len() > MAX_DIRECT_MIME {
            return self.append_large(folder, mime, options).await;
        }
        // One request: the item described from the MIME (graph/append.rs).
        // Bytes mail-parser cannot read take the old route below.
        if let Some(item) = super::append::item_json(&mime, options) {
            let url = self.url(&format!(
                "mailFolders/{}/messages",
                encode_segment(folder.as_str())
            ));
            // Not retried after a connection failure: it would be doubled.
            let call = Call::new(Method::POST, "mailFolders/{id}/messages", url).json(&item);
            return decode_message(&self.execute(&call).await?.body);
        }
        let draft = self.create_draft_json(&mime).await?;
        let draft_id = draft
            .get("id")
            .and_then(Value::as_str)
            .map(RemoteMessageId::new)
            .ok_or_else(|| GraphError::Malformed("draft without id".into()))?;
        let result = self
            .recreate_in_folder(folder, &draft, &draft_id, options)
            .await;
        // The draft goes whatever happened; failing to delete it leaves a
        // stray draft, not a wrong APPEND.
        if self.permanent_delete_impl(&draft_id).await.is_err() {
            let _ = self.delete_message_impl(&draft_id).await;
        }
        result
    }

    /// APPEND above one request: the item without its big top-level
    /// attachments in one request, then each attachment (`POST
    /// …/attachments` below 3 MB, an upload session from 3 MB, its bytes
    /// decoded from the message as they are sent). The item is deleted
    /// again when an attachment fails, so an APPEND is all or nothing.
    /// Adding attachments to a non-draft item is not restricted to drafts
    /// in Graph's "Add attachment" and "attachment: createUploadSession"
    /// documents (an item or a message); unconfirmed on Exchange.
    async fn append_large(
        &self,
        folder: &RemoteFolderId,
        mime: Bytes,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, GraphError> {
        let (item, parts) = super::append::split_large(&mime, options, MAX_DIRECT_MIME)
            .map_err(|e| GraphError::TooLarge(format!("MIME of {} bytes: {e}", mime.len())))?;
        let url = self.url(&format!(
            "mailFolders/{}/messages",
            encode_segment(folder.as_str())
        ));
        let call = Call::new(Method::POST, "mailFolders/{id}/messages", url).json(&item);
        let created = decode_message(&self.execute(&call).await?.body)?;
        for large in parts {
            let part = large.part;
            let attachment = OutgoingAttachment {
                name: part.name.clone(),
                content_type: part.content_type.clone(),
                size: part.decoded_size,
                content_id: part.content_id.clone(),
                is_inline: part.is_inline,
                content: super::append::part_reader(mime.clone(), &part),
            };
            if let Err(e) = self.add_attachment(&created.id, attachment).await {
                let _ = self.permanent_delete_impl(&created.id).await;
                return Err(e);
            }
        }
        Ok(created)
    }

    async fn recreate_in_folder(
        &self,
        folder: &RemoteFolderId,
        draft: &Value,
        draft_id: &RemoteMessageId,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, GraphError> {
        let mut item = draft.as_object().cloned().unwrap_or_default();
        item.retain(|k, _| !k.starts_with("@odata") && !SERVER_FIELDS.contains(&k.as_str()));
        // Always list them: Graph's hasAttachments is false when the only
        // attachments are inline (images a cid: link shows), and those
        // must not be lost (issue 16; the simulator follows Microsoft
        // there since h-sim). One GET on this rare fallback route.
        let attachments = self.draft_attachments(draft_id).await?;
        if !attachments.is_empty() {
            item.insert("attachments".into(), Value::Array(attachments));
        }
        item.insert("isRead".into(), json!(options.is_read));
        if let Some(received) = options.received {
            item.insert("receivedDateTime".into(), json!(received.to_rfc3339()));
        }
        // PR_MESSAGE_FLAGS: MSGFLAG_READ (1) or nothing; not MSGFLAG_UNSENT
        // (8), so the item is not a draft. Only settable at creation.
        let flags = if options.is_read { "1" } else { "0" };
        let mut properties = vec![json!({ "id": "Integer 0x0E07", "value": flags })];
        // The other IMAP flags go in the same request: flag, categories,
        // and the answered/forwarded properties, as a later STORE would
        // set them.
        if let Value::Object(patch) = super::messages::flag_patch(&options.flags) {
            for (key, value) in patch {
                match key.as_str() {
                    "isRead" => {}
                    "singleValueExtendedProperties" => {
                        properties.extend(value.as_array().cloned().unwrap_or_default())
                    }
                    _ => {
                        item.insert(key, value);
                    }
                }
            }
        }
        item.insert(
            "singleValueExtendedProperties".into(),
            Value::Array(properties),
        );
        let url = self.url(&format!(
            "mailFolders/{}/messages",
            encode_segment(folder.as_str())
        ));
        // Not retried after a connection failure: it would be doubled.
        let call =
            Call::new(Method::POST, "mailFolders/{id}/messages", url).json(&Value::Object(item));
        decode_message(&self.execute(&call).await?.body)
    }

    async fn draft_attachments(&self, id: &RemoteMessageId) -> Result<Vec<Value>, GraphError> {
        let url = self.url(&format!(
            "messages/{}/attachments",
            encode_segment(id.as_str())
        ));
        let reply = self
            .execute(&Call::new(Method::GET, "messages/{id}/attachments", url))
            .await?;
        let page: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| GraphError::Malformed(format!("attachments: {e}")))?;
        let list = page
            .get("value")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .into_iter()
            .map(|mut a| {
                if let Some(o) = a.as_object_mut() {
                    o.retain(|k, _| {
                        k == "@odata.type"
                            || (!k.starts_with("@odata")
                                && k != "id"
                                && k != "lastModifiedDateTime")
                    });
                }
                a
            })
            .collect())
    }

    pub(crate) async fn send_mime_impl(
        &self,
        mime: Bytes,
        save_to_sent_items: bool,
    ) -> Result<(), GraphError> {
        if mime.len() > MAX_DIRECT_MIME {
            return Err(GraphError::TooLarge(format!(
                "MIME of {} bytes needs the large path",
                mime.len()
            )));
        }
        // "user: sendMail": saveToSentItems is a parameter of the JSON
        // body only; "When using MIME format … This method saves the
        // message in the Sent Items folder." No copy needs a draft with
        // PR_DELETE_AFTER_SUBMIT (the spool's draft route).
        if !save_to_sent_items {
            return Err(GraphError::Invalid(
                "sendMail with MIME always keeps a copy in Sent Items; send through a draft \
                 with PR_DELETE_AFTER_SUBMIT to keep none"
                    .into(),
            ));
        }
        let url = self.url("sendMail");
        // Never retried after a connection failure: the message may already
        // be on its way, and a retry would deliver it twice.
        let call = Call::new(Method::POST, "sendMail", url).text(base64_body(&mime));
        self.execute(&call).await?;
        Ok(())
    }

    pub(crate) async fn send_large_impl(
        &self,
        draft_mime: Bytes,
        attachments: Vec<OutgoingAttachment>,
    ) -> Result<(), GraphError> {
        let draft = self.create_draft_json(&draft_mime).await?;
        let id = draft
            .get("id")
            .and_then(Value::as_str)
            .map(RemoteMessageId::new)
            .ok_or_else(|| GraphError::Malformed("draft without id".into()))?;
        let result = async {
            for attachment in attachments {
                self.add_attachment(&id, attachment).await?;
            }
            let url = self.url(&format!("messages/{}/send", encode_segment(id.as_str())));
            // Not retried after a connection failure (duplicate delivery).
            self.execute(&Call::new(Method::POST, "messages/{id}/send", url))
                .await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self.delete_message_impl(&id).await;
        }
        result
    }

    /// `POST messages/{id}/send`: send a draft. Never retried after a
    /// connection failure (the caller resolves the doubt by looking the
    /// draft up).
    pub(crate) async fn send_draft_impl(&self, id: &RemoteMessageId) -> Result<(), GraphError> {
        let url = self.url(&format!("messages/{}/send", encode_segment(id.as_str())));
        self.execute(&Call::new(Method::POST, "messages/{id}/send", url))
            .await?;
        Ok(())
    }

    /// Set `PR_DELETE_AFTER_SUBMIT` (`Boolean 0x0E01`) on a draft: Exchange
    /// keeps no copy in Sent Items when it is sent.
    pub(crate) async fn set_delete_after_submit_impl(
        &self,
        id: &RemoteMessageId,
    ) -> Result<(), GraphError> {
        let url = self.url(&format!("messages/{}", encode_segment(id.as_str())));
        let body = json!({
            "singleValueExtendedProperties": [
                {"id": "Boolean 0x0E01", "value": "true"}
            ]
        });
        self.execute(
            &Call::new(Method::PATCH, "messages/{id}", url)
                .json(&body)
                .idempotent(),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn add_attachment_impl(
        &self,
        id: &RemoteMessageId,
        attachment: OutgoingAttachment,
    ) -> Result<(), GraphError> {
        self.add_attachment(id, attachment).await
    }

    async fn add_attachment(
        &self,
        id: &RemoteMessageId,
        attachment: OutgoingAttachment,
    ) -> Result<(), GraphError> {
        if attachment.size > MAX_ATTACHMENT {
            return Err(GraphError::TooLarge(format!(
                "attachment of {} bytes is above Graph's {MAX_ATTACHMENT}",
                attachment.size
            )));
        }
        if attachment.size < UPLOAD_SESSION_THRESHOLD {
            self.add_small_attachment(id, attachment).await
        } else {
            self.upload_attachment(id, attachment).await
        }
    }

    async fn add_small_attachment(
        &self,
        id: &RemoteMessageId,
        mut attachment: OutgoingAttachment,
    ) -> Result<(), GraphError> {
        let size = usize::try_from(attachment.size)
            .map_err(|_| GraphError::TooLarge("attachment".into()))?;
        let content = read_exactly(&mut attachment.content, size).await?;
        let mut body = json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": attachment.name,
            "contentType": attachment.content_type,
            "isInline": attachment.is_inline,
            "contentBytes": base64::engine::general_purpose::STANDARD.encode(&content),
        });
        if let (Some(cid), Some(o)) = (&attachment.content_id, body.as_object_mut()) {
            o.insert("contentId".into(), json!(cid));
        }
        let url = self.url(&format!(
            "messages/{}/attachments",
            encode_segment(id.as_str())
        ));
        self.execute(&Call::new(Method::POST, "messages/{id}/attachments", url).json(&body))
            .await?;
        Ok(())
    }

    async fn upload_attachment(
        &self,
        id: &RemoteMessageId,
        mut attachment: OutgoingAttachment,
    ) -> Result<(), GraphError> {
        let mut item = json!({
            "attachmentType": "file",
            "name": attachment.name,
            "size": attachment.size,
            "contentType": attachment.content_type,
            "isInline": attachment.is_inline,
        });
        if let (Some(cid), Some(o)) = (&attachment.content_id, item.as_object_mut()) {
            o.insert("contentId".into(), json!(cid));
        }
        let url = self.url(&format!(
            "messages/{}/attachments/createUploadSession",
            encode_segment(id.as_str())
        ));
        let call = Call::new(
            Method::POST,
            "messages/{id}/attachments/createUploadSession",
            url,
        )
        .json(&json!({ "AttachmentItem": item }));
        let session = decode_upload_session(&self.execute(&call).await?.body)?;
        if session.upload_url.is_empty() {
            return Err(GraphError::Malformed(
                "upload session without uploadUrl".into(),
            ));
        }
        let result = self
            .upload_chunks(
                &session.upload_url,
                &mut attachment.content,
                attachment.size,
            )
            .await;
        if result.is_err() {
            let cancel = Call {
                authorized: false,
                ..Call::new(Method::DELETE, "uploadSession", session.upload_url.clone())
            };
            let _ = self.execute(&cancel).await;
        }
        result
    }

    /// PUT the content in order, one chunk in memory at a time. The upload
    /// URL is pre-authorised: no `Authorization` header.
    async fn upload_chunks(
        &self,
        upload_url: &str,
        content: &mut (dyn AsyncRead + Send + Unpin),
        total: u64,
    ) -> Result<(), GraphError> {
        let mut offset: u64 = 0;
        while offset < total {
            let len =
                usize::try_from((total - offset).min(UPLOAD_CHUNK as u64)).unwrap_or(UPLOAD_CHUNK);
            let chunk = read_exactly(content, len).await?;
            let end = offset + len as u64 - 1;
            let call = Call {
                authorized: false,
                ..Call::new(Method::PUT, "uploadSession", upload_url.to_owned())
            }
            .bytes(Bytes::from(chunk), "application/octet-stream")
            .header("Content-Range", format!("bytes {offset}-{end}/{total}"));
            let reply = self.execute(&call).await?;
            offset = end + 1;
            if offset < total {
                let session = decode_upload_session(&reply.body)?;
                match next_expected_start(&session.next_expected_ranges) {
                    Some(next) if next == offset => {}
                    Some(next) => {
                        return Err(GraphError::Malformed(format!(
                            "upload session expects byte {next}, sent up to {offset}"
                        )));
                    }
                    None => {}
                }
            } else if reply.status != 201 && reply.status != 200 {
                return Err(GraphError::Malformed(format!(
                    "last chunk answered {}",
                    reply.status
                )));
            }
        }
        Ok(())
    }
}

/// Read exactly `len` bytes (an attachment shorter than announced is an
/// error, not a short upload).
async fn read_exactly(
    content: &mut (dyn AsyncRead + Send + Unpin),
    len: usize,
) -> Result<Vec<u8>, GraphError> {
    let mut buf = vec![0u8; len];
    content
        .read_exact(&mut buf)
        .await
        .map_err(|e| GraphError::Invalid(format!("reading attachment: {e}")))?;
    Ok(buf)
}
