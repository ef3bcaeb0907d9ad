//! NOOP (RFC 3501 §6.1.2) and CHECK (§6.4.1): with a folder selected, sync
//! it; what changed is reported at the command boundary like after any
//! command (EXPUNGE / EXISTS / FLAGS / FETCH FLAGS, see
//! [`crate::imap::session::report`]). Costs one delta query on the
//! selected folder (more pages only when much changed); nothing without a
//! selected folder.

use super::Ctx;
use crate::imap::session::Reply;

/// `verb` is `NOOP` or `CHECK`: both do the same here.
pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, verb: &str) -> Reply {
    let state = &mut ctx.conn.state;
    if let Some((auth, view)) = state.selected()
        && let Err(e) = auth.model.sync(view.folder.id).await
    {
        tracing::warn!(folder = %view.folder.name, "imap sync failed: {e}");
    }
    Reply::ok(format!("{verb} completed"))
}
