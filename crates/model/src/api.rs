//! The shapes that cross the wire between the agent and its clients (the sidecar, the
//! CLI), each defined once: the agent serializes these types and the clients decode
//! the same types, so a renamed field fails to compile (or to decode, with the field's
//! name) instead of reading as empty. Paths are constants here too.
//!
//! Field names are Consul's (`api.AgentService`, `api.CARootList`, `api.LeafCert`);
//! what Tribune adds is marked.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// The API's paths: the agent routes these patterns (axum's `{name}` captures) and
/// clients request them through the functions, which fill the patterns in.
pub mod paths {
    /// `PUT`: register a service (and its sidecar).
    pub const AGENT_SERVICE_REGISTER: &str = "/v1/agent/service/register";
    /// `GET`: one registration ([`super::AgentService`]).
    pub const AGENT_SERVICE: &str = "/v1/agent/service/{id}";
    /// `PUT`: remove a registration and its sidecar.
    pub const AGENT_SERVICE_DEREGISTER: &str = "/v1/agent/service/deregister/{id}";
    /// `GET`: the trusted CA roots ([`super::CaRoots`]).
    pub const CA_ROOTS: &str = "/v1/connect/ca/roots";
    /// `PUT`: rotate the CA's active root ([`super::Rotated`]). Tribune's.
    pub const CA_ROOTS_ROTATE: &str = "/v1/connect/ca/rotate";
    /// `GET`: a leaf certificate ([`super::LeafCert`]).
    pub const LEAF: &str = "/v1/agent/connect/ca/leaf/{service}";
    /// `POST`: a JWT-SVID ([`super::JwtSvidRequest`] -> [`super::JwtSvid`]). Tribune's.
    pub const JWT_SVID: &str = "/v1/agent/connect/ca/jwt-svid";
    /// `GET`: the trust domain's JWT-SVID keys (a JWKS). Tribune's.
    pub const CA_JWKS: &str = "/v1/connect/ca/jwks";
    /// `GET`: OIDC discovery for JWT-SVIDs (`issuer`, `jwks_uri`).
    pub const OIDC_DISCOVERY: &str = "/.well-known/openid-configuration";
    /// `GET`: the sidecars in front of a service ([`super::ServiceEntry`] list).
    pub const HEALTH_CONNECT: &str = "/v1/health/connect/{service}";
    /// `GET`: the policy document of a service's sidecars. Tribune's.
    pub const PROXY_SNAPSHOT: &str = "/v1/tribune/proxy-snapshot/{service}";
    /// `PUT`: a sidecar's status ([`crate::status::SidecarReport`]). Tribune's.
    pub const SIDECAR_REPORT: &str = "/v1/tribune/sidecar-report";
    /// `PUT`: a sidecar's shadow counters ([`super::ShadowReport`] list). Tribune's.
    pub const SHADOW_REPORT: &str = "/v1/tribune/shadow-report";

