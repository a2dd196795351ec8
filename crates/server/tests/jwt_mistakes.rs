//! The JWT mistakes users make (issue #42), each a row: what the caller gets (status,
//! body, challenge) and what explain says (reason code, the sentence, the token's
//! outcome). The provider is the seed's: `Issuer = "okta"`, while real tokens carry
//! a URL. The same decision is what the sidecar answers and logs (one engine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use serde_json::{json, Value};
use support::{hs256, Api};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Row {
    name: &'static str,
    token: Option<String>,
    status: u16,
    body: &'static str,
    challenge: &'static str,
    code: &'static str,
    /// Words the explanation must hold.
    says: &'static [&'static str],
    outcome: &'static str,
}

#[tokio::test]
async fn each_jwt_mistake_is_named_where_users_look() {
    use base64::Engine;
    let jwks = json!({"keys": [{"kty": "oct", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET)}]});
    let api = Api::dev().await;
    let provider = json!({"Kind": "jwt-provider", "Name": "okta", "Issuer": "okta",
        "JSONWebKeySet": {"Local": {"JWKS": base64::engine::general_purpose::STANDARD.encode(jwks.to_string())}}});
    assert_eq!(api.put(&provider.to_string()).await.body, "true");
    api.put(r#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#)
        .await;
    let intentions = json!({"Kind": "service-intentions", "Name": "api",
        "JWT": {"Providers": [{"Name": "okta"}]},
        "Sources": [{"Name": "web", "Action": "allow"}]});
    assert_eq!(api.put(&intentions.to_string()).await.body, "true");
    let realm = "Bearer realm=\"api\"";
    let invalid = "Bearer realm=\"api\", error=\"invalid_token\"";
    let url_issuer = "https://dev-123.okta.com/oauth2/default";
    let rows = [
        Row {
            name: "the real issuer's URL, for a provider whose Issuer is a name",
            token: Some(hs256(SECRET, json!({"iss": url_issuer, "sub": "alice"}))),
            status: 401,
            body: "Jwt issuer is not configured",
            challenge: invalid,
            code: "jwt_issuer_unknown",
            says: &[
                "iss \"https://dev-123.okta.com/oauth2/default\"",
                "expected \"okta\"",
                "check the provider's Issuer",
            ],
            outcome: "issuer_unknown",
        },
        Row {
            name: "a token without iss",
            token: Some(hs256(SECRET, json!({"sub": "alice"}))),
            status: 401,
            body: "Jwt issuer is not configured",
            challenge: invalid,
            code: "jwt_issuer_unknown",
            says: &["has no iss", "expected \"okta\""],
            outcome: "issuer_unknown",
        },
        Row {
            name: "not a JWT",
            token: Some("not-a-jwt".into()),
            status: 401,
            body: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            challenge: invalid,
            code: "jwt_malformed",
            says: &["is not a JWT"],
            outcome: "malformed",
        },
        Row {
            name: "no token",
            token: None,
            status: 401,
            body: "Jwt is missing",
            challenge: realm,
            code: "jwt_missing",
            says: &["no token for provider \"okta\""],
            outcome: "missing",
        },
        Row {
            name: "a token signed with another key",
            token: Some(hs256(
                b"another-secret-another-secret-xx",
                json!({"iss": "okta"}),
            )),
            status: 401,
            body: "Jwt verification fails",
            challenge: invalid,
            code: "jwt_invalid",
            says: &["failed: Jwt verification fails"],
            outcome: "bad_signature",
        },
        Row {
            name: "the provider's own token",
            token: Some(hs256(SECRET, json!({"iss": "okta", "sub": "alice"}))),
            status: 200,
            body: "",
            challenge: "",
            code: "intention",
            says: &["Allowed"],
            outcome: "valid",
        },
    ];
    for row in rows {
        let mut body = json!({"Source": "web", "Destination": "api", "Path": "/items"});
        if let Some(t) = &row.token {
            body["Token"] = json!(t);
        }
        let r = api.explain(&body).await;
        assert_eq!(r.status, 200, "{}: {}", row.name, r.body);
        let v = r.json();
        let name = row.name;
        assert_eq!(v["Status"], json!(row.status), "{name}: {v}");
        if row.status != 200 {
            assert_eq!(v["Body"], json!(row.body), "{name}");
            assert_eq!(v["WWWAuthenticate"], json!(row.challenge), "{name}");
        }
        assert_eq!(v["ReasonCode"], json!(row.code), "{name}: {v}");
        let reason = v["Reason"].as_str().unwrap();
        for words in row.says {
            assert!(reason.contains(words), "{name}: {reason:?} lacks {words:?}");
        }
        assert_eq!(v["Tokens"][0]["Outcome"], json!(row.outcome), "{name}: {v}");
        if let Some(t) = &row.token {
            assert!(
                !v.to_string().contains(t.as_str()),
                "{name}: the token was echoed"
            );
        }
    }
}

/// The mistakes that can be seen when an entry is written are named then, in the
/// answer's `X-Tribune-Warning` headers (what `config write` prints).
#[tokio::test]
async fn provider_and_claim_mistakes_are_warned_about_at_write_time() {
    let api = Api::dev().await;
    let warnings = |r: &support::Reply| -> Vec<String> {
        r.headers
            .get_all("x-tribune-warning")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    // The seed's provider: a name as Issuer, remote keys, no Audiences.
    let seed = json!({"Kind": "jwt-provider", "Name": "okta", "Issuer": "okta",
        "JSONWebKeySet": {"Remote": {"URI": "https://idp.example/v1/keys"}}});
    let r = api.put(&seed.to_string()).await;
    assert_eq!(r.body, "true");
    let w = warnings(&r);
    assert!(
        w.iter().any(|w| w.contains("Issuer \"okta\" is not a URL")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains("has no Audiences")), "{w:?}");
    api.put(r#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#)
        .await;
    let intentions = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web",
        "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"},
            "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": "perms.role", "Value": "admin"}]}]}}]}]});
    let r = api.put(&intentions.to_string()).await;
    assert_eq!(r.body, "true");
    assert!(
        warnings(&r)
            .iter()
            .any(|w| w.contains("did you mean [\"perms\", \"role\"]?")),
        "{:?}",
        warnings(&r)
    );
}

