//! The node, instance and health views Consul tooling walks (`/v1/catalog/nodes`,
//! `/v1/catalog/service/<name>`, `/v1/catalog/datacenters`,
//! `/v1/health/service/<name>`), in Consul's shapes, with their query parameters
//! and ACL checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use serde_json::Value;
use support::{docs_services, enc, token_with, Api};

fn ids(v: &Value, pointer: &str) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.pointer(pointer).unwrap().as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn catalog_nodes_lists_the_agent_node_in_consuls_shape() {
    let api = Api::dev().await;
    let r = api.call("GET", "/v1/catalog/nodes", None, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.headers.contains_key("x-consul-index"));
    let nodes = r.json();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    let n = &nodes[0];
    assert_eq!(n["Node"], "tribune");
    assert_eq!(n["Datacenter"], "dc1");
    assert!(!n["Address"].as_str().unwrap().is_empty());
    assert!(
        !n["Address"].as_str().unwrap().contains(':'),
        "host only: {n}"
    );
    assert_eq!(n["TaggedAddresses"]["lan"], n["Address"]);
    assert!(n["Meta"].as_object().unwrap().is_empty());

    for (query, want) in [
        (format!("filter={}", enc("Node == tribune")), 1),
        (format!("filter={}", enc("Datacenter == dc2")), 0),
        (format!("filter={}", enc("Meta is empty")), 1),
        ("node-meta=rack:r1".to_string(), 0),
    ] {
        let r = api
            .call("GET", &format!("/v1/catalog/nodes?{query}"), None, "")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        assert_eq!(r.json().as_array().unwrap().len(), want, "{query}");
    }
    let bad = api
        .call(
            "GET",
            &format!("/v1/catalog/nodes?filter={}", enc("Nope == 1")),
            None,
            "",
        )
        .await;
    assert_eq!(bad.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        bad.body.contains("Selector \"Nope\" is not valid"),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn catalog_datacenters_names_the_agents() {
    let api = Api::dev().await;
    let r = api.call("GET", "/v1/catalog/datacenters", None, "").await;
    assert_eq!(r.json(), serde_json::json!(["dc1"]));
}

#[tokio::test]
async fn catalog_service_lists_service_nodes_with_tag_and_filter() {
    let api = Api::dev().await;
    docs_services(&api).await;
    let get = |q: String| {
        let api = &api;
        async move {
            let r = api
                .call("GET", &format!("/v1/catalog/service/redis{q}"), None, "")
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
            r.json()
        }
    };
    let all = get(String::new()).await;
    assert_eq!(ids(&all, "/ServiceID"), ["redis1", "redis2", "redis3"]);
    let one = all
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ServiceID"] == "redis1")
        .unwrap();
    assert_eq!(one["Node"], "tribune");
    assert_eq!(one["ServiceName"], "redis");
    assert_eq!(one["ServicePort"], 1234);
    assert_eq!(one["ServiceMeta"]["env"], "prod");

    let tagged = get("?tag=primary".into()).await;
    assert_eq!(ids(&tagged, "/ServiceID"), ["redis1", "redis3"]);
    let both = get("?tag=primary&tag=v2".into()).await;
    assert_eq!(ids(&both, "/ServiceID"), ["redis3"]);
    let filtered = get(format!("?filter={}", enc("ServiceMeta.env == prod"))).await;
    assert_eq!(ids(&filtered, "/ServiceID"), ["redis1", "redis2"]);
    assert_eq!(
        get("?node-meta=rack:r1".into()).await,
        serde_json::json!([])
    );
    let none = api
        .call("GET", "/v1/catalog/service/nothing", None, "")
        .await;
    assert_eq!(none.json(), serde_json::json!([]));
}

#[tokio::test]
async fn health_service_lists_instances_with_node_and_checks() {
    let api = Api::dev().await;
    docs_services(&api).await;
    let get = |q: String| {
        let api = &api;
        async move {
            let r = api
                .call("GET", &format!("/v1/health/service/{q}"), None, "")
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
            assert!(r.headers.contains_key("x-consul-index"));
            r.json()
        }
    };
    let all = get("redis".into()).await;
    assert_eq!(ids(&all, "/Service/ID"), ["redis1", "redis2", "redis3"]);
    let e = &all[0];
    assert_eq!(e["Node"]["Node"], "tribune");
    assert_eq!(e["Service"]["Service"], "redis");
    assert_eq!(e["Service"]["Weights"]["Passing"], 1);
    assert_eq!(e["Checks"][0]["CheckID"], "serfHealth");
    assert_eq!(e["Checks"][0]["Status"], "passing");

    let table: &[(&str, &[&str])] = &[
        ("redis?passing", &["redis1", "redis2", "redis3"]),
        ("redis?passing=true&tag=v1", &["redis1", "redis2"]),
        ("redis?tag=secondary", &["redis2"]),
        ("redis?node-meta=rack:r1", &[]),
        ("web?connect=true", &["web-sidecar-proxy"]),
        ("redis?connect=true", &[]),
    ];
    for (q, want) in table {
        assert_eq!(ids(&get(q.to_string()).await, "/Service/ID"), *want, "{q}");
    }
    // The same sidecars as /v1/health/connect, which sidecars watch.
    let connect = api.call("GET", "/v1/health/connect/web", None, "").await;
    assert_eq!(connect.json(), get("web?connect=true".into()).await);

    let filters: &[(&str, &[&str])] = &[
        ("Service.Meta.env == qa", &["redis3"]),
        ("v2 in Service.Tags", &["redis3"]),
        ("Checks.Status == passing", &["redis1", "redis2", "redis3"]),
        ("Checks.Status != passing", &[]),
        (
            "Node.Node == tribune and Service.Port != 1234",
            &["redis2", "redis3"],
        ),
    ];
    for (expr, want) in filters {
        let got = get(format!("redis?filter={}", enc(expr))).await;
        assert_eq!(ids(&got, "/Service/ID"), *want, "{expr}");
    }
}

#[tokio::test]
async fn health_and_catalog_service_need_service_read() {
    let api = Api::with_acls().await;
    docs_services(&api).await;
    let none = token_with(&api, "nothing", r#"service "web" { policy = "read" }"#).await;
    let reader = token_with(
        &api,
        "redis-reader",
        r#"service "redis" { policy = "read" }"#,
    )
    .await;
    for path in ["/v1/health/service/redis", "/v1/catalog/service/redis"] {
        let denied = api.call("GET", path, Some(&none), "").await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN, "{path}");
        let allowed = api.call("GET", path, Some(&reader), "").await;
        assert_eq!(allowed.status, StatusCode::OK, "{path}: {}", allowed.body);
        assert_eq!(allowed.json().as_array().unwrap().len(), 3, "{path}");
    }
}

/// `Connect { Native = true }` instances speak mTLS themselves: `/v1/health/connect`
/// lists them beside the sidecars (Consul's `?connect=true`). `Meta` and `Tags` are
/// strings (numbers and booleans taken as their text); anything else is refused,
/// naming the field.
#[tokio::test]
async fn native_instances_are_connect_endpoints_and_meta_and_tags_are_strings() {
    let api = Api::dev().await;
    let r = api
        .call(
            "PUT",
            "/v1/agent/service/register",
            None,
            r#"{"Name": "billing", "Port": 7000, "Tags": ["v1", 2], "Meta": {"tier": 1},
                "Connect": {"Native": true}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let connect = api
        .call("GET", "/v1/health/connect/billing", None, "")
        .await
        .json();
    assert_eq!(ids(&connect, "/Service/ID"), ["billing"]);
    assert_eq!(connect[0]["Service"]["Connect"]["Native"], true);
    assert_eq!(
        connect[0]["Service"]["Tags"],
        serde_json::json!(["v1", "2"])
    );
    assert_eq!(connect[0]["Service"]["Meta"]["tier"], "1");
    for (body, field) in [
        (
            r#"{"Name": "x", "Meta": {"a": {"b": 1}}}"#,
            "Meta.a: must be a string",
        ),
        (
            r#"{"Name": "x", "Tags": "v1"}"#,
            "Tags: must be a list of strings",
        ),
        (
            r#"{"Name": "x", "Tags": [[1]]}"#,
            "Tags[0]: must be a string",
        ),
        (
            r#"{"Name": "x", "Connect": {"Native": 3}}"#,
            "Connect.Native: must be a boolean",
        ),
    ] {
        let r = api
            .call("PUT", "/v1/agent/service/register", None, body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert!(r.body.contains(field), "{body}: {}", r.body);
    }
}

/// A sidecar's Meta and Tags are its block's own, else its service's (Consul's
/// `sidecarServiceFromNodeService`): they were dropped, so a re-registration that
/// changed only the sidecar's Meta changed nothing its watchers could see.
#[tokio::test]
async fn a_sidecar_has_its_own_meta_and_tags_else_its_services() {
    let api = Api::dev().await;
    for body in [
        r#"{"Name": "pay", "Port": 7000, "Tags": ["v1"], "Meta": {"team": "a"},
            "Connect": {"SidecarService": {"Port": 21100, "Tags": ["edge"], "Meta": {"gen": "2"}}}}"#,
        r#"{"Name": "ship", "Port": 7001, "Tags": ["v2"], "Meta": {"team": "b"},
            "Connect": {"SidecarService": {"Port": 21101}}}"#,
    ] {
        let r = api
            .call("PUT", "/v1/agent/service/register", None, body)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let pay = api
        .call("GET", "/v1/health/connect/pay", None, "")
        .await
        .json();
    assert_eq!(pay[0]["Service"]["Meta"], serde_json::json!({"gen": "2"}));
    assert_eq!(pay[0]["Service"]["Tags"], serde_json::json!(["edge"]));
    let ship = api
        .call("GET", "/v1/health/connect/ship", None, "")
        .await
        .json();
    assert_eq!(ship[0]["Service"]["Meta"], serde_json::json!({"team": "b"}));
    assert_eq!(ship[0]["Service"]["Tags"], serde_json::json!(["v2"]));
    // A change of the sidecar's Meta alone is a change of what its watchers see.
    let index = |r: &support::Reply| {
        r.headers["x-consul-index"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = index(&api.call("GET", "/v1/health/connect/pay", None, "").await);
    let r = api
        .call(
            "PUT",
            "/v1/agent/service/register",
            None,
            r#"{"Name": "pay", "Port": 7000, "Tags": ["v1"], "Meta": {"team": "a"},
                "Connect": {"SidecarService": {"Port": 21100, "Tags": ["edge"], "Meta": {"gen": "3"}}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let after = api.call("GET", "/v1/health/connect/pay", None, "").await;
    assert!(index(&after) > before);
    assert_eq!(after.json()[0]["Service"]["Meta"]["gen"], "3");
}

/// A sidecar's upstream watch (`health/connect/S` held at S's index) wakes for S's own
/// registrations only: registering another service leaves it waiting; removing S's
/// sidecar answers it at once with the new index (issue #40: at mass registration
/// every new sidecar woke every upstream watcher).
#[tokio::test]
async fn an_upstream_watch_wakes_for_its_own_service_only() {
    let api = std::sync::Arc::new(Api::dev().await);
    docs_services(&api).await;
    let first = api.call("GET", "/v1/health/connect/web", None, "").await;
    assert_eq!(first.status, StatusCode::OK);
    let index: u64 = first.headers["x-consul-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let held = {
        let api = api.clone();
        tokio::spawn(async move {
            api.call(
                "GET",
                &format!("/v1/health/connect/web?index={index}&wait=5s"),
                None,
                "",
            )
            .await
        })
    };
    let r = api
        .call(
            "PUT",
            "/v1/agent/service/register",
            None,
            r#"{"Name": "billing", "Port": 7000}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "another service's registration woke it"
    );
    let started = std::time::Instant::now();
    let r = api
        .call("PUT", "/v1/agent/service/deregister/web", None, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let answer = held.await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "answered at the wait's end, not at the change"
    );
    assert_eq!(answer.json(), serde_json::json!([]));
    let after: u64 = answer.headers["x-consul-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > index, "{after} > {index}");
}
