//! The sidecar's part of the security suite (`cargo test --test security` runs every
//! crate's): attacks through the real request path (edge listener, echo upstream).
//! Each test failed before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOW: i64 = 1_700_000_000;

/// `*` may GET anything under `/public/`; nothing else is allowed.
fn public_only() -> Value {
    json!({
        "Kind": "service-intentions", "Name": "api",
        "Sources": [{"Name": "*", "Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/public/"}},
        ]}],
    })
}

fn mesh(action: &str) -> Value {
    json!({"Kind": "mesh", "HTTP": {"Incoming": {"RequestNormalization": {
        "PathWithEscapedSlashesAction": action,
    }}}})
}

/// Sends raw bytes and returns the whole answer (the proxy closes or the read times
/// out after the first response).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
}

/// Attack: `/public/..%2Fadmin/secret.txt` matched the `/public/` allow and was
/// forwarded byte for byte; a decoding upstream then served `/admin/secret.txt`.
/// With no `mesh` entry every escaped separator is refused with 400.
#[tokio::test]
async fn escaped_separator_traversal_is_refused_by_default() {
    let upstream = echo().await;
    let (proxy, addr, records) = proxy(upstream.addr, NOW).await;
    proxy
        .install(doc("api", "http", "deny", vec![public_only()]), 1)
        .await
        .unwrap();
    for path in [
        "/public/..%2Fadmin/secret.txt",
        "/public/..%2fadmin/secret.txt",
        "/public/..%5Cadmin/secret.txt",
        "/public/..%5cadmin/secret.txt",
        "/public/%2e%2e%2fadmin/secret.txt",
    ] {
        let answer = raw(addr, &get(path)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 0, "nothing forwarded");
    let r = records.lock().unwrap();
    assert!(r
        .iter()
        .all(|r| r.status == 400 && r.reason == "escaped_separator"));
    drop(r);
    // The allowed path still works.
    let answer = raw(addr, &get("/public/readme.txt")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// With `UNESCAPE_AND_FORWARD` the separators are decoded before matching, so the
/// traversal is resolved and denied, and what the upstream receives is exactly the
/// path that was authorized.
#[tokio::test]
async fn unescape_and_forward_decides_on_and_forwards_the_decoded_path() {
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    proxy
        .install(
            doc(
                "api",
                "http",
                "deny",
                vec![public_only(), mesh("UNESCAPE_AND_FORWARD")],
            ),
            1,
        )
        .await
        .unwrap();
    let answer = raw(addr, &get("/public/..%2Fadmin/secret.txt")).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw(addr, &get("/public/a%2Fb%5Cc?x=1")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = upstream.last.lock().unwrap().clone().unwrap();
    assert_eq!(seen["path"], "/public/a/b/c");
    assert_eq!(seen["query"], "x=1");
}

/// `UNESCAPE_AND_REDIRECT` answers 307 with the decoded path (Envoy's behaviour);
/// `KEEP_UNCHANGED` (an explicit, insecure choice) forwards the escape unchanged.
#[tokio::test]
async fn redirect_and_keep_unchanged_do_what_they_say() {
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    proxy
        .install(
            doc(
                "api",
                "http",
                "deny",
                vec![public_only(), mesh("UNESCAPE_AND_REDIRECT")],
            ),
            1,
        )
        .await
        .unwrap();
    let answer = raw(addr, &get("/public/a%2fb?q=1")).await;
    assert!(answer.starts_with("HTTP/1.1 307"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: /public/a/b?q=1"),
        "{answer}"
    );
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 0);
    proxy
        .install(
            doc(
                "api",
                "http",
                "deny",
                vec![public_only(), mesh("KEEP_UNCHANGED")],
            ),
            2,
        )
        .await
        .unwrap();
    let answer = raw(addr, &get("/public/a%2fb")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = upstream.last.lock().unwrap().clone().unwrap();
    assert_eq!(seen["path"], "/public/a%2Fb");
}
