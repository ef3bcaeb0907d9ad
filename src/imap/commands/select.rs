//! SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2): leave the folder selected
//! before (see [`leave`]), have the mailbox model bring the new one up to
//! date, and describe it: FLAGS (the keywords in use included, §7.2.6),
//! EXISTS, RECENT (the messages no session was told of before: SELECT
//! takes them), then the untagged OKs (UIDVALIDITY, UIDNEXT,
//! PERMANENTFLAGS, UNSEEN) and `[READ-WRITE]` / `[READ-ONLY]`. Costs one
//! delta query on the folder (a folder listing first when the name is not
//! known yet); flags and UIDs come from the local index.
//!
//! CONDSTORE and QRESYNC (RFC 7162): with CONDSTORE on (ENABLE, or the
//! `(CONDSTORE)` parameter, §3.1.8) the folder's `[HIGHESTMODSEQ n]` is
//! told; `(QRESYNC (uidvalidity modseq [known-uids [seq-match]]))` after
//! ENABLE QRESYNC (§3.2.5) also tells, when the UIDVALIDITY is the
//! client's, `VANISHED (EARLIER)` for what was expunged since and one
//! FETCH (UID FLAGS MODSEQ) per message changed since — all from the
//! local index, so a resync costs the one delta query whatever the size
//! of the folder. Selecting a folder while one is selected ends the old
//! one's responses with `OK [CLOSED]` (§3.2.11).

use super::Ctx;
use imap_next::imap_types::command::SelectParameter;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data};

use crate::imap::session::{
    Authenticated, Refusal, Reply, Shared, State, View, folder_flags, leave, local_name, nz,
    permanent_flags, untagged_ok,
};
use crate::mailbox::flags;

/// SELECT, or EXAMINE when `read_only`.
pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    mailbox: &Mailbox<'_>,
    parameters: &[SelectParameter],
    read_only: bool,
) -> Reply {
    let shared: &Shared = &ctx.server.shared;
    let state = &mut ctx.conn.state;
    let name = if read_only { "EXAMINE" } else { "SELECT" };
    let folder = local_name(mailbox);
    // RFC 7162 §3.2.5: QRESYNC only after ENABLE QRESYNC; checked before
    // the selected folder is left (a BAD changes no state).
    let qresync = parameters.iter().find_map(|p| match p {
        SelectParameter::QResync {
            uid_validity,
            mod_sequence_value,
            known_uids,
            ..
        } => Some((uid_validity.get(), mod_sequence_value.get(), known_uids)),
        SelectParameter::CondStore => None,
    });
    if qresync.is_some() && !state.account().is_some_and(|a| a.enabled.qresync()) {
        return Reply::bad(format!(
            "{name} with QRESYNC needs ENABLE QRESYNC first (RFC 7162 §3.2.5)"
        ));
    }
    let mut closed = false;
    let auth = match std::mem::replace(state, State::Logout) {
        State::Authenticated(a) => a,
        State::Selected(a, mut view) => {
            leave(shared, &a, &mut view).await;
            closed = true;
            a
        }
        other => {
            *state = other;
            return Reply::bad("not logged in");
        }
    };
    // `(CONDSTORE)` is a CONDSTORE-enabling parameter (RFC 7162 §3.1.8).
    if parameters
        .iter()
        .any(|p| matches!(p, SelectParameter::CondStore))
    {
        auth.enabled.enable_condstore(None);
    }
    let described = match select(&auth, &folder, read_only).await {
        Ok(mut described) => match resync(&auth, &mut described, qresync) {
            Ok(()) => Ok(described),
            Err(r) => Err(r),
        },
        Err(r) => Err(r),
    };
    let mut reply = match described {
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
    };
    if closed {
        reply
            .before
            .extend(untagged_ok(Code::Closed, "Previous folder closed"));
    }
    reply
}

/// CONDSTORE's `[HIGHESTMODSEQ]` and QRESYNC's resync for a described
/// folder (see the module's notes).
fn resync(
    auth: &Authenticated,
    (view, data, _): &mut Described,
    qresync: Option<(
        u32,
        u64,
        &Option<imap_next::imap_types::sequence::SequenceSet>,
    )>,
) -> Result<(), Refusal> {
    let cannot = |e| Refusal::no(format!("cannot read the folder's index: {e}"));
    if !view.condstore {
        return Ok(());
    }
    let Some((uid_validity, since, known)) = qresync else {
        return Ok(());
    };
    // Another UIDVALIDITY: the client's state is of another folder; it
    // gets the full SELECT answer only (§3.2.5).
    if uid_validity != view.folder.uid_validity.0 {
        return Ok(());
    }
    if let Some(vanished) = crate::imap::modseq::vanished_earlier(
        &auth.model,
        &view.folder,
        since,
        known.as_ref(),
        &view.uids.iter().copied().collect(),
    )
    .map_err(cannot)?
    {
        data.push(vanished);
    }
    let records = auth.model.messages(&view.folder).map_err(cannot)?;
    let largest = view.uids.last().map_or(0, |u| u.0);
    for (i, uid) in view.uids.iter().enumerate() {
        let Some(r) = crate::mailbox::content::find(&records, *uid) else {
            continue;
        };
        if r.modseq <= since
            || known
                .as_ref()
                .is_some_and(|set| !crate::imap::session::in_set(set, r.uid.0, largest))
        {
            continue;
        }
        let items = vec![
            MessageDataItem::Uid(nz(r.uid.0)),
            MessageDataItem::Flags(crate::imap::session::flag_list(
                view.shown(r.uid, r.flags),
                &r.keywords,
            )),
            MessageDataItem::ModSeq(crate::imap::modseq::nz64(r.modseq)),
        ];
        if let Ok(items) = Vec1::try_from(items) {
            data.push(Data::Fetch {
                seq: nz(i as u32 + 1),
                items,
            });
        }
    }
    Ok(())
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
    // HIGHESTMODSEQ before the read too: a change between the two is then
    // above what the client is told it has (RFC 7162 §3.1.2.1).
    let highest = auth
        .model
        .highest_modseq(&folder)
        .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?;
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
    view.condstore = auth.enabled.condstore();
    view.qresync = auth.enabled.qresync();
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
    // With CONDSTORE on (RFC 7162 §3.1.2.1).
    if view.condstore {
        codes.push((
            Code::HighestModSeq(crate::imap::modseq::nz64(highest)),
            "Highest".to_string(),
        ));
    }
    Ok((view, data, codes))
}
