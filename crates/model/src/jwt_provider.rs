//! `jwt-provider`: how to verify a token (issuer, audiences, key set, where the token
//! is, what to forward). Rules: Consul's validation of the entry.

use crate::entry::{is_false, is_zero, validate_meta, Meta};
use crate::error::ValidationErrors;
use crate::go;
use crate::wire;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Serialize;

/// Consul's default `ClockSkewSeconds`, set by normalization when 0 or absent.
pub const DEFAULT_CLOCK_SKEW_SECONDS: i64 = 30;

/// A validated `jwt-provider` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtProvider {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "JSONWebKeySet")]
    pub json_web_key_set: JsonWebKeySet,
    #[serde(rename = "Issuer", skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    #[serde(rename = "Audiences", skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(rename = "Locations", skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<JwtLocation>,
    #[serde(rename = "Forwarding", skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<Forwarding>,
    /// Tribune's extension (README, differences): after verification the sidecar sets
    /// each header from its claim (strings as they are, numbers and booleans as JSON
    /// text; arrays and objects are skipped) and removes client copies. Not serialized
    /// when empty, so Consul's files stay as they are.
    #[serde(rename = "ClaimToHeaders", skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<ClaimToHeader>,
    #[serde(rename = "ClockSkewSeconds")]
    pub clock_skew_seconds: i64,
    #[serde(rename = "CacheConfig", skip_serializing_if = "Option::is_none")]
    pub cache_config: Option<CacheConfig>,
    #[serde(rename = "Meta", skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
}

/// Where the keys come from: exactly one of a local or a remote key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum JsonWebKeySet {
    Local(LocalJwks),
    Remote(RemoteJwks),
}

impl JsonWebKeySet {
    /// The JWKS JSON text of an inline key set (None for files and remote sets).
    pub fn inline_json(&self) -> Option<Vec<u8>> {
        match self {
            JsonWebKeySet::Local(l) => l.inline_json(),
            JsonWebKeySet::Remote(_) => None,
        }
    }
}

/// A local key set: inline (standard base64 of the JWKS JSON) or a file on the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LocalJwks {
    #[serde(rename = "JWKS")]
    Inline(String),
    Filename(String),
}

impl LocalJwks {
    /// The JWKS JSON text of an inline key set (validation guarantees it decodes).
    pub fn inline_json(&self) -> Option<Vec<u8>> {
        match self {
            LocalJwks::Inline(b64) => go_std_base64(b64),
            LocalJwks::Filename(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteJwks {
    #[serde(rename = "URI")]
    pub uri: String,
    #[serde(rename = "RequestTimeoutMs", skip_serializing_if = "is_zero")]
    pub request_timeout_ms: i64,
    /// Nanoseconds; 0 means the default (decisions.md #5: 5 minutes).
    #[serde(rename = "CacheDuration", skip_serializing_if = "is_zero")]
    pub cache_duration: i64,
    #[serde(rename = "FetchAsynchronously", skip_serializing_if = "is_false")]
    pub fetch_asynchronously: bool,
    #[serde(rename = "UseSNI", skip_serializing_if = "is_false")]
    pub use_sni: bool,
    #[serde(rename = "RetryPolicy", skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(rename = "JWKSCluster", skip_serializing_if = "Option::is_none")]
    pub jwks_cluster: Option<JwksCluster>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    #[serde(rename = "NumRetries", skip_serializing_if = "is_zero")]
    pub num_retries: i64,
    #[serde(rename = "RetryPolicyBackOff", skip_serializing_if = "Option::is_none")]
    pub back_off: Option<RetryPolicyBackOff>,
}

/// Back-off between retries, in nanoseconds (0 = default: base 1 s, max 10 x base).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryPolicyBackOff {
    #[serde(rename = "BaseInterval", skip_serializing_if = "is_zero")]
    pub base_interval: i64,
    #[serde(rename = "MaxInterval", skip_serializing_if = "is_zero")]
    pub max_interval: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwksCluster {
    #[serde(rename = "DiscoveryType", skip_serializing_if = "Option::is_none")]
    pub discovery_type: Option<DiscoveryType>,
    #[serde(rename = "TLSCertificates", skip_serializing_if = "Option::is_none")]
    pub tls_certificates: Option<TlsCertificates>,
    /// Nanoseconds; 0 = default (5 s).
    #[serde(rename = "ConnectTimeout", skip_serializing_if = "is_zero")]
    pub connect_timeout: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DiscoveryType {
    #[serde(rename = "STRICT_DNS")]
    StrictDns,
    #[serde(rename = "STATIC")]
    Static,
    #[serde(rename = "LOGICAL_DNS")]
    LogicalDns,
    #[serde(rename = "EDS")]
    Eds,
    #[serde(rename = "ORIGINAL_DST")]
    OriginalDst,
}

impl DiscoveryType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "STRICT_DNS" => DiscoveryType::StrictDns,
            "STATIC" => DiscoveryType::Static,
            "LOGICAL_DNS" => DiscoveryType::LogicalDns,
            "EDS" => DiscoveryType::Eds,
            "ORIGINAL_DST" => DiscoveryType::OriginalDst,
            _ => return None,
        })
    }
}

/// How to verify the JWKS server's certificate: exactly one of two sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TlsCertificates {
    CaCertificateProviderInstance(CaCertificateProviderInstance),
    #[serde(rename = "TrustedCA")]
    TrustedCa(TrustedCa),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaCertificateProviderInstance {
    #[serde(rename = "InstanceName", skip_serializing_if = "String::is_empty")]
    pub instance_name: String,
    #[serde(rename = "CertificateName", skip_serializing_if = "String::is_empty")]
    pub certificate_name: String,
}

/// Trusted CA certificates: exactly one of four sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TrustedCa {
    Filename(String),
    EnvironmentVariable(String),
    InlineString(String),
    InlineBytes(#[serde(serialize_with = "crate::entry::serialize_base64")] Vec<u8>),
}

/// Where a token is looked for: exactly one of header, query parameter or cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum JwtLocation {
    Header(LocationHeader),
    QueryParam(LocationName),
    Cookie(LocationName),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationHeader {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "ValuePrefix", skip_serializing_if = "String::is_empty")]
    pub value_prefix: String,
    #[serde(rename = "Forward", skip_serializing_if = "is_false")]
    pub forward: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationName {
    #[serde(rename = "Name")]
    pub name: String,
}

