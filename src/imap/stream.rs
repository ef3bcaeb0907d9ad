//! The connection's bytes: drives the sans-I/O imap-next state machine
//! over TCP or TLS, in place of `imap_next::stream::Stream`.
//!
//! Two differences from imap-next's own driver, both for throughput:
//! - Output is coalesced. imap-next hands out each response's bytes
//!   separately; its driver wrote each before asking for the next, so a
//!   FETCH of 10,000 messages was 10,000 `write` calls. Here bytes are
//!   appended to one buffer and written when the state machine waits for
//!   input (or the buffer passes [`HIGH_WATER`]).
//! - Bytes encoded elsewhere can be queued while a command is answered
//!   ([`Sink`]): FETCH encodes its responses itself (with the ENVELOPE and
//!   BODYSTRUCTURE kept in the store) and hands them over as it goes.
//!
//! Reading and writing are polled together whenever output is pending, so
//! a client that pipelines commands without reading its answers cannot
//! deadlock the connection.
//!
//! A large APPEND literal never reaches imap-next: [`crate::imap::divert`]
//! follows the input and its bytes are written to a spool file here as
//! they arrive; the APPEND handler takes the file ([`Sink::take_spooled`]).
//! The spool file is an unnamed temporary file (`tempfile::tempfile`, in
//! `TMPDIR`, mode 0600, gone when closed).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use imap_next::{Interrupt, Io, State};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::imap::divert::{Divert, Out};

/// Output buffered beyond this is written before the state machine is
/// asked for more.
const HIGH_WATER: usize = 256 * 1024;

/// Buffers grown beyond this (a large FETCH) are given back once empty,
/// so that an idle connection stays small.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes read from the socket at once (on the stack).
const READ_CHUNK: usize = 16 * 1024;

enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Inner {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Inner {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error("the client closed the connection")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The state machine refused the input (answered by the caller).
    #[error("protocol error")]
    State(E),
}

pub struct Stream {
    inner: Inner,
    write_buffer: BytesMut,
    /// Bytes were written since the last flush (TLS keeps records back
    /// until flushed).
    unflushed: bool,
    /// Large APPEND literals go to spool files (when turned on).
    spooler: Option<Spooler>,
}

/// Diverted APPEND literals: the one being received, and the complete
/// ones not yet taken by their command (at most [`MAX_UNCLAIMED`]).
struct Spooler {
    divert: Divert,
    current: Option<Spool>,
    done: VecDeque<Spool>,
}

const MAX_UNCLAIMED: usize = 4;

/// One diverted literal in its file.
struct Spool {
    placeholder: Vec<u8>,
    file: io::Result<std::fs::File>,
    len: u64,
    /// A plain literal cannot carry NUL (RFC 3501 §4.3): stored as 0x80,
    /// as imap-codec's refusal path does (commands/append.rs).
    nul_as_0x80: bool,
}

impl Spool {
    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write as _;
        let Ok(file) = &mut self.file else { return };
        let result = if self.nul_as_0x80 && bytes.contains(&0) {
            let fixed: Vec<u8> = bytes
                .iter()
                .map(|&b| if b == 0 { 0x80 } else { b })
                .collect();
            file.write_all(&fixed)
        } else {
            file.write_all(bytes)
        };
        match result {
            Ok(()) => self.len += bytes.len() as u64,
            Err(e) => self.file = Err(e),
        }
    }
}

/// The divert's pieces: imap-next's to the state machine, the literal's
/// to its spool file.
struct Pieces<'a, F> {
    state: &'a mut F,
    current: &'a mut Option<Spool>,
    done: &'a mut VecDeque<Spool>,
}

