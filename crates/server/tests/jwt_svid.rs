//! The agent's CA as a JWT issuer (issue #45): JWT-SVIDs, their keys, OIDC discovery,
//! rotation, and what a caller may mint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use support::*;

const ROOT: Option<&str> = Some("root-secret");

fn part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

async fn mint(api: &Api, token: Option<&str>, body: Value) -> Reply {
    api.call(
        "POST",
        "/v1/agent/connect/ca/jwt-svid",
        token,
        &body.to_string(),
    )
    .await
}

/// Verifies `token` with the agent's published keys as any verifier would.
async fn verify(api: &Api, token: &str, issuer: &str, audience: &str) -> Result<(), String> {
    let jwks = api.call("GET", "/v1/connect/ca/jwks", None, "").await;
    assert_eq!(jwks.status, StatusCode::OK, "{}", jwks.body);
    let keys = tribune_jwt::Jwks::parse(jwks.body.as_bytes()).map_err(|e| e.to_string())?;
    let provider: tribune_model::JwtProvider = tribune_model::entry::parse_entry(
        &json!({"Kind": "jwt-provider", "Name": "mesh", "Issuer": issuer, "Audiences": [audience],
            "JSONWebKeySet": {"Local": {"JWKS": "e30="}}})
        .to_string(),
    )
    .ok()
    .and_then(|e| match e {
        tribune_model::ConfigEntry::JwtProvider(p) => Some(p),
        _ => None,
    })
    .expect("a provider");
    tribune_jwt::Verifier::new(&provider, Arc::new(keys))
        .verify(token, unix_now())
        .map(|_| ())
        .map_err(|e| e.text().to_string())
}