/// One claim copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimToHeader {
    #[serde(rename = "Path")]
    pub path: Vec<String>,
    #[serde(rename = "HeaderName")]
    pub header_name: String,
}

impl JwtProvider {
    /// The Tribune extensions the entry uses (keys Consul would refuse).
    pub fn tribune_extensions(&self) -> Vec<&'static str> {
        if self.claim_to_headers.is_empty() {
            Vec::new()
        } else {
            vec!["ClaimToHeaders"]
        }
    }
}

/// RFC 9110 field-name characters (`tchar`): what a header name in an entry or a
/// policy document must be.
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forwarding {
    #[serde(rename = "HeaderName")]
    pub header_name: String,
    /// Always present in Consul's output (no `omitempty`).
    #[serde(rename = "PadForwardPayloadHeader")]
    pub pad_forward_payload_header: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheConfig {
    /// Verified-token cache entries; 0 = Tribune's default size (decisions.md #7).
    #[serde(rename = "Size", skip_serializing_if = "is_zero")]
    pub size: i64,
}

/// Go's `base64.StdEncoding.DecodeString`: padded, `\r`/`\n` ignored, lax trailing bits.
pub(crate) fn go_std_base64(s: &str) -> Option<Vec<u8>> {
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    GO_STD.decode(cleaned).ok()
}

/// Normalization (§a.2): `ClockSkewSeconds` 0 -> 30.
pub(crate) fn normalize(w: &mut wire::JwtProvider) {
    if w.clock_skew_seconds.unwrap_or(0) == 0 {
        w.clock_skew_seconds = Some(DEFAULT_CLOCK_SKEW_SECONDS);
    }
}

/// Validation (§a.3), every rule in Consul's order.
pub(crate) fn validate(w: wire::JwtProvider) -> Result<JwtProvider, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let name = w.name.unwrap_or_default();
    if name.is_empty() {
        errs.push("Name", "Name is required");
    }
    let meta = w.meta.unwrap_or_default();
    validate_meta(&meta, "Meta", &mut errs);

    let key_set = match w.json_web_key_set {
        None => {
            errs.push("JSONWebKeySet", "JSONWebKeySet is required");
            None
        }
        Some(set) => validate_key_set(set, &mut errs),
    };

    let mut locations = Vec::new();
    for (i, loc) in w.locations.unwrap_or_default().into_iter().enumerate() {
        let path = format!("Locations[{i}]");
        let kinds = [
            loc.header.is_some(),
            loc.query_param.is_some(),
            loc.cookie.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            errs.push(
                path,
                "must set exactly one of: JWT location header, query param or cookie",
            );
            continue;
        }
        if let Some(h) = loc.header {
            let name = h.name.unwrap_or_default();
            if name.is_empty() {
                errs.push(
                    format!("{path}.Header.Name"),
                    "JWT location header name must be specified",
                );
            }
            locations.push(JwtLocation::Header(LocationHeader {
                name,
                value_prefix: h.value_prefix.unwrap_or_default(),
                forward: h.forward.unwrap_or(false),
            }));
        } else if let Some(c) = loc.cookie {
            let name = c.name.unwrap_or_default();
            if name.is_empty() {
                errs.push(
                    format!("{path}.Cookie.Name"),
                    "JWT location cookie name must be specified",
                );
            }
            locations.push(JwtLocation::Cookie(LocationName { name }));
        } else if let Some(q) = loc.query_param {
            let name = q.name.unwrap_or_default();
            if name.is_empty() {
                errs.push(
                    format!("{path}.QueryParam.Name"),
                    "JWT location query param name must be specified",
                );
            }
            locations.push(JwtLocation::QueryParam(LocationName { name }));
        }
    }

    let forwarding = w.forwarding.map(|f| {
        let header_name = f.header_name.unwrap_or_default();
        if header_name.is_empty() {
            errs.push(
                "Forwarding.HeaderName",
                "Header name required for forwarding config",
            );
        }
        Forwarding {
            header_name,
            pad_forward_payload_header: f.pad_forward_payload_header.unwrap_or(false),
        }
    });

    let mut claim_to_headers = Vec::new();
    for (i, c) in w
        .claim_to_headers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let path = c.path.unwrap_or_default();
        if path.is_empty() || path.iter().any(String::is_empty) {
            errs.push(
                format!("ClaimToHeaders[{i}].Path"),
                "a claim path is required (non-empty names, e.g. [\"perms\", \"role\"])",
            );
        }
        let header_name = c.header_name.unwrap_or_default();
        if !is_header_name(&header_name) {
            errs.push(
                format!("ClaimToHeaders[{i}].HeaderName"),
                format!("{header_name:?} is not a header name"),
            );
        }
        claim_to_headers.push(ClaimToHeader { path, header_name });
    }

    match key_set {
        Some(json_web_key_set) if errs.is_empty() => Ok(JwtProvider {
            name,
            json_web_key_set,
            issuer: w.issuer.unwrap_or_default(),
            audiences: w.audiences.unwrap_or_default(),
            locations,
            forwarding,
            claim_to_headers,
            clock_skew_seconds: w.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS),
            cache_config: w.cache_config.map(|c| CacheConfig {
                size: c.size.unwrap_or(0),
            }),
            meta,
        }),
        _ => Err(errs),
    }
}

