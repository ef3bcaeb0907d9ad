//! STATUS (RFC 3501 §6.3.10): MESSAGES, RECENT (no session told of them
//! yet; STATUS takes none), UIDNEXT,
//! UIDVALIDITY and UNSEEN of a folder, after bringing it up to date. Costs
//! one delta query on that folder; the counts come from the local index.
//! HIGHESTMODSEQ (RFC 7162 §3.1.2.2) from the store; asking for it turns
//! CONDSTORE on.

use super::Ctx;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::Data;
use imap_next::imap_types::status::{StatusDataItem, StatusDataItemName};

use crate::imap::session::{Authenticated, Refusal, Reply, local_name, nz, wire_name};
use crate::mailbox::flags;

pub(crate) async fn handle(
    ctx: &mut Ctx<'_, '_>,
    mailbox: &Mailbox<'_>,
    item_names: &[StatusDataItemName],
) -> Reply {
    let state = &ctx.conn.state;
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let folder = local_name(mailbox);
    if item_names.contains(&StatusDataItemName::HighestModSeq) {
        auth.enabled.enable_condstore(None);
    }
    match status(auth, &folder, item_names).await {
        Ok(data) => Reply::ok("STATUS completed").with_data(vec![data]),
        Err(r) => r.into(),
    }
}

/// STATUS of a folder (after a sync).
async fn status(
    auth: &Authenticated,
    name: &str,
    wanted: &[StatusDataItemName],
) -> Result<Data<'static>, Refusal> {
    let folder = auth
        .model
        .folder(name)
        .map_err(|_| Refusal::no(format!("no folder named {name:?}")))?;
    auth.model
        .sync(folder.id)
        .await
        .map_err(|e| Refusal::no(format!("cannot synchronise {name}: {e}")))?;
    let folder = auth.model.folder(name).unwrap_or(folder);
    let records = auth
        .model
        .messages(&folder)
        .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?;
    let mut items = Vec::new();
    for w in wanted {
        items.push(match w {
            StatusDataItemName::Messages => StatusDataItem::Messages(records.len() as u32),
            StatusDataItemName::Recent => StatusDataItem::Recent(
                auth.model
                    .recent_floor(&folder)
                    .ok()
                    .flatten()
                    .map_or(0, |floor| records.iter().filter(|r| r.uid >= floor).count())
                    as u32,
            ),
            StatusDataItemName::UidNext => StatusDataItem::UidNext(nz(folder.uid_next.0)),
            StatusDataItemName::UidValidity => {
                StatusDataItem::UidValidity(nz(folder.uid_validity.0))
            }
            StatusDataItemName::Unseen => StatusDataItem::Unseen(
                records
                    .iter()
                    .filter(|r| r.flags & flags::SEEN == 0)
                    .count() as u32,
            ),
            StatusDataItemName::HighestModSeq => StatusDataItem::HighestModSeq(
                auth.model
                    .highest_modseq(&folder)
                    .map_err(|e| Refusal::no(format!("cannot read the folder's index: {e}")))?,
            ),
            _ => continue,
        });
    }
    Ok(Data::Status {
        mailbox: wire_name(&folder),
        items: items.into(),
    })
}
