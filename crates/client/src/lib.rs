//! A small HTTP client for Tribune's (Consul-compatible) API, used by the CLI and,
//! later, the sidecar. Plain HTTP/1.1 over hyper; the token goes in `X-Consul-Token`.

#![forbid(unsafe_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::time::Duration;

/// Where the agent is and which token to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` or `http://host:port`.
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
    base: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(target: &Target) -> Result<Client, ClientError> {
        let addr = target.addr.trim_end_matches('/');
        let base = if addr.starts_with("http://") {
            addr.to_string()
        } else if addr.starts_with("https://") {
            return Err(ClientError(
                "https agent addresses are not supported yet; use http://".into(),
            ));
        } else {
            format!("http://{addr}")
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Client {
            base,
            token: target.token.clone().filter(|t| !t.is_empty()),
            http,
        })
    }

    /// Sends one request; `path` includes the query string.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let uri = format!("{}{}", self.base, path);
        let mut req = Request::builder().method(method).uri(&uri);
        if let Some(t) = &self.token {
            req = req.header("x-consul-token", t);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
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
