//! The agent's listener: Consul's `limits { http_max_conns_per_client }` (default
//! 200). A client IP with that many connections open gets Consul's raw 429 on the
//! next one, which is then closed, so unauthenticated blocking queries from one
//! client cannot exhaust the agent's connections or file descriptors.
//!
//! A connection must also keep speaking: one that sends no complete request head
//! within [`HEAD_TIMEOUT`] of being accepted (or of its first byte after an answer),
//! or that stays idle between requests for [`IDLE_TIMEOUT`], is closed. A blocking
//! query in progress is neither (its head is complete), so it is never cut. 200
//! sockets that never send a byte thus hold a client's places for seconds, not for
//! ever (hardening round 3, item 11).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Consul's default.
pub const DEFAULT_MAX_CONNS_PER_CLIENT: usize = 200;

/// Time allowed for a request head, from accept or from its first byte.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may stay idle between an answer and the next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What Consul (go-connlimit) answers past the limit.
const TOO_MANY: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A TCP listener that admits at most `max` open connections per client IP (0: no
/// limit).
pub struct LimitedListener {
    inner: TcpListener,
    max: usize,
    counts: Counts,
    head_timeout: Duration,
    idle_timeout: Duration,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        LimitedListener {
            inner,
            max,
            counts: Arc::default(),
            head_timeout: HEAD_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// Other head and idle timeouts than [`HEAD_TIMEOUT`] and [`IDLE_TIMEOUT`].
    pub fn with_timeouts(mut self, head: Duration, idle: Duration) -> Self {
        self.head_timeout = head;
        self.idle_timeout = idle;
        self
    }
}

/// Where a connection is between requests (what its deadline is for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head: it must be complete by the deadline.
    Head,
    /// A complete head was read; the request is being served (no deadline).
    Busy,
    /// An answer was written; the next request must start by the deadline.
    Idle,
}

/// A client's place among its admitted connections; given back when dropped.
struct Place {
    ip: IpAddr,
    counts: Counts,
}

/// An admitted connection (plain TCP, or TLS over it); gives its place back when
/// dropped.
pub struct CountedStream<S = TcpStream> {
    inner: S,
    watch: Watch,
}

/// What a connection's deadlines follow, whatever carries its bytes.
struct Watch {
    _place: Place,
    phase: Phase,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The last three bytes read (a head's end may straddle two reads).
    tail: [u8; 3],
    head_timeout: Duration,
    idle_timeout: Duration,
    /// The reader waiting while the request was served: woken when the answer is
    /// written, so that it waits again under the idle deadline.
    read_waker: Option<std::task::Waker>,
}

impl CountedStream<TcpStream> {
    /// The TLS handshake, bounded by the head deadline (a client that stalls its
    /// handshake holds its place no longer than one that stalls its request head).
    /// The deadlines then follow the decrypted bytes.
    pub async fn tls_handshake(
        self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> io::Result<CountedStream<tokio_rustls::server::TlsStream<TcpStream>>> {
        let CountedStream { inner, watch } = self;
        let until = watch.deadline.deadline();
        let tls = match tokio::time::timeout_at(until, acceptor.accept(inner)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no TLS handshake in time",
                ))
            }
        };
        Ok(CountedStream { inner: tls, watch })
    }
}

