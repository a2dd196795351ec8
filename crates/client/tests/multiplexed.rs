//! `Client::multiplexed` (the sidecar's): several blocking queries to an agent that
//! speaks HTTP/2 share one connection; an agent that speaks only HTTP/1.1 (an older
//! one during an upgrade) is still answered, and then asked over HTTP/1.1 alone.
//! In-process servers on 127.0.0.1:0 stand in for the agents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tribune_client::{Client, Target};

/// What a test server saw: connections accepted, and each request's HTTP version.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    versions: Mutex<Vec<hyper::Version>>,
}

/// A server answering every request after `hold` (a blocking query's wait) with its
/// path; HTTP/2 with prior knowledge when `h2`, else HTTP/1.1 only.
async fn server(h2: bool, hold: Duration) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen2.connections.fetch_add(1, Ordering::SeqCst);
            let seen = seen2.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    seen.versions.lock().unwrap().push(req.version());
                    tokio::time::sleep(hold).await;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("x-consul-index", "7")
                            .body(Full::new(Bytes::from(req.uri().path().to_string())))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let io = TokioIo::new(tcp);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn target(addr: &str) -> Target {
    Target {
        addr: addr.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_sidecars_blocking_queries_share_one_http2_connection() {
    let (addr, seen) = server(true, Duration::from_millis(300)).await;
    let client = Client::multiplexed(&target(&addr)).unwrap();
    // The leaf, the policy and an upstream's endpoints, held at once, from clones.
    let paths = ["/v1/leaf", "/v1/policy", "/v1/health"];
    let answers = futures_join(paths.map(|p| {
        let c = client.clone();
        async move { c.request("GET", p, None).await.unwrap() }
    }))
    .await;
    for (p, r) in paths.iter().zip(&answers) {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, *p);
        assert_eq!(r.header("x-consul-index"), Some("7"));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert!(seen
        .versions
        .lock()
        .unwrap()
        .iter()
        .all(|v| *v == hyper::Version::HTTP_2));
}

#[tokio::test]
async fn an_agent_without_http2_is_answered_and_then_asked_over_http1() {
    let (addr, seen) = server(false, Duration::ZERO).await;
    let client = Client::multiplexed(&target(&addr)).unwrap();
    for _ in 0..3 {
        let r = client
            .request("GET", "/v1/status/leader", None)
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "/v1/status/leader"));
    }
    // The HTTP/2 attempt (closed at its preface), then one HTTP/1.1 connection kept.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    assert_eq!(
        *seen.versions.lock().unwrap(),
        vec![hyper::Version::HTTP_11; 3]
    );
}

#[tokio::test]
async fn the_cli_client_speaks_http1() {
    let (addr, seen) = server(false, Duration::ZERO).await;
    let client = Client::new(&target(&addr)).unwrap();
    let r = client.request("GET", "/v1/agent/self", None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn nothing_listening_is_one_attempt_with_the_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = Client::multiplexed(&target(&addr)).unwrap();
    let e = client
        .request("GET", "/v1/agent/self", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
}

/// Awaits three futures together (no `futures` dependency for one join).
async fn futures_join<F: std::future::Future + Send + 'static>(fs: [F; 3]) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