    /// `PUT`: write a config entry (`?cas=`, `?stage=`, `?check=`).
    pub const CONFIG: &str = "/v1/config";
    /// `GET`: the entries of one kind.
    pub const CONFIG_KIND: &str = "/v1/config/{kind}";
    /// `GET`, `DELETE`: one config entry.
    pub const CONFIG_ENTRY: &str = "/v1/config/{kind}/{name}";
    /// `GET`: every intention (Consul's legacy view of service-intentions).
    pub const INTENTIONS: &str = "/v1/connect/intentions";
    /// `GET`, `PUT`, `DELETE`: one intention by `?source=&destination=`.
    pub const INTENTIONS_EXACT: &str = "/v1/connect/intentions/exact";
    /// `GET`: would `?source=` reach `?destination=` (L4)?
    pub const INTENTIONS_CHECK: &str = "/v1/connect/intentions/check";
    /// `POST`: why a request would be allowed or denied. Tribune's.
    pub const INTENTIONS_EXPLAIN: &str = "/v1/connect/intentions/explain";
    /// `GET`: the intentions matching `?by=&name=`.
    pub const INTENTIONS_MATCH: &str = "/v1/connect/intentions/match";
    /// `PUT`: the first management token.
    pub const ACL_BOOTSTRAP: &str = "/v1/acl/bootstrap";
    pub const ACL_POLICY: &str = "/v1/acl/policy";
    pub const ACL_POLICY_ID: &str = "/v1/acl/policy/{id}";
    pub const ACL_POLICY_NAME: &str = "/v1/acl/policy/name/{name}";
    pub const ACL_POLICIES: &str = "/v1/acl/policies";
    pub const ACL_TOKEN: &str = "/v1/acl/token";
    pub const ACL_TOKEN_SELF: &str = "/v1/acl/token/self";
    pub const ACL_TOKEN_ID: &str = "/v1/acl/token/{id}";
    pub const ACL_TOKEN_CLONE: &str = "/v1/acl/token/{id}/clone";
    pub const ACL_TOKENS: &str = "/v1/acl/tokens";
    pub const ACL_ROLE: &str = "/v1/acl/role";
    pub const ACL_ROLE_ID: &str = "/v1/acl/role/{id}";
    pub const ACL_ROLE_NAME: &str = "/v1/acl/role/name/{name}";
    pub const ACL_ROLES: &str = "/v1/acl/roles";
    pub const ACL_AUTH_METHOD: &str = "/v1/acl/auth-method";
    pub const ACL_AUTH_METHOD_NAME: &str = "/v1/acl/auth-method/{name}";
    pub const ACL_AUTH_METHODS: &str = "/v1/acl/auth-methods";
    pub const ACL_BINDING_RULE: &str = "/v1/acl/binding-rule";
    pub const ACL_BINDING_RULE_ID: &str = "/v1/acl/binding-rule/{id}";
    pub const ACL_BINDING_RULES: &str = "/v1/acl/binding-rules";
    /// `POST`: a token for a JWT ([`super::LoginBody`]).
    pub const ACL_LOGIN: &str = "/v1/acl/login";
    /// `POST`: delete the caller's login token.
    pub const ACL_LOGOUT: &str = "/v1/acl/logout";
    /// `POST`: start an OIDC sign-in ([`super::OidcAuthUrlBody`]).
    pub const ACL_OIDC_AUTH_URL: &str = "/v1/acl/oidc/auth-url";
    /// `POST`: finish it ([`super::OidcCallbackBody`]).
    pub const ACL_OIDC_CALLBACK: &str = "/v1/acl/oidc/callback";
    /// `GET`: staged candidates. Tribune's.
    pub const STAGED: &str = "/v1/tribune/staged";
    /// `GET`: one staged candidate with its evidence. Tribune's.
    pub const STAGED_ENTRY: &str = "/v1/tribune/staged/{kind}/{name}";
    /// `PUT`: make a staged candidate live. Tribune's.
    pub const STAGED_PROMOTE: &str = "/v1/tribune/staged/{kind}/{name}/promote";
    /// `GET`, `POST`: fetch a JWT provider's keys now. Tribune's.
    pub const JWT_PROVIDER_CHECK: &str = "/v1/tribune/jwt-provider/{name}/check";
    /// `GET`: save, `PUT`: restore a snapshot archive.
    pub const SNAPSHOT: &str = "/v1/snapshot";

    /// `pattern` with its `{...}` captures replaced by `values`, in order (each as
    /// given: the caller percent-encodes what needs it).
    pub fn fill(pattern: &str, values: &[&str]) -> String {
        let mut out = String::with_capacity(pattern.len() + 16);
        let mut rest = pattern;
        let mut values = values.iter();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            match values.next() {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[open..close]),
            }
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }

    /// The path of one ACL token, policy or role by ID (`kind`: `token`, `policy`,
    /// `role`).
    pub fn acl_item(kind: &str, id: &str) -> String {
        let pattern = match kind {
            "token" => ACL_TOKEN_ID,
            "policy" => ACL_POLICY_ID,
            _ => ACL_ROLE_ID,
        };
        fill(pattern, &[id])
    }

    /// The path of one ACL policy or role by name (`kind`: `policy`, `role`).
    pub fn acl_by_name(kind: &str, name: &str) -> String {
        fill(
            if kind == "policy" {
                ACL_POLICY_NAME
            } else {
                ACL_ROLE_NAME
            },
            &[name],
        )
    }

    pub fn agent_service(id: &str) -> String {
        AGENT_SERVICE.replace("{id}", id)
    }
    pub fn agent_service_deregister(id: &str) -> String {
        AGENT_SERVICE_DEREGISTER.replace("{id}", id)
    }
    pub fn leaf(service: &str) -> String {
        LEAF.replace("{service}", service)
    }
    pub fn health_connect(service: &str) -> String {
        HEALTH_CONNECT.replace("{service}", service)
    }
    pub fn proxy_snapshot(service: &str) -> String {
        PROXY_SNAPSHOT.replace("{service}", service)
    }
}

