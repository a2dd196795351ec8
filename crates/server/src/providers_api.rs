//! `GET|POST /v1/tribune/jwt-provider/<name>/check` (Tribune's extension): the agent
//! fetches the provider's keys step by step the way a sidecar does and reports each
//! step ([`tribune_jwks::check`]); a `POST` body `{"Token": "..."}` adds the token's
//! verification. The answer is 200 with the report whether or not the check passed
//! (its `Ok` says); the caller needs read access to the provider entry.

use crate::entries::{can_read, load_one};
use crate::extract::Caller;
use crate::{json_body, ApiError, ApiResult, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tribune_model::{go, ConfigEntry, Kind};

/// The body of a `POST` check.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckRequest {
    #[serde(default)]
    token: Option<String>,
}

pub(crate) async fn check(
    State(state): State<Shared>,
    method: Method,
    Path(name): Path<String>,
    Caller(authz): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let request: CheckRequest = if method == Method::POST && !body.is_empty() {
        tribune_model::decode::from_value(&json_body(&body)?, "")
            .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?
    } else {
        CheckRequest::default()
    };
    can_read(&authz, Kind::JwtProvider, &name)?;
    let Some((ConfigEntry::JwtProvider(provider), _)) =
        load_one(&state, Kind::JwtProvider, &name).await?
    else {
        return Err(ApiError::not_found(format!(
            "Config entry not found for {} / {}",
            go::quote(Kind::JwtProvider.as_str()),
            go::quote(&name)
        )));
    };
    let report =
        tribune_jwks::check::check(&provider, request.token.as_deref(), crate::ca_api::now()).await;
    Ok(Json(report).into_response())
}
