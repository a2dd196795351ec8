//! Hardening round 3, item 3: a revoked token stops a sidecar.
//!
//! Before: when the agent answered 401/403 (token missing, revoked, or without
//! `service:write`), the sidecar logged "no agent answered", started from its saved
//! registration, identity and policy, and `/ready` said 200 LIVE for up to
//! `-state-max-age` (24 h). Now a refusal is not an outage: a running sidecar says so
//! in `/ready` (503) and its metrics as soon as the agent refuses its token (the
//! agent ends a waiting query at once when the token is deleted), and a restart with
//! the refused token does not start, saved state or not.
use crate::support::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tribune_client::{Client, Target};

fn client(agent: SocketAddr, token: &str) -> Client {
    Client::new(&Target {
        addr: agent.to_string(),
        token: Some(token.into()),
        ..Default::default()
    })
    .unwrap()
}

async fn put_json(c: &Client, path: &str, body: Value) -> Value {
    let r = c
        .request("PUT", path, Some(body.to_string().into_bytes()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let r = client(admin, "").request("GET", path, None).await.unwrap();
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_turns_the_sidecar_unready_and_a_restart_does_not_use_saved_state() {
    let mut config = tribune_server::AgentConfig::default();
    config.acl.enabled = true;
    config.acl.default_policy = "deny".into();
    config.acl.initial_management = Some("root".into());
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (_agent, agent) = start_agent_with(store, "127.0.0.1:0".parse().unwrap(), config);
    let root = client(agent, "root");
    let app = echo().await;
    put_json(
        &root,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    put_json(
        &root,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "api",
        "Sources": [{"Name": "*", "Action": "allow"}]}),
    )
    .await;
    put_json(
        &root,
        "/v1/agent/service/register",
        json!({"Name": "api", "Port": app.addr.port(),
               "Connect": {"SidecarService": {"Port": free_port()}}}),
    )
    .await;
    let policy = put_json(
        &root,
        "/v1/acl/policy",
        json!({"Name": "api-sidecar", "Rules": "service_prefix \"api\" { policy = \"write\" }"}),
    )
    .await;
    let token = put_json(
        &root,
        "/v1/acl/token",
        json!({"Policies": [{"ID": policy["ID"]}]}),
    )
    .await;
    let secret = token["SecretID"].as_str().unwrap().to_string();
    let accessor = token["AccessorID"].as_str().unwrap().to_string();

    let state_dir = tempfile::tempdir().unwrap();
    let mut settings = tribune_proxy::run::Settings::new(Target {
        addr: agent.to_string(),
        token: Some(secret.clone()),
        ..Default::default()
    });
    settings.sidecar_for = Some("api".into());
    settings.admin_bind = "127.0.0.1:0".parse().unwrap();
    settings.state_dir = Some(state_dir.path().to_path_buf());
    let started = tribune_proxy::run::start(settings.clone()).await.unwrap();
    let admin = started.listeners.admin;
    until("api's policy", Duration::from_secs(5), || {
        started.proxy.ready()
    })
    .await;
    let (status, body) = admin_get(admin, "/ready").await;
    assert_eq!((status, body.starts_with("LIVE")), (200, true), "{body}");

    // Revoked: the waiting watches end with 403 at once.
    let r = root
        .request("DELETE", &format!("/v1/acl/token/{accessor}"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    until("the refusal", Duration::from_secs(5), || {
        started.proxy.token_refused().is_some()
    })
    .await;
    let (status, body) = admin_get(admin, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("TOKEN_REFUSED") && body.contains("403"),
        "{body}"
    );
    let (_, metrics) = admin_get(admin, "/stats/prometheus").await;
    assert!(
        metrics.contains("tribune_proxy_agent_token_refused 1"),
        "{metrics}"
    );

    // A restart with the revoked token does not start, though state was saved.
    assert!(state_dir.path().read_dir().unwrap().next().is_some());
    let e = tribune_proxy::run::start(settings.clone())
        .await
        .err()
        .unwrap();
    assert!(
        e.contains("refused this sidecar's ACL token") && e.contains("403"),
        "{e}"
    );
    // Nor with no token at all (anonymous is denied here).
    settings.agent.token = None;
    let e = tribune_proxy::run::start(settings).await.err().unwrap();
    assert!(e.contains("refused this sidecar's ACL token"), "{e}");
}

#[test]
fn every_watch_has_a_refusal_slot() {
    for (i, w) in tribune_proxy::Watch::ALL.iter().enumerate() {
        assert_eq!(*w as usize, i);
    }
}
