//! A fixed-rate HTTP load driver for bench/mesh.sh (issue #9, part 2): sends GET
//! requests at a constant rate over keep-alive connections and reports latency
//! percentiles measured from each request's scheduled time (so a stall counts against
//! every request it delays).
//!
//!   cargo run --release -p tribune-proxy --example loadgen -- URL[,URL...] RATE SECONDS
//!
//! With several URLs, each tick sends one request to every URL at the same scheduled
//! time (paired measurement: every path sees the same timer lateness and the same
//! moments of machine noise); one JSON line is printed per URL, in order. The first
//! second runs at the same rate unmeasured (connections and caches warm up under the
//! real concurrency). `LOADGEN_SLOW_MS=N` prints every request slower than N ms
//! (which URL, when it was scheduled, its latency) to stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let urls: Vec<hyper::Uri> = args
        .get(1)
        .expect("URL")
        .split(',')
        .map(|u| u.parse().unwrap())
        .collect();
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(HttpConnector::new());
    let samples: Vec<Arc<Mutex<Samples>>> = urls.iter().map(|_| Arc::default()).collect();
    // LOADGEN_SLOW_MS=N: print each request slower than N ms (URL index, scheduled
    // wall-clock time, latency) to stderr, to line slow moments up with other logs.
    let slow_ms: Option<u128> = std::env::var("LOADGEN_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok());
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let run = |ticks: u64, record: bool| {
        let (client, urls, samples) = (client.clone(), urls.clone(), samples.clone());
        async move {
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::with_capacity((ticks as usize) * urls.len());
            for i in 0..ticks {
                let scheduled = start + interval * i as u32;
                tokio::time::sleep_until(scheduled).await;
                let scheduled: Instant = scheduled.into_std();
                for (idx, (url, samples)) in urls.iter().zip(&samples).enumerate() {
                    let (client, url, samples) = (client.clone(), url.clone(), samples.clone());
                    tasks.push(tokio::spawn(async move {
                        let result = client.get(url).await;
                        let ok = match result {
                            Ok(res) if res.status() == 200 => {
                                res.into_body().collect().await.is_ok()
                            }
                            _ => false,
                        };
                        if record {
                            let latency = scheduled.elapsed();
                            if slow_ms.is_some_and(|ms| latency.as_millis() >= ms) {
                                let at = std::time::SystemTime::now() - latency;
                                let at = at.duration_since(std::time::UNIX_EPOCH).unwrap();
                                eprintln!(
                                    "slow url={} scheduled={}.{:06} latency_ms={:.3}",
                                    idx,
                                    at.as_secs(),
                                    at.subsec_micros(),
                                    latency.as_secs_f64() * 1e3
                                );
                            }
                            let mut s = samples.lock().unwrap();
                            if ok {
                                s.latencies.push(latency);
                            } else {
                                s.errors += 1;
                            }
                        }
                    }));
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    };
    run(rate, false).await;
    run(rate * seconds, true).await;
    for samples in &samples {
        let samples = samples.lock().unwrap();
        let mut s = samples.latencies.clone();
        s.sort();
        let p = |q: f64| {
            s.get(((s.len() as f64 - 1.0) * q).round() as usize)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        let slow = s.iter().filter(|d| d.as_millis() >= 10).count();
        println!(
            "{{\"requests\": {}, \"errors\": {}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"over_10ms\": {}}}",
            s.len(),
            samples.errors,
            p(0.5),
            p(0.9),
            p(0.99),
            p(1.0),
            slow
        );
    }
}
