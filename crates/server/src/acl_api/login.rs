//! `POST /v1/acl/login` and `POST /v1/acl/logout` (issue #43), Consul's API and
//! texts.
//!
//! ```text
//!  {"AuthMethod": "nomad-workloads", "BearerToken": "<JWT>", "Meta": {...}}
//!    │ the method (else 403 "ACL not found: auth method ... not found")
//!    ▼
//!  verify the JWT: algorithm allowed (never HMAC), signature by the method's keys
//!    (JWTValidationPubKeys, or JWKSURL / OIDCDiscoveryURL through the same key
//!    runtime as the sidecar: cache, retries, TLS, refetch on an unknown kid),
//!    then Consul's claim checks (times with leeways, BoundIssuer, BoundAudiences)
//!    │ failure: 403 with Consul's text; the log names the method and the check
//!    ▼
//!  Identity (mapped claims) ──the method's binding rules──▶ bindings
//!    │ none (or only roles/policies that do not exist): 403 "Permission denied"
//!    ▼
//!  a new token: AuthMethod, the bound identities and links, Local unless the method
//!  says global, ExpirationTime = now + MaxTokenTTL
//! ```
//!
//! The bearer token is never logged or stored: only the token it is exchanged for.

use super::binding_rules::rules_of;
use super::{acl_enabled, identities, indexed, insert_token, now_utc_seconds};
use crate::acl::{PolicyLink, Token};
use crate::extract::{GoJson, Query};
use crate::state::acl::{AUTH_METHODS, POLICIES, ROLES, TOKENS};
use crate::{ApiError, ApiResult, AppState, Shared};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tribune_jwt::{Alg, Jwks, JwtError};
use tribune_model::auth_method::{AuthMethod, MethodType};
use tribune_model::binding_rule::{bind, Binding, Identity};
use tribune_model::jwt_provider::{
    JsonWebKeySet, JwksCluster, RemoteJwks, TlsCertificates, TrustedCa,
};
use tribune_model::JwtProvider;
use tribune_store::Cas;

pub use tribune_model::api::LoginBody;

/// Largest bearer token accepted (the sidecar's own bound).
const MAX_BEARER_BYTES: usize = tribune_jwt::DEFAULT_MAX_TOKEN_BYTES;

fn denied() -> ApiError {
    ApiError(StatusCode::FORBIDDEN, "Permission denied".into())
}

/// A login that failed a check: Consul's text to the caller, the check in the log.
pub(super) fn refused(method: &str, why: String) -> ApiError {
    tracing::warn!(auth_method = %method, reason = %why, "ACL login refused");
    ApiError(StatusCode::FORBIDDEN, why)
}

/// The provider an auth method's remote keys are fetched as (the sidecar's key
/// runtime, keyed by it): a JWKS URL, or the discovery document of
/// `OIDCDiscoveryURL` (whose `issuer` must be that URL, as OpenID Connect requires).
pub(super) fn remote_provider(method: &AuthMethod) -> Option<JwtProvider> {
    let c = &method.config;
    let (uri, ca, issuer) = if !c.jwks_url.is_empty() {
        (c.jwks_url.clone(), &c.jwks_ca_cert, String::new())
    } else if !c.oidc_discovery_url.is_empty() {
        (
            format!(
                "{}{}",
                c.oidc_discovery_url.trim_end_matches('/'),
                tribune_jwks::DISCOVERY_SUFFIX
            ),
            &c.oidc_discovery_ca_cert,
            c.oidc_discovery_url.clone(),
        )
    } else {
        return None;
    };
    let jwks_cluster = (!ca.is_empty()).then(|| JwksCluster {
        discovery_type: None,
        tls_certificates: Some(TlsCertificates::TrustedCa(TrustedCa::InlineString(
            ca.clone(),
        ))),
        connect_timeout: 0,
    });
    Some(provider_of(
        method,
        JsonWebKeySet::Remote(RemoteJwks {
            uri,
            request_timeout_ms: 0,
            cache_duration: 0,
            fetch_asynchronously: false,
            use_sni: true,
            retry_policy: None,
            jwks_cluster,
        }),
        issuer,
    ))
}

/// An auth method's keys as a provider the key runtime and verifier take: no
/// audiences or locations of its own (the method's checks come after), the method's
/// clock skew.
fn provider_of(method: &AuthMethod, keys: JsonWebKeySet, issuer: String) -> JwtProvider {
    JwtProvider {
        name: format!("auth-method/{}", method.name),
        json_web_key_set: keys,
        issuer,
        audiences: Vec::new(),
        locations: Vec::new(),
        forwarding: None,
        claim_to_headers: Vec::new(),
        clock_skew_seconds: method.config.clock_skew_s(),
        cache_config: None,
        meta: Default::default(),
    }
}

