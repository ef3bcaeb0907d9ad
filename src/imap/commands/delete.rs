//! DELETE (RFC 3501 §6.3.4): a folder in Graph, except INBOX and the
//! special-use folders Exchange keeps. Costs one folder deletion; the
//! folder (and its subfolders with it) leaves the stored folder tree when
//! Graph confirms.

use super::Ctx;
use imap_next::imap_types::mailbox::Mailbox;

use crate::imap::session::{Reply, local_name};

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, mailbox: &Mailbox<'_>) -> Reply {
    let state = &ctx.conn.state;
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let wanted = local_name(mailbox);
    let Ok(folder) = auth.model.folder(&wanted) else {
        return Reply::no(format!("no folder named {wanted:?}"));
    };
    if folder.name == "INBOX" || folder.special_use.is_some() {
        return Reply::no(format!("{wanted} is a special folder Exchange keeps"));
    }
    match auth.model.model_of(&folder).delete_folder(&folder).await {
        Ok(()) => Reply::ok("DELETE completed"),
        Err(e) => Reply::no(format!("the mail server refused to delete {wanted:?}: {e}")),
    }
}
