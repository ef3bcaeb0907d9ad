//! CLOSE (RFC 3501 §6.4.2) and UNSELECT (RFC 3691): leave the selected
//! folder; CLOSE first expunges the `\Deleted` messages silently unless
//! the folder was EXAMINEd. Costs one deletion per expunged message (CLOSE
//! only), and the deletions of [`leave`] for an account that keeps no
//! fetched mail.

use super::Ctx;
use super::expunge::expunge;
use crate::imap::session::{Reply, Shared, State, leave};

/// CLOSE when `close`, else UNSELECT.
pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, close: bool) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let state = &mut ctx.conn.state;
    let name = if close { "CLOSE" } else { "UNSELECT" };
    let State::Selected(auth, mut view) = std::mem::replace(state, State::Logout) else {
        return Reply::bad("no folder selected");
    };
    if close && !view.read_only {
        let _ = expunge(shared, &auth, &view, None).await;
    }
    leave(shared, &auth, &mut view).await;
    *state = State::Authenticated(auth);
    Reply::ok(format!("{name} completed"))
}