#[tokio::test]
async fn a_service_gets_a_jwt_svid_any_verifier_checks_with_the_published_keys() {
    let api = Api::with_acls().await;
    let web = token_with(&api, "web-write", "service \"web\" { policy = \"write\" }").await;
    let r = mint(
        &api,
        Some(&web),
        json!({"Service": "web", "Audience": ["api"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let svid = r.json();
    let token = svid["Token"].as_str().unwrap();
    let header = part(token, 0);
    let claims = part(token, 1);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    let roots = api
        .call("GET", "/v1/connect/ca/roots", None, "")
        .await
        .json();
    let td = roots["TrustDomain"].as_str().unwrap();
    let spiffe = format!("spiffe://{td}/ns/default/dc/dc1/svc/web");
    assert_eq!(claims["sub"], spiffe.as_str());
    assert_eq!(svid["SpiffeID"], spiffe.as_str());
    assert_eq!(claims["aud"], json!(["api"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(
        claims["iss"], "http://127.0.0.1:8500",
        "the agent's address"
    );

    // Discovery names the issuer and its keys.
    let d = api
        .call("GET", "/.well-known/openid-configuration", None, "")
        .await
        .json();
    assert_eq!(d["issuer"], "http://127.0.0.1:8500");
    assert_eq!(d["jwks_uri"], "http://127.0.0.1:8500/v1/connect/ca/jwks");
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["ES256"]));
    let jwks = api
        .call("GET", "/v1/connect/ca/jwks", None, "")
        .await
        .json();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert!(jwks["keys"][0].get("d").is_none(), "public keys only");
    verify(&api, token, "http://127.0.0.1:8500", "api")
        .await
        .unwrap();
    assert_eq!(
        verify(&api, token, "http://127.0.0.1:8500", "billing").await,
        Err("Audiences in Jwt are not allowed".into()),
        "for api only"
    );

    // What a caller may not mint, and what a request must say.
    let r = mint(
        &api,
        Some(&web),
        json!({"Service": "api", "Audience": ["web"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    for (body, want) in [
        (
            json!({"Service": "web"}),
            "Audience is required: a JWT-SVID names who it is for (SPIFFE JWT-SVID 3)",
        ),
        (
            json!({"Service": "web", "Audience": [""]}),
            "Audience is required: a JWT-SVID names who it is for (SPIFFE JWT-SVID 3)",
        ),
        (
            json!({"Service": "web", "Audience": ["api"], "TTL": "2h"}),
            "TTL: must be more than 0 and at most 1h0m0s, got 2h",
        ),
        (json!({"Audience": ["api"]}), "Service is required"),
    ] {
        let r = mint(&api, Some(&web), body.clone()).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::BAD_REQUEST, want),
            "{body}"
        );
    }
    let r = mint(
        &api,
        Some(&web),
        json!({"Service": "web", "Audience": ["api"], "TTL": "30s"}),
    )
    .await;
    let c = part(r.json()["Token"].as_str().unwrap(), 1);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 30);
}

/// Rotation: a new key signs; the old one stays published until its tokens expire.
#[tokio::test]
async fn ca_rotation_keeps_old_tokens_valid_until_they_expire() {
    let api = Api::with_acls().await;
    let r = mint(&api, ROOT, json!({"Service": "web", "Audience": ["api"]})).await;
    let old = r.json()["Token"].as_str().unwrap().to_string();
    let r = api.call("PUT", "/v1/connect/ca/rotate", ROOT, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = mint(&api, ROOT, json!({"Service": "web", "Audience": ["api"]})).await;
    let new = r.json()["Token"].as_str().unwrap().to_string();
    assert_ne!(
        part(&old, 0)["kid"],
        part(&new, 0)["kid"],
        "the new key signs"
    );
    let jwks = api
        .call("GET", "/v1/connect/ca/jwks", None, "")
        .await
        .json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    for t in [&old, &new] {
        verify(&api, t, "http://127.0.0.1:8500", "api")
            .await
            .unwrap();
    }
}

/// `connect { ca_config { jwt_issuer jwt_signing_algorithm } }`.
#[tokio::test]
async fn the_issuer_and_algorithm_are_configurable() {
    let mut c = tribune_server::AgentConfig::default();
    c.connect.jwt_issuer = Some("https://mesh.example".into());
    c.connect.jwt_signing_algorithm = tribune_ca::jwt::SigningAlg::Rs256;
    let api = Api::new(c).await;
    let r = mint(&api, None, json!({"Service": "web", "Audience": ["vault"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.json()["Token"].as_str().unwrap().to_string();
    assert_eq!(part(&token, 0)["alg"], "RS256");
    assert_eq!(part(&token, 1)["iss"], "https://mesh.example");
    let d = api
        .call("GET", "/.well-known/openid-configuration", None, "")
        .await
        .json();
    assert_eq!(d["jwks_uri"], "https://mesh.example/v1/connect/ca/jwks");
    verify(&api, &token, "https://mesh.example", "vault")
        .await
        .unwrap();
}

/// A CA stored before JWT-SVIDs existed gets its first key on first use.
#[tokio::test]
async fn a_ca_from_an_earlier_version_gets_a_jwt_key() {
    let api = Api::dev().await;
    let _ = api.call("GET", "/v1/connect/ca/roots", None, "").await;
    let store = api.state.store.clone();
    let rec = tribune_store::Store::get(store.as_ref(), "ca", "state")
        .await
        .unwrap()
        .expect("the CA");
    let mut v: Value = serde_json::from_slice(&rec.value).unwrap();
    v.as_object_mut().unwrap().remove("jwt_keys");
    store
        .apply(&[tribune_store::Op::put(
            "ca",
            "state",
            serde_json::to_vec(&v).unwrap(),
            tribune_store::Cas::Any,
        )])
        .await
        .unwrap();
    let jwks = api
        .call("GET", "/v1/connect/ca/jwks", None, "")
        .await
        .json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    let r = mint(&api, None, json!({"Service": "web", "Audience": ["api"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        part(r.json()["Token"].as_str().unwrap(), 0)["kid"],
        jwks["keys"][0]["kid"]
    );
}
