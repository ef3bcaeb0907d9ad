//! Messages: listing, per-folder delta sync (Graph "message: delta"), one
//! message's metadata, raw MIME (`$value`, "Get MIME content of a
//! message"), batched MIME and size fetches, flag updates (`PATCH`, with
//! the extended properties DavMail uses for `\Answered` / `$Forwarded`),
//! move, copy, delete and permanentDelete.

use std::collections::HashMap;

use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value, json};

use super::GraphError;
use super::backend::{
    DeltaChange, DeltaLink, DeltaSync, FlagStatus, FlagUpdate, RemoteFolderId, RemoteMessage,
    RemoteMessageId,
};
use super::batch::BatchRequest;
use super::client::{Call, GraphMailbox, encode_segment};
use super::decode::{decode_message, decode_message_page, decode_message_size};

/// What IMAP needs of a message (delta refuses `$expand` of extended
/// properties, so size and last verb are fetched separately).
pub const MESSAGE_SELECT: &str = "id,parentFolderId,isRead,isDraft,flag,categories,receivedDateTime,sentDateTime,internetMessageId,subject,from";
/// The extended properties read per message: size and last verb.
const EXPAND_PROPERTIES: &str =
    "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08' or id eq 'Integer 0x1081')";
pub(super) const EXPAND_SIZE: &str =
    "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')";
/// The link a full listing leaves where delta would leave its deltaLink,
/// in a cloud without message delta; it is never requested.
const NO_DELTA_LINK: &str = "graphgate:no-message-delta";
/// The last verb alone (`\Answered`, `$Forwarded`).
const EXPAND_VERB: &str = "singleValueExtendedProperties($filter=id eq 'Integer 0x1081')";
/// At most this many pages per listing or delta round.
const MAX_PAGES: usize = 100_000;

pub(super) fn query_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The `$value` bytes of `id`, when they can be a whole message: never
/// empty (a message has at least a header; an empty answer is a broken
/// one, e.g. an inner `$batch` answer cut off by a reset) and as long as
/// the answer's own `Content-Length` says, when it says. Anything else is
/// a transient error, so that it is fetched again and never cached.
pub(super) fn whole_mime(
    id: &RemoteMessageId,
    body: Bytes,
    declared: Option<u64>,
) -> Result<Bytes, GraphError> {
    if body.is_empty() {
        return Err(GraphError::Transport(format!(
            "Graph answered the MIME content ($value) of message {} with no bytes; a message \
             has at least a header, so the answer was broken: it is not kept and is fetched \
             again",
            id.as_str()
        )));
    }
    if let Some(declared) = declared
        && declared != body.len() as u64
    {
        return Err(GraphError::Transport(format!(
            "Graph's MIME content ($value) of message {} has {} bytes where its answer \
             declared {declared}; it is not kept and is fetched again",
            id.as_str(),
            body.len()
        )));
    }
    Ok(body)
}

pub(super) fn message_path(id: &RemoteMessageId) -> String {
    format!("messages/{}", encode_segment(id.as_str()))
}

