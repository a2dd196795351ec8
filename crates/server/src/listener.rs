//! The agent's listener: Consul's `limits { http_max_conns_per_client }` (default
//! 200). A client IP with that many connections open gets Consul's raw 429 on the
//! next one, which is then closed, so unauthenticated blocking queries from one
//! client cannot exhaust the agent's connections or file descriptors.

use std::collections::HashMap;
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
}

impl LimitedListener {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        LimitedListener {
            inner,
            max,
            counts: Arc::default(),
        }
    }
}

/// An admitted connection; gives its place back when dropped.
pub struct CountedStream {
    inner: TcpStream,
    ip: IpAddr,
    counts: Counts,
}

impl Drop for CountedStream {
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
                    ip: addr.ip(),
                    counts: self.counts.clone(),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
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

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
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
