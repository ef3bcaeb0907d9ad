//! Graph v1.0 mail for the simulator: `/v1.0/me/…` and `/v1.0/users/{id}/…`
//! mail folders (list with paging, child folders, well-known names, create,
//! rename, delete, and the hierarchy `mailFolders/delta` with `$select`,
//! paging, `@removed` and 410), messages (list with `$select`/`$top`/
//! `@odata.nextLink`, `$orderby=receivedDateTime asc|desc`, `$filter` on
//! `isRead`, `receivedDateTime` and `internetMessageId` joined by `and`,
//! `$count=true`; get with the size extended property, `$value`, create
//! from base64 MIME as a draft or from JSON, PATCH, DELETE, move, copy,
//! permanentDelete), per folder `delta` with `@odata.deltaLink` and
//! `@removed`, and `sendMail` (base64 MIME or JSON) delivering to the
//! tenant's users.
//!
//! Written from Microsoft's Graph documentation and graph-facts.md, sharing
//! no code with `graph/`. Drafts take file attachments directly (below
//! 3 MB) or through upload sessions (`createUploadSession`, then chunked
//! `PUT`s of at most 4 MB, in order, without a bearer token, at
//! `/_upload/{session}`), and a sent draft carries them in its MIME. With
//! `SimConfig::exchange_mime` the messages the simulator makes are stored
//! in the MIME Exchange generates ([`exchange`]), so `$value` is not the
//! bytes that were submitted. Not simulated yet: `$search`, other
//! `$filter` and `$orderby` forms (refused with 400), folder move and copy,
//! the beta `importMime`; `Prefer: odata.maxpagesize` is honoured on delta
//! only (Graph documents it there), plain lists page by `$top`.
//!
//! Test controls (not counted in `/_sim/stats`): `POST
//! /_sim/mail/deliver?to=UPN[&folder=NAME]` with raw MIME delivers an
//! incoming message; `POST /_sim/mail/expire_delta_tokens` makes every
//! delta link answer 410 Gone; `POST
//! /_sim/mail/app_access?to=UPN&blocked=true|false` makes app-only access
//! to one mailbox answer 403 `ErrorAccessDenied` "Access to OData is
//! disabled." (or lifts it).

mod attachments;
mod common;
mod controls;
mod created;
mod delta;
pub mod exchange;
mod folder_delta;
mod folders;
mod handlers;
mod messages;
pub mod model;
mod query;
mod seed;
mod send;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::{get, post};

use super::SimState;
use super::tenant::Tenant;
use model::Mailbox;

/// One message that left the tenant.
#[derive(Debug, Clone)]
pub struct ExternalDelivery {
    pub from: String,
    pub to: String,
    pub mime: Vec<u8>,
}

/// An attachment being uploaded through an upload session.
#[derive(Debug, Clone)]
pub struct Upload {
    pub user_id: String,
    pub message_id: String,
    pub size: usize,
    pub attachment: model::Attachment,
}

pub struct MailState {
    uploads: Mutex<HashMap<String, Upload>>,
    /// Mailboxes by user object id.
    mailboxes: Mutex<HashMap<String, Mailbox>>,
    /// Bumped by `expire_delta_tokens`; delta links of older epochs are gone.
    delta_epoch: AtomicU64,
    outbound: Mutex<Vec<ExternalDelivery>>,
    /// User ids whose mailbox refuses app-only access (see
    /// [`MailState::block_app_access`]).
    app_blocked: Mutex<std::collections::HashSet<String>>,
}

