//! CREATE (RFC 3501 §6.3.3): a folder in Graph, in the mailbox its name
//! belongs to (the account's own, or a shared one under `Shared/<address>/`).
//! Missing superior folders are created first, as the RFC asks ("CREATE
//! foo/bar/zap" creates foo and foo/bar too); a trailing `/` is ignored.
//! Costs one folder creation per missing level and nothing more: each
//! folder Graph confirms is added to the stored folder tree at once.
//!
//! Refused before any Graph call: names under `Shared/` that are not under
//! a shared mailbox the account reads (the prefix is reserved for them, so
//! that a private folder is never listed like a shared mailbox's folder),
//! a level longer than [`MAX_LEVEL_CHARS`], or more than [`MAX_LEVELS`]
//! levels (Exchange's own limits, see there).

use super::Ctx;
use imap_next::imap_types::mailbox::Mailbox;

use crate::imap::session::{Authenticated, Reply, local_name};
use crate::mailbox::SHARED_PREFIX;
use crate::mailbox::folders::FolderHandle;

/// Longest folder name level, in characters. Microsoft documents no
/// maximum for a mailFolder's `displayName` (Graph's mailFolder resource
/// and "Exchange Online limits" are silent); Exchange's own OWA code caps
/// folder names at 256 characters (`MaxFolderNameLength`), so 255 is a
/// conservative bound that Exchange accepts.
pub(crate) const MAX_LEVEL_CHARS: usize = 255;

/// Most levels of a folder name below the top of its mailbox. "Exchange
/// Online limits" (Mailbox folder limits): maximum folder hierarchy depth
/// 300, with a warning from 250 (`FolderHierarchyDepthWarningQuota`);
/// Exchange counts from its own root, above the folders IMAP shows, so
/// graphgate stops at the warning level and stays clear of the hard one.
pub(crate) const MAX_LEVELS: usize = 250;

/// Whether `name` may be the name of a new (created or renamed) folder of
/// `auth`: the reason in words when it may not.
pub(crate) fn refuse_new_name(auth: &Authenticated, name: &str) -> Option<String> {
    let model = auth.model.model_for_name(name);
    let reserved = SHARED_PREFIX.trim_end_matches('/');
    let head = name.split('/').next().unwrap_or_default();
    if model.prefix().is_empty() && head.eq_ignore_ascii_case(reserved) {
        return Some(format!(
            "[CANNOT] {name:?} is under {SHARED_PREFIX}, which is reserved for shared mailboxes \
             ({SHARED_PREFIX}<address>/<folder>); this account reads no shared mailbox by that \
             name. Choose a name outside {SHARED_PREFIX}, or ask the administrator to give the \
             account that shared mailbox (`graphgate accounts add LOGIN --shared ADDRESS`)"
        ));
    }
    let relative = name.strip_prefix(model.prefix()).unwrap_or(name);
    let levels = relative.split('/').count();
    if levels > MAX_LEVELS {
        return Some(format!(
            "[LIMIT] {levels} levels is deeper than Exchange Online allows: a folder may be at \
             most {MAX_LEVELS} levels below the top of its mailbox (Exchange refuses folders \
             nested deeper than 300 levels, counted from its own root)"
        ));
    }
    if let Some(long) = relative
        .split('/')
        .find(|level| level.chars().count() > MAX_LEVEL_CHARS)
    {
        return Some(format!(
            "[LIMIT] the folder name level starting {:?} has {} characters; Exchange folder names have at \
             most {MAX_LEVEL_CHARS}",
            long.chars().take(20).collect::<String>(),
            long.chars().count()
        ));
    }
    None
}

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, mailbox: &Mailbox<'_>) -> Reply {
    let state = &ctx.conn.state;
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
    if let Some(reason) = refuse_new_name(auth, &wanted) {
        return Reply::no(reason);
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
    // The mailbox the new folders land in: the parent's (INBOX may be a
    // shared mailbox's folder, `imap_inbox`), else the name's.
    let target = match &parent {
        Some(f) => auth.model.model_of(f),
        None => model,
    };
    let mut parent_id = parent.as_ref().map(FolderHandle::of);
    let mut created = Vec::new();
    for (k, leaf) in levels.iter().enumerate().skip(first_missing) {
        match target.create_folder(parent_id.as_ref(), leaf).await {
            Ok(folder) => {
                created.push(levels[..=k].join("/"));
                let name = format!("{}{}", model.prefix(), levels[..=k].join("/"));
                if let Err(e) = auth.model.created(&name) {
                    tracing::warn!("CREATE: the subscription of {name:?} could not be kept: {e}");
                }
                parent_id = Some(folder);
            }
            Err(e) => {
                let so_far = if created.is_empty() {
                    String::new()
                } else {
                    format!(" (created before the refusal: {})", created.join(", "))
                };
                return Reply::no(format!(
                    "the mail server refused to create {:?}: {e}{so_far}",
                    format!("{}{}", model.prefix(), levels[..=k].join("/"))
                ));
            }
        }
    }
    Reply::ok("CREATE completed")
}
