//! One file per IMAP command (or tight family of commands), each with a
//! `handle(ctx: &mut Ctx, <the command's arguments>) -> Reply` that the
//! dispatch in [`super::server`] calls once the command table
//! ([`super::session::needs`], exhaustive over imap-types' `CommandBody`)
//! has let the command through. Each
//! file says which RFC section it implements and what it costs in Graph
//! calls.

pub(crate) mod append;
pub(crate) mod capability;
pub(crate) mod close;
pub(crate) mod copy;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod enable;
pub(crate) mod expunge;
pub(crate) mod fetch;
pub(crate) mod id;
pub(crate) mod idle;
pub(crate) mod list;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod namespace;
pub(crate) mod noop;
pub(crate) mod rename;
pub(crate) mod search;
pub(crate) mod select;
pub(crate) mod sort;
pub(crate) mod starttls;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod subscribe;
pub(crate) mod thread;

use super::server::{Conn, ImapServer};
use super::stream::Sink;

/// What every handler gets: the listener (its configuration and what
/// sessions share), this connection (its state), and the sink that
/// streams long answers (FETCH) as they are computed.
pub(crate) struct Ctx<'a, 'b> {
    pub server: &'a ImapServer,
    pub conn: &'a mut Conn,
    pub sink: &'a mut Sink<'b>,
}
