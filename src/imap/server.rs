//! The IMAP listener (RFC 3501 over TCP, RFC 8314 implicit TLS or
//! STARTTLS): accepting connections, the per-connection loop, and the
//! framing, which imap-next does (literals, continuation requests, the
//! AUTHENTICATE and IDLE exchanges). Each command is checked against the
//! state table ([`super::session::allowed`]) and then handed to its
//! handler in [`super::commands`] by one `match`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use imap_next::imap_types::IntoStatic;
use imap_next::imap_types::auth::AuthenticateData;
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::response::{CommandContinuationRequest, Greeting, Status};
use imap_next::server::{Event, Options, Server as ImapNext};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::commands::Ctx;
use super::commands::{append, idle, login};
use super::session::{self, Reply, Shared, State};
use super::stream::{Sink, Stream, StreamError};
use crate::login_guard::LoginGuard;
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
    /// Failed-login backoff, shared with the SMTP listeners.
    pub login_guard: Arc<LoginGuard>,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            plaintext_login_on_loopback: true,
            // APPEND takes what SMTP takes (smtp.max_message_size's default,
            // Exchange Online's 35 MB; the gateway sets the configured one).
            max_literal: 35 * 1024 * 1024,
            idle_poll: Duration::from_secs(30),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            login_guard: Arc::default(),
        }
    }
}

/// A TLS handshake within the configured time.
async fn handshake(
    server: &ImapServer,
    tcp: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    let tls = server.tls.as_ref().ok_or("no TLS certificate")?;
    tls.accept_within(tcp, server.config.idle_timeout)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => "TLS handshake timed out".to_string(),
            _ => format!("TLS handshake failed: {e}"),
        })
}

pub struct ImapServer {
    pub config: ImapConfig,
    pub shared: Shared,
    pub tls: Option<Tls>,
}

