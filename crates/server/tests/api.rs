//! Router-level tests of the HTTP API: no sockets, each request through `oneshot`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tower::ServiceExt;
use tribune_server::{router, AgentConfig, AppState};
use tribune_store::RedbStore;

const OKTA: &str = r#"{"Kind":"jwt-provider","Name":"okta","Issuer":"okta",
  "JSONWebKeySet":{"Remote":{"URI":"https://example.okta.com/oauth2/default/v1/keys","CacheDuration":"30m"}},
  "Forwarding":{"HeaderName":"user-token"}}"#;

const API_L7: &str = r#"{"Kind":"service-intentions","Name":"api",
  "JWT":{"Providers":[{"Name":"okta"}]},
  "Sources":[{"Name":"web","Permissions":[
    {"Action":"allow","HTTP":{"PathPrefix":"/v1/"},"JWT":{"Providers":[{"Name":"okta","VerifyClaims":[{"Path":["perms","role"],"Value":"admin"}]}]}}]}]}"#;

const API_HTTP: &str = r#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#;

#[tokio::test]
async fn seed_workflow_write_provider_then_intentions() {
    let api = Api::dev().await;
    let r = api.put(OKTA).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "true"));
    assert_eq!(api.put(API_HTTP).await.body, "true");
    let r = api.put(API_L7).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "true"),
        "{}",
        r.body
    );

    let r = api
        .call("GET", "/v1/config/jwt-provider/okta", None, "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        v["JSONWebKeySet"]["Remote"]["CacheDuration"],
        json!(1_800_000_000_000_i64)
    );
    assert_eq!(v["ClockSkewSeconds"], json!(30));
    assert_eq!(v["CreateIndex"], json!(1));
    assert!(v["Hash"].is_u64());
    assert_eq!(r.headers["x-consul-index"], "3");
    assert_eq!(r.headers["x-consul-default-acl-policy"], "allow");

    let r = api
        .call("GET", "/v1/config/service-intentions", None, "")
        .await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn missing_provider_and_l7_on_tcp_are_refused_with_consul_messages() {
    let api = Api::dev().await;
    let r = api.put(API_L7).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        "Referenced JWT Provider does not exist. Provider Name: okta"
    );
    api.put(OKTA).await;
    let r = api.put(API_L7).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "service \"api\" has protocol \"tcp\", which is incompatible with L7 intentions permissions")
    );
    api.put(API_HTTP).await;
    assert_eq!(api.put(API_L7).await.status, StatusCode::OK);
    // Changing the protocol back to tcp would break the L7 intentions.
    let r = api
        .put(r#"{"Kind":"service-defaults","Name":"api","Protocol":"tcp"}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r
        .body
        .contains("incompatible with L7 intentions permissions"));
    // A referenced provider cannot be deleted.
    let r = api
        .call("DELETE", "/v1/config/jwt-provider/okta", None, "")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "cannot delete jwt provider config entry referenced by an intention. Provider name: okta, intention name: api")
    );
}

#[tokio::test]
async fn decode_and_validation_errors_are_400_with_consul_text() {
    let api = Api::dev().await;
    let r = api.put(r#"{"Name":"x"}"#).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level"
        )
    );
    let r = api
        .put(r#"{"Kind":"jwt-provider","Name":"x","Bogus":1}"#)
        .await;
    assert_eq!(
        r.body,
        "Request decoding failed: 1 error occurred:\n\t* invalid config key \"Bogus\"\n\n"
    );
    let r = api.put(r#"{"Kind":"jwt-provider","Name":"x"}"#).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "JSONWebKeySet is required")
    );
    let r = api.call("GET", "/v1/config/nope/x", None, "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "invalid config entry kind: nope")
    );
    let r = api
        .call("GET", "/v1/config/jwt-provider/absent", None, "")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::NOT_FOUND,
            "Config entry not found for \"jwt-provider\" / \"absent\""
        )
    );
    let r = api
        .call("POST", "/v1/config/jwt-provider/absent", None, "")
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = api
        .call("GET", "/v1/config/jwt-provider?filter=Name==x", None, "")
        .await;
    assert_eq!(
        r.body,
        "filtering not supported for config entry kind=jwt-provider"
    );
    let r = api
        .call("GET", "/v1/config/?filter=Name==x", None, "")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "filtering not supported when listing every kind"
        )
    );
}

