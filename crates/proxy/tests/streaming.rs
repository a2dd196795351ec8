//! Streaming both ways through the sidecar without buffering: server-sent events
//! reach the client as each is written, a chunked request body reaches the service
//! while the client is still sending, a gRPC server stream keeps its trailers (h2c),
//! and `Expect: 100-continue` is answered before the body is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const NOW: i64 = 1_700_000_000;

/// A body whose frames are sent through a channel as the test decides.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

fn channel_body() -> (mpsc::Sender<Frame<Bytes>>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody(rx))
}

/// Everyone may call the service (no tokens): these tests are about the body path.
fn open(protocol: &str) -> tribune_proxy::SnapshotDoc {
    doc(
        "svc",
        protocol,
        "deny",
        vec![json!({"Kind": "service-intentions", "Name": "svc",
                    "Sources": [{"Name": "*", "Action": "allow"}]})],
    )
}

/// An HTTP/1.1 service on port 0 answering every request with `answer`.
async fn h1_service<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<ChannelBody>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

async fn h1_client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<ChannelBody> {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/1.1 event-stream service sending `n` events `every` apart; the time each
/// is written goes to `written`.
async fn ticking(n: usize, every: Duration, written: Arc<Mutex<Vec<Instant>>>) -> SocketAddr {
    h1_service(move |_req| {
        let w = written.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                for i in 0..n {
                    tokio::time::sleep(every).await;
                    w.lock().unwrap().push(Instant::now());
                    let event = format!("id: {i}\ndata: tick {i}\n\n");
                    if tx.send(Frame::data(Bytes::from(event))).await.is_err() {
                        return;
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(body)
                .unwrap()
        }
    })
    .await
}

/// `GET /events` through the sidecar at `addr`, with an empty request body.
async fn get_events(addr: SocketAddr) -> Response<Incoming> {
    let mut sender = h1_client(addr).await;
    let (_keep, body) = channel_body();
    drop(_keep);
    let resp = sender
        .send_request(
            Request::get("/events")
                .header("host", "svc")
                .header("accept", "text/event-stream")
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp
}

#[tokio::test]
async fn server_sent_events_reach_the_client_as_each_is_written() {
    let written: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let service = ticking(5, Duration::from_millis(100), written.clone()).await;
    let (proxy, addr, _) = proxy(service, NOW).await;
    proxy.install(open("http"), 1).await.unwrap();
    let resp = get_events(addr).await;
    let mut body = resp.into_body();
    let mut arrived = Vec::new();
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            arrived.push(Instant::now());
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert_eq!(text.matches("data: tick").count(), 5, "{text}");
    let written = written.lock().unwrap().clone();
    assert_eq!(arrived.len(), 5, "one frame per event: {text:?}");
    for (i, (w, a)) in written.iter().zip(&arrived).enumerate() {
        let delay = a.duration_since(*w);
        assert!(
            delay < Duration::from_millis(50),
            "event {i} arrived {delay:?} after it was written"
        );
    }
}

/// A response still being sent keeps its request in flight: an event stream longer
/// than the idle timeout is not cut (it used to be shut down, then dropped, two idle
/// periods after its head).
#[tokio::test]
async fn an_event_stream_outlives_the_idle_timeout() {
    let service = ticking(8, Duration::from_millis(100), Arc::default()).await;
    let (proxy, addr, _) = proxy_with(service, NOW, |c| {
        c.idle_timeout = Duration::from_millis(200);
    })
    .await;
    proxy.install(open("http"), 1).await.unwrap();
    let text = get_events(addr)
        .await
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert_eq!(text.matches("data: tick").count(), 8, "{text}");
}

#[tokio::test]
async fn a_chunked_request_body_streams_to_the_service_while_the_client_sends() {
    // The service echoes each request chunk as a response chunk as it arrives.
    let service = h1_service(|req: Request<Incoming>| async move {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let mut incoming = req.into_body();
            while let Some(Ok(frame)) = incoming.frame().await {
                if let Ok(data) = frame.into_data() {
                    if tx.send(Frame::data(data)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Response::new(body)
    })
    .await;
    let (proxy, addr, _) = proxy(service, NOW).await;
    proxy.install(open("http"), 1).await.unwrap();
    let mut sender = h1_client(addr).await;
    let (tx, body) = channel_body();
    let resp = sender
        .send_request(
            Request::post("/upload")
                .header("host", "svc")
                .body(body)
                .unwrap(),
        )
        .await;
    // The response head comes before the request body is done: send chunks one at a
    // time and see each come back before sending the next.
    tx.send(Frame::data(Bytes::from_static(b"first")))
        .await
        .unwrap();
    let mut resp = resp.unwrap().into_body();
    for chunk in ["first", "second", "third"] {
        if chunk != "first" {
            tx.send(Frame::data(Bytes::from(chunk))).await.unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(5), resp.frame())
            .await
            .expect("the echo of a chunk while the request is still open")
            .unwrap()
            .unwrap();
        assert_eq!(got.into_data().unwrap(), chunk);
    }
    drop(tx);
    assert!(resp.frame().await.is_none(), "ends when the request ends");
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let service = h1_service(|req: Request<Incoming>| async move {
        let got = req.into_body().collect().await.unwrap().to_bytes();
        let (tx, body) = channel_body();
        tx.send(Frame::data(got)).await.unwrap();
        Response::new(body)
    })
    .await;
    let (proxy, addr, _) = proxy(service, NOW).await;
    proxy.install(open("http"), 1).await.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("100 Continue before any body byte is sent")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    s.write_all(b"hello").await.unwrap();
    let mut rest = String::new();
    let mut buf = vec![0u8; 1024];
    while !rest.contains("hello") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "{rest}");
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(rest.contains("200 OK"), "{rest}");
}

/// A gRPC server stream (HTTP/2 without TLS, `grpc` protocol): every message
/// arrives as it is sent, then the trailers with `grpc-status`.
#[tokio::test]
async fn a_grpc_server_stream_passes_with_its_trailers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    assert_eq!(req.headers()["content-type"], "application/grpc");
                    let (tx, body) = channel_body();
                    tokio::spawn(async move {
                        for i in 0..3u8 {
                            // A length-prefixed message: not compressed, 1 byte long.
                            let msg = Bytes::from(vec![0, 0, 0, 0, 1, i]);
                            let _ = tx.send(Frame::data(msg)).await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("grpc-message", "done".parse().unwrap());
                        let _ = tx.send(Frame::trailers(trailers)).await;
                    });
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let (proxy, addr, _) = proxy(service, NOW).await;
    proxy.install(open("grpc"), 1).await.unwrap();
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, body) = channel_body();
    tx.send(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .await
        .unwrap();
    drop(tx);
    let resp = sender
        .send_request(
            Request::post("http://svc/chat.Chat/Stream")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut messages, mut trailers) = (Vec::new(), None);
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(d) => messages.push(d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    let all: Vec<u8> = messages.iter().flat_map(|m| m.to_vec()).collect();
    assert_eq!(all, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 2]);
    let trailers = trailers.expect("trailers after the stream");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "done");
}