impl ImapServer {
    pub fn new(config: ImapConfig, shared: Shared, tls: Option<Tls>) -> Arc<ImapServer> {
        Arc::new(ImapServer {
            config,
            shared,
            tls,
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
    /// The tag and RETURN options of the SEARCH being answered (ESEARCH,
    /// read by imap/search_return.rs).
    pub(crate) search_return: Option<(
        imap_next::imap_types::core::Tag<'static>,
        super::search_return::Returns,
    )>,
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
    for u in reply.before {
        imap.enqueue_status(u);
    }
    for d in reply.first {
        imap.enqueue_data(d);
    }
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

/// A state machine past its greeting with no input: the one to go on with
/// after STARTTLS (its greeting was sent at the start, in plaintext).
fn without_input(options: Options) -> ImapNext {
    let greeting = Greeting::ok(None, "-").expect("greeting");
    let mut imap = ImapNext::new(options, greeting);
    use imap_next::State as _;
    loop {
        match imap.next() {
            Ok(Event::GreetingSent { .. }) => return imap,
            // The greeting's bytes: not to be sent again.
            Err(imap_next::Interrupt::Io(imap_next::Io::Output(_))) => continue,
            _ => return imap,
        }
    }
}

/// Why a literal above `limit` bytes is refused.
fn literal_limit_text(limit: u32) -> String {
    format!(
        "the literal is larger than {limit} bytes, the most graphgate takes \
         (smtp.max_message_size, also the SMTP limit; Exchange Online's default is 35 MB, \
         base64 included): raise it if the tenant takes larger messages"
    )
}

/// Longest tag repeated in a BAD for a line that could not be parsed.
const MAX_ECHOED_TAG: usize = 64;

/// Send an untagged BYE before closing: imap-next writes a queued
/// response only while the stream is driven, so drive it (briefly) until
/// the BYE is out.
/// How long a client may stay silent after the greeting (an IMAP client
/// sends CAPABILITY or LOGIN at once; an SMTP client waits for a 220).
const SILENT_CLIENT_WAIT: Duration = Duration::from_secs(20);

/// A client silent since the greeting: BYE for an IMAP client, and a line
/// an SMTP client shows (a reply code) instead of waiting forever.
async fn silent_client(mut stream: Stream, imap: &mut ImapNext) {
    bye(
        &mut stream,
        imap,
        "No command within 20 s of the greeting: closing. An SMTP client belongs on the SMTP \
         port (smtp.listen), not on this IMAP port",
    )
    .await;
    if let Some(mut tcp) = stream.into_plain() {
        use tokio::io::AsyncWriteExt;
        let _ = tcp
            .write_all(
                b"554 5.7.0 This is graphgate's IMAP port (imap.listen): send mail to the SMTP \
                  submission port (smtp.listen) or the relay (relay.listen)\r\n",
            )
            .await;
        let _ = tcp.shutdown().await;
    }
}

async fn bye(stream: &mut Stream, imap: &mut ImapNext, text: &str) {
    let Ok(status) = Status::bye(None, text.to_string()) else {
        return;
    };
    imap.enqueue_status(status.into_static());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.next(&mut *imap)).await {
            Ok(Ok(Event::ResponseSent { .. })) => break,
            Ok(Ok(_)) => continue,
            _ => return,
        }
    }
    // Output is coalesced: the BYE is out only once flushed.
    let _ = tokio::time::timeout_at(deadline, stream.flush()).await;
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    server: Arc<ImapServer>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    if implicit_tls && crate::tls::speaks_plaintext(&tcp).await {
        // RFC 9051 §7.1.5: BYE may be the greeting of a refused connection.
        crate::tls::refuse_plaintext(
            tcp,
            b"* BYE This port expects TLS from the first byte (implicit TLS, imaps://, \
              port-993 style): enable SSL/TLS in the client, or use STARTTLS on the IMAP \
              port (imap.listen)\r\n",
        )
        .await;
        return Ok(());
    }
    let mut stream = if implicit_tls {
        let s = handshake(&server, tcp).await?;
        Stream::tls(s)
    } else {
        Stream::insecure(tcp)
    }
    .spooling(server.config.max_literal);
    let mut options = Options::default();
    options.max_literal_size = server.config.max_literal;
    options.max_command_size = server.config.max_literal.saturating_add(64 * 1024);
    options.crlf_relaxed = true;
    let _ = options.set_literal_reject_text(literal_limit_text(server.config.max_literal));
    let greeting = Greeting::ok(None, "graphgate IMAP ready (Microsoft 365 through Graph)")
        .map_err(|e| e.to_string())?;
    let mut imap = ImapNext::new(options.clone(), greeting.into_static());
    let mut conn = Conn {
        state: State::NotAuthenticated,
        tls_active: implicit_tls,
        peer,
        authenticate_tag: None,
        idle_tag: None,
        starttls: false,
        search_return: None,
    };
    // Whether the client sent anything yet: one that stays silent after
    // the greeting is most likely an SMTP client waiting for its 220
    // (issue 18), told so after SILENT_CLIENT_WAIT.
    let mut heard = false;
    loop {
        // While idling: Graph is asked every `idle_poll`; a change another
        // session makes to the folder is told at once (its gate moves).
        let watch = match &conn.state {
            State::Selected(_, view) if conn.idle_tag.is_some() => {
                Some((view.gate.clone(), view.seen))
            }
            _ => None,
        };
        let idling = conn.idle_tag.is_some();
        let poll = async {
            if !idling {
                return std::future::pending::<bool>().await;
            }
            let sleep = tokio::time::sleep(server.config.idle_poll);
            match &watch {
                Some((gate, seen)) => tokio::select! {
                    _ = sleep => true,
                    _ = gate.changed_since(*seen) => false,
                },
                None => {
                    sleep.await;
                    true
                }
            }
        };
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                bye(&mut stream, &mut imap, "graphgate is shutting down").await;
                return Ok(());
            }
            ask_graph = poll => {
                // IDLE: look for changes and report them at once.
                let news = idle::changes(&mut conn.state, ask_graph).await;
                for d in news.first {
                    imap.enqueue_data(d);
                }
                for u in news.untagged {
                    imap.enqueue_status(u);
                }
                for d in news.data {
                    imap.enqueue_data(d);
                }
                continue;
            }
            event = tokio::time::timeout(
                if heard { server.config.idle_timeout } else { SILENT_CLIENT_WAIT.min(server.config.idle_timeout) },
                stream.next(&mut imap),
            ) => event,
        };
        if !heard && !matches!(event, Ok(Ok(Event::GreetingSent { .. }))) {
            if event.is_err() {
                silent_client(stream, &mut imap).await;
                return Ok(());
            }
            heard = true;
        }
        let event = match event {
            Err(_) if conn.idle_tag.is_none() => {
                bye(
                    &mut stream,
                    &mut imap,
                    "Autologout: idle for too long (imap.idle_timeout_s)",
                )
                .await;
                return Ok(());
            }
            Err(_) => continue,
            Ok(Ok(event)) => event,
            Ok(Err(StreamError::State(e))) => {
                // Garbage: say so (tagged when the line has a usable tag)
                // and keep the connection.
                use imap_next::server::Error as ServerError;
                // SEARCH RETURN (…) and `$` (ESEARCH, SEARCHRES), which
                // imap-codec does not parse (imap/search_return.rs).
                let mut refusal = None;
                if let ServerError::MalformedMessage { discarded_bytes } = &e {
                    match extended(
                        &server,
                        &mut conn,
                        discarded_bytes.declassify(),
                        &mut stream,
                        &mut imap,
                    )
                    .await
                    {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(why) => refusal = Some(why),
                    }
                }
                // An APPEND literal with NUL bytes is stored, not refused
                // (commands/append.rs).
                if let ServerError::MalformedMessage { discarded_bytes } = &e
                    && let Some(command) = append::with_nul_replaced(discarded_bytes.declassify())
                {
                    let tag = command.tag.clone();
                    let reply = {
                        let mut sink = Sink::new(&mut stream, &mut imap);
                        command_reply(&server, &mut conn, command, &mut sink).await
                    };
                    send_reply(&mut imap, tag, reply);
                    continue;
                }
                let (discarded, why): (&[u8], &str) = match &e {
                    ServerError::ExpectedCrlfGotLf { discarded_bytes } => {
                        (discarded_bytes.declassify(), "lines must end with CRLF")
                    }
                    ServerError::MalformedMessage { discarded_bytes } => (
                        discarded_bytes.declassify(),
                        "unknown command or wrong arguments (RFC 3501 syntax)",
                    ),
                    // imap-next has already answered the announcement with
                    // a tagged BAD carrying literal_limit_text.
                    ServerError::LiteralTooLong { .. } => continue,
                    ServerError::CommandTooLong { discarded_bytes } => {
                        (discarded_bytes.declassify(), "the command line is too long")
                    }
                };
                // A tag longer than any client uses is not echoed: the
                // line may be megabytes of one word, so only its start is
                // looked at.
                let tag = discarded[..discarded.len().min(MAX_ECHOED_TAG + 1)]
                    .split(|b| *b == b' ')
                    .next()
                    .filter(|t| t.len() <= MAX_ECHOED_TAG)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .and_then(|t| imap_next::imap_types::core::Tag::try_from(t.to_string()).ok());
                let why = refusal.as_deref().unwrap_or(why);
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
                    let tcp = stream.into_plain().ok_or("STARTTLS over TLS")?;
                    let s = handshake(&server, tcp).await?;
                    stream = Stream::tls(s).spooling(server.config.max_literal);
                    conn.tls_active = true;
                    // Whatever came in plaintext after STARTTLS is dropped
                    // unanswered (RFC 3207 §4.2's rule, CVE-2011-0411's
                    // attack): it sits in imap-next's input, so start over
                    // with a state machine that has none.
                    imap = without_input(options.clone());
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
                if let Err(refusal) = idle::start(&conn.state) {
                    if let Some(status) = refusal.status(tag) {
                        let _ = imap.idle_reject(status);
                    }
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
                // Earlier answers go out before a command that may take a
                // while (output is coalesced until imap-next waits for input).
                stream.try_flush().map_err(|e| e.to_string())?;
                let reply = {
                    let mut sink = Sink::new(&mut stream, &mut imap);
                    command_reply(&server, &mut conn, command, &mut sink).await
                };
                send_reply(&mut imap, tag, reply);
            }
        }
    }
}

/// A command with `SEARCH RETURN (…)` or `$` (see
/// [`super::search_return`]): answered here (`Ok(true)`), not
/// one (`Ok(false)`), or a wrong RETURN option (`Err`, for the BAD).
async fn extended(
    server: &ImapServer,
    conn: &mut Conn,
    line: &[u8],
    stream: &mut Stream,
    imap: &mut ImapNext,
) -> Result<bool, String> {
    use super::search_return::{self, Saved};
    let (uids, seqs) = match &conn.state {
        State::Selected(_, view) => view.saved_sets(),
        _ => Default::default(),
    };
    let Some(ext) = search_return::parse(
        line,
        &Saved {
            uids: &uids,
            seqs: &seqs,
        },
    )?
    else {
        return Ok(false);
    };
    let tag = ext.command.tag.clone();
    if crate::wire::enabled() {
        tracing::trace!(target: crate::wire::TARGET, "C: {}", crate::wire::line(line));
    }
    let reply = if ext.empty_set {
        // RFC 5182 §2.1: `$` empty is no error; the command does nothing.
        match session::allowed(&ext.command.body, conn.state.phase()) {
            Ok(()) => Reply::ok(format!(
                "{} completed (the saved search result is empty: nothing to do)",
                ext.command.body.name()
            )),
            Err(why) => Reply::bad(why),
        }
    } else {
        conn.search_return = ext.returns.map(|r| (tag.clone(), r));
        let mut sink = Sink::new(stream, imap);
        let reply = command_reply(server, conn, ext.command, &mut sink).await;
        conn.search_return = None;
        reply
    };
    send_reply(imap, tag, reply);
    Ok(true)
}

async fn command_reply(
    server: &ImapServer,
    conn: &mut Conn,
    command: Command<'static>,
    sink: &mut Sink<'_>,
) -> Reply {
    let name = command.body.name().to_ascii_uppercase();
    crate::metrics::get().imap_command(&name);
    if let Err(why) = session::allowed(&command.body, conn.state.phase()) {
        return Reply::bad(why);
    }
    let condstore_before = match &conn.state {
        State::Selected(_, view) if !matches!(name.as_str(), "SELECT" | "EXAMINE") => {
            Some(view.condstore)
        }
        _ => None,
    };
    let mut ctx = Ctx { server, conn, sink };
    let mut reply = super::commands::dispatch(&mut ctx, command).await;
    let conn = ctx.conn;
    // Every command boundary tells a selected session what changed in its
    // folder — by this session, another, or Outlook — but EXPUNGE not
    // while answering FETCH, STORE or SEARCH (RFC 3501 §7.4.1), nor SORT
    // and THREAD, which answer as SEARCH does.
    let expunges = !matches!(
        name.as_str(),
        "FETCH" | "STORE" | "SEARCH" | "SORT" | "THREAD"
    );
    match conn.state.selected() {
        Some((auth, view)) => {
            // A CONDSTORE-enabling command (STATUS HIGHESTMODSEQ…) while
            // selected: from now on for this folder too (RFC 7162 §3.1).
            view.condstore |= auth.enabled.condstore();
            // … and the folder's HIGHESTMODSEQ is told then (RFC 7162
            // §3.1: a CONDSTORE-enabling command while a folder is
            // selected; imaptest esearch-condstore).
            if condstore_before == Some(false)
                && view.condstore
                && let Ok(highest) = auth.model.highest_modseq(&view.folder)
            {
                reply.untagged.extend(session::untagged_ok(
                    imap_next::imap_types::response::Code::HighestModSeq(
                        crate::imap::modseq::nz64(highest),
                    ),
                    "Highest",
                ));
            }
            let shown = session::keywords_shown(&reply.data);
            let news = session::report(&auth.model, view, expunges, true, &shown);
            reply.announcing(news)
        }
        None => reply,
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
