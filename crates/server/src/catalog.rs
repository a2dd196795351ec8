//! The catalog (issue: mesh identity): one agent serves the whole cluster, so
//! registrations name their own addresses.
//!
//! - `PUT /v1/agent/service/register`: Consul's service definition; a
//!   `Connect { SidecarService { ... } }` block also registers `<id>-sidecar-proxy`
//!   (kind `connect-proxy`, port from the block or the first free one in 21000-21255;
//!   Meta and Tags the block's own, else the service's, as Consul).
//! - `PUT /v1/agent/service/deregister/<id>` removes the service and its sidecar.
//! - `GET /v1/agent/service/<id>`, `GET /v1/agent/services`, `GET /v1/catalog/services`
//!   (blocking on the catalog index); the node, instance and health views are in
//!   [`health`].
//!
//! Keys are matched like Consul's decoder: any case, CamelCase or snake_case.

use crate::acl::Authorizer;
use crate::extract::{Caller, JsonBody, Query};
use crate::filters;
use crate::state::catalog::SERVICES;
use crate::state::write::{guarded, Step};
use crate::{block_on_table, index_header, ApiError, ApiResult, AppState, Shared};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tribune_model::api::{
    AgentService, CatalogService, ServiceConnect, ServiceKind, ServiceProxy, ServiceRecord,
    Upstream,
};
use tribune_store::{Cas, Op};

mod health;
pub(crate) use health::{catalog_service, datacenters, health_connect, health_service, nodes};

pub(crate) const SERVICES_TABLE: &str = "services";
const NODE: &str = "tribune";
const SIDECAR_PORTS: std::ops::RangeInclusive<u16> = 21000..=21255;

fn norm(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A member of a JSON object, matched the way Consul's decoder matches keys.
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let want = norm(key);
    let obj = v.as_object()?;
    let found = obj.iter().find(|(k, _)| norm(k) == want).map(|(_, v)| v)?;
    // HCL blocks decode as one-element lists.
    match found {
        Value::Array(items) if items.len() == 1 && items[0].is_object() => items.first(),
        other => Some(other),
    }
}

fn string(v: &Value, key: &str, path: &str, errors: &mut Vec<String>) -> String {
    match get(v, key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            errors.push(format!("{path}{key}: must be a string, got {other}"));
            String::new()
        }
    }
}

fn port(v: &Value, key: &str, path: &str, errors: &mut Vec<String>) -> Option<u16> {
    let raw = get(v, key)?;
    let n = match raw {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Null => return None,
        _ => None,
    };
    match n {
        Some(n) if (0..=65535).contains(&n) => Some(n as u16),
        _ => {
            errors.push(format!(
                "{path}{key}: must be a port number (0-65535), got {raw}"
            ));
            None
        }
    }
}

/// Every registration (decoded once per change of the table, shared by all readers:
/// [`crate::state::catalog`]).
async fn load_all(state: &AppState) -> ApiResult<std::sync::Arc<Vec<ServiceRecord>>> {
    Ok(state.catalog.view(state).await?.records.clone())
}

