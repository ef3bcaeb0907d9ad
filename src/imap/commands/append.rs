//! APPEND (RFC 3501 §6.3.11, UIDPLUS RFC 4315 §3): the message goes to
//! Graph as a non-draft message of the target folder, created with its
//! date and flags (`\Seen`, `\Flagged`, `\Answered`, `$Forwarded`,
//! keywords as categories); the tagged OK carries `[APPENDUID]` once the
//! folder's sync has given the new message its UID. Costs one message
//! creation (see the backend's append route) and one delta query on the
//! folder.

use std::num::NonZeroU32;

use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::flag::Flag;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::Code;

use crate::graph::{AppendOptions, FlagStatus, FlagUpdate, RemoteFolderId};
use crate::imap::session::{Refusal, Reply, Shared, State, local_name};

pub(crate) async fn handle(
    shared: &Shared,
    state: &State,
    mailbox: &Mailbox<'_>,
    flags: &[Flag<'_>],
    date: Option<&DateTime>,
    message: &LiteralOrLiteral8<'_>,
) -> Reply {
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let folder_name = local_name(mailbox);
    let Ok(folder) = auth.model.folder(&folder_name) else {
        let mut r = Reply::no(format!("no folder named {folder_name:?}"));
        r.status = Err(Refusal::No(format!(
            "[TRYCREATE] no folder named {folder_name:?}"
        )));
        return r;
    };
    let bytes = match message {
        LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
        LiteralOrLiteral8::Literal8(l) => l.data.as_ref().to_vec(),
    };
    let options = AppendOptions {
        is_read: flags.contains(&Flag::Seen),
        received: date.map(|d| d.as_ref().with_timezone(&chrono::Utc)),
        flags: append_flags(flags),
    };
    let remote = RemoteFolderId::new(folder.remote_id.clone());
    match auth
        .model
        .backend_for(&folder)
        .append_message(&remote, bytes::Bytes::from(bytes), &options)
        .await
    {
        Ok(created) => {
            let _ = auth.model.sync(folder.id).await;
            let uid = shared
                .store
                .message_by_remote_id(folder.id, created.id.as_str())
                .ok()
                .flatten()
                .map(|m| m.uid.0);
            let mut reply = Reply::ok("APPEND completed");
            if let Some(uid) = uid.and_then(NonZeroU32::new) {
                reply.status = Ok((
                    Some(Code::AppendUid {
                        uid_validity: NonZeroU32::new(folder.uid_validity.0)
                            .unwrap_or(NonZeroU32::MIN),
                        uid,
                    }),
                    "APPEND completed".into(),
                ));
            }
            reply
        }
        Err(e) => Reply::no(format!("Graph refused the message: {e}. {}", e.remedy())),
    }
}

/// The flags an APPENDed message is created with, beside `\Seen`
/// (`\Deleted` and `\Draft` cannot be set at creation through Graph).
fn append_flags(flags: &[Flag<'_>]) -> FlagUpdate {
    let mut update = FlagUpdate::default();
    let mut categories = Vec::new();
    for f in flags {
        match f {
            Flag::Flagged => update.flag = Some(FlagStatus::Flagged),
            Flag::Answered => update.answered = Some(true),
            Flag::Keyword(k) if k.as_ref().eq_ignore_ascii_case("$Forwarded") => {
                update.forwarded = Some(true)
            }
            Flag::Keyword(k) => categories.push(k.as_ref().to_string()),
            _ => {}
        }
    }
    if !categories.is_empty() {
        update.categories = Some(categories);
    }
    update
}