/// A provider that reads its own header gets a token sent in `Authorization`: the
/// caller is told the token is missing (nothing where the provider looks), and
/// explain and the log say where it was.
#[tokio::test]
async fn a_token_sent_where_its_provider_does_not_look_is_named() {
    use base64::Engine;
    let jwks = json!({"keys": [{"kty": "oct", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET)}]});
    let api = Api::dev().await;
    let provider = json!({"Kind": "jwt-provider", "Name": "partner", "Issuer": "https://partner.example/",
        "Audiences": ["billing"],
        "Locations": [{"Header": {"Name": "X-Partner-Token"}}],
        "JSONWebKeySet": {"Local": {"JWKS": base64::engine::general_purpose::STANDARD.encode(jwks.to_string())}}});
    assert_eq!(api.put(&provider.to_string()).await.body, "true");
    api.put(r#"{"Kind":"service-defaults","Name":"billing","Protocol":"http"}"#)
        .await;
    let intentions = json!({"Kind": "service-intentions", "Name": "billing",
        "JWT": {"Providers": [{"Name": "partner"}]},
        "Sources": [{"Name": "web", "Action": "allow"}]});
    assert_eq!(api.put(&intentions.to_string()).await.body, "true");
    let token = hs256(
        SECRET,
        json!({"iss": "https://partner.example/", "aud": "billing"}),
    );
    let explain = |body: Value| {
        let api = &api;
        async move { api.explain(&body).await.json() }
    };
    let v = explain(json!({"Source": "web", "Destination": "billing", "Token": token})).await;
    assert_eq!(v["Status"], 401, "{v}");
    assert_eq!(v["Body"], "Jwt is missing");
    assert_eq!(v["WWWAuthenticate"], "Bearer realm=\"billing\"");
    assert_eq!(v["ReasonCode"], "jwt_wrong_location", "{v}");
    let reason = v["Reason"].as_str().unwrap();
    assert!(
        reason.contains("one with its Issuer was sent in header Authorization"),
        "{reason}"
    );
    assert_eq!(v["Tokens"][0]["Outcome"], "wrong_location");
    // Where the provider looks, it is accepted.
    let v = explain(json!({"Source": "web", "Destination": "billing",
        "Headers": {"X-Partner-Token": [token]}}))
    .await;
    assert_eq!(
        (v["Status"].clone(), v["ReasonCode"].clone()),
        (json!(200), json!("intention")),
        "{v}"
    );
    // No token anywhere stays "missing".
    let v = explain(json!({"Source": "web", "Destination": "billing"})).await;
    assert_eq!(v["ReasonCode"], "jwt_missing");

    // In another provider's own header: named as that provider's location.
    let inhouse = json!({"Kind": "jwt-provider", "Name": "inhouse", "Issuer": "https://inhouse.example/",
        "Audiences": ["billing"],
        "Locations": [{"Header": {"Name": "X-Inhouse-Token"}}],
        "JSONWebKeySet": {"Local": {"JWKS": base64::engine::general_purpose::STANDARD.encode(jwks.to_string())}}});
    assert_eq!(api.put(&inhouse.to_string()).await.body, "true");
    let both = json!({"Kind": "service-intentions", "Name": "billing", "Sources": [
        {"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"},
            "JWT": {"Providers": [{"Name": "partner"}]}}]},
        {"Name": "batch", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"},
            "JWT": {"Providers": [{"Name": "inhouse"}]}}]}]});
    assert_eq!(api.put(&both.to_string()).await.body, "true");
    let v = explain(json!({"Source": "web", "Destination": "billing",
        "Headers": {"X-Inhouse-Token": [token]}}))
    .await;
    assert_eq!(v["ReasonCode"], "jwt_wrong_location", "{v}");
    assert!(
        v["Reason"]
            .as_str()
            .unwrap()
            .contains("was sent in a location of provider \"inhouse\""),
        "{v}"
    );
}

/// A key set URI that answers 404 is written, with the agent's finding as a warning
/// when the write asks for the check (`?check=true`, what `config write` sends).
#[tokio::test]
async fn a_provider_whose_keys_cannot_be_fetched_is_written_with_a_warning() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    let api = Api::dev().await;
    let provider = json!({"Kind": "jwt-provider", "Name": "gone", "Issuer": "https://idp.example/",
        "Audiences": ["api"],
        "JSONWebKeySet": {"Remote": {"URI": format!("http://{addr}/keys")}}})
    .to_string();
    let r = api
        .call("PUT", "/v1/config?check=true", None, &provider)
        .await;
    assert_eq!(r.body, "true", "written all the same");
    let warnings: Vec<&str> = r
        .headers
        .get_all("x-tribune-warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("jwt-provider \"gone\": the agent could not fetch its keys (")
            && warnings[0].contains("404")
            && warnings[0].contains("tribune jwt-provider check gone"),
        "{warnings:?}"
    );
    // Without the check, no fetch is made at write time.
    let r = api.put(&provider).await;
    assert_eq!(r.body, "true");
    assert_eq!(r.headers.get_all("x-tribune-warning").iter().count(), 0);
}
