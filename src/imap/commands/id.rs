//! ID (RFC 2971): the server names itself; what the client says is not
//! kept. No Graph call.

use super::Ctx;
use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::core::{IString, NString};
use imap_next::imap_types::response::Data;

use crate::imap::session::Reply;

pub(crate) async fn handle(_ctx: &mut Ctx<'_, '_>) -> Reply {
    let params = vec![(
        IString::try_from("name").expect("istring").into_static(),
        NString::try_from("graphgate")
            .expect("nstring")
            .into_static(),
    )];
    Reply::ok("ID completed").with_data(vec![Data::Id {
        parameters: Some(params),
    }])
}
