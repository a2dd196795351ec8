//! `?filter=` on the list endpoints Consul filters: the fields of each listed item
//! (named and typed as Consul's structs name them, so an expression written for
//! Consul means the same here) and the one function the handlers call.
//!
//! | endpoint | item filtered |
//! |---|---|
//! | `/v1/connect/intentions` | `Intention` |
//! | `/v1/agent/services` | `AgentService` |
//! | `/v1/catalog/services` | `ServiceNode` (then collapsed to name -> tags) |
//! | `/v1/catalog/service/<name>` | `ServiceNode` |
//! | `/v1/catalog/nodes` | `Node` |
//! | `/v1/health/service/<name>`, `/v1/health/connect/<name>` | `CheckServiceNode` |
//! | `/v1/config/service-defaults` | `ServiceConfigEntry` |
//! | `/v1/acl/tokens`, `/v1/acl/policies`, `/v1/acl/roles` | the list stubs (Consul itself ignores `filter` there) |
//!
//! A token's `SecretID` is not a selector: a filter must not become a way to guess
//! secrets one character at a time.
//!
//! A filter is anyone's input (anonymous callers' too, before any ACL check can say
//! no), so compiling one is bounded ([`tribune_model::filter`]: length, count and
//! size of regexes), shared (one [`RegexCache`] for the process: a pattern is
//! compiled once) and kept off the async workers: at most [`COMPILERS`] compile at
//! once, on the blocking pool, and other requests are served meanwhile.

use crate::{query_get, ApiError, ApiResult};
use axum::http::StatusCode;
use std::sync::LazyLock;
use tokio::sync::Semaphore;
use tribune_model::filter::{compile_with, Field, Filter, RegexCache, Type, REGEX_SIZE_LIMIT};

/// Filters compiled at once (the rest wait their turn).
pub(crate) const COMPILERS: usize = 2;
/// Distinct `matches` patterns the process keeps compiled.
const CACHED_PATTERNS: usize = 64;

static REGEXES: LazyLock<RegexCache> =
    LazyLock::new(|| RegexCache::new(REGEX_SIZE_LIMIT, CACHED_PATTERNS));
static COMPILING: Semaphore = Semaphore::const_new(COMPILERS);

const WEIGHTS: &[Field] = &[
    Field::new("Passing", Type::Int),
    Field::new("Warning", Type::Int),
];
const CONNECT: &[Field] = &[Field::new("Native", Type::Bool)];
const UPSTREAM: &[Field] = &[
    Field::new("DestinationType", Type::String),
    Field::new("DestinationNamespace", Type::String),
    Field::new("DestinationName", Type::String),
    Field::new("Datacenter", Type::String),
    Field::new("LocalBindAddress", Type::String),
    Field::new("LocalBindPort", Type::Int),
];
const PROXY: &[Field] = &[
    Field::new("DestinationServiceName", Type::String),
    Field::new("DestinationServiceID", Type::String),
    Field::new("LocalServiceAddress", Type::String),
    Field::new("LocalServicePort", Type::Int),
    Field::new("Upstreams", Type::StructList(UPSTREAM)),
];

/// Consul's `structs.Intention` (what `/v1/connect/intentions` lists).
pub(crate) const INTENTION: &[Field] = &[
    Field::new("ID", Type::String),
    Field::new("Description", Type::String),
    Field::new("SourcePeer", Type::String),
    Field::new("SourceNS", Type::String),
    Field::new("SourceName", Type::String),
    Field::new("DestinationNS", Type::String),
    Field::new("DestinationName", Type::String),
    Field::new("SourceType", Type::String),
    Field::new("Action", Type::String),
    Field::new("Precedence", Type::Int),
    Field::new("Meta", Type::StringMap),
];

/// Consul's `api.AgentService` (the values of `/v1/agent/services`).
pub(crate) const AGENT_SERVICE: &[Field] = &[
    Field::new("Kind", Type::String),
    Field::new("ID", Type::String),
    Field::new("Service", Type::String),
    Field::new("Tags", Type::StringList),
    Field::new("Meta", Type::StringMap),
    Field::new("Port", Type::Int),
    Field::new("Address", Type::String),
    Field::new("Weights", Type::Struct(WEIGHTS)),
    Field::new("EnableTagOverride", Type::Bool),
    Field::new("Proxy", Type::Struct(PROXY)),
    Field::new("Connect", Type::Struct(CONNECT)),
];

