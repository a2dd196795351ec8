//! Connections to the local service.
//!
//! HTTP/1.1 goes through a small pool of hyper client connections kept here rather
//! than hyper-util's general-purpose client: there is one destination, so no pool key
//! to hash, no absolute URI to build, and no task spawned per request to wait for the
//! connection to become idle again (BENCHMARKS.md, profile of the request path). A
//! connection goes back to the pool when its response body has been read to the end;
//! a response abandoned half-way closes it. A request that was never written (the
//! service closed an idle connection under us) is retried once on a new connection.
//! HTTP/2 and gRPC use hyper-util's client, which multiplexes on one connection.

use crate::metrics::{ConnEvent, Counters};
use crate::ProxyConfig;
use http_body_util::{Either, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept per proxy.
const MAX_IDLE: usize = 256;
/// Idle connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the local service did not answer.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The connection failed or closed before a response arrived.
    Reset(hyper::Error),
    /// HTTP/2 client failure (hyper-util).
    H2(hyper_util::client::legacy::Error),
}

impl UpstreamError {
    /// The request failed because the client's own body was malformed or cut off
    /// (hyper reports the body's error as a user error whose source is the body's
    /// hyper error): the client's fault, answered 400, not the upstream's.
    pub fn is_client_body(&self) -> bool {
        use std::error::Error as _;
        let user_body = |e: &(dyn std::error::Error + 'static)| {
            let mut cur = Some(e);
            while let Some(err) = cur {
                if let Some(h) = err.downcast_ref::<hyper::Error>() {
                    if h.is_user() && h.source().is_some_and(|s| s.is::<hyper::Error>()) {
                        return true;
                    }
                }
                cur = err.source();
            }
            false
        };
        match self {
            UpstreamError::Connect(_) => false,
            UpstreamError::Reset(e) => user_body(e),
            UpstreamError::H2(e) => user_body(e),
        }
    }

    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Connect(_) => true,
            UpstreamError::Reset(_) => false,
            UpstreamError::H2(e) => e.is_connect(),
        }
    }
}

/// The body of a response from the local service: an HTTP/1.1 body that returns its
/// connection to the pool at its end, or an HTTP/2 body.
pub struct UpstreamBody {
    inner: Incoming,
    pooled: Option<(SendRequest<Incoming>, Weak<H1Pool>)>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.pooled.take() {
            if let Some(pool) = pool.upgrade() {
                pool.put(sender);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.pooled = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body read to its end frees the connection; otherwise it is closed.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.pooled.is_some())
            .finish()
    }
}

/// Idle HTTP/1.1 connections to the local service, most recently used first.
pub(crate) struct H1Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<(SendRequest<Incoming>, Instant)>>,
    counters: Arc<Counters>,
}

impl H1Pool {
    fn put(&self, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push((sender, Instant::now()));
            }
        }
    }

    fn take(&self) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, UpstreamError> {
        let stream = self.dial().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Reset)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// A new TCP connection to the local service.
    async fn dial(&self) -> Result<TcpStream, UpstreamError> {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
                Err(_) => {
                    return Err(UpstreamError::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )))
                }
            };
        stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
        self.counters.connection(ConnEvent::ServiceConnected);
        Ok(stream)
    }

    /// A connection ready for a request: an idle one, or a new one.
    async fn checkout(&self) -> Result<SendRequest<Incoming>, UpstreamError> {
        while let Some(mut sender) = self.take() {
            // Pooled connections are idle or about to be (their last body was read).
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        self.connect().await
    }
}

/// The local service: HTTP/1.1 pool and HTTP/2 client.
pub(crate) struct Upstream {
    h1: Arc<H1Pool>,
    h2: Client<HttpConnector, Incoming>,
    authority: hyper::http::uri::Authority,
}

impl Upstream {
    pub(crate) fn new(config: &ProxyConfig, counters: Arc<Counters>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let authority = hyper::http::uri::Authority::try_from(config.upstream.to_string().as_str())
            .unwrap_or_else(|_| hyper::http::uri::Authority::from_static("127.0.0.1"));
        Upstream {
            h1: Arc::new(H1Pool {
                addr: config.upstream,
                idle: Mutex::new(Vec::new()),
                counters,
            }),
            h2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector),
            authority,
        }
    }

    /// The local service's `host:port`.
    pub(crate) fn authority(&self) -> &hyper::http::uri::Authority {
        &self.authority
    }

    /// Sends an HTTP/1.1 request (origin-form URI) and returns the response head with
    /// a body that frees the connection at its end.
    pub(crate) async fn send_h1(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut retried = false;
        loop {
            let mut sender = self.h1.checkout().await?;
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (head, inner) = resp.into_parts();
                    let mut body = UpstreamBody {
                        inner,
                        pooled: Some((sender, Arc::downgrade(&self.h1))),
                    };
                    if body.inner.is_end_stream() {
                        body.release();
                    }
                    return Ok(Response::from_parts(head, body));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the connection was closed under us; once more
                    // on a new connection.
                    Some(back) if !retried => {
                        retried = true;
                        req = back;
                    }
                    _ => return Err(UpstreamError::Reset(e.into_error())),
                },
            }
        }
    }

    /// Sends an upgrade request (WebSocket handshake) on a connection of its own,
    /// never pooled: after a `101` the connection belongs to the upgrade
    /// (`hyper::upgrade::on` the response). The sender is returned to be kept until
    /// the upgrade completes.
    pub(crate) async fn send_upgrade(
        &self,
        req: Request<Incoming>,
    ) -> Result<(Response<UpstreamBody>, SendRequest<Incoming>), UpstreamError> {
        let stream = self.h1.dial().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Reset)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
            }
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        let resp = resp.map(|inner| UpstreamBody {
            inner,
            pooled: None,
        });
        Ok((resp, sender))
    }

    /// Sends an HTTP/2 request (absolute URI).
    pub(crate) async fn send_h2(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let resp = self.h2.request(req).await.map_err(UpstreamError::H2)?;
        Ok(resp.map(|inner| UpstreamBody {
            inner,
            pooled: None,
        }))
    }
}

/// Response bodies: streamed from the local service, or short ones the proxy writes.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;
