//! Remote JWKS against an in-process HTTP server on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tribune_jwks::{FetchPolicy, RemoteKeys};
use tribune_jwt::JwtError;

#[derive(Default)]
struct Idp {
    kid: Mutex<String>,
    hits: AtomicUsize,
    /// Fail this many requests with 500 first.
    fail_next: AtomicUsize,
    delay_ms: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

fn jwks(kid: &str) -> String {
    json!({"keys": [{"kty": "oct", "kid": kid, "k": B64.encode([7u8; 32])}]}).to_string()
}

async fn keys(State(idp): State<Arc<Idp>>) -> axum::response::Response {
    idp.hits.fetch_add(1, Ordering::SeqCst);
    let delay = idp.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    if idp.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if idp.fail_next.load(Ordering::SeqCst) > 0 {
        idp.fail_next.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let kid = idp.kid.lock().unwrap().clone();
    ([("content-type", "application/json")], jwks(&kid)).into_response()
}

async fn serve() -> (Arc<Idp>, String) {
    let idp = Arc::new(Idp::default());
    *idp.kid.lock().unwrap() = "k1".into();
    let app = Router::new()
        .route("/keys", get(keys))
        .with_state(idp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (idp, format!("http://{addr}/keys"))
}

fn policy(uri: &str) -> FetchPolicy {
    FetchPolicy {
        uri: uri.to_string(),
        trusted_ca: None,
        tls_unsupported: None,
        use_sni: false,
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
        cache_duration: Duration::from_secs(60),
        retries: 0,
        base_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(40),
        issuer: String::new(),
    }
}

#[tokio::test]
async fn keys_are_cached_for_the_cache_duration_then_refetched() {
    let (idp, uri) = serve().await;
    let mut p = policy(&uri);
    p.cache_duration = Duration::from_millis(200);
    let remote = RemoteKeys::new(p).unwrap();
    assert!(remote.keys_for(Some("k1")).await.unwrap().has_kid("k1"));
    remote.keys_for(Some("k1")).await.unwrap();
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1, "served from the cache");
    tokio::time::sleep(Duration::from_millis(250)).await;
    remote.keys_for(Some("k1")).await.unwrap();
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        2,
        "refetched after CacheDuration"
    );
}

#[tokio::test]
async fn retries_on_server_errors_with_back_off() {
    let (idp, uri) = serve().await;
    idp.fail_next.store(2, Ordering::SeqCst);
    let mut p = policy(&uri);
    p.retries = 2;
    let remote = RemoteKeys::new(p).unwrap();
    assert!(remote.keys_for(None).await.is_ok());
    assert_eq!(idp.hits.load(Ordering::SeqCst), 3);
    let (idp2, uri2) = serve().await;
    idp2.fail_next.store(5, Ordering::SeqCst);
    let mut p = policy(&uri2);
    p.retries = 1;
    assert_eq!(
        RemoteKeys::new(p)
            .unwrap()
            .keys_for(None)
            .await
            .unwrap_err(),
        JwtError::KeysUnavailable
    );
    assert_eq!(
        idp2.hits.load(Ordering::SeqCst),
        2,
        "one try plus one retry"
    );
}

#[tokio::test]
async fn connection_refused_and_timeouts_fail_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/keys", listener.local_addr().unwrap());
    drop(listener);
    let mut p = policy(&dead);
    p.retries = 2;
    let start = std::time::Instant::now();
    assert_eq!(
        RemoteKeys::new(p)
            .unwrap()
            .keys_for(None)
            .await
            .unwrap_err(),
        JwtError::KeysUnavailable
    );
    assert!(start.elapsed() < Duration::from_secs(2));

    let (idp, uri) = serve().await;
    idp.delay_ms.store(1000, Ordering::SeqCst);
    let start = std::time::Instant::now();
    assert_eq!(
        RemoteKeys::new(policy(&uri))
            .unwrap()
            .keys_for(None)
            .await
            .unwrap_err(),
        JwtError::KeysUnavailable
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(900),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_rate_limited_refetch() {
    let (idp, uri) = serve().await;
    let remote = RemoteKeys::new(policy(&uri)).unwrap();
    remote.keys_for(Some("k1")).await.unwrap();
    *idp.kid.lock().unwrap() = "k2".into();
    let keys = remote.keys_for(Some("k2")).await.unwrap();
    assert!(
        keys.has_kid("k2"),
        "rotation picked up without waiting for CacheDuration"
    );
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
    // Right after a kid-triggered refetch, another unknown kid does not refetch.
    assert!(remote.keys_for(Some("k3")).await.is_ok());
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2, "rate-limited");
    // A storm of unknown kids on a fresh source: one refetch for all of them.
    let storm = Arc::new(RemoteKeys::new(policy(&uri)).unwrap());
    storm.keys_for(None).await.unwrap();
    assert_eq!(idp.hits.load(Ordering::SeqCst), 3);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let r = storm.clone();
        tasks.push(tokio::spawn(async move {
            r.keys_for(Some(&format!("attacker-{i}"))).await
        }));
    }
    for t in tasks {
        assert!(
            t.await.unwrap().is_ok(),
            "still answers with the current keys"
        );
    }
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        4,
        "one refetch for the whole storm"
    );
}

