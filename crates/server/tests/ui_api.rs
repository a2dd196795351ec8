//! The endpoints the web UI calls beyond Consul's API, and the UI's own files: served
//! with a strict CSP, off with `ui = false`; validate checks like a write and stores
//! nothing; `?format=hcl` renders what parses back; sidecar reports are kept per
//! sidecar and shown only to tokens that may read the service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::{token_with, Api};
use tribune_server::AgentConfig;

const INTENTIONS: &str = r#"
Kind = "service-intentions"
Name = "api"
Sources = [
  { Name = "web", Action = "allow" },
]
"#;

/// An entry file as the JSON body `PUT /v1/config` takes.
fn json_of(hcl: &str) -> String {
    tribune_model::parse_entry(hcl)
        .unwrap()
        .to_json()
        .to_string()
}

#[tokio::test]
async fn ui_files_are_served_with_a_strict_csp_and_can_be_turned_off() {
    let api = Api::dev().await;
    let r = api.call("GET", "/", None, "").await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.headers["location"], "/ui/");
    let r = api.call("GET", "/ui/", None, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<script src=\"/ui/app.js\""), "{}", r.body);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
        ("/ui/vendor/dagre.min.js", "text/javascript"),
    ] {
        let r = api.call("GET", path, None, "").await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    assert_eq!(
        api.call("GET", "/ui/../Cargo.toml", None, "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call("GET", "/ui/missing.js", None, "").await.status,
        StatusCode::NOT_FOUND
    );

    let off = Api::new(AgentConfig {
        ui: false,
        ..AgentConfig::default()
    })
    .await;
    for path in ["/", "/ui", "/ui/", "/ui/app.js"] {
        assert_eq!(
            off.call("GET", path, None, "").await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let me = off.call("GET", "/v1/agent/self", None, "").await.json();
    assert_eq!(me["DebugConfig"]["UIConfig"]["Enabled"], false);
}

#[tokio::test]
async fn validate_names_the_field_and_stores_nothing() {
    let api = Api::dev().await;
    let bad = INTENTIONS.replace("\"allow\"", "\"maybe\"");
    let r = api
        .call("POST", "/v1/tribune/config/validate", None, &bad)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["Valid"], false);
    let errors = v["Errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["Field"], "Sources[0].Action");
    assert_eq!(
        errors[0]["Message"],
        "Sources[0].Action must be set to 'allow' or 'deny'"
    );

    // A misspelt key is a decode error naming the key.
    let typo = INTENTIONS.replace("Action =", "Acton =");
    let v = api
        .call("POST", "/v1/tribune/config/validate", None, &typo)
        .await
        .json();
    assert_eq!(v["Valid"], false);
    assert!(
        v["Errors"][0]["Field"].as_str().unwrap().contains("Acton"),
        "{v}"
    );

    let v = api
        .call("POST", "/v1/tribune/config/validate", None, INTENTIONS)
        .await
        .json();
    assert_eq!(v["Valid"], true, "{v}");
    assert_eq!(v["Kind"], "service-intentions");
    assert_eq!(v["Name"], "api");
    assert_eq!(v["Entry"]["Sources"][0]["Name"], "web");
    assert_eq!(v["Errors"], json!([]));
    // Nothing was stored by any of the three.
    let r = api
        .call("GET", "/v1/config/service-intentions/api", None, "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn validate_reports_cross_entry_errors_and_write_warnings() {
    let api = Api::dev().await;
    // A JWT requirement naming a provider that does not exist: the write would fail.
    let needs_provider = r#"
Kind = "service-intentions"
Name = "api"
JWT { Providers = [{ Name = "okta" }] }
Sources = [{ Name = "web", Action = "allow" }]
"#;
    let v = api
        .call("POST", "/v1/tribune/config/validate", None, needs_provider)
        .await
        .json();
    assert_eq!(v["Valid"], false, "{v}");
    let message = v["Errors"][0]["Message"].as_str().unwrap().to_string();
    let put = api.put(&json_of(needs_provider)).await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST);
    assert!(put.body.contains(&message), "{} vs {message}", put.body);
}

#[tokio::test]
async fn entries_render_as_hcl_that_parses_back() {
    let api = Api::dev().await;
    assert_eq!(api.put(&json_of(INTENTIONS)).await.status, StatusCode::OK);
    let r = api
        .call(
            "GET",
            "/v1/config/service-intentions/api?format=hcl",
            None,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let json = api
        .call("GET", "/v1/config/service-intentions/api", None, "")
        .await
        .json();
    let back = tribune_model::parse_entry(&r.body).unwrap();
    assert_eq!(back.to_json()["Sources"], json["Sources"]);
    assert_eq!(back.name(), "api");
}

fn report(service: &str, proxy: &str) -> String {
    json!({
        "Service": service,
        "Proxy": proxy,
        "SnapshotIndex": 7,
        "SnapshotVersion": 2,
        "LastSync": 1000,
        "ReportedAt": 1000,
        "Providers": [{
            "Name": "okta",
            "Source": "remote https://example.invalid/jwks",
            "Keys": [{"Kid": "k1", "Kty": "RSA", "Alg": "RS256"}],
            "LastError": "connection refused",
            "UnknownKidRefetches": 3
        }]
    })
    .to_string()
}

#[tokio::test]
async fn sidecar_reports_are_kept_per_sidecar_and_filtered_by_service_read() {
    let api = Api::with_acls().await;
    let api_writer = token_with(&api, "api-w", r#"service "api" { policy = "write" }"#).await;
    let web_writer = token_with(&api, "web-w", r#"service "web" { policy = "write" }"#).await;

    // A sidecar may report only for a service its token may write.
    let r = api
        .call(
            "PUT",
            "/v1/tribune/sidecar-report",
            Some(&web_writer),
            &report("api", "api-1-sidecar-proxy"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    for (token, service, proxy) in [
        (&api_writer, "api", "api-1-sidecar-proxy"),
        (&api_writer, "api", "api-2-sidecar-proxy"),
        (&web_writer, "web", "web-1-sidecar-proxy"),
        // A second report replaces the first of that sidecar.
        (&api_writer, "api", "api-1-sidecar-proxy"),
    ] {
        let r = api
            .call(
                "PUT",
                "/v1/tribune/sidecar-report",
                Some(token),
                &report(service, proxy),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let proxies = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["Proxy"].as_str().unwrap().to_string())
            .collect()
    };
    let all = api
        .call("GET", "/v1/tribune/sidecars", Some("root-secret"), "")
        .await
        .json();
    assert_eq!(
        proxies(all.clone()),
        [
            "api-1-sidecar-proxy",
            "api-2-sidecar-proxy",
            "web-1-sidecar-proxy"
        ]
    );
    let first = &all[0];
    assert_eq!(first["SnapshotVersion"], 2);
    assert_eq!(first["Providers"][0]["Keys"][0]["Kid"], "k1");
    assert_eq!(first["Providers"][0]["UnknownKidRefetches"], 3);
    assert!(first["SecondsSinceReport"].as_i64().unwrap() >= 0);
    // LastSync is on the sidecar's clock; the agent reports its age, not the time.
    assert!(first["SecondsSinceSync"].as_i64().unwrap() >= 0);

    let web_only = api
        .call("GET", "/v1/tribune/sidecars", Some(&web_writer), "")
        .await
        .json();
    assert_eq!(proxies(web_only), ["web-1-sidecar-proxy"]);
    let anonymous = api.call("GET", "/v1/tribune/sidecars", None, "").await;
    assert_eq!(anonymous.json(), json!([]));

    // Missing names and unknown fields are refused, with the field named.
    let r = api
        .call(
            "PUT",
            "/v1/tribune/sidecar-report",
            Some("root-secret"),
            r#"{"Service": "api"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Proxy"), "{}", r.body);
    let r = api
        .call(
            "PUT",
            "/v1/tribune/sidecar-report",
            Some("root-secret"),
            r#"{"Service": "api", "Proxy": "p", "Secret": 1}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Secret"), "{}", r.body);
}

#[tokio::test]
async fn agent_self_has_consuls_shape() {
    let api = Api::dev().await;
    let v = api.call("GET", "/v1/agent/self", None, "").await.json();
    assert_eq!(v["Config"]["Datacenter"], "dc1");
    assert_eq!(v["Config"]["Server"], true);
    assert_eq!(v["Config"]["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["DebugConfig"]["DefaultIntentionPolicy"], "deny");
    assert_eq!(v["DebugConfig"]["ACLsEnabled"], false);
    assert_eq!(v["Member"]["Status"], 1);
    assert!(v["Member"]["Name"].is_string());
}
