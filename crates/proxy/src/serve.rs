//! Connections for the request path of [`crate::http`]: accept within the
//! connection cap ([`crate::conns`]), serve HTTP/1.1 and HTTP/2 on each accepted
//! connection within its lifetime rules and call [`crate::http::handle`] per
//! request, or for a `tcp` destination decide once and copy bytes both ways. The
//! edge listener (plain or TLS) is here; the mesh listener ([`crate::mesh`]) hands
//! its connections over with the caller's identity.

use crate::conns::{Conn, InFlight, Slot};
use crate::http::{handle, AccessRecord, ProxyBody};
use crate::metrics::UpstreamResult;
use crate::race::Won;
use crate::snapshot::Snapshot;
use crate::Proxy;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tribune_authz::Caller;

/// A response body with its request's [`InFlight`] mark: the request ends when hyper
/// has sent the body and drops it.
struct Sent {
    body: ProxyBody,
    _in_flight: InFlight,
}

impl hyper::body::Body for Sent {
    type Data = Bytes;
    type Error = <ProxyBody as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves HTTP/1.1 and HTTP/2 on one accepted connection, within its lifetime rules
/// ([`crate::conns`]): first request within `first_request_timeout`, graceful
/// shutdown after `idle_timeout` without a request or when shed for a new caller.
pub async fn serve_connection<IO>(
    proxy: Arc<Proxy>,
    io: IO,
    caller: Option<Arc<str>>,
    conn: Arc<Conn>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_header = proxy.config.max_header_bytes.max(8192);
    let (first, idle) = (
        proxy.config.first_request_timeout,
        proxy.config.idle_timeout,
    );
    let p = proxy.clone();
    let c = conn.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let in_flight = c.begin(req.version() < Version::HTTP_2);
        let (p, caller, c) = (p.clone(), caller.clone(), c.clone());
        // `handle` is made inside the block: held as a captured value it would be
        // carried twice (captured, then awaited), and copied at each move.
        async move {
            let r = handle(p, caller, c, req).await;
            // In flight until its body has been sent (hyper drops it then).
            r.map(|resp| {
                resp.map(|body| Sent {
                    body,
                    _in_flight: in_flight,
                })
            })
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .max_buf_size(max_header)
        // No per-request header timer: the loop below bounds a head's time (conns.rs).
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_header as u32)
        // RFC 8441: WebSockets over HTTP/2 (extended CONNECT).
        .enable_connect_protocol();
    // With upgrades: an allowed WebSocket handshake hands the connection over to
    // [`crate::upgrade`] once answered `101`.
    let io = crate::conns::Watched::new(io, conn.clone());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(connection);
    let mut closing = false;
    // The timer and shed branches are polled only when they fire (crate::race).
    let side = crate::race::Side::default();
    loop {
        let deadline = if closing {
            // Streams still open after a graceful shutdown get one more idle period.
            Instant::now() + idle
        } else if conn.seen_request() {
            let now = Instant::now();
            let idle_at = now + idle.saturating_sub(conn.idle_for());
            if conn.http1() {
                // A later head is checked at least every `first` and, once started,
                // at its deadline.
                let head_at =
                    now + first.saturating_sub(conn.head_pending_for().unwrap_or_default());
                idle_at.min(head_at)
            } else {
                idle_at
            }
        } else {
            // Wakes by the idle timeout too, so a first request that does arrive
            // starts the idle clock on time.
            conn.accepted() + first.min(idle)
        };
        let wake = async {
            tokio::select! {
                _ = conn.shed.notified(), if !closing => Wake::Shed,
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            }
        };
        match crate::race::race(&side, connection.as_mut(), wake).await {
            Won::Main(ended) => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "downstream connection ended with an error");
                }
                // An upgraded connection made from it keeps its place until it ends.
                conn.upgrades_closed().await;
                return;
            }
            Won::Side(Wake::Shed) => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            Won::Side(Wake::Timer) => {
                if closing {
                    // Still not done an idle period after its shutdown: dropped.
                    return;
                }
                if !conn.seen_request() {
                    if conn.accepted().elapsed() >= first {
                        // Silent since accept (nothing, a partial preface, no stream).
                        return;
                    }
                } else if conn.head_pending_for().is_some_and(|t| t >= first) {
                    // A later request's head still not whole: dropped.
                    return;
                } else if conn.idle_for() >= idle {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Why a connection's loop woke other than its connection ending.
enum Wake {
    /// Shed for a new caller.
    Shed,
    /// A lifetime deadline came.
    Timer,
}

/// L4 enforcement for non-HTTP destinations: decide on connect (identity only), then
/// copy bytes both ways.
pub async fn serve_tcp<IO>(proxy: &Proxy, snap: &Snapshot, mut stream: IO, caller: Option<&str>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let decision = snap.decide_connection(caller.map(Caller::local));
    proxy.count_decision(&decision);
    let record = |status: u16, verdict: &'static str, reason: &'static str| AccessRecord {
        version: snap.version,
        caller: caller.map(std::borrow::Cow::Borrowed),
        method: "TCP".into(),
        path: "".into(),
        status,
        decision: verdict,
        reason,
        intention: decision.intention().map(|i| snap.table.describe(i)),
        latency: start.elapsed(),
        shadow: None,
    };
    if !decision.allowed() {
        proxy.log(|| record(0, "deny", decision.code().as_str()));
        return;
    }
    match TcpStream::connect(proxy.config.upstream).await {
        Ok(mut up) => {
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
            proxy.log(|| record(0, "allow", decision.code().as_str()));
        }
        Err(_) => proxy.log(|| record(0, "error", UpstreamResult::Connect.label())),
    }
}

/// Phase 1 for one accepted TCP connection.
pub async fn serve_downstream<IO>(
    proxy: Arc<Proxy>,
    stream: IO,
    caller: Option<Arc<str>>,
    conn: Arc<Conn>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(snap) = proxy.current() else {
        // Fail closed: nothing is served before the first snapshot.
        return;
    };
    if snap.http {
        drop(snap);
        serve_connection(proxy, stream, caller, conn).await;
    } else {
        serve_tcp(&proxy, &snap, stream, caller.as_deref()).await;
    }
}

/// Serves one already-accepted stream (any transport: a socket, a TLS stream, an
/// in-memory pipe in tests and the fuzz target) with the given caller, within the
/// connection cap; `false` when the cap left no place for it.
pub async fn serve_stream<IO>(proxy: Arc<Proxy>, stream: IO, caller: Option<Arc<str>>) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(slot) = proxy.conns.admit(Duration::ZERO).await else {
        return false;
    };
    serve_downstream(proxy, stream, caller, slot.conn.clone()).await;
    true
}

/// The edge listener: plain connections from outside the mesh (no caller identity).
pub async fn serve_edge(proxy: Arc<Proxy>, listener: TcpListener) {
    serve_edge_with(proxy, listener, None).await
}

/// The edge listener with server-side TLS (HTTP/1.1 and HTTP/2 by ALPN).
pub async fn serve_edge_tls(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    serve_edge_with(proxy, listener, Some(tokio_rustls::TlsAcceptor::from(tls))).await
}

/// A TLS server config for the edge listener from PEM files.
pub fn edge_tls_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let chain = tribune_ca::certs_from_pem(cert_pem).map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("no certificate in the edge TLS certificate file".into());
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("edge TLS key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("edge TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The next accepted connection within the connection limit (over the limit,
/// connections are closed at once), with TCP_NODELAY set.
pub(crate) async fn accept(
    proxy: &Proxy,
    listener: &TcpListener,
) -> (TcpStream, std::net::SocketAddr, Slot) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                proxy
                    .metrics
                    .counters
                    .connection(crate::metrics::ConnEvent::Accepted);
                x
            }
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE): make room by shedding the
                // longest-idle connection, so the next caller can be served.
                if matches!(e.raw_os_error(), Some(23 | 24)) && proxy.conns.shed_idlest() {
                    tracing::warn!(error = %e, "out of file descriptors; shed an idle connection");
                } else {
                    tracing::warn!(error = %e, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(slot) = proxy.conns.admit(SHED_WAIT).await else {
            tracing::warn!(%peer, "connection limit reached and nothing idle to shed; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        return (stream, peer, slot);
    }
}

/// How long a new connection at the cap waits for a shed connection's place.
const SHED_WAIT: Duration = Duration::from_secs(1);

async fn serve_edge_with(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, _, slot) = accept(&proxy, &listener).await;
        let proxy = proxy.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            proxy.metrics.connections.inc();
            let conn = slot.conn.clone();
            match tls {
                None => serve_downstream(proxy.clone(), stream, None, conn).await,
                Some(acceptor) => {
                    match tokio::time::timeout(
                        crate::mesh::HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => serve_downstream(proxy.clone(), s, None, conn).await,
                        _ => tracing::debug!("edge TLS handshake failed"),
                    }
                }
            }
            proxy.metrics.connections.dec();
            drop(slot);
        });
    }
}
