//! Mail folders: the whole tree (top level, then `childFolders` of every
//! folder that has children, each paged through `@odata.nextLink`), the
//! well-known folders resolved in one `$batch`, and create / rename /
//! delete. Graph v1.0 "List mailFolders", "List childFolders", "Create
//! mailFolder", "Update mailfolder", "Delete mailFolder".

use std::collections::{HashMap, VecDeque};

use http::Method;
use serde_json::json;

use super::GraphError;
use super::backend::{RemoteFolder, RemoteFolderId, WellKnownFolder};
use super::batch::BatchRequest;
use super::client::{Call, GraphMailbox, encode_segment};
use super::decode::{decode_folder, decode_folder_page};

/// At most this many folders are walked (a runaway bound).
const MAX_FOLDERS: usize = 10_000;
/// At most this many pages per collection.
const MAX_PAGES: usize = 1_000;

impl GraphMailbox {
    /// Every page of a folder collection starting at `first`.
    async fn folder_pages(
        &self,
        route: &'static str,
        first: String,
    ) -> Result<Vec<RemoteFolder>, GraphError> {
        let mut folders = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let reply = self.execute(&Call::new(Method::GET, route, url)).await?;
            let page = decode_folder_page(&reply.body)?;
            folders.extend(page.items);
            if folders.len() > MAX_FOLDERS {
                return Err(GraphError::TooLarge(format!(
                    "more than {MAX_FOLDERS} folders"
                )));
            }
            match page.next_link {
                Some(next) => {
                    self.check_link(&next)?;
                    url = next;
                }
                None => return Ok(folders),
            }
        }
        Err(GraphError::TooLarge(format!(
            "more than {MAX_PAGES} pages of folders"
        )))
    }

    fn folder_query(&self) -> String {
        let mut q = String::from("?$top=100");
        if self.config().include_hidden_folders {
            q.push_str("&includeHiddenFolders=true");
        }
        q
    }

    pub(crate) async fn list_folders_impl(&self) -> Result<Vec<RemoteFolder>, GraphError> {
        let query = self.folder_query();
        let top = self
            .folder_pages("mailFolders", self.url(&format!("mailFolders{query}")))
            .await?;
        let mut all = Vec::with_capacity(top.len());
        let mut queue: VecDeque<RemoteFolder> = top.into();
        while let Some(folder) = queue.pop_front() {
            if folder.child_count > 0 {
                let url = self.url(&format!(
                    "mailFolders/{}/childFolders{query}",
                    encode_segment(folder.id.as_str())
                ));
                let children = self
                    .folder_pages("mailFolders/{id}/childFolders", url)
                    .await?;
                queue.extend(children);
            }
            all.push(folder);
            if all.len() + queue.len() > MAX_FOLDERS {
                return Err(GraphError::TooLarge(format!(
                    "more than {MAX_FOLDERS} folders"
                )));
            }
        }
        let well_known = self.well_known_ids().await?;
        for folder in &mut all {
            folder.well_known = well_known.get(&folder.id).copied();
        }
        Ok(all)
    }

    /// The ids behind the well-known names, in one `$batch` (a name the
    /// mailbox lacks, e.g. `archive`, is left out).
    pub(crate) async fn well_known_ids(
        &self,
    ) -> Result<HashMap<RemoteFolderId, WellKnownFolder>, GraphError> {
        let requests = WellKnownFolder::ALL
            .iter()
            .map(|w| {
                BatchRequest::get(
                    w.graph_name(),
                    format!("mailFolders/{}?$select=id", w.graph_name()),
                )
            })
            .collect::<Vec<_>>();
        let replies = match self.batch(requests).await {
            Ok(replies) => replies,
            // A service refusing `$batch` (400/404/405) costs six GETs.
            Err(GraphError::Api(e)) if matches!(e.status, 400 | 404 | 405) => {
                return self.well_known_ids_one_by_one().await;
            }
            Err(e) => return Err(e),
        };
        let mut ids = HashMap::new();
        for w in WellKnownFolder::ALL {
            if let Some(Ok(reply)) = replies.get(w.graph_name())
                && let Ok(folder) = decode_folder(&reply.body_bytes())
            {
                ids.insert(folder.id, w);
            }
        }
        Ok(ids)
    }

    async fn well_known_ids_one_by_one(
        &self,
    ) -> Result<HashMap<RemoteFolderId, WellKnownFolder>, GraphError> {
        let mut ids = HashMap::new();
        for w in WellKnownFolder::ALL {
            let url = self.url(&format!("mailFolders/{}?$select=id", w.graph_name()));
            match self
                .execute(&Call::new(Method::GET, "mailFolders/{id}", url))
                .await
            {
                Ok(reply) => {
                    ids.insert(decode_folder(&reply.body)?.id, w);
                }
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ids)
    }

    /// One folder by id or well-known name (`GET mailFolders/{id}`): the
    /// cheapest read that proves a mailbox is reachable (`graphgate doctor`).
    pub async fn get_folder(&self, folder: &RemoteFolderId) -> Result<RemoteFolder, GraphError> {
        let url = self.url(&format!("mailFolders/{}", encode_segment(folder.as_str())));
        let call = Call::new(Method::GET, "mailFolders/{id}", url).idempotent();
        decode_folder(&self.execute(&call).await?.body)
    }

    pub(crate) async fn create_folder_impl(
        &self,
        parent: Option<&RemoteFolderId>,
        name: &str,
    ) -> Result<RemoteFolder, GraphError> {
        let (route, url) = match parent {
            Some(p) => (
                "mailFolders/{id}/childFolders",
                self.url(&format!(
                    "mailFolders/{}/childFolders",
                    encode_segment(p.as_str())
                )),
            ),
            None => ("mailFolders", self.url("mailFolders")),
        };
        // Not retried after a connection failure: it may have been created.
        let call = Call::new(Method::POST, route, url).json(&json!({ "displayName": name }));
        decode_folder(&self.execute(&call).await?.body)
    }

    pub(crate) async fn rename_folder_impl(
        &self,
        folder: &RemoteFolderId,
        name: &str,
    ) -> Result<RemoteFolder, GraphError> {
        let url = self.url(&format!("mailFolders/{}", encode_segment(folder.as_str())));
        let call =
            Call::new(Method::PATCH, "mailFolders/{id}", url).json(&json!({ "displayName": name }));
        decode_folder(&self.execute(&call).await?.body)
    }

    pub(crate) async fn delete_folder_impl(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<(), GraphError> {
        let url = self.url(&format!("mailFolders/{}", encode_segment(folder.as_str())));
        self.execute(&Call::new(Method::DELETE, "mailFolders/{id}", url))
            .await?;
        Ok(())
    }
}