/// What a registration is (Consul's `ServiceKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ServiceKind {
    /// An ordinary service.
    #[default]
    #[serde(rename = "")]
    Typical,
    /// A sidecar proxy in front of another service.
    #[serde(rename = "connect-proxy")]
    ConnectProxy,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 2] = [ServiceKind::Typical, ServiceKind::ConnectProxy];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Typical => "",
            ServiceKind::ConnectProxy => "connect-proxy",
        }
    }
}

/// A registration as the agent stores it: one service instance, or one sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "Kind", default)]
    pub kind: ServiceKind,
    #[serde(rename = "Address", default)]
    pub address: String,
    #[serde(rename = "Port", default)]
    pub port: u16,
    #[serde(rename = "Meta", default, deserialize_with = "weak_string_map")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Tags", default, deserialize_with = "weak_strings")]
    pub tags: Vec<String>,
    /// A sidecar's proxy settings (`Kind = "connect-proxy"` only).
    #[serde(rename = "Proxy", default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ServiceProxy>,
    /// `Connect { Native = true }`: the service speaks mTLS itself.
    #[serde(rename = "Connect", default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ServiceConnect>,
}

impl ServiceRecord {
    /// The service a sidecar record fronts.
    pub fn destination(&self) -> Option<&str> {
        self.proxy
            .as_ref()
            .map(|p| p.destination_service_name.as_str())
    }

    /// Whether the service speaks mTLS itself (Connect-native).
    pub fn native(&self) -> bool {
        self.connect.as_ref().is_some_and(|c| c.native)
    }
}

/// A sidecar's proxy settings (Consul's `AgentServiceConnectProxyConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceProxy {
    #[serde(rename = "DestinationServiceName")]
    pub destination_service_name: String,
    #[serde(rename = "DestinationServiceID", default)]
    pub destination_service_id: String,
    #[serde(rename = "LocalServiceAddress", default)]
    pub local_service_address: String,
    #[serde(rename = "LocalServicePort", default)]
    pub local_service_port: u16,
    #[serde(rename = "Upstreams", default)]
    pub upstreams: Vec<Upstream>,
}

/// One upstream a sidecar listens for locally.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Upstream {
    #[serde(rename = "DestinationType", default)]
    pub destination_type: String,
    #[serde(rename = "DestinationName")]
    pub destination_name: String,
    #[serde(rename = "LocalBindAddress", default)]
    pub local_bind_address: String,
    #[serde(rename = "LocalBindPort")]
    pub local_bind_port: u16,
    /// Consul's opaque upstream `Config`. Tribune reads `jwt_svid_header`: the
    /// sidecar adds a fresh JWT-SVID for the destination to each request in that
    /// header ([`Upstream::jwt_svid_header`]).
    #[serde(
        rename = "Config",
        default,
        skip_serializing_if = "serde_json::Map::is_empty"
    )]
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// The upstream `Config` key asking for outbound identity (issue #45).
pub const JWT_SVID_HEADER_KEY: &str = "jwt_svid_header";

impl Upstream {
    /// The header an upstream's requests carry a JWT-SVID in, checked: an HTTP
    /// field name, and not one the proxy owns (`Host`, hop-by-hop fields, the mesh's
    /// own headers). `Authorization` is allowed when named, never a default.
    pub fn jwt_svid_header(&self) -> Result<Option<String>, String> {
        let Some(v) = self.config.get(JWT_SVID_HEADER_KEY) else {
            return Ok(None);
        };
        let name = v
            .as_str()
            .ok_or_else(|| format!("{JWT_SVID_HEADER_KEY}: expected a header name, got {v}"))?;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!(
                "{JWT_SVID_HEADER_KEY}: {name:?} is not an HTTP header name"
            ));
        }
        let lower = name.to_ascii_lowercase();
        const OWNED: [&str; 11] = [
            "host",
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "content-length",
            "x-forwarded-client-cert",
            "proxy-authorization",
        ];
        if OWNED.contains(&lower.as_str()) {
            return Err(format!(
                "{JWT_SVID_HEADER_KEY}: {name:?} is a header the proxy owns; name another (X-Workload-Token)"
            ));
        }
        Ok(Some(name.to_string()))
    }
}

/// `Connect` of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceConnect {
    #[serde(rename = "Native", default)]
    pub native: bool,
}

/// A registration as the agent shows it (`GET /v1/agent/service/<id>`, each value of
/// `/v1/agent/services`, `Service` of `/v1/health/...`): the stored record with the
/// fields Consul fills in that Tribune does not store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentService {
    #[serde(flatten)]
    pub record: ServiceRecord,
    #[serde(rename = "Weights", default)]
    pub weights: Weights,
    #[serde(rename = "EnableTagOverride", default)]
    pub enable_tag_override: bool,
    #[serde(rename = "Datacenter", default)]
    pub datacenter: String,
}

