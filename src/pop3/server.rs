//! The POP3 listeners: plain with STLS (RFC 2595 §4) and implicit TLS
//! (RFC 8314 §3.3, the port-995 style); accepting connections within the
//! connection limit, and the per-connection loop: read, cut lines
//! ([`super::protocol::Framer`]), hand each command to
//! [`super::session`], write. Answers to pipelined commands (RFC 2449
//! §6.6 PIPELINING) are written together, when no further whole command
//! is waiting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::maildrop::OnDelete;
use super::protocol::{Framer, Line, MAX_COMMAND_LINE, MAX_SASL_LINE};
use super::session::{self, Next, Session};
use crate::imap::server::ImapServer;
use crate::login_guard::LoginGuard;
use crate::tls::Tls;

/// Listener settings (`pop3.*`).
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// USER/PASS and AUTH without TLS from loopback addresses.
    pub plaintext_login_on_loopback: bool,
    pub max_connections: usize,
    /// A connection silent this long is closed without UPDATE (RFC 1939
    /// §3: the autologout timer is at least 10 minutes).
    pub idle_timeout: Duration,
    /// Failed-login backoff, shared with SMTP and IMAP.
    pub login_guard: Arc<LoginGuard>,
    /// What DELE means at QUIT unless the account has its own setting.
    pub on_delete: OnDelete,
    /// Per-account `on_delete`, by login (lower case).
    pub on_delete_by_account: HashMap<String, OnDelete>,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            plaintext_login_on_loopback: true,
            max_connections: 256,
            idle_timeout: Duration::from_secs(10 * 60),
            login_guard: Arc::default(),
            on_delete: OnDelete::default(),
            on_delete_by_account: HashMap::new(),
        }
    }
}

impl Pop3Config {
    /// `pop3.on_delete` and `pop3.on_delete_accounts` read; an unknown
    /// mode is an error naming the key.
    pub fn with_on_delete(mut self, default: &str, accounts: &str) -> Result<Self, String> {
        self.on_delete = OnDelete::parse(default).map_err(|e| format!("pop3.on_delete: {e}"))?;
        for pair in accounts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (login, mode) = pair
                .split_once('=')
                .ok_or_else(|| format!("pop3.on_delete_accounts: {pair:?} is not login=mode"))?;
            let mode = OnDelete::parse(mode.trim())
                .map_err(|e| format!("pop3.on_delete_accounts ({login}): {e}"))?;
            self.on_delete_by_account
                .insert(login.trim().to_ascii_lowercase(), mode);
        }
        Ok(self)
    }

    /// What a deletion means for `login`'s account.
    pub fn on_delete_for(&self, login: &str) -> OnDelete {
        self.on_delete_by_account
            .get(&login.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.on_delete)
    }
}

pub struct Pop3Server {
    pub config: Pop3Config,
    /// What the IMAP side shares (accounts, store, content cache): the
    /// maildrop is its INBOX (see [`super::maildrop`]).
    pub imap: Arc<ImapServer>,
    pub tls: Option<Tls>,
}

impl Pop3Server {
    pub fn new(config: Pop3Config, imap: Arc<ImapServer>, tls: Option<Tls>) -> Arc<Pop3Server> {
        Arc::new(Pop3Server { config, imap, tls })
    }
}

/// The connection's byte stream: plain TCP until STLS, or TLS.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What answers are written to: buffered, counted for `/metrics`.
pub type Out = BufWriter<Io>;

async fn handshake(server: &Pop3Server, tcp: TcpStream) -> Result<Io, String> {
    let tls = server.tls.as_ref().ok_or("no TLS certificate")?;
    tls.accept_within(tcp, server.config.idle_timeout)
        .await
        .map(|s| Io::Tls(Box::new(s)))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => "TLS handshake timed out".to_string(),
            _ => format!("TLS handshake failed: {e}"),
        })
}

