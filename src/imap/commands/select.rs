//! SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2): leave the folder selected
//! before (see [`leave`]), have the mailbox model bring the new one up to
//! date, and describe it: FLAGS (the keywords in use included, §7.2.6),
//! EXISTS, RECENT (the messages no session was told of before: SELECT
//! takes them), then the untagged OKs (UIDVALIDITY, UIDNEXT,
//! PERMANENTFLAGS, UNSEEN) and `[READ-WRITE]` / `[READ-ONLY]`. Costs one
//! delta query on the folder (a folder listing first when the name is not
//! known yet); flags and UIDs come from the local index.

use super::Ctx;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data};

use crate::imap::session::{
    Authenticated, Refusal, Reply, Shared, State, View, folder_flags, leave, local_name, nz,
    permanent_flags, untagged_ok,
};
use crate::mailbox::flags;

/// SELECT, or EXAMINE when `read_only`.
pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, mailbox: &Mailbox<'_>, read_only: bool) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let state = &mut ctx.conn.state;
    let name = if read_only { "EXAMINE" } else { "SELECT" };
    let folder = local_name(mailbox);
    let auth = match std::mem::replace(state, State::Logout) {
        State::Authenticated(a) => a,
        State::Selected(a, mut view) => {
            leave(shared, &a, &mut view).await;
            a
        }
        other => {
            *state = other;
            return Reply::bad("not logged in");
        }
    };
    match select(&auth, &folder, read_only).await {
        Ok((view, data, codes)) => {
            let code = if read_only {
                Code::ReadOnly
            } else {
                Code::ReadWrite
            };
            let mut reply = Reply::ok(format!("{name} completed")).with_data(data);
            // FLAGS first: it introduces the keywords PERMANENTFLAGS lists
            // (RFC 3501 §7.2.6).
            reply.first = reply
                .data
                .iter()
                .position(|d| matches!(d, Data::Flags(_)))
                .map(|i| vec![reply.data.remove(i)])
                .unwrap_or_default();
            reply.status = Ok((Some(code), format!("{name} completed")));
            for (code, t) in codes {
                reply.untagged.extend(untagged_ok(code, &t));
            }
            *state = State::Selected(auth, Box::new(view));
            reply
        }
        Err(refusal) => {
            // RFC 3501 §6.3.1: a failed SELECT leaves no folder selected.
            *state = State::Authenticated(auth);
            refusal.into()
        }
    }
}

type Described = (View, Vec<Data<'static>>, Vec<(Code<'static>, String)>);

/// Sync the folder, then describe it.
async fn select(auth: &Authenticated, name: &str, read_only: bool) -> Result<Described, Refusal> {
    let folder = match auth.model.folder(name) {
        Ok(f) => f,
        Err(_) => {
            auth.model
                .refresh_folders()
                .await
                .map_err(|e| Refusal::no(format!("cannot list folders: {e}")))?;
            auth.model
                .folder(name)
                .map_err(|_| Refusal::no(format!("no folder named {name:?}; LIST shows them")))?
        }
    };
    auth.model
        .sync(folder.id)
        .await
        .map_err(|e| Refusal::no(format!("cannot synchronise {name}: {e}")))?;
    let folder = auth.model.folder(&folder.name).unwrap_or(folder);
    let gate = auth.model.gate(&folder);
    // The counter before the read: a change after it is reported later.
    let seen = gate.version();
    let records = auth
        .model
        .messages(&folder)
        .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?;
    let mut view = View::new(folder, read_only, &records, gate, seen);
    // FLAGS names every keyword the folder has had, not only those its
    // messages carry now (store/subscriptions.rs).
    view.keywords.extend(
        auth.model
            .keywords(&view.folder)
            .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?,
    );
    // \Recent: SELECT claims what no session was told of yet (RFC 3501
    // §2.3.2); EXAMINE must not take it away (§6.3.2), so it only looks.
    let floor = if read_only {
        auth.model.recent_floor(&view.folder)
    } else {
        auth.model.claim_recent(&view.folder).map(Some)
    }
    .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?;
    let recent = view.mark_recent(floor);
    let data = vec![
        Data::Flags(folder_flags(&view.keywords)),
        Data::Exists(view.uids.len() as u32),
        Data::Recent(recent),
    ];
    let mut codes = vec![
        (
            Code::UidValidity(nz(view.folder.uid_validity.0)),
            "UIDs valid".to_string(),
        ),
        (
            Code::UidNext(nz(view.folder.uid_next.0)),
            "Predicted next UID".to_string(),
        ),
        (
            permanent_flags(&view.keywords),
            "Flags permitted".to_string(),
        ),
    ];
    if let Some(first) = records.iter().position(|r| r.flags & flags::SEEN == 0) {
        codes.push((
            Code::Unseen(nz(first as u32 + 1)),
            "First unseen".to_string(),
        ));
    }
    Ok((view, data, codes))
}
