//! Live config from a real (in-process) agent: changes flow in, the proxy keeps
//! enforcing while the agent is down (fail static), and picks up changes again once
//! it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tribune_client::{Client, Target};

async fn write(client: &Client, entry: serde_json::Value) {
    let r = client
        .request("PUT", "/v1/config", Some(entry.to_string().into_bytes()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn status_becomes(addr: SocketAddr, want: u16, within: Duration) -> Duration {
    let c = client();
    let start = Instant::now();
    loop {
        let r = send(&c, "GET", &format!("http://{addr}/x"), &[]).await;
        if r.as_ref().map(|r| r.status) == Ok(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "status never became {want}: {:?}",
            r.map(|r| r.status)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_flow_live_and_the_proxy_fails_static_while_the_agent_is_down() {
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (agent, agent_addr) = start_agent(store.clone(), "127.0.0.1:0".parse().unwrap());
    let api = Client::new(&Target {
        addr: agent_addr.to_string(),
        token: None,
        ..Default::default()
    })
    .unwrap();
    write(
        &api,
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    write(&api, json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "allow"}]})).await;

    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, 0).await;
    let watcher = tokio::spawn(tribune_proxy::watch::watch_agent(
        proxy.clone(),
        Client::new(&Target {
            addr: agent_addr.to_string(),
            token: None,
            ..Default::default()
        })
        .unwrap(),
        "api".into(),
    ));
    status_becomes(addr, 200, Duration::from_secs(5)).await;
    assert!(proxy.current().unwrap().index > 0);

    // A change is enforced quickly (blocking query, not polling).
    write(&api, json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "deny"}]})).await;
    let took = status_becomes(addr, 403, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let version = proxy.current().unwrap().version;

    // Agent down: the last snapshot keeps being enforced.
    drop(agent);
    for _ in 0..20 {
        let r = send(&client(), "GET", &format!("http://{addr}/x"), &[])
            .await
            .unwrap();
        assert_eq!(r.status, 403);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(proxy.current().unwrap().version, version);

    // Agent back on the same address and store: changes flow again.
    let (_agent, _) = start_agent(store, agent_addr);
    write(&api, json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "allow"}]})).await;
    status_becomes(addr, 200, Duration::from_secs(15)).await;
    assert!(proxy.current().unwrap().version > version);
    watcher.abort();
}
