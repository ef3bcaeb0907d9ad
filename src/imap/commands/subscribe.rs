//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7): accepted and
//! ignored — every folder counts as subscribed (LSUB lists them all). No
//! Graph call.

use crate::imap::session::Reply;

/// `verb` is `SUBSCRIBE` or `UNSUBSCRIBE`.
pub(crate) fn handle(verb: &str) -> Reply {
    Reply::ok(format!("{verb} completed (every folder is subscribed)"))
}
