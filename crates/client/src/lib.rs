//! A small HTTP client for Tribune's (Consul-compatible) API, used by the CLI and the
//! sidecar. HTTP/1.1 over hyper, plain or TLS (`https://` addresses, with
//! [`TlsOptions`]: Consul's `-ca-file`, `-client-cert`, `-client-key`,
//! `-tls-server-name`); the token goes in `X-Consul-Token`.
//!
//! The address may list several agents (`A,B,C`): requests go to one of them, and a
//! request that can't be made (connection refused, reset) or that the agent answers
//! with 503 is sent to the next one, each at most once per request, so callers see
//! one failure only when every agent failed. The agent that last answered stays the
//! one asked first.
//!
//! [`Client::multiplexed`] (the sidecar's) speaks HTTP/2 where the agent does: by
//! ALPN on `https://`, with prior knowledge on `http://`, so that its several
//! blocking queries are streams of one connection (issue #40). An agent that does not
//! speak HTTP/2 (an older Tribune during a rolling upgrade) is asked again over
//! HTTP/1.1, which it keeps for that agent. Clones share the connections.

#![forbid(unsafe_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the agent is and which token to present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// `host:port`, `http://host:port` or `https://host:port`; several,
    /// comma-separated, for failover.
    pub addr: String,
    pub token: Option<String>,
    /// How `https://` agents are verified, and the certificate shown to them.
    pub tls: TlsOptions,
}

/// TLS to the agent, as Consul's CLI takes it (`-ca-file`, `-ca-path`,
/// `-client-cert`, `-client-key`, `-tls-server-name`). Without a CA the system's
/// roots are trusted. There is no switch to skip verification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// PEM file of the CA certificate(s) the agent's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// A directory of PEM CA certificates (every file in it).
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate (chain) shown to an agent with `verify_incoming`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// The name the agent's certificate must carry, instead of the address's host.
    pub server_name: Option<String>,
}

/// A response: status, headers (lower-case names) and body text.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The request could not be made (connection refused, bad address, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError(pub String);

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

type Http = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What a plain (`http://`) agent is known to speak, for a multiplexed client.
const UNTRIED: u8 = 0;
const SPEAKS_H2: u8 = 1;
const HTTP1_ONLY: u8 = 2;

#[derive(Clone)]
pub struct Client {
    bases: Arc<[String]>,
    /// The agent asked first (the last one that answered).
    current: Arc<AtomicUsize>,
    token: Option<String>,
    /// HTTP/1.1, or on `https://` what ALPN chose.
    http: Http,
    /// HTTP/2 with prior knowledge, for `http://` agents (multiplexed clients only).
    h2c: Option<Http>,
    /// Per agent address: [`UNTRIED`], [`SPEAKS_H2`] or [`HTTP1_ONLY`].
    plain_h2: Arc<[AtomicU8]>,
}

fn base_url(addr: &str) -> Result<String, ClientError> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        return Err(ClientError("empty agent address".into()));
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        Ok(addr.to_string())
    } else if let Some((scheme, _)) = addr.split_once("://") {
        Err(ClientError(format!(
            "agent address {addr}: unsupported scheme {scheme:?} (use http:// or https://)"
        )))
    } else {
        Ok(format!("http://{addr}"))
    }
}

fn read(what: &str, path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError(format!("{what} {}: {e}", path.display())))
}