impl GraphMailbox {
    pub(crate) async fn list_messages_impl(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<Vec<RemoteMessage>, GraphError> {
        let mut url = self.url(&format!(
            "mailFolders/{}/messages?$select={MESSAGE_SELECT}&$top=100",
            encode_segment(folder.as_str())
        ));
        let mut messages = Vec::new();
        for _ in 0..MAX_PAGES {
            let call = Call::new(Method::GET, "mailFolders/{id}/messages", url);
            let page = decode_message_page(&self.execute(&call).await?.body)?;
            messages.extend(page.items.into_iter().filter_map(|c| match c {
                DeltaChange::Upsert(m) => Some(m),
                DeltaChange::Removed(_) => None,
            }));
            match page.next_link {
                Some(next) => {
                    self.check_link(&next)?;
                    url = next;
                }
                None => return Ok(messages),
            }
        }
        Err(GraphError::TooLarge("too many pages of messages".into()))
    }

    /// The messages of `folder` whose `internetMessageId` is `message_id`
    /// (one request, `$filter`).
    pub(crate) async fn find_by_internet_message_id_impl(
        &self,
        folder: &RemoteFolderId,
        message_id: &str,
    ) -> Result<Vec<RemoteMessage>, GraphError> {
        let filter = format!("internetMessageId eq '{}'", message_id.replace('\'', "''"));
        let url = self.url(&format!(
            "mailFolders/{}/messages?$filter={}&$select={MESSAGE_SELECT}&$top=10",
            encode_segment(folder.as_str()),
            query_escape(&filter)
        ));
        let call = Call::new(Method::GET, "mailFolders/{id}/messages", url).idempotent();
        let page = decode_message_page(&self.execute(&call).await?.body)?;
        Ok(page
            .items
            .into_iter()
            .filter_map(|c| match c {
                DeltaChange::Upsert(m) => Some(m),
                DeltaChange::Removed(_) => None,
            })
            .collect())
    }

    pub(crate) async fn sync_messages_impl(
        &self,
        folder: &RemoteFolderId,
        since: Option<&DeltaLink>,
    ) -> Result<DeltaSync, GraphError> {
        if !self.config().message_delta {
            // A cloud without message delta (21Vianet): every round is a
            // full listing. A stored link asks for changes, which only a
            // listing can tell here, so it is answered as an expired token
            // is: the mailbox model then lists the folder and diffs it.
            if since.is_some() {
                return Err(GraphError::DeltaReset);
            }
            let changes = self
                .list_messages_impl(folder)
                .await?
                .into_iter()
                .map(DeltaChange::Upsert)
                .collect();
            return Ok(DeltaSync {
                changes,
                delta_link: DeltaLink(NO_DELTA_LINK.into()),
            });
        }
        // Query options only on the first request; links are followed
        // verbatim.
        let mut url = match since {
            Some(link) => {
                self.check_link(link.as_str())?;
                link.as_str().to_owned()
            }
            None => self.url(&format!(
                "mailFolders/{}/messages/delta?$select={MESSAGE_SELECT}",
                encode_segment(folder.as_str())
            )),
        };
        let prefer = format!(
            "odata.maxpagesize={}",
            self.config().delta_page_size.clamp(1, 1000)
        );
        let mut changes = Vec::new();
        let mut partial = Vec::new();
        for _ in 0..MAX_PAGES {
            let call = Call::new(Method::GET, "mailFolders/{id}/messages/delta", url)
                .header("Prefer", prefer.clone());
            let page = decode_message_page(&self.execute(&call).await?.body)?;
            changes.extend(page.items);
            partial.extend(page.partial);
            match (page.next_link, page.delta_link) {
                (Some(next), _) => {
                    self.check_link(&next)?;
                    url = next;
                }
                (None, Some(delta)) => {
                    // An incremental round: read the last verb of every
                    // changed message (delta cannot `$expand` extended
                    // properties: graph-facts.md "Extended properties in
                    // delta"), which also completes partial items. A full
                    // listing completes only partial items (a whole folder
                    // read per message would cost one `$batch` per 20).
                    let ids = if since.is_some() {
                        changes
                            .iter()
                            .filter_map(|c| match c {
                                DeltaChange::Upsert(m) => Some(m.id.as_str().to_string()),
                                DeltaChange::Removed(_) => None,
                            })
                            .collect()
                    } else {
                        partial
                    };
                    self.complete_changes(&mut changes, ids).await?;
                    // Where each message is, for listing sizes by folder
                    // (graph/bodies.rs).
                    self.hints.note_folder(
                        folder.as_str(),
                        changes.iter().filter_map(|c| match c {
                            DeltaChange::Upsert(m) => Some(m.id.as_str()),
                            DeltaChange::Removed(_) => None,
                        }),
                    );
                    return Ok(DeltaSync {
                        changes,
                        delta_link: DeltaLink(delta),
                    });
                }
                (None, None) => {
                    return Err(GraphError::Malformed(
                        "delta page without nextLink or deltaLink".into(),
                    ));
                }
            }
        }
        Err(GraphError::TooLarge("too many pages of delta".into()))
    }

    /// Replace the upserts of `ids` with the whole metadata and the last
    /// verb, fetched in `$batch`es (a message deleted meanwhile becomes
    /// `Removed`).
    async fn complete_changes(
        &self,
        changes: &mut [DeltaChange],
        mut partial: Vec<String>,
    ) -> Result<(), GraphError> {
        partial.sort();
        partial.dedup();
        if partial.is_empty() {
            return Ok(());
        }
        let requests = partial
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let path = message_path(&RemoteMessageId::new(id.as_str()));
                BatchRequest::get(
                    i.to_string(),
                    format!(
                        "{path}?$select={MESSAGE_SELECT}&$expand={}",
                        query_escape(EXPAND_VERB)
                    ),
                )
            })
            .collect();
        // Best effort: the delta items stand on their own (absent fields are
        // merged as unchanged), so a failed read costs only the last verb of
        // this round and the completion of partial items, not the round.
        let mut results = match self.batch(requests).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    "could not read the changed messages whole ({e}); their \\Answered / \
                     $Forwarded stay as known and partial updates merge field by field"
                );
                return Ok(());
            }
        };
        let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, change) in changes.iter().enumerate() {
            if let DeltaChange::Upsert(m) = change {
                positions.entry(m.id.as_str()).or_default().push(index);
            }
        }
        let mut replacements = Vec::new();
        for (i, id) in partial.iter().enumerate() {
            let fetched = match results.remove(&i.to_string()) {
                Some(Ok(reply)) => {
                    let mut m = decode_message(&reply.body_bytes())?;
                    // Expanded: no 0x1081 in the answer means no verb.
                    m.absent.last_verb = false;
                    DeltaChange::Upsert(m)
                }
                Some(Err(e)) if e.status() == Some(404) => {
                    DeltaChange::Removed(RemoteMessageId::new(id.as_str()))
                }
                Some(Err(e)) => {
                    tracing::warn!(message = %id, "could not read a changed message whole: {e}");
                    continue;
                }
                None => continue,
            };
            for &index in positions.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                replacements.push((index, fetched.clone()));
            }
        }
        for (index, change) in replacements {
            if let Some(slot) = changes.get_mut(index) {
                *slot = change;
            }
        }
        Ok(())
    }

    pub(crate) async fn get_message_impl(
        &self,
        id: &RemoteMessageId,
    ) -> Result<RemoteMessage, GraphError> {
        let url = self.url(&format!(
            "{}?$select={MESSAGE_SELECT}&$expand={}",
            message_path(id),
            query_escape(EXPAND_PROPERTIES)
        ));
        let reply = self
            .execute(&Call::new(Method::GET, "messages/{id}", url))
            .await?;
        let mut m = decode_message(&reply.body)?;
        m.absent.last_verb = false;
        Ok(m)
    }

    pub(crate) async fn fetch_mime_impl(&self, id: &RemoteMessageId) -> Result<Bytes, GraphError> {
        let url = self.url(&format!("{}/$value", message_path(id)));
        let body = self
            .execute(&Call::new(Method::GET, "messages/{id}/$value", url))
            .await?
            .body;
        whole_mime(id, body, None)
    }

    pub(crate) async fn message_sizes_impl(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<u64, GraphError>)>, GraphError> {
        let requests = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                BatchRequest::get(
                    i.to_string(),
                    format!(
                        "{}?$select=id&$expand={}",
                        message_path(id),
                        query_escape(EXPAND_SIZE)
                    ),
                )
            })
            .collect();
        let mut results = self.batch(requests).await?;
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let result = match results.remove(&i.to_string()) {
                    Some(Ok(reply)) => decode_message_size(&reply.body_bytes()),
                    Some(Err(e)) => Err(e),
                    None => Err(GraphError::Malformed("no batch answer".into())),
                };
                (id.clone(), result)
            })
            .collect())
    }

    pub(crate) async fn update_flags_impl(
        &self,
        id: &RemoteMessageId,
        update: &FlagUpdate,
    ) -> Result<(), GraphError> {
        let body = flag_patch(update);
        if body.as_object().is_some_and(Map::is_empty) {
            return Ok(());
        }
        let url = self.url(&message_path(id));
        self.execute(&Call::new(Method::PATCH, "messages/{id}", url).json(&body))
            .await?;
        Ok(())
    }

    async fn move_or_copy(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
        verb: &'static str,
    ) -> Result<RemoteMessage, GraphError> {
        let route = if verb == "move" {
            "messages/{id}/move"
        } else {
            "messages/{id}/copy"
        };
        let url = self.url(&format!("{}/{verb}", message_path(id)));
        // Not retried after a connection failure: a copy would be doubled.
        let call =
            Call::new(Method::POST, route, url).json(&json!({ "destinationId": to.as_str() }));
        decode_message(&self.execute(&call).await?.body)
    }

    /// Many flag changes in `$batch`es of 20 PATCHes (each inner request
    /// takes a place of the mailbox's concurrency, `batch`); one result
    /// per item, in order. An empty change costs nothing.
    pub(crate) async fn update_flags_many_impl(
        &self,
        updates: &[(RemoteMessageId, FlagUpdate)],
    ) -> Result<Vec<Result<(), GraphError>>, GraphError> {
        let requests: Vec<BatchRequest> = updates
            .iter()
            .enumerate()
            .filter_map(|(i, (id, update))| {
                let body = flag_patch(update);
                (!body.as_object().is_some_and(Map::is_empty)).then(|| {
                    BatchRequest::with_body(i.to_string(), "PATCH", message_path(id), body)
                })
            })
            .collect();
        let mut results = if requests.is_empty() {
            HashMap::new()
        } else {
            self.batch(requests).await?
        };
        Ok((0..updates.len())
            .map(|i| match results.remove(&i.to_string()) {
                None => Ok(()),
                Some(r) => r.map(|_| ()),
            })
            .collect())
    }

    /// Many moves (or copies) into `to`, in `$batch`es of 20 POSTs; one
    /// result per id, in order: the message as it is now (its immutable
    /// id). A batch cut off by the connection is not sent again (a copy
    /// would be doubled).
    pub(crate) async fn move_many_impl(
        &self,
        ids: &[RemoteMessageId],
        to: &RemoteFolderId,
        verb: &'static str,
    ) -> Result<Vec<Result<RemoteMessage, GraphError>>, GraphError> {
        let requests = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                BatchRequest::with_body(
                    i.to_string(),
                    "POST",
                    format!("{}/{verb}", message_path(id)),
                    json!({ "destinationId": to.as_str() }),
                )
            })
            .collect();
        let mut results = self.batch(requests).await?;
        Ok((0..ids.len())
            .map(|i| match results.remove(&i.to_string()) {
                Some(Ok(reply)) => decode_message(&reply.body_bytes()),
                Some(Err(e)) => Err(e),
                None => Err(GraphError::Malformed("no batch answer".into())),
            })
            .collect())
    }

    /// Many deletions (into Deleted Items, or for good with
    /// `permanentDelete` when `permanently`) in `$batch`es of 20; one
    /// result per id, in order.
    pub(crate) async fn delete_many_impl(
        &self,
        ids: &[RemoteMessageId],
        permanently: bool,
    ) -> Result<Vec<Result<(), GraphError>>, GraphError> {
        let requests = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                if permanently {
                    BatchRequest::bare(
                        i.to_string(),
                        "POST",
                        format!("{}/permanentDelete", message_path(id)),
                    )
                } else {
                    BatchRequest::bare(i.to_string(), "DELETE", message_path(id))
                }
            })
            .collect();
        let mut results = self.batch(requests).await?;
        Ok((0..ids.len())
            .map(|i| match results.remove(&i.to_string()) {
                Some(r) => r.map(|_| ()),
                None => Err(GraphError::Malformed("no batch answer".into())),
            })
            .collect())
    }

    pub(crate) async fn move_message_impl(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, GraphError> {
        self.move_or_copy(id, to, "move").await
    }

    pub(crate) async fn copy_message_impl(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, GraphError> {
        self.move_or_copy(id, to, "copy").await
    }

    pub(crate) async fn delete_message_impl(&self, id: &RemoteMessageId) -> Result<(), GraphError> {
        let url = self.url(&message_path(id));
        self.execute(&Call::new(Method::DELETE, "messages/{id}", url))
            .await?;
        Ok(())
    }

    pub(crate) async fn permanent_delete_impl(
        &self,
        id: &RemoteMessageId,
    ) -> Result<(), GraphError> {
        let url = self.url(&format!("{}/permanentDelete", message_path(id)));
        // Deleting twice is harmless (the second answers 404), so a
        // connection failure may be retried.
        let call = Call::new(Method::POST, "messages/{id}/permanentDelete", url).idempotent();
        self.execute(&call).await?;
        Ok(())
    }
}

/// The PATCH body for a flag change.
pub fn flag_patch(update: &FlagUpdate) -> Value {
    let mut body = Map::new();
    if let Some(read) = update.is_read {
        body.insert("isRead".into(), json!(read));
    }
    if let Some(flag) = update.flag {
        let status = match flag {
            FlagStatus::NotFlagged => "notFlagged",
            FlagStatus::Flagged => "flagged",
            FlagStatus::Complete => "complete",
        };
        body.insert("flag".into(), json!({ "flagStatus": status }));
    }
    if let Some(categories) = &update.categories {
        body.insert("categories".into(), json!(categories));
    }
    // PR_LAST_VERB_EXECUTED (0x1081) and PR_ICON_INDEX (0x1080), as DavMail
    // maps them: answered 102/261, forwarded 104/262, neither 0/-1.
    let verb = match (update.answered, update.forwarded) {
        (Some(true), _) => Some((102, 261)),
        (_, Some(true)) => Some((104, 262)),
        (Some(false), _) | (_, Some(false)) => Some((0, -1)),
        (None, None) => None,
    };
    if let Some((verb, icon)) = verb {
        body.insert(
            "singleValueExtendedProperties".into(),
            json!([
                { "id": "Integer 0x1081", "value": verb.to_string() },
                { "id": "Integer 0x1080", "value": icon.to_string() },
            ]),
        );
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_patch_sets_only_what_changes() {
        assert_eq!(flag_patch(&FlagUpdate::default()), json!({}));
        let body = flag_patch(&FlagUpdate {
            is_read: Some(false),
            flag: Some(FlagStatus::Complete),
            answered: Some(true),
            ..FlagUpdate::default()
        });
        assert_eq!(body["isRead"], json!(false));
        assert_eq!(body["flag"]["flagStatus"], json!("complete"));
        assert_eq!(
            body["singleValueExtendedProperties"][0],
            json!({"id": "Integer 0x1081", "value": "102"})
        );
        assert_eq!(
            body["singleValueExtendedProperties"][1],
            json!({"id": "Integer 0x1080", "value": "261"})
        );
        let forwarded = flag_patch(&FlagUpdate {
            forwarded: Some(true),
            ..FlagUpdate::default()
        });
        assert_eq!(
            forwarded["singleValueExtendedProperties"][0]["value"],
            json!("104")
        );
        assert!(forwarded.get("isRead").is_none());
    }
}