/// Accept connections until `shutdown`.
pub async fn run(
    listener: TcpListener,
    implicit_tls: bool,
    server: Arc<Pop3Server>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(server.config.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "pop3 accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let mut tcp = tcp;
            let _ = tcp
                .write_all(
                    b"-ERR [SYS/TEMP] Too many POP3 connections (pop3.max_connections); \
                      try again later\r\n",
                )
                .await;
            continue;
        };
        let server = server.clone();
        let shutdown = shutdown.clone();
        let metrics = crate::metrics::get();
        metrics.pop3_sessions.inc();
        let span = tracing::info_span!("pop3", session = crate::metrics::session_id(), %peer);
        connections.spawn(
            async move {
                let _permit = permit;
                let _active = crate::metrics::Active::new(&metrics.pop3_sessions_active);
                if let Err(e) = serve(tcp, peer, implicit_tls, server, shutdown).await {
                    tracing::debug!("pop3 connection ended: {e}");
                }
            }
            .instrument(span),
        );
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    server: Arc<Pop3Server>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    if implicit_tls && crate::tls::speaks_plaintext(&tcp).await {
        crate::tls::refuse_plaintext(
            tcp,
            b"-ERR This port expects TLS from the first byte (implicit TLS, pop3s://, \
              port-995 style): enable SSL/TLS in the client, or use STLS on the POP3 port \
              (pop3.listen)\r\n",
        )
        .await;
        return Ok(());
    }
    let io = if implicit_tls {
        handshake(&server, tcp).await?
    } else {
        Io::Plain(tcp)
    };
    let mut out: Out = BufWriter::with_capacity(64 * 1024, io);
    let mut session = Session::new(server.clone(), peer, implicit_tls);
    let mut framer = Framer::new();
    session::greet(&mut out).await.map_err(|e| e.to_string())?;
    out.flush().await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Every whole line waiting is answered before reading again.
        let limit = if session.in_sasl() {
            MAX_SASL_LINE
        } else {
            MAX_COMMAND_LINE
        };
        if let Some(line) = framer.next_line(limit) {
            let next = match line {
                Line::Text(line) => session.line(&line, &mut out).await,
                Line::TooLong(n) => session.too_long(n, &mut out).await,
            }
            .map_err(|e| e.to_string())?;
            match next {
                Next::Continue => continue,
                Next::Close => {
                    out.flush().await.map_err(|e| e.to_string())?;
                    let _ = out.shutdown().await;
                    return Ok(());
                }
                Next::StartTls => {
                    out.flush().await.map_err(|e| e.to_string())?;
                    // RFC 2595 §4 (and RFC 3207 §4.2's reasoning,
                    // CVE-2011-0411): whatever was pipelined after STLS
                    // in plaintext is dropped unanswered.
                    framer.discard_buffered();
                    let Io::Plain(tcp) = out.into_inner() else {
                        return Err("STLS over TLS".into());
                    };
                    out = BufWriter::with_capacity(64 * 1024, handshake(&server, tcp).await?);
                    session.tls_started();
                    continue;
                }
            }
        }
        out.flush().await.map_err(|e| e.to_string())?;
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                // RFC 1939 §6: no UPDATE without QUIT; nothing is deleted.
                let _ = out
                    .write_all(b"-ERR [SYS/TEMP] graphgate is shutting down; nothing was deleted\r\n")
                    .await;
                let _ = out.flush().await;
                return Ok(());
            }
            read = tokio::time::timeout(server.config.idle_timeout, out.get_mut().read(&mut buf)) => read,
        };
        match read {
            Err(_) => {
                let _ = out
                    .write_all(
                        b"-ERR autologout: idle for too long (pop3.idle_timeout_s); nothing \
                          was deleted\r\n",
                    )
                    .await;
                let _ = out.flush().await;
                return Ok(());
            }
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => framer.push(buf.get(..n).unwrap_or_default()),
            Ok(Err(e)) => return Err(e.to_string()),
        }
    }
}
