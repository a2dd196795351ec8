//! Tribune's JWT extensions through the sidecar's request path: `ClaimToHeaders`
//! (verified claims copied into headers, client copies removed), `Optional`
//! requirements and space-delimited scopes; explain reports the same headers and
//! decisions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

/// Explain's answer for `GET /items` on `api` with `token`, from the sidecar's snapshot.
async fn explain_items(
    proxy: &tribune_proxy::Proxy,
    token: &str,
    now: i64,
) -> tribune_enforce::explain::ExplainResponse {
    let snap = proxy.current().unwrap();
    let req = tribune_enforce::explain::ExplainRequest {
        destination: "api".into(),
        path: Some("/items".into()),
        token: Some(token.to_string()),
        ..Default::default()
    };
    tribune_enforce::explain::explain(
        &snap.policy,
        &req.describe().unwrap(),
        Default::default(),
        now,
        &snap.keys(),
    )
    .await
}

#[tokio::test]
async fn verified_claims_become_headers_and_client_copies_are_removed() {
    let up = echo().await;
    let now = 1_700_000_000;
    let (proxy, addr, _records) = proxy(up.addr, now).await;
    let key = Es256::new("k1");
    let entries = vec![
        json!({"Kind": "jwt-provider", "Name": "idp", "Issuer": "idp",
        "JSONWebKeySet": {"Local": {"JWKS": inline_jwks(&[&key])}},
        "ClaimToHeaders": [
            {"Path": ["perms", "role"], "HeaderName": "x-role"},
            {"Path": ["level"], "HeaderName": "x-level"},
            {"Path": ["admin"], "HeaderName": "x-admin"},
            {"Path": ["groups"], "HeaderName": "x-groups"},
            {"Path": ["absent"], "HeaderName": "x-absent"},
        ]}),
        json!({"Kind": "service-intentions", "Name": "api",
            "JWT": {"Optional": true, "Providers": [{"Name": "idp"}]},
            "Sources": [{"Name": "*", "Action": "allow"}]}),
    ];
    proxy
        .install(doc("api", "http", "deny", entries), 1)
        .await
        .unwrap();
    let token = key.sign(&json!({"iss": "idp", "exp": now + 60,
        "perms": {"role": "admin"}, "level": 3, "admin": true, "groups": ["a", "b"]}));
    let c = client();
    let url = format!("http://{addr}/items");
    let auth = format!("Bearer {token}");
    let r = send(
        &c,
        "GET",
        &url,
        &[
            ("authorization", &auth),
            ("x-role", "forged"),
            ("x_level", "9"),
            ("x-groups", "forged"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.json();
    let h = &seen["headers"];
    assert_eq!(h["x-role"], "admin");
    assert_eq!(h["x-level"], "3");
    assert_eq!(h["x-admin"], "true");
    assert!(
        h.get("x-groups").is_none(),
        "arrays set nothing and client copies go: {seen}"
    );
    assert!(h.get("x-absent").is_none());
    assert!(h.get("x_level").is_none(), "look-alikes go too: {seen}");
    // Optional: no token is allowed, and a forged claim header never gets through.
    let r = send(&c, "GET", &url, &[("x-role", "forged")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"].get("x-role").is_none(), "{}", r.body);
    // A present token must verify.
    let expired = key.sign(&json!({"iss": "idp", "exp": now - 3600}));
    let r = send(
        &c,
        "GET",
        &url,
        &[("authorization", &format!("Bearer {expired}"))],
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.body.as_str()), (401, "Jwt is expired"));

    // Explain shows the headers the sidecar sets.
    let answer = explain_items(&proxy, &token, now).await;
    assert!(answer.allowed);
    assert_eq!(
        answer.forwarded_headers.get("x-role").map(String::as_str),
        Some("admin")
    );
    assert_eq!(
        answer.forwarded_headers.get("x-level").map(String::as_str),
        Some("3")
    );
}

#[tokio::test]
async fn a_scope_claim_matches_one_of_its_space_separated_elements() {
    let up = echo().await;
    let now = 1_700_000_000;
    let (proxy, addr, _records) = proxy(up.addr, now).await;
    let key = Es256::new("k1");
    let entries = vec![
        json!({"Kind": "jwt-provider", "Name": "idp", "Issuer": "idp",
        "JSONWebKeySet": {"Local": {"JWKS": inline_jwks(&[&key])}}}),
        json!({"Kind": "service-intentions", "Name": "api",
            "Sources": [{"Name": "*", "Permissions": [{"Action": "allow",
                "HTTP": {"PathPrefix": "/"},
                "JWT": {"Providers": [{"Name": "idp", "VerifyClaims": [
                    {"Path": ["scope"], "Value": "api:read"}]}]}}]}]}),
    ];
    proxy
        .install(doc("api", "http", "deny", entries), 1)
        .await
        .unwrap();
    let c = client();
    let url = format!("http://{addr}/items");
    // (scope claim, sidecar status): RFC 8693 space-delimited lists.
    for (scope, want) in [
        (json!("openid api:read"), 200),
        (json!("api:read"), 200),
        (json!("api:read profile"), 200),
        (json!("openid api:readonly"), 403),
        (json!("openid"), 403),
        (json!("api:read\tprofile"), 403),
        (json!(["openid", "api:read"]), 200),
    ] {
        let token = key.sign(&json!({"iss": "idp", "exp": now + 60, "scope": scope}));
        let r = send(
            &c,
            "GET",
            &url,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
        .unwrap();
        assert_eq!(r.status, want, "scope {scope}: {}", r.body);
        let answer = explain_items(&proxy, &token, now).await;
        assert_eq!(answer.allowed, want == 200, "explain, scope {scope}");
        assert_eq!(answer.status, Some(want), "explain, scope {scope}");
    }
}