#[tokio::test]
async fn cas_semantics_and_no_op_writes() {
    let api = Api::dev().await;
    assert_eq!(
        api.call("PUT", "/v1/config?cas=0", None, OKTA).await.body,
        "true"
    );
    assert_eq!(
        api.call("PUT", "/v1/config?cas=0", None, OKTA).await.body,
        "false",
        "cas=0 only creates"
    );
    let idx = api
        .call("GET", "/v1/config/jwt-provider/okta", None, "")
        .await
        .json()["ModifyIndex"]
        .clone();
    assert_eq!(idx, json!(1));
    let changed = OKTA.replace("\"Issuer\":\"okta\"", "\"Issuer\":\"okta2\"");
    assert_eq!(
        api.call("PUT", "/v1/config?cas=7", None, &changed)
            .await
            .body,
        "false"
    );
    assert_eq!(
        api.call("PUT", "/v1/config?cas=1", None, &changed)
            .await
            .body,
        "true"
    );
    // Writing the same entry again is acknowledged without bumping the index.
    assert_eq!(api.put(&changed).await.body, "true");
    let v = api
        .call("GET", "/v1/config/jwt-provider/okta", None, "")
        .await
        .json();
    assert_eq!(
        (v["CreateIndex"].clone(), v["ModifyIndex"].clone()),
        (json!(1), json!(2))
    );
    // Delete with CAS.
    assert_eq!(
        api.call("DELETE", "/v1/config/jwt-provider/okta?cas=1", None, "")
            .await
            .body,
        "false"
    );
    assert_eq!(
        api.call("DELETE", "/v1/config/jwt-provider/okta?cas=2", None, "")
            .await
            .body,
        "true"
    );
    assert_eq!(
        api.call("DELETE", "/v1/config/jwt-provider/okta", None, "")
            .await
            .body,
        "{}"
    );
}

#[tokio::test]
async fn blocking_queries_wake_on_change_and_time_out() {
    let api = Arc::new(Api::dev().await);
    api.put(OKTA).await;
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            api.call(
                "GET",
                "/v1/config/jwt-provider/okta?index=1&wait=5s",
                None,
                "",
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "must block while the index is unchanged"
    );
    api.put(&OKTA.replace("\"Issuer\":\"okta\"", "\"Issuer\":\"new\""))
        .await;
    let r = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.headers["x-consul-index"], "2");
    assert_eq!(r.json()["Issuer"], "new");

    let start = std::time::Instant::now();
    let r = api
        .call(
            "GET",
            "/v1/config/jwt-provider?index=2&wait=200ms",
            None,
            "",
        )
        .await;
    let waited = start.elapsed();
    assert_eq!(r.headers["x-consul-index"], "2");
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

