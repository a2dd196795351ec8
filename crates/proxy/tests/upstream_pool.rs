//! The HTTP/1.1 connection pool to the local service: reuse, a connection the
//! service closed while idle, a response abandoned half-way, and large bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NOW: i64 = 1_700_000_000;

/// A raw HTTP/1.1 upstream: answers each request head with `body`; after each
/// response it closes the connection when `close_after_each` (without saying so in a
/// header, as a service whose idle timeout fired would). Counts connections.
async fn raw_upstream(
    body: Vec<u8>,
    close_after_each: bool,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head (GET, no body) at a time.
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if s.write_all(head.as_bytes()).await.is_err()
                        || s.write_all(&body).await.is_err()
                    {
                        return;
                    }
                    if close_after_each {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

async fn allow_all(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    let (proxy, addr, _) = proxy(upstream, NOW).await;
    proxy
        .install(doc("api", "http", "allow", vec![]), 1)
        .await
        .unwrap();
    addr
}

#[tokio::test]
async fn connections_to_the_service_are_reused() {
    let (up, conns) = raw_upstream(b"ok".to_vec(), false).await;
    let addr = allow_all(up).await;
    let c = client();
    for _ in 0..50 {
        let r = send(&c, "GET", &format!("http://{addr}/x"), &[])
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "sequential requests share one connection"
    );
}

#[tokio::test]
async fn a_connection_the_service_closed_while_idle_is_not_a_failure() {
    let (up, conns) = raw_upstream(b"ok".to_vec(), true).await;
    let addr = allow_all(up).await;
    let c = client();
    for i in 0..10 {
        let r = send(&c, "GET", &format!("http://{addr}/x"), &[])
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(conns.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_response_abandoned_half_way_does_not_poison_the_pool() {
    // 4 MiB: far more than socket buffers hold, so the client can stop mid-body.
    let big = vec![b'x'; 4 << 20];
    let (up, conns) = raw_upstream(big.clone(), false).await;
    let addr = allow_all(up).await;

    // Read the head and a little of the body, then drop the connection.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let n = s.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Later requests get whole bodies (on a new connection: the old one was closed).
    let c = client();
    for _ in 0..3 {
        let r = send(&c, "GET", &format!("http://{addr}/big"), &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len());
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
