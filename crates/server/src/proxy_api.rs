//! `GET /v1/tribune/proxy-snapshot/<service>`: everything a sidecar needs to enforce
//! its destination's policy, in one blocking query (Tribune's own endpoint; Consul
//! streams xDS instead).
//!
//! The body is a [`PolicyDocument`] (also what `tribune connect proxy -config FILE`
//! reads): the intentions for the service and `*`, the `jwt-provider`s they
//! reference, the `mesh` entry, and the other providers' forwarding header names.
//! With staged candidates that change the service's document, `Candidate` holds the
//! document they would make (the sidecar evaluates it beside the live one).
//! `X-Consul-Index` is the highest index of the entries and the candidates.
//!
//! ACL: `service:write` on the service (what a sidecar's token holds in Consul),
//! re-checked while the query waits: a revoked token gets its 403 at once.

use crate::entries::load_all_at;
use crate::staged::{load_staged, STAGED_TABLE};
use crate::{
    authorize, block_on_tables_as, index_header, parse_query, ApiError, ApiResult, Holder, Shared,
    CONFIG_TABLE,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tribune_enforce::{Policy, PolicyDocument};
use tribune_model::ConfigEntry;

pub(crate) async fn snapshot(
    State(state): State<Shared>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let authz = authorize(&state, &headers, &q).await?;
    authz.service_write(&service)?;
    let holder = Holder {
        headers: &headers,
        allowed: &|a| a.service_write(&service),
    };
    let index = block_on_tables_as(&state, &[CONFIG_TABLE, STAGED_TABLE], &q, Some(holder)).await?;
    let (config_index, all) = load_all_at(&state).await?;
    let refs: Vec<&ConfigEntry> = all.iter().map(|(e, _)| e).collect();
    // Never a document the sidecars cannot install (they would keep their last one
    // and say why; better that none is served and the agent says why): entries
    // stored before a check existed, or by another agent's version.
    if let Err(e) = state.policies.get(&service, config_index, || {
        Policy::compile(&PolicyDocument::from_entries(
            &service,
            state.config.default_intention_policy,
            &refs,
        ))
    }) {
        tracing::error!(service = %service, error = %e, "not serving a policy document that does not compile");
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the policy document of {service} does not compile, so it is not served (its sidecars keep enforcing their last policy): {e}"),
        ));
    }
    let staged = load_staged(&state).await?;
    let candidates: Vec<(&ConfigEntry, String)> =
        staged.iter().map(|s| (&s.entry, s.label())).collect();
    let doc = PolicyDocument::with_candidates(
        &service,
        state.config.default_intention_policy,
        &refs,
        &candidates,
    );
    let body = doc.to_json();
    Ok(([index_header(index)], Json(body)).into_response())
}