impl MailState {
    pub fn new(tenant: &Tenant, seed: bool) -> MailState {
        let mut mailboxes = HashMap::new();
        for user in tenant.users.iter().filter(|u| u.mailbox_enabled) {
            let mut mailbox = Mailbox::new();
            if seed {
                seed::seed(&user.upn, &mut mailbox);
            }
            mailboxes.insert(user.id.clone(), mailbox);
        }
        MailState {
            uploads: Mutex::new(HashMap::new()),
            mailboxes: Mutex::new(mailboxes),
            delta_epoch: AtomicU64::new(1),
            outbound: Mutex::new(Vec::new()),
            app_blocked: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Run `f` on the mailbox of user `user_id`.
    pub(crate) fn with<R>(&self, user_id: &str, f: impl FnOnce(&mut Mailbox) -> R) -> Option<R> {
        let mut all = self.mailboxes.lock().ok()?;
        all.get_mut(user_id).map(f)
    }

    /// Deliver raw MIME into `folder` (a well-known name or id) of the
    /// mailbox of `user_id`, as mail arriving from the Internet: non-draft,
    /// unread, received now. Returns the message id.
    pub fn deliver(&self, user_id: &str, folder: &str, mime: Vec<u8>) -> Option<String> {
        self.with(user_id, |mb| {
            let folder_id = mb.folder_id(folder)?;
            let message = model::message_from_mime(
                model::new_id("AAMkM"),
                folder_id,
                mime,
                chrono::Utc::now(),
            );
            Some(mb.insert(message))
        })
        .flatten()
    }

    /// (id, subject, is_read, MIME) of every message in a folder.
    pub fn messages(&self, user_id: &str, folder: &str) -> Vec<(String, String, bool, Vec<u8>)> {
        self.with(user_id, |mb| {
            let Some(folder_id) = mb.folder_id(folder) else {
                return Vec::new();
            };
            let mut list: Vec<_> = mb
                .messages
                .values()
                .filter(|m| m.folder_id == folder_id)
                .map(|m| {
                    (
                        m.seq,
                        m.id.clone(),
                        m.subject.clone(),
                        m.is_read,
                        m.mime.clone(),
                    )
                })
                .collect();
            list.sort_by_key(|m| m.0);
            list.into_iter()
                .map(|(_, a, b, c, d)| (a, b, c, d))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Every delta link issued so far stops working (410 Gone).
    pub fn expire_delta_tokens(&self) {
        self.delta_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Make app-only (client credentials) access to the mailbox of
    /// `user_id` answer 403 `ErrorAccessDenied` "Access to OData is
    /// disabled." (`blocked`), as Exchange Online does when an application
    /// access policy or RBAC for Applications scope leaves the mailbox out
    /// (graph-facts.md "Errors" and "Restricting app-only access";
    /// learn.microsoft.com/graph/auth-limit-mailbox-access), or allow it again.
    pub fn block_app_access(&self, user_id: &str, blocked: bool) {
        if let Ok(mut set) = self.app_blocked.lock() {
            if blocked {
                set.insert(user_id.to_string());
            } else {
                set.remove(user_id);
            }
        }
    }

    pub(crate) fn app_access_blocked(&self, user_id: &str) -> bool {
        self.app_blocked
            .lock()
            .map(|set| set.contains(user_id))
            .unwrap_or(false)
    }

    pub(crate) fn delta_epoch(&self) -> u64 {
        self.delta_epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn start_upload(&self, session: String, upload: Upload) {
        if let Ok(mut u) = self.uploads.lock() {
            u.insert(session, upload);
        }
    }

    pub(crate) fn cancel_upload(&self, session: &str) {
        if let Ok(mut u) = self.uploads.lock() {
            u.remove(session);
        }
    }

    /// Append a chunk starting at `start` of `total` bytes.
    pub(crate) fn upload_chunk(
        &self,
        session: &str,
        start: usize,
        total: usize,
        chunk: &[u8],
    ) -> handlers::UploadStep {
        let Ok(mut uploads) = self.uploads.lock() else {
            return handlers::UploadStep::Unknown;
        };
        let Some(upload) = uploads.get_mut(session) else {
            return handlers::UploadStep::Unknown;
        };
        let have = upload.attachment.bytes.len();
        if start != have || total != upload.size || have + chunk.len() > upload.size {
            return handlers::UploadStep::OutOfOrder(have);
        }
        upload.attachment.bytes.extend_from_slice(chunk);
        if upload.attachment.bytes.len() < upload.size {
            return handlers::UploadStep::More(upload.attachment.bytes.len());
        }
        match uploads.remove(session) {
            Some(done) => handlers::UploadStep::Done(done),
            None => handlers::UploadStep::Unknown,
        }
    }

    /// Messages sent to addresses outside the tenant.
    pub fn external_deliveries(&self) -> Vec<ExternalDelivery> {
        self.outbound.lock().map(|o| o.clone()).unwrap_or_default()
    }

    pub(crate) fn record_external(&self, delivery: ExternalDelivery) {
        if let Ok(mut o) = self.outbound.lock() {
            o.push(delivery);
        }
    }
}

/// The Graph mail routes, for `/v1.0/me` and `/v1.0/users/{id}`.
pub fn routes() -> Router<SimState> {
    let mut router = Router::new();
    for prefix in ["/v1.0/me", "/v1.0/users/{id}"] {
        router = router
            .route(
                &format!("{prefix}/mailFolders"),
                get(handlers::list_folders).post(handlers::create_folder),
            )
            .route(
                &format!("{prefix}/mailFolders/delta"),
                get(handlers::folder_delta),
            )
            .route(
                &format!("{prefix}/mailFolders/{{folder_id}}"),
                get(handlers::get_folder)
                    .patch(handlers::rename_folder)
                    .delete(handlers::delete_folder),
            )
            .route(
                &format!("{prefix}/mailFolders/{{folder_id}}/childFolders"),
                get(handlers::list_child_folders).post(handlers::create_child_folder),
            )
            .route(
                &format!("{prefix}/mailFolders/{{folder_id}}/messages"),
                get(handlers::list_folder_messages).post(handlers::create_in_folder),
            )
            .route(
                &format!("{prefix}/mailFolders/{{folder_id}}/messages/delta"),
                get(handlers::delta),
            )
            .route(
                &format!("{prefix}/mailFolders/{{folder_id}}/messages/{{message_id}}/$value"),
                get(handlers::value_not_allowed),
            )
            .route(
                &format!("{prefix}/messages"),
                get(handlers::list_all_messages).post(handlers::create_message),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}"),
                get(handlers::get_message)
                    .patch(handlers::patch_message)
                    .delete(handlers::delete_message),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}/$value"),
                get(handlers::get_value),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}/move"),
                post(handlers::move_message),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}/copy"),
                post(handlers::copy_message),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}/permanentDelete"),
                post(handlers::permanent_delete),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}/send"),
                post(handlers::send_draft),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}/attachments"),
                get(handlers::list_attachments).post(handlers::add_attachment),
            )
            .route(
                &format!("{prefix}/messages/{{message_id}}/attachments/createUploadSession"),
                post(handlers::create_upload_session),
            )
            .route(&format!("{prefix}/sendMail"), post(handlers::send_mail));
    }
    router.layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
}

/// `/_sim/mail/*` test controls (mounted outside the counted Graph service).
pub fn control_routes() -> Router<SimState> {
    Router::new()
        .route("/_sim/mail/deliver", post(handlers::control_deliver))
        .route(
            "/_sim/mail/expire_delta_tokens",
            post(handlers::control_expire_delta),
        )
        .route("/_sim/mail/outbound", get(handlers::control_outbound))
        .route("/_sim/mail/app_access", post(handlers::control_app_access))
        // Upload URLs carry their own authorisation (no bearer token), as
        // Outlook's upload URLs do.
        .route(
            "/_upload/{session}",
            axum::routing::put(handlers::upload_put).delete(handlers::upload_delete),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
}