fn validate_key_set(
    set: wire::JsonWebKeySet,
    errs: &mut ValidationErrors,
) -> Option<JsonWebKeySet> {
    match (set.local, set.remote) {
        (Some(local), None) => {
            let path = "JSONWebKeySet.Local";
            let jwks = local.jwks.unwrap_or_default();
            let filename = local.filename.unwrap_or_default();
            match (jwks.is_empty(), filename.is_empty()) {
                (false, true) => {
                    if go_std_base64(&jwks).is_none() {
                        errs.push(
                            format!("{path}.JWKS"),
                            "JWKS must be valid base64 encoded string",
                        );
                        return None;
                    }
                    Some(JsonWebKeySet::Local(LocalJwks::Inline(jwks)))
                }
                (true, false) => Some(JsonWebKeySet::Local(LocalJwks::Filename(filename))),
                _ => {
                    errs.push(
                        path,
                        "must specify exactly one of String or filename for local keyset",
                    );
                    None
                }
            }
        }
        (None, Some(remote)) => validate_remote(remote, errs).map(JsonWebKeySet::Remote),
        _ => {
            errs.push(
                "JSONWebKeySet",
                "must specify exactly one of Local or Remote JSON Web key set",
            );
            None
        }
    }
}

fn validate_remote(r: wire::RemoteJwks, errs: &mut ValidationErrors) -> Option<RemoteJwks> {
    let path = "JSONWebKeySet.Remote";
    let before = errs.0.len();
    let uri = r.uri.unwrap_or_default();
    if uri.is_empty() {
        errs.push(format!("{path}.URI"), "Remote JWKS URI is required");
    } else if let Err(e) = go::parse_request_uri(&uri) {
        errs.push(
            format!("{path}.URI"),
            format!("Remote JWKS URI is invalid: {e}, uri: {uri}"),
        );
    }
    let retry_policy = r.retry_policy.map(|p| {
        let back_off = p.retry_policy_back_off.map(|b| {
            let base = b.base_interval.map(|d| d.0).unwrap_or(0);
            let max = b.max_interval.map(|d| d.0).unwrap_or(0);
            if max != 0 && base > max {
                errs.push(
                    format!("{path}.RetryPolicy.RetryPolicyBackOff.MaxInterval"),
                    "retry policy backoff's MaxInterval should be greater or equal to BaseInterval",
                );
            }
            RetryPolicyBackOff {
                base_interval: base,
                max_interval: max,
            }
        });
        RetryPolicy {
            num_retries: p.num_retries.unwrap_or(0),
            back_off,
        }
    });
    let jwks_cluster = r.jwks_cluster.map(|c| {
        let cpath = format!("{path}.JWKSCluster");
        let discovery_type = match c.discovery_type.as_deref().unwrap_or("") {
            "" => None,
            s => {
                let parsed = DiscoveryType::parse(s);
                if parsed.is_none() {
                    errs.push(
                        format!("{cpath}.DiscoveryType"),
                        format!("unsupported jwks cluster discovery type: {}", go::quote(s)),
                    );
                }
                parsed
            }
        };
        let tls_certificates = c
            .tls_certificates
            .and_then(|t| validate_tls(t, &format!("{cpath}.TLSCertificates"), errs));
        JwksCluster {
            discovery_type,
            tls_certificates,
            connect_timeout: c.connect_timeout.map(|d| d.0).unwrap_or(0),
        }
    });
    (errs.0.len() == before).then(|| RemoteJwks {
        uri,
        request_timeout_ms: r.request_timeout_ms.unwrap_or(0),
        cache_duration: r.cache_duration.map(|d| d.0).unwrap_or(0),
        fetch_asynchronously: r.fetch_asynchronously.unwrap_or(false),
        use_sni: r.use_sni.unwrap_or(false),
        retry_policy,
        jwks_cluster,
    })
}

