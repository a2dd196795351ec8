//! A fixed-rate HTTP load driver for bench/mesh.sh (issue #9, part 2): sends GET
//! requests at a constant rate over keep-alive connections and reports latency
//! percentiles measured from each request's scheduled time (so a stall counts against
//! every request it delays).
//!
//!   cargo run --release -p tribune-proxy --example loadgen -- URL RATE SECONDS
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url: hyper::Uri = args.get(1).expect("URL").parse().unwrap();
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(HttpConnector::new());
    let samples = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
    let errors = Arc::new(Mutex::new(0u64));
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    // Warm-up: open connections.
    for _ in 0..50 {
        let _ = client.get(url.clone()).await.map(|r| r.into_body());
    }
    let start = tokio::time::Instant::now();
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (client, url, samples, errors) =
            (client.clone(), url.clone(), samples.clone(), errors.clone());
        let scheduled: Instant = scheduled.into_std();
        tasks.push(tokio::spawn(async move {
            match client.get(url).await {
                Ok(res) if res.status() == 200 => {
                    let _ = res.into_body().collect().await;
                    samples.lock().unwrap().push(scheduled.elapsed());
                }
                _ => *errors.lock().unwrap() += 1,
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut s = samples.lock().unwrap().clone();
    s.sort();
    let p = |q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{{\"requests\": {}, \"errors\": {}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        s.len(),
        errors.lock().unwrap(),
        p(0.5),
        p(0.9),
        p(0.99)
    );
}