impl AgentService {
    pub fn new(record: ServiceRecord, datacenter: &str) -> AgentService {
        AgentService {
            record,
            weights: Weights::default(),
            enable_tag_override: false,
            datacenter: datacenter.to_string(),
        }
    }
}

/// The node every registration lives on (Consul's `api.Node`): Tribune's agent, or
/// on etcd every agent together, is one logical node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Node {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter", default)]
    pub datacenter: String,
    #[serde(rename = "TaggedAddresses", default)]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(rename = "Meta", default)]
    pub meta: BTreeMap<String, String>,
}

/// A health check (Consul's `api.HealthCheck`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthCheck {
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    /// `passing`, `warning` or `critical`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Notes", default)]
    pub notes: String,
    #[serde(rename = "Output", default)]
    pub output: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(rename = "ServiceName", default)]
    pub service_name: String,
    #[serde(rename = "ServiceTags", default)]
    pub service_tags: Vec<String>,
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Definition", default)]
    pub definition: serde_json::Map<String, serde_json::Value>,
}

/// One instance with its node and checks (`GET /v1/health/service/<name>`,
/// `/v1/health/connect/<name>`; Consul's `api.ServiceEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    #[serde(rename = "Node")]
    pub node: Node,
    #[serde(rename = "Service")]
    pub service: AgentService,
    #[serde(rename = "Checks")]
    pub checks: Vec<HealthCheck>,
}

/// One instance as the catalog lists it (`GET /v1/catalog/service/<name>`; Consul's
/// `api.CatalogService`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogService {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "NodeMeta")]
    pub node_meta: BTreeMap<String, String>,
    #[serde(rename = "ServiceKind")]
    pub service_kind: ServiceKind,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    #[serde(rename = "ServiceAddress")]
    pub service_address: String,
    #[serde(rename = "ServiceMeta")]
    pub service_meta: BTreeMap<String, String>,
    #[serde(rename = "ServicePort")]
    pub service_port: u16,
    #[serde(rename = "ServiceWeights")]
    pub service_weights: Weights,
    #[serde(rename = "ServiceEnableTagOverride")]
    pub service_enable_tag_override: bool,
    #[serde(rename = "ServiceProxy")]
    pub service_proxy: Option<ServiceProxy>,
    #[serde(rename = "ServiceConnect")]
    pub service_connect: ServiceConnect,
}

impl CatalogService {
    /// `record` on `node`.
    pub fn new(record: &ServiceRecord, node: &str, datacenter: &str) -> CatalogService {
        CatalogService {
            id: String::new(),
            node: node.to_string(),
            address: record.address.clone(),
            datacenter: datacenter.to_string(),
            node_meta: BTreeMap::new(),
            service_kind: record.kind,
            service_id: record.id.clone(),
            service_name: record.service.clone(),
            service_tags: record.tags.clone(),
            service_address: record.address.clone(),
            service_meta: record.meta.clone(),
            service_port: record.port,
            service_weights: Weights::default(),
            service_enable_tag_override: false,
            service_proxy: record.proxy.clone(),
            service_connect: record.connect.clone().unwrap_or_default(),
        }
    }
}

/// DNS SRV weights (always 1 and 1: Tribune runs no health checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    #[serde(rename = "Passing")]
    pub passing: u32,
    #[serde(rename = "Warning")]
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// `GET /v1/connect/ca/roots` (Consul's `api.CARootList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRoots {
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
    #[serde(rename = "TrustDomain")]
    pub trust_domain: String,
    #[serde(rename = "Roots")]
    pub roots: Vec<CaRoot>,
}

/// The answer of `PUT` [`paths::CA_ROOTS_ROTATE`]. Tribune's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
}

/// One trusted root (Consul's `api.CARoot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRoot {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "ExternalTrustDomain", default)]
    pub external_trust_domain: String,
    /// RFC 3339.
    #[serde(rename = "NotBefore", default)]
    pub not_before: String,
    /// RFC 3339.
    #[serde(rename = "NotAfter", default)]
    pub not_after: String,
    #[serde(rename = "RootCert")]
    pub root_cert: String,
    #[serde(rename = "IntermediateCerts", default)]
    pub intermediate_certs: Option<Vec<String>>,
    #[serde(rename = "Active")]
    pub active: bool,
    #[serde(rename = "PrivateKeyType", default)]
    pub private_key_type: String,
    #[serde(rename = "PrivateKeyBits", default)]
    pub private_key_bits: u32,
    #[serde(rename = "CreateIndex", default)]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex", default)]
    pub modify_index: u64,
}

