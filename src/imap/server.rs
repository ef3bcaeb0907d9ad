//! The IMAP listener: imap-next does the framing (literals, continuation
//! requests, AUTHENTICATE and IDLE exchanges) over a plain or TLS stream;
//! [`super::session`] does the commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::auth::AuthenticateData;
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_next::imap_types::response::{Code, CommandContinuationRequest, Greeting, Status};
use imap_next::server::{Event, Options, Server as ImapNext};
use imap_next::stream::{Error as StreamError, Stream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::commands::{
    append, capability, create, delete, enable, id, list, login, logout, namespace, noop, rename,
    select, starttls, status, subscribe,
};
use super::session::{self, Reply, Shared, State};
use crate::graph::{RemoteFolderId, RemoteMessageId};
use crate::smtp::server::FailureLimiter;
use crate::tls::Tls;

/// Listener settings (`imap.*`).
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// LOGIN / AUTHENTICATE without TLS from loopback addresses.
    pub plaintext_login_on_loopback: bool,
    /// Largest literal (APPEND) in bytes.
    pub max_literal: u32,
    /// How often IDLE asks Graph for changes.
    pub idle_poll: Duration,
    pub max_connections: usize,
    /// A connection silent for this long (outside IDLE) is closed.
    pub idle_timeout: Duration,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            plaintext_login_on_loopback: true,
            max_literal: 35 * 1024 * 1024,
            idle_poll: Duration::from_secs(30),
            max_connections: 256,
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

pub struct ImapServer {
    pub config: ImapConfig,
    pub shared: Shared,
    pub tls: Option<Tls>,
    pub(crate) limiter: FailureLimiter,
}

impl ImapServer {
    pub fn new(config: ImapConfig, shared: Shared, tls: Option<Tls>) -> Arc<ImapServer> {
        Arc::new(ImapServer {
            config,
            shared,
            tls,
            limiter: FailureLimiter::default(),
        })
    }
}

/// Accept connections until `shutdown`.
pub async fn run(
    listener: TcpListener,
    implicit_tls: bool,
    server: Arc<ImapServer>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(server.config.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "imap accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            use tokio::io::AsyncWriteExt;
            let mut tcp = tcp;
            let _ = tcp
                .write_all(b"* BYE Too many connections; try again later\r\n")
                .await;
            continue;
        };
        let server = server.clone();
        let shutdown = shutdown.clone();
        let metrics = crate::metrics::get();
        metrics.imap_sessions.inc();
        // One span per session (instrumented, not entered: the guard of
        // `enter` would wrongly cover other tasks across awaits).
        let span = tracing::info_span!("imap", session = crate::metrics::session_id(), %peer);
        connections.spawn(
            async move {
                let _permit = permit;
                let _active = crate::metrics::Active::new(&metrics.imap_sessions_active);
                if let Err(e) = serve(tcp, peer, implicit_tls, server, shutdown).await {
                    tracing::debug!("imap connection ended: {e}");
                }
            }
            .instrument(span),
        );
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection: the session state and what the framing loop needs.
pub(crate) struct Conn {
    pub(crate) state: State,
    pub(crate) tls_active: bool,
    pub(crate) peer: SocketAddr,
    authenticate_tag: Option<imap_next::imap_types::core::Tag<'static>>,
    idle_tag: Option<imap_next::imap_types::core::Tag<'static>>,
    /// STARTTLS said OK: start TLS once that reply is written.
    pub(crate) starttls: bool,
}

impl Conn {
    /// LOGIN / AUTHENTICATE may be used: over TLS, or from loopback when
    /// `imap.plaintext_login_on_loopback` allows it.
    pub(crate) fn login_allowed(&self, server: &ImapServer) -> bool {
        self.tls_active
            || (server.config.plaintext_login_on_loopback && self.peer.ip().is_loopback())
    }
}

fn send_reply(imap: &mut ImapNext, tag: imap_next::imap_types::core::Tag<'static>, reply: Reply) {
    // Untagged statuses first: MOVE's COPYUID must precede its EXPUNGEs
    // (RFC 6851 §4.3); for SELECT and LOGOUT the order is free.
    for u in reply.untagged {
        imap.enqueue_status(u);
    }
    for d in reply.data {
        imap.enqueue_data(d);
    }
    let status = match reply.status {
        Ok((code, t)) => Status::ok(Some(tag), code, session::text(&t))
            .ok()
            .map(|s| s.into_static()),
        Err(refusal) => refusal.status(tag),
    };
    if let Some(status) = status {
        imap.enqueue_status(status);
    }
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    server: Arc<ImapServer>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let mut stream = if implicit_tls {
        let tls = server
            .tls
            .as_ref()
            .ok_or("implicit TLS without a certificate")?;
        let s = tls.acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        Stream::tls(tokio_rustls::TlsStream::Server(s))
    } else {
        Stream::insecure(tcp)
    };
    let mut options = Options::default();
    options.max_literal_size = server.config.max_literal;
    options.max_command_size = server.config.max_literal.saturating_add(64 * 1024);
    options.crlf_relaxed = true;
    let greeting = Greeting::ok(None, "graphgate IMAP ready (Microsoft 365 through Graph)")
        .map_err(|e| e.to_string())?;
    let mut imap = ImapNext::new(options, greeting.into_static());
    let mut conn = Conn {
        state: State::NotAuthenticated,
        tls_active: implicit_tls,
        peer,
        authenticate_tag: None,
        idle_tag: None,
        starttls: false,
    };
    loop {
        let poll = async {
            if conn.idle_tag.is_some() {
                tokio::time::sleep(server.config.idle_poll).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                if let Ok(bye) = Status::bye(None, "graphgate is shutting down") {
                    imap.enqueue_status(bye);
                    let _ = stream.flush().await;
                }
                return Ok(());
            }
            _ = poll => {
                // IDLE: look for remote changes and report them at once.
                if let State::Selected(auth, view) = &mut conn.state
                    && let Ok(changes) = auth.model.sync(view.folder.id).await
                {
                    for d in session::report(view, &changes, &server.shared.store) {
                        imap.enqueue_data(d);
                    }
                }
                continue;
            }
            event = tokio::time::timeout(server.config.idle_timeout, stream.next(&mut imap)) => event,
        };
        let event = match event {
            Err(_) if conn.idle_tag.is_none() => {
                if let Ok(bye) = Status::bye(None, "Autologout: idle for too long") {
                    imap.enqueue_status(bye);
                    let _ = stream.flush().await;
                }
                return Ok(());
            }
            Err(_) => continue,
            Ok(Ok(event)) => event,
            Ok(Err(StreamError::State(e))) => {
                // Garbage: say so (tagged when the line has a usable tag)
                // and keep the connection.
                use imap_next::server::Error as ServerError;
                let (discarded, why) = match &e {
                    ServerError::ExpectedCrlfGotLf { discarded_bytes } => (
                        discarded_bytes.declassify().to_vec(),
                        "lines must end with CRLF",
                    ),
                    ServerError::MalformedMessage { discarded_bytes } => (
                        discarded_bytes.declassify().to_vec(),
                        "unknown command or wrong arguments (RFC 3501 syntax)",
                    ),
                    ServerError::LiteralTooLong { discarded_bytes } => (
                        discarded_bytes.declassify().to_vec(),
                        "the literal is larger than the message size limit (smtp.max_message_size)",
                    ),
                    ServerError::CommandTooLong { discarded_bytes } => (
                        discarded_bytes.declassify().to_vec(),
                        "the command line is too long",
                    ),
                };
                let tag = discarded
                    .split(|b| *b == b' ')
                    .next()
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .and_then(|t| imap_next::imap_types::core::Tag::try_from(t.to_string()).ok());
                if let Ok(bad) = Status::bad(tag, None, format!("Could not parse that: {why}")) {
                    imap.enqueue_status(bad.into_static());
                }
                continue;
            }
            Ok(Err(e)) => return Err(e.to_string()),
        };
        match event {
            Event::GreetingSent { .. } => {}
            Event::ResponseSent { response, .. } => {
                if crate::wire::enabled() {
                    use imap_codec::encode::Encoder as _;
                    let wire = imap_codec::ResponseCodec::default()
                        .encode(&response)
                        .dump();
                    tracing::trace!(target: crate::wire::TARGET, "S: {}", crate::wire::line(&wire));
                }
                // Only the tagged reply ends a STARTTLS or LOGOUT exchange
                // (LOGOUT's BYE comes before it).
                let tagged = matches!(
                    &response,
                    imap_next::imap_types::response::Response::Status(
                        imap_next::imap_types::response::Status::Tagged(_)
                    )
                );
                if !tagged {
                    continue;
                }
                if conn.starttls {
                    conn.starttls = false;
                    stream.flush().await.map_err(|e| e.to_string())?;
                    let tls = server.tls.as_ref().ok_or("no TLS")?;
                    let tcp: TcpStream = stream.into();
                    let s = tls.acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
                    stream = Stream::tls(tokio_rustls::TlsStream::Server(s));
                    conn.tls_active = true;
                }
                if matches!(conn.state, State::Logout) {
                    stream.flush().await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
            }
            Event::CommandAuthenticateReceived {
                command_authenticate,
            } => {
                tracing::trace!(
                    target: crate::wire::TARGET,
                    "C: {} AUTHENTICATE {}{}",
                    command_authenticate.tag.inner(),
                    command_authenticate.mechanism,
                    if command_authenticate.initial_response.is_some() {
                        format!(" {}", crate::wire::REDACTED)
                    } else {
                        String::new()
                    }
                );
                let tag = command_authenticate.tag.clone();
                if let Err(refusal) =
                    login::may_authenticate(&server, &conn, &command_authenticate.mechanism)
                {
                    if let Some(status) = refusal.status(tag) {
                        let _ = imap.authenticate_finish(status);
                    }
                    continue;
                }
                match command_authenticate.initial_response {
                    Some(data) => {
                        let data = data.declassify().to_vec();
                        login::finish_authenticate(&server, &mut conn, &mut imap, tag, &data).await;
                    }
                    None => {
                        conn.authenticate_tag = Some(tag);
                        // RFC 3501 §6.2.2: the challenge is base64; PLAIN's
                        // is empty ("+ "). SASL libraries (mutt's) decode
                        // any text here and fail on words.
                        let _ = imap
                            .authenticate_continue(CommandContinuationRequest::base64(&b""[..]));
                    }
                }
            }
            Event::AuthenticateDataReceived { authenticate_data } => {
                tracing::trace!(target: crate::wire::TARGET, "C: {}", crate::wire::REDACTED);
                let Some(tag) = conn.authenticate_tag.take() else {
                    continue;
                };
                match authenticate_data {
                    AuthenticateData::Cancel => {
                        let _ = imap.authenticate_finish(
                            Status::bad(Some(tag), None, "Authentication cancelled")
                                .expect("status"),
                        );
                    }
                    AuthenticateData::Continue(data) => {
                        let data = data.declassify().to_vec();
                        login::finish_authenticate(&server, &mut conn, &mut imap, tag, &data).await;
                    }
                }
            }
            Event::IdleCommandReceived { tag } => {
                if !matches!(conn.state, State::Authenticated(_) | State::Selected(..)) {
                    let _ = imap.idle_reject(
                        Status::bad(Some(tag), None, "IDLE needs you to log in first")
                            .expect("status"),
                    );
                    continue;
                }
                conn.idle_tag = Some(tag);
                let _ = imap.idle_accept(
                    CommandContinuationRequest::basic(
                        None,
                        "idling; changes are reported as they come",
                    )
                    .expect("ccr"),
                );
            }
            Event::IdleDoneReceived => {
                if let Some(tag) = conn.idle_tag.take() {
                    imap.enqueue_status(
                        Status::ok(Some(tag), None, "IDLE terminated").expect("status"),
                    );
                }
            }
            Event::CommandReceived { command } => {
                if crate::wire::enabled() {
                    tracing::trace!(target: crate::wire::TARGET, "C: {}", wire_command(&command));
                }
                let tag = command.tag.clone();
                let reply = command_reply(&server, &mut conn, command).await;
                send_reply(&mut imap, tag, reply);
            }
        }
    }
}

/// Take the selected state apart for a command that needs a folder.
macro_rules! selected {
    ($conn:expr) => {
        match &mut $conn.state {
            State::Selected(auth, view) => (auth, view),
            _ => return Reply::bad("no folder selected: SELECT one first"),
        }
    };
}

async fn command_reply(server: &ImapServer, conn: &mut Conn, command: Command<'static>) -> Reply {
    let name = command.body.name().to_ascii_uppercase();
    crate::metrics::get().imap_command(&name);
    if let Err(why) = session::allowed(&name, conn.state.phase()) {
        return Reply::bad(why);
    }
    let shared = &server.shared;
    match command.body {
        CommandBody::Capability => capability::handle(server, conn),
        CommandBody::Noop => noop::handle(shared, &mut conn.state, "NOOP").await,
        CommandBody::Check => noop::handle(shared, &mut conn.state, "CHECK").await,
        CommandBody::Logout => logout::handle(shared, &mut conn.state).await,
        CommandBody::StartTLS => starttls::handle(server, conn),
        CommandBody::Login { username, password } => {
            login::handle(server, conn, &username, &password).await
        }
        CommandBody::Authenticate { .. } => Reply::bad("AUTHENTICATE is handled separately"),
        CommandBody::Enable { .. } => enable::handle(),
        CommandBody::Id { .. } => id::handle(),
        CommandBody::Namespace => namespace::handle(&conn.state),
        CommandBody::Select { mailbox, .. } => {
            select::handle(shared, &mut conn.state, &mailbox, false).await
        }
        CommandBody::Examine { mailbox, .. } => {
            select::handle(shared, &mut conn.state, &mailbox, true).await
        }
        CommandBody::Close | CommandBody::Unselect => {
            let State::Selected(auth, mut view) = std::mem::replace(&mut conn.state, State::Logout)
            else {
                return Reply::bad("no folder selected");
            };
            if name == "CLOSE" && !view.read_only {
                let _ = session::expunge(shared, &auth, &mut view, None).await;
            }
            session::leave(shared, &auth, &mut view).await;
            conn.state = State::Authenticated(auth);
            Reply::ok(format!("{name} completed"))
        }
        CommandBody::Expunge => {
            let (auth, view) = selected!(conn);
            if view.read_only {
                return Reply::no("the folder is open read-only (EXAMINE)");
            }
            match session::expunge(shared, auth, view, None).await {
                Ok(data) => Reply::ok("EXPUNGE completed").with_data(data),
                Err(r) => r.into(),
            }
        }
        CommandBody::ExpungeUid { sequence_set } => {
            let (auth, view) = selected!(conn);
            if view.read_only {
                return Reply::no("the folder is open read-only (EXAMINE)");
            }
            match session::expunge(shared, auth, view, Some(&sequence_set)).await {
                Ok(data) => Reply::ok("UID EXPUNGE completed").with_data(data),
                Err(r) => r.into(),
            }
        }
        CommandBody::List {
            reference,
            mailbox_wildcard,
        } => list::handle(&conn.state, &reference, &mailbox_wildcard, false),
        CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => list::handle(&conn.state, &reference, &mailbox_wildcard, true),
        CommandBody::Status {
            mailbox,
            item_names,
        } => status::handle(shared, &conn.state, &mailbox, &item_names).await,
        CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            ..
        } => {
            let (auth, view) = selected!(conn);
            match session::fetch(shared, auth, view, &sequence_set, &macro_or_item_names, uid).await
            {
                Ok(data) => Reply::ok(format!("{name} completed")).with_data(data),
                Err(r) => r.into(),
            }
        }
        CommandBody::Store {
            sequence_set,
            kind,
            response,
            flags,
            uid,
            ..
        } => {
            let (auth, view) = selected!(conn);
            let silent = matches!(response, imap_next::imap_types::flag::StoreResponse::Silent);
            let request = session::StoreRequest {
                set: &sequence_set,
                kind: &kind,
                flags: &flags,
                silent,
                uid,
            };
            match session::store_flags(shared, auth, view, &request).await {
                Ok(data) => Reply::ok(format!("{name} completed")).with_data(data),
                Err(r) => r.into(),
            }
        }
        CommandBody::Search { criteria, uid, .. } => {
            let (auth, view) = selected!(conn);
            match session::search(shared, auth, view, criteria.as_ref(), uid).await {
                Ok(data) => Reply::ok(format!("{name} completed")).with_data(vec![data]),
                Err(r) => r.into(),
            }
        }
        CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
        } => {
            append::handle(
                shared,
                &conn.state,
                &mailbox,
                &flags,
                date.as_ref(),
                &message,
            )
            .await
        }
        CommandBody::Copy {
            sequence_set,
            mailbox,
            uid,
        }
        | CommandBody::Move {
            sequence_set,
            mailbox,
            uid,
        } => {
            let moving = name == "MOVE";
            let (auth, view) = selected!(conn);
            let target_name = session::local_name(&mailbox);
            let Ok(target) = auth.model.folder(&target_name) else {
                return Reply::no(format!("[TRYCREATE] no folder named {target_name:?}"));
            };
            if !auth.model.same_mailbox(&view.folder, &target) {
                return Reply::no(format!(
                    "{name} between two mailboxes is not possible through Graph; \
                     FETCH the message and APPEND it to {target_name}"
                ));
            }
            let records = match shared.store.messages(view.folder.id) {
                Ok(r) => r,
                Err(e) => return Reply::no(e.to_string()),
            };
            let chosen = session::resolve(view, &records, &sequence_set, uid);
            let to = RemoteFolderId::new(target.remote_id.clone());
            let mut moved = Vec::new();
            let mut pairs = Vec::new();
            for (_, r) in &chosen {
                let id = RemoteMessageId::new(r.remote_id.clone());
                let result = if moving {
                    auth.model
                        .backend_for(&view.folder)
                        .move_message(&id, &to)
                        .await
                } else {
                    auth.model
                        .backend_for(&view.folder)
                        .copy_message(&id, &to)
                        .await
                };
                match result {
                    Ok(created) => {
                        moved.push(r.remote_id.clone());
                        pairs.push((r.uid, created.id.as_str().to_string()));
                    }
                    Err(e) => return Reply::no(format!("Graph refused the {name}: {e}")),
                }
            }
            let _ = auth.model.sync(target.id).await;
            let mut reply = Reply::ok(format!("{name} completed"));
            // UIDPLUS (RFC 4315): which UIDs the copies got.
            let mut source = Vec::new();
            let mut destination = Vec::new();
            for (from, new_id) in &pairs {
                if let Ok(Some(m)) = shared.store.message_by_remote_id(target.id, new_id)
                    && let (Some(a), Some(b)) = (
                        std::num::NonZeroU32::new(from.0),
                        std::num::NonZeroU32::new(m.uid.0),
                    )
                {
                    source.push(UidElement::Single(a));
                    destination.push(UidElement::Single(b));
                }
            }
            let copyuid = match (
                Vec1::try_from(source),
                Vec1::try_from(destination),
                std::num::NonZeroU32::new(target.uid_validity.0),
            ) {
                (Ok(source), Ok(destination), Some(uid_validity))
                    if source.as_ref().len() == pairs.len() =>
                {
                    Some(Code::CopyUid {
                        uid_validity,
                        source: UidSet(source),
                        destination: UidSet(destination),
                    })
                }
                _ => None,
            };
            if let Some(code) = copyuid {
                if moving {
                    // RFC 6851: before the EXPUNGEs, untagged.
                    reply.untagged.extend(session::untagged_ok(code, "moved"));
                } else {
                    reply.status = Ok((Some(code), format!("{name} completed")));
                }
            }
            if moving {
                match shared.store.remove_messages(view.folder.id, &moved) {
                    Ok(mut removed) => {
                        removed.sort();
                        reply.data = session::report(
                            view,
                            &crate::mailbox::FolderChanges {
                                removed,
                                ..Default::default()
                            },
                            &shared.store,
                        );
                    }
                    Err(e) => return Reply::no(e.to_string()),
                }
            }
            reply
        }
        CommandBody::Create { mailbox } => create::handle(&conn.state, &mailbox).await,
        CommandBody::Delete { mailbox } => delete::handle(&conn.state, &mailbox).await,
        CommandBody::Rename { from, to } => rename::handle(&conn.state, &from, &to).await,
        CommandBody::Subscribe { .. } => subscribe::handle("SUBSCRIBE"),
        CommandBody::Unsubscribe { .. } => subscribe::handle("UNSUBSCRIBE"),
        _ => Reply::bad(format!("{name} is not supported")),
    }
}

/// A command as the protocol trace shows it: its wire form, but LOGIN
/// without the password and APPEND without the message.
fn wire_command(command: &Command<'_>) -> String {
    use imap_codec::encode::Encoder as _;
    let tag = command.tag.inner();
    match &command.body {
        CommandBody::Login { username, .. } => format!(
            "{tag} LOGIN {} {}",
            String::from_utf8_lossy(username.as_ref()),
            crate::wire::REDACTED
        ),
        CommandBody::Append {
            mailbox, message, ..
        } => format!(
            "{tag} APPEND {mailbox:?} <message, {} bytes>",
            match message {
                LiteralOrLiteral8::Literal(l) => l.data().len(),
                LiteralOrLiteral8::Literal8(l) => l.data.len(),
            }
        ),
        _ => crate::wire::line(&imap_codec::CommandCodec::default().encode(command).dump()),
    }
}
