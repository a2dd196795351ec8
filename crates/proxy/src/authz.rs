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
    /// The mesh's trust domain (a caller's identity must be in it); empty until known
    /// (an agent answered, or a saved state said): no identity is believed then.
    pub trust_domain: std::sync::RwLock<String>,
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
    xfcc_principal(&uri, trust_domain)
}

/// The service of a SPIFFE URI in `trust_domain` (Envoy's `source.principal`).
fn xfcc_principal(uri: &str, trust_domain: &str) -> Option<String> {
    if trust_domain.is_empty() {
        return None;
    }
    let id = tribune_ca::ServiceId::parse(uri.trim())?;
    (id.trust_domain == trust_domain.to_ascii_lowercase()).then_some(id.service)
}

impl Authz {
    /// The checks' service for `services`; each destination's admin listener
    /// exports `tribune_authz_checks_total` from now on.
    pub fn new(
        services: BTreeMap<String, Arc<Proxy>>,
        trusted: Vec<Cidr>,
        trust_domain: String,
        normalized: bool,
    ) -> Self {
        for proxy in services.values() {
            proxy
                .metrics
                .counters
                .serves_checks
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Authz {
            services,
            trusted,
            trust_domain: std::sync::RwLock::new(trust_domain),
            normalized,
        }
    }

    /// The mesh's trust domain as known now ("" before it is).
    pub fn trust_domain(&self) -> String {
        self.trust_domain
            .read()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Sets the trust domain (once an agent answers).
    pub fn set_trust_domain(&self, td: &str) {
        if let Ok(mut t) = self.trust_domain.write() {
            *t = td.to_string();
        }
    }

    /// The destination a check names (or the one served), or why there is none.
    fn destination(&self, named: Option<String>) -> Result<String, String> {
        let list = || self.services.keys().cloned().collect::<Vec<_>>();
        let d = match named {
            Some(d) => d,
            None if self.services.len() == 1 => list().remove(0),
            None => {
                return Err(format!(
                    "no destination: set X-Tribune-Destination (gRPC: the context extension tribune_destination) to one of {}",
                    list().join(", ")
                ))
            }
        };
        if !self.services.contains_key(&d) {
            return Err(format!(
                "destination {d:?} is not served here (-service {})",
                list().join(", -service ")
            ));
        }
        Ok(d)
    }

    /// One check.
    pub async fn handle(
        self: Arc<Self>,
        peer: IpAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, std::convert::Infallible> {
        let path = req.uri().path().to_string();
        // `/nginx/<service>` and `/forward-auth/<service>` name the destination in the
        // proxy's own configuration (Traefik can set no header of its own).
        let (form, in_path) = match path.split_once('/').map(|(_, p)| p.split_once('/').unwrap_or((p, ""))) {
            Some(("nginx", d)) => (Form::Nginx, d),
            Some(("forward-auth", d)) => (Form::ForwardAuth, d),
            Some(("envoy", _)) => (Form::Envoy, ""),
            _ => {
                return Ok(answer(
                    StatusCode::NOT_FOUND,
                    "no such check: use /nginx[/<service>], /forward-auth[/<service>] or /envoy/<path>\n".into(),
                ))
            }
        };
        let in_path = (!in_path.is_empty()).then(|| in_path.to_string());
        let resp = match self.check(form, in_path, peer, req).await {
            Ok(r) => r,
            Err(why) => answer(StatusCode::BAD_REQUEST, format!("{why}\n")),
        };
        let mut resp = resp;
        if form == Form::Envoy {
            // Envoy's HTTP ext_authz removes the headers an allowed check lists here.
            if let Some(v) = resp.headers().get("x-tribune-remove-headers").cloned() {
                resp.headers_mut()
                    .insert(HeaderName::from_static("x-envoy-auth-headers-to-remove"), v);
            }
        }
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
    /// missing or wrong in the check itself (counted as `bad_check` once the
    /// destination is known).
    async fn check(
        &self,
        form: Form,
        in_path: Option<String>,
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
        let destination = self.destination(in_path.or_else(|| text(DESTINATION)))?;
        let proxy = &self.services[&destination];
        let engine_parts = match engine_request(form, &parts) {
            Ok(p) => p,
            Err(why) => {
                let bad = crate::metrics::CheckEnd::Error(crate::metrics::CheckError::BadCheck);
                proxy.metrics.counters.check(bad);
                return Err(why);
            }
        };
        // The caller: from a trusted hop's XFCC only, in this mesh only.
        let caller = if self.trusted.iter().any(|c| c.contains(peer)) {
            text(XFCC)
                .and_then(|v| xfcc_service(&v, &self.trust_domain()))
                .map(Arc::<str>::from)
        } else {
            None
        };
        Ok(crate::http::check(proxy, caller, engine_parts, self.normalized).await)
    }
}

/// The request the proxy in front received, rebuilt from an HTTP check (its method,
/// target and headers, without the ones that steer the check).
fn engine_request(
    form: Form,
    parts: &hyper::http::request::Parts,
) -> Result<hyper::http::request::Parts, String> {
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
    Ok(engine_parts)
}

/// TLS for the check listeners (`-tls-cert`, `-tls-key`): with `client_ca_pem`
/// (`-tls-client-ca`), a proxy must present a certificate of that CA (a mesh leaf
/// works) or the handshake fails. `alpn`: `h2` for gRPC, `http/1.1` for the HTTP forms.
pub fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    alpn: &[u8],
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let chain = tribune_ca::certs_from_pem(cert_pem).map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("-tls-cert: no certificate in the file".into());
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("-tls-key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in tribune_ca::certs_from_pem(pem).map_err(|e| format!("-tls-client-ca: {e}"))? {
                roots.add(c).map_err(|e| format!("-tls-client-ca: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("-tls-client-ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("-tls-cert: {e}"))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

use maybe_tls::MaybeTls;

/// A check connection, in TLS or plain.
mod maybe_tls {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    /// A plain or TLS stream.
    pub enum MaybeTls {
        Plain(TcpStream),
        Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    }

    impl AsyncRead for MaybeTls {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
                MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            }
        }
    }

    impl AsyncWrite for MaybeTls {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            match self.get_mut() {
                MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
                MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            }
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
                MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            }
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
                MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            }
        }
    }
}

/// An accepted connection, in TLS when the listener has it (the handshake bounded:
/// 10 s).
pub(crate) async fn accept_tls(
    stream: tokio::net::TcpStream,
    tls: &Option<Arc<rustls::ServerConfig>>,
) -> Option<MaybeTls> {
    let _ = stream.set_nodelay(true);
    let Some(config) = tls else {
        return Some(MaybeTls::Plain(stream));
    };
    let accept = tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream);
    match tokio::time::timeout(std::time::Duration::from_secs(10), accept).await {
        Ok(Ok(s)) => Some(MaybeTls::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "authz TLS handshake refused");
            None
        }
        Err(_) => None,
    }
}

