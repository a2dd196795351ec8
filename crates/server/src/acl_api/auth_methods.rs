//! ACL auth methods (issue #43), Consul's API and texts: `PUT /v1/acl/auth-method`
//! (create or replace), `GET|PUT|DELETE /v1/acl/auth-method/:name`,
//! `GET /v1/acl/auth-methods` (stubs, no `Config`). Reads need `acl:read`, writes
//! `acl:write`; with ACLs off the endpoints answer 401 like the other ACL ones.
//!
//! A method is checked as Consul checks it ([`AuthMethod::validate`]): name, type
//! (immutable once written), `MaxTokenTTL` within 1 minute to 24 hours, locality, and
//! the `jwt` or `oidc` `Config`.

use super::{delete_record, stored_indexed, write_guarded};
use crate::extract::{AclCaller, JsonBody};
use crate::state::acl::AUTH_METHODS;
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
/// a certificate whose key is used.
fn check_pub_keys(method: &AuthMethod) -> ApiResult<()> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
    for (i, pem) in method.config.jwt_validation_pub_keys.iter().enumerate() {
        let key = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).is_ok();
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).is_ok();
        if !key && !cert {
            return Err(ApiError::bad_request(format!(
                "Invalid Auth Method: error parsing public key JWTValidationPubKeys[{i}]: data does not contain any valid RSA or ECDSA public keys"
            )));
        }
    }
    Ok(())
}

/// Checks `method` against the stored one of its name and writes it.
async fn write(state: &crate::AppState, mut method: AuthMethod) -> ApiResult<Response> {
    let existing = AUTH_METHODS.get(state, &method.name).await?;
    method
        .validate(existing.as_ref().map(|s| &s.value))
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
    let stored = AUTH_METHODS
        .get(state, &method.name)
        .await?
        .ok_or_else(|| crate::internal_error("auth method vanished after its write".into()))?;
    Ok(Json(stored_indexed(stored)).into_response())
}

/// `PUT /v1/acl/auth-method`.
pub(crate) async fn create(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.acl_write()?;
    write(&state, decode(body)?).await
}

/// `PUT /v1/acl/auth-method/:name`.
pub(crate) async fn update(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
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
    write(&state, method).await
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

/// `DELETE /v1/acl/auth-method/:name` (a missing one is no error).
pub(crate) async fn delete(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_write()?;
    delete_record(&state, &AUTH_METHODS, &name).await
}
