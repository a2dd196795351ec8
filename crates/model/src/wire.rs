//! Wire structs: config entries exactly as users write them, in Consul's field
//! spellings, every field optional. [`crate::decode`] fills them with Consul's decoding
//! rules; normalization and validation turn them into the typed entries of
//! [`crate::entry`]. Field declaration order follows Consul's Go structs.
//!
//! Read-only fields Consul accepts on input and recomputes (`Hash`, `CreateIndex`,
//! `ModifyIndex`, `Precedence`) are accepted and ignored. A `null` element in a list
//! decodes as an empty struct (Consul would crash on the nil pointer), so validation
//! reports what it lacks.

use crate::decode::{GoDuration, InputBytes};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::BTreeMap;

pub type Meta = BTreeMap<String, String>;

#[derive(Debug, Default, Deserialize)]
pub struct JwtProvider {
    #[serde(rename = "Kind")]
    pub kind: Option<IgnoredAny>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "JSONWebKeySet")]
    pub json_web_key_set: Option<JsonWebKeySet>,
    #[serde(rename = "Issuer")]
    pub issuer: Option<String>,
    #[serde(rename = "Audiences")]
    pub audiences: Option<Vec<String>>,
    #[serde(rename = "Locations")]
    pub locations: Option<Vec<JwtLocation>>,
    #[serde(rename = "Forwarding")]
    pub forwarding: Option<Forwarding>,
    /// Tribune extension: verified claims copied into request headers.
    #[serde(rename = "ClaimToHeaders")]
    pub claim_to_headers: Option<Vec<ClaimToHeader>>,
    #[serde(rename = "ClockSkewSeconds")]
    pub clock_skew_seconds: Option<i64>,
    #[serde(rename = "CacheConfig")]
    pub cache_config: Option<CacheConfig>,
    #[serde(rename = "Meta")]
    pub meta: Option<Meta>,
    #[serde(rename = "Hash")]
    pub hash: Option<IgnoredAny>,
    #[serde(rename = "CreateIndex")]
    pub create_index: Option<IgnoredAny>,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct JsonWebKeySet {
    #[serde(rename = "Local")]
    pub local: Option<LocalJwks>,
    #[serde(rename = "Remote")]
    pub remote: Option<RemoteJwks>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LocalJwks {
    #[serde(rename = "JWKS")]
    pub jwks: Option<String>,
    #[serde(rename = "Filename")]
    pub filename: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RemoteJwks {
    #[serde(rename = "URI")]
    pub uri: Option<String>,
    #[serde(rename = "RequestTimeoutMs")]
    pub request_timeout_ms: Option<i64>,
    #[serde(rename = "CacheDuration")]
    pub cache_duration: Option<GoDuration>,
    #[serde(rename = "FetchAsynchronously")]
    pub fetch_asynchronously: Option<bool>,
    #[serde(rename = "UseSNI")]
    pub use_sni: Option<bool>,
    #[serde(rename = "RetryPolicy")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(rename = "JWKSCluster")]
    pub jwks_cluster: Option<JwksCluster>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RetryPolicy {
    #[serde(rename = "NumRetries")]
    pub num_retries: Option<i64>,
    #[serde(rename = "RetryPolicyBackOff")]
    pub retry_policy_back_off: Option<RetryPolicyBackOff>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RetryPolicyBackOff {
    #[serde(rename = "BaseInterval")]
    pub base_interval: Option<GoDuration>,
    #[serde(rename = "MaxInterval")]
    pub max_interval: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
pub struct JwksCluster {
    #[serde(rename = "DiscoveryType")]
    pub discovery_type: Option<String>,
    #[serde(rename = "TLSCertificates")]
    pub tls_certificates: Option<TlsCertificates>,
    #[serde(rename = "ConnectTimeout")]
    pub connect_timeout: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TlsCertificates {
    #[serde(rename = "CaCertificateProviderInstance")]
    pub ca_certificate_provider_instance: Option<CaCertificateProviderInstance>,
    #[serde(rename = "TrustedCA")]
    pub trusted_ca: Option<TrustedCa>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CaCertificateProviderInstance {
    #[serde(rename = "InstanceName")]
    pub instance_name: Option<String>,
    #[serde(rename = "CertificateName")]
    pub certificate_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TrustedCa {
    #[serde(rename = "Filename")]
    pub filename: Option<String>,
    #[serde(rename = "EnvironmentVariable")]
    pub environment_variable: Option<String>,
    #[serde(rename = "InlineString")]
    pub inline_string: Option<String>,
    #[serde(rename = "InlineBytes")]
    pub inline_bytes: Option<InputBytes>,
}

#[derive(Debug, Default, Deserialize)]
pub struct JwtLocation {
    #[serde(rename = "Header")]
    pub header: Option<LocationHeader>,
    #[serde(rename = "QueryParam")]
    pub query_param: Option<LocationName>,
    #[serde(rename = "Cookie")]
    pub cookie: Option<LocationName>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LocationHeader {
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "ValuePrefix")]
    pub value_prefix: Option<String>,
    #[serde(rename = "Forward")]
    pub forward: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LocationName {
    #[serde(rename = "Name")]
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Forwarding {
    #[serde(rename = "HeaderName")]
    pub header_name: Option<String>,
    #[serde(rename = "PadForwardPayloadHeader")]
    pub pad_forward_payload_header: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ClaimToHeader {
    #[serde(rename = "Path")]
    pub path: Option<Vec<String>>,
    #[serde(rename = "HeaderName")]
    pub header_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CacheConfig {
    #[serde(rename = "Size")]
    pub size: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ServiceIntentions {
    #[serde(rename = "Kind")]
    pub kind: Option<IgnoredAny>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "Sources")]
    pub sources: Option<Vec<SourceIntention>>,
    #[serde(rename = "JWT")]
    pub jwt: Option<JwtRequirement>,
    #[serde(rename = "Meta")]
    pub meta: Option<Meta>,
    #[serde(rename = "Hash")]
    pub hash: Option<IgnoredAny>,
    #[serde(rename = "CreateIndex")]
    pub create_index: Option<IgnoredAny>,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SourceIntention {
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "Action")]
    pub action: Option<String>,
    #[serde(rename = "Permissions")]
    pub permissions: Option<Vec<Permission>>,
    #[serde(rename = "Precedence")]
    pub precedence: Option<IgnoredAny>,
    /// Set by normalization (input `Precedence` is ignored).
    #[serde(skip)]
    pub computed_precedence: u32,
    #[serde(rename = "LegacyID")]
    pub legacy_id: Option<String>,
    #[serde(rename = "Type")]
    pub source_type: Option<String>,
    #[serde(rename = "Description")]
    pub description: Option<String>,
    #[serde(rename = "LegacyMeta")]
    pub legacy_meta: Option<Meta>,
    #[serde(rename = "LegacyCreateTime")]
    pub legacy_create_time: Option<IgnoredAny>,
    #[serde(rename = "LegacyUpdateTime")]
    pub legacy_update_time: Option<IgnoredAny>,
    #[serde(rename = "Peer")]
    pub peer: Option<String>,
    #[serde(rename = "SamenessGroup")]
    pub sameness_group: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Permission {
    #[serde(rename = "Action")]
    pub action: Option<String>,
    #[serde(rename = "HTTP")]
    pub http: Option<HttpPermission>,
    #[serde(rename = "JWT")]
    pub jwt: Option<JwtRequirement>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HttpPermission {
    #[serde(rename = "PathExact")]
    pub path_exact: Option<String>,
    #[serde(rename = "PathPrefix")]
    pub path_prefix: Option<String>,
    #[serde(rename = "PathRegex")]
    pub path_regex: Option<String>,
    #[serde(rename = "Header")]
    pub header: Option<Vec<HeaderPermission>>,
    #[serde(rename = "Methods")]
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HeaderPermission {
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "Present")]
    pub present: Option<bool>,
    #[serde(rename = "Exact")]
    pub exact: Option<String>,
    #[serde(rename = "Prefix")]
    pub prefix: Option<String>,
    #[serde(rename = "Suffix")]
    pub suffix: Option<String>,
    #[serde(rename = "Contains")]
    pub contains: Option<String>,
    #[serde(rename = "Regex")]
    pub regex: Option<String>,
    #[serde(rename = "Invert")]
    pub invert: Option<bool>,
    #[serde(rename = "IgnoreCase")]
    pub ignore_case: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct JwtRequirement {
    #[serde(rename = "Providers")]
    pub providers: Option<Vec<JwtProviderRef>>,
    /// Tribune extension: no token for the listed providers meets the requirement.
    #[serde(rename = "Optional")]
    pub optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct JwtProviderRef {
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "VerifyClaims")]
    pub verify_claims: Option<Vec<ClaimVerification>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ClaimVerification {
    #[serde(rename = "Path")]
    pub path: Option<Vec<String>>,
    #[serde(rename = "Value")]
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ServiceDefaults {
    #[serde(rename = "Kind")]
    pub kind: Option<IgnoredAny>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "Protocol")]
    pub protocol: Option<String>,
    #[serde(rename = "ExternalSNI")]
    pub external_sni: Option<String>,
    #[serde(rename = "MaxInboundConnections")]
    pub max_inbound_connections: Option<i64>,
    #[serde(rename = "LocalConnectTimeoutMs")]
    pub local_connect_timeout_ms: Option<i64>,
    #[serde(rename = "LocalRequestTimeoutMs")]
    pub local_request_timeout_ms: Option<i64>,
    #[serde(rename = "BalanceInboundConnections")]
    pub balance_inbound_connections: Option<String>,
    #[serde(rename = "Meta")]
    pub meta: Option<Meta>,
    #[serde(rename = "Hash")]
    pub hash: Option<IgnoredAny>,
    #[serde(rename = "CreateIndex")]
    pub create_index: Option<IgnoredAny>,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProxyDefaults {
    #[serde(rename = "Kind")]
    pub kind: Option<IgnoredAny>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "Config")]
    pub config: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Meta")]
    pub meta: Option<Meta>,
    #[serde(rename = "Hash")]
    pub hash: Option<IgnoredAny>,
    #[serde(rename = "CreateIndex")]
    pub create_index: Option<IgnoredAny>,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: Option<IgnoredAny>,
}

/// The `mesh` entry: the parts Tribune enforces. It has no `Name` (Consul's name is
/// always `mesh`), so a `Name` key is an unknown key, as in Consul.
#[derive(Debug, Default, Deserialize)]
pub struct Mesh {
    #[serde(rename = "Kind")]
    pub kind: Option<IgnoredAny>,
    #[serde(rename = "HTTP")]
    pub http: Option<MeshHttp>,
    #[serde(rename = "Meta")]
    pub meta: Option<Meta>,
    #[serde(rename = "Hash")]
    pub hash: Option<IgnoredAny>,
    #[serde(rename = "CreateIndex")]
    pub create_index: Option<IgnoredAny>,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MeshHttp {
    #[serde(rename = "Incoming")]
    pub incoming: Option<MeshHttpIncoming>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MeshHttpIncoming {
    #[serde(rename = "RequestNormalization")]
    pub request_normalization: Option<RequestNormalization>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RequestNormalization {
    #[serde(rename = "InsecureDisablePathNormalization")]
    pub insecure_disable_path_normalization: Option<bool>,
    #[serde(rename = "MergeSlashes")]
    pub merge_slashes: Option<bool>,
    #[serde(rename = "PathWithEscapedSlashesAction")]
    pub path_with_escaped_slashes_action: Option<String>,
    #[serde(rename = "HeadersWithUnderscoresAction")]
    pub headers_with_underscores_action: Option<String>,
}
