//! A small HTTP client for Tribune's (Consul-compatible) API, used by the CLI and the
//! sidecar. Plain HTTP/1.1 over hyper; the token goes in `X-Consul-Token`.
//!
//! The address may list several agents (`A,B,C`): requests go to one of them, and a
//! request that can't be made (connection refused, reset) or that the agent answers
//! with 503 is sent to the next one, each at most once per request, so callers see
//! one failure only when every agent failed. The agent that last answered stays the
//! one asked first.

#![forbid(unsafe_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where the agent is and which token to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` or `http://host:port`; several, comma-separated, for failover.
    pub addr: String,
    pub token: Option<String>,
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

pub struct Client {
    bases: Vec<String>,
    /// The agent asked first (the last one that answered).
    current: AtomicUsize,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

fn base_url(addr: &str) -> Result<String, ClientError> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        return Err(ClientError("empty agent address".into()));
    }
    if addr.starts_with("http://") {
        Ok(addr.to_string())
    } else if addr.starts_with("https://") {
        Err(ClientError(
            "https agent addresses are not supported yet; use http://".into(),
        ))
    } else {
        Ok(format!("http://{addr}"))
    }
}

impl Client {
    pub fn new(target: &Target) -> Result<Client, ClientError> {
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
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Client {
            bases,
            current: AtomicUsize::new(0),
            token: target.token.clone().filter(|t| !t.is_empty()),
            http,
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
            let result = self
                .request_one(&self.bases[at], method, path, body.clone())
                .await;
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

    async fn request_one(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, ClientError> {
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
            .map_err(|e| ClientError(format!("invalid request {uri}: {e}")))?;
        let res = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError(format!("{method} {uri}: {}", error_chain(&e))))?;
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
            .map_err(|e| ClientError(format!("reading response of {uri}: {e}")))?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
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
