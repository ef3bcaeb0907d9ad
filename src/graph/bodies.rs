//! Message bodies (`GET messages/{id}/$value`) fetched many at a time, in
//! `$batch`es grouped by the size Graph reports, so that one batch answer
//! stays bounded and a large message never rides in one.
//!
//! Why: a `$batch` answer carries every inner body inside one JSON
//! document (a `$value` body as a string, base64 when binary: "JSON
//! batching", learn.microsoft.com/graph/json-batching), which the client
//! holds whole before it can decode it. Twenty bodies of unknown size can
//! be 20 × 35 MB (Exchange Online's default message size limit,
//! graph-facts.md "Sending"). Microsoft documents no limit on the size of
//! a batch answer; this bound is the client's own.
//!
//! How: the sizes come first, from the extended property Graph reports
//! for a message's size, `Integer 0x0E08` (PR_MESSAGE_SIZE, "Size: no
//! property; expand the extended property", graph-facts.md "Reading").
//! When the folder of the messages is known from its delta and most of
//! its messages' sizes are not, they are listed for the whole folder,
//! 1,000 a request (`mailFolders/{id}/messages?$select=id&$expand=…&$top=
//! 1000`, "List messages": `$top` 1–1000), once; otherwise (new arrivals,
//! a message seen through no delta) in one `$batch` of `$select=id&
//! $expand=…` GETs per 20 messages. Then the
//! bodies: messages of at least [`LONE_BODY_BYTES`] (or whose size could
//! not be read) alone with a plain `GET $value`, whose answer is the raw
//! bytes; the others in batches of at most 20 whose sizes add up to at
//! most [`BATCH_BODY_BYTES`]. `0x0E08` is Exchange's storage size, not the
//! length of `$value` (graph-facts.md "MIME fidelity"), close enough to
//! bound a batch. The price: one listing request per 1,000 messages of a
//! folder, or one more (small) `$batch` per 20 bodies of messages whose
//! folder no delta reported.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use http::Method;

use super::GraphError;
use super::batch::{BatchRequest, MAX_BATCH};
use super::client::{Call, GraphMailbox};
use super::decode::decode_message_page;
use crate::backend::{DeltaChange, RemoteFolderId, RemoteMessageId};

/// Most bytes (by `0x0E08` sizes) of the bodies one `$batch` asks for.
pub const BATCH_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// A message at least this large (by its `0x0E08` size) is fetched alone.
pub const LONE_BODY_BYTES: u64 = 1024 * 1024;

