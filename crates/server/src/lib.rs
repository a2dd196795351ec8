//! Tribune's control plane: the Consul-compatible HTTP API over the store.
//!
//! ```text
//!  PUT /v1/config ──▶ resolve token ──▶ decode+normalize+validate ──▶ ACL ──▶
//!      (tribune-model, one path)        400 with Consul's text       403
//!  ──▶ lock writes ──▶ cross-entry checks (providers exist, L7 needs HTTP) ──▶ store
//!                                                            apply (CAS) ──▶ watchers
//! ```
//!
//! Handlers are small; the rules live in `tribune-model` (validation), `tribune-authz`
//! (intention decisions) and [`acl`] (who may do what).

#![forbid(unsafe_code)]

pub mod acl;
mod acl_api;
mod acl_cache;
pub mod agent_config;
mod ca_api;
mod catalog;
mod compiled;
mod entries;
mod extract;
mod filters;
mod intentions_api;
mod jwt_svid;
pub mod listener;
mod metrics;
mod providers_api;
mod proxy_api;
pub mod snapshot;
mod staged;
mod state;
mod status;
pub mod tls;
mod ui;
mod ui_api;

use acl::{Authorizer, Denied, Policy, Rules, Token};
pub use agent_config::AgentConfig;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tribune_model::api::paths;
use tribune_store::{Store, StoreError};

/// Store tables.
pub(crate) const CONFIG_TABLE: &str = "config-entries";
pub(crate) const POLICY_TABLE: &str = "acl-policies";
pub(crate) const TOKEN_TABLE: &str = "acl-tokens";
pub(crate) const ACL_META_TABLE: &str = "acl-meta";
pub(crate) const ROLE_TABLE: &str = "acl-roles";
pub(crate) const AUTH_METHOD_TABLE: &str = "acl-auth-methods";
pub(crate) const BINDING_RULE_TABLE: &str = "acl-binding-rules";
pub(crate) const OIDC_STATE_TABLE: &str = "acl-oidc-states";
/// The tables an authorizer is resolved from: a write to any re-authorizes waiters.
pub(crate) const ACL_TABLES: [&str; 3] = [TOKEN_TABLE, POLICY_TABLE, ROLE_TABLE];

/// Shared state of the HTTP API.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: AgentConfig,
    /// Serializes read-check-write sequences (cross-entry checks must see the state
    /// they write over).
    write_lock: tokio::sync::Mutex<()>,
    /// Decoded config entries and the config index they were read at.
    #[allow(clippy::type_complexity)]
    entries_cache: std::sync::Mutex<
        Option<(
            u64,
            Arc<Vec<(tribune_model::ConfigEntry, tribune_store::Record)>>,
        )>,
    >,
    /// Serializes reloads of `entries_cache` (one table read per change, not one per
    /// waiter).
    reload_lock: tokio::sync::Mutex<()>,
    /// Set once at shutdown: blocking queries answer at once instead of holding their
    /// connections (and so the agent's exit) for up to ten minutes.
    shutting_down: tokio::sync::watch::Sender<bool>,
    /// The address this agent's HTTP API is reached at (set once bound).
    advertise: std::sync::OnceLock<String>,
    /// Key runtimes of the providers explain verifies tokens with: the sidecar's own
    /// (remote fetch, cache, retries, TLS, refetch on unknown `kid`).
    pub(crate) keys: tribune_jwks::Registry,
    /// Key runtimes of the auth methods logins are verified with (the same
    /// machinery: fetch, cache, retries, TLS, refetch on an unknown `kid`).
    pub(crate) login_keys: tribune_jwks::Registry,
    /// Compiled policies by (destination, config index).
    pub(crate) policies: compiled::CompiledPolicies,
    /// Tokens by SecretID and their resolved authorizers, per ACL index.
    pub(crate) authorizers: acl_cache::AclCache,
    /// Wake-ups per table for blocking queries.
    pub(crate) tables: state::tables::TableWatch,
    /// Every watched service's policy document, rebuilt once per change.
    pub(crate) documents: state::documents::Documents,
    /// The agent's numbers (`/v1/agent/metrics`).
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// The registrations, decoded once per change, with each service's index.
    pub(crate) catalog: state::catalog::Catalog,
}

pub type Shared = Arc<AppState>;

