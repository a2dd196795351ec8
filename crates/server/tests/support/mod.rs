//! Shared helpers of the server's router tests: an API in process (no sockets, each
//! request through `oneshot`), replies, tokens with given rules.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use tribune_server::{router, AgentConfig, AppState, Shared};
use tribune_store::RedbStore;

pub struct Api {
    pub state: Shared,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The `Name` of every entry in a list reply.
    pub fn names(&self) -> Vec<String> {
        self.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Api {
    pub async fn new(config: AgentConfig) -> Self {
        let store = Arc::new(RedbStore::in_memory().unwrap());
        Api {
            state: AppState::new(store, config).await.unwrap(),
        }
    }

    pub async fn dev() -> Self {
        Api::new(AgentConfig::default()).await
    }

    pub async fn with_acls() -> Self {
        let mut c = AgentConfig::default();
        c.acl.enabled = true;
        c.acl.default_policy = "deny".into();
        c.acl.initial_management = Some("root-secret".into());
        Api::new(c).await
    }

    pub async fn call(&self, method: &str, uri: &str, token: Option<&str>, body: &str) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("x-consul-token", t);
        }
        let res = router(self.state.clone())
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn put(&self, body: &str) -> Reply {
        self.call("PUT", "/v1/config", None, body).await
    }

    /// `POST /v1/connect/intentions/explain` with `body`, anonymously.
    pub async fn explain(&self, body: &Value) -> Reply {
        self.call(
            "POST",
            "/v1/connect/intentions/explain",
            None,
            &body.to_string(),
        )
        .await
    }
}

/// A token holding one new policy with these rules; returns its SecretID.
pub async fn token_with(api: &Api, name: &str, rules: &str) -> String {
    let r = api
        .call(
            "PUT",
            "/v1/acl/policy",
            Some("root-secret"),
            &json!({"Name": name, "Rules": rules}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api
        .call(
            "PUT",
            "/v1/acl/token",
            Some("root-secret"),
            &json!({"Policies": [{"Name": name}]}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["SecretID"].as_str().unwrap().to_string()
}

/// Percent-encodes a filter expression for a query string.
pub fn enc(expr: &str) -> String {
    expr.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn register(api: &Api, body: Value) {
    let r = api
        .call(
            "PUT",
            "/v1/agent/service/register",
            Some("root-secret"),
            &body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The three redis instances of Consul's filtering docs, and web with a sidecar.
pub async fn docs_services(api: &Api) {
    for (id, port, tags, env) in [
        ("redis1", 1234, ["primary", "v1"], "prod"),
        ("redis2", 1235, ["secondary", "v1"], "prod"),
        ("redis3", 1236, ["primary", "v2"], "qa"),
    ] {
        register(
            api,
            json!({"ID": id, "Name": "redis", "Port": port, "Tags": tags, "Meta": {"env": env}}),
        )
        .await;
    }
    register(
        api,
        json!({"Name": "web", "Port": 8080, "Tags": ["v1"], "Connect": {"SidecarService": {
            "Proxy": {"Upstreams": [{"DestinationName": "redis", "LocalBindPort": 6379}]}}}}),
    )
    .await;
}

/// A token signed HS256 with `secret` (the tests' providers take inline `oct` keys).
pub fn hs256(secret: &[u8], payload: Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let input = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"HS256"}"#),
        B64.encode(payload.to_string())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
        input.as_bytes(),
    );
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

/// A plain-HTTP server on 127.0.0.1:0 answering `GET <path>` with a JSON body from
/// `routes` (404 otherwise); returns its address. For key sets and discovery
/// documents an agent fetches.
pub async fn serve_json(routes: Vec<(String, String)>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let reply = match routes.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
                };
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
