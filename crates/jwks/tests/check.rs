//! `jwt-provider check` (tribune_jwks::check): each step of a fetch reported, against
//! a good provider, a 404, a non-JSON body, a refused connection, OpenID Connect
//! discovery (and a wrong issuer), https with the right and a wrong CA, local key sets;
//! and a token's verification explained check by check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::hmac;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use tribune_jwks::check::{check, ClaimCheckKind, Report, StepKind};
use tribune_model::{ConfigEntry, JwtProvider};

const SECRET: [u8; 32] = [7; 32];
const NOW: i64 = 1_800_000_000;

fn key_set() -> String {
    json!({"keys": [
        {"kty": "oct", "kid": "k1", "alg": "HS256", "k": B64.encode(SECRET)},
        {"kty": "RSA", "kid": "weak", "n": "AQAB", "e": "AQAB"}
    ]})
    .to_string()
}

fn mint(payload: Value) -> String {
    let h = B64.encode(json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}).to_string());
    let p = B64.encode(payload.to_string());
    let input = format!("{h}.{p}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);
    let sig = B64.encode(hmac::sign(&key, input.as_bytes()).as_ref());
    format!("{input}.{sig}")
}

fn provider(entry: Value) -> JwtProvider {
    let mut e = json!({"Kind": "jwt-provider", "Name": "okta"});
    for (k, v) in entry.as_object().unwrap() {
        e[k] = v.clone();
    }
    match tribune_model::parse_entry(&e.to_string()) {
        Ok(ConfigEntry::JwtProvider(p)) => p,
        other => panic!("{other:?}"),
    }
}

fn remote(uri: &str) -> JwtProvider {
    provider(json!({
        "Issuer": "https://idp.example",
        "Audiences": ["api"],
        "JSONWebKeySet": {"Remote": {"URI": uri, "RequestTimeoutMs": 2000}}
    }))
}

