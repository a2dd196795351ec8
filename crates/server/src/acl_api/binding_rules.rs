//! ACL binding rules (issue #43), Consul's API and texts: `PUT /v1/acl/binding-rule`
//! (create), `GET|PUT|DELETE /v1/acl/binding-rule/:id`, `GET /v1/acl/binding-rules`
//! (`?authmethod=NAME` keeps that method's). Reads need `acl:read`, writes
//! `acl:write`. A rule is checked against its auth method when written
//! ([`BindingRule::validate`]): the selector compiles, the BindName interpolates to
//! a valid name with the method's mapped claims.

use super::{delete_record, stored_indexed, write_guarded};
use crate::extract::{AclCaller, JsonBody, Query};
use crate::state::acl::{AUTH_METHODS, BINDING_RULES};
use crate::{ApiError, ApiResult, AppState, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tribune_model::binding_rule::BindingRule;
use tribune_store::Cas;

fn decode(body: Value) -> ApiResult<BindingRule> {
    tribune_model::decode::from_go_json(&body)
        .map_err(|e| ApiError::bad_request(format!("BindingRule decoding failed: {e}")))
}

/// Checks `rule` (against the stored rule of its ID when `update`) and writes it.
async fn write(state: &AppState, mut rule: BindingRule, update: bool) -> ApiResult<Response> {
    let existing = if update {
        if uuid::Uuid::parse_str(&rule.id).is_err() {
            return Err(ApiError::bad_request("Binding Rule ID invalid UUID"));
        }
        let found = BINDING_RULES.get(state, &rule.id).await?;
        Some(
            found
                .ok_or_else(|| {
                    ApiError::bad_request(format!("cannot find binding rule {}", rule.id))
                })?
                .value,
        )
    } else {
        rule.id = uuid::Uuid::new_v4().to_string();
        None
    };
    let method_name = if rule.auth_method.is_empty() {
        existing
            .as_ref()
            .map(|r| r.auth_method.clone())
            .unwrap_or_default()
    } else {
        rule.auth_method.clone()
    };
    let method = if method_name.is_empty() {
        None
    } else {
        AUTH_METHODS
            .get(state, &method_name)
            .await?
            .map(|m| m.value)
    };
    rule.validate(existing.as_ref(), method.as_ref())
        .map_err(|e| ApiError::bad_request(e.0))?;
    let r = &rule;
    write_guarded(state, &BINDING_RULES, |stored| {
        // An update of a rule deleted meanwhile is refused, not resurrected.
        if update && !stored.iter().any(|s| s.key == r.id) {
            return Err(ApiError::bad_request(format!(
                "cannot find binding rule {}",
                r.id
            )));
        }
        let cas = if update { Cas::Any } else { Cas::Absent };
        BINDING_RULES.put(&r.id, r, cas)
    })
    .await?;
    tracing::info!(binding_rule = %rule.id, auth_method = %rule.auth_method, bind_type = %rule.bind_type, "ACL binding rule written");
    let stored = BINDING_RULES
        .get(state, &rule.id)
        .await?
        .ok_or_else(|| crate::internal_error("binding rule vanished after its write".into()))?;
    Ok(Json(stored_indexed(stored)).into_response())
}

/// `PUT /v1/acl/binding-rule`.
pub(crate) async fn create(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.acl_write()?;
    let rule = decode(body)?;
    if !rule.id.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot specify the ID when creating a new binding rule",
        ));
    }
    write(&state, rule, false).await
}

/// `PUT /v1/acl/binding-rule/:id`.
pub(crate) async fn update(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.acl_write()?;
    let mut rule = decode(body)?;
    if rule.id.is_empty() {
        rule.id = id;
    } else if rule.id != id {
        return Err(ApiError::bad_request(
            "BindingRule ID in URL and payload do not match",
        ));
    }
    write(&state, rule, true).await
}

/// `GET /v1/acl/binding-rule/:id`: 404 with no body when there is none (Consul's).
pub(crate) async fn read(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    match BINDING_RULES.get(&state, &id).await? {
        Some(r) => Ok(Json(stored_indexed(r)).into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// The rules of auth method `method` (every rule when `None`).
pub(crate) async fn rules_of(
    state: &AppState,
    method: Option<&str>,
) -> ApiResult<Vec<crate::state::typed::Stored<BindingRule>>> {
    let mut all = BINDING_RULES.list(state).await?;
    if let Some(m) = method {
        all.retain(|r| r.value.auth_method == m);
    }
    // Consul evaluates rules in creation order; so do bindings here.
    all.sort_by_key(|r| r.create_index);
    Ok(all)
}

/// `GET /v1/acl/binding-rules` (`?authmethod=NAME`).
pub(crate) async fn list(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    query: Query,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let method = crate::query_get(query.pairs(), "authmethod").filter(|m| !m.is_empty());
    let out: Vec<_> = rules_of(&state, method)
        .await?
        .into_iter()
        .map(stored_indexed)
        .collect();
    Ok(Json(out).into_response())
}

/// `DELETE /v1/acl/binding-rule/:id` (a missing one is no error).
pub(crate) async fn delete(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_write()?;
    delete_record(&state, &BINDING_RULES, &id).await
}