/// Serves checks on `listener` (HTTP/1.1, in TLS with `tls`), until the process ends.
pub async fn serve(
    authz: Arc<Authz>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let (authz, tls) = (authz.clone(), tls.clone());
        tokio::spawn(async move {
            let Some(stream) = accept_tls(stream, &tls).await else {
                return;
            };
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

/// Envoy's external authorization gRPC API v3
/// (`envoy.service.auth.v3.Authorization/Check`), over h2c: the same check as the
/// HTTP forms, read from a `CheckRequest` and answered as a `CheckResponse`.
pub mod envoy_grpc {
    use super::{xfcc_principal, Authz};
    use crate::grpc::{pb, read_message, refused, unary, Code, Status, Stream};
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use std::net::IpAddr;
    use std::sync::Arc;

    const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";
    /// The context extension that names the destination.
    pub const DESTINATION_EXTENSION: &str = "tribune_destination";

    fn text(v: &[u8]) -> Result<String, Status> {
        String::from_utf8(v.to_vec())
            .map_err(|_| Status(Code::InvalidArgument, "a field is not UTF-8".into()))
    }

    fn invalid(e: String) -> Status {
        Status(
            Code::InvalidArgument,
            format!("malformed CheckRequest: {e}"),
        )
    }

    /// What a check needs of a `CheckRequest`.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Checked {
        pub principal: String,
        pub method: String,
        pub path: String,
        pub host: String,
        pub headers: Vec<(String, String)>,
        pub extensions: Vec<(String, String)>,
    }

    fn map_entry(v: &[u8]) -> Result<(String, String), Status> {
        let (mut k, mut val) = (String::new(), String::new());
        for (n, f) in pb::fields(v).map_err(invalid)? {
            match n {
                1 => k = text(f)?,
                2 => val = text(f)?,
                _ => {}
            }
        }
        Ok((k, val))
    }

    /// Reads `CheckRequest.attributes` (source.principal; request.http: method,
    /// headers or header_map, path, host; context_extensions).
    pub fn decode(msg: &[u8]) -> Result<Checked, Status> {
        let mut c = Checked::default();
        for (n, attrs) in pb::fields(msg).map_err(invalid)? {
            if n != 1 {
                continue;
            }
            for (n, f) in pb::fields(attrs).map_err(invalid)? {
                match n {
                    // source: Peer { principal = 4 }
                    1 => {
                        for (pn, pv) in pb::fields(f).map_err(invalid)? {
                            if pn == 4 {
                                c.principal = text(pv)?;
                            }
                        }
                    }
                    // request: Request { http = 2 }
                    4 => {
                        for (rn, rv) in pb::fields(f).map_err(invalid)? {
                            if rn != 2 {
                                continue;
                            }
                            for (hn, hv) in pb::fields(rv).map_err(invalid)? {
                                match hn {
                                    2 => c.method = text(hv)?,
                                    3 => c.headers.push(map_entry(hv)?),
                                    4 => c.path = text(hv)?,
                                    5 => c.host = text(hv)?,
                                    // header_map: HeaderMap { headers = 1: HeaderValue { key 1, value 2, raw_value 3 } }
                                    13 => {
                                        for (mn, mv) in pb::fields(hv).map_err(invalid)? {
                                            if mn != 1 {
                                                continue;
                                            }
                                            let (mut k, mut v) = (String::new(), String::new());
                                            for (fnum, fv) in pb::fields(mv).map_err(invalid)? {
                                                match fnum {
                                                    1 => k = text(fv)?,
                                                    2 | 3 => v = text(fv)?,
                                                    _ => {}
                                                }
                                            }
                                            c.headers.push((k, v));
                                        }
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    10 => c.extensions.push(map_entry(f)?),
                    _ => {}
                }
            }
        }
        if c.method.is_empty() || c.path.is_empty() {
            return Err(invalid(
                "attributes.request.http has no method or path".into(),
            ));
        }
        Ok(c)
    }

    /// `HeaderValueOption { header: HeaderValue { key, value }, append_action }`.
    fn header_option(out: &mut Vec<u8>, field: u32, key: &str, value: &str, overwrite: bool) {
        let mut hv = Vec::new();
        pb::bytes(&mut hv, 1, key.as_bytes());
        pb::bytes(&mut hv, 2, value.as_bytes());
        let mut opt = Vec::new();
        pb::bytes(&mut opt, 1, &hv);
        if overwrite {
            // OVERWRITE_IF_EXISTS_OR_ADD
            pb::uint(&mut opt, 3, 2);
        }
        pb::bytes(out, field, &opt);
    }

    /// A `CheckResponse` for the engine's answer.
    pub fn encode(status: u16, headers: &hyper::HeaderMap, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rpc_status = Vec::new();
        if (200..300).contains(&status) {
            pb::uint(&mut rpc_status, 1, 0);
            pb::bytes(&mut out, 1, &rpc_status);
            let mut ok = Vec::new();
            for (name, value) in headers {
                if name == "x-tribune-remove-headers" {
                    for removed in value.to_str().unwrap_or("").split(',') {
                        let removed = removed.trim();
                        if !removed.is_empty() {
                            pb::bytes(&mut ok, 5, removed.as_bytes());
                        }
                    }
                } else if name != hyper::header::CONTENT_LENGTH {
                    header_option(
                        &mut ok,
                        2,
                        name.as_str(),
                        value.to_str().unwrap_or(""),
                        true,
                    );
                }
            }
            pb::bytes(&mut out, 3, &ok);
        } else {
            // UNAUTHENTICATED for 401, PERMISSION_DENIED otherwise.
            pb::uint(&mut rpc_status, 1, if status == 401 { 16 } else { 7 });
            pb::bytes(&mut out, 1, &rpc_status);
            let mut denied = Vec::new();
            let mut http_status = Vec::new();
            pb::uint(&mut http_status, 1, u64::from(status));
            pb::bytes(&mut denied, 1, &http_status);
            for (name, value) in headers {
                if name != hyper::header::CONTENT_LENGTH {
                    header_option(
                        &mut denied,
                        2,
                        name.as_str(),
                        value.to_str().unwrap_or(""),
                        false,
                    );
                }
            }
            pb::bytes(&mut denied, 3, body);
            pb::bytes(&mut out, 2, &denied);
        }
        out
    }

    /// The request Envoy received, rebuilt from a `CheckRequest`.
    fn engine_request(c: &Checked) -> Result<hyper::http::request::Parts, Status> {
        let method = hyper::Method::from_bytes(c.method.as_bytes())
            .map_err(|_| invalid(format!("{:?} is not an HTTP method", c.method)))?;
        let uri: hyper::Uri = c
            .path
            .parse()
            .map_err(|_| invalid(format!("{:?} is not a request target", c.path)))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map_err(|e| invalid(e.to_string()))?;
        for (k, v) in &c.headers {
            // Envoy's pseudo-headers are in the fields above.
            if k.starts_with(':') || super::CONTROL.contains(&k.to_ascii_lowercase().as_str()) {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(v),
            ) {
                request.headers_mut().append(name, value);
            }
        }
        if !c.host.is_empty() && !request.headers().contains_key(hyper::header::HOST) {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&c.host) {
                request.headers_mut().insert(hyper::header::HOST, v);
            }
        }
        let (parts, ()) = request.into_parts();
        Ok(parts)
    }

    impl Authz {
        /// One `Check` call: `msg` is the `CheckRequest`, `metadata` the call's
        /// `x-tribune-destination` (Envoy's `initial_metadata`); the answer is the
        /// `CheckResponse`, or the call's error.
        pub async fn grpc_check(
            &self,
            peer: IpAddr,
            metadata: Option<String>,
            msg: &[u8],
        ) -> Result<Vec<u8>, Status> {
            let c = decode(msg)?;
            // Named by Envoy's configuration only: the route's context extension,
            // else the call's metadata (`initial_metadata`; Consul's `builtin/ext-authz`
            // `InitialMetadata`). Never the checked request's own headers: those are
            // the client's, and a client must not pick the policy it is checked by.
            let named = c
                .extensions
                .iter()
                .find(|(k, _)| k == DESTINATION_EXTENSION)
                .map(|(_, v)| v.clone())
                .or(metadata);
            let destination = self
                .destination(named)
                .map_err(|e| Status(Code::InvalidArgument, e))?;
            let proxy = &self.services[&destination];
            // The peer as Envoy saw it, believed from a trusted hop only.
            let caller = if self.trusted.iter().any(|n| n.contains(peer)) {
                xfcc_principal(&c.principal, &self.trust_domain()).map(Arc::<str>::from)
            } else {
                None
            };
            let parts = match engine_request(&c) {
                Ok(p) => p,
                Err(e) => {
                    let bad = crate::metrics::CheckEnd::Error(crate::metrics::CheckError::BadCheck);
                    proxy.metrics.counters.check(bad);
                    return Err(e);
                }
            };
            let resp = crate::http::check(proxy, caller, parts, self.normalized).await;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            Ok(encode(status, &headers, &body))
        }
    }

    async fn handle(
        authz: Arc<Authz>,
        peer: IpAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Stream>, std::convert::Infallible> {
        if req.uri().path() != CHECK {
            return Ok(refused(Status(
                Code::Unimplemented,
                format!("unknown method {:?}", req.uri().path()),
            )));
        }
        let metadata = req
            .headers()
            .get(super::DESTINATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let msg = match read_message(req.into_body()).await {
            Ok(m) => m,
            Err(s) => return Ok(refused(s)),
        };
        Ok(match authz.grpc_check(peer, metadata, &msg).await {
            Ok(m) => unary(m),
            Err(s) => refused(s),
        })
    }

    /// Serves `Check` on `listener` (h2c, or HTTP/2 in TLS with `tls`), until the
    /// process ends.
    pub async fn serve(
        authz: Arc<Authz>,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let (authz, tls) = (authz.clone(), tls.clone());
            tokio::spawn(async move {
                let Some(stream) = super::accept_tls(stream, &tls).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req| handle(authz.clone(), peer.ip(), req));
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    }
}
