//! OIDC sign-in for `oidc` auth methods (issue #43): the authorization code flow
//! with state, nonce and PKCE (S256, always), as Consul's API shapes it.
//!
//! ```text
//!  POST /v1/acl/oidc/auth-url {AuthMethod, RedirectURI, ClientNonce, Meta}
//!    RedirectURI in AllowedRedirectURIs (loopback: any port, RFC 8252)
//!    state, nonce, PKCE verifier: random, kept here 10 minutes, used once
//!    └─▶ {"AuthURL": "<authorization_endpoint>?response_type=code&client_id=..
//!          &redirect_uri=..&scope=openid ..&state=..&nonce=..&code_challenge=..
//!          &code_challenge_method=S256"}
//!  the browser signs in at the provider, which redirects to RedirectURI?code=..&state=..
//!  POST /v1/acl/oidc/callback {AuthMethod, State, Code, ClientNonce}
//!    the state is taken (a replayed code or state finds none), the method and
//!    ClientNonce must be the ones it was made for; the code is exchanged with the
//!    verifier; the ID token verified (signature by the discovery keys, iss, aud
//!    has OIDCClientID, exp, nonce) ──▶ claims ──binding rules──▶ a token
//! ```
//!
//! Codes and ID tokens are never logged or stored; a pending sign-in (its state,
//! nonce and PKCE verifier) is kept in the store for ten minutes at most, so that
//! any agent sharing it can finish it, and bounded in number.

use super::acl_enabled;
use super::login::{alg_allowed, issue, load_method, refused, remote_provider};
use crate::extract::GoJson;
use crate::state::acl::{AUTH_METHODS, OIDC_STATES};
use crate::{ApiError, ApiResult, AppState, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tribune_model::auth_method::{AuthMethod, MethodType};
use tribune_store::Cas;

/// How long a sign-in may take between auth-url and callback (Consul's).
const STATE_TIMEOUT: Duration = Duration::from_secs(600);
/// Sign-ins pending at once, at most: auth-url needs no token, so its memory is
/// bounded.
const MAX_PENDING: usize = 4096;

/// One sign-in between its auth-url and its callback, kept in the store (table
/// `acl-oidc-states`, by state) so that the callback may reach any agent sharing it
/// (agents behind one load balancer). Its verifier and nonce are secrets for ten
/// minutes: the store is the operator's alone (decisions #29).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    method: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
    client_nonce: String,
    meta: BTreeMap<String, String>,
    token_endpoint: String,
    /// Unix seconds.
    created: i64,
}

fn expired(p: &Pending, now: i64) -> bool {
    now - p.created >= STATE_TIMEOUT.as_secs() as i64
}

/// Keeps a new sign-in; refused when too many are pending.
async fn remember(state: &AppState, id: &str, p: &Pending) -> ApiResult<()> {
    let now = crate::ca_api::now();
    let live = OIDC_STATES
        .list(state)
        .await?
        .into_iter()
        .filter(|s| !expired(&s.value, now))
        .count();
    if live >= MAX_PENDING {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many OIDC sign-ins in progress; try again in a few minutes".into(),
        ));
    }
    crate::state::write::apply(state, &[OIDC_STATES.put(id, p, Cas::Absent)?]).await?;
    Ok(())
}

/// The sign-in of `id`, removed: each state is good for one callback, across agents
/// (the delete is conditional on the record read; of two callbacks, one gets it).
async fn take(state: &AppState, id: &str) -> ApiResult<Option<Pending>> {
    if id.is_empty() {
        return Ok(None);
    }
    let Some(found) = OIDC_STATES.get(state, id).await? else {
        return Ok(None);
    };
    let applied = crate::state::write::apply(
        state,
        &[OIDC_STATES.delete(id, Cas::ModifyIndex(found.modify_index))],
    )
    .await?;
    if !applied.ok || expired(&found.value, crate::ca_api::now()) {
        return Ok(None);
    }
    Ok(Some(found.value))
}

/// Removes sign-ins that were never finished (with the token reaper).
pub(crate) async fn reap_states(state: &AppState) -> ApiResult<usize> {
    let now = crate::ca_api::now();
    let ops: Vec<_> = OIDC_STATES
        .list(state)
        .await?
        .into_iter()
        .filter(|s| expired(&s.value, now))
        .map(|s| OIDC_STATES.delete(&s.key, Cas::ModifyIndex(s.modify_index)))
        .collect();
    crate::state::write::apply_batched(state, &ops).await?;
    Ok(ops.len())
}

use tribune_model::api::{
    OidcAuthUrl, OidcAuthUrlBody as AuthUrlBody, OidcCallbackBody as CallbackBody,
};

fn random_hex(n: usize) -> ApiResult<String> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| crate::internal_error("no randomness for an OIDC state".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// PKCE (RFC 7636): a verifier of 32 random bytes, and its S256 challenge.
fn pkce() -> ApiResult<(String, String)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| crate::internal_error("no randomness for PKCE".into()))?;
    let verifier = B64.encode(b);
    let challenge = B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    Ok((verifier, challenge))
}

