//! ENABLE (RFC 5161): CONDSTORE and QRESYNC (RFC 7162 §3.1, §3.2.3;
//! QRESYNC brings CONDSTORE with it) are turned on for the rest of the
//! connection and named in `* ENABLED`; any other extension is not one
//! graphgate has to enable and is left out (RFC 5161 §3.2: the response
//! lists only what this command enabled). No Graph call.

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::extensions::enable::CapabilityEnable;
use imap_next::imap_types::response::Data;

use super::Ctx;
use crate::imap::session::{Reply, State};

pub(crate) async fn handle(ctx: &mut Ctx<'_, '_>, asked: &[CapabilityEnable<'_>]) -> Reply {
    let (auth, mut view) = match &mut ctx.conn.state {
        State::Authenticated(auth) => (&**auth, None),
        State::Selected(auth, view) => (&**auth, Some(&mut **view)),
        _ => return Reply::bad("ENABLE needs you to log in first"),
    };
    let mut enabled: Vec<CapabilityEnable<'static>> = Vec::new();
    for capability in asked {
        let name = capability.to_string().to_ascii_uppercase();
        let newly = match name.as_str() {
            "CONDSTORE" => auth.enabled.enable_condstore(view.as_deref_mut()),
            "QRESYNC" => auth.enabled.enable_qresync(view.as_deref_mut()),
            _ => continue,
        };
        let listed = enabled
            .iter()
            .any(|c| c.to_string().eq_ignore_ascii_case(&name));
        if newly
            && !listed
            && let Ok(c) = CapabilityEnable::try_from(name.as_str())
        {
            enabled.push(c.into_static());
        }
    }
    Reply::ok("ENABLE completed").with_data(vec![Data::Enabled {
        capabilities: enabled,
    }])
}