/// The build's revision (`TRIBUNE_REVISION` at build time, the git commit of a
/// release build, or `dev`).
pub const REVISION: &str = env!("TRIBUNE_REVISION");

impl AppState {
    /// Builds the state and applies start-up ACL settings (initial management token).
    pub async fn new(store: Arc<dyn Store>, config: AgentConfig) -> Result<Shared, String> {
        let metrics = Arc::new(metrics::Metrics::default());
        let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, metrics.clone()));
        let state = Arc::new(AppState {
            metrics,
            store,
            config,
            write_lock: tokio::sync::Mutex::new(()),
            entries_cache: std::sync::Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
            shutting_down: tokio::sync::watch::Sender::new(false),
            advertise: std::sync::OnceLock::new(),
            keys: tribune_jwks::Registry::default(),
            login_keys: tribune_jwks::Registry::default(),
            policies: compiled::CompiledPolicies::default(),
            authorizers: acl_cache::AclCache::default(),
            tables: state::tables::TableWatch::default(),
            documents: state::documents::Documents::default(),
            catalog: state::catalog::Catalog::default(),
        });
        state.tables.pin(&ACL_TABLES);
        state::tables::TableWatch::spawn(
            Arc::downgrade(&state),
            state.store.subscribe(),
            |s: &AppState| (&s.tables, s.store.as_ref()),
        );
        state::documents::Documents::spawn(Arc::downgrade(&state));
        if state.config.acl.enabled {
            acl_api::spawn_reaper(Arc::downgrade(&state));
        }
        if let Some(secret) = state.config.acl.initial_management.clone() {
            acl_api::ensure_management_token(&state, &secret)
                .await
                .map_err(|e| e.1)?;
        }
        Ok(state)
    }
}

impl AppState {
    /// Records the address the HTTP API is bound to (for `/v1/status/*`).
    pub fn set_advertise(&self, addr: std::net::SocketAddr) {
        let _ = self.advertise.set(addr.to_string());
    }

    pub(crate) fn advertise(&self) -> String {
        self.advertise.get().cloned().unwrap_or_else(|| {
            let port = self
                .config
                .http_port
                .or(self.config.https_port)
                .unwrap_or(0);
            format!("{}:{port}", self.config.client_addr)
        })
    }

    /// Whether the HTTP API listens on a loopback address only (then the `Host` of
    /// each request is checked: [`tribune_model::host`]).
    pub(crate) fn listens_on_loopback(&self) -> bool {
        let ip = match self.advertise.get() {
            Some(a) => a.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()),
            None => self.config.client_addr.parse::<std::net::IpAddr>().ok(),
        };
        match ip {
            Some(ip) => ip.is_loopback(),
            None => self.config.client_addr.eq_ignore_ascii_case("localhost"),
        }
    }

    /// Starts shutting down: every pending and future blocking query answers now.
    pub fn shut_down(&self) {
        self.shutting_down.send_replace(true);
    }
}

/// An API error: status code and plain-text body, as Consul answers.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
}