#[tokio::test]
async fn an_outage_keeps_the_last_good_keys_within_the_bound() {
    let (idp, uri) = serve().await;
    let mut p = policy(&uri);
    p.cache_duration = Duration::from_millis(100);
    let mut remote = RemoteKeys::new(p).unwrap();
    remote.max_stale = Duration::from_millis(400);
    remote.failure_pause_min = Duration::from_millis(100);
    remote.failure_pause_max = Duration::from_millis(100);
    remote.keys_for(Some("k1")).await.unwrap();
    idp.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        remote.keys_for(Some("k1")).await.unwrap().has_kid("k1"),
        "stale but within bound"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        remote.keys_for(Some("k1")).await.unwrap_err(),
        JwtError::KeysUnavailable,
        "too stale: fail closed"
    );
    idp.down.store(false, Ordering::SeqCst);
    // Right after a failed fetch, requests fail fast (no fetch) until the pause ends.
    let hits = idp.hits.load(Ordering::SeqCst);
    assert!(remote.keys_for(Some("k1")).await.is_err());
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        hits,
        "no fetch within the pause"
    );
    tokio::time::sleep(Duration::from_millis(130)).await;
    assert!(
        remote.keys_for(Some("k1")).await.is_ok(),
        "recovers when the IdP is back"
    );
}

/// Hardening against IdP outages (issue #42): 100 concurrent requests with no keys
/// while the key URI answers 503 cost one fetch with its retries, every request is
/// answered within `RequestTimeoutMs` (plus scheduling), and requests right after fail
/// fast without fetching until the jittered pause has passed.
#[tokio::test]
async fn an_idp_outage_costs_a_bounded_number_of_fetches_and_no_long_waits() {
    let (idp, uri) = serve().await;
    idp.down.store(true, Ordering::SeqCst);
    idp.delay_ms.store(50, Ordering::SeqCst);
    let mut p = policy(&uri);
    p.retries = 1;
    let remote = Arc::new(RemoteKeys::new(p).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let r = remote.clone();
        tasks.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let out = r.keys_for(Some("k1")).await;
            (out, started.elapsed())
        }));
    }
    for t in tasks {
        let (out, waited) = t.await.unwrap();
        assert_eq!(out.unwrap_err(), JwtError::KeysUnavailable);
        assert!(
            waited < Duration::from_millis(300 + 200),
            "waited {waited:?} (RequestTimeoutMs 300)"
        );
    }
    let fetched = idp.hits.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&fetched),
        "{fetched} fetches: at most NumRetries + 1"
    );
    for _ in 0..10 {
        let started = std::time::Instant::now();
        assert!(remote.keys_for(Some("k1")).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(20), "failed fast");
    }
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        fetched,
        "no fetch in the pause"
    );
}

#[test]
fn policy_defaults_follow_decisions_5() {
    let entry = tribune_model::parse_entry(
        "Kind = \"jwt-provider\"\nName = \"p\"\nJSONWebKeySet { Remote { URI = \"http://idp/keys\" RetryPolicy { NumRetries = 3 } } }",
    )
    .unwrap();
    let tribune_model::ConfigEntry::JwtProvider(p) = entry else {
        panic!()
    };
    let tribune_model::jwt_provider::JsonWebKeySet::Remote(r) = &p.json_web_key_set else {
        panic!()
    };
    let fp = FetchPolicy::from_remote(r);
    assert_eq!(
        (fp.timeout, fp.cache_duration, fp.retries),
        (Duration::from_secs(5), Duration::from_secs(300), 3)
    );
    assert_eq!(
        (fp.base_interval, fp.max_interval),
        (Duration::from_secs(1), Duration::from_secs(10))
    );
    for attempt in 1..10 {
        assert!(fp.backoff(attempt) <= Duration::from_secs(10));
    }
    assert!(RemoteKeys::new(FetchPolicy {
        uri: "ftp://idp/keys".into(),
        ..fp.clone()
    })
    .is_err());
    assert!(RemoteKeys::new(FetchPolicy {
        uri: "https://idp/keys".into(),
        tls_unsupported: Some("SDS".into()),
        ..fp
    })
    .err()
    .unwrap()
    .contains("SDS"));
}

