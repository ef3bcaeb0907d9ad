//! ENABLE (RFC 5161): no extension advertised here needs enabling, so
//! nothing is enabled and no `* ENABLED` is sent. No Graph call.

use crate::imap::session::Reply;

pub(crate) fn handle() -> Reply {
    Reply::ok("ENABLE completed (nothing to enable)")
}