impl From<Denied> for ApiError {
    /// A request refused for a missing permission: logged at info with the accessor
    /// (Consul's text names it; never the secret).
    fn from(d: Denied) -> Self {
        tracing::info!(target: "tribune::acl", reason = %d.0, "request denied");
        ApiError(StatusCode::FORBIDDEN, d.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        let status = match e.kind {
            tribune_store::ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            tribune_store::ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// Read-check-write attempts before a writer gives up on concurrent changes made
/// through other agents (each attempt re-reads what its check needs).
pub(crate) const WRITE_ATTEMPTS: u32 = 16;

/// A short random pause before retrying a write whose check went stale, growing with
/// the attempt (1-2 ms at first, at most 64 ms), so racing agents spread out.
pub(crate) async fn contention_backoff(attempt: u32) {
    let cap = 1u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(500..=cap * 1000))).await;
}

/// Every attempt of a guarded write lost a race.
pub(crate) fn contended(table: &str) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many concurrent writes to {table}; retry"),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            [("content-type", "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn internal_error(msg: String) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// The HTTP API.
pub fn router(state: Shared) -> Router {
    let ui = if state.config.ui {
        Router::new()
            .route("/", get(ui::to_ui))
            .route("/ui", get(ui::to_ui))
            .route("/ui/", get(ui::index))
            .route("/ui/{*path}", get(ui::asset))
    } else {
        Router::new()
    };
    ui.route(paths::CONFIG, put(entries::put_config))
        .route("/v1/config/", get(entries::list_all))
        .route(paths::CONFIG_KIND, get(entries::list_kind))
        .route(
            paths::CONFIG_ENTRY,
            get(entries::get_config).delete(entries::delete_config),
        )
        .route(paths::INTENTIONS, get(intentions_api::list))
        .route(
            paths::INTENTIONS_EXACT,
            get(intentions_api::get_exact)
                .put(intentions_api::put_exact)
                .delete(intentions_api::delete_exact),
        )
        .route(paths::INTENTIONS_CHECK, get(intentions_api::check))
        .route(
            paths::INTENTIONS_EXPLAIN,
            axum::routing::post(intentions_api::explain),
        )
        .route(
            paths::INTENTIONS_MATCH,
            get(intentions_api::match_intentions),
        )
        .route(paths::PROXY_SNAPSHOT, get(proxy_api::snapshot))
        .route(paths::CA_ROOTS, get(ca_api::roots))
        .route(paths::CA_JWKS, get(jwt_svid::jwks))
        .route(paths::OIDC_DISCOVERY, get(jwt_svid::discovery))
        .route(paths::JWT_SVID, post(jwt_svid::mint))
        .route(paths::CA_ROOTS_ROTATE, put(ca_api::rotate))
        .route(paths::LEAF, get(ca_api::leaf))
        .route(paths::AGENT_SERVICE_REGISTER, put(catalog::register))
        .route(paths::AGENT_SERVICE_DEREGISTER, put(catalog::deregister))
        .route(paths::AGENT_SERVICE, get(catalog::service))
        .route("/v1/agent/services", get(catalog::services))
        .route("/v1/catalog/services", get(catalog::catalog_services))
        .route(
            "/v1/catalog/service/{service}",
            get(catalog::catalog_service),
        )
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/health/service/{service}", get(catalog::health_service))
        .route(paths::HEALTH_CONNECT, get(catalog::health_connect))
        .route(paths::ACL_BOOTSTRAP, put(acl_api::bootstrap))
        .route(paths::ACL_POLICY, put(acl_api::create_policy))
        .route(
            paths::ACL_POLICY_ID,
            get(acl_api::read_policy)
                .put(acl_api::update_policy)
                .delete(acl_api::delete_policy),
        )
        .route(paths::ACL_POLICY_NAME, get(acl_api::read_policy_by_name))
        .route(paths::ACL_POLICIES, get(acl_api::list_policies))
        .route(paths::ACL_TOKEN, put(acl_api::create_token))
        .route(paths::ACL_TOKEN_SELF, get(acl_api::token_self))
        .route(
            paths::ACL_TOKEN_ID,
            get(acl_api::read_token)
                .put(acl_api::update_token)
                .delete(acl_api::delete_token),
        )
        .route(paths::ACL_TOKEN_CLONE, put(acl_api::clone_token))
        .route(paths::ACL_TOKENS, get(acl_api::list_tokens))
        .route(paths::ACL_ROLE, put(acl_api::create_role))
        .route(
            paths::ACL_ROLE_ID,
            get(acl_api::read_role)
                .put(acl_api::update_role)
                .delete(acl_api::delete_role),
        )
        .route(paths::ACL_ROLE_NAME, get(acl_api::read_role_by_name))
        .route(paths::ACL_ROLES, get(acl_api::list_roles))
        .route(paths::ACL_AUTH_METHOD, put(acl_api::auth_methods::create))
        .route(
            paths::ACL_AUTH_METHOD_NAME,
            get(acl_api::auth_methods::read)
                .put(acl_api::auth_methods::update)
                .delete(acl_api::auth_methods::delete),
        )
        .route(paths::ACL_AUTH_METHODS, get(acl_api::auth_methods::list))
        .route(paths::ACL_BINDING_RULE, put(acl_api::binding_rules::create))
        .route(
            paths::ACL_BINDING_RULE_ID,
            get(acl_api::binding_rules::read)
                .put(acl_api::binding_rules::update)
                .delete(acl_api::binding_rules::delete),
        )
        .route(paths::ACL_BINDING_RULES, get(acl_api::binding_rules::list))
        .route(paths::ACL_LOGIN, post(acl_api::login::login))
        .route(paths::ACL_LOGOUT, post(acl_api::login::logout))
        .route(paths::ACL_OIDC_AUTH_URL, post(acl_api::oidc::auth_url))
        .route(paths::ACL_OIDC_CALLBACK, post(acl_api::oidc::callback))
        .route(
            "/v1/internal/ui/oidc-auth-methods",
            get(acl_api::oidc::ui_methods),
        )
        .route(paths::STAGED, get(staged::list))
        .route(paths::STAGED_ENTRY, get(staged::show))
        .route(paths::STAGED_PROMOTE, put(staged::promote))
        .route(paths::SHADOW_REPORT, put(staged::report))
        .route(
            paths::JWT_PROVIDER_CHECK,
            get(providers_api::check).post(providers_api::check),
        )
        .route(paths::SIDECAR_REPORT, put(ui_api::report))
        .route("/v1/tribune/sidecars", get(ui_api::sidecars))
        .route(
            "/v1/tribune/config/validate",
            axum::routing::post(ui_api::validate),
        )
        .route(
            paths::SNAPSHOT,
            get(snapshot::save)
                .put(snapshot::restore)
                .layer(axum::extract::DefaultBodyLimit::max(
                    snapshot::MAX_ARCHIVE_BYTES,
                )),
        )
        .route("/v1/agent/self", get(status::agent_self))
        .route("/v1/agent/metrics", get(status::agent_metrics))
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            common_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard_host,
        ))
        .with_state(state)
}