/// Consul's `structs.ServiceNode` (what `/v1/catalog/services` filters before it
/// collapses the nodes into service name -> tags).
pub(crate) const SERVICE_NODE: &[Field] = &[
    Field::new("ID", Type::String),
    Field::new("Node", Type::String),
    Field::new("Address", Type::String),
    Field::new("Datacenter", Type::String),
    Field::new("NodeMeta", Type::StringMap),
    Field::new("ServiceKind", Type::String),
    Field::new("ServiceID", Type::String),
    Field::new("ServiceName", Type::String),
    Field::new("ServiceTags", Type::StringList),
    Field::new("ServiceAddress", Type::String),
    Field::new("ServiceMeta", Type::StringMap),
    Field::new("ServicePort", Type::Int),
    Field::new("ServiceWeights", Type::Struct(WEIGHTS)),
    Field::new("ServiceEnableTagOverride", Type::Bool),
    Field::new("ServiceProxy", Type::Struct(PROXY)),
    Field::new("ServiceConnect", Type::Struct(CONNECT)),
];

/// Consul's `structs.Node` (what `/v1/catalog/nodes` lists).
pub(crate) const NODE: &[Field] = &[
    Field::new("ID", Type::String),
    Field::new("Node", Type::String),
    Field::new("Address", Type::String),
    Field::new("Datacenter", Type::String),
    Field::new("TaggedAddresses", Type::StringMap),
    Field::new("Meta", Type::StringMap),
];

/// Consul's `structs.HealthCheck`.
const CHECK: &[Field] = &[
    Field::new("Node", Type::String),
    Field::new("CheckID", Type::String),
    Field::new("Name", Type::String),
    Field::new("Status", Type::String),
    Field::new("Notes", Type::String),
    Field::new("Output", Type::String),
    Field::new("ServiceID", Type::String),
    Field::new("ServiceName", Type::String),
    Field::new("ServiceTags", Type::StringList),
    Field::new("Type", Type::String),
];

/// Consul's `structs.CheckServiceNode` (what `/v1/health/service/<name>` lists).
pub(crate) const CHECK_SERVICE_NODE: &[Field] = &[
    Field::new("Node", Type::Struct(NODE)),
    Field::new("Service", Type::Struct(AGENT_SERVICE)),
    Field::new("Checks", Type::StructList(CHECK)),
];

/// Consul's `structs.ServiceConfigEntry`.
pub(crate) const SERVICE_DEFAULTS: &[Field] = &[
    Field::new("Kind", Type::String),
    Field::new("Name", Type::String),
    Field::new("Protocol", Type::String),
    Field::new("Mode", Type::String),
    Field::new("ExternalSNI", Type::String),
    Field::new("MaxInboundConnections", Type::Int),
    Field::new("LocalConnectTimeoutMs", Type::Int),
    Field::new("LocalRequestTimeoutMs", Type::Int),
    Field::new("Meta", Type::StringMap),
];

const LINK: &[Field] = &[
    Field::new("ID", Type::String),
    Field::new("Name", Type::String),
];

/// `ACLTokenListStub` without `SecretID`.
pub(crate) const ACL_TOKEN: &[Field] = &[
    Field::new("AccessorID", Type::String),
    Field::new("Description", Type::String),
    Field::new("Policies", Type::StructList(LINK)),
    Field::new("Roles", Type::StructList(LINK)),
    Field::new("Local", Type::Bool),
    Field::new("CreateTime", Type::String),
];

/// `ACLPolicyListStub`.
pub(crate) const ACL_POLICY: &[Field] = &[
    Field::new("ID", Type::String),
    Field::new("Name", Type::String),
    Field::new("Description", Type::String),
    Field::new("Datacenters", Type::StringList),
];

/// `ACLRole`.
pub(crate) const ACL_ROLE: &[Field] = &[
    Field::new("ID", Type::String),
    Field::new("Name", Type::String),
    Field::new("Description", Type::String),
    Field::new("Policies", Type::StructList(LINK)),
];

/// The request's `?filter=` compiled against `schema`; none when absent or empty.
/// A bad expression is Consul's HTTP 500 with bexpr's message.
pub(crate) async fn from_query(
    q: &[(String, String)],
    schema: &'static [Field],
) -> ApiResult<Option<Filter>> {
    let Some(expr) = query_get(q, "filter").filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let expr = expr.to_string();
    let busy = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent is shutting down".into(),
        )
    };
    let _permit = COMPILING.acquire().await.map_err(|_| busy())?;
    let compiled = tokio::task::spawn_blocking(move || compile_with(&expr, schema, &REGEXES))
        .await
        .map_err(|_| busy())?;
    compiled.map(Some).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to create boolean expression evaluator: {e}"),
        )
    })
}

/// Whether `item` passes the (optional) filter.
pub(crate) fn keeps(filter: &Option<Filter>, item: &serde_json::Value) -> bool {
    filter.as_ref().is_none_or(|f| f.matches(item))
}

/// [`keeps`] for a typed answer: its JSON form is made only when there is a filter.
pub(crate) fn keeps_typed<T: serde::Serialize>(
    filter: &Option<Filter>,
    item: &T,
) -> crate::ApiResult<bool> {
    match filter {
        None => Ok(true),
        Some(f) => Ok(f.matches(
            &serde_json::to_value(item).map_err(|e| crate::internal_error(e.to_string()))?,
        )),
    }
}
