//! The seed's topology in process: an agent, `web` and `api` registered with sidecars;
//! `web`'s app calls its upstream port, its sidecar carries the call over mTLS to
//! `api`'s sidecar, which identifies the caller as `web` and enforces the intentions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tribune_proxy::mesh::{Endpoints, Identity, MeshTls};
use tribune_proxy::sidecar::registration;

/// One HTTP/1.1 request on a new connection (so every call is a new mTLS handshake).
fn call(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_calls_api_over_mtls_and_api_enforces_intentions_for_web() {
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (_agent, agent) = start_agent(store, "127.0.0.1:0".parse().unwrap());
    let c = agent_client(agent);
    let app = echo().await;
    let upstream_port = free_port();
    put(
        &c,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    put(&c, "/v1/config", json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Action": "allow"}]})).await;
    put(
        &c,
        "/v1/agent/service/register",
        json!({"Name": "api", "Port": app.addr.port(),
        "Connect": {"SidecarService": {"Port": free_port()}}}),
    )
    .await;
    put(&c, "/v1/agent/service/register", json!({"Name": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": upstream_port}]}}}})).await;

    let api = sidecar(agent, "api").await;
    let web = sidecar(agent, "web").await;
    let upstream: SocketAddr = format!("127.0.0.1:{upstream_port}").parse().unwrap();
    until("api's policy", Duration::from_secs(5), || api.proxy.ready()).await;

    let status = tokio::task::spawn_blocking(move || call(upstream, "/hello"))
        .await
        .unwrap();
    assert_eq!(status, Ok(200));
    {
        let recs = api.records.lock().unwrap();
        let last = recs.last().unwrap();
        assert_eq!(
            last.caller.as_deref(),
            Some("web"),
            "api's sidecar saw web's identity"
        );
        assert_eq!(last.intention.as_deref(), Some("web -> api (precedence 9)"));
    }
    assert_eq!(web.tls.identity().service, "web");

    // The next connection resumes the TLS session (no certificate checks or
    // signatures), and the caller is still web: the identity comes from the session.
    use tribune_proxy::metrics::ConnEvent;
    let counters = api.proxy.metrics.counters.clone();
    assert_eq!(counters.connections(ConnEvent::MeshHandshakeResumed), 0);
    let status = tokio::task::spawn_blocking(move || call(upstream, "/again"))
        .await
        .unwrap();
    assert_eq!(status, Ok(200));
    assert_eq!(counters.connections(ConnEvent::MeshHandshakeOk), 2);
    assert_eq!(counters.connections(ConnEvent::MeshHandshakeResumed), 1);
    {
        let recs = api.records.lock().unwrap();
        let last = recs.last().unwrap();
        assert_eq!(last.path, "/again");
        assert_eq!(last.caller.as_deref(), Some("web"));
    }
    let web_counters = web.proxy.metrics.counters.clone();
    assert_eq!(web_counters.connections(ConnEvent::UpstreamDialed), 2);

    // deny takes effect for web.
    put(&c, "/v1/config", json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Action": "deny"}]})).await;
    let start = Instant::now();
    loop {
        let s = tokio::task::spawn_blocking(move || call(upstream, "/hello"))
            .await
            .unwrap();
        if s == Ok(403) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "still {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Callers without a certificate from this CA are refused at the handshake.
    let mesh_addr = registration(&c, "api").await.unwrap().mesh_addr;
    let roots: Vec<String> = {
        let r = c
            .request("GET", "/v1/connect/ca/roots", None)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        v["Roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["RootCert"].as_str().unwrap().to_string())
            .collect()
    };
    let td = api.tls.identity().trust_domain.clone();
    let mut rogue_root = tribune_ca::Root::generate(&td, 1_700_000_000).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rogue = rogue_root
        .issue_leaf(
            &tribune_ca::ServiceId::new(&td, "dc1", "web"),
            now,
            Duration::from_secs(3600),
        )
        .unwrap();
    let rogue_identity = Identity::new(&td, &roots, &rogue.into()).unwrap();
    let rogue_tls = MeshTls::new(rogue_identity);
    let eps = Endpoints::default();
    eps.set(vec![mesh_addr]);
    let refused = async {
        let mut s = tribune_proxy::mesh::dial(&rogue_tls, "api", &eps)
            .await
            .ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET / HTTP/1.1\r\nhost: api\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        match s.read(&mut buf).await {
            Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }
    .await;
    assert_eq!(
        refused, None,
        "a certificate from another CA gets no response"
    );
    let plain = tokio::task::spawn_blocking(move || call(mesh_addr, "/"))
        .await
        .unwrap();
    assert!(
        plain.is_err(),
        "no client certificate (not even TLS): refused, got {plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_under_a_steady_request_loop_fails_no_request() {
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (_agent, agent) = start_agent(store, "127.0.0.1:0".parse().unwrap());
    let c = agent_client(agent);
    let app = echo().await;
    let upstream_port = free_port();
    put(&c, "/v1/config", json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Action": "allow"}]})).await;
    put(&c, "/v1/agent/service/register", json!({"Name": "api", "Port": app.addr.port(), "Connect": {"SidecarService": {"Port": free_port()}}})).await;
    put(&c, "/v1/agent/service/register", json!({"Name": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": upstream_port}]}}}})).await;
    let api = sidecar(agent, "api").await;
    let web = sidecar(agent, "web").await;
    until("api's policy", Duration::from_secs(5), || api.proxy.ready()).await;
    let upstream: SocketAddr = format!("127.0.0.1:{upstream_port}").parse().unwrap();
    let first_root = api.tls.identity().roots.clone();
    assert_eq!(first_root.len(), 1);

    // The app's calls, each on a new connection (tcp service: the bytes go through).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looper = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut results = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                results.push(call(upstream, "/steady"));
                std::thread::sleep(Duration::from_millis(10));
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&c, "/v1/connect/ca/rotate", json!({})).await;
    until(
        "both sidecars on the new root",
        Duration::from_secs(10),
        || {
            let (a, w) = (api.tls.identity(), web.tls.identity());
            a.roots.len() == 2 && w.roots.len() == 2
        },
    )
    .await;
    // Past the grace period both present leaves from the new root.
    tokio::time::sleep(tribune_proxy::sidecar::ROTATION_GRACE + Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let results = looper.await.unwrap();
    assert!(results.len() > 50, "{} requests", results.len());
    let failed: Vec<_> = results.iter().filter(|r| **r != Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(3)]
    );
}

/// Sessions resume within one identity and never across a new one: after the
/// server's leaf is replaced, the next handshake is full again (certificates
/// checked), and so is a client's first handshake under its new identity.
#[tokio::test]
async fn sessions_resume_within_an_identity_and_not_across_a_new_one() {
    use rustls::HandshakeKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let td = "11111111-2222-3333-4444-555555555555.consul";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut root = tribune_ca::Root::generate(td, now).unwrap();
    let mut identity = |svc: &str| {
        Identity::issued_by(&mut root, "dc1", svc, now, Duration::from_secs(3600)).unwrap()
    };
    let api = MeshTls::new(identity("api"));
    let web = MeshTls::new(identity("web"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_tls = api.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            // The server config current at accept time, as serve_mesh does.
            let acceptor = tokio_rustls::TlsAcceptor::from(server_tls.identity().server_config());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let caller = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(tribune_ca::identity_of)
                    .map(|id| id.service)
                    .unwrap_or_default();
                s.write_all(caller.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    let connect = |tls: Arc<MeshTls>| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let config = tls.identity().client_config("api").unwrap();
        let name = rustls::pki_types::ServerName::try_from("api.sidecar").unwrap();
        let mut c = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let mut caller = String::new();
        c.read_to_string(&mut caller).await.unwrap();
        (c.get_ref().1.handshake_kind(), caller)
    };
    let full = Some(HandshakeKind::Full);
    let resumed = Some(HandshakeKind::Resumed);
    assert_eq!(connect(web.clone()).await, (full, "web".to_string()));
    assert_eq!(connect(web.clone()).await, (resumed, "web".to_string()));
    assert_eq!(connect(web.clone()).await, (resumed, "web".to_string()));
    // The server renews its leaf: its session cache starts empty.
    api.replace(identity("api"));
    assert_eq!(connect(web.clone()).await, (full, "web".to_string()));
    assert_eq!(connect(web.clone()).await, (resumed, "web".to_string()));
    // The client renews its leaf: new client config, no tickets to offer.
    web.replace(identity("web"));
    assert_eq!(connect(web.clone()).await, (full, "web".to_string()));
}
