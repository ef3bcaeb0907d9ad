//! CREATE (RFC 3501 §6.3.3): a folder in Graph under its parent (which
//! must exist; a trailing `/` is ignored), in the mailbox the parent
//! belongs to. Costs one folder creation, then one folder listing per
//! mailbox the account reads.

use imap_next::imap_types::mailbox::Mailbox;

use crate::graph::RemoteFolderId;
use crate::imap::session::{Reply, State, local_name};

pub(crate) async fn handle(state: &State, mailbox: &Mailbox<'_>) -> Reply {
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let wanted = local_name(mailbox);
    let wanted = wanted.trim_end_matches('/').to_string();
    let (parent, leaf) = match wanted.rsplit_once('/') {
        Some((p, l)) => (Some(p.to_string()), l.to_string()),
        None => (None, wanted.clone()),
    };
    let parent = match parent {
        Some(p) => match auth.model.folder(&p) {
            Ok(f) => Some(f),
            Err(_) => return Reply::no(format!("the parent folder {p:?} does not exist")),
        },
        None => None,
    };
    let parent_id = parent
        .as_ref()
        .map(|f| RemoteFolderId::new(f.remote_id.clone()));
    let backend = match &parent {
        Some(f) => auth.model.backend_for(f),
        None => auth.model.own_backend(),
    };
    match backend.create_folder(parent_id.as_ref(), &leaf).await {
        Ok(_) => {
            let _ = auth.model.refresh_folders().await;
            Reply::ok("CREATE completed")
        }
        Err(e) => Reply::no(format!("Graph refused to create {wanted:?}: {e}")),
    }
}
