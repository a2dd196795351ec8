//! `GET /v1/agent/metrics` (issue #41): what the agent did, in Consul's JSON summary
//! and as OpenMetrics text, from one record of the numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use support::Api;

fn find<'a>(list: &'a Value, name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    list.as_array()?.iter().find(|m| {
        m["Name"] == name
            && labels
                .iter()
                .all(|(k, v)| m["Labels"][*k].as_str() == Some(*v))
    })
}

#[tokio::test]
async fn metrics_count_requests_denials_watchers_and_store_operations() {
    let api = Arc::new(Api::with_acls().await);
    let root = Some("root-secret");
    let w = api
        .call(
            "PUT",
            "/v1/config",
            root,
            r#"{"Kind": "service-defaults", "Name": "web", "Protocol": "http"}"#,
        )
        .await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.body);
    let denied = api
        .call("GET", "/v1/config/service-defaults/web", None, "")
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    // A blocking query held while the metrics are read.
    let index = api
        .call("GET", "/v1/config/service-defaults", root, "")
        .await
        .headers["x-consul-index"]
        .to_str()
        .unwrap()
        .to_string();
    let held = {
        let api = api.clone();
        tokio::spawn(async move {
            api.call(
                "GET",
                &format!("/v1/config/service-defaults?index={index}&wait=2s"),
                Some("root-secret"),
                "",
            )
            .await
        })
    };
    let mut summary = Value::Null;
    for _ in 0..200 {
        summary = api.call("GET", "/v1/agent/metrics", root, "").await.json();
        if find(&summary["Gauges"], "tribune.agent.blocking_queries", &[])
            .is_some_and(|g| g["Value"] == 1.0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        find(&summary["Gauges"], "tribune.agent.blocking_queries", &[]).unwrap()["Value"],
        1.0,
        "{summary}"
    );
    let put = find(
        &summary["Counters"],
        "tribune.agent.http.requests",
        &[("route", "/v1/config"), ("method", "PUT"), ("code", "200")],
    )
    .unwrap();
    assert_eq!(put["Count"], 1);
    let read_denied = find(
        &summary["Counters"],
        "tribune.agent.http.requests",
        &[
            ("route", "/v1/config/{kind}/{name}"),
            ("method", "GET"),
            ("code", "403"),
        ],
    )
    .unwrap();
    assert_eq!(read_denied["Count"], 1);
    assert_eq!(
        find(&summary["Counters"], "tribune.agent.acl.denied", &[]).unwrap()["Count"],
        1
    );
    let apply = find(
        &summary["Samples"],
        "tribune.agent.store.ms",
        &[("op", "apply")],
    )
    .unwrap();
    assert!(apply["Count"].as_u64().unwrap() >= 1, "{apply}");
    assert_eq!(
        find(&summary["Gauges"], "tribune.agent.store.up", &[]).unwrap()["Value"],
        1.0
    );
    held.abort();

    let text = api
        .call("GET", "/v1/agent/metrics?format=prometheus", root, "")
        .await;
    assert_eq!(
        text.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        text.body.contains(
            "tribune_agent_http_requests_total{route=\"/v1/config\",method=\"PUT\",code=\"200\"} 1"
        ),
        "{}",
        text.body
    );
    assert!(
        text.body.contains("tribune_agent_acl_denied_total 1"),
        "{}",
        text.body
    );
    assert!(text.body.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn metrics_need_operator_read_and_a_known_format() {
    let api = Api::with_acls().await;
    let r = api.call("GET", "/v1/agent/metrics", None, "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("operator:read"), "{}", r.body);
    let r = api
        .call(
            "GET",
            "/v1/agent/metrics?format=xml",
            Some("root-secret"),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("format: \"xml\""), "{}", r.body);
}