/// Forgets the key runtimes of methods that no longer exist (or changed).
pub(crate) async fn retain_runtimes(state: &AppState) -> ApiResult<()> {
    let methods = AUTH_METHODS.list(state).await?;
    let providers: Vec<JwtProvider> = methods
        .iter()
        .filter_map(|m| remote_provider(&m.value))
        .collect();
    state
        .login_keys
        .retain(&providers.iter().collect::<Vec<_>>());
    Ok(())
}

/// The algorithms a method accepts: its `JWTSupportedAlgs`, else every asymmetric
/// one. HMAC never: a method holds no shared secret, so an HS256 token could only
/// be a forgery with a public key as its secret.
pub(super) fn alg_allowed(method: &AuthMethod, alg: Alg) -> bool {
    if alg.as_str().starts_with("HS") {
        return false;
    }
    let listed = &method.config.jwt_supported_algs;
    listed.is_empty() || listed.iter().any(|a| a == alg.as_str())
}

fn jwt_text(e: &JwtError) -> String {
    match e {
        JwtError::Expired => {
            "error validating claims: validation failed, token is expired (exp)".into()
        }
        JwtError::NotYetValid => {
            "error validating claims: validation failed, token not valid yet (nbf)".into()
        }
        JwtError::IssuerMismatch => {
            "error validating claims: validation failed, invalid issuer claim (iss)".into()
        }
        other => format!("error verifying token: {}", other.text()),
    }
}

/// Verifies `bearer` for `method` and gives its claims (Consul's checks and texts).
async fn verify(
    state: &AppState,
    method: &AuthMethod,
    bearer: &str,
    now: i64,
) -> Result<serde_json::Value, String> {
    if bearer.is_empty() {
        return Err("missing jwt".into());
    }
    let jws = tribune_jwt::Jws::parse(bearer, MAX_BEARER_BYTES)
        .map_err(|e| format!("error parsing token: {}", e.text()))?;
    if !alg_allowed(method, jws.alg) {
        return Err(format!(
            "error verifying token: unsupported signing algorithm {:?}",
            jws.alg.as_str()
        ));
    }
    let claims = if let Some(provider) = remote_provider(method) {
        let (mut rts, fresh) = state
            .login_keys
            .runtimes(std::slice::from_ref(&provider))
            .map_err(|e| format!("error verifying token: {e}"))?;
        for rt in &fresh {
            rt.prepare().await;
        }
        let rt = rts
            .pop()
            .ok_or_else(|| "error verifying token: no key runtime".to_string())?;
        match rt.check(bearer, now).await {
            None => {
                return Err(
                    "error validating claims: validation failed, invalid issuer claim (iss)".into(),
                )
            }
            Some(Err(e)) => return Err(jwt_text(&e)),
            Some(Ok(c)) => c.to_value(),
        }
    } else {
        let mut spkis = Vec::new();
        for pem in &method.config.jwt_validation_pub_keys {
            spkis.push(
                tribune_ca::public_key_from_pem(pem)
                    .map_err(|e| format!("error verifying token: {e}"))?,
            );
        }
        let keys =
            Jwks::from_public_keys(&spkis).map_err(|e| format!("error verifying token: {e}"))?;
        let provider = provider_of(
            method,
            JsonWebKeySet::Local(tribune_model::jwt_provider::LocalJwks::Inline(String::new())),
            String::new(),
        );
        let verifier = tribune_jwt::Verifier::new(&provider, Arc::new(keys));
        match verifier.verify_parsed(jws, now) {
            Ok(c) => c.to_value(),
            Err(JwtError::UnknownKey | JwtError::BadSignature) => {
                return Err("no known key successfully validated the token signature".into())
            }
            Err(e) => return Err(jwt_text(&e)),
        }
    };
    // Discovery follows OpenID Connect's rule for `aud` (no bound audiences: any);
    // local keys and a JWKS follow Consul's strict one.
    let strict = method.config.oidc_discovery_url.is_empty();
    method.config.check_claims(&claims, now, strict)?;
    Ok(claims)
}

