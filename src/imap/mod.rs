//! IMAP4rev1 over Microsoft Graph (RFC 3501, with LITERAL+, IDLE, UIDPLUS,
//! MOVE, UNSELECT, SPECIAL-USE, NAMESPACE, ID, ENABLE, CONDSTORE, QRESYNC).
//!
//! - [`server`]: the listener and the per-connection loop (imap-next does
//!   the framing: literals, AUTHENTICATE and IDLE exchanges, STARTTLS).
//! - [`session`]: states, the table of which command each state allows,
//!   and what the commands share, on top of the mailbox model
//!   (`crate::mailbox`).
//! - `commands`: one handler file per command (or tight family: SELECT
//!   and EXAMINE, COPY and MOVE…), each naming its RFC section and its
//!   cost in Graph calls.
//! - [`utf7`]: modified UTF-7 mailbox names.
//! - [`modseq`]: what CONDSTORE and QRESYNC (RFC 7162) answers share.
//! - [`search_return`]: `SEARCH RETURN (…)` and `$` (ESEARCH, SEARCHRES),
//!   read before imap-codec.
//!
//!
//! ENVELOPE, BODY/BODYSTRUCTURE and every `BODY[section]` are computed
//! from the bytes served by the protocol-independent MIME core,
//! [`crate::mime::imap`].

pub(crate) mod commands;
pub mod divert;
pub mod modseq;
pub mod search_return;
pub mod server;
pub mod session;
pub(crate) mod stream;
pub mod structures;
pub mod utf7;
