//! Key sets at run time: a `Local.Filename` key set is re-read when the file changes;
//! a remote key set follows the provider's key rotation with no restart, keeps its
//! keys while the provider is down, and fails closed for keys it never saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const NOW: i64 = 1_700_000_000;

fn allow_with_jwt() -> Value {
    json!({
        "Kind": "service-intentions", "Name": "api",
        "Sources": [{"Name": "*", "Action": "allow"}],
        "JWT": {"Providers": [{"Name": "idp"}]},
    })
}

fn token(key: &Es256) -> String {
    format!(
        "Bearer {}",
        key.sign(&json!({"iss": "https://idp.example", "exp": NOW + 600}))
    )
}

async fn status(addr: std::net::SocketAddr, auth: &str) -> u16 {
    send(
        &client(),
        "GET",
        &format!("http://{addr}/x"),
        &[("authorization", auth)],
    )
    .await
    .unwrap()
    .status
}

async fn eventually(addr: std::net::SocketAddr, auth: &str, want: u16, within: Duration) {
    let start = Instant::now();
    loop {
        let got = status(addr, auth).await;
        if got == want {
            return;
        }
        assert!(start.elapsed() < within, "still {got}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jwks_json(keys: &[&Es256]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

#[tokio::test]
async fn a_jwks_file_is_reread_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let (k1, k2) = (Es256::new("one"), Es256::new("two"));
    std::fs::write(&path, jwks_json(&[&k1])).unwrap();
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    let provider = json!({
        "Kind": "jwt-provider", "Name": "idp", "Issuer": "https://idp.example",
        "JSONWebKeySet": {"Local": {"Filename": path.to_str().unwrap()}},
    });
    proxy
        .install(
            doc("api", "http", "deny", vec![provider, allow_with_jwt()]),
            0,
        )
        .await
        .unwrap();
    assert_eq!(status(addr, &token(&k1)).await, 200);
    assert_eq!(status(addr, &token(&k2)).await, 401);
    // Rotate: the file now holds only key two.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&path, jwks_json(&[&k2])).unwrap();
    eventually(addr, &token(&k2), 200, Duration::from_secs(5)).await;
    assert_eq!(status(addr, &token(&k1)).await, 401, "the old key is gone");
    // A broken file keeps the last good keys.
    std::fs::write(&path, "{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(addr, &token(&k2)).await, 200);
}

/// A JWKS endpoint whose keys the test changes, and can take down.
struct Idp {
    addr: std::net::SocketAddr,
    keys: Arc<Mutex<String>>,
    up: Arc<std::sync::atomic::AtomicBool>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

async fn idp(initial: String) -> Idp {
    use std::sync::atomic::Ordering;
    let keys = Arc::new(Mutex::new(initial));
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (k, u, f) = (keys.clone(), up.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (k, u, f) = (k.clone(), u.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                if u.load(Ordering::SeqCst) {
                    (axum::http::StatusCode::OK, k.lock().unwrap().clone())
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new())
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Idp {
        addr,
        keys,
        up,
        fetches,
    }
}

#[tokio::test]
async fn remote_keys_follow_rotation_survive_an_outage_and_fail_closed_for_unknown_keys() {
    use std::sync::atomic::Ordering;
    let (k1, k2, k3) = (Es256::new("one"), Es256::new("two"), Es256::new("three"));
    let server = idp(jwks_json(&[&k1])).await;
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    let provider = json!({
        "Kind": "jwt-provider", "Name": "idp", "Issuer": "https://idp.example",
        "JSONWebKeySet": {"Remote": {
            "URI": format!("http://{}/jwks", server.addr),
            "CacheDuration": "5m", "RequestTimeoutMs": 500,
        }},
    });
    proxy
        .install(
            doc("api", "http", "deny", vec![provider, allow_with_jwt()]),
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "fetched before serving (FetchAsynchronously = false)"
    );
    assert_eq!(status(addr, &token(&k1)).await, 200);

    // The provider rotates to key two: a token with the new kid triggers one refetch.
    *server.keys.lock().unwrap() = jwks_json(&[&k1, &k2]);
    assert_eq!(status(addr, &token(&k2)).await, 200, "no restart needed");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);

    // Provider down: cached keys keep working; a never-seen key fails closed.
    server.up.store(false, Ordering::SeqCst);
    assert_eq!(status(addr, &token(&k1)).await, 200);
    assert_eq!(status(addr, &token(&k2)).await, 200);
    let r = send(
        &client(),
        "GET",
        &format!("http://{addr}/x"),
        &[("authorization", &token(&k3))],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.body, "Jwks doesn't have key to match kid or alg from Jwt");
}

#[tokio::test]
async fn fetch_asynchronously_serves_at_once_and_fails_closed_until_keys_arrive() {
    let k1 = Es256::new("one");
    let server = idp(jwks_json(&[&k1])).await;
    server.up.store(false, std::sync::atomic::Ordering::SeqCst);
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    let provider = json!({
        "Kind": "jwt-provider", "Name": "idp", "Issuer": "https://idp.example",
        "JSONWebKeySet": {"Remote": {
            "URI": format!("http://{}/jwks", server.addr), "FetchAsynchronously": true,
            "RequestTimeoutMs": 200,
        }},
    });
    let started = Instant::now();
    proxy
        .install(
            doc("api", "http", "deny", vec![provider, allow_with_jwt()]),
            0,
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "install did not wait for the fetch"
    );
    let r = send(
        &client(),
        "GET",
        &format!("http://{addr}/x"),
        &[("authorization", &token(&k1))],
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "Jwks remote fetch is failed")
    );
    // The background fetch keeps trying; once the provider is up, tokens verify.
    server.up.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(addr, &token(&k1), 200, Duration::from_secs(5)).await;
}

/// Fail static across restarts for keys too: a sidecar restarted while the provider is
/// down verifies tokens with the key set it saved (state file), and fails closed
/// without one.
#[tokio::test]
async fn a_restart_while_the_provider_is_down_verifies_with_the_saved_key_set() {
    use std::sync::atomic::Ordering;
    let k1 = Es256::new("one");
    let server = idp(jwks_json(&[&k1])).await;
    let upstream = echo().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = json!({
        "Kind": "jwt-provider", "Name": "idp", "Issuer": "https://idp.example",
        "JSONWebKeySet": {"Remote": {
            "URI": format!("http://{}/jwks", server.addr),
            "CacheDuration": "5m", "RequestTimeoutMs": 300,
        }},
    });
    let policy = || {
        doc(
            "api",
            "http",
            "deny",
            vec![provider.clone(), allow_with_jwt()],
        )
    };
    let state = || {
        Arc::new(
            tribune_proxy::state::StateFile::open(
                dir.path(),
                "api",
                tribune_proxy::state::DEFAULT_MAX_AGE,
            )
            .unwrap(),
        )
    };
    {
        let (first, addr, _) = proxy(upstream.addr, NOW).await;
        first.save_state_to(state());
        first.install(policy(), 0).await.unwrap();
        assert_eq!(status(addr, &token(&k1)).await, 200);
    }
    let saved = state().get();
    assert_eq!(saved.jwks.len(), 1, "the fetched key set is saved");

    // The provider answers 503 from now on.
    server.up.store(false, Ordering::SeqCst);
    let (restarted, addr, _) = proxy(upstream.addr, NOW).await;
    restarted.save_state_to(state());
    restarted.install(policy(), 0).await.unwrap();
    assert_eq!(
        status(addr, &token(&k1)).await,
        200,
        "verified with the saved keys"
    );

    // Without a state file the same restart fails closed.
    let (bare, addr, _) = proxy(upstream.addr, NOW).await;
    bare.install(policy(), 0).await.unwrap();
    assert_eq!(status(addr, &token(&k1)).await, 401);
}
