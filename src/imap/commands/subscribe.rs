//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7): the account's
//! subscriptions, kept by the mailbox model by name (a name need not be a
//! folder, and stays subscribed when its folder goes); LSUB answers from
//! them. A folder never (un)subscribed counts as subscribed (see
//! `mailbox::local`). No Graph call.

use super::Ctx;
use imap_next::imap_types::mailbox::Mailbox;

use crate::imap::session::{Reply, local_name};

/// SUBSCRIBE when `subscribe`, else UNSUBSCRIBE.
pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, mailbox: &Mailbox<'_>, subscribe: bool) -> Reply {
    let state = &ctx.conn.state;
    let verb = if subscribe {
        "SUBSCRIBE"
    } else {
        "UNSUBSCRIBE"
    };
    let Some(auth) = state.account() else {
        return Reply::bad("not logged in");
    };
    let name = local_name(mailbox);
    match auth.model.subscribe(&name, subscribe) {
        Ok(()) => Reply::ok(format!("{verb} completed")),
        Err(e) => Reply::no(format!("the subscription could not be kept: {e}")),
    }
}