/// The body of `POST /v1/agent/connect/ca/jwt-svid` (Tribune's, issue #45).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JwtSvidRequest {
    /// The service the token names (its SPIFFE ID becomes `sub`).
    #[serde(rename = "Service", default)]
    pub service: String,
    /// Who the token is for (`aud`; at least one, per the JWT-SVID specification).
    #[serde(rename = "Audience", default)]
    pub audience: Vec<String>,
    /// Its lifetime, a Go duration (default 5m, at most 1h).
    #[serde(rename = "TTL", default, skip_serializing_if = "String::is_empty")]
    pub ttl: String,
}

/// A JWT-SVID as the agent answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSvid {
    #[serde(rename = "Token")]
    pub token: String,
    #[serde(rename = "SpiffeID")]
    pub spiffe_id: String,
    /// RFC 3339.
    #[serde(rename = "ExpiresAt")]
    pub expires_at: String,
}

/// `GET /v1/agent/connect/ca/leaf/<service>` (Consul's `api.LeafCert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafCert {
    #[serde(rename = "SerialNumber")]
    pub serial_number: String,
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    #[serde(rename = "PrivateKeyPEM")]
    pub private_key_pem: String,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "ServiceURI")]
    pub service_uri: String,
    /// RFC 3339.
    #[serde(rename = "ValidAfter")]
    pub valid_after: String,
    /// RFC 3339.
    #[serde(rename = "ValidBefore")]
    pub valid_before: String,
    /// The root that signed it. Tribune's.
    #[serde(rename = "RootID")]
    pub root_id: String,
    #[serde(rename = "CreateIndex", default)]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex", default)]
    pub modify_index: u64,
}

/// A sidecar's counters for one staged candidate (`PUT` a list to
/// [`paths::SHADOW_REPORT`]). Tribune's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShadowReport {
    /// The candidate, `kind/name@index`.
    #[serde(rename = "Candidate")]
    pub candidate: String,
    /// The sidecar's service.
    #[serde(rename = "Service")]
    pub service: String,
    /// Which sidecar (its proxy ID or address).
    #[serde(rename = "Proxy")]
    pub proxy: String,
    /// Requests evaluated with both policies.
    #[serde(rename = "Seen")]
    pub seen: u64,
    /// Requests the candidate decides differently.
    #[serde(rename = "Changed")]
    pub changed: u64,
    /// The largest groups of those differences (at most
    /// [`MAX_REPORTED_GROUPS`]), as the sidecar's `/shadow` shows them.
    #[serde(rename = "Groups", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ShadowGroup>,
    /// When the agent took it (its clock, Unix seconds; set by the agent).
    #[serde(rename = "ReceivedAt", default)]
    pub received_at: i64,
}

/// Most difference groups one shadow report carries to the agent.
pub const MAX_REPORTED_GROUPS: usize = 10;

/// A staged candidate as `GET /v1/tribune/staged[/<kind>/<name>]` shows it, with the
/// shadow counters its sidecars reported. Tribune's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedCandidate {
    #[serde(rename = "Kind")]
    pub kind: String,
    #[serde(rename = "Name")]
    pub name: String,
    /// `kind/name@index`.
    #[serde(rename = "Candidate")]
    pub candidate: String,
    #[serde(rename = "StagedIndex")]
    pub staged_index: u64,
    /// The live entry's ModifyIndex when the candidate was staged (0: none).
    #[serde(rename = "LiveIndexAtStaging")]
    pub live_index_at_staging: u64,
    #[serde(rename = "LiveIndex")]
    pub live_index: u64,
    /// The live entry changed since staging: promote needs `-force`.
    #[serde(rename = "LiveChanged")]
    pub live_changed: bool,
    #[serde(rename = "Seen")]
    pub seen: u64,
    #[serde(rename = "Changed")]
    pub changed: u64,
    #[serde(rename = "Sidecars")]
    pub sidecars: Vec<SidecarCounts>,
    /// The differences the sidecars reported, summed by group, largest first.
    #[serde(rename = "Groups", default)]
    pub groups: Vec<ShadowGroup>,
}

/// One sidecar's shadow counters for a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarCounts {
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "Proxy")]
    pub proxy: String,
    #[serde(rename = "Seen")]
    pub seen: u64,
    #[serde(rename = "Changed")]
    pub changed: u64,
}

