//! Hardening round 3, item 5: one bad entry froze a service's sidecars, key
//! revocations included. The mesh admin removed a compromised key `k1` and published
//! `k2`, but the sidecar could not install the document (a bad regex beside the
//! provider): k1 tokens kept getting 200 and k2 tokens 401, while `/ready` said LIVE.
//! Now a sidecar that cannot install a document keeps its last policy with the new
//! key sets of its providers, and says so in `/ready` and its metrics.

use super::{okta, okta_required, raw, token, NOW};
use crate::support::*;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An agent that answers every snapshot query with the current (index, body), after
/// a short wait (a blocking query's stand-in, so the watch does not spin).
async fn fake_agent(state: Arc<Mutex<(u64, String)>>) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                let (index, body) = state.lock().unwrap().clone();
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: {index}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

/// `proxy` watches api's policy on `agent`.
fn watch(proxy: &Arc<tribune_proxy::Proxy>, agent: std::net::SocketAddr) {
    tokio::spawn(tribune_proxy::watch::watch_agent(
        proxy.clone(),
        tribune_client::Client::new(&tribune_client::Target {
            addr: agent.to_string(),
            token: None,
            ..Default::default()
        })
        .unwrap(),
        "api".into(),
    ));
}

fn document(entries: Vec<serde_json::Value>) -> String {
    json!({"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny", "Entries": entries})
        .to_string()
}

#[tokio::test]
async fn a_document_that_cannot_be_installed_still_rotates_the_keys_and_says_so() {
    let (k1, k2) = (Es256::new("k1"), Es256::new("k2"));
    let upstream = echo().await;
    let (proxy, edge, _) = proxy(upstream.addr, NOW).await;
    let state = Arc::new(Mutex::new((
        5,
        document(vec![okta(&k1, None), okta_required()]),
    )));
    watch(&proxy, fake_agent(state.clone()).await);
    until("the first policy", Duration::from_secs(5), || proxy.ready()).await;
    let status = |key: &Es256| {
        let t = token(key, "https://okta.example");
        async move {
            let answer = raw(
                edge,
                &format!("GET /x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"),
            )
            .await;
            answer.split_whitespace().nth(1).unwrap_or("").to_string()
        }
    };
    assert_eq!(
        (status(&k1).await, status(&k2).await),
        ("200".into(), "401".into())
    );

    // k1 is revoked, k2 published, beside an intention this sidecar cannot compile.
    let bad = json!({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "*",
        "Permissions": [{"Action": "deny", "HTTP": {"PathRegex": "/admin(unclosed"}}]}]});
    *state.lock().unwrap() = (9, document(vec![okta(&k2, None), okta_required(), bad]));
    until("the failed install", Duration::from_secs(5), || {
        proxy.install_failure().is_some()
    })
    .await;
    assert_eq!(
        (status(&k1).await, status(&k2).await),
        ("401".into(), "200".into())
    );
    let ready = tribune_proxy::admin::answer(&proxy, "/ready");
    assert_eq!(ready.status(), 200);
    let body = {
        use http_body_util::BodyExt;
        String::from_utf8(
            ready
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    };
    assert!(
        body.contains("POLICY_NOT_INSTALLED") && body.contains("index 9"),
        "{body}"
    );
    let metrics = tribune_proxy::metrics::render(&proxy.metrics);
    assert!(
        metrics.contains("tribune_proxy_policy_install_failed 1"),
        "{metrics}"
    );

    // A good document again: installed, and the notice is gone.
    *state.lock().unwrap() = (12, document(vec![okta(&k2, None), okta_required()]));
    until("the next install", Duration::from_secs(5), || {
        proxy.install_failure().is_none()
    })
    .await;
    assert!(tribune_proxy::metrics::render(&proxy.metrics)
        .contains("tribune_proxy_policy_install_failed 0"));
}

/// Upgrades (issue #41): an agent newer than the sidecar serves a document of a newer
/// format; the sidecar keeps enforcing its last policy and says why in `/ready`.
#[tokio::test]
async fn a_document_of_a_newer_format_keeps_the_last_policy_and_says_why() {
    let upstream = echo().await;
    let (proxy, _edge, _) = proxy(upstream.addr, NOW).await;
    let state = Arc::new(Mutex::new((5, document(vec![]))));
    watch(&proxy, fake_agent(state.clone()).await);
    until("the first policy", Duration::from_secs(5), || proxy.ready()).await;
    let newer = json!({"Format": 2, "Service": "api", "Protocol": "http",
        "DefaultIntentionPolicy": "deny", "Entries": [], "SomethingNew": true});
    *state.lock().unwrap() = (9, newer.to_string());
    until("the refused install", Duration::from_secs(5), || {
        proxy.install_failure().is_some()
    })
    .await;
    let why = proxy.install_failure().unwrap();
    assert!(
        why.contains("Format: this policy document is format 2")
            && why.contains("upgrade the sidecar"),
        "{why}"
    );
    assert!(proxy.ready(), "still enforcing its last policy");
}
