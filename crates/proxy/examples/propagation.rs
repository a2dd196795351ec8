//! Control-plane benchmark (issue #9, part 3): how long from `PUT /v1/config` returning
//! to the change being enforced by 1, 10 and 100 proxies, and the agent's write rate.
//!
//!   cargo run --release -p tribune-proxy --example propagation [changes]
//!
//! The agent (durable redb store in a temp dir) and the proxies run in this process;
//! each proxy watches the agent with its blocking query, exactly as
//! `tribune connect proxy` does. A change flips `* -> api` between allow and deny; a
//! proxy enforces it when its current snapshot decides the new way (checked every
//! 100 µs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tribune_authz::RequestFacts;
use tribune_client::{Client, Target};
use tribune_proxy::{Proxy, ProxyConfig};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn allows(proxy: &Proxy) -> Option<bool> {
    let snap = proxy.current()?;
    Some(snap.table.evaluate(&RequestFacts::l4(None)).allowed())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let changes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(tribune_store::RedbStore::open(&dir.path().join("state.redb")).unwrap());
    let state = tribune_server::AppState::new(store, Default::default())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        axum::serve(listener, tribune_server::router(state))
            .await
            .unwrap()
    });
    let client = Client::new(&Target {
        addr: agent.clone(),
        token: None,
        ..Default::default()
    })
    .unwrap();
    let write = |allow: bool| {
        let body = format!(
            r#"{{"Kind":"service-intentions","Name":"api","Sources":[{{"Name":"*","Action":"{}"}}]}}"#,
            if allow { "allow" } else { "deny" }
        );
        let client = &client;
        async move {
            let r = client
                .request("PUT", "/v1/config", Some(body.into_bytes()))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
        }
    };
    write(false).await;

    println!("| proxies | changes | p50 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|");
    let mut allow = false;
    for n in [1usize, 10, 100] {
        let mut proxies = Vec::new();
        let mut watchers = Vec::new();
        for _ in 0..n {
            let p = Proxy::new(ProxyConfig::new("127.0.0.1:9".parse().unwrap()));
            let c = Client::new(&Target {
                addr: agent.clone(),
                token: None,
                ..Default::default()
            })
            .unwrap();
            watchers.push(tokio::spawn(tribune_proxy::watch::watch_agent(
                p.clone(),
                c,
                "api".into(),
            )));
            proxies.push(p);
        }
        while !proxies.iter().all(|p| allows(p) == Some(allow)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut samples = Vec::new();
        for _ in 0..changes {
            allow = !allow;
            write(allow).await;
            let t0 = Instant::now();
            let mut pending: Vec<usize> = (0..n).collect();
            while !pending.is_empty() {
                pending.retain(|&i| {
                    if allows(&proxies[i]) == Some(allow) {
                        samples.push(t0.elapsed());
                        false
                    } else {
                        true
                    }
                });
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        }
        samples.sort();
        println!(
            "| {n} | {changes} | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(&samples, 0.5).as_secs_f64() * 1e3,
            percentile(&samples, 0.99).as_secs_f64() * 1e3,
            samples.last().unwrap().as_secs_f64() * 1e3,
        );
        for w in watchers {
            w.abort();
        }
    }

    // Agent write throughput: sequential durable writes over HTTP.
    let writes = 500;
    let t0 = Instant::now();
    for i in 0..writes {
        let body = format!(
            r#"{{"Kind":"service-intentions","Name":"svc-{i}","Sources":[{{"Name":"web","Action":"allow"}}]}}"#
        );
        let r = client
            .request("PUT", "/v1/config", Some(body.into_bytes()))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let took = t0.elapsed();
    println!(
        "\nagent: {writes} sequential durable config writes over HTTP in {:.2} s = {:.0} writes/s",
        took.as_secs_f64(),
        writes as f64 / took.as_secs_f64()
    );
}
