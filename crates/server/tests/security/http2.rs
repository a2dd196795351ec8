//! Attacks on the agent's HTTP/2 connections (issue #40 lets sidecars hold their
//! blocking queries as streams of one connection). The HTTP/1.1 deadlines follow a
//! request head's bytes; an HTTP/2 connection's bytes are frames, so its deadlines
//! follow its requests: a connection must start one within the head deadline of its
//! preface, and one with none in flight is closed after the idle deadline, while a
//! blocking query that waits longer than either is answered; each request in flight
//! past a connection's first counts against its client's limit.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Whether the server closed `s` within `within` (whatever it sent first).
async fn closed_within(mut s: tokio::net::TcpStream, within: Duration) -> bool {
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .is_ok()
}

/// Attack: a client sends HTTP/2's preface (whose empty line ends an HTTP/1.1 head
/// for a byte-watching deadline) and then nothing, or a part of it, holding its
/// places for ever. The agent's limit here is 3 connections per client, head 300 ms,
/// idle 800 ms.
#[tokio::test]
async fn a_preface_without_requests_is_closed_and_gives_its_place_back() {
    let addr = super::limited_agent().await;
    let mut held = Vec::new();
    for part in [PREFACE, &PREFACE[..10]] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(part).await.unwrap();
        if part.len() == PREFACE.len() {
            s.write_all(SETTINGS).await.unwrap();
        }
        held.push(s);
    }
    for s in held {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "an HTTP/2 connection without a request outlived the head deadline"
        );
    }
    // Every place is free again: three connections are admitted and served.
    for _ in 0..3 {
        let (mut send, conn) = h2(addr).await;
        let task = tokio::spawn(conn);
        assert_eq!(get(&mut send, "/v1/status/leader").await, 200);
        drop(send);
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
}

/// Blocking queries held as streams of one connection for longer than both
/// deadlines are all answered; once none is in flight the connection is closed after
/// the idle deadline.
#[tokio::test]
async fn http2_streams_hold_a_connection_only_while_a_request_runs() {
    let addr = super::limited_agent().await;
    let (send, conn) = h2(addr).await;
    let conn = tokio::spawn(conn);
    let started = std::time::Instant::now();
    let mut queries = Vec::new();
    for _ in 0..3 {
        let mut send = send.clone();
        queries.push(tokio::spawn(async move {
            get(
                &mut send,
                "/v1/config/service-intentions?index=1&wait=1200ms",
            )
            .await
        }));
    }
    for q in queries {
        assert_eq!(q.await.unwrap(), 200);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the queries did not block: {:?}",
        started.elapsed()
    );
    // Idle now (the client keeps its handle): the agent closes it.
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection was not closed");
    drop(send);
}

/// Attack: Consul's per-client limit (`http_max_conns_per_client`, here 3) bounds the
/// blocking queries one client holds because each held query is a connection; over
/// HTTP/2 one connection could hold 128. Now each request in flight past a
/// connection's first takes one of the client's places: with three held, a fourth
/// stream and a second connection get 429, and the places come back as the queries
/// end.
#[tokio::test]
async fn http2_streams_count_against_the_clients_limit() {
    let addr = super::limited_agent().await;
    let (send, conn) = h2(addr).await;
    tokio::spawn(conn);
    let held = "/v1/config/service-intentions?index=1&wait=1500ms";
    let mut queries = Vec::new();
    for _ in 0..3 {
        let mut send = send.clone();
        queries.push(tokio::spawn(async move { get(&mut send, held).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fourth = send.clone();
    assert_eq!(get(&mut fourth, held).await, 429, "a fourth query was held");
    let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), other.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 429"),
        "a second connection was admitted"
    );
    for q in queries {
        assert_eq!(q.await.unwrap(), 200);
    }
    // The places are back: a query on the same connection runs again.
    let mut again = send.clone();
    assert_eq!(get(&mut again, "/v1/status/leader").await, 200);
}

/// An HTTP/2 connection to `addr` with prior knowledge: its request handle, and the
/// connection's future (ends when the server closes it).
async fn h2(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (send, async move {
        let _ = conn.await;
    })
}

async fn get(send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>, path: &str) -> u16 {
    send.ready().await.unwrap();
    let req = hyper::Request::get(format!("http://127.0.0.1{path}"))
        .body(Empty::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}
