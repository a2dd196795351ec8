//! ACL auth methods (issue #43): Consul's endpoints, shapes, checks and texts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use axum::http::StatusCode;
use serde_json::json;
use support::*;

/// `nomad setup consul`'s method.
fn nomad() -> serde_json::Value {
    json!({"Name": "nomad-workloads", "Type": "jwt", "DisplayName": "Nomad Workloads",
        "Description": "login method for Nomad workload identities",
        "MaxTokenTTL": "1h", "TokenLocality": "local",
        "Config": {"JWKSURL": "http://127.0.0.1:4646/.well-known/jwks.json",
            "JWTSupportedAlgs": ["RS256"], "BoundAudiences": ["consul.io"],
            "ClaimMappings": {"nomad_namespace": "nomad_namespace", "nomad_job_id": "nomad_job_id",
                "nomad_task": "nomad_task", "nomad_service": "nomad_service"}}})
}

#[tokio::test]
async fn auth_methods_are_created_read_listed_updated_and_deleted_as_in_consul() {
    let api = Api::with_acls().await;
    let root = Some("root-secret");
    let r = api
        .call("PUT", "/v1/acl/auth-method", root, &nomad().to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let created = r.json();
    assert_eq!(created["Name"], "nomad-workloads");
    assert_eq!(created["MaxTokenTTL"], "1h0m0s");
    assert_eq!(created["Config"]["BoundAudiences"], json!(["consul.io"]));
    assert!(created["CreateIndex"].as_u64().unwrap() > 0);

    let read = api
        .call("GET", "/v1/acl/auth-method/nomad-workloads", root, "")
        .await;
    assert_eq!(read.json(), created);
    let list = api
        .call("GET", "/v1/acl/auth-methods", root, "")
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["DisplayName"], "Nomad Workloads");
    assert!(
        list[0].get("Config").is_none(),
        "stubs carry no Config: {list}"
    );

    // An update by name keeps the type when the body leaves it out.
    let mut update = nomad();
    update.as_object_mut().unwrap().remove("Type");
    update.as_object_mut().unwrap().remove("Name");
    update["DisplayName"] = json!("Nomad");
    let r = api
        .call(
            "PUT",
            "/v1/acl/auth-method/nomad-workloads",
            root,
            &update.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.json()["Type"].clone(), r.json()["DisplayName"].clone()),
        (json!("jwt"), json!("Nomad"))
    );
    assert!(r.json()["ModifyIndex"].as_u64() > created["ModifyIndex"].as_u64());

    // Consul's refusals, with Consul's texts; nothing is stored.
    let refused = |path: &'static str, body: serde_json::Value| {
        let api = &api;
        async move {
            let r = api.call("PUT", path, root, &body.to_string()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
            r.body
        }
    };
    let mut oidc = nomad();
    oidc["Type"] = json!("oidc");
    assert_eq!(
        refused("/v1/acl/auth-method", oidc).await,
        "the Type field of an Auth Method is immutable"
    );
    let mut short = nomad();
    short["Name"] = json!("short");
    short["MaxTokenTTL"] = json!("30s");
    assert_eq!(
        refused("/v1/acl/auth-method", short).await,
        "MaxTokenTTL 30s cannot be less than 1m0s"
    );
    let mut two_sources = nomad();
    two_sources["Name"] = json!("two");
    two_sources["Config"]["OIDCDiscoveryURL"] = json!("https://idp.example/");
    assert_eq!(
        refused("/v1/acl/auth-method", two_sources).await,
        "Invalid Auth Method: exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL' must be set for type \"jwt\""
    );
    assert_eq!(
        refused("/v1/acl/auth-method/other", nomad()).await,
        "AuthMethod Name in URL and payload do not match"
    );
    assert!(
        refused("/v1/acl/auth-method", json!({"Name": "x", "Type": 5}))
            .await
            .starts_with("AuthMethod decoding failed:")
    );
    // Static keys must be PEM public keys.
    let static_keys = |pem: &str| {
        json!({"Name": "static", "Type": "jwt",
            "Config": {"JWTValidationPubKeys": [pem], "BoundAudiences": ["ci"]}})
    };
    assert_eq!(
        refused("/v1/acl/auth-method", static_keys("not a key")).await,
        "Invalid Auth Method: error parsing public key JWTValidationPubKeys[0]: data does not contain any valid RSA, ECDSA, or ED25519 public keys"
    );
    let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .unwrap();
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let spki = key.public_key().as_der().unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
    let r = api
        .call(
            "PUT",
            "/v1/acl/auth-method",
            root,
            &static_keys(&pem).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    api.call("DELETE", "/v1/acl/auth-method/static", root, "")
        .await;
    let list = api
        .call("GET", "/v1/acl/auth-methods", root, "")
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // acl:read to read, acl:write to write.
    let reader = token_with(&api, "acl-reader", r#"acl = "read""#).await;
    let r = api
        .call(
            "GET",
            "/v1/acl/auth-method/nomad-workloads",
            Some(&reader),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api
        .call(
            "PUT",
            "/v1/acl/auth-method",
            Some(&reader),
            &nomad().to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.contains("lacks permission 'acl:write'"),
        "{}",
        r.body
    );
    let r = api.call("GET", "/v1/acl/auth-methods", None, "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Delete; a missing one reads as 404 with no body, and deletes as true.
    let r = api
        .call("DELETE", "/v1/acl/auth-method/nomad-workloads", root, "")
        .await;
    assert_eq!(r.body, "true");
    let r = api
        .call("GET", "/v1/acl/auth-method/nomad-workloads", root, "")
        .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::NOT_FOUND, ""));
    let r = api
        .call("DELETE", "/v1/acl/auth-method/nomad-workloads", root, "")
        .await;
    assert_eq!(r.body, "true");
}

#[tokio::test]
async fn auth_methods_need_acls_on() {
    let api = Api::dev().await;
    let r = api
        .call("PUT", "/v1/acl/auth-method", None, &nomad().to_string())
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::UNAUTHORIZED, "ACL support disabled")
    );
}
