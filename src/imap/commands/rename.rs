//! RENAME (RFC 3501 §6.3.5): a folder within its parent (moving it under
//! another parent is not supported yet). Costs one folder update, then one
//! folder listing per mailbox the account reads.

use imap_next::imap_types::mailbox::Mailbox;

use crate::graph::RemoteFolderId;
use crate::imap::session::{Reply, State, local_name};

pub(crate) async fn handle(state: &State, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Reply {
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let old = local_name(from);
    let new = local_name(to);
    let Ok(folder) = auth.model.folder(&old) else {
        return Reply::no(format!("no folder named {old:?}"));
    };
    let (old_parent, _) = old.rsplit_once('/').unwrap_or(("", &old));
    let (new_parent, leaf) = new.rsplit_once('/').unwrap_or(("", &new));
    if old_parent != new_parent {
        return Reply::no(
            "moving a folder to another parent is not supported yet; rename within its parent",
        );
    }
    match auth
        .model
        .backend_for(&folder)
        .rename_folder(&RemoteFolderId::new(folder.remote_id.clone()), leaf)
        .await
    {
        Ok(_) => {
            let _ = auth.model.refresh_folders().await;
            Reply::ok("RENAME completed")
        }
        Err(e) => Reply::no(format!("Graph refused to rename {old:?}: {e}")),
    }
}
