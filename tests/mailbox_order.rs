//! The mailbox model orders a folder's changes: a sync round that read
//! Graph's delta before a STORE was acknowledged cannot merge afterwards
//! and undo it. Driven deterministically through a backend that pauses a
//! delta round between reading Graph and returning, against the simulator
//! over HTTP.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use graphgate::auth::{AccessToken, AuthError, TokenSource};
use graphgate::graph::{
    AppendOptions, BackendError, DeltaLink, DeltaSync, FlagUpdate, FolderSync, GraphClient,
    GraphConfig, MailBackend, Mailbox, OutgoingAttachment, RemoteFolder, RemoteFolderId,
    RemoteMessage, RemoteMessageId, WellKnownFolder,
};
use graphgate::mailbox::{FlagChange, FlagOp, MailboxModel, flags};
use graphgate::secret::Secret;
use graphgate::sim::caller::Caller;
use graphgate::sim::tenant::DEMO_PUBLIC_CLIENT_ID;
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::{NewAccount, Store};
use tokio::sync::{Notify, watch};

struct SimTokens {
    state: SimState,
    user_id: String,
}

impl TokenSource for SimTokens {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        let (token, lifetime) = self.state.entra().issue_access_token(Caller {
            app_id: DEMO_PUBLIC_CLIENT_ID.into(),
            user_id: Some(self.user_id.clone()),
            permissions: vec!["Mail.ReadWrite".into()],
        });
        Box::pin(async move {
            Ok(AccessToken {
                token: Secret::new(token),
                expires_at: SystemTime::now() + Duration::from_secs(lifetime),
            })
        })
    }

    fn invalidate(&self, _token: &AccessToken) {}
}

/// Graph, but a delta round, once armed, stops after reading Graph and
/// before returning, until released; a flag update says when it starts.
struct Paused {
    inner: Arc<dyn MailBackend>,
    armed: watch::Sender<bool>,
    delta_read: Notify,
    release: watch::Sender<bool>,
    update_started: Notify,
}

#[async_trait]
impl MailBackend for Paused {
    async fn sync_messages(
        &self,
        folder: &RemoteFolderId,
        since: Option<&DeltaLink>,
    ) -> Result<DeltaSync, BackendError> {
        let result = self.inner.sync_messages(folder, since).await;
        if *self.armed.borrow() {
            self.delta_read.notify_one();
            let mut release = self.release.subscribe();
            let _ = release.wait_for(|r| *r).await;
        }
        result
    }
    async fn update_flags(
        &self,
        id: &RemoteMessageId,
        update: &FlagUpdate,
    ) -> Result<(), BackendError> {
        self.update_started.notify_one();
        self.inner.update_flags(id, update).await
    }
    async fn list_folders(&self) -> Result<Vec<RemoteFolder>, BackendError> {
        self.inner.list_folders().await
    }
    async fn sync_folders(&self, since: Option<&DeltaLink>) -> Result<FolderSync, BackendError> {
        self.inner.sync_folders(since).await
    }
    async fn well_known_folders(
        &self,
    ) -> Result<Vec<(RemoteFolderId, WellKnownFolder)>, BackendError> {
        self.inner.well_known_folders().await
    }
    async fn create_folder(
        &self,
        parent: Option<&RemoteFolderId>,
        name: &str,
    ) -> Result<RemoteFolder, BackendError> {
        self.inner.create_folder(parent, name).await
    }
    async fn rename_folder(
        &self,
        folder: &RemoteFolderId,
        name: &str,
    ) -> Result<RemoteFolder, BackendError> {
        self.inner.rename_folder(folder, name).await
    }
    async fn delete_folder(&self, folder: &RemoteFolderId) -> Result<(), BackendError> {
        self.inner.delete_folder(folder).await
    }
    async fn list_messages(
        &self,
        folder: &RemoteFolderId,
    ) -> Result<Vec<RemoteMessage>, BackendError> {
        self.inner.list_messages(folder).await
    }
    async fn get_message(&self, id: &RemoteMessageId) -> Result<RemoteMessage, BackendError> {
        self.inner.get_message(id).await
    }
    async fn fetch_mime(&self, id: &RemoteMessageId) -> Result<Bytes, BackendError> {
        self.inner.fetch_mime(id).await
    }
    async fn fetch_mimes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<Bytes, BackendError>)>, BackendError> {
        self.inner.fetch_mimes(ids).await
    }
    async fn message_sizes(
        &self,
        ids: &[RemoteMessageId],
    ) -> Result<Vec<(RemoteMessageId, Result<u64, BackendError>)>, BackendError> {
        self.inner.message_sizes(ids).await
    }
    async fn move_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, BackendError> {
        self.inner.move_message(id, to).await
    }
    async fn copy_message(
        &self,
        id: &RemoteMessageId,
        to: &RemoteFolderId,
    ) -> Result<RemoteMessage, BackendError> {
        self.inner.copy_message(id, to).await
    }
    async fn delete_message(&self, id: &RemoteMessageId) -> Result<(), BackendError> {
        self.inner.delete_message(id).await
    }
    async fn permanent_delete(&self, id: &RemoteMessageId) -> Result<(), BackendError> {
        self.inner.permanent_delete(id).await
    }
    async fn create_draft_from_mime(&self, mime: Bytes) -> Result<RemoteMessage, BackendError> {
        self.inner.create_draft_from_mime(mime).await
    }
    async fn append_message(
        &self,
        folder: &RemoteFolderId,
        mime: Bytes,
        options: &AppendOptions,
    ) -> Result<RemoteMessage, BackendError> {
        self.inner.append_message(folder, mime, options).await
    }
    async fn send_mime(&self, mime: Bytes, save: bool) -> Result<(), BackendError> {
        self.inner.send_mime(mime, save).await
    }
    async fn send_large(
        &self,
        draft_mime: Bytes,
        attachments: Vec<OutgoingAttachment>,
    ) -> Result<(), BackendError> {
        self.inner.send_large(draft_mime, attachments).await
    }
    async fn find_by_internet_message_id(
        &self,
        folder: &RemoteFolderId,
        message_id: &str,
    ) -> Result<Vec<RemoteMessage>, BackendError> {
        self.inner
            .find_by_internet_message_id(folder, message_id)
            .await
    }
    async fn add_attachment(
        &self,
        draft: &RemoteMessageId,
        attachment: OutgoingAttachment,
    ) -> Result<(), BackendError> {
        self.inner.add_attachment(draft, attachment).await
    }
    async fn set_delete_after_submit(&self, draft: &RemoteMessageId) -> Result<(), BackendError> {
        self.inner.set_delete_after_submit(draft).await
    }
    async fn send_draft(&self, draft: &RemoteMessageId) -> Result<(), BackendError> {
        self.inner.send_draft(draft).await
    }
}

