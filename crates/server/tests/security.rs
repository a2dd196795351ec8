//! The control plane's part of the security suite (`cargo test --test security` runs
//! every crate's): one named test per attack, each driving the real router. Each
//! test failed on the code before its fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// Logging in with an auth method (split by theme: this file is past 500 lines).
#[path = "security/login.rs"]
mod login;

/// HTTP/2 connections to the agent: held by their requests, not their bytes.
#[path = "security/http2.rs"]
mod http2;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::*;

/// Attack: a token with only `acl:read` lists the tokens, takes the bootstrap
/// token's accessor and reads its `SecretID`, becoming management.
#[tokio::test]
async fn acl_read_never_reveals_another_tokens_secret() {
    let api = Api::with_acls().await;
    let reader = token_with(&api, "reader", r#"acl = "read""#).await;
    let list = api.call("GET", "/v1/acl/tokens", Some(&reader), "").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let tokens = list.json();
    let tokens = tokens.as_array().unwrap();
    assert!(tokens.len() >= 2, "{tokens:?}");
    for t in tokens {
        assert_eq!(t["SecretID"], "<hidden>", "listed: {t}");
        let accessor = t["AccessorID"].as_str().unwrap();
        let one = api
            .call(
                "GET",
                &format!("/v1/acl/token/{accessor}"),
                Some(&reader),
                "",
            )
            .await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.body);
        assert_eq!(one.json()["SecretID"], "<hidden>", "read: {}", one.body);
        assert!(!one.body.contains("root-secret"), "{}", one.body);
        assert_eq!(one.json()["AccessorID"], accessor);
    }
    // The reader cannot use a hidden value, and the root secret never appeared.
    assert!(!list.body.contains("root-secret"));
    let r = api
        .call("GET", "/v1/acl/tokens", Some("<hidden>"), "")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// The rule's other side: `acl:write` sees secrets (Consul's rule), and every token
/// sees its own through `token/self`.
#[tokio::test]
async fn acl_write_and_token_self_see_secrets() {
    let api = Api::with_acls().await;
    let reader = token_with(&api, "reader", r#"acl = "read""#).await;
    let list = api
        .call("GET", "/v1/acl/tokens", Some("root-secret"), "")
        .await;
    let listed: Vec<Value> = list.json().as_array().unwrap().clone();
    assert!(listed.iter().any(|t| t["SecretID"] == "root-secret"));
    assert!(listed.iter().any(|t| t["SecretID"] == json!(reader)));
    let me = api
        .call("GET", "/v1/acl/token/self", Some(&reader), "")
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["SecretID"], json!(reader));
    assert!(
        me.json()["ModifyIndex"].as_u64().unwrap() > 0,
        "{}",
        me.body
    );
}

/// Policies and tokens need `acl:read` to be read at all; anonymous gets nothing.
#[tokio::test]
async fn acl_objects_need_acl_read() {
    let api = Api::with_acls().await;
    let other = token_with(&api, "mesh-reader", r#"mesh = "read""#).await;
    for path in ["/v1/acl/tokens", "/v1/acl/policies"] {
        for token in [None, Some(other.as_str())] {
            let r = api.call("GET", path, token, "").await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} {token:?}");
            assert!(r.body.contains("acl:read"), "{}", r.body);
        }
    }
}

/// The CA's root private key never leaves the agent: neither the roots endpoint nor
/// a leaf (which carries the leaf's own key only) contains it.
#[tokio::test]
async fn ca_endpoints_never_return_the_root_key() {
    let api = Api::dev().await;
    let roots = api.call("GET", "/v1/connect/ca/roots", None, "").await;
    assert_eq!(roots.status, StatusCode::OK);
    assert!(!roots.body.contains("PRIVATE KEY"), "{}", roots.body);
    let leaf = api
        .call("GET", "/v1/agent/connect/ca/leaf/web", None, "")
        .await;
    assert_eq!(leaf.status, StatusCode::OK, "{}", leaf.body);
    let key = leaf.json()["PrivateKeyPEM"].as_str().unwrap().to_string();
    assert_eq!(leaf.body.matches("PRIVATE KEY-----").count(), 2, "one key");
    // The leaf key is not the root's: it does not sign the root certificate.
    let root_pem = roots.json()["Roots"][0]["RootCert"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!root_pem.contains(&key));
}

/// Attack: a 24 KB ACL policy of 3 000 nested HCL objects overflowed the parser's
/// stack and aborted the agent. Every document the API parses (policy rules, config
/// entries in JSON and HCL-in-JSON, service definitions) is refused with the limit
/// named, and the agent keeps answering.
#[tokio::test]
async fn deeply_nested_documents_are_refused_and_the_agent_lives() {
    let api = Api::with_acls().await;
    let hcl = format!("{}x = 1{}", "service { ".repeat(3_000), "}".repeat(3_000));
    assert!(hcl.len() > 24_000);
    let r = api
        .call(
            "PUT",
            "/v1/acl/policy",
            Some("root-secret"),
            &json!({"Name": "deep", "Rules": hcl}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("nesting deeper than 64 levels (the limit)"),
        "{}",
        r.body
    );

    // JSON deeper than the limit (and deeper than serde_json's own 128).
    for depth in [65, 129, 3_000] {
        let deep = format!(
            r#"{{"Kind":"service-defaults","Name":"api","Meta":{}1{}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        );
        for path in ["/v1/config", "/v1/agent/service/register"] {
            let r = api.call("PUT", path, Some("root-secret"), &deep).await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{path} {depth}: {}",
                r.body
            );
            assert!(
                r.body.contains("nesting deeper than 64 levels"),
                "{}",
                r.body
            );
        }
    }
    let alive = api
        .call("GET", "/v1/acl/policies", Some("root-secret"), "")
        .await;
    assert_eq!(alive.status, StatusCode::OK);
}

async fn register(api: &Api, token: &str, body: Value) -> Reply {
    api.call(
        "PUT",
        "/v1/agent/service/register",
        Some(token),
        &body.to_string(),
    )
    .await
}

async fn registered(api: &Api, id: &str) -> Value {
    let r = api
        .call(
            "GET",
            &format!("/v1/agent/service/{id}"),
            Some("root-secret"),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.body);
    r.json()
}

/// Attack: a token for `web` re-registers `api`'s instance ID `api-1` as `web` on
/// another port, rewriting what `api`'s sidecar reads its local service from; or
/// registers a service whose generated sidecar ID is `api`'s sidecar.
#[tokio::test]
async fn registration_cannot_take_over_another_services_instance() {
    let api = Api::with_acls().await;
    let sidecar = json!({"SidecarService": {}});
    for body in [
        json!({"ID": "api-1", "Name": "api", "Port": 9090, "Connect": sidecar}),
        json!({"ID": "api", "Name": "api", "Port": 9091, "Connect": sidecar}),
    ] {
        let r = register(&api, "root-secret", body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let web = token_with(
        &api,
        "web",
        r#"service "web" { policy = "write" } service "web-sidecar-proxy" { policy = "write" }"#,
    )
    .await;
    let before = api
        .call("GET", "/v1/agent/services", Some("root-secret"), "")
        .await;
    for attack in [
        json!({"ID": "api-1", "Name": "web", "Port": 6666}),
        json!({"ID": "api-1-sidecar-proxy", "Name": "web", "Port": 6666}),
        // `web` with ID `api` would overwrite `api-sidecar-proxy` through its sidecar.
        json!({"ID": "api", "Name": "web", "Port": 6666, "Connect": {"SidecarService": {}}}),
    ] {
        let r = register(&api, &web, attack.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{attack}: {}", r.body);
        assert!(
            r.body.contains("lacks permission 'service:write' on \"api"),
            "{}",
            r.body
        );
    }
    let after = api
        .call("GET", "/v1/agent/services", Some("root-secret"), "")
        .await;
    assert_eq!(before.json(), after.json(), "the catalog is unchanged");
    assert_eq!(registered(&api, "api-1").await["Port"], 9090);
    // Its own registrations still work.
    let r = register(
        &api,
        &web,
        json!({"ID": "web-1", "Name": "web", "Port": 8080, "Connect": {"SidecarService": {}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Attack: deregistering another service's instance (or its sidecar) with a token
/// for a different service.
#[tokio::test]
async fn deregistration_needs_write_on_the_registered_service() {
    let api = Api::with_acls().await;
    let r = register(
        &api,
        "root-secret",
        json!({"ID": "api-1", "Name": "api", "Port": 9090, "Connect": {"SidecarService": {}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let web = token_with(&api, "web", r#"service_prefix "web" { policy = "write" }"#).await;
    for id in ["api-1", "api-1-sidecar-proxy"] {
        let r = api
            .call(
                "PUT",
                &format!("/v1/agent/service/deregister/{id}"),
                Some(&web),
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{id}: {}", r.body);
        registered(&api, id).await;
    }
}

/// A sidecar registration needs write on the sidecar's own name and on the service
/// it fronts (Consul's rule for connect-proxy registrations).
#[tokio::test]
async fn sidecar_registration_needs_write_on_the_sidecar_and_its_destination() {
    let api = Api::with_acls().await;
    let only_web = token_with(&api, "web-only", r#"service "web" { policy = "write" }"#).await;
    let r = register(
        &api,
        &only_web,
        json!({"Name": "web", "Port": 8080, "Connect": {"SidecarService": {}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("on \"web-sidecar-proxy\""), "{}", r.body);
    let r = register(&api, &only_web, json!({"Name": "web", "Port": 8080})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Attack: leaves were signed for names that make invalid SPIFFE IDs (`?x=1`, `#x`,
/// a space, a newline), which other verifiers parse differently. One name rule now
/// guards leaves, registrations, entries and intentions.
#[tokio::test]
async fn service_names_that_break_spiffe_ids_are_refused_everywhere() {
    let api = Api::dev().await;
    for bad in ["api%3Fx=1", "api%23x", "a%20b", "api%0A", "a%00b", "a%5Cb"] {
        let r = api
            .call("GET", &format!("/v1/agent/connect/ca/leaf/{bad}"), None, "")
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "leaf {bad}: {}", r.body);
        assert!(r.body.contains("only letters, digits"), "{}", r.body);
    }
    for bad in ["api?x=1", "api#x", "a b", "api\n", "a\u{0}b"] {
        for body in [
            json!({"Name": bad, "Port": 1}),
            json!({"Name": "ok", "ID": bad, "Port": 1}),
        ] {
            let r = api
                .call("PUT", "/v1/agent/service/register", None, &body.to_string())
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        }
        for entry in [
            json!({"Kind": "service-defaults", "Name": bad, "Protocol": "http"}),
            json!({"Kind": "service-intentions", "Name": bad, "Sources": [{"Name": "web", "Action": "allow"}]}),
            json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": bad, "Action": "allow"}]}),
        ] {
            let r = api
                .call("PUT", "/v1/config", None, &entry.to_string())
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{entry}: {}", r.body);
            assert!(r.body.contains("only letters, digits"), "{}", r.body);
        }
    }
    let ok = api
        .call("GET", "/v1/agent/connect/ca/leaf/web-1", None, "")
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

fn oct_provider(name: &str, secret: &[u8], header: &str) -> Value {
    use base64::Engine;
    let jwks = json!({"keys": [{"kty": "oct",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)}]});
    json!({
        "Kind": "jwt-provider", "Name": name, "Issuer": name,
        "JSONWebKeySet": {"Local": {"JWKS": base64::engine::general_purpose::STANDARD.encode(jwks.to_string())}},
        "Forwarding": {"HeaderName": header},
    })
}

/// Attack: a sidecar's token read every provider's inline keys through its snapshot,
/// so `web`'s sidecar held `billing`'s HMAC secret. A snapshot now carries only the
/// providers its intentions reference; the others give only their forwarding header
/// names (still removed from client requests). Writing inline symmetric keys warns.
#[tokio::test]
async fn snapshots_carry_only_the_providers_their_intentions_reference() {
    use base64::Engine;
    let api = Api::dev().await;
    let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let web_secret = b"web-secret-web-secret-web-secret";
    let billing_secret = b"billing-secret-billing-secret-xx";
    for p in [
        oct_provider("web-idp", web_secret, "x-web-claims"),
        oct_provider("billing-idp", billing_secret, "x-billing-claims"),
    ] {
        let r = api.put(&p.to_string()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let warnings: Vec<&str> = r
            .headers
            .get_all("x-tribune-warning")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("inline symmetric (oct) keys")),
            "{warnings:?}"
        );
    }
    for e in [
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "*",
            "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"},
                "JWT": {"Providers": [{"Name": "web-idp"}]}}]}]}),
    ] {
        let r = api.put(&e.to_string()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = api
        .call("GET", "/v1/tribune/proxy-snapshot/web", None, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let names: Vec<String> = r.json()["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["Kind"].as_str().unwrap(),
                e["Name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(names, ["jwt-provider/web-idp", "service-intentions/web"]);
    assert_eq!(r.json()["ForwardingHeaders"], json!(["x-billing-claims"]));
    let billing_jwks = base64::engine::general_purpose::STANDARD
        .encode(json!({"keys": [{"kty": "oct", "k": b64(billing_secret)}]}).to_string());
    assert!(!r.body.contains(&billing_jwks) && !r.body.contains(&b64(billing_secret)));
    // A service whose intentions reference no provider gets none.
    let r = api
        .call("GET", "/v1/tribune/proxy-snapshot/db", None, "")
        .await;
    assert!(!r.body.contains("\"jwt-provider\""), "{}", r.body);
}

/// The `mesh` entry decides how every sidecar reads paths, so writing it needs
/// `mesh:write` (or `operator:write`); anyone may read it, as in Consul.
#[tokio::test]
async fn the_mesh_entry_needs_mesh_write() {
    let api = Api::with_acls().await;
    let entry = json!({"Kind": "mesh", "HTTP": {"Incoming": {"RequestNormalization": {
        "PathWithEscapedSlashesAction": "KEEP_UNCHANGED"}}}})
    .to_string();
    let services = token_with(&api, "svc", r#"service_prefix "" { policy = "write" }"#).await;
    for token in [None, Some(services.as_str())] {
        let r = api.call("PUT", "/v1/config", token, &entry).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(r.body.contains("mesh:write"), "{}", r.body);
    }
    let operator = token_with(&api, "op", r#"operator = "write""#).await;
    let r = api.call("PUT", "/v1/config", Some(&operator), &entry).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api.call("GET", "/v1/config/mesh/mesh", None, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["HTTP"]["Incoming"]["RequestNormalization"]["PathWithEscapedSlashesAction"],
        "KEEP_UNCHANGED"
    );
    // Every sidecar's snapshot carries it.
    let r = api
        .call(
            "GET",
            "/v1/tribune/proxy-snapshot/web",
            Some("root-secret"),
            "",
        )
        .await;
    assert!(r.body.contains("KEEP_UNCHANGED"), "{}", r.body);
}

/// Attack (DoS): unauthenticated blocking queries from one client could hold every
/// connection the agent has. Consul's `limits { http_max_conns_per_client }`: past
/// the limit a client gets Consul's raw 429 and the connection is closed; when one
/// of its connections closes it may open another.
#[tokio::test]
async fn one_client_cannot_hold_more_than_its_connection_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = Api::dev().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limited = tribune_server::listener::LimitedListener::new(listener, 3);
    let app = tribune_server::router(api.state.clone());
    tokio::spawn(async move { axum::serve(limited, app).await });
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /v1/config/service-intentions?index=1&wait=30s HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .unwrap();
        held.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let read_all = |mut s: tokio::net::TcpStream| async move {
        let mut out = String::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            s.read_to_string(&mut out),
        )
        .await;
        out
    };
    let fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = read_all(fourth).await;
    assert!(
        answer.starts_with("HTTP/1.1 429 Too Many Requests"),
        "{answer}"
    );
    assert!(answer.ends_with(
        "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
    ));
    drop(held.pop());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
    again
        .write_all(
            b"GET /v1/config/service-intentions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = read_all(again).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The explain API answers what the sidecar does with an escaped separator: 400
/// before any intention is consulted (it used to explain the request as allowed).
#[tokio::test]
async fn explain_reports_the_sidecars_answer_to_escaped_separators() {
    let api = Api::dev().await;
    for e in [
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*",
            "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/public/"}}]}]}),
    ] {
        assert_eq!(api.put(&e.to_string()).await.status, StatusCode::OK);
    }
    let explain = |path: &str| {
        json!({"Source": "web", "Destination": "api", "Method": "GET", "Path": path}).to_string()
    };
    let r = api
        .call(
            "POST",
            "/v1/connect/intentions/explain",
            None,
            &explain("/public/..%2Fadmin"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["Allowed"], false, "{}", r.body);
    assert_eq!(r.json()["Status"], 400);
    let r = api
        .call(
            "POST",
            "/v1/connect/intentions/explain",
            None,
            &explain("/public/ok"),
        )
        .await;
    assert_eq!(r.json()["Allowed"], true, "{}", r.body);
}

/// Attack (round 3, item 8, DNS rebinding): a page on `rebind.attacker.test`,
/// resolved to 127.0.0.1, wrote a `* -> *` allow intention, read every entry and took
/// api's leaf key from an agent on loopback. Now, on loopback, a `Host` that names
/// neither loopback nor a configured name gets 421 before any handler runs.
#[tokio::test]
async fn a_rebound_host_name_is_refused_on_loopback() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let api = Api::new(tribune_server::AgentConfig {
        allowed_hosts: vec!["agent.internal".into()],
        ..Default::default()
    })
    .await;
    let send = |host: &'static str, method: &'static str, uri: &'static str, body: &'static str| {
        let app = tribune_server::router(api.state.clone());
        async move {
            let res = app
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri(uri)
                        .header("host", host)
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let allow_all =
        r#"{"Kind":"service-intentions","Name":"*","Sources":[{"Name":"*","Action":"allow"}]}"#;
    let (status, body) = send("rebind.attacker.test:8500", "PUT", "/v1/config", allow_all).await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("DNS rebinding"), "{body}");
    for host in ["rebind.attacker.test", "10.1.2.3:8500"] {
        assert_eq!(
            send(host, "GET", "/v1/agent/connect/ca/leaf/api", "")
                .await
                .0,
            421
        );
        assert_eq!(send(host, "GET", "/ui/", "").await.0, 421);
    }
    assert_eq!(
        api.call("GET", "/v1/config/service-intentions", None, "")
            .await
            .json(),
        serde_json::json!([])
    );
    for host in [
        "127.0.0.1:8500",
        "localhost:8500",
        "[::1]:8500",
        "agent.internal:8500",
    ] {
        assert_eq!(
            send(host, "GET", "/v1/status/leader", "").await.0,
            200,
            "{host}"
        );
    }
}

/// An agent behind the listener the binary uses (3 connections per client), with
/// short head (300 ms) and idle (800 ms) deadlines; its address.
pub(crate) async fn limited_agent() -> std::net::SocketAddr {
    let api = Api::dev().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limited = tribune_server::listener::LimitedListener::new(listener, 3).with_timeouts(
        std::time::Duration::from_millis(300),
        std::time::Duration::from_millis(800),
    );
    let app = tribune_server::router(api.state.clone());
    tokio::spawn(tribune_server::listener::serve(
        limited,
        app,
        None,
        std::future::pending(),
    ));
    addr
}

/// Attack on the HTTPS listener: connections that open TCP and never finish (or
/// never start) a TLS handshake hold a client's places only until the head deadline,
/// as silent plain-text ones do; a handshake completed in time is served.
#[tokio::test]
async fn stalled_tls_handshakes_are_closed_and_give_their_places_back() {
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = tribune_test_support::pki::Pki::generate(dir.path(), "agent");
    let block = tribune_server::agent_config::TlsBlock {
        cert_file: Some(pki.server_cert.display().to_string()),
        key_file: Some(pki.server_key.display().to_string()),
        ..Default::default()
    };
    let acceptor =
        tokio_rustls::TlsAcceptor::from(tribune_server::tls::server_config(&block).unwrap());
    let api = Api::dev().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limited = tribune_server::listener::LimitedListener::new(listener, 3)
        .with_timeouts(Duration::from_millis(300), Duration::from_millis(800));
    let app = tribune_server::router(api.state.clone());
    tokio::spawn(tribune_server::listener::serve(
        limited,
        app,
        Some(acceptor),
        std::future::pending(),
    ));
    let closed_within = |mut s: tokio::net::TcpStream, within: Duration| async move {
        let mut out = Vec::new();
        tokio::time::timeout(within, s.read_to_end(&mut out))
            .await
            .is_ok()
    };
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(fourth, Duration::from_secs(2)).await,
        "a fourth was admitted"
    );
    for s in silent {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "a silent TLS connection outlived the head deadline"
        );
    }
    // The places are free: a real TLS client is served.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&pki.ca).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    tls.write_all(
        b"GET /v1/status/leader HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// Attack (round 3, item 11): 200 connections from 127.0.0.1 that never sent a byte
/// filled the per-client limit, and the CLI and root token got 429 for 70 s; the agent
/// never closed a connection without a complete request head. Now a connection must
/// complete its head in time (10 s; here 300 ms) and may idle between requests only
/// so long (90 s; here 800 ms), while a blocking query that waits longer is served.
#[tokio::test]
async fn silent_and_idle_connections_are_closed_and_give_their_places_back() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = limited_agent().await;
    // What the server sent until it closed; panics when it did not close in time.
    let read_all = |mut s: tokio::net::TcpStream, within: Duration| async move {
        let mut out = Vec::new();
        let closed = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
        assert!(closed.is_ok(), "still open after {within:?}");
        String::from_utf8_lossy(&out).into_owned()
    };
    // Three silent connections fill the limit: a fourth is refused...
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_all(fourth, Duration::from_secs(2))
        .await
        .starts_with("HTTP/1.1 429"));
    // ...until their head deadline closes them.
    for s in silent {
        let closed = read_all(s, Duration::from_secs(3)).await;
        assert!(closed.is_empty(), "{closed}");
    }
    // A head sent slowly, byte by byte past the deadline, is cut too.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /v1/status/leader HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = slow.write_all(b"Host: localhost\r\n\r\n").await;
    assert!(!read_all(slow, Duration::from_secs(2))
        .await
        .starts_with("HTTP/1.1 200"));
    // A blocking query that waits longer than the head deadline is answered.
    let mut blocking = tokio::net::TcpStream::connect(addr).await.unwrap();
    blocking
        .write_all(b"GET /v1/config/service-intentions?index=1&wait=1s HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), blocking.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // Then, idle on keep-alive, it is closed after the idle timeout.
    let rest = read_all(blocking, Duration::from_secs(3)).await;
    assert!(!rest.contains("HTTP/1.1"), "{rest}");
    // And every place is free again.
    let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
    again
        .write_all(
            b"GET /v1/status/leader HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    assert!(read_all(again, Duration::from_secs(2))
        .await
        .starts_with("HTTP/1.1 200"));
}

/// Hardening round 3, item 5: one bad entry froze a service's sidecars (the agent
/// served a document they could not install; they kept the last one while `/ready`
/// said LIVE). Writes now compile what sidecars compile; an entry stored without that
/// check (by an older version, say) makes the agent refuse to serve the document,
/// naming why, instead of serving one no sidecar can install.
#[tokio::test]
async fn the_agent_never_serves_a_document_its_sidecars_cannot_install() {
    let api = Api::dev().await;
    // Through the API: refused at write, with the parser's reason.
    let r = api
        .put(r#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Permissions":[{"Action":"allow","HTTP":{"PathRegex":"/admin(unclosed"}}]}]}"#)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains("PathRegex is not a valid regular expression"),
        "{}",
        r.body
    );
    // Stored without the write checks: an intention requiring a provider that does
    // not exist.
    let raw = br#"{"Kind":"service-intentions","Name":"api","JWT":{"Providers":[{"Name":"ghost"}]},"Sources":[{"Name":"web","Action":"allow"}]}"#;
    let op = tribune_store::Op::put(
        "config-entries",
        "service-intentions/api",
        raw.to_vec(),
        tribune_store::Cas::Any,
    );
    api.state.store.apply(&[op]).await.unwrap();
    let r = api
        .call("GET", "/v1/tribune/proxy-snapshot/api", None, "")
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.contains("does not compile, so it is not served") && r.body.contains("ghost"),
        "{}",
        r.body
    );
    // Other services' documents are served as before.
    let r = api
        .call("GET", "/v1/tribune/proxy-snapshot/web", None, "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Attack (round 3, item 9): a token with only `service "web" { policy = "write" }`
/// PUT a shadow report for api's candidate with `Changed` near 2^64, so the sums
/// wrapped and the CLI, API and UI showed a breaking change as safe; it also
/// overwrote api's own sidecar record, and unbounded reports took the agent to
/// gigabytes. Now: api's candidate takes reports from api's sidecars only, unknown
/// candidates are refused, records are keyed by candidate, service and proxy, sums
/// saturate, and a service keeps a bounded number of records.
#[tokio::test]
async fn shadow_reports_cannot_be_forged_or_flood_the_agent() {
    let api = Api::with_acls().await;
    let root = Some("root-secret");
    let live =
        r#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Action":"allow"}]}"#;
    assert_eq!(api.call("PUT", "/v1/config", root, live).await.status, 200);
    let candidate =
        r#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Action":"deny"}]}"#;
    let r = api
        .call("PUT", "/v1/config?stage=true", root, candidate)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let staged = api.call("GET", "/v1/tribune/staged", root, "").await.json();
    let label = staged[0]["Candidate"].as_str().unwrap().to_string();
    let web = token_with(&api, "web-sidecar", r#"service "web" { policy = "write" }"#).await;
    let mine = token_with(&api, "api-sidecar", r#"service "api" { policy = "write" }"#).await;
    let report = |candidate: &str, service: &str, proxy: &str, seen: u64, changed: u64| {
        serde_json::json!([{"Candidate": candidate, "Service": service, "Proxy": proxy,
                            "Seen": seen, "Changed": changed}])
        .to_string()
    };
    let put = |token: String, body: String| {
        let api = &api;
        async move {
            api.call("PUT", "/v1/tribune/shadow-report", Some(&token), &body)
                .await
        }
    };
    // web's sidecar cannot speak for api's candidate, under either name.
    let r = put(
        web.clone(),
        report(&label, "web", "api-sidecar-2", 1_000_000, u64::MAX - 4),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("from sidecars of \"api\" only"),
        "{}",
        r.body
    );
    let r = put(
        web.clone(),
        report(&label, "api", "api-sidecar-proxy", 1, 0),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // A candidate that is not staged.
    let r = put(
        mine.clone(),
        report("service-intentions/api@999999", "api", "p", 1, 0),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("no staged candidate"), "{}", r.body);
    // api's sidecars: summed with saturation, each keyed by its own name.
    assert_eq!(
        put(mine.clone(), report(&label, "api", "p1", u64::MAX, 5))
            .await
            .status,
        200
    );
    assert_eq!(
        put(mine.clone(), report(&label, "api", "p2", 10, u64::MAX))
            .await
            .status,
        200
    );
    let shown = api.call("GET", "/v1/tribune/staged", root, "").await.json();
    assert_eq!(shown[0]["Seen"], serde_json::json!(u64::MAX));
    assert_eq!(shown[0]["Changed"], serde_json::json!(u64::MAX));
    assert_eq!(shown[0]["Sidecars"].as_array().unwrap().len(), 2);
    // Names are bounded, and so is the number of records of a service.
    let r = put(mine.clone(), report(&label, "api", &"p".repeat(300), 1, 0)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    for i in 3..=256 {
        let r = put(mine.clone(), report(&label, "api", &format!("p{i}"), 1, 0)).await;
        assert_eq!(r.status, 200, "{i}: {}", r.body);
    }
    let r = put(mine.clone(), report(&label, "api", "p257", 1, 0)).await;
    assert_eq!(r.status, 429, "{}", r.body);
    // A sidecar refreshing its own record is still taken.
    assert_eq!(
        put(mine.clone(), report(&label, "api", "p1", 2, 0))
            .await
            .status,
        200
    );
    // Groups of differences are bounded too: their number and their texts.
    let group = |caller: &str, count: u64| {
        serde_json::json!({"Caller": caller, "Method": "GET", "PathPrefix": "/v1",
            "Live": "allow", "Candidate": "deny", "Reason": "default", "LiveStatus": 200,
            "CandidateStatus": 403, "Count": count, "Example": "GET /v1/items"})
    };
    let with_groups = |proxy: &str, groups: Vec<serde_json::Value>| {
        serde_json::json!([{"Candidate": label, "Service": "api", "Proxy": proxy,
            "Seen": 10, "Changed": 4, "Groups": groups}])
        .to_string()
    };
    let r = put(
        mine.clone(),
        with_groups("p1", (0..11).map(|i| group(&format!("c{i}"), 1)).collect()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("Groups: at most 10"), "{}", r.body);
    let r = put(
        mine.clone(),
        with_groups("p1", vec![group(&"w".repeat(300), 1)]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("Groups[0].Caller"), "{}", r.body);
    // Two sidecars' groups are summed by what they group, largest first.
    assert_eq!(
        put(
            mine.clone(),
            with_groups("p1", vec![group("web", 3), group("batch", 1)])
        )
        .await
        .status,
        200
    );
    assert_eq!(
        put(mine, with_groups("p2", vec![group("batch", 4)]))
            .await
            .status,
        200
    );
    let shown = api.call("GET", "/v1/tribune/staged", root, "").await.json();
    let groups = shown[0]["Groups"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| (g["Caller"].as_str().unwrap(), g["Count"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        [("batch", 5), ("web", 3)]
    );
}

/// The head deadline is for heads: a body sent after `100 Continue` more slowly than
/// the head deadline is still read, and the request answered.
#[tokio::test]
async fn a_slow_body_after_100_continue_is_not_cut() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = limited_agent().await;
    let body = r#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("PUT /v1/config HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    let (a, b) = body.split_at(10);
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// Attack (round 3, item 17): a `web` token registered the ID `api2-sidecar-proxy`
/// before api2 did, and api2's own sidecar registration was then refused. The ID
/// `X-sidecar-proxy` now belongs to a connect-proxy for X, which only a token that
/// may write X's service can register.
#[tokio::test]
async fn a_sidecar_id_belongs_to_its_service() {
    let api = Api::with_acls().await;
    let web = token_with(
        &api,
        "web-only",
        r#"service "web" { policy = "write" }
service "web-sidecar-proxy" { policy = "write" }
service "api2-sidecar-proxy" { policy = "write" }"#,
    )
    .await;
    let reg = |body: serde_json::Value, token: &str| {
        let api = &api;
        let token = token.to_string();
        async move {
            api.call(
                "PUT",
                "/v1/agent/service/register",
                Some(&token),
                &body.to_string(),
            )
            .await
        }
    };
    // A plain service under the sidecar's ID (even one calling itself a proxy for
    // web): refused.
    let r = reg(
        serde_json::json!({"ID": "api2-sidecar-proxy", "Name": "web", "Port": 1}),
        &web,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("is the sidecar of service ID \"api2\""),
        "{}",
        r.body
    );
    let r = reg(
        serde_json::json!({"ID": "api2-sidecar-proxy", "Name": "web-sidecar-proxy", "Kind": "connect-proxy",
            "Port": 21000, "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "api2"}}),
        &web,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // api2 registers itself and its sidecar as usual.
    let body = serde_json::json!({"ID": "api2", "Name": "api", "Port": 8080,
        "Connect": {"SidecarService": {}}});
    let r = reg(body, "root-secret").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .call(
            "GET",
            "/v1/agent/service/api2-sidecar-proxy",
            Some("root-secret"),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["Proxy"]["DestinationServiceName"], "api");
}

/// Audit (round 3, item 14): `POST /v1/tribune/config/validate` checked no ACL, so
/// anonymous callers learned which providers exist, protocols, and whether L7
/// intentions exist. Syntax and the entry's own rules are still anyone's; the checks
/// against stored entries need what a write of the entry needs.
#[tokio::test]
async fn validate_tells_about_stored_entries_only_to_writers() {
    let api = Api::with_acls().await;
    let provider = r#"{"Kind":"jwt-provider","Name":"okta","Issuer":"https://okta.example","JSONWebKeySet":{"Remote":{"URI":"https://okta.example/keys"}}}"#;
    assert_eq!(
        api.call("PUT", "/v1/config", Some("root-secret"), provider)
            .await
            .status,
        200
    );
    let probe = r#"{"Kind":"service-intentions","Name":"api","JWT":{"Providers":[{"Name":"okta"}]},"Sources":[{"Name":"web","Action":"allow"}]}"#;
    let r = api
        .call("POST", "/v1/tribune/config/validate", None, probe)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!r.body.contains("okta"), "{}", r.body);
    // A broken entry is still explained to anyone (nothing stored is consulted).
    let broken = r#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web"}]}"#;
    let r = api
        .call("POST", "/v1/tribune/config/validate", None, broken)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["Valid"], false);
    // A writer gets the whole answer.
    let r = api
        .call(
            "POST",
            "/v1/tribune/config/validate",
            Some("root-secret"),
            probe,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["Valid"], true, "{}", r.body);
}

/// Audit (round 3, item 13): promote was not pinned to the reviewed candidate; a
/// candidate staged again after review was promoted unseen. `?index=` (the CLI's
/// `config promote -index N`) now refuses a candidate staged since.
#[tokio::test]
async fn promote_can_be_pinned_to_the_reviewed_candidate() {
    let api = Api::dev().await;
    let stage = |action: &'static str| {
        let api = &api;
        async move {
            let body = format!(
                r#"{{"Kind":"service-intentions","Name":"api","Sources":[{{"Name":"web","Action":"{action}"}}]}}"#
            );
            let r = api.call("PUT", "/v1/config?stage=true", None, &body).await;
            assert_eq!(r.status, 200, "{}", r.body);
            api.call("GET", "/v1/tribune/staged", None, "").await.json()[0]["StagedIndex"]
                .as_u64()
                .unwrap()
        }
    };
    let reviewed = stage("allow").await;
    let restaged = stage("deny").await;
    assert_ne!(reviewed, restaged);
    let promote = |index: u64| {
        let api = &api;
        async move {
            api.call(
                "PUT",
                &format!("/v1/tribune/staged/service-intentions/api/promote?index={index}"),
                None,
                "",
            )
            .await
        }
    };
    let r = promote(reviewed).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("staged again since index"), "{}", r.body);
    let r = promote(restaged).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let live = api
        .call("GET", "/v1/config/service-intentions/api", None, "")
        .await
        .json();
    assert_eq!(live["Sources"][0]["Action"], "deny");
}

/// Issue #40 keeps resolved authorizers per index of the ACL tables: a change to a
/// token, its policy or its role takes effect on the very next request (the cache
/// never answers for a state that is gone).
#[tokio::test]
async fn a_cached_authorizer_never_outlives_an_acl_change() {
    let api = Api::with_acls().await;
    let root = Some("root-secret");
    let policy = api
        .call(
            "PUT",
            "/v1/acl/policy",
            root,
            r#"{"Name":"api-read","Rules":"service \"api\" { policy = \"read\" }"}"#,
        )
        .await
        .json();
    let token = api
        .call(
            "PUT",
            "/v1/acl/token",
            root,
            r#"{"Policies":[{"Name":"api-read"}]}"#,
        )
        .await
        .json();
    let (secret, accessor) = (
        token["SecretID"].as_str().unwrap().to_string(),
        token["AccessorID"].as_str().unwrap().to_string(),
    );
    let write = r#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#;
    let read = |s: String| {
        let api = &api;
        async move {
            api.call("GET", "/v1/config/service-defaults", Some(&s), "")
                .await
                .status
        }
    };
    let put = |s: String| {
        let api = &api;
        async move { api.call("PUT", "/v1/config", Some(&s), write).await.status }
    };
    // Resolved (and kept): read yes, write no.
    assert_eq!(read(secret.clone()).await, 200);
    assert_eq!(put(secret.clone()).await, 403);
    assert_eq!(put(secret.clone()).await, 403);
    // The policy grows: the next request may write.
    let id = policy["ID"].as_str().unwrap();
    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/policy/{id}"),
            root,
            r#"{"Name":"api-read","Rules":"service \"api\" { policy = \"write\" }"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(put(secret.clone()).await, 200);
    // The token goes: the next request is refused.
    let r = api
        .call("DELETE", &format!("/v1/acl/token/{accessor}"), root, "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(read(secret.clone()).await, 403);
    assert_eq!(put(secret).await, 403);
}