fn validate_tls(
    t: wire::TlsCertificates,
    path: &str,
    errs: &mut ValidationErrors,
) -> Option<TlsCertificates> {
    match (t.ca_certificate_provider_instance, t.trusted_ca) {
        (Some(p), None) => Some(TlsCertificates::CaCertificateProviderInstance(
            CaCertificateProviderInstance {
                instance_name: p.instance_name.unwrap_or_default(),
                certificate_name: p.certificate_name.unwrap_or_default(),
            },
        )),
        (None, Some(ca)) => {
            let filename = ca.filename.unwrap_or_default();
            let env = ca.environment_variable.unwrap_or_default();
            let inline_string = ca.inline_string.unwrap_or_default();
            let inline_bytes = ca.inline_bytes.map(|b| b.0).unwrap_or_default();
            let set = [
                !filename.is_empty(),
                !env.is_empty(),
                !inline_string.is_empty(),
                !inline_bytes.is_empty(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                errs.push(
                    format!("{path}.TrustedCA"),
                    "must specify exactly one of: Filename, EnvironmentVariable, InlineString or InlineBytes for JWKS' TrustedCA",
                );
                return None;
            }
            Some(TlsCertificates::TrustedCa(if !filename.is_empty() {
                TrustedCa::Filename(filename)
            } else if !env.is_empty() {
                TrustedCa::EnvironmentVariable(env)
            } else if !inline_string.is_empty() {
                TrustedCa::InlineString(inline_string)
            } else {
                TrustedCa::InlineBytes(inline_bytes)
            }))
        }
        _ => {
            errs.push(
                path,
                "must specify exactly one of: CaCertificateProviderInstance or TrustedCA for JKWS' TLSCertificates",
            );
            None
        }
    }
}
