//! SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2): leave the folder selected
//! before (see [`leave`]), bring the new one up to date, and describe it:
//! FLAGS, EXISTS, RECENT, then the untagged OKs (UIDVALIDITY, UIDNEXT,
//! PERMANENTFLAGS, UNSEEN) and `[READ-WRITE]` / `[READ-ONLY]`. Costs one
//! delta query on the folder (a folder listing first when the name is not
//! known yet); flags and UIDs come from the local index.

use imap_next::imap_types::flag::{Flag, FlagPerm};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data};

use crate::imap::session::{
    Authenticated, Refusal, Reply, Shared, State, View, leave, local_name, nz, untagged_ok,
};
use crate::mailbox::flags;
use crate::store::Store;

/// SELECT, or EXAMINE when `read_only`.
pub(crate) async fn handle(
    shared: &Shared,
    state: &mut State,
    mailbox: &Mailbox<'_>,
    read_only: bool,
) -> Reply {
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
    match select(&auth, &folder, read_only, &shared.store).await {
        Ok((view, data, code)) => {
            let mut reply = Reply::ok(format!("{name} completed")).with_data(data);
            reply.status = Ok((Some(code), format!("{name} completed")));
            for (code, t) in select_codes(&view, &shared.store) {
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

/// Sync the folder, then describe it.
async fn select(
    auth: &Authenticated,
    name: &str,
    read_only: bool,
    store: &Store,
) -> Result<(View, Vec<Data<'static>>, Code<'static>), Refusal> {
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
    let records = store
        .messages(folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let view = View {
        folder: folder.clone(),
        read_only,
        uids: records.iter().map(|r| r.uid).collect(),
        told: records
            .iter()
            .map(|r| (r.uid, (r.flags, r.keywords.clone())))
            .collect(),
        fetched: Default::default(),
    };
    let mut data = vec![
        Data::Flags(vec![
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ]),
        Data::Exists(view.uids.len() as u32),
        Data::Recent(0),
    ];
    let _ = &mut data;
    let code = if read_only {
        Code::ReadOnly
    } else {
        Code::ReadWrite
    };
    Ok((view, data, code))
}

/// The untagged OK lines of a SELECT (UIDVALIDITY, UIDNEXT, PERMANENTFLAGS,
/// UNSEEN).
fn select_codes(view: &View, store: &Store) -> Vec<(Code<'static>, String)> {
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
            Code::PermanentFlags(vec![
                FlagPerm::Flag(Flag::Answered),
                FlagPerm::Flag(Flag::Flagged),
                FlagPerm::Flag(Flag::Deleted),
                FlagPerm::Flag(Flag::Seen),
                FlagPerm::Flag(Flag::Draft),
                FlagPerm::Asterisk,
            ]),
            "Flags permitted".to_string(),
        ),
    ];
    if let Ok(records) = store.messages(view.folder.id)
        && let Some(first) = records.iter().position(|r| r.flags & flags::SEEN == 0)
    {
        codes.push((
            Code::Unseen(nz(first as u32 + 1)),
            "First unseen".to_string(),
        ));
    }
    codes
}
