//! IDLE (RFC 2177): once logged in, the client idles until `DONE`; the
//! exchange itself (continuation, `DONE`, the poll timer) is framing and
//! lives in [`crate::imap::server`]. With a folder selected, every
//! `imap.idle_poll` costs one delta query on it, and what changed is
//! reported at once; a change another session makes to the folder is
//! reported as soon as the model announces it, without asking Graph.

use crate::imap::session::{Announced, Refusal, State, report};

/// May IDLE start now?
pub(crate) fn start(state: &State) -> Result<(), Refusal> {
    if state.account().is_none() {
        return Err(Refusal::bad("IDLE needs you to log in first"));
    }
    Ok(())
}

/// One wake-up while idling: the selected folder's changes (after a sync
/// when `ask_graph`), as untagged responses.
pub(crate) async fn changes(state: &mut State, ask_graph: bool) -> Announced {
    let Some((auth, view)) = state.selected() else {
        return Announced::default();
    };
    if ask_graph && let Err(e) = auth.model.sync(view.folder.id).await {
        tracing::warn!(folder = %view.folder.name, "imap sync while idling failed: {e}");
    }
    // New mail is pushed without taking its \Recent: it stays recent for
    // the next session that selects the folder.
    report(&auth.model, view, true, false, &Default::default())
}