/// The DNS-rebinding defence ([`tribune_model::host`]): while the API listens on
/// loopback, a `Host` that names something else gets 421. With debug logging on, each
/// request is logged with its method, path (never the query, which may hold a token),
/// status and time.
async fn guard_host(
    axum::extract::State(state): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.listens_on_loopback() {
        let host = req.headers().get(axum::http::header::HOST);
        let host = host.map(|h| h.as_bytes());
        if let Some(body) = tribune_model::host::refused(host, &state.config.allowed_hosts) {
            return (StatusCode::MISDIRECTED_REQUEST, body).into_response();
        }
    }
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let method = req.method().clone();
    if !tracing::enabled!(target: "tribune::http", tracing::Level::DEBUG) {
        let res = next.run(req).await;
        let route = route.as_ref().map_or("unmatched", |r| r.as_str());
        state.metrics.request(route, &method, res.status().as_u16());
        return res;
    }
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let route_name = route.as_ref().map_or("unmatched", |r| r.as_str());
    state
        .metrics
        .request(route_name, &method, res.status().as_u16());
    tracing::debug!(
        target: "tribune::http",
        %method,
        path,
        status = res.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    res
}

async fn common_headers(
    axum::extract::State(state): axum::extract::State<Shared>,
    mut res: Response,
) -> Response {
    let h = res.headers_mut();
    let policy = if state.config.acl.default_allow() {
        "allow"
    } else {
        "deny"
    };
    h.insert(
        "x-consul-default-acl-policy",
        HeaderValue::from_static(policy),
    );
    h.insert("x-consul-knownleader", HeaderValue::from_static("true"));
    h.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
    res
}

/// Query-string pairs, percent-decoded (`+` is a space), repeated keys kept.
pub(crate) fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A JSON request body; a body that is not JSON gets Consul's decoding-error prefix.
pub(crate) fn json_body(body: &[u8]) -> ApiResult<serde_json::Value> {
    tribune_model::decode::parse_json(body)
        .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))
}

pub(crate) fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Resolves the request's token into an authorizer.
pub(crate) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> ApiResult<Authorizer> {
    if !state.config.acl.enabled {
        return Ok(Authorizer::allow_all());
    }
    let secret = token_secret(headers, query);
    let default_allow = state.config.acl.default_allow();
    let Some(secret) = secret else {
        return Ok(Authorizer::new(
            Rules::default(),
            false,
            default_allow,
            None,
        ));
    };
    // Resolved once per change of the ACL tables (issue #40: every call read and
    // decoded every token, ~1 µs per token per request).
    let acl = acl_indexes(state).await?;
    let acl_index = acl.max();
    if let Some(hit) = state.authorizers.get(acl_index, &secret) {
        return unexpired(hit);
    }
    let tokens = tokens_at(state, acl.tokens).await?;
    // A map lookup, not a scan: its hash is keyed at random per process, so how long
    // a wrong guess takes says nothing about a real secret.
    let token = tokens
        .get(&secret)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    let resolved = resolve(state, &token, default_allow).await?;
    state.authorizers.put(acl_index, secret, resolved.clone());
    unexpired(resolved)
}

