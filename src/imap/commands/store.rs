//! STORE and UID STORE (RFC 3501 §6.4.6): `FLAGS`, `+FLAGS`, `-FLAGS`
//! and their `.SILENT` forms, as one change of the mailbox model
//! ([`crate::mailbox::MailboxSet::set_flags`]): ordered with every other
//! change to the folder, computed from the latest flags, stored once
//! Graph has acknowledged it. `\Seen`, `\Flagged`, `\Answered`,
//! `$Forwarded` and keywords (categories) go to Graph; `\Deleted` stays
//! local until EXPUNGE; `\Draft` is local too (Graph's isDraft cannot
//! change after creation; see [`crate::mailbox::flags`]). A message another client expunged meanwhile is skipped
//! (and announced as expunged later); the rest of the set is changed.
//! Costs one flag update per message whose Graph-side flags change, none
//! for `\Deleted` alone.
//!
//! CONDSTORE (RFC 7162 §3.1.3): `(UNCHANGEDSINCE n)` leaves every message
//! changed after n alone (decided under the folder's gate, with the
//! change) and names them in `OK [MODIFIED set]`; it turns CONDSTORE on,
//! and with CONDSTORE on every FETCH a STORE answers carries MODSEQ —
//! also under `.SILENT`, for the messages it changed.

use super::Ctx;
use imap_next::imap_types::command::StoreModifier;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_next::imap_types::response::{Code, Data};
use imap_next::imap_types::sequence::SequenceSet;

use crate::imap::session::{
    Reply, check_set, flag_list, folder_flags, in_view, nz, permanent_flags, resolve, untagged_ok,
};
use crate::mailbox::{FlagChange, FlagOp, flags};

/// What a STORE asks for beside its set.
pub(crate) struct Asked<'a> {
    pub kind: &'a StoreType,
    pub response: &'a StoreResponse,
    pub flags: &'a [Flag<'a>],
    pub modifiers: &'a [StoreModifier],
}

pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    set: &SequenceSet,
    asked: &Asked<'_>,
    uid: bool,
) -> Reply {
    let (kind, response, new_flags) = (asked.kind, asked.response, asked.flags);
    let unchanged_since = asked
        .modifiers
        .iter()
        .map(|StoreModifier::UnchangedSince(n)| *n)
        .next();
    let state = &mut ctx.conn.state;
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    if let Err(r) = check_set(view, set, uid, "STORE") {
        return r.into();
    }
    if view.read_only {
        return Reply::no("the folder is open read-only (EXAMINE); SELECT it to change flags");
    }
    let records = match auth.model.messages(&view.folder) {
        Ok(r) => r,
        Err(e) => return Reply::no(format!("cannot read the folder's index: {e}")),
    };
    let chosen = resolve(view, &records, set, uid);
    let uids: Vec<_> = chosen.iter().map(|(_, r)| r.uid).collect();
    let change = flag_change(kind, new_flags);
    if unchanged_since.is_some() {
        auth.enabled.enable_condstore(Some(&mut *view));
    }
    let outcome = match auth
        .model
        .set_flags_unchanged_since(&view.folder, &uids, &change, unchanged_since)
        .await
    {
        Ok(o) => o,
        Err(e) => return Reply::no(format!("the flags could not be stored: {e}")),
    };
    let silent = matches!(response, StoreResponse::Silent);
    // Every keyword a STORE names is defined for the folder from now on,
    // as Dovecot creates it (even for -FLAGS, .SILENT or a message gone
    // meanwhile): FLAGS and PERMANENTFLAGS say so before anything else
    // (RFC 3501 §7.2.6; imaptest "STORE didn't create keyword").
    let mut first = Vec::new();
    let mut untagged = Vec::new();
    let named: std::collections::BTreeSet<String> = change
        .keywords
        .iter()
        .cloned()
        .chain((change.bits & flags::FORWARDED != 0).then(|| "$Forwarded".to_string()))
        .collect();
    if outcome.failure.is_none() && !named.is_subset(&view.keywords) {
        view.keywords.extend(named);
        first.push(Data::Flags(folder_flags(&view.keywords)));
        untagged.extend(untagged_ok(
            permanent_flags(&view.keywords),
            "Flags permitted",
        ));
    }
    let mut data = Vec::new();
    for stored in &outcome.done {
        // With or without .SILENT the client now knows these flags.
        view.told
            .insert(stored.uid, (stored.flags, stored.keywords.clone()));
        let Some((seq, before)) = chosen
            .iter()
            .find(|(_, r)| r.uid == stored.uid)
            .map(|(s, r)| (*s, r.modseq))
        else {
            continue;
        };
        // .SILENT: no FLAGS, but with CONDSTORE the new MODSEQ of what
        // changed (RFC 7162 §3.1.3).
        let changed = stored.modseq != before;
        if silent && !(view.condstore && changed) {
            continue;
        }
        let mut items = Vec::new();
        if !silent {
            items.push(MessageDataItem::Flags(flag_list(
                view.shown(stored.uid, stored.flags),
                &stored.keywords,
            )));
        }
        if view.condstore {
            items.push(MessageDataItem::ModSeq(crate::imap::modseq::nz64(
                stored.modseq,
            )));
        }
        // With QRESYNC every FETCH names its UID (RFC 7162 §3.2.4).
        if uid || view.qresync {
            items.insert(0, MessageDataItem::Uid(nz(stored.uid.0)));
        }
        if let Ok(items) = Vec1::try_from(items) {
            data.push(Data::Fetch {
                seq: nz(seq),
                items,
            });
        }
    }
    // A message another session expunged meanwhile (this one has not
    // been told yet) still gets its FETCH FLAGS, as its view would have
    // them (RFC 2180 §4.2.1 allows it; imaptest "STORE didn't return
    // FETCH FLAGS"). The change is not stored: the message is gone.
    if !silent && outcome.failure.is_none() {
        for (seq, u) in in_view(view, set, uid) {
            if outcome.done.iter().any(|d| d.uid == u) || outcome.modified.contains(&u) {
                continue;
            }
            // Its flags as last read, or as this session was told them.
            let old = match chosen.iter().find(|(_, r)| r.uid == u) {
                Some((_, r)) => crate::mailbox::Flags::from_store(r.flags, &r.keywords),
                None => match view.told.get(&u) {
                    Some((bits, keywords)) => crate::mailbox::Flags::from_store(*bits, keywords),
                    None => continue,
                },
            };
            let (bits, keywords) = change.apply(&old).to_store();
            let mut items = vec![MessageDataItem::Flags(flag_list(
                view.shown(u, bits),
                &keywords,
            ))];
            if uid || view.qresync {
                items.insert(0, MessageDataItem::Uid(nz(u.0)));
            }
            if let Ok(items) = Vec1::try_from(items) {
                data.push(Data::Fetch {
                    seq: nz(seq),
                    items,
                });
            }
        }
    }
    match outcome.failure {
        None => {
            let mut reply = Reply::ok("STORE completed").with_data(data);
            reply.first = first;
            reply.untagged = untagged;
            // The messages that failed UNCHANGEDSINCE, by sequence number
            // (UIDs for UID STORE), RFC 7162 §3.1.3.
            let modified: Vec<u32> = chosen
                .iter()
                .filter(|(_, r)| outcome.modified.contains(&r.uid))
                .map(|(seq, r)| if uid { r.uid.0 } else { *seq })
                .collect();
            if let Some(set) = crate::imap::modseq::number_set(&modified) {
                reply.status = Ok((
                    Some(Code::Modified(set)),
                    "Conditional STORE failed".to_string(),
                ));
            }
            reply
        }
        Some(e) => Reply::no(format!(
            "Graph refused the flag change after {} of {} messages: {e}",
            outcome.done.len(),
            uids.len()
        ))
        .with_data(data),
    }
}

/// The model's change for a STORE's kind and flag list.
fn flag_change(kind: &StoreType, list: &[Flag<'_>]) -> FlagChange {
    let mut bits = 0u32;
    let mut keywords = Vec::new();
    for f in list {
        match f {
            Flag::Seen => bits |= flags::SEEN,
            Flag::Answered => bits |= flags::ANSWERED,
            Flag::Flagged => bits |= flags::FLAGGED,
            Flag::Deleted => bits |= flags::DELETED,
            Flag::Draft => bits |= flags::DRAFT,
            Flag::Keyword(k) if k.as_ref().eq_ignore_ascii_case("$Forwarded") => {
                bits |= flags::FORWARDED
            }
            Flag::Keyword(k) => keywords.push(k.as_ref().to_string()),
            Flag::Extension(_) => {}
        }
    }
    let op = match kind {
        StoreType::Replace => FlagOp::Replace,
        StoreType::Add => FlagOp::Add,
        StoreType::Remove => FlagOp::Remove,
    };
    FlagChange { op, bits, keywords }
}
