//! NAMESPACE (RFC 2342): one personal namespace (prefix "", delimiter `/`)
//! and, when the account reads shared mailboxes, a shared one under
//! `Shared/`. No Graph call.

use super::Ctx;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::core::{IString, QuotedChar};
use imap_next::imap_types::extensions::namespace::Namespace;
use imap_next::imap_types::response::Data;

use crate::imap::session::Reply;

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>) -> Reply {
    let state = &ctx.conn.state;
    let personal = vec![Namespace {
        prefix: IString::try_from("").expect("istring").into_static(),
        delimiter: QuotedChar::try_from('/').ok(),
        extensions: vec![],
    }];
    let has_shared = state
        .account()
        .is_some_and(|a| !a.account.shared_mailboxes.is_empty());
    let shared_ns = if has_shared {
        vec![Namespace {
            prefix: IString::try_from(crate::mailbox::SHARED_PREFIX)
                .expect("istring")
                .into_static(),
            delimiter: QuotedChar::try_from('/').ok(),
            extensions: vec![],
        }]
    } else {
        vec![]
    };
    Reply::ok("NAMESPACE completed").with_data(vec![Data::Namespace {
        personal,
        other: vec![],
        shared: shared_ns,
    }])
}
