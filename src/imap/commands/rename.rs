//! RENAME (RFC 3501 §6.3.5): a folder within its parent (moving it under
//! another parent is not supported yet). Costs one folder update; the
//! stored folder tree takes the new name when Graph confirms it. The new
//! name follows CREATE's rules (`Shared/` reserved, Exchange's limits).

use super::Ctx;
use imap_next::imap_types::mailbox::Mailbox;

use crate::imap::session::{Reply, local_name};

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Reply {
    let state = &ctx.conn.state;
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let old = local_name(from);
    let new = local_name(to);
    let Ok(folder) = auth.model.folder(&old) else {
        return Reply::no(format!("no folder named {old:?}"));
    };
    if let Some(reason) = super::create::refuse_new_name(auth, &new) {
        return Reply::no(reason);
    }
    let (old_parent, _) = old.rsplit_once('/').unwrap_or(("", &old));
    let (new_parent, leaf) = new.rsplit_once('/').unwrap_or(("", &new));
    if old_parent != new_parent {
        return Reply::no(
            "moving a folder to another parent is not supported yet; rename within its parent",
        );
    }
    match auth
        .model
        .model_of(&folder)
        .rename_folder(&folder, leaf)
        .await
    {
        Ok(()) => {
            if let Err(e) = auth.model.renamed(&old, &new) {
                tracing::warn!("RENAME: the subscription of {new:?} could not be kept: {e}");
            }
            Reply::ok("RENAME completed")
        }
        Err(e) => Reply::no(format!("the mail server refused to rename {old:?}: {e}")),
    }
}
