//! CAPABILITY (RFC 3501 §6.1.1): what this server offers. Before login it
//! also says how to log in: `STARTTLS` while the connection is plain and a
//! certificate is configured, then `AUTH=PLAIN`, or `LOGINDISABLED` where
//! plaintext login is not allowed (RFC 3501 §6.2.1); and APPENDLIMIT
//! (RFC 7889), the largest message APPEND takes. No Graph call.

use super::Ctx;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::auth::AuthMechanism;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::response::{Capability, Data};

use crate::imap::session::Reply;

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>) -> Reply {
    let server = ctx.server;
    let conn = &*ctx.conn;
    Reply::ok("CAPABILITY completed").with_data(vec![Data::Capability(capabilities(
        conn.tls_active,
        server.tls.is_some(),
        conn.login_allowed(server),
        conn.state.account().is_some(),
        server.config.max_literal,
    ))])
}

/// The capability list; also sent in the OK of a successful AUTHENTICATE.
pub(crate) fn capabilities(
    tls_active: bool,
    tls_available: bool,
    login_allowed: bool,
    authed: bool,
    append_limit: u32,
) -> Vec1<Capability<'static>> {
    let mut caps = vec![Capability::Imap4Rev1];
    for c in [
        "LITERAL+",
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "UNSELECT",
        "SPECIAL-USE",
        "NAMESPACE",
        "ID",
        "ENABLE",
        // RFC 3348: LIST says \HasChildren or \HasNoChildren of every
        // folder (list.rs `attributes`).
        "CHILDREN",
        // RFC 7162: per-message mod-sequences kept in the store
        // (store/modseq.rs, docs/imap-condstore.md).
        "CONDSTORE",
        "QRESYNC",
        // RFC 5256 (commands/sort.rs, commands/thread.rs).
        "SORT",
        "THREAD=REFERENCES",
        "THREAD=ORDEREDSUBJECT",
        // RFC 4731 and RFC 5182 (commands/search_return.rs, search.rs).
        "ESEARCH",
        "SEARCHRES",
        // RFC 3516 (commands/fetch.rs BINARY items, append.rs literal8).
        "BINARY",
    ] {
        if let Ok(cap) = Capability::try_from(c) {
            caps.push(cap.into_static());
        }
    }
    // RFC 7889: the largest message APPEND takes, so that a client can
    // tell before it sends one.
    if let Ok(cap) = Capability::try_from(format!("APPENDLIMIT={append_limit}")) {
        caps.push(cap.into_static());
    }
    if !authed {
        if !tls_active && tls_available {
            caps.push(Capability::StartTls);
        }
        if login_allowed {
            caps.push(Capability::Auth(AuthMechanism::Plain));
        } else {
            caps.push(Capability::LoginDisabled);
        }
    }
    Vec1::try_from(caps).expect("IMAP4rev1 is always there")
}
