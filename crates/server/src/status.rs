//! `/v1/status/leader` and `/v1/status/peers`, answered by the store: the embedded
//! store is served by this agent alone; on etcd, the leader is the etcd member that
//! orders writes and the peers are the members that answered (no leader when there is
//! no quorum, as Consul answers `""` without a Raft leader).

use crate::{ApiResult, Shared};
use axum::extract::State;
use axum::Json;

pub(crate) async fn leader(State(state): State<Shared>) -> ApiResult<Json<String>> {
    let own = state.advertise();
    Ok(Json(state.store.membership(&own).await?.leader))
}

pub(crate) async fn peers(State(state): State<Shared>) -> ApiResult<Json<Vec<String>>> {
    let own = state.advertise();
    Ok(Json(state.store.membership(&own).await?.peers))
}

/// `GET /v1/agent/self`: the agent's configuration and member, in Consul's shape (the
/// fields Tribune has; `DebugConfig.DefaultIntentionPolicy` is Tribune's, the policy
/// for requests no intention matches, which the UI's topology draws).
pub(crate) async fn agent_self(
    State(state): State<Shared>,
    crate::extract::Caller(_caller): crate::extract::Caller,
) -> ApiResult<Json<serde_json::Value>> {
    let c = &state.config;
    let addr = state.advertise();
    let (host, port) = addr
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse::<u16>().unwrap_or(0)))
        .unwrap_or((addr.clone(), 0));
    Ok(Json(serde_json::json!({
        "Config": {
            "Datacenter": c.datacenter,
            "NodeName": "tribune",
            "Server": true,
            "Version": env!("CARGO_PKG_VERSION"),
            "Revision": crate::REVISION,
        },
        "DebugConfig": {
            "ACLsEnabled": c.acl.enabled,
            "ACLDefaultPolicy": c.acl.default_policy,
            "DefaultIntentionPolicy": c.default_intention_policy.as_str(),
            "UIConfig": { "Enabled": c.ui },
            "ClientAddrs": [c.client_addr],
        },
        "Member": {
            "Name": "tribune",
            "Addr": host,
            "Port": port,
            "Status": 1,
            "Tags": { "dc": c.datacenter, "role": "consul" },
        },
        "Meta": {},
    })))
}

/// `GET /v1/agent/metrics` (needs `operator:read`; Consul asks `agent:read`, which
/// Tribune's rules do not have): Consul's JSON summary, or with `?format=prometheus`
/// the same numbers as OpenMetrics text ([`crate::metrics`]).
pub(crate) async fn agent_metrics(
    State(state): State<Shared>,
    query: crate::extract::Query,
    crate::extract::Caller(authz): crate::extract::Caller,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    authz.operator_read()?;
    match crate::query_get(query.pairs(), "format") {
        None | Some("") => Ok(Json(state.metrics.summary()).into_response()),
        Some("prometheus") => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            state.metrics.openmetrics(),
        )
            .into_response()),
        Some(other) => Err(crate::ApiError::bad_request(format!(
            "format: {other:?} is not a metrics format (prometheus, or none for JSON)"
        ))),
    }
}