impl<F: State> Out for Pieces<'_, F> {
    fn pass(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.state.enqueue_input(bytes);
        }
    }
    fn begin(&mut self, _len: u32, binary: bool, placeholder: &[u8]) {
        *self.current = Some(Spool {
            placeholder: placeholder.to_vec(),
            file: tempfile::tempfile(),
            len: 0,
            nul_as_0x80: !binary,
        });
    }
    fn spool(&mut self, bytes: &[u8]) {
        if let Some(spool) = self.current {
            spool.write(bytes);
        }
    }
    fn end(&mut self) {
        if let Some(spool) = self.current.take() {
            self.done.push_back(spool);
            while self.done.len() > MAX_UNCLAIMED {
                self.done.pop_front();
            }
        }
    }
}

/// A diverted APPEND literal, complete in its file (at its end).
pub struct Spooled {
    pub file: std::fs::File,
    pub len: u64,
}

/// What one round of I/O achieved.
enum Progress {
    Read,
    Wrote,
}

impl Stream {
    pub fn insecure(stream: TcpStream) -> Stream {
        Stream::with(Inner::Plain(stream))
    }

    pub fn tls(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Stream {
        Stream::with(Inner::Tls(Box::new(stream)))
    }

    fn with(inner: Inner) -> Stream {
        Stream {
            inner,
            write_buffer: BytesMut::new(),
            unflushed: false,
            spooler: None,
        }
    }

    /// Divert APPEND literals from [`crate::imap::divert::DIVERT_FROM`] up
    /// to `max_literal` bytes (imap-next's limit) to spool files.
    pub fn spooling(mut self, max_literal: u32) -> Stream {
        let secret = uuid::Uuid::new_v4().simple().to_string();
        self.spooler = Some(Spooler {
            divert: Divert::new(max_literal, &secret),
            current: None,
            done: VecDeque::new(),
        });
        self
    }

    /// The spool file of the diverted literal imap-next got `placeholder`
    /// for (`None`: `placeholder` is a literal the client sent); spool
    /// files of earlier commands that never claimed theirs go too.
    pub fn take_spooled(&mut self, placeholder: &[u8]) -> Option<io::Result<Spooled>> {
        let spooler = self.spooler.as_mut()?;
        let at = spooler
            .done
            .iter()
            .position(|s| s.placeholder == placeholder)?;
        let spool = spooler.done.drain(..=at).next_back()?;
        Some(spool.file.map(|file| Spooled {
            file,
            len: spool.len,
        }))
    }

    /// The TCP stream of a plain connection, for STARTTLS (`None` when TLS
    /// is already on).
    pub fn into_plain(self) -> Option<TcpStream> {
        match self.inner {
            Inner::Plain(s) => Some(s),
            Inner::Tls(_) => None,
        }
    }

    /// Write everything queued (reading nothing).
    pub async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Write what can be written without waiting (before a command that
    /// may take a while, so that earlier answers are not held back).
    pub fn try_flush(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_write_out(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Ok(()),
        }
    }

    /// Write and flush everything queued; ready once all of it is out
    /// (what was written before a `Pending` stays written).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.write_buffer.is_empty() {
            let n =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.write_buffer))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write_buffer.advance(n);
            self.unflushed = true;
        }
        self.shrink();
        if self.unflushed {
            std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Write until at most `below` bytes wait, handing what the client
    /// sends meanwhile to `state` (a long answer must not stop the client's
    /// next commands from arriving: it may be waiting to send them before
    /// it reads).
    pub async fn drain<F: State>(
        &mut self,
        state: &mut F,
        below: usize,
    ) -> Result<(), StreamError<F::Error>> {
        while self.write_buffer.len() > below {
            poll_fn(|cx| self.poll_round(cx, state)).await?;
        }
        Ok(())
    }

    fn shrink(&mut self) {
        if self.write_buffer.is_empty() && self.write_buffer.capacity() > KEEP_CAPACITY {
            self.write_buffer = BytesMut::new();
        }
    }

    /// Progress `state` until its next event, reading and writing as it
    /// needs.
    pub async fn next<F: State>(
        &mut self,
        mut state: F,
    ) -> Result<F::Event, StreamError<F::Error>> {
        loop {
            match state.next() {
                Ok(event) => return Ok(event),
                Err(Interrupt::Error(e)) => return Err(StreamError::State(e)),
                Err(Interrupt::Io(Io::Output(bytes))) => {
                    self.write_buffer.extend_from_slice(&bytes);
                    if self.write_buffer.len() < HIGH_WATER {
                        continue;
                    }
                }
                Err(Interrupt::Io(Io::NeedMoreInput)) => {}
            }
            self.io_round(&mut state).await?;
        }
    }

    /// Write pending output while reading whatever arrives; returns after
    /// some progress (or when the output is out, if nothing was read).
    async fn io_round<F: State>(&mut self, state: &mut F) -> Result<(), StreamError<F::Error>> {
        loop {
            let progress = poll_fn(|cx| self.poll_round(cx, state)).await?;
            match progress {
                Progress::Read => return Ok(()),
                // Output out and flushed: go back to the state machine only
                // when there is nothing more to write (it may want input).
                Progress::Wrote if self.write_buffer.is_empty() && !self.unflushed => {
                    self.shrink();
                    // Nothing read yet: the state machine asked for input
                    // or had more output; either way ask it again.
                    return Ok(());
                }
                Progress::Wrote => continue,
            }
        }
    }

    fn poll_round<F: State>(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut F,
    ) -> Poll<Result<Progress, StreamError<F::Error>>> {
        if !self.write_buffer.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.write_buffer) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(StreamError::Closed)),
                Poll::Ready(Ok(n)) => {
                    self.write_buffer.advance(n);
                    self.unflushed = true;
                    return Poll::Ready(Ok(Progress::Wrote));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        } else if self.unflushed {
            match Pin::new(&mut self.inner).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    return Poll::Ready(Ok(Progress::Wrote));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        // Read into the stack and hand the bytes over at once: an idle
        // connection keeps no read buffer.
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Err(StreamError::Closed)),
            Poll::Ready(Ok(())) => {
                match &mut self.spooler {
                    Some(spooler) => spooler.divert.feed(
                        buf.filled(),
                        &mut Pieces {
                            state,
                            current: &mut spooler.current,
                            done: &mut spooler.done,
                        },
                    ),
                    None => state.enqueue_input(buf.filled()),
                }
                Poll::Ready(Ok(Progress::Read))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Where a long answer goes while it is being made (FETCH of many bodies):
/// queued on the stream, and written out whenever more than [`HIGH_WATER`]
/// waits, so that a FETCH of a whole folder holds a few hundred kilobytes
/// of its answer, not all of it.
pub struct Sink<'a> {
    stream: &'a mut Stream,
    imap: &'a mut imap_next::server::Server,
}

