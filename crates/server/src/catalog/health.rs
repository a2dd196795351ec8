//! The read side Consul tooling walks: the node, the datacenters, the instances of
//! one service, and their health, in Consul's shapes.
//!
//! Tribune's agent (or, on etcd, every agent together) is one logical node named
//! `tribune`; every registration lives on it. Tribune runs no health checks of its
//! own, so each instance carries the one check every Consul node has: `serfHealth`,
//! passing while the agent answers.
//!
//! - `GET /v1/catalog/datacenters`: `["<datacenter>"]`.
//! - `GET /v1/catalog/nodes`: the node (`?node-meta=`, `?filter=` over `Node`).
//! - `GET /v1/catalog/service/<name>`: `ServiceNode`s (`?tag=`, `?node-meta=`, `?filter=`).
//! - `GET /v1/health/service/<name>`: `CheckServiceNode`s (`?tag=`, `?passing`,
//!   `?connect`, `?node-meta=`, `?filter=`); `GET /v1/health/connect/<name>` is
//!   `?connect=true`: the sidecars in front of `name`, which is what sidecars watch
//!   for their upstreams.

use super::{agent_view, field_str, load_all, service_node, NODE, SERVICES_TABLE};
use crate::{
    authorize, block_on_table, filters, index_header, parse_query, ApiResult, AppState, Shared,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The node every registration lives on, as Consul's `structs.Node`.
fn node(state: &AppState) -> Value {
    let addr = state.advertise();
    let host = addr
        .rsplit_once(':')
        .map_or(addr.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    json!({
        "ID": "",
        "Node": NODE,
        "Address": host,
        "Datacenter": state.config.datacenter,
        "TaggedAddresses": {"lan": host, "lan_ipv4": host, "wan": host, "wan_ipv4": host},
        "Meta": {},
    })
}

/// The node's `serfHealth` check, as Consul's `structs.HealthCheck`.
fn serf_health() -> Value {
    json!({
        "Node": NODE,
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": "passing",
        "Notes": "",
        "Output": "Agent alive and reachable",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "Definition": {},
    })
}

/// `?node-meta=key:value` (repeatable): every pair must be in the node's `Meta`.
fn node_meta_matches(q: &[(String, String)], node: &Value) -> bool {
    q.iter().filter(|(k, _)| k == "node-meta").all(|(_, kv)| {
        let (k, v) = kv.split_once(':').unwrap_or((kv, ""));
        node.pointer("/Meta")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            == Some(v)
    })
}

/// `?tag=` (repeatable): the registration must carry every one.
fn has_tags(q: &[(String, String)], r: &Value) -> bool {
    let tags = r.get("Tags").and_then(Value::as_array);
    q.iter()
        .filter(|(k, _)| k == "tag")
        .all(|(_, t)| tags.is_some_and(|all| all.iter().any(|x| x.as_str() == Some(t.as_str()))))
}

/// A boolean query flag as Consul reads one: present (`?passing`) or a true value.
fn flag(q: &[(String, String)], key: &str) -> bool {
    crate::query_get(q, key).is_some_and(|v| matches!(v, "" | "1" | "true" | "t" | "True" | "TRUE"))
}

/// `GET /v1/catalog/datacenters`.
pub(crate) async fn datacenters(State(state): State<Shared>) -> Json<Vec<String>> {
    Json(vec![state.config.datacenter.clone()])
}

/// `GET /v1/catalog/nodes`.
pub(crate) async fn nodes(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    authorize(&state, &headers, &q).await?;
    let filter = filters::from_query(&q, filters::NODE).await?;
    let index = block_on_table(&state, SERVICES_TABLE, &q).await?;
    let listed: Vec<Value> = [node(&state)]
        .into_iter()
        .filter(|n| node_meta_matches(&q, n) && filters::keeps(&filter, n))
        .collect();
    Ok(([index_header(index)], Json(listed)).into_response())
}

/// `GET /v1/catalog/service/<name>`.
pub(crate) async fn catalog_service(
    State(state): State<Shared>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    authorize(&state, &headers, &q)
        .await?
        .service_read(&service)?;
    let filter = filters::from_query(&q, filters::SERVICE_NODE).await?;
    let index = block_on_table(&state, SERVICES_TABLE, &q).await?;
    let listed: Vec<Value> = if node_meta_matches(&q, &node(&state)) {
        load_all(&state)
            .await?
            .iter()
            .filter(|r| field_str(r, "Service") == service && has_tags(&q, r))
            .map(|r| service_node(r, &state.config.datacenter))
            .filter(|n| filters::keeps(&filter, n))
            .collect()
    } else {
        Vec::new()
    };
    Ok(([index_header(index)], Json(listed)).into_response())
}

/// `GET /v1/health/service/<name>`.
pub(crate) async fn health_service(
    State(state): State<Shared>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let connect = flag(&q, "connect");
    check_service_nodes(&state, &service, &q, &headers, connect).await
}

/// `GET /v1/health/connect/<name>`.
pub(crate) async fn health_connect(
    State(state): State<Shared>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    check_service_nodes(&state, &service, &q, &headers, true).await
}

/// The instances of `service` (or, with `connect`, the sidecars in front of it and
/// its Connect-native instances) with their node and checks.
async fn check_service_nodes(
    state: &AppState,
    service: &str,
    q: &[(String, String)],
    headers: &HeaderMap,
    connect: bool,
) -> ApiResult<Response> {
    crate::authorize_blocking(state, headers, q)
        .await?
        .service_read(service)?;
    let filter = filters::from_query(q, filters::CHECK_SERVICE_NODE).await?;
    let holder = crate::Holder {
        headers,
        allowed: &|a| a.service_read(service),
    };
    let index = crate::block_on_tables_as(state, &[SERVICES_TABLE], q, Some(holder)).await?;
    let node = node(state);
    let passing_only = flag(q, "passing");
    let wanted = |r: &Value| {
        if connect {
            let sidecar = field_str(r, "Kind") == "connect-proxy"
                && r.pointer("/Proxy/DestinationServiceName")
                    .and_then(Value::as_str)
                    == Some(service);
            let native = field_str(r, "Service") == service
                && r.pointer("/Connect/Native").and_then(Value::as_bool) == Some(true);
            sidecar || native
        } else {
            field_str(r, "Service") == service
        }
    };
    let listed: Vec<Value> = if node_meta_matches(q, &node) {
        load_all(state)
            .await?
            .into_iter()
            .filter(|r| wanted(r) && has_tags(q, r))
            .map(|r| {
                json!({
                    "Node": node,
                    "Service": agent_view(r, &state.config.datacenter),
                    "Checks": [serf_health()],
                })
            })
            .filter(|e| {
                !passing_only
                    || e["Checks"]
                        .as_array()
                        .is_some_and(|c| c.iter().all(|c| c["Status"] == "passing"))
            })
            .filter(|e| filters::keeps(&filter, e))
            .collect()
    } else {
        Vec::new()
    };
    Ok(([index_header(index)], Json(listed)).into_response())
}
