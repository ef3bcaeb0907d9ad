//! One file per IMAP command (or tight family of commands), each with a
//! `handle(ctx: &mut Ctx, <the command's arguments>) -> Reply` that
//! [`dispatch`] calls for [`super::server`] once the command table
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

use imap_next::imap_types::command::{Command, CommandBody};

use super::server::{Conn, ImapServer};
use super::session::Reply;
use super::stream::Sink;

/// What every handler gets: the listener (its configuration and what
/// sessions share), this connection (its state), and the sink that
/// streams long answers (FETCH) as they are computed.
pub(crate) struct Ctx<'a, 'b> {
    pub server: &'a ImapServer,
    pub conn: &'a mut Conn,
    pub sink: &'a mut Sink<'b>,
}

/// The command's own answer: one arm per command of imap-types'
/// `CommandBody` (no catch-all), each calling its handler with the
/// context and the command's arguments.
pub(crate) async fn dispatch(ctx: &mut Ctx<'_, '_>, command: Command<'static>) -> Reply {
    match command.body {
        // Any state (RFC 3501 §6.1; ID, ENABLE).
        CommandBody::Capability => capability::handle(ctx).await,
        CommandBody::Noop => noop::handle(ctx, "NOOP").await,
        CommandBody::Logout => logout::handle(ctx).await,
        CommandBody::Id { .. } => id::handle(ctx).await,
        CommandBody::Enable { capabilities } => enable::handle(ctx, capabilities.as_ref()).await,
        // Not authenticated (§6.2).
        CommandBody::StartTLS => starttls::handle(ctx).await,
        CommandBody::Login { username, password } => login::handle(ctx, &username, &password).await,
        CommandBody::Authenticate { .. } => Reply::bad("AUTHENTICATE is handled separately"),
        // Authenticated (§6.3; NAMESPACE).
        CommandBody::Select {
            mailbox,
            parameters,
        } => select::handle(ctx, &mailbox, &parameters, false).await,
        CommandBody::Examine {
            mailbox,
            parameters,
        } => select::handle(ctx, &mailbox, &parameters, true).await,
        CommandBody::Create { mailbox } => create::handle(ctx, &mailbox).await,
        CommandBody::Delete { mailbox } => delete::handle(ctx, &mailbox).await,
        CommandBody::Rename { from, to } => rename::handle(ctx, &from, &to).await,
        CommandBody::Subscribe { mailbox } => subscribe::handle(ctx, &mailbox, true).await,
        CommandBody::Unsubscribe { mailbox } => subscribe::handle(ctx, &mailbox, false).await,
        CommandBody::List {
            reference,
            mailbox_wildcard,
        } => list::handle(ctx, &reference, &mailbox_wildcard, false).await,
        CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => list::handle(ctx, &reference, &mailbox_wildcard, true).await,
        CommandBody::Namespace => namespace::handle(ctx).await,
        CommandBody::Status {
            mailbox,
            item_names,
        } => status::handle(ctx, &mailbox, &item_names).await,
        CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
        } => append::handle(ctx, &mailbox, &flags, date.as_ref(), &message).await,
        // IDLE is an exchange imap-next runs (see the connection loop).
        CommandBody::Idle => Reply::bad("IDLE is handled separately"),
        // Selected (§6.4; UNSELECT, MOVE, UID EXPUNGE).
        CommandBody::Check => noop::handle(ctx, "CHECK").await,
        CommandBody::Close => close::handle(ctx, true).await,
        CommandBody::Unselect => close::handle(ctx, false).await,
        CommandBody::Expunge => expunge::handle(ctx, None).await,
        CommandBody::ExpungeUid { sequence_set } => expunge::handle(ctx, Some(&sequence_set)).await,
        CommandBody::Search { criteria, uid, .. } => {
            search::handle(ctx, criteria.as_ref(), uid).await
        }
        CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            modifiers,
        } => fetch::handle(ctx, &sequence_set, &macro_or_item_names, uid, &modifiers).await,
        CommandBody::Store {
            sequence_set,
            kind,
            response,
            flags,
            uid,
            modifiers,
        } => {
            let flags = store::Asked {
                kind: &kind,
                response: &response,
                flags: &flags,
                modifiers: &modifiers,
            };
            store::handle(ctx, &sequence_set, &flags, uid).await
        }
        CommandBody::Copy {
            sequence_set,
            mailbox,
            uid,
        } => copy::handle(ctx, &sequence_set, &mailbox, uid, false).await,
        CommandBody::Move {
            sequence_set,
            mailbox,
            uid,
        } => copy::handle(ctx, &sequence_set, &mailbox, uid, true).await,
        CommandBody::Sort {
            sort_criteria,
            charset,
            search_criteria,
            uid,
        } => {
            sort::handle(
                ctx,
                sort_criteria.as_ref(),
                &charset,
                search_criteria.as_ref(),
                uid,
            )
            .await
        }
        CommandBody::Thread {
            algorithm,
            charset,
            search_criteria,
            uid,
        } => thread::handle(ctx, &algorithm, &charset, search_criteria.as_ref(), uid).await,
        // Parsed but not offered; the command table refuses them first.
        CommandBody::Compress { .. }
        | CommandBody::GetQuota { .. }
        | CommandBody::GetQuotaRoot { .. }
        | CommandBody::SetQuota { .. } => Reply::bad(format!(
            "{} is not supported (see CAPABILITY)",
            command.body.name()
        )),
    }
}
