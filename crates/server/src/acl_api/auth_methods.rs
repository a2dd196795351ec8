//! ACL auth methods (issue #43), Consul's API and texts: `PUT /v1/acl/auth-method`
//! (create or replace), `GET|PUT|DELETE /v1/acl/auth-method/:name`,
//! `GET /v1/acl/auth-methods` (stubs, no `Config`). Reads need `acl:read`, writes
//! `acl:write`; with ACLs off the endpoints answer 401 like the other ACL ones.
//!
//! A method is checked as Consul checks it ([`AuthMethod::validate`]): name, type
//! (immutable once written), `MaxTokenTTL` within 1 minute to 24 hours, locality, and
//! the `jwt` or `oidc` `Config`.

use super::{stored_indexed, write_guarded};
use crate::extract::{AclCaller, JsonBody, Query};
use crate::state::acl::{AUTH_METHODS, BINDING_RULES, TOKENS};
use crate::{ApiError, ApiResult, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tribune_model::auth_method::AuthMethod;
use tribune_store::Cas;

/// The body as an auth method, or Consul's 400.
fn decode(body: Value) -> ApiResult<AuthMethod> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("AuthMethod decoding failed: {e}")))
}

/// Consul's check of `JWTValidationPubKeys`: each a PEM public key (`PUBLIC KEY`) or
/// a certificate whose key is used, of a type logins can verify with.
fn check_pub_keys(method: &AuthMethod) -> ApiResult<()> {
    for (i, pem) in method.config.jwt_validation_pub_keys.iter().enumerate() {
        let usable = tribune_ca::public_key_from_pem(pem)
            .map_err(|e| e.to_string())
            .and_then(|spki| {
                tribune_jwt::Jwks::from_public_keys(&[spki]).map_err(|e| e.to_string())
            });
        if let Err(e) = usable {
            return Err(ApiError::bad_request(format!(
                "Invalid Auth Method: error parsing public key JWTValidationPubKeys[{i}]: {e}"
            )));
        }
    }
    Ok(())
}

/// How long a write waits for its key check (`?check=true`).
const WRITE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// With `?check=true` (what `tribune acl auth-method create|update` sends): a warning
/// when the method's remote keys (JWKSURL, or the discovery document and its keys)
/// cannot be fetched now; the method is written all the same, since an agent may not
/// reach the provider from where it runs, and an outage must not block a change.
async fn key_warning(method: &AuthMethod) -> Option<String> {
    let provider = super::login::remote_provider(method)?;
    let check = tribune_jwks::check::check(&provider, None, crate::ca_api::now());
    let hint = "logins fail until the keys can be fetched";
    match tokio::time::timeout(WRITE_CHECK_TIMEOUT, check).await {
        Err(_) => Some(format!(
            "auth method {:?}: the agent got no key set within {} s; {hint}",
            method.name,
            WRITE_CHECK_TIMEOUT.as_secs()
        )),
        Ok(report) if report.ok => None,
        Ok(report) => {
            let why = report.steps.iter().find(|s| !s.ok).map_or_else(
                || "the key set holds no usable key".to_string(),
                |s| format!("{}: {}", s.target, s.detail),
            );
            Some(format!(
                "auth method {:?}: the agent could not fetch its keys ({why}); {hint}",
                method.name
            ))
        }
    }
}

/// Checks `method` against the stored one of its name and writes it.
async fn write(
    state: &crate::AppState,
    mut method: AuthMethod,
    check: bool,
) -> ApiResult<Response> {
    let existing = AUTH_METHODS.get(state, &method.name).await?;
    method
        .validate_within(
            existing.as_ref().map(|s| &s.value),
            state.config.acl.token_ttl,
        )
        .map_err(|e| ApiError::bad_request(e.0))?;
    check_pub_keys(&method)?;
    let m = &method;
    write_guarded(state, &AUTH_METHODS, |stored| {
        // The type is immutable across agents too: checked again on what the write
        // is guarded on.
        if let Some(old) = stored.iter().find(|s| s.value.name == m.name) {
            if old.value.r#type != m.r#type {
                return Err(ApiError::bad_request(
                    "the Type field of an Auth Method is immutable",
                ));
            }
        }
        AUTH_METHODS.put(&m.name, m, Cas::Any)
    })
    .await?;
    tracing::info!(auth_method = %method.name, r#type = %method.r#type, "ACL auth method written");
    super::login::retain_runtimes(state).await?;
    let stored = AUTH_METHODS
        .get(state, &method.name)
        .await?
        .ok_or_else(|| crate::internal_error("auth method vanished after its write".into()))?;
    let mut res = Json(stored_indexed(stored)).into_response();
    if check {
        if let Some(w) = key_warning(&method).await {
            if let Ok(v) = axum::http::HeaderValue::from_str(&w) {
                res.headers_mut().append("x-tribune-warning", v);
            }
        }
    }
    Ok(res)
}

fn check_asked(query: &Query) -> bool {
    matches!(
        crate::query_get(query.pairs(), "check"),
        Some("" | "true" | "1")
    )
}

/// `PUT /v1/acl/auth-method`.
pub(crate) async fn create(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    query: Query,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.acl_write()?;
    write(&state, decode(body)?, check_asked(&query)).await
}

/// `PUT /v1/acl/auth-method/:name`.
pub(crate) async fn update(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
    query: Query,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.acl_write()?;
    let mut method = decode(body)?;
    if method.name.is_empty() {
        method.name = name;
    } else if method.name != name {
        return Err(ApiError::bad_request(
            "AuthMethod Name in URL and payload do not match",
        ));
    }
    write(&state, method, check_asked(&query)).await
}

/// `GET /v1/acl/auth-method/:name`: 404 with no body when there is none (Consul's).
pub(crate) async fn read(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    match AUTH_METHODS.get(&state, &name).await? {
        Some(m) => Ok(Json(stored_indexed(m)).into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// `GET /v1/acl/auth-methods`.
pub(crate) async fn list(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let out: Vec<_> = AUTH_METHODS
        .list(&state)
        .await?
        .into_iter()
        .map(|s| tribune_model::api::Indexed {
            item: s.value.stub(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        })
        .collect();
    Ok(Json(out).into_response())
}

/// `DELETE /v1/acl/auth-method/:name` (a missing one is no error). As in Consul,
/// the method's binding rules and every token its logins made go with it.
pub(crate) async fn delete(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_write()?;
    let mut ops = vec![AUTH_METHODS.delete(&name, Cas::Any)];
    for r in BINDING_RULES.list(&state).await? {
        if r.value.auth_method == name {
            ops.push(BINDING_RULES.delete(&r.key, Cas::Any));
        }
    }
    for t in TOKENS.list(&state).await? {
        if t.value.auth_method == name {
            ops.push(TOKENS.delete(&t.key, Cas::Any));
        }
    }
    let n = ops.len();
    // etcd takes a bounded number of operations per transaction.
    crate::state::write::apply_batched(&state, &ops).await?;
    if n > 1 {
        tracing::info!(auth_method = %name, removed = n - 1, "ACL auth method deleted with its binding rules and login tokens");
    }
    super::login::retain_runtimes(&state).await?;
    Ok(Json(true).into_response())
}
