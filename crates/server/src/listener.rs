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
//!
//! HTTP/2 (prior knowledge on the plain listener, ALPN `h2` on the HTTPS one) carries
//! a sidecar's several blocking queries as streams of one connection (issue #40: a
//! held HTTP/1.1 query is a connection with hyper's two 8 KB buffers; a held stream
//! is a few hundred bytes and the handler's future). Its deadlines follow requests,
//! not bytes: a connection must start a request within [`HEAD_TIMEOUT`] of its
//! preface, and one with no request in flight for [`IDLE_TIMEOUT`] is closed. At most
//! [`MAX_STREAMS`] requests run at once on one connection, and each in flight past
//! the first takes a place of its client's, as a connection of its own would.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Requests one HTTP/2 connection may run at once (a sidecar holds its leaf, policy
/// and one endpoints watch per upstream as streams of one connection).
pub const MAX_STREAMS: u32 = 128;

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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
    /// An HTTP/2 connection: the deadline follows its requests ([`Streams`]).
    H2,
}

/// The requests of one HTTP/2 connection, counted by the service that runs them and
/// read by the connection's deadline.
pub struct Streams {
    in_flight: AtomicUsize,
    /// When a request last started or ended (`None`: none has started yet).
    last: Mutex<Option<tokio::time::Instant>>,
    /// The connection's client: each request in flight past the first takes another
    /// of its places, so one client holds as many requests at once over HTTP/2 as
    /// over HTTP/1.1 connections (`limits { http_max_conns_per_client }`).
    client: Client,
}

impl Streams {
    fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Some(tokio::time::Instant::now());
        }
    }

    /// A request starts; the returned guard ends it when dropped (answered, or its
    /// stream reset). `None` when it would be past its client's limit.
    fn start(self: &Arc<Self>) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let extra = if before == 0 {
            None
        } else {
            match self.client.take() {
                Some(p) => Some(p),
                None => {
                    self.in_flight.fetch_sub(1, Ordering::Relaxed);
                    return None;
                }
            }
        };
        self.touch();
        Some(InFlight {
            streams: self.clone(),
            _extra: extra,
        })
    }
}

struct InFlight {
    streams: Arc<Streams>,
    _extra: Option<Place>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.streams.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.streams.touch();
    }
}

/// What an HTTP/2 connection's deadline finds when it fires.
#[derive(Debug, PartialEq, Eq)]
enum H2Due {
    /// Still in use: look again at this time.
    Later(tokio::time::Instant),
    /// No request started within the head timeout of the preface.
    NoRequest,
    /// Nothing in flight since `idle` ago.
    Idle,
}

/// The rule of an HTTP/2 connection's deadline, apart from the clock (unit tested).
fn h2_due(
    in_flight: usize,
    last: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    idle: Duration,
) -> H2Due {
    if in_flight > 0 {
        return H2Due::Later(now + idle);
    }
    match last {
        None => H2Due::NoRequest,
        Some(t) if t + idle > now => H2Due::Later(t + idle),
        Some(_) => H2Due::Idle,
    }
}

/// A client (its IP) and its limit of places (0: none).
#[derive(Clone)]
struct Client {
    ip: IpAddr,
    counts: Counts,
    max: usize,
}

impl Client {
    /// One of the client's places, when it has one left.
    fn take(&self) -> Option<Place> {
        let Ok(mut c) = self.counts.lock() else {
            return Some(Place(self.clone()));
        };
        let n = c.entry(self.ip).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Place(self.clone()))
    }
}

/// A client's place among its admitted connections (or, on HTTP/2, its requests in
/// flight past a connection's first); given back when dropped.
struct Place(Client);

/// An admitted connection (plain TCP, or TLS over it); gives its place back when
/// dropped.
pub struct CountedStream<S = TcpStream> {
    inner: S,
    watch: Watch,
}

