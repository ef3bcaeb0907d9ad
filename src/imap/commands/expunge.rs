//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (UIDPLUS, RFC 4315 §2.1):
//! the messages marked `\Deleted` (for UID EXPUNGE, only those in the UID
//! set) are deleted in Graph — moved to Deleted Items, or deleted for good
//! with `imap.expunge_permanently` — and reported as `* n EXPUNGE`. Costs
//! one deletion per message. CLOSE expunges the same way.

use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::SequenceSet;

use crate::imap::session::{Authenticated, Refusal, Reply, Shared, State, View, delete, in_set};
use crate::mailbox::flags;
use crate::store::folders::MessageRecord;

/// EXPUNGE, or UID EXPUNGE when `only` is given.
pub(crate) async fn handle(
    shared: &Shared,
    state: &mut State,
    only: Option<&SequenceSet>,
) -> Reply {
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    if view.read_only {
        return Reply::no("the folder is open read-only (EXAMINE)");
    }
    let done = if only.is_some() {
        "UID EXPUNGE completed"
    } else {
        "EXPUNGE completed"
    };
    match expunge(shared, auth, view, only).await {
        Ok(data) => Reply::ok(done).with_data(data),
        Err(r) => r.into(),
    }
}

/// EXPUNGE (all `\Deleted`, or only those in `only` for UID EXPUNGE):
/// deleted in Graph, then reported. Returns the EXPUNGE responses.
pub(crate) async fn expunge(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    only: Option<&SequenceSet>,
) -> Result<Vec<Data<'static>>, Refusal> {
    let records = shared
        .store
        .messages(view.folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let largest = view.uids.last().map_or(0, |u| u.0);
    let doomed: Vec<&MessageRecord> = records
        .iter()
        .filter(|r| r.flags & flags::DELETED != 0)
        .filter(|r| only.is_none_or(|set| in_set(set, r.uid.0, largest)))
        .collect();
    delete(shared, auth, view, doomed).await
}