/// `Meta` of a registration: an object of strings (numbers and booleans are taken as
/// their text, as Consul's weak decoding does).
fn meta(v: &Value, path: &str, errors: &mut Vec<String>) -> BTreeMap<String, String> {
    match get(v, "Meta") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| match scalar(v) {
                Some(s) => Some((k.clone(), s)),
                None => {
                    errors.push(format!("{path}Meta.{k}: must be a string, got {v}"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            errors.push(format!(
                "{path}Meta: must be an object of strings, got {other}"
            ));
            BTreeMap::new()
        }
    }
}

/// `Tags` of a registration: a list of strings.
fn tags(v: &Value, path: &str, errors: &mut Vec<String>) -> Vec<String> {
    match get(v, "Tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match scalar(v) {
                Some(s) => Some(s),
                None => {
                    errors.push(format!("{path}Tags[{i}]: must be a string, got {v}"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            errors.push(format!(
                "{path}Tags: must be a list of strings, got {other}"
            ));
            Vec::new()
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a registration into the records to store (the service, and its sidecar).
fn records(body: &Value, taken_ports: &[u16]) -> Result<Vec<ServiceRecord>, String> {
    let body = get(body, "Service")
        .filter(|s| s.is_object())
        .unwrap_or(body);
    let mut errors = Vec::new();
    let name = string(body, "Name", "", &mut errors);
    if name.is_empty() {
        errors.push("Missing service name".into());
    } else if let Err(e) = tribune_model::names::check_service_name(&name) {
        errors.push(format!("Name: {e}"));
    }
    let id = Some(string(body, "ID", "", &mut errors))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| name.clone());
    if !id.is_empty() {
        if let Err(e) = tribune_model::names::check_name("service ID", &id) {
            errors.push(format!("ID: {e}"));
        }
    }
    let address = Some(string(body, "Address", "", &mut errors))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    let svc_port = port(body, "Port", "", &mut errors).unwrap_or(0);
    let connect = get(body, "Connect");
    let native = match connect.and_then(|c| get(c, "Native")) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => {
            errors.push(format!("Connect.Native: must be a boolean, got {other}"));
            false
        }
    };
    let mut out = vec![ServiceRecord {
        id: id.clone(),
        service: name.clone(),
        kind: ServiceKind::Typical,
        address: address.clone(),
        port: svc_port,
        meta: meta(body, "", &mut errors),
        tags: tags(body, "", &mut errors),
        proxy: None,
        connect: native.then_some(ServiceConnect { native }),
    }];
    if let Some(sidecar) = connect.and_then(|c| get(c, "SidecarService")) {
        let path = "Connect.SidecarService.";
        let proxy = get(sidecar, "Proxy").cloned().unwrap_or(json!({}));
        let local_port = port(
            &proxy,
            "LocalServicePort",
            "Connect.SidecarService.Proxy.",
            &mut errors,
        )
        .filter(|p| *p != 0)
        .unwrap_or(svc_port);
        if local_port == 0 {
            errors.push("Connect.SidecarService.Proxy.LocalServicePort: the service needs a Port for its sidecar to forward to".into());
        }
        let mut upstreams = Vec::new();
        if let Some(list) = get(&proxy, "Upstreams") {
            let items: Vec<&Value> = match list {
                Value::Array(a) => a.iter().collect(),
                obj @ Value::Object(_) => vec![obj],
                _ => {
                    errors.push(format!("{path}Proxy.Upstreams: must be a list"));
                    vec![]
                }
            };
            for (i, u) in items.into_iter().enumerate() {
                let p = format!("{path}Proxy.Upstreams[{i}].");
                let dest = string(u, "DestinationName", &p, &mut errors);
                if dest.is_empty() {
                    errors.push(format!("{p}DestinationName: missing"));
                }
                let bind = port(u, "LocalBindPort", &p, &mut errors).unwrap_or(0);
                if bind == 0 {
                    errors.push(format!("{p}LocalBindPort: missing"));
                }
                let bind_addr = Some(string(u, "LocalBindAddress", &p, &mut errors))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "127.0.0.1".into());
                let config = match get(u, "Config") {
                    None | Some(Value::Null) => serde_json::Map::new(),
                    Some(Value::Object(m)) => m.clone(),
                    Some(_) => {
                        errors.push(format!("{p}Config: must be an object"));
                        serde_json::Map::new()
                    }
                };
                let upstream = Upstream {
                    destination_type: "service".into(),
                    destination_name: dest,
                    local_bind_address: bind_addr,
                    local_bind_port: bind,
                    config,
                };
                if let Err(e) = upstream.jwt_svid_header() {
                    errors.push(format!("{p}Config.{e}"));
                }
                upstreams.push(upstream);
            }
        }
        let sidecar_port = match port(sidecar, "Port", path, &mut errors).filter(|p| *p != 0) {
            Some(p) => p,
            None => match SIDECAR_PORTS.clone().find(|p| !taken_ports.contains(p)) {
                Some(p) => p,
                None => {
                    errors.push("no free sidecar port in 21000-21255".into());
                    0
                }
            },
        };
        out.push(ServiceRecord {
            id: format!("{id}-sidecar-proxy"),
            service: format!("{name}-sidecar-proxy"),
            kind: ServiceKind::ConnectProxy,
            address,
            port: sidecar_port,
            // Consul's: the sidecar's own Meta and Tags, else its service's.
            meta: Some(meta(sidecar, path, &mut errors))
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| out[0].meta.clone()),
            tags: Some(tags(sidecar, path, &mut errors))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| out[0].tags.clone()),
            proxy: Some(ServiceProxy {
                destination_service_name: name,
                destination_service_id: id,
                local_service_address: "127.0.0.1".into(),
                local_service_port: local_port,
                upstreams,
            }),
            connect: None,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("; "))
    }
}

/// `PUT /v1/agent/service/register`.
pub(crate) async fn register(
    State(state): State<Shared>,
    Caller(authz): Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let (state, authz, body) = (&*state, &authz, &body);
    guarded(state, SERVICES_TABLE, move |_| async move {
        let index = SERVICES.index(state).await?;
        let existing = load_all(state).await?;
        let mut ops = registration_ops(authz, body, &existing)?;
        ops.push(SERVICES.unchanged(index));
        Ok(Step::Write { ops, then: () })
    })
    .await?;
    Ok(().into_response())
}

/// The writes of one registration, checked against the registrations stored now.
fn registration_ops(
    authz: &Authorizer,
    body: &Value,
    existing: &[ServiceRecord],
) -> ApiResult<Vec<Op>> {
    let new_ids: Vec<String> = records(body, &[])
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let taken: Vec<u16> = existing
        .iter()
        .filter(|r| !new_ids.contains(&r.id))
        .map(|r| r.port)
        .collect();
    let recs = records(body, &taken).map_err(ApiError::bad_request)?;
    for rec in &recs {
        may_write(authz, rec, existing)?;
        sidecar_id_is_its_own(rec, &recs, existing)?;
    }
    recs.iter()
        .map(|r| SERVICES.put(&r.id, r, Cas::Any))
        .collect()
}

/// Consul's rule for writing one registration record: `service:write` on the service
/// it names, on the service of the registration it replaces (same ID), and, for a
/// sidecar, on the service it fronts. Without the second check a token for `web`
/// could re-register `api-1` as `web` and take over what `api`'s sidecar reads.
fn may_write(authz: &Authorizer, rec: &ServiceRecord, existing: &[ServiceRecord]) -> ApiResult<()> {
    authz.service_write(&rec.service)?;
    if let Some(old) = existing.iter().find(|r| r.id == rec.id) {
        authz.service_write(&old.service)?;
        if let Some(dest) = old.destination() {
            authz.service_write(dest)?;
        }
    }
    if let Some(dest) = rec.destination() {
        authz.service_write(dest)?;
    }
    Ok(())
}

/// The ID `X-sidecar-proxy` belongs to the sidecar of service ID `X` (hardening
/// round 3, item 17: a `web` token registered `api2-sidecar-proxy` first and so
/// blocked api2's sidecar). Such a record must be a `connect-proxy` whose
/// `DestinationServiceID` (when given) is `X` and whose `DestinationServiceName` is
/// the service registered as `X` (in this request or before), or `X` itself when
/// none is; writing it then needs `service:write` on that service ([`may_write`]).
fn sidecar_id_is_its_own(
    rec: &ServiceRecord,
    batch: &[ServiceRecord],
    existing: &[ServiceRecord],
) -> ApiResult<()> {
    let id = rec.id.as_str();
    let Some(owner) = id.strip_suffix("-sidecar-proxy") else {
        return Ok(());
    };
    let reserved = || {
        ApiError::bad_request(format!(
            "service ID {id:?} is the sidecar of service ID {owner:?}: only a connect-proxy for {owner:?} may take it"
        ))
    };
    let dest_id = rec
        .proxy
        .as_ref()
        .map(|p| p.destination_service_id.as_str())
        .filter(|d| !d.is_empty());
    if rec.kind != ServiceKind::ConnectProxy || dest_id.is_some_and(|d| d != owner) {
        return Err(reserved());
    }
    let owner_service = batch
        .iter()
        .chain(existing)
        .find(|r| r.id == owner)
        .map_or(owner, |r| r.service.as_str());
    if rec.destination() != Some(owner_service) {
        return Err(reserved());
    }
    Ok(())
}

/// `PUT /v1/agent/service/deregister/<id>`.
pub(crate) async fn deregister(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let _serial = state.write_lock.lock().await;
    let all = load_all(&state).await?;
    if !all.iter().any(|r| r.id == id) {
        return Err(ApiError::not_found(format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name.")));
    }
    let sidecar = format!("{id}-sidecar-proxy");
    let removed: Vec<&ServiceRecord> = all
        .iter()
        .filter(|r| r.id == id || r.id == sidecar)
        .collect();
    for rec in &removed {
        may_write(&authz, rec, &[])?;
    }
    let ops: Vec<Op> = removed
        .iter()
        .map(|r| SERVICES.delete(&r.id, Cas::Any))
        .collect();
    crate::state::write::apply(&state, &ops).await?;
    Ok(().into_response())
}

/// `GET /v1/agent/service/<id>`.
pub(crate) async fn service(
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let index = block_on_table(&state, SERVICES_TABLE, q).await?;
    let all = load_all(&state).await?;
    let svc = all
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("unknown service ID: {id}")))?;
    authz.service_read(&svc.service)?;
    let svc = AgentService::new(svc.clone(), &state.config.datacenter);
    Ok(([index_header(index)], Json(svc)).into_response())
}

/// `GET /v1/agent/services`.
pub(crate) async fn services(
    State(state): State<Shared>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let filter = filters::from_query(q, filters::AGENT_SERVICE).await?;
    let mut map: BTreeMap<String, AgentService> = BTreeMap::new();
    for r in load_all(&state).await?.iter() {
        if authz.service_read(&r.service).is_err() {
            continue;
        }
        let svc = AgentService::new(r.clone(), &state.config.datacenter);
        if filters::keeps_typed(&filter, &svc)? {
            map.insert(svc.record.id.clone(), svc);
        }
    }
    Ok(Json(map).into_response())
}

/// A registration as Consul's `structs.ServiceNode` (one node: this agent).
fn service_node(r: &ServiceRecord, datacenter: &str) -> CatalogService {
    CatalogService::new(r, NODE, datacenter)
}

/// `GET /v1/catalog/services`: service names and their tags.
pub(crate) async fn catalog_services(
    State(state): State<Shared>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let filter = filters::from_query(q, filters::SERVICE_NODE).await?;
    let index = block_on_table(&state, SERVICES_TABLE, q).await?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in load_all(&state).await?.iter() {
        if authz.service_read(&r.service).is_err()
            || !filters::keeps_typed(&filter, &service_node(r, &state.config.datacenter))?
        {
            continue;
        }
        // Consul merges the tags of every instance of a name.
        let tags = map.entry(r.service.clone()).or_default();
        for t in &r.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
    }
    Ok(([index_header(index)], Json(map)).into_response())
}
