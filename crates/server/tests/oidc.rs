//! OIDC sign-in (issue #43): auth-url and callback against a provider in process
//! that checks what a real one checks (client secret, redirect URI, PKCE), and the
//! attacks on the flow: replayed states and codes, a state for another method, a
//! wrong ClientNonce, an ID token for another nonce or another client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use axum::http::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use support::*;
use tribune_test_support::tokens::Rs256;

const ROOT: Option<&str> = Some("root-secret");

/// What the provider answers the next code exchange with.
#[derive(Default)]
struct Next {
    /// `nonce` to put in the ID token (the test reads it from the auth URL).
    nonce: String,
    /// `aud` of the ID token.
    aud: String,
    /// The PKCE challenge the code was issued for.
    challenge: String,
    /// How many exchanges were made.
    exchanges: usize,
}

struct Idp {
    issuer: String,
    next: Arc<Mutex<Next>>,
}

/// An OpenID provider: discovery, keys, and a token endpoint that checks the client
/// secret (Basic), the grant, and the PKCE verifier against the challenge.
async fn idp(key: Arc<Rs256>) -> Idp {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let next = Arc::new(Mutex::new(Next::default()));
    let (iss, n, k) = (issuer.clone(), next.clone(), key.clone());
    let discovery = json!({"issuer": issuer, "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/jwks")});
    let jwks = json!({"keys": [key.jwk()]});
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route("/jwks", get(move || async move { axum::Json(jwks) }))
        .route(
            "/token",
            post(
                move |headers: axum::http::HeaderMap, body: String| async move {
                    use base64::Engine;
                    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                    let basic = base64::engine::general_purpose::STANDARD.encode("tribune:s3cret");
                    let auth_ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                        == Some(&format!("Basic {basic}"));
                    let mut next = n.lock().unwrap();
                    next.exchanges += 1;
                    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                        aws_lc_rs::digest::digest(
                            &aws_lc_rs::digest::SHA256,
                            form.get("code_verifier")
                                .map_or("", String::as_str)
                                .as_bytes(),
                        ),
                    );
                    if !auth_ok
                        || form.get("grant_type").map(String::as_str) != Some("authorization_code")
                        || form.get("code").map(String::as_str) != Some("good-code")
                        || challenge != next.challenge
                    {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "invalid_grant"})),
                        );
                    }
                    let now = unix_now();
                    let id_token = k.sign(&json!({"iss": iss, "aud": next.aud, "sub": "alice",
                    "nonce": next.nonce, "groups": ["ops"], "email": "alice@example.com",
                    "iat": now, "exp": now + 300}));
                    (
                        StatusCode::OK,
                        axum::Json(json!({"id_token": id_token, "token_type": "Bearer"})),
                    )
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Idp { issuer, next }
}

async fn setup() -> (Api, Idp) {
    let api = Api::with_acls().await;
    setup_on(api).await
}

