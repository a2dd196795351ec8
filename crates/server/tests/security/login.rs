//! Attacks on login (issue #43): each a named test.

use super::support::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use tribune_test_support::tokens::Rs256;

const ROOT: Option<&str> = Some("root-secret");

async fn method_with_rule(api: &Api, key: &Rs256, rule: Value) {
    let m = json!({"Name": "ci", "Type": "jwt", "MaxTokenTTL": "10m",
        "Config": {"JWTValidationPubKeys": [key.public_key_pem()],
            "BoundAudiences": ["tribune"],
            "ClaimMappings": {"project": "project", "team": "team"}}});
    let r = api
        .call("PUT", "/v1/acl/auth-method", ROOT, &m.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut rule = rule;
    rule["AuthMethod"] = json!("ci");
    let r = api
        .call("PUT", "/v1/acl/binding-rule", ROOT, &rule.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

fn claims(extra: Value) -> Value {
    let now = unix_now();
    let mut c = json!({"aud": "tribune", "iat": now, "exp": now + 300});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn login(api: &Api, bearer: &str) -> Reply {
    api.call(
        "POST",
        "/v1/acl/login",
        None,
        &json!({"AuthMethod": "ci", "BearerToken": bearer}).to_string(),
    )
    .await
}

/// Attack: the method's public key is public; a token signed HS256 with the key's
/// PEM text (or its DER bytes) as the HMAC secret, or with `alg: none`, must not
/// verify (the classic algorithm confusion of libraries that let the token pick).
#[tokio::test]
async fn login_refuses_tokens_that_use_the_public_key_as_an_hmac_secret() {
    let key = Rs256::new("k");
    let api = Api::with_acls().await;
    method_with_rule(
        &api,
        &key,
        json!({"BindType": "service", "BindName": "${value.project}"}),
    )
    .await;
    let c = claims(json!({"project": "web"}));
    let pem = key.public_key_pem();
    let der = tribune_ca::public_key_from_pem(&pem).unwrap();
    for (what, forged) in [
        ("PEM as secret", hs256(pem.as_bytes(), c.clone())),
        ("DER as secret", hs256(&der, c.clone())),
    ] {
        let r = login(&api, &forged).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
        assert_eq!(
            r.body, "error verifying token: unsupported signing algorithm \"HS256\"",
            "{what}"
        );
    }
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let none = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none"}"#),
        B64.encode(c.to_string())
    );
    let r = login(&api, &none).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.starts_with("error parsing token"), "{}", r.body);
    // The genuine token works: the refusals above are the forgeries'.
    assert_eq!(login(&api, &key.sign(&c)).await.status, StatusCode::OK);
}

/// Attack: the caller controls its token's claims. Whatever they hold, a login gets
/// at most the identity the rule names, spelled as a valid name: no rule text, no
/// wildcard, no other case, no management policy by name.
#[tokio::test]
async fn claims_cannot_widen_a_login_token_beyond_its_rule() {
    let key = Rs256::new("k");
    let api = Api::with_acls().await;
    method_with_rule(
        &api,
        &key,
        json!({"BindType": "service", "BindName": "${value.project}"}),
    )
    .await;
    for evil in [
        "web\" } service_prefix \"\" { policy = \"write",
        "*",
        "",
        "WEB",
        "web/../api",
    ] {
        let r = login(&api, &key.sign(&claims(json!({"project": evil})))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{evil:?}: {}", r.body);
    }
    // A name that happens to be the management policy's is a service of that name.
    let r = login(
        &api,
        &key.sign(&claims(json!({"project": "global-management",
            "policies": ["global-management"], "roles": ["admin"]}))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = r.json();
    assert!(t.get("Policies").is_none_or(|p| p == &json!([])), "{t}");
    assert!(t.get("Roles").is_none(), "{t}");
    let secret = t["SecretID"].as_str().unwrap();
    for path in ["/v1/acl/tokens", "/v1/acl/policies"] {
        let r = api.call("GET", path, Some(secret), "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
}

/// Attack: a login token logs out; it must end only itself, never another token.
#[tokio::test]
async fn a_login_token_can_only_log_itself_out() {
    let key = Rs256::new("k");
    let api = Api::with_acls().await;
    method_with_rule(
        &api,
        &key,
        json!({"BindType": "service", "BindName": "${value.project}"}),
    )
    .await;
    let a = login(&api, &key.sign(&claims(json!({"project": "a"}))))
        .await
        .json();
    let b = login(&api, &key.sign(&claims(json!({"project": "b"}))))
        .await
        .json();
    let (a_secret, b_secret) = (
        a["SecretID"].as_str().unwrap(),
        b["SecretID"].as_str().unwrap(),
    );
    // No way to name another token: the body and query are not read.
    let r = api
        .call(
            "POST",
            &format!("/v1/acl/logout?token={b_secret}"),
            Some(a_secret),
            &json!({"Token": b_secret}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let still = api
        .call("GET", "/v1/acl/token/self", Some(b_secret), "")
        .await;
    assert_eq!(
        still.status,
        StatusCode::OK,
        "b still works: {}",
        still.body
    );
    let gone = api
        .call("GET", "/v1/acl/token/self", Some(a_secret), "")
        .await;
    assert_eq!(gone.status, StatusCode::FORBIDDEN);
    // Nor delete another token outright: that needs acl:write.
    let id = b["AccessorID"].as_str().unwrap();
    let r = api
        .call("DELETE", &format!("/v1/acl/token/{id}"), Some(b_secret), "")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// With ACLs off there is nothing to log in to (Consul's answer).
#[tokio::test]
async fn login_needs_acls() {
    let api = Api::dev().await;
    let r = api
        .call(
            "POST",
            "/v1/acl/login",
            None,
            &json!({"AuthMethod": "ci", "BearerToken": "x"}).to_string(),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::UNAUTHORIZED, "ACL support disabled")
    );
}