/// Go-sso's `validRedirect`: a loopback redirect matches an allowed one on any port
/// (RFC 8252 7.3, for CLI listeners); any other must be listed exactly.
pub(crate) fn redirect_allowed(uri: &str, allowed: &[String]) -> bool {
    let loopback_host = |u: &str| -> Option<(String, String)> {
        let rest = u.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().map(|h| format!("[{h}]"))?
        } else {
            authority.split(':').next()?.to_string()
        };
        matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
            .then(|| (host, path.to_string()))
    };
    match loopback_host(uri) {
        None => allowed.iter().any(|a| a == uri),
        Some(mine) => allowed
            .iter()
            .any(|a| loopback_host(a).is_some_and(|theirs| theirs == mine)),
    }
}

fn oidc_method(state: &AppState, m: &AuthMethod, what: &str) -> ApiResult<()> {
    let _ = state;
    if MethodType::parse(&m.r#type) != Some(MethodType::Oidc) {
        return Err(ApiError::bad_request(format!(
            "{what} is incompatible with type {:?}",
            m.r#type
        )));
    }
    Ok(())
}

/// The method's discovery client (its CA) and the provider it verifies ID tokens as.
fn client_for(
    m: &AuthMethod,
) -> ApiResult<(tribune_jwks::oidc::OidcClient, tribune_model::JwtProvider)> {
    let provider = remote_provider(m)
        .ok_or_else(|| ApiError::bad_request("the method has no OIDCDiscoveryURL"))?;
    let tribune_model::jwt_provider::JsonWebKeySet::Remote(r) = &provider.json_web_key_set else {
        return Err(crate::internal_error(
            "an OIDC method's keys are remote".into(),
        ));
    };
    let mut policy = tribune_jwks::FetchPolicy::from_remote(r);
    policy.issuer = provider.issuer.clone();
    let client = tribune_jwks::oidc::OidcClient::new(policy)
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("OIDC provider: {e}")))?;
    Ok((client, provider))
}

/// `POST /v1/acl/oidc/auth-url`.
pub(crate) async fn auth_url(
    State(state): State<Shared>,
    GoJson(body): GoJson<AuthUrlBody>,
) -> ApiResult<Response> {
    acl_enabled(&state)?;
    if body.auth_method.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid OIDC auth URL request: Missing auth method name",
        ));
    }
    let method = load_method(&state, &body.auth_method).await?;
    oidc_method(&state, &method, "GetAuthCodeURL")?;
    if body.redirect_uri.is_empty() {
        return Err(ApiError::bad_request("missing redirect_uri"));
    }
    if !redirect_allowed(&body.redirect_uri, &method.config.allowed_redirect_uris) {
        return Err(ApiError::bad_request(format!(
            "unauthorized redirect_uri: {}",
            body.redirect_uri
        )));
    }
    let (client, provider) = client_for(&method)?;
    let discovery = client.discover(&provider.issuer).await.map_err(|e| {
        tracing::warn!(auth_method = %method.name, error = %e, "OIDC discovery failed");
        ApiError(StatusCode::BAD_GATEWAY, format!("OIDC provider: {e}"))
    })?;
    let (state_id, nonce) = (random_hex(20)?, random_hex(20)?);
    let (verifier, challenge) = pkce()?;
    let mut scopes = vec!["openid".to_string()];
    scopes.extend(method.config.oidc_scopes.iter().cloned());
    let mut params: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", method.config.oidc_client_id.clone()),
        ("redirect_uri", body.redirect_uri.clone()),
        ("scope", scopes.join(" ")),
        ("state", state_id.clone()),
        ("nonce", nonce.clone()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".into()),
    ];
    if !method.config.oidc_acr_values.is_empty() {
        params.push(("acr_values", method.config.oidc_acr_values.join(" ")));
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let sep = if discovery.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{sep}{query}", discovery.authorization_endpoint);
    let pending = Pending {
        method: method.name.clone(),
        nonce,
        verifier,
        redirect_uri: body.redirect_uri,
        client_nonce: body.client_nonce,
        meta: body.meta,
        token_endpoint: discovery.token_endpoint,
        created: crate::ca_api::now(),
    };
    remember(&state, &state_id, &pending).await?;
    Ok(Json(OidcAuthUrl { auth_url: url }).into_response())
}