/// A sidecar's shadow evaluation (`GET /shadow` on its admin listener). Tribune's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCounters {
    /// The staged candidates evaluated beside the live policy.
    #[serde(rename = "Candidates")]
    pub candidates: Vec<String>,
    #[serde(rename = "Seen")]
    pub seen: u64,
    #[serde(rename = "Changed")]
    pub changed: u64,
    /// Largest first.
    #[serde(rename = "Groups")]
    pub groups: Vec<ShadowGroup>,
}

/// Requests the candidate decides differently, grouped by caller, method and the
/// path's first segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowGroup {
    /// `-`: no caller identity; `(other)`: past the group limit.
    #[serde(rename = "Caller")]
    pub caller: String,
    #[serde(rename = "Method")]
    pub method: String,
    #[serde(rename = "PathPrefix")]
    pub path_prefix: String,
    /// `allow` or `deny`.
    #[serde(rename = "Live")]
    pub live: String,
    #[serde(rename = "Candidate")]
    pub candidate: String,
    /// The candidate's reason code.
    #[serde(rename = "Reason")]
    pub reason: String,
    #[serde(rename = "LiveStatus")]
    pub live_status: u16,
    #[serde(rename = "CandidateStatus")]
    pub candidate_status: u16,
    #[serde(rename = "Count")]
    pub count: u64,
    /// The first request of the group, `METHOD /path`.
    #[serde(rename = "Example")]
    pub example: String,
}

/// The answer of a replay (`POST /replay` on a sidecar's admin listener): the
/// recorded requests decided again with a candidate. Tribune's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayResult {
    #[serde(rename = "Requests")]
    pub requests: u64,
    #[serde(rename = "Changed")]
    pub changed: u64,
    /// Requests whose token this sidecar did not verify at the time (taken as valid,
    /// without claims).
    #[serde(rename = "Assumed")]
    pub assumed: u64,
    #[serde(rename = "Groups")]
    pub groups: Vec<ShadowGroup>,
    /// Set when the sidecar's time budget ran out before the newest requests.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

/// How much of a replay ran (`"Truncated": true` beside the counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncated {
    /// Always true.
    #[serde(rename = "Truncated")]
    pub truncated: bool,
    #[serde(rename = "Replayed")]
    pub replayed: u64,
    #[serde(rename = "Recorded")]
    pub recorded: u64,
}

/// The answer of `GET /v1/connect/intentions/check` (Consul's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentionCheck {
    #[serde(rename = "Allowed")]
    pub allowed: bool,
}

/// A link from a token or role to a policy or role: by `ID` or by `Name` in a request,
/// both filled in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclLink {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: String,
}

/// An ACL policy (Consul's `api.ACLPolicy`, as stored; answers add the indexes:
/// [`Indexed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "Rules", default)]
    pub rules: String,
}

/// An ACL role: a named set of policies tokens can link to (Consul's `api.ACLRole`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRole {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "Policies", default)]
    pub policies: Vec<AclLink>,
}

/// An ACL token (Consul's `api.ACLToken`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// `<hidden>` to callers who may not see it.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "Policies", default)]
    pub policies: Vec<AclLink>,
    /// Roles, whose policies the token also holds (Consul omits the list when empty).
    #[serde(rename = "Roles", default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<AclLink>,
    /// Consul's service identities: write on the service and its sidecar, read on
    /// every service and node (for discovery).
    #[serde(
        rename = "ServiceIdentities",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_identities: Vec<AclServiceIdentity>,
    /// Consul's node identities: write on the node, read on every service.
    #[serde(
        rename = "NodeIdentities",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub node_identities: Vec<AclNodeIdentity>,
    /// Consul's built-in templated policies (`builtin/service`, `builtin/node`,
    /// `builtin/dns`).
    #[serde(
        rename = "TemplatedPolicies",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub templated_policies: Vec<AclTemplatedPolicy>,
    #[serde(rename = "Local", default)]
    pub local: bool,
    /// The auth method whose login made this token (empty for other tokens).
    #[serde(
        rename = "AuthMethod",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub auth_method: String,
    /// RFC 3339: the token stops working then, and is removed soon after.
    #[serde(
        rename = "ExpirationTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_time: Option<String>,
    /// RFC 3339.
    #[serde(rename = "CreateTime", default)]
    pub create_time: String,
}