/// The PEM certificates of `pem` (`what` names the flag and file for errors).
fn certificates(
    what: &str,
    path: &std::path::Path,
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ClientError(format!(
                "{what} {}: not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ClientError(format!(
            "{what} {}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// The roots an agent's certificate must chain to: `-ca-file` and `-ca-path`, else
/// the system's.
fn roots(tls: &TlsOptions) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut add = |what: &str, path: &std::path::Path| -> Result<(), ClientError> {
        for c in certificates(what, path, &read(what, path)?)? {
            roots.add(c).map_err(|e| {
                ClientError(format!(
                    "{what} {}: unusable certificate: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(())
    };
    if let Some(f) = &tls.ca_file {
        add("-ca-file", f)?;
    }
    if let Some(dir) = &tls.ca_path {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| ClientError(format!("-ca-path {}: {e}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in &files {
            add("-ca-path", f)?;
        }
    }
    if tls.ca_file.is_none() && tls.ca_path.is_none() {
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
    }
    if roots.is_empty() {
        return Err(ClientError(
            "no CA certificate to verify the agent with: pass -ca-file".into(),
        ));
    }
    Ok(roots)
}

/// The TLS client configuration for `https://` agents.
fn tls_config(tls: &TlsOptions) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError(format!("TLS: {e}")))?
        .with_root_certificates(roots(tls)?);
    match (&tls.client_cert, &tls.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates("-client-cert", cert, &read("-client-cert", cert)?)?;
            let pem = read("-client-key", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                ClientError(format!(
                    "-client-key {}: not a PEM private key: {e}",
                    key.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                ClientError(format!(
                    "-client-cert {} and -client-key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })
        }
        (Some(_), None) => Err(ClientError("-client-cert needs -client-key".into())),
        (None, Some(_)) => Err(ClientError("-client-key needs -client-cert".into())),
    }
}

impl Client {
    /// A client speaking HTTP/1.1 (the CLI's: one request at a time).
    pub fn new(target: &Target) -> Result<Client, ClientError> {
        Client::build(target, false)
    }

    /// A client that speaks HTTP/2 where the agent does (module text): the
    /// sidecar's, whose blocking queries then share one connection.
    pub fn multiplexed(target: &Target) -> Result<Client, ClientError> {
        Client::build(target, true)
    }

    fn build(target: &Target, multiplexed: bool) -> Result<Client, ClientError> {
        let bases = target
            .addr
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(base_url)
            .collect::<Result<Vec<_>, _>>()?;
        if bases.is_empty() {
            return Err(ClientError("no agent address given".into()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // Requests go out as written (an HTTP/2 request is several small frames;
        // Nagle's algorithm would hold all but the first for the agent's delayed ACK).
        connector.set_nodelay(true);
        // HttpsConnector decides the scheme per address.
        connector.enforce_http(false);
        // Roots and client keys are read only when an address is https://.
        let tls = if bases.iter().any(|b| b.starts_with("https://")) {
            tls_config(&target.tls)?
        } else {
            plain_only()?
        };
        let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        if let Some(name) = &target.tls.server_name {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| ClientError(format!("-tls-server-name {name:?}: {e}")))?;
            builder =
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
        }
        let https = if multiplexed {
            builder.enable_all_versions().wrap_connector(connector)
        } else {
            builder.enable_http1().wrap_connector(connector)
        };
        let h2c = (multiplexed && bases.iter().any(|b| b.starts_with("http://"))).then(|| {
            HyperClient::builder(TokioExecutor::new())
                .http2_only(true)
                .build(https.clone())
        });
        let http = HyperClient::builder(TokioExecutor::new()).build(https);
        Ok(Client {
            plain_h2: bases.iter().map(|_| AtomicU8::new(UNTRIED)).collect(),
            bases: bases.into(),
            current: Arc::new(AtomicUsize::new(0)),
            token: target.token.clone().filter(|t| !t.is_empty()),
            http,
            h2c,
        })
    }

    /// The agent addresses, in the order given.
    pub fn agents(&self) -> &[String] {
        &self.bases
    }

    /// The agent that requests go to first (the last one that answered).
    pub fn current_agent(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Sends one request; `path` includes the query string. With several agents, a
    /// request that fails or gets 503 is tried on the next agent.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        // Bytes: each failover attempt shares the body instead of copying it.
        let body = body.map(Bytes::from);
        let start = self.current.load(Ordering::Relaxed);
        let n = self.bases.len();
        let mut last = None;
        for step in 0..n {
            let at = (start + step) % n;
            let result = self.request_at(at, method, path, body.clone()).await;
            let failed_over = match &result {
                Err(_) => true,
                Ok(r) => r.status == 503,
            };
            if !failed_over || step + 1 == n {
                if !failed_over {
                    self.current.store(at, Ordering::Relaxed);
                }
                return result;
            }
            last = Some(result);
        }
        last.unwrap_or_else(|| Err(ClientError("no agent address given".into())))
    }

    /// One request to agent `at`: over HTTP/2 with prior knowledge when this client
    /// multiplexes and the agent is not known to speak HTTP/1.1 only. A first HTTP/2
    /// attempt that gets no answer but did reach the agent (an agent without HTTP/2
    /// closes the connection at the preface, before reading any request) is made
    /// again over HTTP/1.1, which is then kept for that agent.
    async fn request_at(
        &self,
        at: usize,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, ClientError> {
        let base = &self.bases[at];
        let known = &self.plain_h2[at];
        if let Some(h2c) = self.h2c.as_ref().filter(|_| base.starts_with("http://")) {
            let state = known.load(Ordering::Relaxed);
            if state != HTTP1_ONLY {
                match self
                    .request_one(h2c, base, method, path, body.clone())
                    .await
                {
                    Ok(r) => {
                        known.store(SPEAKS_H2, Ordering::Relaxed);
                        return Ok(r);
                    }
                    Err((_, true)) if state == UNTRIED => {
                        let r = self.request_one(&self.http, base, method, path, body).await;
                        if r.is_ok() {
                            known.store(HTTP1_ONLY, Ordering::Relaxed);
                        }
                        return r.map_err(|(e, _)| e);
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        self.request_one(&self.http, base, method, path, body)
            .await
            .map_err(|(e, _)| e)
    }

    /// One request on `http`; an error says whether the agent was reached (a
    /// connection was made).
    async fn request_one(
        &self,
        http: &Http,
        base: &str,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, (ClientError, bool)> {
        let uri = format!("{base}{path}");
        let mut req = Request::builder().method(method).uri(&uri);
        if let Some(t) = &self.token {
            req = req.header("x-consul-token", t);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| (ClientError(format!("invalid request {uri}: {e}")), false))?;
        let res = http.request(req).await.map_err(|e| {
            (
                ClientError(format!("{method} {uri}: {}", error_chain(&e))),
                !e.is_connect(),
            )
        })?;
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| (ClientError(format!("reading response of {uri}: {e}")), true))?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// A TLS configuration that is never used (every address is `http://`).
fn plain_only() -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError(format!("TLS: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Percent-encodes a query-string value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
