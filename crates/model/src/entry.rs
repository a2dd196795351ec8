//! The config entry kinds, the one pipeline every caller uses
//! (text or JSON -> decode -> normalize -> validate -> [`ConfigEntry`]),
//! and the canonical JSON that the API returns.

use crate::decode;
use crate::error::{DecodeError, EntryError, ValidationErrors};
use crate::go;
use crate::intentions::{self, ServiceIntentions};
use crate::jwt_provider::{self, JwtProvider};
use crate::mesh::Mesh;
use crate::wire;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

pub type Meta = BTreeMap<String, String>;

/// The full wildcard, for service names.
pub const WILDCARD: &str = "*";

const META_MAX_PAIRS: usize = 64;
const META_KEY_MAX: usize = 128;
const META_VALUE_MAX: usize = 512;

/// The config entry kinds Tribune stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ServiceDefaults,
    ProxyDefaults,
    ServiceIntentions,
    JwtProvider,
    Mesh,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::ServiceDefaults,
        Kind::ProxyDefaults,
        Kind::ServiceIntentions,
        Kind::JwtProvider,
        Kind::Mesh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceDefaults => "service-defaults",
            Kind::ProxyDefaults => "proxy-defaults",
            Kind::ServiceIntentions => "service-intentions",
            Kind::JwtProvider => "jwt-provider",
            Kind::Mesh => "mesh",
        }
    }

    /// Parses a kind name exactly as Consul does (lower-case, hyphenated).
    pub fn parse(s: &str) -> Result<Kind, DecodeError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DecodeError::InvalidKind(s.to_string()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated, normalized config entry.
///
/// Serializes to Consul's JSON shape (`Kind` first, Consul's field names and
/// `omitempty` rules, durations as integer nanoseconds), without the read-only
/// `Hash`/`CreateIndex`/`ModifyIndex`, which the store adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "Kind")]
pub enum ConfigEntry {
    #[serde(rename = "service-defaults")]
    ServiceDefaults(ServiceDefaults),
    #[serde(rename = "proxy-defaults")]
    ProxyDefaults(ProxyDefaults),
    #[serde(rename = "service-intentions")]
    ServiceIntentions(ServiceIntentions),
    #[serde(rename = "jwt-provider")]
    JwtProvider(JwtProvider),
    #[serde(rename = "mesh")]
    Mesh(Mesh),
}

impl ConfigEntry {
    /// The Tribune extensions the entry uses: keys Consul would refuse (`config
    /// validate` names them).
    pub fn tribune_extensions(&self) -> Vec<&'static str> {
        match self {
            ConfigEntry::ServiceIntentions(si) => si.tribune_extensions(),
            ConfigEntry::JwtProvider(p) => p.tribune_extensions(),
            _ => Vec::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            ConfigEntry::ServiceDefaults(_) => Kind::ServiceDefaults,
            ConfigEntry::ProxyDefaults(_) => Kind::ProxyDefaults,
            ConfigEntry::ServiceIntentions(_) => Kind::ServiceIntentions,
            ConfigEntry::JwtProvider(_) => Kind::JwtProvider,
            ConfigEntry::Mesh(_) => Kind::Mesh,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ConfigEntry::ServiceDefaults(e) => &e.name,
            ConfigEntry::ProxyDefaults(e) => &e.name,
            ConfigEntry::ServiceIntentions(e) => &e.name,
            ConfigEntry::JwtProvider(e) => &e.name,
            ConfigEntry::Mesh(_) => crate::mesh::MESH_NAME,
        }
    }

    pub fn meta(&self) -> &Meta {
        match self {
            ConfigEntry::ServiceDefaults(e) => &e.meta,
            ConfigEntry::ProxyDefaults(e) => &e.meta,
            ConfigEntry::ServiceIntentions(e) => &e.meta,
            ConfigEntry::JwtProvider(e) => &e.meta,
            ConfigEntry::Mesh(e) => &e.meta,
        }
    }

    /// The canonical JSON value (what `GET /v1/config/:kind/:name` returns, less the
    /// read-only fields).
    pub fn to_json(&self) -> Value {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Canonical JSON text: compact, byte-identical for equal entries.
    pub fn to_canonical_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Content hash (FNV-1a 64 of the canonical JSON): equal entries, equal hash.
    pub fn content_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.to_canonical_string().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

/// An entry decoded but not yet normalized or validated.
#[derive(Debug)]
pub enum WireEntry {
    ServiceDefaults(Box<wire::ServiceDefaults>),
    ProxyDefaults(Box<wire::ProxyDefaults>),
    ServiceIntentions(Box<wire::ServiceIntentions>),
    JwtProvider(Box<wire::JwtProvider>),
    Mesh(Box<wire::Mesh>),
}

impl WireEntry {
    /// Normalizes then validates (Consul's write path), reporting every broken rule.
    pub fn into_entry(self) -> Result<ConfigEntry, ValidationErrors> {
        Ok(match self {
            WireEntry::ServiceDefaults(mut w) => {
                normalize_service_defaults(&mut w);
                ConfigEntry::ServiceDefaults(validate_service_defaults(*w)?)
            }
            WireEntry::ProxyDefaults(mut w) => {
                normalize_proxy_defaults(&mut w)?;
                ConfigEntry::ProxyDefaults(validate_proxy_defaults(*w)?)
            }
            WireEntry::ServiceIntentions(mut w) => {
                intentions::normalize(&mut w);
                ConfigEntry::ServiceIntentions(intentions::validate(*w)?)
            }
            WireEntry::JwtProvider(mut w) => {
                jwt_provider::normalize(&mut w);
                ConfigEntry::JwtProvider(jwt_provider::validate(*w)?)
            }
            WireEntry::Mesh(w) => ConfigEntry::Mesh(crate::mesh::validate(*w)?),
        })
    }
}

/// Decodes a raw object (from HCL or a JSON body): finds the kind, then decodes the
/// fields with Consul's rules.
pub fn decode_object(raw: Map<String, Value>) -> Result<WireEntry, DecodeError> {
    let kind = match raw.get("Kind").or_else(|| raw.get("kind")) {
        None => return Err(DecodeError::MissingKind),
        Some(Value::String(s)) => Kind::parse(s)?,
        Some(_) => return Err(DecodeError::KindNotString),
    };
    let value = Value::Object(raw);
    Ok(match kind {
        Kind::ServiceDefaults => WireEntry::ServiceDefaults(decode::from_value(&value, "")?),
        Kind::ProxyDefaults => WireEntry::ProxyDefaults(decode::from_value(&value, "")?),
        Kind::ServiceIntentions => WireEntry::ServiceIntentions(decode::from_value(&value, "")?),
        Kind::JwtProvider => WireEntry::JwtProvider(decode::from_value(&value, "")?),
        Kind::Mesh => WireEntry::Mesh(decode::from_value(&value, "")?),
    })
}

/// Decodes HCL or JSON text (auto-detected) into an unvalidated entry.
pub fn decode_text(input: &str) -> Result<WireEntry, DecodeError> {
    decode_object(decode::parse_raw(input)?)
}

/// The whole pipeline from text: decode, normalize, validate.
pub fn parse_entry(input: &str) -> Result<ConfigEntry, EntryError> {
    Ok(decode_text(input)?.into_entry()?)
}

/// The whole pipeline from a JSON value (an HTTP request body).
pub fn entry_from_json(value: Value) -> Result<ConfigEntry, EntryError> {
    match value {
        Value::Object(map) => Ok(decode_object(map)?.into_entry()?),
        _ => Err(EntryError::Decode(DecodeError::Syntax(
            "config entry must be a JSON object".into(),
        ))),
    }
}

/// A validated `service-defaults` entry (the fields Tribune uses and keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDefaults {
    #[serde(rename = "Name")]
    pub name: String,
    /// Lower-cased; empty means the `proxy-defaults` protocol, else `tcp`.
    #[serde(rename = "Protocol")]
    pub protocol: String,
    #[serde(rename = "ExternalSNI", skip_serializing_if = "String::is_empty")]
    pub external_sni: String,
    #[serde(rename = "MaxInboundConnections", skip_serializing_if = "is_zero")]
    pub max_inbound_connections: i64,
    #[serde(rename = "LocalConnectTimeoutMs", skip_serializing_if = "is_zero")]
    pub local_connect_timeout_ms: i64,
    #[serde(rename = "LocalRequestTimeoutMs", skip_serializing_if = "is_zero")]
    pub local_request_timeout_ms: i64,
    #[serde(
        rename = "BalanceInboundConnections",
        skip_serializing_if = "String::is_empty"
    )]
    pub balance_inbound_connections: String,
    #[serde(rename = "Meta", skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
}

