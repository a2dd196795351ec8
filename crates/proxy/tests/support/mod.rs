//! Test support: an ES256 signer, an echo upstream, snapshot documents, a client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tribune_client::{Client as AgentClient, Target};
use tribune_proxy::mesh::{serve_mesh, serve_upstream, Endpoints, MeshTls};
use tribune_proxy::sidecar::{registration, watch_endpoints, IdentityWatch};
use tribune_proxy::{AccessRecord, Proxy, ProxyConfig, SnapshotDoc};

pub struct Es256 {
    pair: EcdsaKeyPair,
    pub kid: String,
}

impl Es256 {
    pub fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Es256 {
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .unwrap(),
            kid: kid.into(),
        }
    }

    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// Base64 (standard) of a JWKS with these keys, for `Local.JWKS`.
pub fn inline_jwks(keys: &[&Es256]) -> String {
    STANDARD.encode(json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string())
}

/// An upstream that answers every request with what it received, as JSON.
pub struct Echo {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub last: Arc<Mutex<Option<Value>>>,
}

pub async fn echo() -> Echo {
    let hits = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(None));
    let (h, l) = (hits.clone(), last.clone());
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (h, l) = (h.clone(), l.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
                .collect();
            let seen = json!({
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "query": req.uri().query(),
                "headers": headers,
            });
            *l.lock().unwrap() = Some(seen.clone());
            axum::Json(seen)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Echo { addr, hits, last }
}

pub fn doc(service: &str, protocol: &str, default: &str, entries: Vec<Value>) -> SnapshotDoc {
    SnapshotDoc::from_json(&json!({
        "Service": service, "Protocol": protocol, "DefaultIntentionPolicy": default,
        "Entries": entries,
    }))
    .unwrap()
}

pub type Records = Arc<Mutex<Vec<AccessRecord<'static>>>>;

/// A proxy in front of `upstream` with its edge listener on port 0; the clock is
/// fixed at `now`; access records are collected.
pub async fn proxy(upstream: SocketAddr, now: i64) -> (Arc<Proxy>, SocketAddr, Records) {
    proxy_with(upstream, now, |_| {}).await
}

/// [`proxy`] with its configuration changed by `change` first.
pub async fn proxy_with(
    upstream: SocketAddr,
    now: i64,
    change: impl FnOnce(&mut ProxyConfig),
) -> (Arc<Proxy>, SocketAddr, Records) {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let r = records.clone();
    let mut config = ProxyConfig::new(upstream);
    config.clock = Arc::new(move || now);
    config.access_sink = Some(Arc::new(move |rec: &AccessRecord<'_>| {
        r.lock().unwrap().push(rec.clone().into_owned())
    }));
    change(&mut config);
    let proxy = Proxy::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tribune_proxy::serve::serve_edge(proxy.clone(), listener));
    (proxy, addr, records)
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn send(
    c: &Client<HttpConnector, Empty<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(b.body(Empty::new()).unwrap()),
    )
    .await
    .map_err(|_| "timeout".to_string())?
    .map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An agent on its own runtime and thread, so stopping it closes every connection.
pub struct Agent {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn start_agent(store: Arc<dyn tribune_store::Store>, addr: SocketAddr) -> (Agent, SocketAddr) {
    start_agent_with(store, addr, Default::default())
}

/// [`start_agent`] with an agent configuration (ACLs on, say).
pub fn start_agent_with(
    store: Arc<dyn tribune_store::Store>,
    addr: SocketAddr,
    config: tribune_server::agent_config::AgentConfig,
) -> (Agent, SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (atx, arx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let state = tribune_server::AppState::new(store, config).await.unwrap();
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            // As the agent does once bound: its address is what it advertises (the
            // issuer of its JWT-SVIDs among others).
            state.set_advertise(listener.local_addr().unwrap());
            atx.send(listener.local_addr().unwrap()).unwrap();
            tokio::spawn(async move {
                axum::serve(listener, tribune_server::router(state))
                    .await
                    .unwrap()
            });
            tokio::task::spawn_blocking(move || rx.recv())
                .await
                .unwrap()
                .ok();
        });
        rt.shutdown_timeout(Duration::from_millis(100));
    });
    let bound = arx.recv().unwrap();
    (
        Agent {
            stop: Some(tx),
            thread: Some(thread),
        },
        bound,
    )
}

impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn put(client: &tribune_client::Client, path: &str, body: Value) {
    let r = client
        .request("PUT", path, Some(body.to_string().into_bytes()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
}

/// Sends one request through the sidecar's request path over an in-memory stream
/// (`serve_stream`, caller identity as given), and returns its status.
pub async fn through_stream(
    proxy: &Arc<Proxy>,
    caller: Option<&str>,
    req: hyper::Request<Empty<Bytes>>,
) -> u16 {
    let (client, server) = tokio::io::duplex(1 << 16);
    let served = tokio::spawn(tribune_proxy::serve::serve_stream(
        proxy.clone(),
        server,
        caller.map(Arc::from),
    ));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    drop(sender);
    let _ = served.await;
    status
}

pub fn agent_client(addr: SocketAddr) -> AgentClient {
    AgentClient::new(&Target {
        addr: addr.to_string(),
        token: None,
        ..Default::default()
    })
    .unwrap()
}

pub struct Sidecar {
    pub proxy: Arc<Proxy>,
    pub tls: Arc<MeshTls>,
    pub records: Records,
}

/// Starts a sidecar from its registration, like `tribune connect proxy -sidecar-for`.
pub async fn sidecar(agent: SocketAddr, id: &str) -> Sidecar {
    let reg = registration(&agent_client(agent), id).await.unwrap();
    let records: Records = Default::default();
    let r = records.clone();
    let mut config = ProxyConfig::new(reg.local_service);
    config.access_sink = Some(Arc::new(move |rec: &tribune_proxy::AccessRecord<'_>| {
        r.lock().unwrap().push(rec.clone().into_owned())
    }));
    let proxy = Proxy::new(config);
    tokio::spawn(tribune_proxy::watch::watch_agent(
        proxy.clone(),
        agent_client(agent),
        reg.service.clone(),
    ));
    let watch = IdentityWatch::start(agent_client(agent), &reg.service)
        .await
        .unwrap();
    let tls = watch.tls.clone();
    tokio::spawn(watch.run());
    let mesh = tokio::net::TcpListener::bind(reg.mesh_addr).await.unwrap();
    tokio::spawn(serve_mesh(proxy.clone(), tls.clone(), mesh));
    for (dest, bind) in reg.upstreams {
        let endpoints = Arc::new(Endpoints::default());
        tokio::spawn(watch_endpoints(
            agent_client(agent),
            dest.clone(),
            endpoints.clone(),
        ));
        let l = tokio::net::TcpListener::bind(bind).await.unwrap();
        match reg.identity_headers.get(&bind.to_string()) {
            Some(h) => {
                let source = tribune_proxy::outbound::SvidSource::new(
                    agent_client(agent),
                    &reg.service,
                    &dest,
                );
                tokio::spawn(tribune_proxy::outbound::serve_upstream_with_identity(
                    proxy.clone(),
                    tls.clone(),
                    dest,
                    endpoints,
                    l,
                    hyper::header::HeaderName::from_bytes(h.as_bytes()).unwrap(),
                    source,
                ));
            }
            None => {
                tokio::spawn(serve_upstream(
                    proxy.clone(),
                    tls.clone(),
                    dest,
                    endpoints,
                    l,
                ));
            }
        }
    }
    Sidecar {
        proxy,
        tls,
        records,
    }
}

pub async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
