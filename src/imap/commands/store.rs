//! STORE and UID STORE (RFC 3501 §6.4.6): `FLAGS`, `+FLAGS`, `-FLAGS`
//! and their `.SILENT` forms. `\Seen`, `\Flagged`, `\Answered`,
//! `$Forwarded` and keywords (categories) go to Graph; `\Deleted` stays
//! local until EXPUNGE; `\Draft` follows Graph's isDraft, which a client
//! cannot change. Costs one flag update per message whose Graph-side
//! flags change, none for `\Deleted` alone.

use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::SequenceSet;

use crate::graph::{FlagStatus, FlagUpdate, RemoteMessageId};
use crate::imap::session::{
    Authenticated, Refusal, Reply, Shared, State, View, flag_list, nz, resolve,
};
use crate::mailbox::flags;

pub(crate) async fn handle(
    shared: &Shared,
    state: &mut State,
    set: &SequenceSet,
    kind: &StoreType,
    response: &StoreResponse,
    flags: &[Flag<'_>],
    uid: bool,
) -> Reply {
    let Some((auth, view)) = state.selected() else {
        return Reply::bad("no folder selected: SELECT one first");
    };
    let silent = matches!(response, StoreResponse::Silent);
    let request = StoreRequest {
        set,
        kind,
        flags,
        silent,
        uid,
    };
    match store_flags(shared, auth, view, &request).await {
        Ok(data) => Reply::ok("STORE completed").with_data(data),
        Err(r) => r.into(),
    }
}

/// What a STORE asks for.
struct StoreRequest<'a> {
    set: &'a SequenceSet,
    kind: &'a StoreType,
    flags: &'a [Flag<'a>],
    /// `.SILENT`: no FETCH responses.
    silent: bool,
    uid: bool,
}

/// STORE / UID STORE: flags to Graph (`\Deleted` stays local).
async fn store_flags(
    shared: &Shared,
    auth: &Authenticated,
    view: &mut View,
    request: &StoreRequest<'_>,
) -> Result<Vec<Data<'static>>, Refusal> {
    let StoreRequest {
        set,
        kind,
        flags: new_flags,
        silent,
        uid,
    } = *request;
    if view.read_only {
        return Err(Refusal::no(
            "the folder is open read-only (EXAMINE); SELECT it to change flags",
        ));
    }
    let records = shared
        .store
        .messages(view.folder.id)
        .map_err(|e| Refusal::no(e.to_string()))?;
    let mut bits = 0u32;
    let mut keywords = Vec::new();
    for f in new_flags {
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
    let mut out = Vec::new();
    for (seq, r) in resolve(view, &records, set, uid) {
        let old = crate::mailbox::Flags::from_store(r.flags, &r.keywords);
        let mut new_bits = match kind {
            StoreType::Replace => bits | (old.bits & flags::DRAFT),
            StoreType::Add => old.bits | bits,
            StoreType::Remove => old.bits & !bits,
        };
        // \Draft follows Graph's isDraft, which a client cannot change.
        new_bits = (new_bits & !flags::DRAFT) | (old.bits & flags::DRAFT);
        let mut new_keywords = match kind {
            StoreType::Replace => keywords.clone(),
            StoreType::Add => {
                let mut k = old.keywords.clone();
                k.extend(keywords.iter().cloned());
                k
            }
            StoreType::Remove => old
                .keywords
                .iter()
                .filter(|k| !keywords.iter().any(|x| x.eq_ignore_ascii_case(k)))
                .cloned()
                .collect(),
        };
        new_keywords.sort();
        new_keywords.dedup();
        let changed = |bit: u32| (old.bits & bit) != (new_bits & bit);
        let update = FlagUpdate {
            is_read: changed(flags::SEEN).then_some(new_bits & flags::SEEN != 0),
            flag: changed(flags::FLAGGED).then_some(if new_bits & flags::FLAGGED != 0 {
                FlagStatus::Flagged
            } else {
                FlagStatus::NotFlagged
            }),
            answered: changed(flags::ANSWERED).then_some(new_bits & flags::ANSWERED != 0),
            forwarded: changed(flags::FORWARDED).then_some(new_bits & flags::FORWARDED != 0),
            categories: (new_keywords != old.keywords).then(|| new_keywords.clone()),
        };
        if update != FlagUpdate::default() {
            let id = RemoteMessageId::new(r.remote_id.clone());
            auth.model
                .backend_for(&view.folder)
                .update_flags(&id, &update)
                .await
                .map_err(|e| Refusal::no(format!("Graph refused the flag change: {e}")))?;
        }
        let keywords_text = new_keywords.join(" ");
        shared
            .store
            .set_message_flags(view.folder.id, r.uid, new_bits, &keywords_text)
            .map_err(|e| Refusal::no(e.to_string()))?;
        // With or without .SILENT the client now knows these flags.
        view.told.insert(r.uid, (new_bits, keywords_text.clone()));
        if !silent {
            let mut items = vec![MessageDataItem::Flags(flag_list(new_bits, &keywords_text))];
            if uid {
                items.insert(0, MessageDataItem::Uid(nz(r.uid.0)));
            }
            if let Ok(items) = Vec1::try_from(items) {
                out.push(Data::Fetch {
                    seq: nz(seq),
                    items,
                });
            }
        }
    }
    Ok(out)
}
