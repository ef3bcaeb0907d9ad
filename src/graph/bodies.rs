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
//! property; expand the extended property", graph-facts.md "Reading"), in
//! one `$batch` of `$select=id&$expand=…` GETs per 20 messages. Then the
//! bodies: messages of at least [`LONE_BODY_BYTES`] (or whose size could
//! not be read) alone with a plain `GET $value`, whose answer is the raw
//! bytes; the others in batches of at most 20 whose sizes add up to at
//! most [`BATCH_BODY_BYTES`]. `0x0E08` is Exchange's storage size, not the
//! length of `$value` (graph-facts.md "MIME fidelity"), close enough to
//! bound a batch. The price is one more (small) `$batch` per 20 bodies.

use bytes::Bytes;

use super::GraphError;
use super::batch::{BatchRequest, MAX_BATCH};
use super::client::GraphMailbox;
use crate::backend::RemoteMessageId;

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
            let sized = self.message_sizes_impl(ids).await?;
            sized
                .into_iter()
                .enumerate()
                .map(|(i, (_, size))| match size {
                    Ok(size) => Some(size),
                    // Gone since: the body would be gone too.
                    Err(e) if e.status() == Some(404) => {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = Some(Err(e));
                        }
                        None
                    }
                    Err(_) => None,
                })
                .collect()
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
