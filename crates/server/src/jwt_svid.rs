//! The agent's CA as a JWT issuer (issue #45): JWT-SVIDs for the mesh's services,
//! and what any verifier needs to check them.
//!
//! - `POST /v1/agent/connect/ca/jwt-svid` `{"Service", "Audience", "TTL"}` (needs
//!   `service:write` on the service, like its leaf): a JWT-SVID whose `sub` is the
//!   service's SPIFFE ID, `aud` the audience (required), `exp` 5 minutes on (at most
//!   1 hour), `iss` the agent's issuer, `kid` in the header.
//! - `GET /v1/connect/ca/jwks`: the trust domain's public keys, the retired ones
//!   until the last token they signed has expired.
//! - `GET /.well-known/openid-configuration`: OIDC discovery for them, so Vault, cloud
//!   IAM, PyJWT or a `jwt-provider` (Remote URI `<issuer>/.well-known/openid-
//!   configuration`) verify them. Keys are in the store: every agent sharing it
//!   publishes the same ones.
//!
//! Tokens are never logged.

use crate::ca_api::{self, StoredJwtKey, CA, CA_KEY, CA_TABLE};
use crate::extract::{Caller, GoJson};
use crate::state::write::{guarded, Step};
use crate::{ApiError, ApiResult, AppState, Shared};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;
use tribune_ca::jwt::{svid_claims, JwtKey, DEFAULT_SVID_TTL, MAX_SVID_TTL};
use tribune_ca::ServiceId;
use tribune_model::api::{JwtSvid, JwtSvidRequest};
use tribune_store::{Cas, Op};

/// The issuer of this agent's JWT-SVIDs: `connect { ca_config { jwt_issuer } }`, else
/// the agent's own address.
pub(crate) fn issuer(state: &AppState) -> String {
    if let Some(i) = &state.config.connect.jwt_issuer {
        return i.clone();
    }
    let scheme = if state.config.http_port.is_none() && state.config.https_port.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", state.advertise())
}

/// The trust domain and its JWT keys (a CA stored before JWT-SVIDs existed gets its
/// first key here, once across agents).
async fn keys(state: &AppState) -> ApiResult<(String, Vec<JwtKey>)> {
    let ca = ca_api::required(state).await?;
    let ca = if ca.jwt_keys.is_empty() {
        let alg = state.config.connect.jwt_signing_algorithm;
        let (_, ca) = guarded(state, CA_TABLE, move |_| async move {
            let stored = CA
                .get(state, CA_KEY)
                .await?
                .ok_or_else(|| ca_api::internal("CA not initialized"))?;
            if !stored.value.jwt_keys.is_empty() {
                return Ok(Step::Skip(stored.value));
            }
            let ca = ca_api::with_new_jwt_key(stored.value, alg, ca_api::now())?;
            Ok(Step::Write {
                ops: vec![
                    CA.put(CA_KEY, &ca, Cas::Any)?,
                    Op::unchanged_key(CA_TABLE, CA_KEY, stored.modify_index),
                ],
                then: ca,
            })
        })
        .await?;
        ca
    } else {
        ca
    };
    let keys = ca
        .jwt_keys
        .iter()
        .map(StoredJwtKey::key)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok((ca.trust_domain, keys))
}

/// `GET /v1/connect/ca/jwks` (no token needed: public keys).
pub(crate) async fn jwks(State(state): State<Shared>) -> ApiResult<Response> {
    let (_, keys) = keys(&state).await?;
    let t = ca_api::now();
    let jwks = keys
        .iter()
        .filter(|k| k.published_at(t))
        .map(|k| k.jwk().map_err(ca_api::internal))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(serde_json::json!({ "keys": jwks })).into_response())
}

/// `GET /.well-known/openid-configuration` (no token needed).
pub(crate) async fn discovery(State(state): State<Shared>) -> ApiResult<Response> {
    let (_, keys) = keys(&state).await?;
    let iss = issuer(&state);
    let mut algs: Vec<&str> = keys.iter().map(|k| k.alg.as_str()).collect();
    algs.sort_unstable();
    algs.dedup();
    Ok(Json(serde_json::json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}{}", tribune_model::api::paths::CA_JWKS),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    }))
    .into_response())
}

/// `POST /v1/agent/connect/ca/jwt-svid`.
pub(crate) async fn mint(
    State(state): State<Shared>,
    Caller(authz): Caller,
    GoJson(body): GoJson<JwtSvidRequest>,
) -> ApiResult<Response> {
    if body.service.is_empty() {
        return Err(ApiError::bad_request("Service is required"));
    }
    authz.service_write(&body.service)?;
    tribune_model::names::check_service_name(&body.service).map_err(ApiError::bad_request)?;
    let audience: Vec<String> = body
        .audience
        .iter()
        .filter(|a| !a.is_empty())
        .cloned()
        .collect();
    if audience.is_empty() {
        return Err(ApiError::bad_request(
            "Audience is required: a JWT-SVID names who it is for (SPIFFE JWT-SVID 3)",
        ));
    }
    let ttl = if body.ttl.is_empty() {
        DEFAULT_SVID_TTL
    } else {
        let ns = tribune_model::go::parse_duration(&body.ttl)
            .map_err(|e| ApiError::bad_request(format!("TTL: {e}")))?;
        if ns <= 0 || ns > MAX_SVID_TTL.as_nanos() as i64 {
            return Err(ApiError::bad_request(format!(
                "TTL: must be more than 0 and at most {}, got {}",
                tribune_model::go::format_duration(MAX_SVID_TTL.as_nanos() as i64),
                body.ttl
            )));
        }
        Duration::from_nanos(ns as u64)
    };
    let (trust_domain, keys) = keys(&state).await?;
    let key = keys
        .iter()
        .rev()
        .find(|k| k.retired.is_none())
        .ok_or_else(|| ca_api::internal("no active JWT-SVID key"))?;
    let id = ServiceId::new(&trust_domain, &state.config.datacenter, &body.service);
    let t = ca_api::now();
    let claims = svid_claims(&id, &issuer(&state), &audience, t, ttl);
    let token = key.sign(&claims).map_err(ca_api::internal)?;
    let expires_at = time::OffsetDateTime::from_unix_timestamp(t + ttl.as_secs() as i64)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    tracing::debug!(service = %body.service, kid = %key.kid, "JWT-SVID issued");
    Ok(Json(JwtSvid {
        token,
        spiffe_id: id.uri(),
        expires_at,
    })
    .into_response())
}
