//! The SMTP listener: a thin tokio shell around [`Session`].
//!
//! It reads bytes, feeds the session, and carries out its actions: replies,
//! password checks against the store (slowed down, then refused, after
//! failures per client address and login: [`crate::login_guard`]), STARTTLS upgrades, and message data: up to
//! [`ServerConfig::inline_max`] bytes it keeps in memory and hands to the
//! [`Submitter`] as they are (the spool makes them durable in its database
//! row, one commit); beyond that it streams them into a spool file (never
//! the whole message in memory) and fsyncs it before the hand-over. The
//! submitter's answer becomes the final reply.
//! One connection's failure never touches another's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::session::{
    AccountGate, Action, Authenticated, Envelope, Session, SessionConfig, SubmitOutcome,
};
use crate::login_guard::{Checked, LoginGuard};
use crate::spool::incoming::IncomingFile;
use crate::store::{AccountState, Store};
use crate::tls::Tls;

/// Messages up to this size are kept in memory and spooled inside the
/// database row (the default of [`ServerConfig::inline_max`]).
pub const INLINE_MAX: usize = 256 * 1024;

/// Bytes of messages held in memory while they are received, across all
/// connections of a listener set: past this a new message part goes to a
/// spool file instead (1,024 connections each holding [`INLINE_MAX`] would
/// be a quarter of a gigabyte).
pub const INLINE_BUDGET: usize = 32 * 1024 * 1024;

/// What [`INLINE_BUDGET`] counts: memory reserved by messages being
/// received.
#[derive(Debug)]
pub struct InlineBudget {
    used: AtomicUsize,
    limit: usize,
}

