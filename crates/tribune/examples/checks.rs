//! Load for `tribune connect authz` (issue #44, item 6; run by `bench/authz.sh`):
//! checks as an Envoy in front would send them, for a fixed time, with every answer
//! verified.
//!
//! ```text
//! cargo run --release -p tribune --example checks -- \
//!     --form grpc|http --addr 127.0.0.1:9192 --token-file T --path /api/items \
//!     [--destination api] [--concurrency 32] [--connections 4] [--seconds 10]
//! ```
//!
//! `grpc`: `envoy.service.auth.v3.Authorization/Check` over h2c, `--concurrency`
//! calls in flight spread over `--connections` HTTP/2 connections (as Envoy
//! multiplexes), the destination in the context extension. `http`: Envoy's HTTP
//! form (`GET /envoy<path>`), one HTTP/1.1 keep-alive connection per call in flight.
//! Prints one line: `checks=N seconds=S per_second=R p50_us=A p99_us=B errors=E`.
//! An answer that is not an allow counts as an error (the run is for a valid
//! token). The run is bounded by `--seconds`; nothing leaves the address given.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::time::{Duration, Instant};

struct Args {
    grpc: bool,
    addr: String,
    token: String,
    path: String,
    destination: String,
    concurrency: usize,
    connections: usize,
    seconds: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        grpc: true,
        addr: String::new(),
        token: String::new(),
        path: "/".into(),
        destination: "api".into(),
        concurrency: 32,
        connections: 4,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--form" => a.grpc = value == "grpc",
            "--addr" => a.addr = value,
            "--token-file" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                a.token = text.lines().next().unwrap_or("").trim().to_string();
            }
            "--path" => a.path = value,
            "--destination" => a.destination = value,
            "--concurrency" => a.concurrency = num()?.max(1),
            "--connections" => a.connections = num()?.max(1),
            "--seconds" => a.seconds = num()?.clamp(1, 600) as u64,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.addr.is_empty() || a.token.is_empty() {
        return Err("--addr and --token-file are required".into());
    }
    Ok(a)
}

/// Protocol buffer encoding, the little a `CheckRequest` needs.
fn field(out: &mut Vec<u8>, n: u32, data: &[u8]) {
    let mut varint = |mut v: u64| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    varint(u64::from(n) << 3 | 2);
    varint(data.len() as u64);
    out.extend_from_slice(data);
}

fn entry(out: &mut Vec<u8>, n: u32, k: &str, v: &str) {
    let mut e = Vec::new();
    field(&mut e, 1, k.as_bytes());
    field(&mut e, 2, v.as_bytes());
    field(out, n, &e);
}

/// The gRPC frame of a `CheckRequest` for `GET path` with the token.
fn check_request(a: &Args) -> Bytes {
    let mut http = Vec::new();
    field(&mut http, 2, b"GET");
    entry(
        &mut http,
        3,
        "authorization",
        &format!("Bearer {}", a.token),
    );
    field(&mut http, 4, a.path.as_bytes());
    field(&mut http, 5, b"api.example");
    let mut request = Vec::new();
    field(&mut request, 2, &http);
    let mut attributes = Vec::new();
    field(&mut attributes, 4, &request);
    entry(&mut attributes, 10, "tribune_destination", &a.destination);
    let mut msg = Vec::new();
    field(&mut msg, 1, &attributes);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    Bytes::from(frame)
}

/// Whether a `CheckResponse` frame allows: `ok_response` (field 3) at its top level.
fn allows(frame: &[u8]) -> bool {
    let Some(msg) = frame.get(5..) else {
        return false;
    };
    let mut at = 0;
    let varint = |at: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *msg.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    while at < msg.len() {
        let Some(key) = varint(&mut at) else {
            return false;
        };
        if key & 7 != 2 {
            return false;
        }
        if key >> 3 == 3 {
            return true;
        }
        let Some(len) = varint(&mut at) else {
            return false;
        };
        at += len as usize;
    }
    false
}

type Latencies = Vec<u32>;

async fn grpc_connection(
    a: &Args,
    calls: usize,
    until: Instant,
) -> Result<(Latencies, u64), String> {
    let stream = tokio::net::TcpStream::connect(&a.addr)
        .await
        .map_err(|e| format!("{}: {e}", a.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let body = check_request(a);
    let uri = format!(
        "http://{}/envoy.service.auth.v3.Authorization/Check",
        a.addr
    );
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let (mut sender, body, uri) = (sender.clone(), body.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < until {
                let req = hyper::Request::post(uri.as_str())
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(Full::new(body.clone()))
                    .map_err(|e| e.to_string())?;
                let start = Instant::now();
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                let collected = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                let ok = collected
                    .trailers()
                    .and_then(|t| t.get("grpc-status"))
                    .is_some_and(|s| s == "0");
                let frame = collected.to_bytes();
                lat.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !(ok && allows(&frame)) {
                    errors += 1;
                }
            }
            Ok::<_, String>((lat, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| e.to_string())??;
        all.extend(lat);
        errors += e;
    }
    Ok((all, errors))
}

async fn http_connection(a: &Args, until: Instant) -> Result<(Latencies, u64), String> {
    let stream = tokio::net::TcpStream::connect(&a.addr)
        .await
        .map_err(|e| format!("{}: {e}", a.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let uri = format!("/envoy{}", a.path);
    let auth = format!("Bearer {}", a.token);
    let (mut lat, mut errors) = (Vec::new(), 0u64);
    while Instant::now() < until {
        let req = hyper::Request::get(uri.as_str())
            .header("host", "api.example")
            .header("authorization", auth.as_str())
            .header("x-tribune-destination", a.destination.as_str())
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        lat.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if status != 200 {
            errors += 1;
        }
    }
    Ok((lat, errors))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let a = std::sync::Arc::new(args()?);
    let started = Instant::now();
    let until = started + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    if a.grpc {
        let conns = a.connections.min(a.concurrency);
        for c in 0..conns {
            // The calls spread over the connections as evenly as they go.
            let calls = a.concurrency / conns + usize::from(c < a.concurrency % conns);
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                grpc_connection(&a, calls, until).await
            }));
        }
    } else {
        for _ in 0..a.concurrency {
            let a = a.clone();
            tasks.push(tokio::spawn(
                async move { http_connection(&a, until).await },
            ));
        }
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| e.to_string())??;
        all.extend(lat);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "checks={} seconds={seconds:.2} per_second={:.0} p50_us={} p99_us={} errors={errors}",
        all.len(),
        all.len() as f64 / seconds,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
