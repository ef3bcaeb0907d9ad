//! STARTTLS (RFC 3501 §6.2.1, RFC 2595): agree, and let the connection loop
//! start the TLS handshake once the tagged OK is written. No Graph call.

use super::Ctx;
use crate::imap::session::Reply;

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>) -> Reply {
    let server = ctx.server;
    let conn = &mut *ctx.conn;
    if conn.tls_active {
        Reply::bad("TLS is already active")
    } else if server.tls.is_none() {
        Reply::no("No certificate configured for STARTTLS (tls.certificate_file)")
    } else {
        conn.starttls = true;
        Reply::ok("Begin TLS negotiation now")
    }
}
