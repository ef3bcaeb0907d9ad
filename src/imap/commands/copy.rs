//! COPY and MOVE (RFC 3501 §6.4.7, RFC 6851) and their UID forms, with
//! UIDPLUS's COPYUID (RFC 4315 §3): in the tagged OK for COPY, in an
//! untagged OK before the EXPUNGEs for MOVE (RFC 6851 §4.3). The mailbox
//! model does the work ([`crate::mailbox::MailboxSet::copy`]); the EXPUNGE
//! and EXISTS responses come from the command boundary's report, like any
//! change. Only within one mailbox: Graph cannot copy or move between
//! mailboxes. MOVE into the selected folder itself gives the messages new
//! UIDs (as Dovecot does); COPY into it adds copies. Costs one copy or
//! move per message, then one delta query on the target folder (none for
//! a MOVE into the folder itself).

use super::Ctx;
use std::num::NonZeroU32;

use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::Code;
use imap_next::imap_types::sequence::SequenceSet;

use crate::imap::session::{Reply, check_set, local_name, resolve, untagged_ok};
use crate::mailbox::Uid;

/// COPY, or MOVE when `moving`; by UID when `uid`.
pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    sequence_set: &SequenceSet,
    mailbox: &Mailbox<'_>,
    uid: bool,
    moving: bool,
) -> Reply {
    let state = &mut ctx.conn.state;
    let name = if moving { "MOVE" } else { "COPY" };
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    if let Err(r) = check_set(view, sequence_set, uid, name) {
        return r.into();
    }
    let target_name = local_name(mailbox);
    let Ok(target) = auth.model.folder(&target_name) else {
        return Reply::no(format!("[TRYCREATE] no folder named {target_name:?}"));
    };
    if !auth.model.same_mailbox(&view.folder, &target) {
        return Reply::no(format!(
            "{name} between two mailboxes is not possible through Graph; \
             FETCH the message and APPEND it to {target_name}"
        ));
    }
    if moving && view.read_only {
        return Reply::no("the folder is open read-only (EXAMINE); SELECT it to move messages");
    }
    let records = match auth.model.messages(&view.folder) {
        Ok(r) => r,
        Err(e) => return Reply::no(format!("cannot read the folder's index: {e}")),
    };
    let uids: Vec<Uid> = resolve(view, &records, sequence_set, uid)
        .into_iter()
        .map(|(_, r)| r.uid)
        .collect();
    let outcome = match auth.model.copy(&view.folder, &uids, &target, moving).await {
        Ok(o) => o,
        Err(e) => return Reply::no(format!("the {name} could not be done: {e}")),
    };
    let done = format!("{name} completed");
    let mut reply = match &outcome.failure {
        None => Reply::ok(done.clone()),
        Some(e) => Reply::no(format!(
            "Graph refused the {name} after {} of {} messages: {e}",
            outcome.done.len(),
            uids.len()
        )),
    };
    // UIDPLUS (RFC 4315): which UIDs the copies got, when all are known.
    let expected = uids.len() - outcome.vanished.len();
    if outcome.failure.is_none()
        && outcome.done.len() == expected
        && let Some(code) = copyuid(target.uid_validity.0, &outcome.done)
    {
        if moving {
            // RFC 6851 §4.3: before the EXPUNGEs, untagged.
            reply.untagged.extend(untagged_ok(code, "moved"));
        } else {
            reply.status = Ok((Some(code), done));
        }
    }
    reply
}

/// `[COPYUID validity source destination]` for `pairs`.
fn copyuid(uid_validity: u32, pairs: &[(Uid, Uid)]) -> Option<Code<'static>> {
    let mut source = Vec::new();
    let mut destination = Vec::new();
    for (from, to) in pairs {
        source.push(UidElement::Single(NonZeroU32::new(from.0)?));
        destination.push(UidElement::Single(NonZeroU32::new(to.0)?));
    }
    Some(Code::CopyUid {
        uid_validity: NonZeroU32::new(uid_validity)?,
        source: UidSet(Vec1::try_from(source).ok()?),
        destination: UidSet(Vec1::try_from(destination).ok()?),
    })
}
