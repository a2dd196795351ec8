//! Outbound identity (issue #45): an upstream whose registration names
//! `Config.jwt_svid_header` gets its requests read as HTTP/1.1 and carries each with a
//! fresh JWT-SVID for the destination (`aud` = the destination service) in that
//! header, over the same mTLS connection to the destination's sidecars.
//!
//! - The token comes from the agent (`POST /v1/agent/connect/ca/jwt-svid` with the
//!   sidecar's token) and is kept until a minute before it expires; concurrent
//!   requests share one fetch.
//! - A header of that name the app set is replaced, never forwarded: the app cannot
//!   choose the identity it presents. `Authorization` stays the app's unless the
//!   registration names it.
//! - Tokens are never logged. A token the agent will not give fails the request with
//!   502 and says why; other upstreams carry bytes as before (no HTTP parsing).

use crate::mesh::{dial, Endpoints, MeshTls};
use crate::metrics::ConnEvent;
use crate::Proxy;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tribune_model::api::{paths, JwtSvid, JwtSvidRequest};

/// A token is fetched again when it has less than this left.
const REFRESH_BEFORE: i64 = 60;

/// JWT-SVIDs of one service for one audience, fetched from the agent and kept.
pub struct SvidSource {
    client: tribune_client::Client,
    service: String,
    audience: String,
    /// The header value (`<token>`) and the token's `exp`.
    current: std::sync::Mutex<Option<(HeaderValue, i64)>>,
    fetch: tokio::sync::Mutex<()>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SvidSource {
    pub fn new(client: tribune_client::Client, service: &str, audience: &str) -> Arc<Self> {
        Arc::new(SvidSource {
            client,
            service: service.to_string(),
            audience: audience.to_string(),
            current: std::sync::Mutex::new(None),
            fetch: tokio::sync::Mutex::new(()),
        })
    }

    fn kept(&self) -> Option<HeaderValue> {
        let g = self.current.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(_, exp)| exp - now() > REFRESH_BEFORE)
            .map(|(v, _)| v.clone())
    }

    /// A token with more than a minute left.
    pub async fn token(&self) -> Result<HeaderValue, String> {
        if let Some(v) = self.kept() {
            return Ok(v);
        }
        let _one = self.fetch.lock().await;
        if let Some(v) = self.kept() {
            return Ok(v);
        }
        let body = serde_json::to_vec(&JwtSvidRequest {
            service: self.service.clone(),
            audience: vec![self.audience.clone()],
            ttl: String::new(),
        })
        .map_err(|e| e.to_string())?;
        let r = self
            .client
            .request("POST", paths::JWT_SVID, Some(body))
            .await
            .map_err(|e| format!("agent unreachable: {e}"))?;
        if r.status != 200 {
            return Err(format!(
                "the agent answered {}: {}",
                r.status,
                r.body.trim()
            ));
        }
        let svid: JwtSvid = serde_json::from_str(&r.body)
            .map_err(|e| format!("unexpected answer from the agent: {e}"))?;
        let exp = tribune_jwt::Jws::parse(&svid.token, tribune_jwt::DEFAULT_MAX_TOKEN_BYTES)
            .ok()
            .and_then(|j| j.payload.raw("exp").and_then(|e| e.parse::<i64>().ok()))
            .unwrap_or_else(|| now() + 300);
        let mut v = HeaderValue::from_str(&svid.token)
            .map_err(|_| "the agent's token is not a header value".to_string())?;
        v.set_sensitive(true);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((v.clone(), exp));
        Ok(v)
    }
}

fn bad_gateway(why: String) -> Response<http_body_util::Either<Incoming, Full<Bytes>>> {
    let mut res = Response::new(http_body_util::Either::Right(Full::new(Bytes::from(
        format!("{why}\n"),
    ))));
    *res.status_mut() = StatusCode::BAD_GATEWAY;
    res
}

/// An upstream listener that reads the app's requests and adds the JWT-SVID header
/// to each before carrying it to `destination`'s sidecars over mTLS.
pub async fn serve_upstream_with_identity(
    proxy: Arc<Proxy>,
    tls: Arc<MeshTls>,
    destination: String,
    endpoints: Arc<Endpoints>,
    listener: TcpListener,
    header: HeaderName,
    source: Arc<SvidSource>,
) {
    loop {
        let Ok((app, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = app.set_nodelay(true);
        let (tls, destination, endpoints) = (tls.clone(), destination.clone(), endpoints.clone());
        let (header, source) = (header.clone(), source.clone());
        let counters = proxy.metrics.counters.clone();
        tokio::spawn(async move {
            let remote = match dial(&tls, &destination, &endpoints).await {
                Ok(r) => {
                    counters.connection(ConnEvent::UpstreamDialed);
                    r
                }
                Err(e) => {
                    counters.connection(ConnEvent::UpstreamDialFailed);
                    tracing::warn!(upstream = %destination, error = %e, "upstream unavailable");
                    return;
                }
            };
            let Ok((sender, conn)) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(remote)).await
            else {
                return;
            };
            tokio::spawn(conn);
            let sender = Arc::new(tokio::sync::Mutex::new(sender));
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (sender, header, source) = (sender.clone(), header.clone(), source.clone());
                let destination = destination.clone();
                async move {
                    match source.token().await {
                        Ok(v) => {
                            req.headers_mut().insert(header, v);
                        }
                        Err(e) => {
                            tracing::warn!(upstream = %destination, error = %e, "no JWT-SVID for the upstream");
                            return Ok::<_, hyper::Error>(bad_gateway(format!(
                                "the sidecar could not get a JWT-SVID for {destination}: {e}"
                            )));
                        }
                    }
                    let mut s = sender.lock().await;
                    match s.send_request(req).await {
                        Ok(res) => Ok(res.map(http_body_util::Either::Left)),
                        Err(e) => Ok(bad_gateway(format!("upstream {destination}: {e}"))),
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(app), service)
                .await;
        });
    }
}
