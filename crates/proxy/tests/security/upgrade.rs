//! Hardening round 3, item 7: an `Upgrade` list opened a policy-free tunnel.
//!
//! `GET /public/p` with `Upgrade: websocket, h2c` passed the websocket-only check,
//! the whole list was forwarded, the service answered `101` with `Upgrade: h2c`, and
//! the sidecar spliced it: `GET /admin/after-switch` then reached the service down the
//! tunnel. Now only the permitted protocol is forwarded, and a `101` that switches to
//! anything else (or, for WebSocket, does not answer the key) is a 502, never spliced.

use super::{install, proxy, NOW};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A service that answers every handshake `101` with `answer_headers`, then records
/// everything it receives afterwards.
async fn switching_service(answer_headers: &'static str) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                seen.lock().unwrap().extend_from_slice(&head);
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n{answer_headers}\r\n").as_bytes(),
                    )
                    .await;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, seen)
}

async fn handshake_then_send(addr: SocketAddr, handshake: &str, then: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(handshake.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        out.extend_from_slice(&buf[..n]);
    }
    let _ = s.write_all(then.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn public_only() -> serde_json::Value {
    json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*",
        "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/public/"}}]}]})
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

#[tokio::test]
async fn an_upgrade_list_cannot_switch_to_an_unpermitted_protocol() {
    let smuggled = "GET /admin/after-switch HTTP/1.1\r\nHost: api\r\n\r\n";
    for (offer, answer) in [
        ("websocket, h2c", "Upgrade: h2c\r\n"),
        ("websocket, foo", "Upgrade: foo\r\n"),
        // The right protocol without the key's answer is no WebSocket either.
        ("websocket", "Upgrade: websocket\r\n"),
        (
            "websocket",
            "Upgrade: websocket\r\nSec-WebSocket-Accept: bm90IHRoZSBhbnN3ZXI=\r\n",
        ),
    ] {
        let (service, seen) = switching_service(answer).await;
        let (p, addr, _) = proxy(service, NOW).await;
        install(&p, vec![public_only()], 1).await;
        let answer_text = handshake_then_send(
            addr,
            &format!("GET /public/p HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: {offer}\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            smuggled,
        )
        .await;
        assert!(
            answer_text.starts_with("HTTP/1.1 502"),
            "{offer} / {answer}: {answer_text}"
        );
        let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        assert!(
            seen.contains("upgrade: websocket\r\n"),
            "only the permitted protocol is offered: {seen}"
        );
        assert!(!seen.contains("h2c") && !seen.contains("foo"), "{seen}");
        assert!(
            !seen.contains("/admin/after-switch"),
            "nothing passed the policy: {seen}"
        );
    }
    // A service that answers the key, with the protocol asked for: spliced.
    let (service, seen) = switching_service(
        "Upgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
    )
    .await;
    let (p, addr, _) = proxy(service, NOW).await;
    install(&p, vec![public_only()], 1).await;
    let answer_text = handshake_then_send(
        addr,
        &format!("GET /public/p HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        "frame bytes",
    )
    .await;
    assert!(answer_text.starts_with("HTTP/1.1 101"), "{answer_text}");
    assert!(answer_text.contains(ACCEPT), "{answer_text}");
    assert!(String::from_utf8_lossy(&seen.lock().unwrap()).ends_with("frame bytes"));
}
