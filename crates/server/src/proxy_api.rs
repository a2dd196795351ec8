//! `GET /v1/tribune/proxy-snapshot/<service>`: everything a sidecar needs to enforce
//! its destination's policy, in one blocking query (Tribune's own endpoint; Consul
//! streams xDS instead).
//!
//! Shape (also what `tribune connect proxy -config FILE` reads):
//! `{"Service", "Protocol", "DefaultIntentionPolicy", "Entries": [...]}` where
//! `Entries` are the `service-intentions` for the service and `*`, the
//! `jwt-provider`s they reference and the `mesh` entry, in the API's JSON form;
//! `ForwardingHeaders` are the other providers' `Forwarding.HeaderName`s (to remove
//! client copies of). `X-Consul-Index` is the config index.
//!
//! ACL: `service:write` on the service (what a sidecar's token holds in Consul).

use crate::entries::{entry_json, load_all, protocol_of};
use crate::{
    authorize, block_on_table, index_header, parse_query, ApiResult, Shared, CONFIG_TABLE,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tribune_authz::ANY_PROVIDER;
use tribune_model::{ConfigEntry, ServiceIntentions, WILDCARD};

pub(crate) async fn snapshot(
    State(state): State<Shared>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let authz = authorize(&state, &headers, &q)?;
    authz.service_write(&service)?;
    let index = block_on_table(&state, CONFIG_TABLE, &q).await?;
    let all = load_all(&state)?;
    let refs: Vec<&ConfigEntry> = all.iter().map(|(e, _)| e).collect();
    let applies = |si: &ServiceIntentions| si.name == service || si.name == WILDCARD;
    // decisions.md #19: only the providers these intentions reference travel (with
    // their keys); the others give only their forwarding header names, so the
    // sidecar can still remove client-supplied copies of them.
    let referenced: Vec<&str> = refs
        .iter()
        .filter_map(|e| match e {
            ConfigEntry::ServiceIntentions(si) if applies(si) => Some(si.referenced_providers()),
            _ => None,
        })
        .flatten()
        .collect();
    let wanted = |name: &str| referenced.iter().any(|r| *r == name || *r == ANY_PROVIDER);
    let entries: Vec<Value> = all
        .iter()
        .filter(|(e, _)| match e {
            ConfigEntry::ServiceIntentions(si) => applies(si),
            ConfigEntry::JwtProvider(p) => wanted(&p.name),
            ConfigEntry::Mesh(_) => true,
            _ => false,
        })
        .map(|(e, r)| entry_json(e, r))
        .collect();
    let forwarding_headers: Vec<&str> = refs
        .iter()
        .filter_map(|e| match e {
            ConfigEntry::JwtProvider(p) if !wanted(&p.name) => p.forwarding.as_ref(),
            _ => None,
        })
        .map(|f| f.header_name.as_str())
        .collect();
    let body = json!({
        "Service": service,
        "Protocol": protocol_of(&refs, &service),
        "DefaultIntentionPolicy": state.config.default_intention_policy.as_str(),
        "Entries": entries,
        "ForwardingHeaders": forwarding_headers,
    });
    Ok(([index_header(index)], Json(body)).into_response())
}
