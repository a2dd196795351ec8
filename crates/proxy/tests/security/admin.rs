//! Hardening round 3, items 8 and 10: the sidecar's admin listener.
//!
//! Before: it answered any `Host` (a page on a rebound name read `/config_dump`),
//! and `POST /replay` took any Content-Type and Origin (a `no-cors` text/plain POST
//! from another origin started one) and ran on the serving workers.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(addr: SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_string(&mut out),
    )
    .await;
    out
}

async fn admin_listener() -> (tribune_proxy::run::Started, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(
        &snapshot,
        r#"{"Service":"api","Protocol":"http","DefaultIntentionPolicy":"deny","Entries":[
            {"Kind":"service-intentions","Name":"api","Sources":[{"Name":"*","Action":"allow"}]}]}"#,
    )
    .unwrap();
    let mut s = tribune_proxy::run::Settings::new(tribune_client::Target {
        addr: "127.0.0.1:1".into(),
        token: None,
        ..Default::default()
    });
    s.snapshot_file = Some(snapshot);
    s.local_service = Some("127.0.0.1:9".parse().unwrap());
    s.edge_listener = Some("127.0.0.1:0".parse().unwrap());
    s.admin_bind = "127.0.0.1:0".parse().unwrap();
    (tribune_proxy::run::start(s).await.unwrap(), dir)
}

#[tokio::test]
async fn the_admin_listener_refuses_rebound_hosts_and_foreign_posts() {
    let (started, _dir) = admin_listener().await;
    let admin = started.listeners.admin;
    let get = |host: &str, path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    // A rebound name: 421, whatever the path.
    for path in ["/config_dump", "/ready", "/shadow"] {
        let answer = raw(admin, get("rebind.attacker.test:19000", path)).await;
        assert!(answer.starts_with("HTTP/1.1 421"), "{path}: {answer}");
    }
    let answer = raw(admin, get("127.0.0.1:19000", "/config_dump")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw(admin, get("localhost", "/ready")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let candidate =
        r#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"*","Action":"deny"}]}"#;
    let post = |content_type: &str, origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /replay HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{origin}Content-Length: {}\r\nConnection: close\r\n\r\n{candidate}",
            candidate.len()
        )
    };
    // What a no-cors page can send: refused.
    let answer = raw(admin, post("text/plain", Some("http://evil.test"))).await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    let answer = raw(admin, post("text/plain", None)).await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    // JSON from another origin: refused.
    let answer = raw(admin, post("application/json", Some("http://evil.test"))).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // The CLI's request (JSON, no Origin) and a loopback page's: served.
    let answer = raw(admin, post("application/json", None)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw(
        admin,
        post(
            "application/json; charset=utf-8",
            Some("http://127.0.0.1:8500"),
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
