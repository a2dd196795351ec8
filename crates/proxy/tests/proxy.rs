//! The request path through the edge listener, in process (no agent): tokens,
//! intentions, responses, rewriting, snapshot swaps under load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use support::*;

const NOW: i64 = 1_700_000_000;

fn okta(key: &[&Es256]) -> Value {
    json!({
        "Kind": "jwt-provider", "Name": "okta", "Issuer": "https://okta.example",
        "Audiences": ["api"],
        "JSONWebKeySet": {"Local": {"JWKS": inline_jwks(key)}},
        "Forwarding": {"HeaderName": "x-jwt-claims"},
    })
}

/// `*` (edge callers) may GET /api/* with an okta token whose role is admin.
fn api_intentions() -> Value {
    json!({
        "Kind": "service-intentions", "Name": "api",
        "JWT": {"Providers": [{"Name": "okta"}]},
        "Sources": [{
            "Name": "*",
            "Permissions": [{
                "Action": "allow",
                "HTTP": {"PathPrefix": "/api", "Methods": ["GET"]},
                "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]},
            }],
        }],
    })
}

fn claims(role: &str) -> Value {
    json!({"iss": "https://okta.example", "aud": "api", "sub": "alice", "role": role, "exp": NOW + 600})
}

#[tokio::test]
async fn tokens_and_intentions_decide_and_only_allowed_requests_reach_the_upstream() {
    let key = Es256::new("k1");
    let upstream = echo().await;
    let (proxy, addr, records) = proxy(upstream.addr, NOW).await;
    proxy
        .install(
            doc("api", "http", "deny", vec![okta(&[&key]), api_intentions()]),
            7,
        )
        .await
        .unwrap();
    let c = client();
    let url = |p: &str| format!("http://{addr}{p}");
    let admin = key.sign(&claims("admin"));
    let bearer = format!("Bearer {admin}");

    // Allowed: the upstream sees the verified payload header, not the token, and
    // never a client-supplied copy of the payload header.
    let r = send(
        &c,
        "GET",
        &url("/api/items?x=1"),
        &[("authorization", &bearer), ("x-jwt-claims", "forged")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.json();
    assert_eq!(seen["path"], "/api/items");
    assert_eq!(seen["query"], "x=1");
    assert!(
        seen["headers"].get("authorization").is_none(),
        "token stripped"
    );
    let fwd = seen["headers"]["x-jwt-claims"].as_str().unwrap();
    assert_eq!(
        fwd,
        admin.split('.').nth(1).unwrap(),
        "payload forwarded, not the forged value"
    );
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 1);

    // The token in the access_token query parameter works too and is stripped.
    let r = send(
        &c,
        "GET",
        &url(&format!("/api/q?access_token={admin}&keep=1")),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["query"], "keep=1");
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 2);

    // Denials: (request, status, body, WWW-Authenticate).
    let expired = key.sign(
        &json!({"iss": "https://okta.example", "aud": "api", "role": "admin", "exp": NOW - 3600}),
    );
    let user = key.sign(&claims("user"));
    let other_key = Es256::new("k1").sign(&claims("admin"));
    let wrong_aud = key.sign(
        &json!({"iss": "https://okta.example", "aud": "web", "role": "admin", "exp": NOW + 60}),
    );
    let wrong_iss = key.sign(
        &json!({"iss": "https://evil.example", "aud": "api", "role": "admin", "exp": NOW + 60}),
    );
    let missing = "Bearer realm=\"api\"";
    let invalid = "Bearer realm=\"api\", error=\"invalid_token\"";
    /// (name, method, path, token, status, body, WWW-Authenticate)
    type Case<'a> = (
        &'a str,
        &'a str,
        String,
        Option<String>,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "no token",
            "GET",
            "/api/items".into(),
            None,
            401,
            "Jwt is missing",
            Some(missing),
        ),
        (
            "expired",
            "GET",
            "/api/items".into(),
            Some(expired),
            401,
            "Jwt is expired",
            Some(invalid),
        ),
        (
            "signed by another key",
            "GET",
            "/api/items".into(),
            Some(other_key),
            401,
            "Jwt verification fails",
            Some(invalid),
        ),
        (
            "wrong audience",
            "GET",
            "/api/items".into(),
            Some(wrong_aud),
            401,
            "Audiences in Jwt are not allowed",
            Some(invalid),
        ),
        (
            "wrong issuer is not okta's token",
            "GET",
            "/api/items".into(),
            Some(wrong_iss),
            401,
            "Jwt issuer is not configured",
            Some(invalid),
        ),
        (
            "wrong claim",
            "GET",
            "/api/items".into(),
            Some(user),
            403,
            "RBAC: access denied",
            None,
        ),
        (
            "wrong path",
            "GET",
            "/admin".into(),
            Some(admin.clone()),
            403,
            "RBAC: access denied",
            None,
        ),
        (
            "wrong method",
            "POST",
            "/api/items".into(),
            Some(admin.clone()),
            403,
            "RBAC: access denied",
            None,
        ),
        (
            "dot segments normalized",
            "GET",
            "/api/../admin".into(),
            Some(admin.clone()),
            403,
            "RBAC: access denied",
            None,
        ),
        (
            "encoded path normalized",
            "GET",
            "/%61pi/../%61dmin".into(),
            Some(admin.clone()),
            403,
            "RBAC: access denied",
            None,
        ),
        (
            "garbage token",
            "GET",
            "/api/items".into(),
            Some("not.a.jwt".into()),
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            Some(invalid),
        ),
    ];
    for (name, method, path, token, status, body, www) in cases {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = send(&c, method, &url(&path), &headers).await.unwrap();
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert_eq!(r.body, body, "{name}");
        assert_eq!(r.header("www-authenticate"), www, "{name}");
    }
    assert_eq!(
        upstream.hits.load(Ordering::SeqCst),
        2,
        "no denied request reached the upstream"
    );

    let recs = records.lock().unwrap();
    assert_eq!(recs.len(), 13);
    assert!(recs.iter().all(|r| r.version == 1));
    let expired_rec = &recs[3];
    assert_eq!(
        (expired_rec.decision, expired_rec.reason, expired_rec.status),
        ("deny", "jwt_invalid", 401)
    );
    assert_eq!(recs[7].reason, "jwt_claim");
    assert_eq!(
        (recs[12].reason, recs[12].status),
        ("jwt_malformed", 401),
        "the garbage token is named as such in the access log"
    );
    assert!(
        recs.iter()
            .any(|r| (r.reason, r.status) == ("jwt_issuer_unknown", 401)),
        "a token of another issuer is named as such"
    );
    assert_eq!(
        recs[0].intention.as_deref(),
        Some("* -> api (precedence 8)")
    );
}

