//! JWT-SVIDs from the agent's CA (issue #45) with the real binary: PyJWT verifies one
//! with keys found through the agent's discovery document, and an intention requires
//! a mesh JWT whose `sub` is the caller's SPIFFE ID, through a `jwt-provider` that
//! points at the same document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::{json, Value};
use std::process::Command;

fn svid(agent: &str, service: &str, audience: &str) -> Value {
    let (status, body) = request(
        agent,
        "POST",
        "/v1/agent/connect/ca/jwt-svid",
        &[],
        &json!({"Service": service, "Audience": [audience]}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn mesh_jwts_verify_outside_the_mesh_and_intentions_can_require_them() {
    let (_agent, addr) = dev_agent(&[]);
    let issuer = format!("http://{addr}");
    let web = svid(&addr, "web", "api");
    let token = web["Token"].as_str().unwrap();
    let spiffe = web["SpiffeID"].as_str().unwrap();

    // Outside the mesh: PyJWT finds the keys through OIDC discovery.
    let script = r#"
import json, sys, urllib.request
import jwt
issuer, token = sys.argv[1], sys.argv[2]
doc = json.load(urllib.request.urlopen(issuer + "/.well-known/openid-configuration"))
assert doc["issuer"] == issuer, doc
key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=doc["id_token_signing_alg_values_supported"],
                    audience="api", issuer=issuer)
print(claims["sub"])
"#;
    let out = Command::new("python3")
        .args(["-c", script, &issuer, token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), spiffe);

    // Inside: api requires a mesh JWT naming web.
    let provider = json!({"Kind": "jwt-provider", "Name": "mesh", "Issuer": issuer,
        "JSONWebKeySet": {"Remote": {"URI": format!("{issuer}/.well-known/openid-configuration")}},
        "Audiences": ["api"]});
    let intentions = json!({"Kind": "service-intentions", "Name": "api",
        "JWT": {"Providers": [{"Name": "mesh", "VerifyClaims": [{"Path": ["sub"], "Value": spiffe}]}]},
        "Sources": [{"Name": "*", "Action": "allow"}]});
    for (body, what) in [
        (
            json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
            "defaults",
        ),
        (provider, "provider"),
        (intentions, "intentions"),
    ] {
        let (status, text) = request(&addr, "PUT", "/v1/config", &[], &body.to_string());
        assert_eq!(status, 200, "{what}: {text}");
    }
    let explain = |token: Option<&str>| {
        let mut body = json!({"Source": "web", "Destination": "api", "Path": "/items"});
        if let Some(t) = token {
            body["Token"] = json!(t);
        }
        let (status, text) = request(
            &addr,
            "POST",
            "/v1/connect/intentions/explain",
            &[],
            &body.to_string(),
        );
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let v = explain(Some(token));
    assert_eq!(v["Status"], 200, "web's mesh JWT: {v}");
    let v = explain(None);
    assert_eq!(v["Status"], 401, "no JWT: {v}");
    let billing = svid(&addr, "web", "billing");
    let v = explain(billing["Token"].as_str());
    assert_eq!(v["Status"], 401, "minted for another audience: {v}");
    let other = svid(&addr, "batch", "api");
    let v = explain(other["Token"].as_str());
    assert_eq!(v["Status"], 403, "another service's JWT: {v}");

    // Across a plain-HTTP hop (a load balancer in front of api's sidecar's edge
    // listener): the same tokens, the same answers.
    let app = upstream();
    let dir = tempfile::tempdir().unwrap();
    let (_sidecar, f) = spawn(
        &[
            "connect",
            "proxy",
            "-service",
            "api",
            "-local-service-address",
            &app.to_string(),
            "-edge-listener",
            "127.0.0.1:0",
            "-admin-bind",
            "127.0.0.1:0",
            "-http-addr",
            &addr,
            "-state-dir",
            dir.path().to_str().unwrap(),
        ],
        "proxy running!",
    );
    let edge = field(&f, "Edge listener").to_string();
    let bearer = |t: &str| format!("Bearer {t}");
    for (token, want) in [
        (Some(token.to_string()), 200),
        (None, 401),
        (billing["Token"].as_str().map(str::to_string), 401),
        (other["Token"].as_str().map(str::to_string), 403),
    ] {
        let auth = token.as_deref().map(bearer);
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let mut got = 0;
        // The sidecar fetches the agent's keys on the first token.
        for _ in 0..50 {
            got = request(&edge, "GET", "/items", &headers, "").0;
            if got == want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(got, want, "{token:?}");
    }
}
