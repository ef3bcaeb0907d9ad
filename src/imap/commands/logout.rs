//! LOGOUT (RFC 3501 §6.1.3): `* BYE`, then the tagged OK; the connection
//! closes once that is written. Leaving a selected folder may delete what
//! the session fetched (see [`leave`]); otherwise no Graph call.

use super::Ctx;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::response::Status;

use crate::imap::session::{Reply, Shared, State, leave};

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let state = &mut ctx.conn.state;
    if let Some((auth, view)) = state.selected() {
        leave(shared, auth, view).await;
    }
    *state = State::Logout;
    let mut reply = Reply::ok("LOGOUT completed");
    if let Ok(bye) = Status::bye(None, "graphgate logging out") {
        reply.untagged.push(bye.into_static());
    }
    reply
}
