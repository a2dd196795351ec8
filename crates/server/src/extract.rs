//! The request preamble as axum extractors, so a handler reads as the request's
//! steps:
//!
//! ```text
//! async fn create_policy(caller: AclCaller, GoJson(body): GoJson<AclPolicyBody>)
//!        │                      │                    │
//!        │                      │                    └ the body, decoded as Consul
//!        │                      │                      decodes it ("Request decoding
//!        │                      │                      failed: ...", 400)
//!        │                      └ ACLs on (401 "ACL support disabled"), the token
//!        │                        resolved to its authorizer (403 "ACL not found")
//!        └ the handler: checks the caller's permission, then does the work
//! ```
//!
//! - [`Query`]: the Consul query string (`index`, `wait`, `cas`, `filter`, `token`,
//!   ...), decoded once per request and shared by every extractor that reads it.
//! - [`Caller`]: the request's token (`X-Consul-Token`, `Authorization: Bearer`,
//!   `?token=`) resolved to its [`Authorizer`]; [`AclCaller`] for the `/v1/acl`
//!   endpoints, which answer 401 while ACLs are off; [`WatchCaller`] for the blocking
//!   queries sidecars hold (a re-armed watch is authorized from the kept state).
//! - [`GoJson`]: a body Consul decodes with Go's `encoding/json` (the ACL bodies);
//!   [`JsonBody`]: any JSON body, for handlers that decode it further.

use crate::acl::Authorizer;
use crate::{authorize, authorize_blocking, json_body, parse_query, ApiError, Shared};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use std::convert::Infallible;
use std::sync::Arc;

/// The query string's pairs, in order, decoded as Consul decodes them.
#[derive(Debug, Clone)]
pub(crate) struct Query(pub Arc<Vec<(String, String)>>);

impl Query {
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The request's [`Query`], decoded at the first ask and kept in its extensions.
fn query_of(parts: &mut Parts) -> Query {
    if let Some(q) = parts.extensions.get::<Query>() {
        return q.clone();
    }
    let q = Query(Arc::new(parse_query(parts.uri.query())));
    parts.extensions.insert(q.clone());
    q
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(query_of(parts))
    }
}

/// The caller's authorizer (everything allowed while ACLs are off).
pub(crate) struct Caller(pub Authorizer);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let q = query_of(parts);
        Ok(Caller(authorize(state, &parts.headers, q.pairs()).await?))
    }
}

/// A caller with a management token (or ACLs off): what snapshots need. Checked from
/// the head, so a refused caller's body is never read (a restore may be 512 MiB).
pub(crate) struct ManagementCaller;

impl FromRequestParts<Shared> for ManagementCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let Caller(authz) = Caller::from_request_parts(parts, state).await?;
        authz.management()?;
        Ok(ManagementCaller)
    }
}

/// The caller of an `/v1/acl` endpoint: ACLs must be on (Consul answers 401 "ACL
/// support disabled" otherwise).
pub(crate) struct AclCaller(pub Authorizer);

impl FromRequestParts<Shared> for AclCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if !state.config.acl.enabled {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "ACL support disabled".into(),
            ));
        }
        let q = query_of(parts);
        Ok(AclCaller(
            authorize(state, &parts.headers, q.pairs()).await?,
        ))
    }
}

/// The caller of a blocking query a sidecar holds ([`authorize_blocking`]).
pub(crate) struct WatchCaller(pub Authorizer);

impl FromRequestParts<Shared> for WatchCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let q = query_of(parts);
        Ok(WatchCaller(
            authorize_blocking(state, &parts.headers, q.pairs()).await?,
        ))
    }
}

/// A JSON body decoded into `T` as Consul's Go `encoding/json` decodes it (keys
/// matched exactly, else in any case; unknown keys ignored): the ACL bodies. An empty
/// body is an empty object.
pub(crate) struct GoJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for GoJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        let v = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            json_body(&bytes)?
        };
        tribune_model::decode::from_go_json(&v)
            .map(GoJson)
            .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))
    }
}

/// A JSON body (with the model's nesting limit), for handlers that decode it further.
pub(crate) struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        Ok(JsonBody(json_body(&bytes)?))
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|e| ApiError(e.status(), format!("Request decoding failed: {e}")))
}