/// An expired token is no token (Consul answers "ACL not found"), from the second
/// its `ExpirationTime` passes, whether or not the reaper has removed it yet.
fn unexpired(authorizer: Authorizer) -> ApiResult<Authorizer> {
    if authorizer.expired(ca_api::now()) {
        return Err(ApiError(StatusCode::FORBIDDEN, "ACL not found".into()));
    }
    Ok(authorizer)
}

/// A token's `ExpirationTime` in seconds since the Unix epoch (`None`: it does not
/// expire). A time that does not parse counts as passed: fail closed.
pub(crate) fn expiry_of(token: &Token) -> Option<i64> {
    token.expiration_time.as_deref().map(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|d| d.unix_timestamp())
            .unwrap_or(i64::MIN)
    })
}

/// Whether `token` has expired now.
pub(crate) fn is_expired(token: &Token) -> bool {
    expiry_of(token).is_some_and(|at| at <= ca_api::now())
}

/// Every token by SecretID as of the token table's index `index` (kept until it
/// moves; a creation made here is added in place).
pub(crate) async fn tokens_at(
    state: &AppState,
    index: u64,
) -> ApiResult<Arc<std::collections::HashMap<String, Token>>> {
    if let Some(t) = state.authorizers.tokens(index) {
        return Ok(t);
    }
    let by_secret = state::acl::TOKENS
        .list(state)
        .await?
        .into_iter()
        .map(|t| (t.value.secret_id.clone(), t.value))
        .collect();
    // Read after `index`: it may hold later tokens, never fewer.
    Ok(state.authorizers.set_tokens(index, by_secret))
}

/// The indexes of the ACL tables (read at once: one round trip on etcd).
pub(crate) async fn acl_indexes(state: &AppState) -> ApiResult<acl_cache::AclIndexes> {
    let at = state.store.table_indexes(&ACL_TABLES).await?;
    let [tokens, policies, roles] = at[..] else {
        return Err(internal_error(format!(
            "the store answered {} indexes for 3 tables",
            at.len()
        )));
    };
    Ok(acl_cache::AclIndexes {
        tokens,
        policies,
        roles,
    })
}

