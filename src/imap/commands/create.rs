//! CREATE (RFC 3501 §6.3.3): a folder in Graph, in the mailbox its name
//! belongs to (the account's own, or a shared one under `Shared/<address>/`).
//! Missing superior folders are created first, as the RFC asks ("CREATE
//! foo/bar/zap" creates foo and foo/bar too); a trailing `/` is ignored.
//! Costs one folder creation per missing level, then one folder listing
//! per mailbox the account reads.

use imap_next::imap_types::mailbox::Mailbox;

use crate::imap::session::{Reply, State, local_name};

pub(crate) async fn handle(state: &State, mailbox: &Mailbox<'_>) -> Reply {
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let wanted = local_name(mailbox);
    let wanted = wanted.trim_end_matches('/').to_string();
    if wanted.is_empty() || wanted.split('/').any(str::is_empty) {
        return Reply::no(format!(
            "{wanted:?} is not a folder name: a name has no empty levels (no leading `/` and no `//`)"
        ));
    }
    if auth.model.folder(&wanted).is_ok() {
        return Reply::no(format!(
            "[ALREADYEXISTS] the folder {wanted:?} already exists"
        ));
    }
    let model = auth.model.model_for_name(&wanted);
    let Some(relative) = wanted.strip_prefix(model.prefix()) else {
        return Reply::no(format!("cannot create {wanted:?}"));
    };
    if relative.is_empty() {
        return Reply::no(format!(
            "{wanted:?} is a shared mailbox's root; create folders under it"
        ));
    }
    let levels: Vec<&str> = relative.split('/').collect();
    // The deepest superior that exists; everything below it is created.
    let mut parent = None;
    let mut first_missing = 0;
    for k in (1..levels.len()).rev() {
        let name = format!("{}{}", model.prefix(), levels[..k].join("/"));
        if let Ok(folder) = auth.model.folder(&name) {
            parent = Some(folder);
            first_missing = k;
            break;
        }
    }
    let backend = match &parent {
        Some(f) => auth.model.backend_for(f).clone(),
        None => model.backend().clone(),
    };
    let mut parent_id = parent
        .as_ref()
        .map(|f| crate::graph::RemoteFolderId::new(f.remote_id.clone()));
    let mut created = Vec::new();
    for (k, leaf) in levels.iter().enumerate().skip(first_missing) {
        match backend.create_folder(parent_id.as_ref(), leaf).await {
            Ok(folder) => {
                created.push(levels[..=k].join("/"));
                parent_id = Some(folder.id);
            }
            Err(e) => {
                let _ = auth.model.refresh_folders().await;
                let so_far = if created.is_empty() {
                    String::new()
                } else {
                    format!(" (created before the refusal: {})", created.join(", "))
                };
                return Reply::no(format!(
                    "Graph refused to create {:?}: {e}{so_far}",
                    format!("{}{}", model.prefix(), levels[..=k].join("/"))
                ));
            }
        }
    }
    let _ = auth.model.refresh_folders().await;
    Reply::ok("CREATE completed")
}