/// A sync round that read Graph before a STORE of another session was
/// sent: with the folder's changes ordered, the STORE waits for the round
/// (it is then merged over what the round stored, never under it); a
/// STORE that ran in the middle would be undone by the round's late
/// merge of what it read before (the message unflagged again).
#[tokio::test]
async fn a_sync_round_read_before_a_store_does_not_undo_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = SimState::new(SimConfig {
        public_url: url.clone(),
        seed_messages: false,
        ..SimConfig::default()
    })
    .unwrap();
    tokio::spawn(graphgate::sim::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let user = state.tenant().user("alice@example.com").unwrap();
    let tokens = Arc::new(SimTokens {
        state: state.clone(),
        user_id: user.id.clone(),
    });
    let client = GraphClient::new(GraphConfig {
        base_url: url.clone(),
        ..GraphConfig::default()
    })
    .unwrap();
    let graph: Arc<dyn MailBackend> = Arc::new(client.mailbox(Mailbox::Me, tokens));
    let paused = Arc::new(Paused {
        inner: graph.clone(),
        armed: watch::channel(false).0,
        delta_read: Notify::new(),
        release: watch::channel(false).0,
        update_started: Notify::new(),
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap()
        .id;
    // Two sessions: two models over one store, one backend each.
    let syncing = Arc::new(MailboxModel::new(
        store.clone(),
        account,
        "alice@example.com",
        paused.clone(),
    ));
    let storing = Arc::new(MailboxModel::new(
        store.clone(),
        account,
        "alice@example.com",
        paused.clone(),
    ));
    syncing.refresh_folders().await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{url}/_sim/mail/deliver?to=alice@example.com"))
        .body("From: x@example.net\r\nSubject: ordered\r\n\r\nbody\r\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let inbox = syncing.folder("INBOX").unwrap();
    syncing.sync(inbox.id).await.unwrap();
    let message = store.messages(inbox.id).unwrap()[0].clone();
    // Outlook marks it read: the next round reports it (unflagged).
    graph
        .update_flags(
            &RemoteMessageId::new(message.remote_id.clone()),
            &FlagUpdate {
                is_read: Some(true),
                ..FlagUpdate::default()
            },
        )
        .await
        .unwrap();
    paused.armed.send_replace(true);
    let round = {
        let model = syncing.clone();
        tokio::spawn(async move { model.sync(inbox.id).await })
    };
    paused.delta_read.notified().await;
    paused.armed.send_replace(false);
    let gate = storing.gate(&inbox);
    let store_task = {
        let model = storing.clone();
        let folder = inbox.clone();
        let uid = message.uid;
        tokio::spawn(async move {
            let change = FlagChange {
                op: FlagOp::Add,
                bits: flags::FLAGGED,
                keywords: Vec::new(),
            };
            model.set_flags(&folder, &[uid], &change).await
        })
    };
    // Either the STORE waits for the round (ordered), or it reaches
    // Graph while the round is paused (not ordered): then let it finish
    // first, as the race would.
    let started = paused.update_started.notified();
    tokio::pin!(started);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::select! {
            _ = &mut started => {
                let done = store_task.await.unwrap().unwrap();
                assert!(done.failure.is_none());
                paused.release.send_replace(true);
                round.await.unwrap().unwrap();
                break;
            }
            _ = tokio::task::yield_now() => {
                if gate.waiting() > 0 {
                    paused.release.send_replace(true);
                    round.await.unwrap().unwrap();
                    let done = store_task.await.unwrap().unwrap();
                    assert!(done.failure.is_none());
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "neither waited nor started");
            }
        }
    }
    let after = store.messages(inbox.id).unwrap()[0].clone();
    assert_eq!(
        after.flags & (flags::FLAGGED | flags::SEEN),
        flags::FLAGGED | flags::SEEN,
        "the STORE (\\Flagged) and Outlook's read both stand: {after:?}"
    );
}