/// [`authorize`] for a blocking query's re-arm (`index` given): the authorizer kept
/// for the newest ACL state this agent knows answers without reading the store (on
/// etcd, a read per re-arm: 10 000 sidecars re-arming after a change were a read
/// storm). A change after it is seen by the wait, which re-checks the holder.
pub(crate) async fn authorize_blocking(
    state: &AppState,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> ApiResult<Authorizer> {
    if blocking_index(query).is_some() && state.config.acl.enabled {
        if let Some(secret) = token_secret(headers, query) {
            let known = state.tables.known(&ACL_TABLES);
            if let Some(hit) = state.authorizers.current(known, &secret) {
                return unexpired(hit);
            }
        }
    }
    authorize(state, headers, query).await
}

/// The authorizer of a token: its policies and its roles' policies, merged.
async fn resolve(state: &AppState, token: &Token, default_allow: bool) -> ApiResult<Authorizer> {
    let mut rules = Rules::default();
    let mut management = false;
    // The token's own policies, then its roles' (a deleted role or policy is skipped,
    // as Consul prunes dangling links).
    let mut links = token.policies.clone();
    rules.merge(&Rules::of_identities(token));
    for role in &token.roles {
        if let Some(r) = state::acl::ROLES.get(state, &role.id).await? {
            links.extend(r.value.policies);
        }
    }
    for link in &links {
        if link.id == acl::MANAGEMENT_POLICY_ID {
            management = true;
            continue;
        }
        if let Some(p) = load_policy(state, &link.id).await? {
            // Stored rules were validated on write.
            if let Ok(r) = Rules::parse(&p.rules) {
                rules.merge(&r);
            }
        }
    }
    Ok(Authorizer::new(
        rules,
        management,
        default_allow,
        Some(token.accessor_id.clone()),
    )
    .expiring(expiry_of(token)))
}

pub(crate) fn token_secret(headers: &HeaderMap, query: &[(String, String)]) -> Option<String> {
    if let Some(v) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()) {
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    query_get(query, "token")
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The token whose SecretID is `secret`, from the tokens kept by SecretID (the same
/// map [`authorize`] reads).
pub(crate) async fn find_token_by_secret(
    state: &AppState,
    secret: &str,
) -> ApiResult<Option<Token>> {
    let index = acl_indexes(state).await?.tokens;
    Ok(tokens_at(state, index)
        .await?
        .get(secret)
        .filter(|t| !is_expired(t))
        .cloned())
}

/// Compares secrets without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn load_policy(state: &AppState, id: &str) -> ApiResult<Option<Policy>> {
    Ok(state::acl::POLICIES.get(state, id).await?.map(|p| p.value))
}

/// Longest blocking wait Consul allows.
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// Blocking query (`?index=N&wait=D`): returns once `table`'s index differs from N,
/// or when the wait (default 5m, max 10m, plus up to 1/16 jitter) runs out.
pub(crate) async fn block_on_table(
    state: &AppState,
    table: &str,
    query: &[(String, String)],
) -> ApiResult<u64> {
    block_on_tables(state, &[table], query).await
}

/// The highest index of `tables` (at least 1).
pub(crate) async fn tables_index(state: &AppState, tables: &[&str]) -> ApiResult<u64> {
    let at = state.store.table_indexes(tables).await?;
    Ok(at.into_iter().max().unwrap_or(0).max(1))
}

/// [`block_on_table`] over several tables: wakes when any of them changes; the index
/// is the highest of theirs.
pub(crate) async fn block_on_tables(
    state: &AppState,
    tables: &[&str],
    query: &[(String, String)],
) -> ApiResult<u64> {
    block_on_tables_as(state, tables, query, None).await
}

/// Who asked a blocking query, and what they must still be allowed to do for its
/// answer: a token revoked (or a policy narrowed) while the query waits ends the wait
/// with the refusal at once, instead of answering the revoked holder when the wait
/// ends. A sidecar's watches use it: revocation reaches them in one round trip.
pub(crate) struct Holder<'a> {
    pub headers: &'a HeaderMap,
    pub allowed: &'a (dyn Fn(&Authorizer) -> Result<(), Denied> + Sync),
}

/// [`block_on_tables`], re-checking `holder`'s permission whenever the ACL tables
/// change during the wait. Only a write to one of `tables` (or to the ACL tables,
/// with a holder) wakes it ([`state::tables`]).
pub(crate) async fn block_on_tables_as(
    state: &AppState,
    tables: &[&str],
    query: &[(String, String)],
    holder: Option<Holder<'_>>,
) -> ApiResult<u64> {
    // Indexes are answered as at least 1 (Consul never answers 0), so an empty table
    // is at 1 for the comparison too: a query at index 1 on it blocks instead of
    // returning at once, over and over.
    let current = tables_index(state, tables).await?;
    let Some(mut wait) = Blocking::start(state, query, current, holder).await? else {
        return Ok(current);
    };
    let mut rx = state.tables.subscribe(tables);
    loop {
        let seen = *rx.borrow_and_update();
        if seen > wait.min {
            return Ok(seen);
        }
        let moved = async {
            if rx.changed().await.is_err() {
                // The agent state is going away: wait out the deadline.
                std::future::pending::<()>().await;
            }
        };
        if !wait.until(state, query, moved).await? {
            return tables_index(state, tables).await;
        }
    }
}

/// The `index` a blocking query holds: a number other than 0 (anything else answers
/// at once).
pub(crate) fn blocking_index(query: &[(String, String)]) -> Option<u64> {
    query_get(query, "index")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|i| *i != 0)
}

/// A blocking query that waits: its index, deadline, and who to re-authorize.
pub(crate) struct Blocking<'a> {
    /// The `index` the caller holds.
    pub min: u64,
    deadline: tokio::time::Instant,
    stop: tokio::sync::watch::Receiver<bool>,
    /// The holder, the ACL tables' index, and the index it was last authorized at.
    recheck: Option<(Holder<'a>, tokio::sync::watch::Receiver<u64>, u64)>,
    /// Counted in the agent's metrics while it waits.
    _held: metrics::Held,
}

