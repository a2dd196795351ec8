//! Every sidecar setting changes what the sidecar does: each test starts a sidecar
//! through `tribune_proxy::start` (what `tribune connect proxy` calls) with one
//! setting changed, and observes the difference. `-edge-tls-cert` was once parsed and
//! ignored; a setting that does nothing now fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tribune_client::Target;
use tribune_proxy::{start, EdgeTls, Settings};

/// Settings for an edge sidecar in front of `upstream`, policy from a file that lets
/// `*` do anything; every listener on port 0.
fn settings(dir: &std::path::Path, upstream: std::net::SocketAddr) -> Settings {
    let file = dir.join("snapshot.json");
    let snapshot = json!({
        "Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny",
        "Entries": [{"Kind": "service-intentions", "Name": "api", "Sources": [
            {"Name": "*", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/public/"}}]},
        ]}],
    });
    std::fs::write(&file, snapshot.to_string()).unwrap();
    let mut s = Settings::new(Target {
        addr: "127.0.0.1:1".into(),
        token: None,
        ..Default::default()
    });
    s.local_service = Some(upstream);
    s.edge_listener = Some("127.0.0.1:0".parse().unwrap());
    s.admin_bind = "127.0.0.1:0".parse().unwrap();
    s.snapshot_file = Some(file);
    s
}

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn the_snapshot_file_is_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo().await;
    let started = start(settings(dir.path(), upstream.addr)).await.unwrap();
    assert_eq!(started.service, "api");
    let edge = started.listeners.edge.unwrap();
    assert!(raw(edge, &get("/public/a"))
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(raw(edge, &get("/private"))
        .await
        .starts_with("HTTP/1.1 403"));
    let (_, policy) = started.lines.iter().find(|(k, _)| k == "Policy").unwrap();
    assert!(policy.starts_with("file "), "{policy}");
}

#[tokio::test]
async fn edge_tls_serves_tls_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("edge.crt"), dir.path().join("edge.key"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let mut s = settings(dir.path(), upstream.addr);
    s.edge_tls = Some(EdgeTls {
        cert: cert_file,
        key: key_file.clone(),
    });
    let started = start(s.clone()).await.unwrap();
    let edge = started.listeners.edge.unwrap();
    // Plain HTTP gets no HTTP answer.
    assert!(!raw(edge, &get("/public/a")).await.starts_with("HTTP/1.1"));
    // TLS with the certificate works.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(edge).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(get("/public/a").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    // A broken key fails the start, naming the file.
    std::fs::write(&key_file, "not a key").unwrap();
    let err = start(s).await.err().unwrap();
    assert!(err.contains("edge TLS key"), "{err}");
}

#[tokio::test]
async fn merge_slashes_changes_the_decided_path() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo().await;
    let plain = start(settings(dir.path(), upstream.addr)).await.unwrap();
    let mut s = settings(dir.path(), upstream.addr);
    s.merge_slashes = true;
    let merging = start(s).await.unwrap();
    let path = "//public//a";
    let a = raw(plain.listeners.edge.unwrap(), &get(path)).await;
    let b = raw(merging.listeners.edge.unwrap(), &get(path)).await;
    assert!(a.starts_with("HTTP/1.1 403"), "{a}");
    assert!(b.starts_with("HTTP/1.1 200"), "{b}");
}

#[tokio::test]
async fn the_upstream_timeout_bounds_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    // A local service that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut s = settings(dir.path(), silent_addr);
    s.upstream_timeout = Duration::from_millis(300);
    let started = start(s).await.unwrap();
    let t = Instant::now();
    let answer = raw(started.listeners.edge.unwrap(), &get("/public/a")).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn the_admin_listener_is_where_it_is_asked_to_be() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo().await;
    let started = start(settings(dir.path(), upstream.addr)).await.unwrap();
    let admin = started.listeners.admin;
    let answer = raw(
        admin,
        "GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn contradictory_settings_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo().await;
    let mut s = settings(dir.path(), upstream.addr);
    s.service = Some("web".into());
    let err = start(s).await.err().unwrap();
    assert_eq!(
        err,
        "-service web does not match the snapshot's Service api"
    );
    let mut s = settings(dir.path(), upstream.addr);
    s.edge_listener = None;
    let err = start(s).await.err().unwrap();
    assert!(err.contains("-edge-listener"), "{err}");
    let mut s = settings(dir.path(), upstream.addr);
    s.local_service = None;
    let err = start(s).await.err().unwrap();
    assert!(err.contains("-local-service-address"), "{err}");
}

/// Issue #42: a sidecar started before its agent said "no sidecar registered for
/// service ID", though no agent had answered. It now says that no agent answered,
/// and that no saved registration could stand in.
#[tokio::test]
async fn a_sidecar_with_no_agent_and_no_saved_state_says_no_agent_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::new(Target {
        addr: "127.0.0.1:1".into(),
        token: None,
        ..Default::default()
    });
    s.sidecar_for = Some("web".into());
    s.admin_bind = "127.0.0.1:0".parse().unwrap();
    s.state_dir = Some(dir.path().to_path_buf());
    let e = tribune_proxy::run::start(s).await.err().unwrap();
    assert!(e.starts_with("No agent answered ("), "{e}");
    assert!(!e.contains("no sidecar registered"), "{e}");
    assert!(e.contains("no registration of \"web\" was saved"), "{e}");
}
