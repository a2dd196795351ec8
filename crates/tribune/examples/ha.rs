//! HA benchmark (issue #16): a real 3-member etcd on loopback, agents over it, and
//! in-process sidecar watchers, against the embedded store.
//!
//!   bench/ha.sh            (= cargo run --release -p tribune --features etcd --example ha)
//!
//! 1. Config write throughput and p99 latency: embedded (durable redb) vs etcd through
//!    1 agent and through 3 agents, with 1 and 3 concurrent writers.
//! 2. Propagation: a write through agent A until 100 sidecar watchers (a third each
//!    on agents A, B and C) enforce it; p50/p99/max over the changes.
//! 3. Failover: 10 watchers listing `A,B`; agent A is killed (its runtime dropped:
//!    every connection closes), then a change is written through B: time until all
//!    10 enforce it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tribune_authz::RequestFacts;
use tribune_client::{Client, Target};
use tribune_proxy::{Proxy, ProxyConfig};
use tribune_store::Store;
use tribune_store_etcd::{EtcdConfig, EtcdStore};
use tribune_test_support::etcd::Cluster;

/// An agent on its own runtime, so that killing it closes every connection.
struct Agent {
    addr: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl Agent {
    fn start<F>(store: impl FnOnce() -> F) -> Agent
    where
        F: std::future::Future<Output = Arc<dyn Store>>,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = rt.block_on(async move {
            // Created on the agent's runtime: the etcd store's watch task runs there.
            let state = tribune_server::AppState::new(store().await, Default::default())
                .await
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            tokio::spawn(async move {
                axum::serve(listener, tribune_server::router(state))
                    .await
                    .unwrap()
            });
            addr
        });
        Agent { addr, rt: Some(rt) }
    }

    fn etcd(cluster: &Cluster) -> Agent {
        let cfg = EtcdConfig {
            endpoints: cluster.endpoints(),
            prefix: "/bench/".into(),
            ..EtcdConfig::default()
        };
        Agent::start(
            move || async move { EtcdStore::connect(&cfg).await.unwrap() as Arc<dyn Store> },
        )
    }

    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn client(addr: &str) -> Client {
    Client::new(&Target {
        addr: addr.into(),
        token: None,
        ..Default::default()
    })
    .unwrap()
}

async fn put(c: &Client, body: String) -> Duration {
    let t0 = Instant::now();
    let r = c
        .request("PUT", "/v1/config", Some(body.into_bytes()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    t0.elapsed()
}

/// `writers` concurrent writers, writer i through `agents[i % len]`, `per` writes each.
async fn writes(agents: &[String], writers: usize, per: usize, tag: &str) -> (f64, Duration) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let c = client(&agents[w % agents.len()]);
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..per {
                let body = format!(
                    r#"{{"Kind":"service-defaults","Name":"{tag}-{w}-{i}","Protocol":"http"}}"#
                );
                lat.push(put(&c, body).await);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = t0.elapsed();
    all.sort();
    (
        all.len() as f64 / took.as_secs_f64(),
        percentile(&all, 0.99),
    )
}

fn allows(p: &Proxy) -> Option<bool> {
    Some(
        p.current()?
            .table
            .evaluate(&RequestFacts::l4(None))
            .allowed(),
    )
}

fn intention(allow: bool) -> String {
    format!(
        r#"{{"Kind":"service-intentions","Name":"api","Sources":[{{"Name":"*","Action":"{}"}}]}}"#,
        if allow { "allow" } else { "deny" }
    )
}

async fn until_all(proxies: &[Arc<Proxy>], allow: bool, t0: Instant, samples: &mut Vec<Duration>) {
    let mut pending: Vec<usize> = (0..proxies.len()).collect();
    while !pending.is_empty() {
        pending.retain(|&i| {
            if allows(&proxies[i]) == Some(allow) {
                samples.push(t0.elapsed());
                false
            } else {
                true
            }
        });
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "not enforced in 30 s"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// 100 watchers (a third on each agent) and 20 changes written through the first.
async fn propagation(e: &[String], table: &str) -> bool {
    let c = client(&e[0]);
    put(&c, intention(false)).await;
    let mut proxies = Vec::new();
    let mut watchers = Vec::new();
    for i in 0..100 {
        let p = Proxy::new(ProxyConfig::new("127.0.0.1:9".parse().unwrap()));
        watchers.push(tokio::spawn(tribune_proxy::watch::watch_agent(
            p.clone(),
            client(&e[i % 3]),
            "api".into(),
        )));
        proxies.push(p);
    }
    until_all(&proxies, false, Instant::now(), &mut Vec::new()).await;
    let mut samples = Vec::new();
    let mut allow = false;
    let changes = 20;
    for _ in 0..changes {
        allow = !allow;
        put(&c, intention(allow)).await;
        let t0 = Instant::now();
        until_all(&proxies, allow, t0, &mut samples).await;
    }
    samples.sort();
    println!("## Propagation ({table}): write via A, 100 watchers on A, B, C, {changes} changes\n");
    println!(
        "p50 {}, p99 {}, max {}\n",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
    for w in watchers {
        w.abort();
    }
    allow
}

fn main() {
    let per: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let embedded = Agent::start(move || async move {
        Arc::new(tribune_store::RedbStore::open(&path).unwrap()) as Arc<dyn Store>
    });
    let mut etcd_agents: Vec<Agent> = (0..3).map(|_| Agent::etcd(&cluster)).collect();
    let e: Vec<String> = etcd_agents.iter().map(|a| a.addr.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        propagation(&e, "a near-empty config table").await;
        println!("## Config writes ({per} per writer, service-defaults over HTTP)\n");
        println!("| store | agents | writers | writes/s | p99 |");
        println!("|---|---:|---:|---:|---:|");
        for (name, agents, writers) in [
            ("embedded (redb, fsync)", vec![embedded.addr.clone()], 1),
            ("embedded (redb, fsync)", vec![embedded.addr.clone()], 3),
            ("etcd, 3 members", vec![e[0].clone()], 1),
            ("etcd, 3 members", vec![e[0].clone()], 3),
            ("etcd, 3 members", e.clone(), 3),
        ] {
            let tag = format!("w{}-{writers}-{}", agents.len(), name.len());
            let (rate, p99) = writes(&agents, writers, per, &tag).await;
            println!(
                "| {name} | {} | {writers} | {rate:.0} | {} |",
                agents.len(),
                ms(p99)
            );
        }

        let mut allow = propagation(&e, "after the writes: ~1 400 entries").await;
        let failover: Vec<Arc<Proxy>> = (0..10)
            .map(|_| {
                let p = Proxy::new(ProxyConfig::new("127.0.0.1:9".parse().unwrap()));
                tokio::spawn(tribune_proxy::watch::watch_agent(
                    p.clone(),
                    client(&format!("{},{}", e[0], e[1])),
                    "api".into(),
                ));
                p
            })
            .collect();
        until_all(&failover, allow, Instant::now(), &mut Vec::new()).await;
        etcd_agents[0].kill();
        let t_kill = Instant::now();
        allow = !allow;
        put(&client(&e[1]), intention(allow)).await;
        let mut after = Vec::new();
        until_all(&failover, allow, t_kill, &mut after).await;
        after.sort();
        println!("\n## Failover: agent A killed, change via B, 10 watchers listing A,B\n");
        println!(
            "from the kill: all 10 enforce the change after {} (first {})",
            ms(*after.last().unwrap()),
            ms(after[0])
        );
    });
}
