//! The mailbox model against the simulator over HTTP: UIDs in arrival
//! order, never renumbered — not by new mail, flag changes, deletions, an
//! expired delta token, nor a restart — and folders keeping UIDVALIDITY
//! across renames.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use graphgate::auth::{AccessToken, AuthError, TokenSource};
use graphgate::graph::{
    FlagUpdate, GraphClient, GraphConfig, MailBackend, Mailbox, RemoteFolderId, RemoteMessageId,
};
use graphgate::mailbox::{FolderChanges, MailboxModel, flags};
use graphgate::secret::Secret;
use graphgate::sim::caller::Caller;
use graphgate::sim::tenant::DEMO_PUBLIC_CLIENT_ID;
use graphgate::sim::{SimConfig, SimState};
use graphgate::store::folders::Uid;
use graphgate::store::{AccountId, NewAccount, Store};

struct SimTokens {
    state: SimState,
    user_id: String,
}

impl TokenSource for SimTokens {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        let (token, lifetime) = self.state.entra().issue_access_token(Caller {
            app_id: DEMO_PUBLIC_CLIENT_ID.into(),
            user_id: Some(self.user_id.clone()),
            permissions: vec!["Mail.ReadWrite".into(), "Mail.Send".into()],
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

struct World {
    url: String,
    backend: Arc<dyn MailBackend>,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    account: AccountId,
}

async fn world() -> World {
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
    let backend: Arc<dyn MailBackend> = Arc::new(client.mailbox(Mailbox::Me, tokens));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap()
        .id;
    World {
        url,
        backend,
        http: reqwest::Client::new(),
        dir,
        account,
    }
}

impl World {
    /// A model on a freshly opened store (as after a restart).
    fn model(&self) -> MailboxModel {
        MailboxModel::new(
            Store::open(self.dir.path()).unwrap(),
            self.account,
            "alice@example.com",
            self.backend.clone(),
        )
    }

    fn store(&self) -> Store {
        Store::open(self.dir.path()).unwrap()
    }

    async fn deliver(&self, subject: &str) {
        let mime = format!(
            "From: x@external.example\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
             Message-ID: <{subject}@external.example>\r\n\r\nbody\r\n"
        );
        let r = self
            .http
            .post(format!(
                "{}/_sim/mail/deliver?to=alice@example.com",
                self.url
            ))
            .body(mime)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    async fn control(&self, path: &str) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}");
    }

    /// (uid, remote id) of the Inbox, in UID order.
    fn inbox(&self) -> Vec<(u32, String)> {
        let store = self.store();
        let folder = store
            .folder_by_name(self.account, "INBOX")
            .unwrap()
            .unwrap();
        store
            .messages(folder.id)
            .unwrap()
            .into_iter()
            .map(|m| (m.uid.0, m.remote_id))
            .collect()
    }
}

fn uids(list: &[u32]) -> Vec<Uid> {
    list.iter().map(|u| Uid(*u)).collect()
}

#[tokio::test]
async fn uids_survive_new_mail_flags_deletions_delta_resets_and_restarts() {
    let w = world().await;
    let model = w.model();
    let folders = model.refresh_folders().await.unwrap();
    let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    for expected in [
        "INBOX",
        "Sent Items",
        "Drafts",
        "Deleted Items",
        "Junk Email",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let sent = folders.iter().find(|f| f.name == "Sent Items").unwrap();
    assert_eq!(sent.special_use.as_deref(), Some("\\Sent"));
    let trash = folders.iter().find(|f| f.name == "Deleted Items").unwrap();
    assert_eq!(trash.special_use.as_deref(), Some("\\Trash"));
    let inbox = model.folder("inbox").unwrap();
    let validity = inbox.uid_validity;

    for s in ["one", "two", "three"] {
        w.deliver(s).await;
    }
    let changes = model.sync(inbox.id).await.unwrap();
    assert_eq!(changes.added, uids(&[1, 2, 3]));
    assert!(changes.removed.is_empty() && !changes.reset);
    let first = w.inbox();

    // Nothing changed: nothing reported.
    assert_eq!(
        model.sync(inbox.id).await.unwrap(),
        FolderChanges::default()
    );

    w.deliver("four").await;
    let two = RemoteMessageId::new(first[1].1.clone());
    model
        .backend()
        .update_flags(
            &two,
            &FlagUpdate {
                is_read: Some(true),
                ..FlagUpdate::default()
            },
        )
        .await
        .unwrap();
    // A local \Deleted on UID 3 is kept through remote changes.
    let store = w.store();
    store
        .set_message_flags(inbox.id, Uid(3), flags::DELETED, "")
        .unwrap();
    let changes = model.sync(inbox.id).await.unwrap();
    assert_eq!(changes.added, uids(&[4]));
    assert_eq!(changes.flags_changed, uids(&[2]));
    let records = store.messages(inbox.id).unwrap();
    assert_eq!(records[1].flags & flags::SEEN, flags::SEEN);
    assert_eq!(records[2].flags & flags::DELETED, flags::DELETED);

    // Deleted in Outlook on the web: expunged here, others keep their UIDs.
    let one = RemoteMessageId::new(first[0].1.clone());
    model.backend().delete_message(&one).await.unwrap();
    let changes = model.sync(inbox.id).await.unwrap();
    assert_eq!(changes.removed, uids(&[1]));

    // The delta token expires: a full listing, no renumbering.
    let before = w.inbox();
    w.control("/_sim/mail/expire_delta_tokens").await;
    w.deliver("five").await;
    let changes = model.sync(inbox.id).await.unwrap();
    assert!(changes.reset);
    assert_eq!(changes.added, uids(&[5]));
    assert!(changes.removed.is_empty());
    let after = w.inbox();
    assert_eq!(&after[..before.len()], &before[..]);

    // A restart: same data directory, same UIDVALIDITY and UIDs.
    drop(model);
    let model = w.model();
    model.refresh_folders().await.unwrap();
    let inbox_again = model.folder("INBOX").unwrap();
    assert_eq!(inbox_again.uid_validity, validity);
    assert_eq!(inbox_again.uid_next, Uid(6));
    assert_eq!(w.inbox(), after);
    assert_eq!(
        model.sync(inbox_again.id).await.unwrap(),
        FolderChanges::default()
    );
}

#[tokio::test]
async fn a_renamed_folder_keeps_its_uidvalidity_and_a_deleted_one_goes() {
    let w = world().await;
    let model = w.model();
    let created = model
        .backend()
        .create_folder(None, "Projects")
        .await
        .unwrap();
    let child = model
        .backend()
        .create_folder(Some(&created.id), "2026/Q4")
        .await
        .unwrap();
    let folders = model.refresh_folders().await.unwrap();
    let projects = folders
        .iter()
        .find(|f| f.name == "Projects")
        .unwrap()
        .clone();
    let nested = folders
        .iter()
        .find(|f| f.name == "Projects/2026\u{2215}Q4")
        .unwrap_or_else(|| panic!("{folders:#?}"))
        .clone();
    model
        .backend()
        .rename_folder(&created.id, "Archive 2026")
        .await
        .unwrap();
    let folders = model.refresh_folders().await.unwrap();
    let renamed = folders.iter().find(|f| f.name == "Archive 2026").unwrap();
    assert_eq!(renamed.uid_validity, projects.uid_validity);
    let moved_child = folders
        .iter()
        .find(|f| f.remote_id == nested.remote_id)
        .unwrap();
    assert_eq!(moved_child.name, "Archive 2026/2026\u{2215}Q4");
    assert_eq!(moved_child.uid_validity, nested.uid_validity);
    model
        .backend()
        .delete_folder(&RemoteFolderId::new(child.id.as_str()))
        .await
        .unwrap();
    let folders = model.refresh_folders().await.unwrap();
    assert!(folders.iter().all(|f| f.remote_id != nested.remote_id));
}

/// A sync that waited for the folder's gate follows the delta link the
/// rounds before it left, not the one it read before waiting: with many
/// sessions on one folder, the link read early was several rounds old,
/// Exchange had dropped its sync state (410 `syncStateNotFound`) and each
/// such round became a full listing (20,377 of 41,012 delta requests of
/// a 20-client imaptest run).
#[tokio::test]
async fn a_sync_that_waited_for_the_gate_follows_the_newest_delta_link() {
    let w = world().await;
    let model = w.model();
    model.refresh_folders().await.unwrap();
    let inbox = model.folder("INBOX").unwrap();
    w.deliver("one").await;
    model.sync(inbox.id).await.unwrap();

    let gate = model.gate(&inbox);
    let held = gate.hold().await;
    let waiting = {
        let other = w.model();
        let id = inbox.id;
        tokio::spawn(async move { other.sync(id).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gate.waiting() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never waited"
        );
        tokio::task::yield_now().await;
    }
    // Meanwhile, three rounds by other sessions (as `sync` does them).
    let store = w.store();
    let remote = RemoteFolderId::new(inbox.remote_id.clone());
    for _ in 0..3 {
        let link = store
            .folder_by_name(w.account, "INBOX")
            .unwrap()
            .unwrap()
            .delta_link
            .map(graphgate::graph::DeltaLink::new);
        let round = w
            .backend
            .sync_messages(&remote, link.as_ref())
            .await
            .unwrap();
        store
            .set_delta_link(inbox.id, Some(round.delta_link.as_str()))
            .unwrap();
    }
    drop(held);
    let changes = waiting.await.unwrap().unwrap();
    assert!(
        !changes.reset,
        "the waiting sync followed a link three rounds old: {changes:?}"
    );
}