impl Watch {
    /// Follows the bytes the client sent: a head's first byte starts the head
    /// deadline, its end (an empty line) makes the connection busy.
    fn saw(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.reset(self.head_timeout);
        }
        if self.phase == Phase::Head && head_ends(&self.tail, bytes) {
            self.phase = Phase::Busy;
        }
        let mut joined = [0u8; 6];
        let n = bytes.len().min(3);
        joined[..3].copy_from_slice(&self.tail);
        joined[3..3 + n].copy_from_slice(&bytes[bytes.len() - n..]);
        self.tail.copy_from_slice(&joined[n..n + 3]);
    }

    /// The server wrote (part of) an answer: the next request must start in time.
    fn answered(&mut self) {
        let was = std::mem::replace(&mut self.phase, Phase::Idle);
        self.reset(self.idle_timeout);
        if was == Phase::Busy {
            if let Some(w) = self.read_waker.take() {
                w.wake();
            }
        }
    }

    fn reset(&mut self, after: Duration) {
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + after);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            if let Some(n) = c.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&self.ip);
                }
            }
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedStream, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let admitted = match self.counts.lock() {
                Ok(mut c) => {
                    let n = c.entry(addr.ip()).or_insert(0);
                    if self.max == 0 || *n < self.max {
                        *n += 1;
                        true
                    } else {
                        false
                    }
                }
                Err(_) => true,
            };
            if !admitted {
                tracing::warn!(client = %addr.ip(), limit = self.max, "client connection limit reached");
                tokio::spawn(refuse(stream));
                continue;
            }
            return (
                CountedStream {
                    inner: stream,
                    watch: Watch {
                        _place: Place {
                            ip: addr.ip(),
                            counts: self.counts.clone(),
                        },
                        phase: Phase::Head,
                        deadline: Box::pin(tokio::time::sleep(self.head_timeout)),
                        tail: [0; 3],
                        head_timeout: self.head_timeout,
                        idle_timeout: self.idle_timeout,
                        read_waker: None,
                    },
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An interim answer (`100 Continue`): the request goes on (its body follows), so the
/// connection stays busy.
fn interim(written: &[u8]) -> bool {
    written.starts_with(b"HTTP/1.1 1") || written.starts_with(b"HTTP/1.0 1")
}

/// Whether `bytes` (after the `tail` of earlier reads) hold a head's end.
fn head_ends(tail: &[u8; 3], bytes: &[u8]) -> bool {
    const END: &[u8] = b"\r\n\r\n";
    let n = bytes.len().min(3);
    let mut edge = [0u8; 6];
    edge[..3].copy_from_slice(tail);
    edge[3..3 + n].copy_from_slice(&bytes[..n]);
    edge[..3 + n].windows(4).any(|w| w == END) || bytes.windows(4).any(|w| w == END)
}

/// Consul's answer past the limit: a raw 429 written within 10 ms, then close.
async fn refuse(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY}",
        TOO_MANY.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_millis(10),
        stream.write_all(response.as_bytes()),
    )
    .await;
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.watch.phase != Phase::Busy && this.watch.deadline.as_mut().poll(cx).is_ready() {
            let what = match this.watch.phase {
                Phase::Idle => "idle keep-alive connection closed",
                _ => "no complete request head in time",
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if r.is_pending() && this.watch.phase == Phase::Busy {
            this.watch.read_waker = Some(cx.waker().clone());
        }
        if let Poll::Ready(Ok(())) = &r {
            let filled = buf.filled();
            if filled.len() > before {
                this.watch.saw(&filled[before..]);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && !interim(buf) {
            self.watch.answered();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && !interim(first) {
            self.watch.answered();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets open connections
/// finish (the caller bounds how long). HTTP/1 answers spell header names as Consul's
/// do (`X-Consul-Index`, `Content-Type`): scripts that `grep X-Consul-Index` in `curl
/// -i` output work against both. HTTP/1 only, as Consul's API, and without
/// upgrades (the agent has none): hyper's HTTP/1 connection alone, 650 bytes per
/// connection against 1 530 for hyper-util's auto connection, which carries an
/// HTTP/2 state too (a held sidecar watch is a connection; issue #40). With `tls`,
/// every connection is a TLS one (the HTTPS listener); its handshake runs in the
/// connection's own task.
pub async fn serve(
    mut listener: LimitedListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl std::future::Future<Output = ()>,
) {
    use axum::serve::Listener;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.title_case_headers(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let service = TowerToHyperService::new(app.clone());
        match &tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let io = match io.tls_handshake(&acceptor).await {
                        Ok(io) => io,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    graceful.shutdown().await;
}