impl InlineBudget {
    pub fn new(limit: usize) -> InlineBudget {
        InlineBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl Default for InlineBudget {
    fn default() -> Self {
        InlineBudget::new(INLINE_BUDGET)
    }
}

/// One message's share of the [`InlineBudget`], given back when dropped.
struct Reservation {
    budget: Arc<InlineBudget>,
    bytes: usize,
}

impl Reservation {
    /// Reserve `n` more bytes, if the budget has them.
    fn grow(&mut self, n: usize) -> bool {
        let before = self.budget.used.fetch_add(n, Ordering::Relaxed);
        if before + n > self.budget.limit {
            self.budget.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        self.bytes += n;
        true
    }

    /// Give everything back (the memory was freed).
    fn release(&mut self) {
        self.budget
            .used
            .fetch_sub(std::mem::take(&mut self.bytes), Ordering::Relaxed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

pub use crate::spool::submit::{SpooledBody, SpooledMessage, Submitter};

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub session: SessionConfig,
    /// Directory for incoming spool files (created if missing).
    pub incoming_dir: PathBuf,
    /// Messages up to this many bytes stay in memory and are spooled in
    /// the database row; larger ones go to a file in `incoming_dir`.
    pub inline_max: usize,
    pub max_connections: usize,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// A connection open for this long is closed (after its message).
    pub max_connection_time: Duration,
    /// Allow AUTH without TLS from loopback addresses.
    pub plaintext_auth_on_loopback: bool,
    /// Failed-login backoff, shared with the IMAP listeners.
    pub login_guard: Arc<LoginGuard>,
    /// A relay listener: mail without AUTH from these networks only.
    pub relay: Option<Arc<super::relay::RelayAllowlist>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::default(),
            incoming_dir: PathBuf::from("spool/incoming"),
            inline_max: INLINE_MAX,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            max_connection_time: Duration::from_secs(3600),
            plaintext_auth_on_loopback: true,
            login_guard: Arc::default(),
            relay: None,
        }
    }
}

/// Everything a connection needs.
pub struct Server {
    pub config: ServerConfig,
    /// Memory of messages being received, shared by every connection.
    pub inline_budget: Arc<InlineBudget>,
    pub store: Store,
    pub tls: Option<Tls>,
    pub submitter: Arc<dyn Submitter>,
}

impl Server {
    pub fn new(
        config: ServerConfig,
        store: Store,
        tls: Option<Tls>,
        submitter: Arc<dyn Submitter>,
    ) -> Arc<Server> {
        Arc::new(Server {
            config,
            inline_budget: Arc::default(),
            store,
            tls,
            submitter,
        })
    }
}

/// Accept connections until `shutdown` is cancelled; then stop accepting
/// and let connections finish the message in flight.
pub async fn run(
    listener: TcpListener,
    implicit_tls: bool,
    server: Arc<Server>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(server.config.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "smtp accept failed");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let mut stream = stream;
            let _ = stream
                .write_all(b"421 4.7.0 Too many connections; try again later\r\n")
                .await;
            continue;
        };
        let server = server.clone();
        let shutdown = shutdown.clone();
        let metrics = crate::metrics::get();
        metrics.smtp_sessions.inc();
        // One span per session: every line it logs (AUTH, MAIL, the queue
        // id of what it spooled) carries `smtp{session=… peer=…}`.
        let span = tracing::info_span!("smtp", session = crate::metrics::session_id(), %peer);
        connections.spawn(
            async move {
                let _permit = permit;
                let _active = crate::metrics::Active::new(&metrics.smtp_sessions_active);
                if let Err(e) = serve_connection(stream, peer, implicit_tls, server, shutdown).await
                {
                    tracing::debug!(error = %e, "smtp connection ended");
                }
            }
            .instrument(span),
        );
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// A plain or TLS stream (STARTTLS turns the first into the second).
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Gone,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            Stream::Gone => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// The message being received: in memory while it is small, then in a
/// spool file.
struct Incoming {
    memory: Vec<u8>,
    /// The memory's share of the listeners' budget (its capacity).
    reservation: Reservation,
    file: Option<IncomingFile>,
    size: u64,
}

impl Incoming {
    fn new(budget: Arc<InlineBudget>) -> Incoming {
        Incoming {
            memory: Vec::new(),
            reservation: Reservation { budget, bytes: 0 },
            file: None,
            size: 0,
        }
    }

    async fn write(&mut self, bytes: &[u8], dir: &Path, inline_max: usize) -> std::io::Result<()> {
        self.size += bytes.len() as u64;
        let needed = self.memory.len() + bytes.len();
        if self.file.is_none() && needed <= inline_max {
            // Grown by doubling (at most to inline_max), each growth
            // reserved first: past the budget the message goes to a file.
            let capacity = self.memory.capacity();
            let target = if needed <= capacity {
                capacity
            } else {
                needed.max(capacity * 2).min(inline_max)
            };
            if self.reservation.grow(target - capacity) {
                self.memory.reserve_exact(target - self.memory.len());
                self.memory.extend_from_slice(bytes);
                return Ok(());
            }
        }
        if self.file.is_none() {
            let mut file = IncomingFile::create(dir).await?;
            let memory = std::mem::take(&mut self.memory);
            let written = file.write_all(&memory).await;
            drop(memory);
            self.reservation.release();
            // Registered before any error: the file is removed either way.
            self.file = Some(file);
            written?;
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(bytes).await?;
        }
        Ok(())
    }

    /// Forget the message (and remove its file).
    async fn discard(self) {
        if let Some(file) = self.file {
            file.discard().await;
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    server: Arc<Server>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut tcp = tcp;
    if implicit_tls && crate::tls::speaks_plaintext(&tcp).await {
        // A plain SMTP client on the implicit-TLS port waits for a
        // greeting the TLS handshake never sends: say so instead of
        // leaving it to hang until the handshake times out.
        let _ = tcp
            .write_all(
                b"554 5.7.0 This port expects TLS from the first byte (implicit TLS, smtps://, \
                  port-465 style): enable SSL/TLS in the client, or use STARTTLS on the \
                  submission port (smtp.listen)\r\n",
            )
            .await;
        let _ = tcp.shutdown().await;
        return Ok(());
    }
    let mut stream = if implicit_tls {
        let Some(tls) = &server.tls else {
            return Err(std::io::Error::other(
                "implicit TLS listener without a certificate",
            ));
        };
        Stream::Tls(Box::new(
            tls.accept_within(tcp, server.config.idle_timeout).await?,
        ))
    } else {
        Stream::Plain(tcp)
    };
    let mut config = server.config.session.clone();
    config.tls_active = implicit_tls;
    config.tls_available = server.tls.is_some();
    config.plaintext_auth_allowed =
        server.config.plaintext_auth_on_loopback && peer.ip().is_loopback();
    let mut session = Session::new(config).with_gate(Arc::new(StoreGate(server.store.clone())));
    if let Some(networks) = &server.config.relay {
        use super::relay::{Admission, admit};
        let admission = admit(&networks.current(), &server.store, peer.ip());
        let outcome = match &admission {
            Admission::Admitted { .. } => "admitted",
            Admission::Refused(_) => "refused",
        };
        crate::metrics::get()
            .smtp_relay_clients
            .get_or_create(&crate::metrics::Outcome {
                outcome: outcome.into(),
            })
            .inc();
        match admission {
            Admission::Admitted {
                account,
                policy,
                require_tls,
            } => session = session.with_relay(account, policy, require_tls),
            Admission::Refused(line) => {
                tracing::info!(%peer, "relay: client refused: {}", line.trim_end());
                stream.write_all(line.as_bytes()).await?;
                let _ = stream.shutdown().await;
                return Ok(());
            }
        }
    }
    let mut rewriter: Option<super::relay::HeaderRewriter> = None;
    let started = Instant::now();
    let mut incoming: Option<Incoming> = None;
    let mut buf = vec![0u8; 16 * 1024];

    let greeting = session.greeting();
    let mut actions = vec![greeting];
    loop {
        // Carry out everything the session asked for; some actions resume
        // the session and yield more.
        while !actions.is_empty() {
            let mut next = Vec::new();
            for action in actions.drain(..) {
                match action {
                    Action::Reply(bytes) => {
                        if crate::wire::enabled() {
                            for line in bytes.split_inclusive(|&b| b == b'\n') {
                                tracing::trace!(
                                    target: crate::wire::TARGET,
                                    "S: {}",
                                    crate::wire::line(line)
                                );
                            }
                        }
                        stream.write_all(&bytes).await?
                    }
                    Action::Close => {
                        let _ = stream.flush().await;
                        let _ = stream.shutdown().await;
                        return Ok(());
                    }
                    Action::Authenticate { login, password } => {
                        stream.flush().await?;
                        next.extend(
                            match server
                                .config
                                .login_guard
                                .check(&server.store, "smtp", peer.ip(), &login, password)
                                .await
                            {
                                Checked::Account(account) => {
                                    session.set_sender_policy(super::relay::account_policy(
                                        &server.store,
                                        &account.login,
                                    ));
                                    let mut allowed = vec![account.mailbox.clone()];
                                    allowed.extend(account.aliases.iter().cloned());
                                    session.auth_result(Some(Authenticated {
                                        login: account.login,
                                        allowed_senders: allowed,
                                    }))
                                }
                                Checked::Wrong => session.auth_result(None),
                                Checked::Refused(refused) => {
                                    session.auth_refused(&refused.sentence())
                                }
                            },
                        );
                    }
                    Action::StartTls => {
                        stream.flush().await?;
                        let Some(tls) = &server.tls else {
                            return Ok(());
                        };
                        let Stream::Plain(tcp) = std::mem::replace(&mut stream, Stream::Gone)
                        else {
                            return Ok(());
                        };
                        stream = match tls.accept_within(tcp, server.config.idle_timeout).await {
                            Ok(s) => Stream::Tls(Box::new(s)),
                            Err(_) => return Ok(()),
                        };
                        next.extend(session.tls_started());
                    }
                    Action::MessageStart(envelope) => {
                        rewriter = envelope.rewrite.map(super::relay::HeaderRewriter::new);
                        if let Some(old) =
                            incoming.replace(Incoming::new(server.inline_budget.clone()))
                        {
                            old.discard().await;
                        }
                    }
                    Action::MessageData(bytes) => {
                        let bytes = match rewriter.as_mut() {
                            Some(r) => r.feed(bytes),
                            None => bytes,
                        };
                        if let Some(inc) = incoming.as_mut().filter(|_| !bytes.is_empty()) {
                            let written = inc
                                .write(
                                    &bytes,
                                    &server.config.incoming_dir,
                                    server.config.inline_max,
                                )
                                .await;
                            if let Err(e) = written {
                                if let Some(inc) = incoming.take() {
                                    inc.discard().await;
                                }
                                return Err(e);
                            }
                        }
                    }
                    Action::MessageAbort => {
                        rewriter = None;
                        if let Some(inc) = incoming.take() {
                            inc.discard().await;
                        }
                    }
                    Action::MessageEnd(envelope) => {
                        tracing::trace!(
                            target: crate::wire::TARGET,
                            "C: <message data> . (end of data)"
                        );
                        stream.flush().await?;
                        let rest = rewriter.take().map(|mut r| r.finish()).unwrap_or_default();
                        if let Some(inc) = incoming.as_mut().filter(|_| !rest.is_empty()) {
                            let dir = &server.config.incoming_dir;
                            if let Err(e) = inc.write(&rest, dir, server.config.inline_max).await {
                                if let Some(inc) = incoming.take() {
                                    inc.discard().await;
                                }
                                return Err(e);
                            }
                        }
                        let outcome = match incoming.take() {
                            Some(inc) => finish_message(&server, &session, envelope, inc).await,
                            None => SubmitOutcome::TryLater {
                                text: "The message was not stored; please send it again".into(),
                            },
                        };
                        next.extend(session.submit_result(outcome));
                    }
                }
            }
            actions = next;
        }
        stream.flush().await?;

        let limit = server
            .config
            .max_connection_time
            .saturating_sub(started.elapsed());
        let timeout = server.config.idle_timeout.min(limit);
        let read = tokio::select! {
            // Graceful shutdown: a session that is not inside a message
            // is told so and closed; one inside a message finishes it.
            _ = shutdown.cancelled(), if !session.in_transaction() => {
                stream.write_all(b"421 4.3.2 graphgate is shutting down; try again later\r\n").await?;
                let _ = stream.shutdown().await;
                return Ok(());
            }
            read = tokio::time::timeout(timeout, stream.read(&mut buf)) => read,
        };
        let n = match read {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                stream
                    .write_all(b"421 4.4.2 Idle or connection time limit reached; closing\r\n")
                    .await?;
                break;
            }
        };
        actions = session.ingest(&buf[..n]);
    }
    if let Some(inc) = incoming.take() {
        inc.discard().await;
    }
    Ok(())
}

/// The store's word on whether an account can send: OFFLINE (signed out,
/// its grant revoked — kept across restarts until a refresh or
/// `graphgate login` succeeds), with the recorded reason.
struct StoreGate(Store);

impl AccountGate for StoreGate {
    fn offline(&self, login: &str) -> Option<String> {
        let account = match self.0.account(login) {
            Ok(Some(account)) => account,
            // Gone or unreadable: the spool's own checks answer at DATA.
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the account's state");
                return None;
            }
        };
        // OFFLINE with a recorded reason: something found it signed out
        // (a refused refresh, `graphgate logout`, a failed start-up check).
        // An account just added, never checked, has no reason yet.
        if account.state != AccountState::Offline {
            return None;
        }
        let reason = account.last_error?;
        // The recorded sentence often starts with the login itself.
        Some(
            reason
                .strip_prefix(&format!("{}: ", account.login))
                .map(str::to_string)
                .unwrap_or(reason),
        )
    }
}

/// Make a file-backed message durable ([`IncomingFile::commit`]: flush,
/// fsync, rename) and submit it; a small one goes to the submitter as it
/// is, which commits it.
async fn finish_message(
    server: &Server,
    session: &Session,
    envelope: Envelope,
    inc: Incoming,
) -> SubmitOutcome {
    let Some(account) = session.authenticated().cloned() else {
        inc.discard().await;
        return SubmitOutcome::TryLater {
            text: "Not authenticated".into(),
        };
    };
    let size = inc.size;
    let body = match inc.file {
        None => SpooledBody::Inline(Bytes::from(inc.memory)),
        Some(file) => match file.commit().await {
            Ok(path) => SpooledBody::File(path),
            Err(e) => {
                tracing::error!(error = %e, "cannot make a message durable in the spool");
                return SubmitOutcome::TryLater {
                    text: "The spool could not store the message (disk full or \
                               unwritable?); try again later"
                        .into(),
                };
            }
        },
    };
    server
        .submitter
        .submit(SpooledMessage {
            account,
            envelope,
            body,
            size,
        })
        .await
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// Messages received at the same time share the memory budget: one
    /// that does not fit goes to a spool file from the start, and what a
    /// finished (or spilled) message held is given back.
    #[tokio::test]
    async fn messages_past_the_memory_budget_go_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(InlineBudget::new(1000));
        let chunk = [b'x'; 300];

        let mut first = Incoming::new(budget.clone());
        first.write(&chunk, dir.path(), 1000).await.unwrap();
        first.write(&chunk, dir.path(), 1000).await.unwrap();
        assert!(first.file.is_none());
        assert_eq!(first.memory.len(), 600);
        assert!(budget.used() >= 600 && budget.used() <= 1000);

        // Another message finds too little left: on disk at once.
        let mut second = Incoming::new(budget.clone());
        second.write(&chunk, dir.path(), 1000).await.unwrap();
        second.write(&chunk, dir.path(), 1000).await.unwrap();
        assert!(second.file.is_some() && second.memory.is_empty());
        assert_eq!(second.size, 600);

        // A message past inline_max spills and gives its memory back.
        first.write(&chunk, dir.path(), 700).await.unwrap();
        assert!(first.file.is_some());
        assert_eq!(budget.used(), 0);
        let mut third = Incoming::new(budget.clone());
        third.write(&chunk, dir.path(), 1000).await.unwrap();
        assert!(third.file.is_none());
        drop(third);
        assert_eq!(budget.used(), 0);
        first.discard().await;
        second.discard().await;
    }
}