#[tokio::test]
async fn nothing_is_served_before_the_first_snapshot_and_upstream_failures_are_5xx() {
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    let c = client();
    assert!(
        send(&c, "GET", &format!("http://{addr}/"), &[])
            .await
            .is_err(),
        "fail closed: connection closed"
    );
    assert!(!proxy.ready());

    // An allow-all policy in front of a port nobody listens on: bound and held, not
    // listening (a dropped listener's port could be taken by another test's server).
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = held.local_addr().unwrap();
    let (proxy2, addr2, records) = support::proxy(dead, NOW).await;
    proxy2
        .install(doc("api", "http", "allow", vec![]), 0)
        .await
        .unwrap();
    let r = send(&c, "GET", &format!("http://{addr2}/x"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("upstream connect error"), "{}", r.body);
    assert_eq!(records.lock().unwrap()[0].reason, "upstream_connect");
}

#[tokio::test]
async fn tcp_destinations_get_l4_decisions_and_a_byte_copy() {
    let upstream = echo().await;
    let (proxy, addr, records) = proxy(upstream.addr, NOW).await;
    // tcp + default deny, no intentions: the connection is closed unanswered.
    proxy
        .install(doc("api", "tcp", "deny", vec![]), 0)
        .await
        .unwrap();
    let c = client();
    assert!(send(&c, "GET", &format!("http://{addr}/"), &[])
        .await
        .is_err());
    // `* -> api allow`: bytes flow (HTTP here, copied verbatim).
    let allow = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "allow"}]});
    proxy
        .install(doc("api", "tcp", "deny", vec![allow]), 0)
        .await
        .unwrap();
    let r = send(&client(), "GET", &format!("http://{addr}/raw"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/raw");
    let recs = records.lock().unwrap();
    assert_eq!(recs[0].decision, "deny");
    assert_eq!(recs[0].method, "TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_swaps_under_load_drop_no_connection_and_each_request_sees_one_version() {
    let key = Es256::new("k1");
    let upstream = echo().await;
    let (proxy, addr, records) = proxy(upstream.addr, NOW).await;
    let allow = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "allow"}]});
    let deny = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "deny"}]});
    // Odd versions allow, even versions deny.
    proxy
        .install(
            doc("api", "http", "deny", vec![okta(&[&key]), allow.clone()]),
            1,
        )
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (proxy, stop) = (proxy.clone(), stop.clone());
        let key_jwk = okta(&[&key]);
        tokio::spawn(async move {
            let mut n = 1u64;
            while !stop.load(Ordering::SeqCst) {
                let entry = if n % 2 == 1 {
                    deny.clone()
                } else {
                    allow.clone()
                };
                proxy
                    .install(
                        doc("api", "http", "deny", vec![key_jwk.clone(), entry]),
                        n + 1,
                    )
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            n
        })
    };
    let mut clients = Vec::new();
    for _ in 0..4 {
        let url = format!("http://{addr}/x");
        clients.push(tokio::spawn(async move {
            let c = client(); // keep-alive: connections live across swaps
            let mut statuses = Vec::new();
            for _ in 0..150 {
                let r = send(&c, "GET", &url, &[]).await.expect("no failed request");
                statuses.push(r.status);
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let flips = flipper.await.unwrap();
    assert!(flips > 10, "the snapshot flipped during the load ({flips})");
    assert_eq!(all.len(), 600);
    assert!(all.iter().all(|s| *s == 200 || *s == 403));
    assert!(
        all.contains(&200) && all.contains(&403),
        "both policies were enforced"
    );
    let recs = records.lock().unwrap();
    assert_eq!(recs.len(), 600);
    for r in recs.iter() {
        let expect = if r.version % 2 == 1 { 200 } else { 403 };
        assert_eq!(
            r.status, expect,
            "version {} decided {}",
            r.version, r.status
        );
    }
}

#[tokio::test]
async fn admin_endpoints_report_readiness_metrics_and_a_redacted_dump() {
    let key = Es256::new("k1");
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    let ready = tribune_proxy::admin::answer(&proxy, "/ready");
    assert_eq!(ready.status(), 503);
    proxy
        .install(
            doc("api", "http", "deny", vec![okta(&[&key]), api_intentions()]),
            3,
        )
        .await
        .unwrap();
    assert_eq!(tribune_proxy::admin::answer(&proxy, "/ready").status(), 200);
    let c = client();
    let token = format!("Bearer {}", key.sign(&claims("admin")));
    for _ in 0..3 {
        send(
            &c,
            "GET",
            &format!("http://{addr}/api/x"),
            &[("authorization", &token)],
        )
        .await
        .unwrap();
    }
    send(&c, "GET", &format!("http://{addr}/api/x"), &[])
        .await
        .unwrap();
    use http_body_util::BodyExt;
    let body = |r: hyper::Response<http_body_util::Full<hyper::body::Bytes>>| async move {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    let stats = body(tribune_proxy::admin::answer(&proxy, "/stats/prometheus")).await;
    for line in [
        "tribune_proxy_requests_total{decision=\"allow\",reason=\"permission\"} 3",
        "tribune_proxy_requests_total{decision=\"deny\",reason=\"jwt_missing\"} 1",
        "tribune_proxy_jwt_verifications_total{provider=\"okta\",outcome=\"valid\"} 3",
        "tribune_proxy_jwt_cache_total{provider=\"okta\",result=\"hit\"} 2",
        "tribune_proxy_jwt_cache_total{provider=\"okta\",result=\"miss\"} 1",
        "tribune_proxy_config_version 1",
        "tribune_proxy_config_index 3",
        "tribune_proxy_upstream_latency_seconds_count 3",
    ] {
        assert!(stats.contains(line), "missing {line:?} in\n{stats}");
    }
    let dump: Value =
        serde_json::from_str(&body(tribune_proxy::admin::answer(&proxy, "/config_dump")).await)
            .unwrap();
    assert_eq!(dump["Version"], 1);
    assert_eq!(
        dump["Snapshot"]["Entries"][0]["JSONWebKeySet"]["Local"]["JWKS"],
        "<redacted>"
    );
    assert_eq!(dump["Intentions"][0], "* -> api (precedence 8)");
    assert_eq!(dump["ReferencedProviders"][0]["HasKeys"], true);
}

#[tokio::test]
async fn http2_cleartext_and_edge_tls_are_served() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    let upstream = echo().await;
    let (proxy, addr, _) = proxy(upstream.addr, NOW).await;
    let allow = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "allow"}]});
    proxy
        .install(doc("api", "http", "deny", vec![allow]), 0)
        .await
        .unwrap();

    // HTTP/2 with prior knowledge on the plain edge listener.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, Empty<Bytes>>(hyper_util::client::legacy::connect::HttpConnector::new());
    let res = h2
        .request(
            hyper::Request::get(format!("http://{addr}/h2"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["path"],
        "/h2"
    );

    // Server-side TLS on an edge listener.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config =
        tribune_proxy::serve::edge_tls_config(&cert.cert.pem(), &cert.signing_key.serialize_pem())
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = listener.local_addr().unwrap();
    tokio::spawn(tribune_proxy::serve::serve_edge_tls(
        proxy.clone(),
        listener,
        config,
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            hyper::Request::get("/tls")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
