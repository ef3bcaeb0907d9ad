//! NOOP (RFC 3501 §6.1.2) and CHECK (§6.4.1): with a folder selected, sync
//! it and report what changed (EXPUNGE / EXISTS / FETCH FLAGS, see
//! [`report`]). Costs one delta query on the selected folder (more pages
//! only when much changed); nothing without a selected folder.

use crate::imap::session::{Reply, Shared, State, report};

/// `verb` is `NOOP` or `CHECK`: both do the same here.
pub(crate) async fn handle(shared: &Shared, state: &mut State, verb: &str) -> Reply {
    let mut reply = Reply::ok(format!("{verb} completed"));
    if let Some((auth, view)) = state.selected() {
        match auth.model.sync(view.folder.id).await {
            Ok(changes) => reply.data = report(view, &changes, &shared.store),
            Err(e) => tracing::warn!("imap sync failed: {e}"),
        }
    }
    reply
}