/// An empty table answers index 1; a blocking query at 1 must then block, not return
/// at once (a sidecar's watch on a fresh agent would spin).
#[tokio::test]
async fn a_blocking_query_on_an_empty_table_blocks() {
    let api = Api::dev().await;
    let r = api.call("GET", "/v1/config/jwt-provider", None, "").await;
    assert_eq!(r.headers["x-consul-index"], "1");
    let start = std::time::Instant::now();
    let r = api
        .call(
            "GET",
            "/v1/config/jwt-provider?index=1&wait=200ms",
            None,
            "",
        )
        .await;
    assert_eq!(r.headers["x-consul-index"], "1");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn intentions_check_exact_and_match() {
    let api = Api::dev().await;
    api.put(r#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Action":"allow"},{"Name":"*","Action":"deny"}]}"#).await;
    let check = |s: &'static str, d: &'static str| {
        let api = &api;
        async move {
            api.call(
                "GET",
                &format!("/v1/connect/intentions/check?source={s}&destination={d}"),
                None,
                "",
            )
            .await
            .json()["Allowed"]
                .clone()
        }
    };
    assert_eq!(check("web", "api").await, json!(true));
    assert_eq!(check("db", "api").await, json!(false));
    assert_eq!(
        check("web", "billing").await,
        json!(false),
        "default intention policy is deny"
    );

    let r = api
        .call("GET", "/v1/connect/intentions/check?source=web", None, "")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "required query parameter 'destination' not set"
        )
    );

    let r = api
        .call(
            "GET",
            "/v1/connect/intentions/exact?source=web&destination=api",
            None,
            "",
        )
        .await;
    let v = r.json();
    assert_eq!(
        (
            v["SourceName"].clone(),
            v["Action"].clone(),
            v["Precedence"].clone()
        ),
        (json!("web"), json!("allow"), json!(9))
    );

    let r = api
        .call(
            "PUT",
            "/v1/connect/intentions/exact?source=db&destination=api",
            None,
            r#"{"SourceType":"consul","Action":"allow"}"#,
        )
        .await;
    assert_eq!(r.body, "true");
    assert_eq!(check("db", "api").await, json!(true));
    let r = api
        .call(
            "DELETE",
            "/v1/connect/intentions/exact?source=db&destination=api",
            None,
            "",
        )
        .await;
    assert_eq!(r.body, "true");
    assert_eq!(check("db", "api").await, json!(false));
    let r = api
        .call(
            "GET",
            "/v1/connect/intentions/exact?source=db&destination=api",
            None,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let m = api
        .call(
            "GET",
            "/v1/connect/intentions/match?by=destination&name=api",
            None,
            "",
        )
        .await
        .json();
    let names: Vec<&str> = m["api"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["SourceName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "*"]);
    let r = api
        .call(
            "GET",
            "/v1/connect/intentions/match?by=nope&name=api",
            None,
            "",
        )
        .await;
    assert_eq!(
        r.body,
        "'by' parameter must be one of 'source' or 'destination'"
    );
}

#[tokio::test]
async fn write_time_warnings_are_returned_as_headers() {
    let api = Api::new(AgentConfig {
        default_intention_policy: tribune_authz::Action::Allow,
        ..AgentConfig::default()
    })
    .await;
    api.put(OKTA).await;
    let r = api.put(r#"{"Kind":"service-intentions","Name":"api","JWT":{"Providers":[{"Name":"okta"}]},"Sources":[{"Name":"web","Action":"allow"}]}"#).await;
    let w = r
        .headers
        .get_all("x-tribune-warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(w[0].contains("does not use an HTTP protocol"), "{w:?}");
    api.put(API_HTTP).await;
    let r = api.put(r#"{"Kind":"service-intentions","Name":"api","Meta":{"v":"2"},"JWT":{"Providers":[{"Name":"okta"}]},"Sources":[{"Name":"web","Action":"allow"}]}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let w = r
        .headers
        .get_all("x-tribune-warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("not enforced while the default intention policy is allow"));
}

#[tokio::test]
async fn acls_enforce_mesh_write_for_providers() {
    let api = Api::with_acls().await;
    let r = api.put(OKTA).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, "Permission denied: anonymous token lacks permission 'mesh:write'. The anonymous token is used implicitly when a request does not specify a token.");
    assert_eq!(r.headers["x-consul-default-acl-policy"], "deny");
    let reader = token_with(&api, "reader", "mesh = \"read\"").await;
    let r = api.call("PUT", "/v1/config", Some(&reader), OKTA).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body
            .starts_with("Permission denied: token with AccessorID '")
            && r.body.ends_with("' lacks permission 'mesh:write'"),
        "{}",
        r.body
    );
    let writer = token_with(&api, "writer", "mesh = \"write\"").await;
    assert_eq!(
        api.call("PUT", "/v1/config", Some(&writer), OKTA)
            .await
            .body,
        "true"
    );
    let r = api
        .call("GET", "/v1/config/jwt-provider/okta", Some(&reader), "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api
        .call(
            "GET",
            "/v1/config/jwt-provider/okta",
            Some("no-such-secret"),
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, "ACL not found")
    );
    // Bearer works too.
    let r = router(api.state.clone())
        .oneshot(
            Request::get("/v1/config/jwt-provider/okta")
                .header("authorization", format!("Bearer {writer}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn acls_for_intentions_services_and_list_filtering() {
    let api = Api::with_acls().await;
    api.call("PUT", "/v1/config", Some("root-secret"), OKTA)
        .await;
    let api_owner = token_with(
        &api,
        "api-owner",
        r#"service "api" { policy = "write" intentions = "write" }"#,
    )
    .await;
    let r = api.call("PUT", "/v1/config", Some(&api_owner), r#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Action":"allow"}]}"#).await;
    assert_eq!(
        r.body, "true",
        "intentions:write on the destination suffices"
    );
    let r = api.call("PUT", "/v1/config", Some(&api_owner), r#"{"Kind":"service-intentions","Name":"db","Sources":[{"Name":"web","Action":"allow"}]}"#).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body
            .ends_with("lacks permission 'intention:write' on \"db\""),
        "{}",
        r.body
    );
    let mesh = token_with(&api, "mesh", "mesh = \"write\"").await;
    let r = api.call("PUT", "/v1/config", Some(&mesh), r#"{"Kind":"service-intentions","Name":"db","Sources":[{"Name":"web","Action":"allow"}]}"#).await;
    assert_eq!(
        r.body, "true",
        "mesh:write also suffices (decisions.md #11)"
    );
    // service:write on any service may read jwt-providers.
    assert_eq!(
        api.call("GET", "/v1/config/jwt-provider/okta", Some(&api_owner), "")
            .await
            .status,
        StatusCode::OK
    );
    // Lists hide what the token may not read.
    let r = api
        .call("GET", "/v1/config/service-intentions", Some(&api_owner), "")
        .await;
    assert_eq!(r.names(), ["api"]);
    assert_eq!(r.headers["x-consul-results-filtered-by-acls"], "true");
    // check needs service:read on the destination.
    let r = api
        .call(
            "GET",
            "/v1/connect/intentions/check?source=web&destination=db",
            Some(&api_owner),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .call(
            "GET",
            "/v1/connect/intentions/check?source=web&destination=api",
            Some(&api_owner),
            "",
        )
        .await;
    assert_eq!(r.json()["Allowed"], json!(true));
}

#[tokio::test]
async fn bootstrap_once_and_acl_endpoints() {
    let mut c = AgentConfig::default();
    c.acl.enabled = true;
    c.acl.default_policy = "deny".into();
    let api = Api::new(c).await;
    let r = api.call("PUT", "/v1/acl/bootstrap", None, "").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["Policies"][0]["Name"], "global-management");
    let secret = v["SecretID"].as_str().unwrap().to_string();
    let again = api.call("PUT", "/v1/acl/bootstrap", None, "").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(
        again
            .body
            .starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{}",
        again.body
    );
    let r = api
        .call(
            "PUT",
            "/v1/acl/policy",
            Some(&secret),
            r#"{"Name":"bad","Rules":"mesh = \"admin\""}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.starts_with("Failed to parse ACL rules:"));
    let r = api
        .call(
            "PUT",
            "/v1/acl/token",
            Some(&secret),
            r#"{"Policies":[{"Name":"ghost"}]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .call("GET", "/v1/acl/token/self", Some(&secret), "")
        .await;
    assert_eq!(r.json()["SecretID"], json!(secret));
    let r = api.call("GET", "/v1/acl/tokens", None, "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn explain_and_l7_check_verify_the_request_token() {
    use base64::Engine;
    let secret = b"0123456789abcdef0123456789abcdef";
    let jwks = json!({"keys": [{"kty": "oct", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)}]});
    let api = Api::dev().await;
    let provider = json!({"Kind": "jwt-provider", "Name": "local", "Issuer": "me",
        "JSONWebKeySet": {"Local": {"JWKS": base64::engine::general_purpose::STANDARD.encode(jwks.to_string())}}});
    assert_eq!(api.put(&provider.to_string()).await.body, "true");
    api.put(API_HTTP).await;
    let intentions = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Permissions": [
        {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
        {"Action": "allow", "HTTP": {"PathPrefix": "/", "Methods": ["GET"]},
         "JWT": {"Providers": [{"Name": "local", "VerifyClaims": [{"Path": ["scope"], "Value": "read"}]}]}}]}]});
    assert_eq!(api.put(&intentions.to_string()).await.body, "true");
    let good = hs256(secret, json!({"iss": "me", "scope": ["read", "write"]}));

    let explain = |body: Value| {
        let api = &api;
        async move {
            api.call(
                "POST",
                "/v1/connect/intentions/explain",
                None,
                &body.to_string(),
            )
            .await
        }
    };
    let r =
        explain(json!({"Source": "web", "Destination": "api", "Path": "/items", "Token": good}))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["Allowed"], json!(true));
    assert_eq!(v["Permission"], json!(1));
    assert_eq!(v["Intention"]["SourceName"], json!("web"));

    // The /admin deny permission decides, whatever the token; path normalization applies.
    let v = explain(
        json!({"Source": "web", "Destination": "api", "Path": "/x/../%61dmin", "Token": good}),
    )
    .await
    .json();
    assert_eq!(
        (
            v["Allowed"].clone(),
            v["NormalizedPath"].clone(),
            v["Status"].clone()
        ),
        (json!(false), json!("/admin"), json!(403))
    );

    let forged = hs256(
        b"another-secret-another-secret-xx",
        json!({"iss": "me", "scope": "read"}),
    );
    let v =
        explain(json!({"Source": "web", "Destination": "api", "Path": "/items", "Token": forged}))
            .await
            .json();
    assert_eq!(
        (v["Status"].clone(), v["Body"].clone()),
        (json!(401), json!("Jwt verification fails"))
    );
    assert_eq!(
        v["WWWAuthenticate"],
        json!("Bearer realm=\"api\", error=\"invalid_token\"")
    );

    let r = api
        .call(
            "GET",
            "/v1/connect/intentions/check?source=web&destination=api&method=GET&path=/items",
            None,
            "",
        )
        .await;
    assert_eq!(
        r.json()["Allowed"],
        json!(false),
        "no token: the JWT requirement fails"
    );
    let req = Request::get(
        "/v1/connect/intentions/check?source=web&destination=api&method=GET&path=/items",
    )
    .header("x-tribune-request-token", &good)
    .body(Body::empty())
    .unwrap();
    let res = router(api.state.clone()).oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["Allowed"],
        json!(true)
    );
    // Without L7 parameters, check keeps Consul's rule: an L7 intention counts as denied.
    let r = api
        .call(
            "GET",
            "/v1/connect/intentions/check?source=web&destination=api",
            None,
            "",
        )
        .await;
    assert_eq!(r.json()["Allowed"], json!(false));
}

#[tokio::test]
async fn the_ca_issues_spiffe_leaves_and_rotates_roots() {
    let api = Api::dev().await;
    let roots = api.call("GET", "/v1/connect/ca/roots", None, "").await;
    assert_eq!(roots.status, StatusCode::OK);
    let r = roots.json();
    let td = r["TrustDomain"].as_str().unwrap().to_string();
    assert!(td.ends_with(".consul"), "{td}");
    assert_eq!(r["Roots"].as_array().unwrap().len(), 1);
    assert_eq!(r["Roots"][0]["Active"], true);
    assert!(r["Roots"][0].get("PrivateKey").is_none() && !roots.body.contains("PRIVATE KEY"));
    let first_root = r["ActiveRootID"].as_str().unwrap().to_string();

    let leaf = api
        .call("GET", "/v1/agent/connect/ca/leaf/web", None, "")
        .await;
    assert_eq!(leaf.status, StatusCode::OK, "{}", leaf.body);
    let l = leaf.json();
    assert_eq!(
        l["ServiceURI"],
        format!("spiffe://{td}/ns/default/dc/dc1/svc/web")
    );
    assert!(l["PrivateKeyPEM"].as_str().unwrap().contains("PRIVATE KEY"));
    let root_ders: Vec<_> = r["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|x| tribune_ca::certs_from_pem(x["RootCert"].as_str().unwrap()).unwrap())
        .collect();
    let leaf_der = tribune_ca::certs_from_pem(l["CertPEM"].as_str().unwrap())
        .unwrap()
        .remove(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let id = tribune_ca::verify_leaf(&leaf_der, &root_ders, &td, now, tribune_ca::Usage::Client)
        .unwrap();
    assert_eq!(id.service, "web");

    // Rotation: a new active root; the old one is still listed (its leaves are live).
    let rotated = api.call("PUT", "/v1/connect/ca/rotate", None, "").await;
    assert_eq!(rotated.status, StatusCode::OK);
    let r2 = api
        .call("GET", "/v1/connect/ca/roots", None, "")
        .await
        .json();
    assert_ne!(r2["ActiveRootID"], first_root.as_str());
    assert_eq!(r2["Roots"].as_array().unwrap().len(), 2);
    let new_leaf = api
        .call("GET", "/v1/agent/connect/ca/leaf/web", None, "")
        .await
        .json();
    assert_eq!(new_leaf["RootID"], r2["ActiveRootID"]);
}

#[tokio::test]
async fn leaves_need_service_write_and_rotation_needs_operator_write() {
    let api = Api::with_acls().await;
    let leaf = api
        .call("GET", "/v1/agent/connect/ca/leaf/web", None, "")
        .await;
    assert_eq!(leaf.status, StatusCode::FORBIDDEN);
    assert!(leaf.body.contains("service:write"), "{}", leaf.body);
    let rot = api.call("PUT", "/v1/connect/ca/rotate", None, "").await;
    assert_eq!(rot.status, StatusCode::FORBIDDEN);
    let ok = api
        .call(
            "GET",
            "/v1/agent/connect/ca/leaf/web",
            Some("root-secret"),
            "",
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn services_register_with_sidecars_and_are_found_by_destination() {
    let api = Api::dev().await;
    let web = r#"{"service": {"name": "web", "port": 8080,
        "connect": {"sidecar_service": {"proxy": {"upstreams": [{"destination_name": "api", "local_bind_port": 9191}]}}}}}"#;
    let r = api
        .call("PUT", "/v1/agent/service/register", None, web)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let api_svc =
        r#"{"Name": "api", "Port": 9090, "Connect": {"SidecarService": {"Port": 21500}}}"#;
    assert_eq!(
        api.call("PUT", "/v1/agent/service/register", None, api_svc)
            .await
            .status,
        StatusCode::OK
    );

    let sidecar = api
        .call("GET", "/v1/agent/service/web-sidecar-proxy", None, "")
        .await
        .json();
    assert_eq!(sidecar["Kind"], "connect-proxy");
    assert_eq!(sidecar["Port"], 21000, "first free sidecar port");
    assert_eq!(sidecar["Proxy"]["DestinationServiceName"], "web");
    assert_eq!(sidecar["Proxy"]["LocalServicePort"], 8080);
    assert_eq!(sidecar["Proxy"]["Upstreams"][0]["DestinationName"], "api");
    assert_eq!(sidecar["Proxy"]["Upstreams"][0]["LocalBindPort"], 9191);

    let health = api
        .call("GET", "/v1/health/connect/api", None, "")
        .await
        .json();
    assert_eq!(health.as_array().unwrap().len(), 1);
    assert_eq!(health[0]["Service"]["Port"], 21500);
    assert_eq!(health[0]["Service"]["Address"], "127.0.0.1");
    let names = api
        .call("GET", "/v1/catalog/services", None, "")
        .await
        .json();
    assert!(names.get("api-sidecar-proxy").is_some() && names.get("web").is_some());

    // Bad registrations name the field.
    let bad = api
        .call("PUT", "/v1/agent/service/register", None, r#"{"Name": "x", "Port": 1, "Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"LocalBindPort": 99999}]}}}}"#)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("Connect.SidecarService.Proxy.Upstreams[0].DestinationName: missing"),
        "{}",
        bad.body
    );
    assert!(
        bad.body.contains("LocalBindPort: must be a port number"),
        "{}",
        bad.body
    );
    assert_eq!(
        api.call("PUT", "/v1/agent/service/register", None, "{}")
            .await
            .body,
        "Missing service name"
    );

    // Deregistering removes the sidecar too.
    assert_eq!(
        api.call("PUT", "/v1/agent/service/deregister/api", None, "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.call("GET", "/v1/health/connect/api", None, "")
            .await
            .json(),
        json!([])
    );
    assert_eq!(
        api.call("PUT", "/v1/agent/service/deregister/api", None, "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// Writes update the agent's decoded-entry cache in place (no re-decode of the whole
/// table per write): after a mix of creates, updates and deletes, what the agent
/// serves and checks against must equal what a fresh agent reads from the store.
#[tokio::test]
async fn the_entry_cache_matches_the_store_after_writes_and_deletes() {
    let store: Arc<dyn tribune_store::Store> = Arc::new(RedbStore::in_memory().unwrap());
    let api = Api {
        state: AppState::new(store.clone(), AgentConfig::default())
            .await
            .unwrap(),
    };
    let writes = [
        API_HTTP,
        OKTA,
        r#"{"Kind":"service-defaults","Name":"zzz","Protocol":"http"}"#,
        r#"{"Kind":"service-defaults","Name":"aaa","Protocol":"grpc"}"#,
        API_L7,
        r#"{"Kind":"service-defaults","Name":"aaa","Protocol":"http"}"#,
    ];
    for body in writes {
        let r = api.put(body).await;
        assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.body);
    }
    let r = api
        .call("DELETE", "/v1/config/service-defaults/zzz", None, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Checked against the cached state: api has L7 intentions, so it can't become tcp.
    let r = api
        .put(r#"{"Kind":"service-defaults","Name":"api","Protocol":"tcp"}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("incompatible with L7"), "{}", r.body);

    let fresh = Api {
        state: AppState::new(store.clone(), AgentConfig::default())
            .await
            .unwrap(),
    };
    for uri in [
        "/v1/config/service-defaults",
        "/v1/config/service-intentions",
        "/v1/config/jwt-provider",
        "/v1/config/service-defaults/aaa",
    ] {
        let (cached, read) = (
            api.call("GET", uri, None, "").await,
            fresh.call("GET", uri, None, "").await,
        );
        assert_eq!(cached.status, StatusCode::OK, "{uri}");
        assert_eq!(cached.body, read.body, "{uri}");
    }
    let listed = api
        .call("GET", "/v1/config/service-defaults", None, "")
        .await;
    assert_eq!(listed.names(), ["aaa", "api"]);
}