/// A service identity on a token (Consul's `ACLServiceIdentity`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclServiceIdentity {
    #[serde(rename = "ServiceName", default)]
    pub service_name: String,
    /// Accepted and kept (one datacenter).
    #[serde(rename = "Datacenters", default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A node identity on a token (Consul's `ACLNodeIdentity`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclNodeIdentity {
    #[serde(rename = "NodeName", default)]
    pub node_name: String,
    #[serde(rename = "Datacenter", default)]
    pub datacenter: String,
}

/// The variables of a templated policy (Consul's `ACLTemplatedPolicyVariables`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclTemplatedPolicyVariables {
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A templated policy on a token (Consul's `ACLTemplatedPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclTemplatedPolicy {
    #[serde(rename = "TemplateName", default)]
    pub template_name: String,
    #[serde(
        rename = "TemplateVariables",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub template_variables: Option<AclTemplatedPolicyVariables>,
}

/// A stored object as the API answers it, with its Raft-style indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indexed<T> {
    #[serde(flatten)]
    pub item: T,
    #[serde(rename = "CreateIndex", default)]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex", default)]
    pub modify_index: u64,
}

/// The body of `PUT /v1/acl/policy[/<id>]`, decoded with
/// [`crate::decode::from_go_json`]. The request bodies leave out empty fields (what
/// a client did not set).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclPolicyBody {
    #[serde(rename = "ID", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        rename = "Description",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(rename = "Rules", default, skip_serializing_if = "String::is_empty")]
    pub rules: String,
    /// Accepted and ignored (one datacenter).
    #[serde(rename = "Datacenters", default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// The body of `PUT /v1/acl/role[/<id>]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclRoleBody {
    #[serde(rename = "ID", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        rename = "Description",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(rename = "Policies", default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AclLink>,
}

/// The body of `PUT /v1/acl/token[/<id>]` and `/v1/acl/token/<id>/clone`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclTokenBody {
    #[serde(
        rename = "AccessorID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub accessor_id: String,
    #[serde(rename = "SecretID", default, skip_serializing_if = "String::is_empty")]
    pub secret_id: String,
    #[serde(
        rename = "Description",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(rename = "Policies", default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AclLink>,
    #[serde(rename = "Roles", default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<AclLink>,
    #[serde(
        rename = "ServiceIdentities",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_identities: Vec<AclServiceIdentity>,
    #[serde(
        rename = "NodeIdentities",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub node_identities: Vec<AclNodeIdentity>,
    #[serde(
        rename = "TemplatedPolicies",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// Unset: keep (on update) or `false` (on create).
    #[serde(rename = "Local", default, skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    /// Only a login sets it; a body naming one is refused (Consul's rule).
    #[serde(
        rename = "AuthMethod",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub auth_method: String,
    /// RFC 3339 (on create; an update may only repeat it).
    #[serde(
        rename = "ExpirationTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_time: Option<String>,
    /// A Go duration (`"1h"`) or nanoseconds: the token expires that long after its
    /// creation.
    #[serde(
        rename = "ExpirationTTL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_ttl: Option<serde_json::Value>,
}

/// A scalar as a string, as Consul's weak decoding reads `Meta` and `Tags` (`1` and
/// `true` become `"1"` and `"true"`); `null` is empty.
fn weak_string(v: serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("expected a string, got {other}")),
    }
}

fn weak_string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            weak_string(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| serde::de::Error::custom(format!("{k}: {e}")))
        })
        .collect()
}