/// The `service-defaults` meta key naming the connection upgrades (besides
/// `websocket`) the service's sidecar passes: comma-separated protocol names
/// (Tribune's extension; Consul keeps meta as it is).
pub const UPGRADES_META: &str = "tribune.upgrades";

impl ServiceDefaults {
    /// The protocols [`UPGRADES_META`] names, lowercased.
    pub fn upgrades(&self) -> Vec<String> {
        self.meta
            .get(UPGRADES_META)
            .map(|list| {
                list.split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Problems with the protocols [`UPGRADES_META`] names.
fn validate_upgrades(meta: &Meta, errs: &mut ValidationErrors) {
    let Some(list) = meta.get(UPGRADES_META) else {
        return;
    };
    let field = format!("Meta[{UPGRADES_META:?}]");
    for p in list.split(',').map(str::trim) {
        let token = !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._+".contains(&b));
        if !token {
            errs.push(
                &field,
                format!("{field}: {p:?} is not a protocol name (letters, digits, - . _ +; comma-separated)"),
            );
        } else if p.eq_ignore_ascii_case("h2c") {
            errs.push(
                &field,
                format!("{field}: h2c cannot be passed: the sidecar speaks HTTP/2 to the service itself (Protocol = \"http2\")"),
            );
        }
    }
}

fn normalize_service_defaults(w: &mut wire::ServiceDefaults) {
    if let Some(p) = w.protocol.as_mut() {
        *p = p.to_lowercase();
    }
}

fn validate_service_defaults(
    w: wire::ServiceDefaults,
) -> Result<ServiceDefaults, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let name = w.name.unwrap_or_default();
    if name.is_empty() {
        errs.push("Name", "Name is required");
        return Err(errs);
    }
    if name == WILDCARD {
        errs.push(
            "Name",
            "service-defaults name must be the name of a service, and not a wildcard",
        );
        return Err(errs);
    }
    if let Err(e) = crate::names::check_service_name(&name) {
        errs.push("Name", format!("Name: {e}"));
    }
    let meta = w.meta.unwrap_or_default();
    validate_meta(&meta, "Meta", &mut errs);
    validate_upgrades(&meta, &mut errs);
    let balance = w.balance_inbound_connections.unwrap_or_default();
    if !balance.is_empty() && balance != "exact_balance" {
        errs.push(
            "BalanceInboundConnections",
            format!("invalid value for balance_inbound_connections: {balance}"),
        );
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(ServiceDefaults {
        name,
        protocol: w.protocol.unwrap_or_default(),
        external_sni: w.external_sni.unwrap_or_default(),
        max_inbound_connections: w.max_inbound_connections.unwrap_or(0),
        local_connect_timeout_ms: w.local_connect_timeout_ms.unwrap_or(0),
        local_request_timeout_ms: w.local_request_timeout_ms.unwrap_or(0),
        balance_inbound_connections: balance,
        meta,
    })
}

/// The only name a `proxy-defaults` entry may have.
pub const PROXY_DEFAULTS_NAME: &str = "global";

/// A validated `proxy-defaults` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyDefaults {
    /// Always `global`.
    #[serde(rename = "Name")]
    pub name: String,
    /// Opaque proxy configuration; Tribune reads `protocol` from it.
    #[serde(rename = "Config", skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, Value>,
    #[serde(rename = "Meta", skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
}

impl ProxyDefaults {
    /// `Config.protocol`, lower-cased, when it is a non-empty string.
    pub fn protocol(&self) -> Option<String> {
        match self.config.get("protocol") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.to_lowercase()),
            _ => None,
        }
    }
}

fn normalize_proxy_defaults(w: &mut wire::ProxyDefaults) -> Result<(), ValidationErrors> {
    let name = w.name.clone().unwrap_or_default();
    if !name.is_empty() && name != PROXY_DEFAULTS_NAME {
        let mut errs = ValidationErrors::default();
        errs.push(
            "Name",
            format!(
                "invalid name ({}), only {} is supported",
                go::quote(&name),
                go::quote(PROXY_DEFAULTS_NAME)
            ),
        );
        return Err(errs);
    }
    w.name = Some(PROXY_DEFAULTS_NAME.to_string());
    Ok(())
}

fn validate_proxy_defaults(w: wire::ProxyDefaults) -> Result<ProxyDefaults, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let meta = w.meta.unwrap_or_default();
    validate_meta(&meta, "Meta", &mut errs);
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(ProxyDefaults {
        name: PROXY_DEFAULTS_NAME.to_string(),
        config: w.config.unwrap_or_default(),
        meta,
    })
}

/// Consul's `validateConfigEntryMeta`, keys in sorted order.
pub(crate) fn validate_meta(meta: &Meta, path: &str, errs: &mut ValidationErrors) {
    if meta.len() > META_MAX_PAIRS {
        errs.push(
            path,
            format!("Meta exceeds maximum element count {META_MAX_PAIRS}"),
        );
    }
    for (k, v) in meta {
        if k.len() > META_KEY_MAX {
            errs.push(
                format!("{path}.{k}"),
                format!(
                    "Meta key {} exceeds maximum length {META_KEY_MAX}",
                    go::quote(k)
                ),
            );
        }
        if v.len() > META_VALUE_MAX {
            errs.push(
                format!("{path}.{k}"),
                format!(
                    "Meta value for key {} exceeds maximum length {META_VALUE_MAX}",
                    go::quote(k)
                ),
            );
        }
    }
}

pub(crate) fn is_zero(v: &i64) -> bool {
    *v == 0
}

pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

pub(crate) fn serialize_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}
