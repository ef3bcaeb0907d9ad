//! IDLE (RFC 2177): once logged in, the client idles until `DONE`; the
//! exchange itself (continuation, `DONE`, the poll timer) is framing and
//! lives in [`crate::imap::server`]. With a folder selected, every
//! `imap.idle_poll` costs one delta query on it, and what changed is
//! reported at once.

use imap_next::imap_types::response::Data;

use crate::imap::session::{Refusal, Shared, State, report};

/// May IDLE start now?
pub(crate) fn start(state: &State) -> Result<(), Refusal> {
    if state.account().is_none() {
        return Err(Refusal::bad("IDLE needs you to log in first"));
    }
    Ok(())
}

/// One poll while idling: the selected folder's changes, as untagged data.
pub(crate) async fn changes(shared: &Shared, state: &mut State) -> Vec<Data<'static>> {
    let Some((auth, view)) = state.selected() else {
        return Vec::new();
    };
    match auth.model.sync(view.folder.id).await {
        Ok(changes) => report(view, &changes, &shared.store),
        Err(_) => Vec::new(),
    }
}
