//! ENABLE (RFC 5161): no extension advertised here needs enabling, so
//! nothing is enabled and no `* ENABLED` is sent. No Graph call.

use super::Ctx;
use crate::imap::session::Reply;

pub(crate) async fn handle(_ctx: &mut Ctx<'_, '_>) -> Reply {
    Reply::ok("ENABLE completed (nothing to enable)")
}