async fn setup_on(api: Api) -> (Api, Idp) {
    let idp = idp(Arc::new(Rs256::new("idp-1"))).await;
    let m = json!({"Name": "sso", "Type": "oidc", "DisplayName": "Company SSO", "MaxTokenTTL": "8h",
        "Config": {"OIDCDiscoveryURL": idp.issuer, "OIDCClientID": "tribune",
            "OIDCClientSecret": "s3cret", "OIDCScopes": ["email", "groups"],
            "AllowedRedirectURIs": ["http://localhost:8550/oidc/callback",
                "https://tribune.example/ui/oidc/callback"],
            "ClaimMappings": {"email": "email"}, "ListClaimMappings": {"groups": "groups"}}});
    let r = api
        .call("PUT", "/v1/acl/auth-method", ROOT, &m.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    token_with(&api, "operator-read", "operator = \"read\"").await;
    let r = api
        .call(
            "PUT",
            "/v1/acl/binding-rule",
            ROOT,
            &json!({"AuthMethod": "sso", "BindType": "policy", "BindName": "operator-read",
                "Selector": "\"ops\" in list.groups"})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (api, idp)
}

/// The query of an auth URL, by name.
fn query(url: &str) -> HashMap<String, String> {
    form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
        .into_owned()
        .collect()
}

/// auth-url for `sso`; the provider is told the nonce and challenge it will see.
async fn start(
    api: &Api,
    idp: &Idp,
    redirect: &str,
    client_nonce: &str,
) -> HashMap<String, String> {
    let r = api
        .call(
            "POST",
            "/v1/acl/oidc/auth-url",
            None,
            &json!({"AuthMethod": "sso", "RedirectURI": redirect, "ClientNonce": client_nonce,
                "Meta": {"via": "test"}})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let url = r.json()["AuthURL"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/auth?", idp.issuer)), "{url}");
    let q = query(&url);
    let mut next = idp.next.lock().unwrap();
    next.nonce = q["nonce"].clone();
    next.challenge = q["code_challenge"].clone();
    next.aud = "tribune".into();
    q
}

async fn callback(api: &Api, state: &str, code: &str, client_nonce: &str) -> Reply {
    api.call(
        "POST",
        "/v1/acl/oidc/callback",
        None,
        &json!({"AuthMethod": "sso", "State": state, "Code": code, "ClientNonce": client_nonce})
            .to_string(),
    )
    .await
}

#[tokio::test]
async fn a_person_signs_in_with_the_code_flow_and_gets_a_scoped_expiring_token() {
    let (api, idp) = setup().await;
    // The sign-in page lists the OIDC methods without a token.
    let r = api
        .call("GET", "/v1/internal/ui/oidc-auth-methods", None, "")
        .await;
    assert_eq!(
        r.json(),
        json!([{"Name": "sso", "Type": "oidc", "DisplayName": "Company SSO"}])
    );
    // A CLI listener on any loopback port matches the allowed loopback URI.
    let q = start(&api, &idp, "http://localhost:41999/oidc/callback", "cn-1").await;
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "tribune");
    assert_eq!(q["scope"], "openid email groups");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], "http://localhost:41999/oidc/callback");
    assert!(q["state"].len() >= 40 && q["nonce"].len() >= 40);
    let r = callback(&api, &q["state"], "good-code", "cn-1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = r.json();
    assert_eq!(t["AuthMethod"], "sso");
    assert_eq!(t["Policies"][0]["Name"], "operator-read");
    assert_eq!(
        t["Description"],
        "token created via OIDC login: {\"via\":\"test\"}"
    );
    assert!(t["ExpirationTime"].is_string());
    let secret = t["SecretID"].as_str().unwrap();
    let r = api.call("GET", "/v1/agent/metrics", Some(secret), "").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "operator:read granted: {}",
        r.body
    );
    let r = api.call("GET", "/v1/acl/tokens", Some(secret), "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "and nothing more");
    let r = api.call("POST", "/v1/acl/logout", Some(secret), "").await;
    assert_eq!(r.body, "true");
}

/// Attacks on the flow: each refused, and no token is made.
#[tokio::test]
async fn oidc_callbacks_refuse_replays_mixed_up_states_and_substituted_tokens() {
    let (api, idp) = setup().await;
    let tokens_before = api.call("GET", "/v1/acl/tokens", ROOT, "").await.json();
    let expired = "Provider login failed: Expired or missing OAuth state.";

    // A state never issued.
    let r = callback(&api, "0123456789abcdef", "good-code", "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, expired)
    );

    // A wrong ClientNonce burns the state: no second try with it.
    let q = start(
        &api,
        &idp,
        "https://tribune.example/ui/oidc/callback",
        "cn-1",
    )
    .await;
    let r = callback(&api, &q["state"], "good-code", "cn-2").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "Token verification failed: invalid ClientNonce"
        )
    );
    let r = callback(&api, &q["state"], "good-code", "cn-1").await;
    assert_eq!(r.body, expired, "a state is good for one callback");

    // An ID token minted for another sign-in (another nonce) or another client.
    let q = start(&api, &idp, "https://tribune.example/ui/oidc/callback", "").await;
    idp.next.lock().unwrap().nonce = "someone-elses-nonce".into();
    let r = callback(&api, &q["state"], "good-code", "").await;
    assert_eq!(r.body, "Token verification failed: Invalid ID token nonce.");
    let q = start(&api, &idp, "https://tribune.example/ui/oidc/callback", "").await;
    idp.next.lock().unwrap().aud = "another-client".into();
    let r = callback(&api, &q["state"], "good-code", "").await;
    assert_eq!(
        r.body,
        "Token verification failed: the ID token's aud does not name the client"
    );

    // A code the provider refuses (replayed, or for another verifier).
    let q = start(&api, &idp, "https://tribune.example/ui/oidc/callback", "").await;
    let r = callback(&api, &q["state"], "stolen-code", "").await;
    assert_eq!(
        r.body,
        "Provider login failed: Error exchanging oidc code: token endpoint answered HTTP 400 (invalid_grant)"
    );

    // Redirects outside the allowed list never get an auth URL.
    for bad in [
        "https://evil.example/ui/oidc/callback",
        "http://127.0.0.1:8550/oidc/callback",
        "http://localhost:8550/elsewhere",
    ] {
        let r = api
            .call(
                "POST",
                "/v1/acl/oidc/auth-url",
                None,
                &json!({"AuthMethod": "sso", "RedirectURI": bad}).to_string(),
            )
            .await;
        assert_eq!(
            (r.status, r.body.clone()),
            (
                StatusCode::BAD_REQUEST,
                format!("unauthorized redirect_uri: {bad}")
            )
        );
    }
    // A JWT login to an OIDC method, and an OIDC sign-in to a JWT method.
    let r = api
        .call(
            "POST",
            "/v1/acl/login",
            None,
            &json!({"AuthMethod": "sso", "BearerToken": "x.y.z"}).to_string(),
        )
        .await;
    assert_eq!(r.body, "ClaimsFromJWT is incompatible with type \"oidc\"");
    assert_eq!(
        api.call("GET", "/v1/acl/tokens", ROOT, "").await.json(),
        tokens_before,
        "no token was made"
    );
}

/// Agents sharing a store behind one load balancer: the sign-in started on one is
/// finished on the other, once.
#[tokio::test]
async fn a_sign_in_started_on_one_agent_finishes_on_another() {
    let mut config = tribune_server::AgentConfig::default();
    config.acl.enabled = true;
    config.acl.default_policy = "deny".into();
    config.acl.initial_management = Some("root-secret".into());
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let a = Api {
        state: tribune_server::AppState::new(store.clone(), config.clone())
            .await
            .unwrap(),
    };
    let b = Api {
        state: tribune_server::AppState::new(store, config).await.unwrap(),
    };
    let (a, idp) = setup_on(a).await;
    let q = start(&a, &idp, "https://tribune.example/ui/oidc/callback", "").await;
    let r = callback(&b, &q["state"], "good-code", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = callback(&a, &q["state"], "good-code", "").await;
    assert_eq!(
        r.body, "Provider login failed: Expired or missing OAuth state.",
        "not a second time, on either agent"
    );
}
