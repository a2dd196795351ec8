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

use super::{service_node, NODE, SERVICES_TABLE};
use crate::extract::{Caller, Query, WatchCaller};
use crate::{block_on_table, filters, index_header, ApiResult, AppState, Shared};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;
use tribune_model::api::{
    AgentService, CatalogService, HealthCheck, Node, ServiceEntry, ServiceKind, ServiceRecord,
};

/// The node every registration lives on, as Consul's `structs.Node`.
fn node(state: &AppState) -> Node {
    let addr = state.advertise();
    let host = addr
        .rsplit_once(':')
        .map_or(addr.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Node {
        id: String::new(),
        node: NODE.into(),
        address: host.clone(),
        datacenter: state.config.datacenter.clone(),
        tagged_addresses: ["lan", "lan_ipv4", "wan", "wan_ipv4"]
            .into_iter()
            .map(|k| (k.to_string(), host.clone()))
            .collect(),
        meta: BTreeMap::new(),
    }
}

/// The node's `serfHealth` check, as Consul's `structs.HealthCheck`.
fn serf_health() -> HealthCheck {
    HealthCheck {
        node: NODE.into(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: "passing".into(),
        output: "Agent alive and reachable".into(),
        ..HealthCheck::default()
    }
}

/// `?node-meta=key:value` (repeatable): every pair must be in the node's `Meta`.
fn node_meta_matches(q: &[(String, String)], node: &Node) -> bool {
    q.iter().filter(|(k, _)| k == "node-meta").all(|(_, kv)| {
        let (k, v) = kv.split_once(':').unwrap_or((kv, ""));
        node.meta.get(k).map(String::as_str) == Some(v)
    })
}

/// `?tag=` (repeatable): the registration must carry every one.
fn has_tags(q: &[(String, String)], r: &ServiceRecord) -> bool {
    q.iter()
        .filter(|(k, _)| k == "tag")
        .all(|(_, t)| r.tags.contains(t))
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
    query: Query,
    Caller(_caller): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let filter = filters::from_query(q, filters::NODE).await?;
    let index = block_on_table(&state, SERVICES_TABLE, q).await?;
    let mut listed: Vec<Node> = Vec::new();
    let n = node(&state);
    if node_meta_matches(q, &n) && filters::keeps_typed(&filter, &n)? {
        listed.push(n);
    }
    Ok(([index_header(index)], Json(listed)).into_response())
}

/// `GET /v1/catalog/service/<name>`.
pub(crate) async fn catalog_service(
    State(state): State<Shared>,
    Path(service): Path<String>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    authz.service_read(&service)?;
    let filter = filters::from_query(q, filters::SERVICE_NODE).await?;
    let view = wait_for_service(&state, &service, q, None).await?;
    let index = view.service_index(&service);
    let mut listed: Vec<CatalogService> = Vec::new();
    if node_meta_matches(q, &node(&state)) {
        for r in view.records.iter() {
            if r.service != service || !has_tags(q, r) {
                continue;
            }
            let n = service_node(r, &state.config.datacenter);
            if filters::keeps_typed(&filter, &n)? {
                listed.push(n);
            }
        }
    }
    Ok(([index_header(index)], Json(listed)).into_response())
}

/// `GET /v1/health/service/<name>`.
pub(crate) async fn health_service(
    State(state): State<Shared>,
    Path(service): Path<String>,
    query: Query,
    headers: HeaderMap,
    WatchCaller(authz): WatchCaller,
) -> ApiResult<Response> {
    let connect = flag(query.pairs(), "connect");
    check_service_nodes(&state, &service, query.pairs(), &headers, authz, connect).await
}

/// `GET /v1/health/connect/<name>`.
pub(crate) async fn health_connect(
    State(state): State<Shared>,
    Path(service): Path<String>,
    query: Query,
    headers: HeaderMap,
    WatchCaller(authz): WatchCaller,
) -> ApiResult<Response> {
    check_service_nodes(&state, &service, query.pairs(), &headers, authz, true).await
}

/// The catalog to answer a query on `service` from: at once, or for a blocking query
/// once a registration naming `service` changed ([`crate::state::catalog`]: a write
/// that names other services wakes the wait, which finds nothing new and waits on).
async fn wait_for_service(
    state: &AppState,
    service: &str,
    q: &[(String, String)],
    holder: Option<crate::Holder<'_>>,
) -> ApiResult<std::sync::Arc<crate::state::catalog::CatalogView>> {
    let mut view = state.catalog.view(state).await?;
    let Some(mut wait) =
        crate::Blocking::start(state, q, view.service_index(service), holder).await?
    else {
        return Ok(view);
    };
    let mut rx = state.tables.subscribe(&[SERVICES_TABLE]);
    loop {
        let seen = *rx.borrow_and_update();
        if seen > view.at {
            view = state.catalog.view_at(state, seen).await?;
            if view.service_index(service) != wait.min {
                return Ok(view);
            }
        }
        let moved = async {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        if !wait.until(state, q, moved).await? {
            return Ok(view);
        }
    }
}

/// The instances of `service` (or, with `connect`, the sidecars in front of it and
/// its Connect-native instances) with their node and checks.
async fn check_service_nodes(
    state: &AppState,
    service: &str,
    q: &[(String, String)],
    headers: &HeaderMap,
    authz: crate::acl::Authorizer,
    connect: bool,
) -> ApiResult<Response> {
    authz.service_read(service)?;
    let filter = filters::from_query(q, filters::CHECK_SERVICE_NODE).await?;
    let holder = crate::Holder {
        headers,
        allowed: &|a| a.service_read(service),
    };
    let view = wait_for_service(state, service, q, Some(holder)).await?;
    let index = view.service_index(service);
    let node = node(state);
    let passing_only = flag(q, "passing");
    let wanted = |r: &ServiceRecord| {
        if connect {
            let sidecar = r.kind == ServiceKind::ConnectProxy && r.destination() == Some(service);
            let native = r.service == service && r.native();
            sidecar || native
        } else {
            r.service == service
        }
    };
    let mut listed: Vec<ServiceEntry> = Vec::new();
    if node_meta_matches(q, &node) {
        for r in view.records.iter() {
            if !wanted(r) || !has_tags(q, r) {
                continue;
            }
            let entry = ServiceEntry {
                node: node.clone(),
                service: AgentService::new(r.clone(), &state.config.datacenter),
                checks: vec![serf_health()],
            };
            let passing = entry.checks.iter().all(|c| c.status == "passing");
            if (passing || !passing_only) && filters::keeps_typed(&filter, &entry)? {
                listed.push(entry);
            }
        }
    }
    Ok(([index_header(index)], Json(listed)).into_response())
}