/// An identity provider that publishes its keys only through OpenID Connect
/// discovery: `/.well-known/openid-configuration` names the issuer and `jwks_uri`.
async fn serve_discovery(issuer: &'static str) -> (Arc<Idp>, String) {
    let idp = Arc::new(Idp::default());
    *idp.kid.lock().unwrap() = "k1".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = json!({"issuer": issuer, "jwks_uri": format!("http://{addr}/keys")}).to_string();
    let app = Router::new()
        .route("/keys", get(keys))
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let doc = doc.clone();
                async move { ([("content-type", "application/json")], doc) }
            }),
        )
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        idp,
        format!("http://{addr}/.well-known/openid-configuration"),
    )
}

#[tokio::test]
async fn oidc_discovery_is_followed_and_its_issuer_must_match() {
    let (idp, uri) = serve_discovery("https://idp.example").await;
    let mut p = policy(&uri);
    p.issuer = "https://idp.example".into();
    let remote = RemoteKeys::new(p).unwrap();
    assert!(remote.keys_for(Some("k1")).await.unwrap().has_kid("k1"));
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        1,
        "the keys came from jwks_uri"
    );

    // A document for another issuer fails closed, saying why.
    let mut p = policy(&uri);
    p.issuer = "https://other.example".into();
    let err = RemoteKeys::new(p).unwrap().refresh().await.unwrap_err();
    assert!(
        err.contains("discovery document issuer \"https://idp.example\" does not match the provider's Issuer \"https://other.example\""),
        "{err}"
    );
    // The checks on the document itself.
    let d = |v: serde_json::Value| v.to_string().into_bytes();
    let check = tribune_jwks::discovered_jwks_uri;
    assert!(check(&d(json!({"issuer": "i"})), "i", "http://x")
        .unwrap_err()
        .contains("no jwks_uri"));
    assert!(check(
        &d(json!({"issuer": "i", "jwks_uri": "http://x/k"})),
        "i",
        "https://x"
    )
    .unwrap_err()
    .contains("must be https://"));
    assert_eq!(
        check(
            &d(json!({"issuer": "i", "jwks_uri": "https://x/k"})),
            "i",
            "https://x"
        ),
        Ok("https://x/k".to_string())
    );
    assert!(check(b"not json", "i", "http://x")
        .unwrap_err()
        .contains("not JSON"));
}

/// An identity provider whose discovery document names `jwks_uri` as given.
async fn serve_discovery_naming(jwks_uri: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = json!({"issuer": "https://idp.example", "jwks_uri": jwks_uri}).to_string();
    let app = Router::new().route(
        "/.well-known/openid-configuration",
        get(move || {
            let doc = doc.clone();
            async move { ([("content-type", "application/json")], doc) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/.well-known/openid-configuration")
}

/// Audit (round 3, item 15): a discovery document's `jwks_uri` could point anywhere,
/// cloud metadata paths included, and any service token could trigger the fetch
/// through `jwt-provider check`. A `jwks_uri` on another host that is, or resolves
/// to, a link-local or metadata address is refused before anything is sent.
#[tokio::test]
async fn a_discovery_document_cannot_aim_key_fetches_at_metadata_services() {
    for target in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fe80::1]/keys",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/latest/meta-data/",
    ] {
        let uri = serve_discovery_naming(target.into()).await;
        let mut p = policy(&uri);
        p.issuer = "https://idp.example".into();
        let err = RemoteKeys::new(p).unwrap().refresh().await.unwrap_err();
        assert!(
            err.contains("refused (cloud metadata services answer there)"),
            "{target}: {err}"
        );
    }
    // Another host that is not link-local is followed (here: localhost, by name).
    let (_idp, keys_uri) = serve().await;
    let uri = serve_discovery_naming(keys_uri.replace("127.0.0.1", "localhost")).await;
    let mut p = policy(&uri);
    p.issuer = "https://idp.example".into();
    assert!(RemoteKeys::new(p).unwrap().refresh().await.is_ok());
    // The address table.
    use std::net::IpAddr;
    for (ip, want) in [
        ("169.254.169.254", true),
        ("169.254.0.1", true),
        ("::ffff:169.254.169.254", true),
        ("fe80::abcd", true),
        ("127.0.0.1", false),
        ("10.0.0.1", false),
        ("2001:db8::1", false),
    ] {
        assert_eq!(
            tribune_jwks::link_local_or_metadata(ip.parse::<IpAddr>().unwrap()),
            want,
            "{ip}"
        );
    }
}
