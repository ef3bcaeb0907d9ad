//! Mail folders: the whole tree (top level, then `childFolders` of every
//! folder that has children, each paged through `@odata.nextLink`), the
//! hierarchy delta (`mailFolders/delta`, what IMAP LOGIN uses), the
//! well-known folders resolved in one `$batch`, and create / rename /
//! delete. Graph v1.0 "List mailFolders", "List childFolders", "Create
//! mailFolder", "Update mailfolder", "Delete mailFolder".

use std::collections::{HashMap, VecDeque};

use http::Method;
use serde_json::json;

use super::GraphError;
use super::backend::{
    DeltaLink, FolderChange, FolderSync, RemoteFolder, RemoteFolderId, WellKnownFolder,
};
use super::batch::BatchRequest;
use super::client::{Call, GraphMailbox, encode_segment};
use super::decode::{decode_folder, decode_folder_delta_page, decode_folder_page};

/// At most this many folders are walked (a runaway bound).
const MAX_FOLDERS: usize = 10_000;
/// At most this many pages per collection.
const MAX_PAGES: usize = 1_000;
/// At most this many changes in one folder delta round (a runaway bound,
/// far above any real hierarchy; the per-LOGIN walk had 10,000).
const MAX_DELTA_FOLDERS: usize = 200_000;

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

    /// One round of `GET mailFolders/delta` (Graph v1.0 "mailFolder:
    /// delta"): the whole hierarchy flattened, nested folders included, in
    /// pages (`Prefer: odata.maxpagesize`), then `@odata.deltaLink`; from
    /// a delta link, the folders created, renamed or moved since, and
    /// `{"id", "@removed"}` for deleted ones. Query options go on the first
    /// request only; links are followed verbatim. Hidden folders are
    /// reported as removed unless `include_hidden_folders` (as the listing
    /// leaves them out). An expired link → [`GraphError::DeltaReset`].
    pub(crate) async fn sync_folders_impl(
        &self,
        since: Option<&DeltaLink>,
    ) -> Result<FolderSync, GraphError> {
        let mut url = match since {
            Some(link) => {
                self.check_link(link.as_str())?;
                link.as_str().to_owned()
            }
            None => self.url("mailFolders/delta?$select=displayName,parentFolderId,isHidden"),
        };
        let prefer = format!(
            "odata.maxpagesize={}",
            self.config().delta_page_size.clamp(1, 1000)
        );
        let hidden_too = self.config().include_hidden_folders;
        let mut changes = Vec::new();
        for _ in 0..MAX_PAGES {
            let call =
                Call::new(Method::GET, "mailFolders/delta", url).header("Prefer", prefer.clone());
            let page = decode_folder_delta_page(&self.execute(&call).await?.body)?;
            changes.extend(page.items.into_iter().map(|c| match c {
                FolderChange::Upsert {
                    id,
                    hidden: Some(true),
                    ..
                } if !hidden_too => FolderChange::Removed(id),
                other => other,
            }));
            if changes.len() > MAX_DELTA_FOLDERS {
                return Err(GraphError::TooLarge(format!(
                    "more than {MAX_DELTA_FOLDERS} folder changes in one delta round"
                )));
            }
            match (page.next_link, page.delta_link) {
                (Some(next), _) => {
                    self.check_link(&next)?;
                    url = next;
                }
                (None, Some(delta)) => {
                    return Ok(FolderSync {
                        changes,
                        delta_link: DeltaLink(delta),
                    });
                }
                (None, None) => {
                    return Err(GraphError::Malformed(
                        "folder delta page without nextLink or deltaLink".into(),
                    ));
                }
            }
        }
        Err(GraphError::TooLarge(format!(
            "more than {MAX_PAGES} pages of folder delta"
        )))
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
