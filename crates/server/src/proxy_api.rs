//! `GET /v1/tribune/proxy-snapshot/<service>`: everything a sidecar needs to enforce
//! its destination's policy, in one blocking query (Tribune's own endpoint; Consul
//! streams xDS instead).
//!
//! Shape (also what `tribune connect proxy -config FILE` reads):
//! `{"Service", "Protocol", "DefaultIntentionPolicy", "Entries": [...]}` where
//! `Entries` are the `service-intentions` for the service and `*`, and every
//! `jwt-provider`, in the API's JSON form. `X-Consul-Index` is the config index.
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
use tribune_model::{ConfigEntry, WILDCARD};

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
    let entries: Vec<Value> = all
        .iter()
        .filter(|(e, _)| match e {
            ConfigEntry::ServiceIntentions(si) => si.name == service || si.name == WILDCARD,
            ConfigEntry::JwtProvider(_) => true,
            _ => false,
        })
        .map(|(e, r)| entry_json(e, r))
        .collect();
    let body = json!({
        "Service": service,
        "Protocol": protocol_of(&refs, &service),
        "DefaultIntentionPolicy": state.config.default_intention_policy.as_str(),
        "Entries": entries,
    });
    Ok(([index_header(index)], Json(body)).into_response())
}
