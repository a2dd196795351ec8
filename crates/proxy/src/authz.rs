//! `tribune connect authz` (issue #44): decisions for the proxies users already run,
//! made by the sidecar's engine ([`crate::http::check`]) for one or more destination
//! services, each kept current from the agent like a sidecar's policy.
//!
//! ```text
//!  GET /nginx          X-Original-Method, X-Original-URI       nginx auth_request
//!  GET /forward-auth   X-Forwarded-Method, X-Forwarded-Uri     Traefik forwardAuth, Caddy forward_auth
//!  ANY /envoy/<path>   the method, path and query after /envoy  Envoy ext_authz (HTTP)
//!        │ destination: X-Tribune-Destination, else the one -service
//!        │ caller: the service of X-Forwarded-Client-Cert's URI, only from a hop in
//!        │         -trust-forwarded-from and only in the mesh's trust domain; else
//!        │         outside the mesh (matches `*` sources, as on the edge listener)
//!        ▼
//!  the sidecar's phases ──▶ 200 + headers to copy (X-Tribune-Remove-Headers: tokens not
//!                            forwarded), or the sidecar's 401/403 (nginx: any other
//!                            status becomes 403, which auth_request can pass on)
//! ```
//!
//! The headers that steer a check are taken out of what the engine sees, so an
//! intention never matches on them, and a client cannot set them to gain an identity.