/// `POST /v1/acl/oidc/callback`.
pub(crate) async fn callback(
    State(state): State<Shared>,
    GoJson(body): GoJson<CallbackBody>,
) -> ApiResult<Response> {
    acl_enabled(&state)?;
    let method = load_method(&state, &body.auth_method).await?;
    oidc_method(&state, &method, "ClaimsFromAuthCode")?;
    let failed = |why: &str| refused(&method.name, format!("Provider login failed: {why}"));
    if body.code.is_empty() {
        return Err(failed("OAuth code parameter not provided"));
    }
    // Taken before anything else is checked: a state is good for one try.
    let Some(pending) = take(&state, &body.state).await? else {
        return Err(failed("Expired or missing OAuth state."));
    };
    if pending.method != method.name {
        return Err(failed("Expired or missing OAuth state."));
    }
    if !crate::constant_time_eq(
        pending.client_nonce.as_bytes(),
        body.client_nonce.as_bytes(),
    ) {
        return Err(refused(
            &method.name,
            "Token verification failed: invalid ClientNonce".into(),
        ));
    }
    let (client, provider) = client_for(&method)?;
    let id_token = client
        .exchange_code(
            &pending.token_endpoint,
            &method.config.oidc_client_id,
            &method.config.oidc_client_secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", body.code.as_str()),
                ("redirect_uri", pending.redirect_uri.as_str()),
                ("code_verifier", pending.verifier.as_str()),
            ],
        )
        .await
        .map_err(|e| failed(&format!("Error exchanging oidc code: {e}")))?;
    let claims = verify_id_token(&state, &method, &provider, &id_token, &pending.nonce)
        .await
        .map_err(|why| refused(&method.name, format!("Token verification failed: {why}")))?;
    issue(&state, &method, &claims, &pending.meta, "OIDC login").await
}

/// An ID token (OpenID Connect Core 3.1.3.7): signed by the provider's discovery
/// keys with an allowed algorithm, `iss` the provider, `aud` holding the client,
/// not expired, and carrying this sign-in's `nonce`; then the method's own claim
/// checks (BoundAudiences, leeways).
async fn verify_id_token(
    state: &AppState,
    method: &AuthMethod,
    provider: &tribune_model::JwtProvider,
    id_token: &str,
    nonce: &str,
) -> Result<serde_json::Value, String> {
    let jws = tribune_jwt::Jws::parse(id_token, tribune_jwt::DEFAULT_MAX_TOKEN_BYTES)
        .map_err(|e| format!("error parsing ID token: {}", e.text()))?;
    if !alg_allowed(method, jws.alg) {
        return Err(format!(
            "unsupported signing algorithm {:?}",
            jws.alg.as_str()
        ));
    }
    let (mut rts, fresh) = state
        .login_keys
        .runtimes(std::slice::from_ref(provider))
        .map_err(|e| e.to_string())?;
    for rt in &fresh {
        rt.prepare().await;
    }
    let rt = rts.pop().ok_or("no key runtime")?;
    let claims = match rt.check(id_token, crate::ca_api::now()).await {
        None => return Err("the ID token's issuer is not the provider's".into()),
        Some(Err(e)) => return Err(format!("error validating signature: {}", e.text())),
        Some(Ok(c)) => c.to_value(),
    };
    let aud_has_client = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => *a == method.config.oidc_client_id,
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str() == Some(method.config.oidc_client_id.as_str())),
        _ => false,
    };
    if !aud_has_client {
        return Err("the ID token's aud does not name the client".into());
    }
    let got = claims.get("nonce").and_then(|n| n.as_str()).unwrap_or("");
    if !crate::constant_time_eq(got.as_bytes(), nonce.as_bytes()) {
        return Err("Invalid ID token nonce.".into());
    }
    method
        .config
        .check_claims(&claims, crate::ca_api::now(), false)?;
    Ok(claims)
}

/// `GET /v1/internal/ui/oidc-auth-methods`: the OIDC methods a sign-in page offers
/// (name, type and display name only; no token needed, as in Consul).
pub(crate) async fn ui_methods(State(state): State<Shared>) -> ApiResult<Response> {
    let out: Vec<_> = AUTH_METHODS
        .list(&state)
        .await?
        .into_iter()
        .filter(|m| MethodType::parse(&m.value.r#type) == Some(MethodType::Oidc))
        .map(|m| {
            serde_json::json!({"Name": m.value.name, "Type": m.value.r#type,
                "DisplayName": m.value.display_name})
        })
        .collect();
    Ok(Json(out).into_response())
}

#[cfg(test)]
mod tests {
    use super::redirect_allowed;

    #[test]
    fn loopback_redirects_match_on_any_port_others_exactly() {
        let allowed = vec![
            "http://localhost:8550/oidc/callback".to_string(),
            "https://tribune.example/ui/oidc/callback".to_string(),
        ];
        assert!(redirect_allowed(
            "http://localhost:41234/oidc/callback",
            &allowed
        ));
        assert!(!redirect_allowed("http://localhost:41234/other", &allowed));
        assert!(!redirect_allowed(
            "http://127.0.0.1:8550/oidc/callback",
            &allowed
        ));
        assert!(redirect_allowed(
            "https://tribune.example/ui/oidc/callback",
            &allowed
        ));
        assert!(!redirect_allowed(
            "https://tribune.example/ui/oidc/callback?x=1",
            &allowed
        ));
        assert!(!redirect_allowed(
            "https://evil.example/ui/oidc/callback",
            &allowed
        ));
        assert!(!redirect_allowed(
            "http://localhost.evil.example:8550/oidc/callback",
            &allowed
        ));
    }
}