/// How the bodies of messages with `sizes` are fetched: each entry is a
/// list of positions; a list of one is a lone GET, longer lists are one
/// `$batch` each. Positions keep their order within a group.
pub fn plan(sizes: &[Option<u64>]) -> Vec<Vec<usize>> {
    let mut groups = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes: u64 = 0;
    for (i, size) in sizes.iter().enumerate() {
        match size {
            Some(size) if *size < LONE_BODY_BYTES => {
                if !current.is_empty()
                    && (current.len() >= MAX_BATCH
                        || bytes.saturating_add(*size) > BATCH_BODY_BYTES)
                {
                    groups.push(std::mem::take(&mut current));
                    bytes = 0;
                }
                current.push(i);
                bytes = bytes.saturating_add(*size);
            }
            _ => groups.push(vec![i]),
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Most messages whose folder and size a mailbox's hints remember; past
/// it they are forgotten (and sizes asked again).
const MAX_HINTS: usize = 1_000_000;

/// What a mailbox's handles know of its messages: the folder each was
/// seen in by a delta round, the sizes Graph reported, the folders whose
/// sizes were listed. Shared by every handle on one mailbox.
#[derive(Default)]
pub(crate) struct SizeHints {
    state: std::sync::Mutex<HintState>,
    /// One folder listing at a time (concurrent FETCH groups of one folder
    /// wait for it instead of listing it again).
    listing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct HintState {
    folder_of: HashMap<String, String>,
    sizes: HashMap<String, u64>,
    listed: HashSet<String>,
}

impl SizeHints {
    /// Messages seen in `folder` by a delta round.
    pub(crate) fn note_folder<'a>(&self, folder: &str, ids: impl Iterator<Item = &'a str>) {
        if let Ok(mut s) = self.state.lock() {
            for id in ids {
                if s.folder_of.len() >= MAX_HINTS {
                    s.folder_of.clear();
                }
                s.folder_of.insert(id.to_string(), folder.to_string());
            }
        }
    }

    fn note_sizes(&self, sizes: impl Iterator<Item = (String, u64)>) {
        if let Ok(mut s) = self.state.lock() {
            for (id, size) in sizes {
                if s.sizes.len() >= MAX_HINTS {
                    s.sizes.clear();
                }
                s.sizes.insert(id, size);
            }
        }
    }

    fn size(&self, id: &str) -> Option<u64> {
        self.state.lock().ok()?.sizes.get(id).copied()
    }

    /// The folder to list the sizes of for `unknown`: the folder of the
    /// first of them, when it was not listed yet and listing it (1,000 a
    /// request) costs no more requests than asking the sizes of its
    /// messages not known yet 20 at a time.
    fn folder_worth_listing(&self, unknown: &[&RemoteMessageId]) -> Option<String> {
        let s = self.state.lock().ok()?;
        let folder = unknown.iter().find_map(|id| s.folder_of.get(id.as_str()))?;
        if s.listed.contains(folder) {
            return None;
        }
        let (total, without_size) = s
            .folder_of
            .iter()
            .filter(|(_, f)| *f == folder)
            .fold((0usize, 0usize), |(t, w), (id, _)| {
                (t + 1, w + usize::from(!s.sizes.contains_key(id)))
            });
        (total.div_ceil(LIST_PAGE) <= without_size.div_ceil(MAX_BATCH)).then(|| folder.clone())
    }

    fn mark_listed(&self, folder: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.listed.insert(folder.to_string());
        }
    }
}

/// Messages per page of a folder's size listing (Graph's largest `$top`).
const LIST_PAGE: usize = 1000;
/// At most this many pages in one size listing.
const MAX_LIST_PAGES: usize = 10_000;

fn message_value_path(id: &RemoteMessageId) -> String {
    format!("{}/$value", super::messages::message_path(id))
}

type Fetched = Vec<(RemoteMessageId, Result<Bytes, GraphError>)>;

impl GraphMailbox {
    pub(crate) async fn fetch_mimes_impl(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Fetched, GraphError> {
        let mut out: Vec<Option<Result<Bytes, GraphError>>> = ids.iter().map(|_| None).collect();
        let sizes: Vec<Option<u64>> = if ids.len() > 1 {
            self.list_sizes_if_worth_it(ids).await;
            let mut sizes: Vec<Option<u64>> =
                ids.iter().map(|id| self.hints.size(id.as_str())).collect();
            let unknown: Vec<usize> = (0..ids.len()).filter(|&i| sizes[i].is_none()).collect();
            if !unknown.is_empty() {
                let asked: Vec<RemoteMessageId> = unknown.iter().map(|&i| ids[i].clone()).collect();
                let sized = self.message_sizes_impl(&asked).await?;
                for (&i, (id, size)) in unknown.iter().zip(sized) {
                    match size {
                        Ok(size) => {
                            sizes[i] = Some(size);
                            self.hints
                                .note_sizes(std::iter::once((id.as_str().to_string(), size)));
                        }
                        // Gone since: the body would be gone too.
                        Err(e) if e.status() == Some(404) => out[i] = Some(Err(e)),
                        Err(_) => {}
                    }
                }
            }
            sizes
        } else {
            vec![None; ids.len()]
        };
        let groups: Vec<Vec<usize>> = plan(&sizes)
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .filter(|&i| out.get(i).is_some_and(Option::is_none))
                    .collect::<Vec<usize>>()
            })
            .filter(|g| !g.is_empty())
            .collect();
        // All at once: the mailbox's permits bound what is in flight (a
        // batch takes a place per inner request).
        let fetched =
            futures::future::join_all(groups.iter().map(|g| self.fetch_group(ids, g))).await;
        for (group, results) in groups.iter().zip(fetched) {
            match results {
                Ok(results) => {
                    for (&i, result) in group.iter().zip(results) {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = Some(result);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ids
            .iter()
            .zip(out)
            .map(|(id, result)| {
                (
                    id.clone(),
                    result.unwrap_or_else(|| Err(GraphError::Malformed("no answer".into()))),
                )
            })
            .collect())
    }

    /// List the sizes of the folder of `ids` when that is cheaper than
    /// asking them per message (see [`SizeHints::folder_worth_listing`]).
    /// Best effort: a failed listing leaves the sizes to be asked per
    /// message.
    async fn list_sizes_if_worth_it(&self, ids: &[RemoteMessageId]) {
        let unknown: Vec<&RemoteMessageId> = ids
            .iter()
            .filter(|id| self.hints.size(id.as_str()).is_none())
            .collect();
        if unknown.is_empty() || self.hints.folder_worth_listing(&unknown).is_none() {
            return;
        }
        let _one = self.hints.listing.lock().await;
        // Another group may have listed it meanwhile.
        let Some(folder) = self.hints.folder_worth_listing(&unknown) else {
            return;
        };
        match self
            .folder_sizes(&RemoteFolderId::new(folder.as_str()))
            .await
        {
            Ok(sizes) => {
                self.hints.note_sizes(sizes.into_iter());
                self.hints.mark_listed(&folder);
            }
            Err(e) => {
                tracing::debug!("could not list the sizes of a folder ({e}); asking per message");
                self.hints.mark_listed(&folder);
            }
        }
    }

    /// `(id, 0x0E08 size)` of every message of `folder`, 1,000 a request.
    async fn folder_sizes(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<Vec<(String, u64)>, GraphError> {
        let mut url = self.url(&format!(
            "mailFolders/{}/messages?$select=id&$expand={}&$top={LIST_PAGE}",
            super::client::encode_segment(folder.as_str()),
            super::messages::query_escape(super::messages::EXPAND_SIZE)
        ));
        let mut sizes = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let call = Call::new(Method::GET, "mailFolders/{id}/messages", url);
            let page = decode_message_page(&self.execute(&call).await?.body)?;
            sizes.extend(page.items.into_iter().filter_map(|c| match c {
                DeltaChange::Upsert(m) => m.size.map(|s| (m.id.as_str().to_string(), s)),
                DeltaChange::Removed(_) => None,
            }));
            match page.next_link {
                Some(next) => {
                    self.check_link(&next)?;
                    url = next;
                }
                None => return Ok(sizes),
            }
        }
        Err(GraphError::TooLarge(
            "too many pages of message sizes".into(),
        ))
    }

    /// The bodies of `group` (positions in `ids`): one GET when alone, one
    /// `$batch` otherwise; one result per position, in order.
    async fn fetch_group(
        &self,
        ids: &[RemoteMessageId],
        group: &[usize],
    ) -> Result<Vec<Result<Bytes, GraphError>>, GraphError> {
        let members: Vec<&RemoteMessageId> = group.iter().filter_map(|&i| ids.get(i)).collect();
        if let [id] = members.as_slice() {
            return Ok(vec![self.fetch_mime_impl(id).await]);
        }
        let requests = members
            .iter()
            .enumerate()
            .map(|(i, id)| BatchRequest::get(i.to_string(), message_value_path(id)))
            .collect();
        let mut results = self.batch(requests).await?;
        Ok(members
            .iter()
            .enumerate()
            .map(|(i, id)| match results.remove(&i.to_string()) {
                Some(Ok(reply)) => {
                    let declared = reply
                        .header("content-length")
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    super::messages::whole_mime(id, Bytes::from(reply.body_bytes()), declared)
                }
                Some(Err(e)) => Err(e),
                None => Err(GraphError::Malformed("no batch answer".into())),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1024;

    #[test]
    fn small_messages_go_twenty_to_a_batch() {
        let sizes = vec![Some(10 * K); 45];
        let groups = plan(&sizes);
        let lens: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![20, 20, 5]);
        assert_eq!(groups.concat(), (0..45).collect::<Vec<_>>());
    }

    #[test]
    fn large_and_unknown_messages_go_alone_and_batches_stay_under_the_bound() {
        let mut sizes = vec![Some(900 * K); 10];
        sizes[3] = Some(LONE_BODY_BYTES);
        sizes[7] = None;
        let groups = plan(&sizes);
        assert!(groups.contains(&vec![3]));
        assert!(groups.contains(&vec![7]));
        for g in &groups {
            let total: u64 = g.iter().map(|&i| sizes[i].unwrap_or(0)).sum();
            assert!(g.len() == 1 || total <= BATCH_BODY_BYTES, "{g:?}: {total}");
        }
        let mut all = groups.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