/// What a connection's deadlines follow, whatever carries its bytes.
struct Watch {
    place: Place,
    phase: Phase,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The last three bytes read (a head's end may straddle two reads).
    tail: [u8; 3],
    head_timeout: Duration,
    idle_timeout: Duration,
    /// The reader waiting while the request was served: woken when the answer is
    /// written, so that it waits again under the idle deadline.
    read_waker: Option<std::task::Waker>,
    /// An HTTP/2 connection's requests.
    streams: Option<Arc<Streams>>,
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

impl<S> CountedStream<S> {
    /// The connection speaks HTTP/2 from here on: its deadline follows the requests
    /// counted in the returned [`Streams`], the first of which must start within the
    /// head timeout.
    fn speak_h2(&mut self) -> Arc<Streams> {
        let streams = Arc::new(Streams {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(None),
            client: self.watch.place.0.clone(),
        });
        self.watch.phase = Phase::H2;
        self.watch.streams = Some(streams.clone());
        self.watch.reset(self.watch.head_timeout);
        streams
    }
}

impl CountedStream<tokio_rustls::server::TlsStream<TcpStream>> {
    /// Whether the client chose HTTP/2 by ALPN.
    fn chose_h2(&self) -> bool {
        self.inner.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

/// Reads a plain connection's first bytes, at most the HTTP/2 preface's length and no
/// further than they agree with it, under the connection's head deadline. Returns
/// them; they are the preface when the client speaks HTTP/2 with prior knowledge.
async fn sniff(io: &mut CountedStream) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::with_capacity(H2_PREFACE.len());
    let mut buf = [0u8; 24];
    while got.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&got) {
        let want = H2_PREFACE.len() - got.len();
        let n = io.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

/// A stream whose first bytes were already read ([`sniff`]): they are read again
/// first.
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // A held connection keeps no copy of its first bytes.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
        if self.phase == Phase::H2 {
            // Frames, not answers: the deadline follows the requests (Streams).
            return;
        }
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
        let Client { ip, counts, .. } = &self.0;
        if let Ok(mut c) = counts.lock() {
            if let Some(n) = c.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    c.remove(ip);
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
            let client = Client {
                ip: addr.ip(),
                counts: self.counts.clone(),
                max: self.max,
            };
            let Some(place) = client.take() else {
                tracing::warn!(client = %addr.ip(), limit = self.max, "client connection limit reached");
                tokio::spawn(refuse(stream));
                continue;
            };
            // Answers go out as written: an HTTP/2 answer is several small writes
            // (headers, data), and Nagle's algorithm held the second until the
            // client's delayed ACK, up to 40 ms later (bench/scale.sh H2=1).
            let _ = stream.set_nodelay(true);
            return (
                CountedStream {
                    inner: stream,
                    watch: Watch {
                        place,
                        phase: Phase::Head,
                        deadline: Box::pin(tokio::time::sleep(self.head_timeout)),
                        tail: [0; 3],
                        head_timeout: self.head_timeout,
                        idle_timeout: self.idle_timeout,
                        read_waker: None,
                        streams: None,
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
        if this.watch.phase == Phase::H2 {
            // Loops only when the deadline moved (a new Sleep to register).
            while this.watch.deadline.as_mut().poll(cx).is_ready() {
                let streams = this.watch.streams.as_deref();
                let due = h2_due(
                    streams.map_or(0, |s| s.in_flight.load(Ordering::Relaxed)),
                    streams.and_then(|s| s.last.lock().ok().and_then(|l| *l)),
                    tokio::time::Instant::now(),
                    this.watch.idle_timeout,
                );
                let what = match due {
                    H2Due::Later(at) => {
                        this.watch.deadline.as_mut().reset(at);
                        continue;
                    }
                    H2Due::NoRequest => "no request in time",
                    H2Due::Idle => "idle HTTP/2 connection closed",
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
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
/// -i` output work against both. A connection that opens with HTTP/2's preface (or
/// that chose `h2` by ALPN) is served as HTTP/2 (module text); each kind of
/// connection runs in a task of its own size, so a held HTTP/1.1 query costs hyper's
/// HTTP/1 connection alone (650 bytes against 1 530 for hyper-util's auto connection;
/// issue #40). With `tls`, every connection is a TLS one (the HTTPS listener); its
/// handshake runs in the connection's own task.
pub async fn serve(
    mut listener: LimitedListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl std::future::Future<Output = ()>,
) {
    use axum::serve::Listener;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (mut io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(async move {
                    let prefix = match sniff(&mut io).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::debug!(error = %e, "connection ended before a request");
                            return;
                        }
                    };
                    if prefix.as_slice() == H2_PREFACE {
                        let streams = io.speak_h2();
                        let io = Prefixed {
                            prefix,
                            at: 0,
                            inner: io,
                        };
                        tokio::spawn(serve_h2(io, app, streams, watcher));
                    } else {
                        let io = Prefixed {
                            prefix,
                            at: 0,
                            inner: io,
                        };
                        tokio::spawn(serve_h1(io, app, watcher));
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut io = match io.tls_handshake(&acceptor).await {
                        Ok(io) => io,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    if io.chose_h2() {
                        let streams = io.speak_h2();
                        tokio::spawn(serve_h2(io, app, streams, watcher));
                    } else {
                        tokio::spawn(serve_h1(io, app, watcher));
                    }
                });
            }
        }
    }
    graceful.shutdown().await;
}

/// One HTTP/1.1 connection.
async fn serve_h1<I>(io: I, app: axum::Router, watcher: hyper_util::server::graceful::Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.title_case_headers(true);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// One HTTP/2 connection; its requests are counted in `streams` for its deadline.
async fn serve_h2<I>(
    io: I,
    app: axum::Router,
    streams: Arc<Streams>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        // The request bodies a connection may have in flight unread: the protocol's
        // own 64 KiB a stream and 256 KiB a connection, not hyper's 1 MiB each.
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(256 * 1024);
    let service = Counting {
        inner: hyper_util::service::TowerToHyperService::new(app),
        streams,
    };
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

/// Counts an HTTP/2 connection's requests in flight ([`Streams`]); one past its
/// client's limit gets Consul's 429 text and nothing runs.
struct Counting {
    inner: hyper_util::service::TowerToHyperService<axum::Router>,
    streams: Arc<Streams>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Counting {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        use axum::response::IntoResponse;
        let Some(in_flight) = self.streams.start() else {
            let client = self.streams.client.ip;
            tracing::warn!(%client, limit = self.streams.client.max, "client request limit reached on an HTTP/2 connection");
            let refused = (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::CONTENT_TYPE, "text/plain")],
                TOO_MANY,
            );
            return Box::pin(std::future::ready(Ok(refused.into_response())));
        };
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            drop(in_flight);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http2_connections_deadline_follows_its_requests() {
        let idle = Duration::from_secs(90);
        let t0 = tokio::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let table = [
            // (in flight, last start or end, now) -> due
            (
                "a request runs: look again later",
                2,
                Some(at(0)),
                at(500),
                H2Due::Later(at(590)),
            ),
            (
                "none started since the preface",
                0,
                None,
                at(10),
                H2Due::NoRequest,
            ),
            (
                "the last ended lately",
                0,
                Some(at(30)),
                at(100),
                H2Due::Later(at(120)),
            ),
            (
                "the last ended an idle time ago",
                0,
                Some(at(10)),
                at(100),
                H2Due::Idle,
            ),
        ];
        for (name, in_flight, last, now, want) in table {
            assert_eq!(h2_due(in_flight, last, now, idle), want, "{name}");
        }
    }

    #[test]
    fn the_preface_is_http2s() {
        assert_eq!(H2_PREFACE.len(), 24);
        assert!(H2_PREFACE.starts_with(b"PRI * HTTP/2.0\r\n\r\n"));
    }
}
