//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (UIDPLUS, RFC 4315 §2.1):
//! the messages marked `\Deleted` (for UID EXPUNGE, only those in the UID
//! set) are deleted in Graph by the mailbox model — moved to Deleted
//! Items, or deleted for good with `imap.expunge_permanently` — and the
//! command boundary's report says `* n EXPUNGE` for each. Costs one
//! deletion per message. CLOSE expunges the same way. With QRESYNC
//! enabled the report says `* VANISHED uids` instead, and the tagged OK
//! carries `[HIGHESTMODSEQ n]` (RFC 7162 §3.2.10: VANISHED has no
//! mod-sequence of its own).

use super::Ctx;
use imap_next::imap_types::response::Code;
use imap_next::imap_types::sequence::SequenceSet;

use crate::imap::session::{Authenticated, Reply, Shared, View, in_set};
use crate::mailbox::{ModelError, Outcome, Uid, flags};

/// EXPUNGE, or UID EXPUNGE when `only` is given.
pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, only: Option<&SequenceSet>) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let state = &mut ctx.conn.state;
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
        Ok(out) => match out.failure {
            None if view.qresync => {
                let mut reply = Reply::ok(done);
                if let Ok(highest) = auth.model.highest_modseq(&view.folder) {
                    reply.status = Ok((
                        Some(Code::HighestModSeq(crate::imap::modseq::nz64(highest))),
                        done.to_string(),
                    ));
                }
                reply
            }
            None => Reply::ok(done),
            Some(e) => Reply::no(format!(
                "Graph refused to delete a message after {} were deleted: {e}",
                out.done.len()
            )),
        },
        Err(e) => Reply::no(format!("cannot expunge: {e}")),
    }
}

/// EXPUNGE (all `\Deleted`, or only those in `only` for UID EXPUNGE)
/// through the model.
pub(crate) async fn expunge(
    shared: &Shared,
    auth: &Authenticated,
    view: &View,
    only: Option<&SequenceSet>,
) -> Result<Outcome<Uid>, ModelError> {
    let largest = view.uids.last().map_or(0, |u| u.0);
    let doomed: Vec<Uid> = auth
        .model
        .messages(&view.folder)?
        .iter()
        .filter(|r| r.flags & flags::DELETED != 0)
        .filter(|r| only.is_none_or(|set| in_set(set, r.uid.0, largest)))
        .map(|r| r.uid)
        .collect();
    auth.model
        .expunge(&view.folder, &doomed, true, shared.expunge_permanently)
        .await
}