fn weak_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw = Option::<Vec<serde_json::Value>>::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, v)| weak_string(v).map_err(|e| serde::de::Error::custom(format!("[{i}]: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_their_captures_in_order() {
        let table = [
            (
                paths::CONFIG_ENTRY,
                &["jwt-provider", "okta"][..],
                "/v1/config/jwt-provider/okta",
            ),
            (
                paths::STAGED_PROMOTE,
                &["k", "n"][..],
                "/v1/tribune/staged/k/n/promote",
            ),
            (
                paths::ACL_TOKEN_CLONE,
                &["a-b"][..],
                "/v1/acl/token/a-b/clone",
            ),
            (paths::CONFIG, &[][..], "/v1/config"),
            // Fewer values than captures: the rest stay as written.
            (paths::CONFIG_ENTRY, &["x"][..], "/v1/config/x/{name}"),
        ];
        for (pattern, values, want) in table {
            assert_eq!(paths::fill(pattern, values), want, "{pattern}");
        }
        assert_eq!(paths::acl_item("policy", "7"), "/v1/acl/policy/7");
        assert_eq!(paths::acl_item("role", "7"), "/v1/acl/role/7");
        assert_eq!(paths::acl_item("token", "7"), "/v1/acl/token/7");
        assert_eq!(paths::acl_by_name("role", "r"), "/v1/acl/role/name/r");
    }

    #[test]
    fn service_kind_all_round_trips() {
        for k in ServiceKind::ALL {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v, k.as_str());
            assert_eq!(serde_json::from_value::<ServiceKind>(v).unwrap(), k);
        }
    }

    /// A sidecar registration as the agent answers it, decoded as the sidecar decodes
    /// it; a record stored by an earlier version (numbers in `Meta`, no `Connect`)
    /// still decodes.
    #[test]
    fn a_sidecar_registration_round_trips_and_old_records_decode() {
        let text = r#"{"ID":"web-sidecar-proxy","Service":"web-sidecar-proxy","Kind":"connect-proxy",
            "Address":"127.0.0.1","Port":21000,"Meta":{"v":1},"Tags":[],
            "Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web",
              "LocalServiceAddress":"127.0.0.1","LocalServicePort":8080,
              "Upstreams":[{"DestinationType":"service","DestinationName":"api",
                "LocalBindAddress":"127.0.0.1","LocalBindPort":9191}]},
            "Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"Datacenter":"dc1"}"#;
        let s: AgentService = serde_json::from_str(text).unwrap();
        assert_eq!(s.record.kind, ServiceKind::ConnectProxy);
        assert_eq!(s.record.meta["v"], "1");
        assert_eq!(s.record.destination(), Some("web"));
        let p = s.record.proxy.as_ref().unwrap();
        assert_eq!(p.upstreams[0].local_bind_port, 9191);
        let back = serde_json::to_value(&s).unwrap();
        let again: AgentService = serde_json::from_value(back).unwrap();
        assert_eq!(again, s);
    }

    /// ACL bodies fold keys as Go's `encoding/json` does: exact, else any case; unknown
    /// keys are ignored; snake_case is not an alias.
    #[test]
    fn acl_bodies_fold_keys_like_go() {
        let v = serde_json::json!({"name": "p", "RULES": "x", "Extra": 1, "description": "d"});
        let b: AclPolicyBody = crate::decode::from_go_json(&v).unwrap();
        assert_eq!((b.name.as_str(), b.rules.as_str()), ("p", "x"));
        assert_eq!(b.description, "d");
        let v = serde_json::json!({"accessor_id": "a", "Policies": [{"name": "n"}], "local": true});
        let t: AclTokenBody = crate::decode::from_go_json(&v).unwrap();
        assert_eq!(t.accessor_id, "", "no snake_case alias");
        assert_eq!(t.policies[0].name, "n");
        assert_eq!(t.local, Some(true));
        let e = crate::decode::from_go_json::<AclTokenBody>(&serde_json::json!({"Policies": "p"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Policies"), "{e}");
    }

    /// The sidecar fails loudly on a renamed field instead of reading it as empty.
    #[test]
    fn a_missing_field_is_named() {
        let e = serde_json::from_str::<LeafCert>(r#"{"SerialNumber":"1","CertPem":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CertPEM"), "{e}");
    }
}

/// The body of `POST /v1/acl/login` (Consul's `ACLLoginParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginBody {
    #[serde(rename = "AuthMethod", default)]
    pub auth_method: String,
    #[serde(rename = "BearerToken", default)]
    pub bearer_token: String,
    #[serde(rename = "Meta", default)]
    pub meta: BTreeMap<String, String>,
}

/// The body of `POST /v1/acl/oidc/auth-url` (Consul's `ACLOIDCAuthURLParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcAuthUrlBody {
    #[serde(rename = "AuthMethod", default)]
    pub auth_method: String,
    #[serde(rename = "RedirectURI", default)]
    pub redirect_uri: String,
    #[serde(rename = "ClientNonce", default)]
    pub client_nonce: String,
    #[serde(rename = "Meta", default)]
    pub meta: BTreeMap<String, String>,
}

/// The answer of `POST /v1/acl/oidc/auth-url`: where to send the browser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcAuthUrl {
    #[serde(rename = "AuthURL")]
    pub auth_url: String,
}

/// The body of `POST /v1/acl/oidc/callback` (Consul's `ACLOIDCCallbackParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcCallbackBody {
    #[serde(rename = "AuthMethod", default)]
    pub auth_method: String,
    #[serde(rename = "State", default)]
    pub state: String,
    #[serde(rename = "Code", default)]
    pub code: String,
    #[serde(rename = "ClientNonce", default)]
    pub client_nonce: String,
}