impl<'a> Blocking<'a> {
    /// `None` when the query answers at once: no `index`, `index=0`, or `current`
    /// (what it reads, now) already differs from it. Else the wait: `wait` (default
    /// 5m, max 10m) plus up to 1/16 jitter, as Consul.
    pub(crate) async fn start(
        state: &AppState,
        query: &[(String, String)],
        current: u64,
        holder: Option<Holder<'a>>,
    ) -> ApiResult<Option<Blocking<'a>>> {
        let Some(min) = blocking_index(query).filter(|min| *min == current) else {
            return Ok(None);
        };
        let wait = match query_get(query, "wait") {
            Some(w) => {
                let ns = tribune_model::go::parse_duration(w)
                    .map_err(|e| ApiError::bad_request(format!("Invalid wait time: {e}")))?;
                Duration::from_nanos(ns.max(0) as u64).min(MAX_WAIT)
            }
            None => DEFAULT_WAIT,
        };
        let jitter = Duration::from_nanos(fastrand::u64(0..=(wait.as_nanos() as u64 / 16).max(1)));
        let recheck = match holder.filter(|_| state.config.acl.enabled) {
            Some(h) => {
                // Re-checked once the ACL tables move past what this agent knows now
                // (kept current after every write: no store read per query).
                let rx = state.tables.subscribe(&ACL_TABLES);
                let at = *rx.borrow();
                Some((h, rx, at))
            }
            None => None,
        };
        Ok(Some(Blocking {
            min,
            deadline: tokio::time::Instant::now() + wait + jitter,
            stop: state.shutting_down.subscribe(),
            recheck,
            _held: state.metrics.hold(),
        }))
    }

    /// Waits for `moved` (what the query reads may have changed): `true`. `false` when
    /// the wait ran out or the agent is shutting down. A change to the ACL tables on
    /// the way re-authorizes the holder: refused, the query ends with the refusal.
    pub(crate) async fn until<T>(
        &mut self,
        state: &AppState,
        query: &[(String, String)],
        moved: impl std::future::Future<Output = T>,
    ) -> ApiResult<bool> {
        enum Woke {
            Moved,
            Stop,
            Deadline,
            Acl(u64),
        }
        tokio::pin!(moved);
        loop {
            if *self.stop.borrow_and_update() {
                return Ok(false);
            }
            let woke = {
                let Blocking {
                    stop,
                    deadline,
                    recheck,
                    ..
                } = &mut *self;
                let acl = async {
                    let Some((_, rx, at)) = recheck else {
                        return std::future::pending().await;
                    };
                    loop {
                        if rx.changed().await.is_err() {
                            return std::future::pending().await;
                        }
                        let now = *rx.borrow_and_update();
                        if now > *at {
                            return now;
                        }
                    }
                };
                tokio::select! {
                    _ = &mut moved => Woke::Moved,
                    _ = stop.changed() => Woke::Stop,
                    _ = tokio::time::sleep_until(*deadline) => Woke::Deadline,
                    at = acl => Woke::Acl(at),
                }
            };
            match woke {
                Woke::Moved => return Ok(true),
                Woke::Deadline => return Ok(false),
                Woke::Stop => {}
                Woke::Acl(now) => {
                    if let Some((h, _, at)) = &mut self.recheck {
                        *at = now;
                        (h.allowed)(&authorize_blocking(state, h.headers, query).await?)?;
                    }
                }
            }
        }
    }
}

pub(crate) fn index_header(index: u64) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-consul-index"),
        HeaderValue::from(index),
    )
}

/// Current UTC time as RFC 3339, to the second (for token `CreateTime`).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn create_time_is_rfc3339_utc_to_the_second() {
        let t = super::now_rfc3339();
        // 2026-12-07T06:53:40Z
        let shape: String = t
            .chars()
            .map(|c| if c.is_ascii_digit() { 'd' } else { c })
            .collect();
        assert_eq!(shape, "dddd-dd-ddTdd:dd:ddZ", "{t}");
    }

    #[test]
    fn query_strings_decode_like_consuls() {
        let q = parse_query(Some(
            "tag=a&tag=b+c&filter=Meta.env%20%3D%3D%20qa&passing&bad=%zz",
        ));
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("tag", "a"),
                ("tag", "b c"),
                ("filter", "Meta.env == qa"),
                ("passing", ""),
                ("bad", "%zz"),
            ]
        );
        assert!(parse_query(None).is_empty());
    }
}