use crate::upstream::ProxyBody;
use crate::Proxy;
use http_body_util::Either;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A network a trusted hop is in (`-trust-forwarded-from 10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Which form a check came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Nginx,
    ForwardAuth,
    Envoy,
}

/// The decision service.
pub struct Authz {
    /// Each destination's engine (a sidecar's `Proxy`, fed by its own agent watch).
    pub services: BTreeMap<String, Arc<Proxy>>,
    /// Hops whose `X-Forwarded-Client-Cert` is believed.
    pub trusted: Vec<Cidr>,
    /// The mesh's trust domain (a caller's identity must be in it).
    pub trust_domain: String,
    /// The proxies in front normalize paths as the engine does (`-proxy-normalizes-paths`).
    pub normalized: bool,
}

const DESTINATION: &str = "x-tribune-destination";
const XFCC: &str = "x-forwarded-client-cert";
/// What steers a check, never seen by the engine.
const CONTROL: [&str; 6] = [
    "x-original-uri",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-method",
    DESTINATION,
    XFCC,
];

fn answer(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(http_body_util::Full::new(Bytes::from(text))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    r
}

/// The SPIFFE service of an XFCC value's `URI=` element, in `trust_domain`.
fn xfcc_service(value: &str, trust_domain: &str) -> Option<String> {
    // The last element is the hop nearest this service (Envoy appends).
    let element = value.rsplit(',').next()?;
    let uri = element.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("uri")
            .then(|| v.trim().trim_matches('"').to_string())
    })?;
    let id = tribune_ca::ServiceId::parse(&uri)?;
    (id.trust_domain == trust_domain.to_ascii_lowercase()).then_some(id.service)
}

impl Authz {
    /// One check.
    pub async fn handle(
        self: Arc<Self>,
        peer: IpAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, std::convert::Infallible> {
        let path = req.uri().path().to_string();
        let form = if path == "/nginx" {
            Form::Nginx
        } else if path == "/forward-auth" {
            Form::ForwardAuth
        } else if path == "/envoy" || path.starts_with("/envoy/") {
            Form::Envoy
        } else {
            return Ok(answer(
                StatusCode::NOT_FOUND,
                "no such check: use /nginx, /forward-auth or /envoy/<path>\n".into(),
            ));
        };
        let resp = match self.check(form, peer, req).await {
            Ok(r) => r,
            Err(why) => answer(StatusCode::BAD_REQUEST, format!("{why}\n")),
        };
        let status = resp.status();
        if form == Form::Nginx && !status.is_success() && !matches!(status.as_u16(), 401 | 403) {
            // auth_request passes 2xx, 401 and 403 on; anything else would be its 500.
            let mut r = answer(StatusCode::FORBIDDEN, String::new());
            if let Ok(v) = HeaderValue::from_str(status.as_str()) {
                r.headers_mut()
                    .insert(HeaderName::from_static("x-tribune-status"), v);
            }
            return Ok(r);
        }
        Ok(resp)
    }

    /// The check's request as the engine sees it, and its answer; `Err` names what is
    /// missing or wrong in the check itself.
    async fn check(
        &self,
        form: Form,
        peer: IpAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, String> {
        let (parts, _) = req.into_parts();
        let h = &parts.headers;
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (method, uri) = match form {
            Form::Nginx => (
                text("x-original-method").ok_or("X-Original-Method is missing (proxy_set_header X-Original-Method $request_method;)")?,
                text("x-original-uri").ok_or("X-Original-URI is missing (proxy_set_header X-Original-URI $request_uri;)")?,
            ),
            Form::ForwardAuth => (
                text("x-forwarded-method").ok_or("X-Forwarded-Method is missing")?,
                text("x-forwarded-uri").ok_or("X-Forwarded-Uri is missing")?,
            ),
            Form::Envoy => {
                let rest = parts
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str())
                    .unwrap_or("/envoy")
                    .strip_prefix("/envoy")
                    .unwrap_or("");
                let rest = if rest.is_empty() || rest.starts_with('?') {
                    format!("/{rest}")
                } else {
                    rest.to_string()
                };
                (parts.method.as_str().to_string(), rest)
            }
        };
        let destination = match text(DESTINATION) {
            Some(d) => d,
            None if self.services.len() == 1 => {
                self.services.keys().next().cloned().unwrap_or_default()
            }
            None => {
                return Err(format!(
                    "no destination: set X-Tribune-Destination to one of {}",
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        let Some(proxy) = self.services.get(&destination) else {
            return Err(format!(
                "destination {destination:?} is not served here (-service {})",
                self.services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", -service ")
            ));
        };
        // The caller: from a trusted hop's XFCC only, in this mesh only.
        let caller = if self.trusted.iter().any(|c| c.contains(peer)) {
            text(XFCC)
                .and_then(|v| xfcc_service(&v, &self.trust_domain))
                .map(Arc::<str>::from)
        } else {
            None
        };
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("{method:?} is not an HTTP method"))?;
        let uri: hyper::Uri = uri
            .parse()
            .map_err(|_| format!("{uri:?} is not a request target"))?;
        if uri.scheme().is_some() || !uri.path().starts_with('/') {
            return Err(format!(
                "{uri} is not an origin-form request target (/path?query)"
            ));
        }
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map_err(|e| e.to_string())?;
        for (name, value) in h {
            if !CONTROL.contains(&name.as_str()) {
                request.headers_mut().append(name.clone(), value.clone());
            }
        }
        let (engine_parts, ()) = request.into_parts();
        Ok(crate::http::check(proxy, caller, engine_parts, self.normalized).await)
    }
}

/// Serves checks on `listener` (HTTP/1.1), until the process ends.
pub async fn serve(authz: Arc<Authz>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let authz = authz.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| authz.clone().handle(peer_ip(peer), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn peer_ip(peer: SocketAddr) -> IpAddr {
    peer.ip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_their_networks_only() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }

    #[test]
    fn xfcc_names_a_service_of_this_mesh_only() {
        let td = "11111111-2222-3333-4444-555555555555.consul";
        let v = format!("By=spiffe://{td}/ns/default/dc/dc1/svc/api;Hash=ab;URI=spiffe://{td}/ns/default/dc/dc1/svc/web");
        assert_eq!(xfcc_service(&v, td).as_deref(), Some("web"));
        assert_eq!(
            xfcc_service("URI=spiffe://evil.example/ns/default/dc/dc1/svc/web", td),
            None
        );
        assert_eq!(xfcc_service("Hash=ab", td), None);
        // Two hops: the last element is the nearest.
        let two = format!("URI=spiffe://{td}/ns/default/dc/dc1/svc/admin,URI=spiffe://{td}/ns/default/dc/dc1/svc/web");
        assert_eq!(xfcc_service(&two, td).as_deref(), Some("web"));
    }
}