impl<'a> Sink<'a> {
    pub fn new(stream: &'a mut Stream, imap: &'a mut imap_next::server::Server) -> Sink<'a> {
        Sink { stream, imap }
    }

    /// See [`Stream::take_spooled`].
    pub fn take_spooled(&mut self, placeholder: &[u8]) -> Option<io::Result<Spooled>> {
        self.stream.take_spooled(placeholder)
    }

    /// Queue `bytes` (whole untagged responses) after everything before:
    /// imap-next's queue is empty while a command is answered (it sends
    /// everything before it reads the next command).
    pub async fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        if crate::wire::enabled() {
            tracing::trace!(
                target: crate::wire::TARGET,
                "S: {} (then {} bytes more)",
                crate::wire::line(bytes),
                bytes.len().saturating_sub(300)
            );
        }
        self.stream.write_buffer.extend_from_slice(bytes);
        if self.stream.write_buffer.len() > HIGH_WATER {
            self.stream
                .drain(self.imap, HIGH_WATER / 4)
                .await
                .map_err(|e| match e {
                    StreamError::Closed => io::ErrorKind::ConnectionReset.into(),
                    StreamError::Io(e) => e,
                    StreamError::State(_) => io::Error::other("protocol error"),
                })?;
        }
        Ok(())
    }
}
