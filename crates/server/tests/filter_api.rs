//! `?filter=` on the list endpoints Consul filters, with the examples of Consul's
//! filtering docs and Consul's error (HTTP 500, bexpr's message).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{docs_services, enc, token_with, Api};

async fn agent_ids(api: &Api, expr: &str) -> Vec<String> {
    let r = api
        .call(
            "GET",
            &format!("/v1/agent/services?filter={}", enc(expr)),
            None,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{expr}: {}", r.body);
    let mut ids: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn agent_services_filter_like_consuls_docs() {
    let api = Api::dev().await;
    docs_services(&api).await;
    let table: &[(&str, &[&str])] = &[
        ("Meta.env == qa", &["redis3"]),
        ("\"primary\" in Tags", &["redis1", "redis3"]),
        ("Meta.env != prod and Service == redis", &["redis3"]),
        ("Service == redis and v1 in Tags", &["redis1", "redis2"]),
        ("Kind == \"connect-proxy\"", &["web-sidecar-proxy"]),
        (
            "Proxy.Upstreams.DestinationName == redis",
            &["web-sidecar-proxy"],
        ),
        ("Port == 8080 or Port == 1236", &["redis3", "web"]),
        (
            "Weights.Passing == 1 and ID matches \"^redis[12]\"",
            &["redis1", "redis2"],
        ),
        (
            "EnableTagOverride == false and Service contains web",
            &["web", "web-sidecar-proxy"],
        ),
    ];
    for (expr, want) in table {
        assert_eq!(agent_ids(&api, expr).await, *want, "{expr}");
    }
    // No filter, or an empty one, lists everything.
    assert_eq!(agent_ids(&api, "").await.len(), 5);
}

#[tokio::test]
async fn catalog_services_filter_service_nodes_then_collapse() {
    let api = Api::dev().await;
    docs_services(&api).await;
    let get = |expr: &'static str| {
        let api = &api;
        async move {
            let r = api
                .call(
                    "GET",
                    &format!("/v1/catalog/services?filter={}", enc(expr)),
                    None,
                    "",
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{expr}: {}", r.body);
            r.json()
        }
    };
    assert_eq!(
        get("ServiceMeta.env == prod").await,
        json!({"redis": ["primary", "v1", "secondary"]})
    );
    assert_eq!(
        get("ServiceTags contains v2 or ServiceName == web").await,
        json!({"redis": ["primary", "v2"], "web": ["v1"]})
    );
    assert_eq!(
        get("ServiceKind == \"connect-proxy\" and ServiceProxy.DestinationServiceName == web")
            .await,
        // The sidecar registered without its own Tags carries web's, as Consul's
        // sidecarServiceFromNodeService gives it.
        json!({"web-sidecar-proxy": ["v1"]})
    );
    assert_eq!(get("Node == tribune and ServicePort == 1").await, json!({}));
    // Unfiltered, every instance's tags are merged under the name.
    let all = api
        .call("GET", "/v1/catalog/services", None, "")
        .await
        .json();
    assert_eq!(all["redis"], json!(["primary", "v1", "secondary", "v2"]));
}

#[tokio::test]
async fn intentions_filter_on_consuls_fields() {
    let api = Api::dev().await;
    let r = api
        .put(
            r#"{"Kind": "service-intentions", "Name": "db", "Meta": {"team": "data"},
                "Sources": [{"Name": "web", "Action": "allow"},
                            {"Name": "batch", "Action": "deny", "Description": "nightly jobs"},
                            {"Name": "*", "Action": "deny"}]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api
        .put(r#"{"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Action": "allow"}]}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let pairs = |expr: &'static str| {
        let api = &api;
        async move {
            let r = api
                .call(
                    "GET",
                    &format!("/v1/connect/intentions?filter={}", enc(expr)),
                    None,
                    "",
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{expr}: {}", r.body);
            let mut v: Vec<String> = r
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    format!(
                        "{} => {}",
                        i["SourceName"].as_str().unwrap(),
                        i["DestinationName"].as_str().unwrap()
                    )
                })
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(pairs("SourceName==web").await, ["web => api", "web => db"]);
    assert_eq!(
        pairs("DestinationName == db and Action == deny").await,
        ["* => db", "batch => db"]
    );
    assert_eq!(
        pairs("Meta.team == data and SourceName != \"*\"").await,
        ["batch => db", "web => db"]
    );
    assert_eq!(pairs("Description contains nightly").await, ["batch => db"]);
    assert_eq!(
        pairs("Precedence == 9 and Action == allow").await,
        ["web => api", "web => db"]
    );
    assert_eq!(pairs("team not in Meta").await, ["web => api"]);
}

#[tokio::test]
async fn bad_expressions_get_consuls_500_and_message() {
    let api = Api::dev().await;
    let table = [
        (
            "/v1/connect/intentions",
            "SourceName = \"x\"",
            "Failed to create boolean expression evaluator: 1:12 (11): no match found, expected: \"!=\", \"==\", \"contains\", \"in\", \"is\", \"matches\", \"not\" or [ \\t\\r\\n]",
        ),
        (
            "/v1/connect/intentions",
            "Foo == x",
            "Failed to create boolean expression evaluator: Selector \"Foo\" is not valid",
        ),
        (
            "/v1/agent/services",
            "Tags == primary",
            "Failed to create boolean expression evaluator: Invalid match operator \"Equal\" for selector \"Tags\"",
        ),
        (
            "/v1/catalog/services",
            "ServiceTags == primary",
            "Failed to create boolean expression evaluator: Invalid match operator \"Equal\" for selector \"ServiceTags\"",
        ),
        (
            "/v1/connect/intentions",
            "Precedence == abc",
            "Failed to create boolean expression evaluator: Failed to coerce value \"abc\" for selector \"Precedence\": strconv.ParseInt: parsing \"abc\": invalid syntax",
        ),
    ];
    for (path, expr, want) in table {
        let r = api
            .call("GET", &format!("{path}?filter={}", enc(expr)), None, "")
            .await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, want),
            "{path} {expr}"
        );
    }
}

#[tokio::test]
async fn service_defaults_filter_and_other_kinds_refuse() {
    let api = Api::dev().await;
    for (name, proto) in [("web", "http"), ("db", "tcp")] {
        let r = api
            .put(&json!({"Kind": "service-defaults", "Name": name, "Protocol": proto}).to_string())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = api
        .call(
            "GET",
            "/v1/config/service-defaults?filter=Protocol==http",
            None,
            "",
        )
        .await;
    assert_eq!(r.names(), ["web"]);
    let r = api
        .call("GET", "/v1/config/jwt-provider?filter=Name==x", None, "")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn acl_lists_filter_and_secrets_are_not_selectors() {
    let api = Api::with_acls().await;
    token_with(&api, "reader", "service_prefix \"\" { policy = \"read\" }").await;
    token_with(&api, "writer", "service \"web\" { policy = \"write\" }").await;
    let r = api
        .call(
            "GET",
            &format!("/v1/acl/policies?filter={}", enc("Name matches \"^w\"")),
            Some("root-secret"),
            "",
        )
        .await;
    assert_eq!(r.names(), ["writer"]);
    let r = api
        .call(
            "GET",
            &format!("/v1/acl/tokens?filter={}", enc("Policies.Name == reader")),
            Some("root-secret"),
            "",
        )
        .await;
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["Policies"][0]["Name"], "reader");
    let r = api
        .call(
            "GET",
            &format!("/v1/acl/tokens?filter={}", enc("SecretID contains a")),
            Some("root-secret"),
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to create boolean expression evaluator: Selector \"SecretID\" is not valid"
        )
    );
}