/// An http identity provider: good keys, a 404, an HTML page, and discovery documents
/// for the right and a wrong issuer.
async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = |issuer: &str| {
        json!({"issuer": issuer, "jwks_uri": format!("http://{addr}/keys")}).to_string()
    };
    let (good, wrong) = (doc("https://idp.example"), doc("https://evil.example"));
    let app = Router::new()
        .route(
            "/keys",
            get(|| async { ([("content-type", "application/json")], key_set()) }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/page",
            get(|| async { ([("content-type", "text/html")], "<html>login</html>") }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { good }),
        )
        .route(
            "/wrong/.well-known/openid-configuration",
            get(move || async move { wrong }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn kinds(r: &Report) -> Vec<(&'static str, bool)> {
    r.steps.iter().map(|s| (s.step.as_str(), s.ok)).collect()
}

fn last_detail(r: &Report) -> &str {
    &r.steps.last().unwrap().detail
}

#[tokio::test]
async fn a_good_provider_reports_every_step_and_each_key() {
    let base = serve().await;
    let r = check(&remote(&format!("{base}/keys")), None, NOW).await;
    assert_eq!(
        kinds(&r),
        [
            ("source", true),
            ("dns", true),
            ("tcp", true),
            ("http", true),
            ("keys", true)
        ],
        "{}",
        r.render()
    );
    assert!(r.ok);
    assert_eq!(r.steps[1].detail.split(' ').next(), Some("127.0.0.1"));
    assert!(
        r.steps[3].detail.starts_with("HTTP 200 OK"),
        "{}",
        r.steps[3].detail
    );
    assert_eq!(last_detail(&r), "1 usable key, 1 skipped");
    assert_eq!(r.keys.len(), 2);
    assert_eq!(
        (
            r.keys[0].kid.as_deref(),
            r.keys[0].usable,
            r.keys[0].algorithms.clone()
        ),
        (Some("k1"), true, vec!["HS256".to_string()])
    );
    assert!(!r.keys[1].usable);
    assert!(r.keys[1].problem.as_deref().unwrap().contains("below 2048"));
    let text = r.render();
    assert!(text.contains("FAIL key 1: kid \"weak\", kty RSA"), "{text}");
    assert!(text.ends_with("Result: OK\n"), "{text}");
}

#[tokio::test]
async fn a_token_is_verified_as_the_sidecar_verifies_it_and_each_check_is_shown() {
    let base = serve().await;
    let p = remote(&format!("{base}/keys"));
    let good =
        mint(json!({"iss": "https://idp.example", "aud": "api", "exp": NOW + 60, "sub": "alice"}));
    let r = check(&p, Some(&good), NOW).await;
    let t = r.token.as_ref().unwrap();
    assert!(r.ok && t.verified, "{}", r.render());
    assert_eq!(t.header.as_ref().unwrap()["kid"], "k1");
    assert_eq!(t.claims.as_ref().unwrap()["sub"], "alice");
    let checks: Vec<_> = t.checks.iter().map(|c| (c.check, c.ok)).collect();
    assert_eq!(
        checks,
        [
            (ClaimCheckKind::Signature, Some(true)),
            (ClaimCheckKind::Issuer, Some(true)),
            (ClaimCheckKind::Audiences, Some(true)),
            (ClaimCheckKind::Expiry, Some(true)),
            (ClaimCheckKind::NotBefore, None),
        ]
    );

    // Expired and for another audience: both checks fail; the sidecar's reason is the
    // first it meets.
    let bad = mint(json!({"iss": "https://idp.example", "aud": "web", "exp": NOW - 600}));
    let r = check(&p, Some(&bad), NOW).await;
    let t = r.token.as_ref().unwrap();
    assert!(!r.ok && !t.verified);
    assert_eq!(t.error.as_deref(), Some("Jwt is expired"));
    let failed: Vec<_> = t
        .checks
        .iter()
        .filter(|c| c.ok == Some(false))
        .map(|c| c.check)
        .collect();
    assert_eq!(failed, [ClaimCheckKind::Audiences, ClaimCheckKind::Expiry]);
    let text = r.render();
    assert!(
        text.contains("FAIL expiry    Jwt is expired: exp 1799999400 (600 s ago"),
        "{text}"
    );
    assert!(text.contains("claims (unverified)"), "{text}");
    assert!(text.ends_with("Result: FAILED\n"), "{text}");

    // A tampered signature.
    let (input, sig) = good.rsplit_once('.').unwrap();
    let first = if sig.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{input}.{first}{}", &sig[1..]);
    let t = check(&p, Some(&tampered), NOW).await.token.unwrap();
    assert_eq!(t.error.as_deref(), Some("Jwt verification fails"));
    assert_eq!(t.checks[0].ok, Some(false));
    // Not a JWT at all.
    let t = check(&p, Some("abc"), NOW).await.token.unwrap();
    assert!(t.header.is_none() && !t.verified);
}

#[tokio::test]
async fn a_404_a_non_json_body_and_a_refused_connection_fail_at_their_step() {
    let base = serve().await;
    let r = check(&remote(&format!("{base}/missing")), None, NOW).await;
    assert!(!r.ok);
    assert_eq!(r.steps.last().unwrap().step, StepKind::Http);
    assert!(
        last_detail(&r).starts_with("HTTP 404 Not Found"),
        "{}",
        r.render()
    );

    let r = check(&remote(&format!("{base}/page")), None, NOW).await;
    assert!(!r.ok);
    assert_eq!(kinds(&r).last(), Some(&("keys", false)));
    assert!(
        last_detail(&r).starts_with("JWKS is not valid JSON"),
        "{}",
        r.render()
    );
    assert!(r.steps[3].detail.contains("text/html"), "{}", r.render());

    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let r = check(&remote(&format!("http://127.0.0.1:{port}/keys")), None, NOW).await;
    assert_eq!(kinds(&r).last(), Some(&("tcp", false)), "{}", r.render());
    assert!(last_detail(&r).contains("refused"), "{}", r.render());
    // Not http(s).
    let r = check(&remote("ftp://127.0.0.1/keys"), None, NOW).await;
    assert_eq!(kinds(&r), [("source", false)]);
}

#[tokio::test]
async fn discovery_is_reported_and_a_wrong_issuer_fails_closed() {
    let base = serve().await;
    let r = check(
        &remote(&format!("{base}/.well-known/openid-configuration")),
        None,
        NOW,
    )
    .await;
    let steps: Vec<_> = kinds(&r).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        steps,
        [
            "source",
            "dns",
            "tcp",
            "http",
            "discovery",
            "source",
            "dns",
            "tcp",
            "http",
            "keys"
        ]
    );
    assert!(r.ok, "{}", r.render());
    assert!(
        r.steps[4].detail.contains(&format!("jwks_uri {base}/keys")),
        "{}",
        r.steps[4].detail
    );

    let r = check(
        &remote(&format!("{base}/wrong/.well-known/openid-configuration")),
        None,
        NOW,
    )
    .await;
    assert!(!r.ok);
    assert_eq!(kinds(&r).last(), Some(&("discovery", false)));
    assert!(
        last_detail(&r).contains("issuer \"https://evil.example\" does not match the provider's Issuer \"https://idp.example\""),
        "{}",
        r.render()
    );
}

/// An https key server for `localhost` (self-signed); returns its URI and CA PEM.
async fn serve_https() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        key_set(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://localhost:{port}/keys"), pem)
}

fn https_provider(uri: &str, ca: &str, sni: bool) -> JwtProvider {
    provider(json!({
        "JSONWebKeySet": {"Remote": {
            "URI": uri,
            "UseSNI": sni,
            "JWKSCluster": {"TLSCertificates": {"TrustedCA": {"InlineString": ca}}}
        }}
    }))
}

#[tokio::test]
async fn https_reports_the_server_name_the_ca_and_the_certificate_names() {
    let (uri, pem) = serve_https().await;
    let r = check(&https_provider(&uri, &pem, true), None, NOW).await;
    assert!(r.ok, "{}", r.render());
    let tls = r.steps.iter().find(|s| s.step == StepKind::Tls).unwrap();
    assert!(tls.ok);
    for want in [
        "server name sent: localhost",
        "CA: TrustedCA.InlineString (1 certificate)",
        "certificate names: localhost",
    ] {
        assert!(tls.detail.contains(want), "{want}: {}", tls.detail);
    }
    let r = check(&https_provider(&uri, &pem, false), None, NOW).await;
    let tls = r.steps.iter().find(|s| s.step == StepKind::Tls).unwrap();
    assert!(
        tls.detail.contains("no server name sent (UseSNI is false)"),
        "{}",
        tls.detail
    );

    // Another CA: the handshake fails at the TLS step, and the certificate the server
    // offered is still named.
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()])
        .unwrap()
        .cert
        .pem();
    let r = check(&https_provider(&uri, &other, true), None, NOW).await;
    assert!(!r.ok);
    assert_eq!(kinds(&r).last(), Some(&("tls", false)), "{}", r.render());
    let d = last_detail(&r);
    assert!(d.contains("invalid peer certificate"), "{d}");
    assert!(d.contains("certificate names: localhost"), "{d}");
}

#[tokio::test]
async fn local_key_sets_are_checked_too() {
    let inline =
        provider(json!({"JSONWebKeySet": {"Local": {"JWKS": STANDARD.encode(key_set())}}}));
    let r = check(&inline, None, NOW).await;
    assert_eq!(kinds(&r), [("source", true), ("keys", true)]);
    let missing =
        provider(json!({"JSONWebKeySet": {"Local": {"Filename": "/nonexistent/keys.json"}}}));
    let r = check(&missing, None, NOW).await;
    assert!(!r.ok);
    assert_eq!(r.steps[0].target, "/nonexistent/keys.json");
    assert!(
        r.steps[0].detail.starts_with("cannot read the file"),
        "{}",
        r.render()
    );
    // A token with no keys fails closed as the sidecar does.
    let t = check(&missing, Some(&mint(json!({}))), NOW)
        .await
        .token
        .unwrap();
    assert_eq!(t.error.as_deref(), Some("Jwks remote fetch is failed"));
}
