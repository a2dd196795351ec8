//! `GET /v1/tribune/proxy-snapshot/<service>`: everything a sidecar needs to enforce
//! its destination's policy, in one blocking query (Tribune's own endpoint; Consul
//! streams xDS instead).
//!
//! The body is a [`PolicyDocument`] (also what `tribune connect proxy -config FILE`
//! reads): the intentions for the service and `*`, the `jwt-provider`s they
//! reference, the `mesh` entry, and the other providers' forwarding header names.
//! With staged candidates that change the service's document, `Candidate` holds the
//! document they would make (the sidecar evaluates it beside the live one).
//! `X-Consul-Index` is the index at which the service's document last changed: a
//! sidecar's query waits for a change to its own document, not to the table.
//!
//! ACL: `service:write` on the service (what a sidecar's token holds in Consul),
//! re-checked while the query waits: a revoked token gets its 403 at once.

use crate::{authorize, index_header, parse_query, ApiError, ApiResult, Blocking, Holder, Shared};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

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
    // The service's own document (built once per change for all its sidecars): only
    // a change to it ends the wait (crate::state::documents).
    let mut rx = state.documents.watch(&state, &service).await?;
    let current = rx.borrow_and_update().index;
    if let Some(mut wait) = Blocking::start(&state, &q, current, Some(holder)).await? {
        wait.until(&state, &q, rx.changed()).await?;
    }
    let published = rx.borrow().clone();
    match published.body {
        Ok(body) => Ok((
            [
                index_header(published.index),
                (
                    header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                ),
            ],
            body,
        )
            .into_response()),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}