/// The token a login's bindings give, with role and policy names resolved (those
/// that do not exist are left out, as in Consul).
async fn token_for(
    state: &AppState,
    method: &AuthMethod,
    bindings: Vec<Binding>,
    meta: &BTreeMap<String, String>,
    made_by: &str,
) -> ApiResult<Option<Token>> {
    let mut token = Token {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: uuid::Uuid::new_v4().to_string(),
        auth_method: method.name.clone(),
        local: method.token_locality != "global",
        ..Default::default()
    };
    let (roles, policies) = if bindings
        .iter()
        .any(|b| matches!(b, Binding::Role(_) | Binding::Policy(_)))
    {
        (ROLES.list(state).await?, POLICIES.list(state).await?)
    } else {
        (Vec::new(), Vec::new())
    };
    for b in bindings {
        match b {
            Binding::Service(name) => {
                token
                    .service_identities
                    .push(tribune_model::api::AclServiceIdentity {
                        service_name: name,
                        datacenters: Vec::new(),
                    })
            }
            Binding::Node(name) => {
                token
                    .node_identities
                    .push(tribune_model::api::AclNodeIdentity {
                        node_name: name,
                        datacenter: state.config.datacenter.clone(),
                    })
            }
            Binding::Role(name) => {
                if let Some(r) = roles.iter().find(|r| r.value.name == name) {
                    token.roles.push(PolicyLink {
                        id: r.value.id.clone(),
                        name: r.value.name.clone(),
                    });
                }
            }
            Binding::Policy(name) => {
                if let Some(p) = policies.iter().find(|p| p.value.name == name) {
                    token.policies.push(PolicyLink {
                        id: p.value.id.clone(),
                        name: p.value.name.clone(),
                    });
                }
            }
            Binding::Templated(t) => token.templated_policies.push(t),
        }
    }
    let nothing = token.service_identities.is_empty()
        && token.node_identities.is_empty()
        && token.templated_policies.is_empty()
        && token.roles.is_empty()
        && token.policies.is_empty();
    if nothing {
        return Ok(None);
    }
    token.description = if meta.is_empty() {
        format!("token created via {made_by}")
    } else {
        format!(
            "token created via {made_by}: {}",
            serde_json::to_string(meta).unwrap_or_default()
        )
    };
    let created = now_utc_seconds();
    token.create_time = identities::format_time(created);
    if method.max_token_ttl > 0 {
        token.expiration_time = Some(identities::format_time(
            created + time::Duration::nanoseconds(method.max_token_ttl),
        ));
    }
    Ok(Some(token))
}

/// The token a verified login earns (`made_by`: `login` or `OIDC login`): the claims
/// as the method maps them, the method's binding rules, and a new token when they
/// bind anything (else "Permission denied", the reason in the log).
pub(super) async fn issue(
    state: &AppState,
    method: &AuthMethod,
    claims: &serde_json::Value,
    meta: &BTreeMap<String, String>,
    made_by: &str,
) -> ApiResult<Response> {
    let identity =
        Identity::from_claims(&method.config, claims).map_err(|why| refused(&method.name, why))?;
    let rules: Vec<_> = rules_of(state, Some(&method.name))
        .await?
        .into_iter()
        .map(|r| r.value)
        .collect();
    let bindings = bind(&rules, &identity).map_err(|why| refused(&method.name, why))?;
    let Some(token) = token_for(state, method, bindings, meta, made_by).await? else {
        tracing::warn!(auth_method = %method.name, via = made_by, reason = "no binding rule matched the claims (or its roles and policies do not exist)", "ACL login refused");
        return Err(denied());
    };
    let index = insert_token(state, &token).await?;
    tracing::info!(auth_method = %method.name, via = made_by, accessor_id = %token.accessor_id, "ACL login");
    Ok(Json(indexed(token, None, index)).into_response())
}

/// The auth method `name`, or Consul's 403.
pub(super) async fn load_method(state: &AppState, name: &str) -> ApiResult<AuthMethod> {
    Ok(AUTH_METHODS
        .get(state, name)
        .await?
        .ok_or_else(|| {
            ApiError(
                StatusCode::FORBIDDEN,
                format!("ACL not found: auth method {name:?} not found"),
            )
        })?
        .value)
}

/// `POST /v1/acl/login`.
pub(crate) async fn login(
    State(state): State<Shared>,
    GoJson(body): GoJson<LoginBody>,
) -> ApiResult<Response> {
    acl_enabled(&state)?;
    if body.auth_method.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid Login request: Missing auth parameters",
        ));
    }
    let method = load_method(&state, &body.auth_method).await?;
    if MethodType::parse(&method.r#type) == Some(MethodType::Oidc) {
        return Err(ApiError::bad_request(format!(
            "ClaimsFromJWT is incompatible with type {:?}",
            method.r#type
        )));
    }
    let now = crate::ca_api::now();
    let claims = verify(&state, &method, &body.bearer_token, now)
        .await
        .map_err(|why| refused(&method.name, why))?;
    issue(&state, &method, &claims, &body.meta, "login").await
}

/// `POST /v1/acl/logout`: deletes the caller's own token, which a login made.
pub(crate) async fn logout(
    State(state): State<Shared>,
    query: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    acl_enabled(&state)?;
    let not_found = || ApiError(StatusCode::FORBIDDEN, "ACL not found".into());
    let secret = crate::token_secret(&headers, query.pairs()).ok_or_else(not_found)?;
    let token = crate::find_token_by_secret(&state, &secret)
        .await?
        .ok_or_else(not_found)?;
    if token.auth_method.is_empty() {
        // Only a login's token logs out; any other is deleted by an ACL writer.
        return Err(denied());
    }
    crate::state::write::apply(&state, &[TOKENS.delete(&token.accessor_id, Cas::Any)]).await?;
    tracing::info!(auth_method = %token.auth_method, accessor_id = %token.accessor_id, "ACL logout");
    Ok(Json(true).into_response())
}
