//! COPY and MOVE (RFC 3501 §6.4.7, RFC 6851) and their UID forms, with
//! UIDPLUS's COPYUID (RFC 4315 §3): in the tagged OK for COPY, in an
//! untagged OK before the EXPUNGEs for MOVE (RFC 6851 §4.3). Only within
//! one mailbox: Graph cannot copy or move between mailboxes. Costs one
//! copy or move per message, then one delta query on the target folder.

use std::num::NonZeroU32;

use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::Code;
use imap_next::imap_types::sequence::SequenceSet;

use crate::graph::{RemoteFolderId, RemoteMessageId};
use crate::imap::session::{Reply, Shared, State, local_name, report, resolve, untagged_ok};
use crate::mailbox::FolderChanges;

/// COPY, or MOVE when `moving`; by UID when `uid`.
pub(crate) async fn handle(
    shared: &Shared,
    state: &mut State,
    sequence_set: &SequenceSet,
    mailbox: &Mailbox<'_>,
    uid: bool,
    moving: bool,
) -> Reply {
    let name = if moving { "MOVE" } else { "COPY" };
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
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
    let records = match shared.store.messages(view.folder.id) {
        Ok(r) => r,
        Err(e) => return Reply::no(e.to_string()),
    };
    let chosen = resolve(view, &records, sequence_set, uid);
    let to = RemoteFolderId::new(target.remote_id.clone());
    let mut moved = Vec::new();
    let mut pairs = Vec::new();
    for (_, r) in &chosen {
        let id = RemoteMessageId::new(r.remote_id.clone());
        let result = if moving {
            auth.model
                .backend_for(&view.folder)
                .move_message(&id, &to)
                .await
        } else {
            auth.model
                .backend_for(&view.folder)
                .copy_message(&id, &to)
                .await
        };
        match result {
            Ok(created) => {
                moved.push(r.remote_id.clone());
                pairs.push((r.uid, created.id.as_str().to_string()));
            }
            Err(e) => return Reply::no(format!("Graph refused the {name}: {e}")),
        }
    }
    let _ = auth.model.sync(target.id).await;
    let mut reply = Reply::ok(format!("{name} completed"));
    // UIDPLUS (RFC 4315): which UIDs the copies got.
    let mut source = Vec::new();
    let mut destination = Vec::new();
    for (from, new_id) in &pairs {
        if let Ok(Some(m)) = shared.store.message_by_remote_id(target.id, new_id)
            && let (Some(a), Some(b)) = (NonZeroU32::new(from.0), NonZeroU32::new(m.uid.0))
        {
            source.push(UidElement::Single(a));
            destination.push(UidElement::Single(b));
        }
    }
    let copyuid = match (
        Vec1::try_from(source),
        Vec1::try_from(destination),
        NonZeroU32::new(target.uid_validity.0),
    ) {
        (Ok(source), Ok(destination), Some(uid_validity))
            if source.as_ref().len() == pairs.len() =>
        {
            Some(Code::CopyUid {
                uid_validity,
                source: UidSet(source),
                destination: UidSet(destination),
            })
        }
        _ => None,
    };
    if let Some(code) = copyuid {
        if moving {
            // RFC 6851: before the EXPUNGEs, untagged.
            reply.untagged.extend(untagged_ok(code, "moved"));
        } else {
            reply.status = Ok((Some(code), format!("{name} completed")));
        }
    }
    if moving {
        match shared.store.remove_messages(view.folder.id, &moved) {
            Ok(mut removed) => {
                removed.sort();
                reply.data = report(
                    view,
                    &FolderChanges {
                        removed,
                        ..Default::default()
                    },
                    &shared.store,
                );
            }
            Err(e) => return Reply::no(e.to_string()),
        }
    }
    reply
}
