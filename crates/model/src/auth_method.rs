//! ACL auth methods (issue #43), Consul's `jwt` and `oidc` types: the shape
//! `PUT /v1/acl/auth-method` takes and answers, and Consul's checks of it that need
//! no network (Consul also fetches a `JWKSURL` or discovery document when a method
//! is written; the agent does that part, with its key runtime).
//!
//! The texts are Consul's (`Invalid Auth Method: ...`), so scripts that match them
//! keep working.

use crate::entry::{is_false, is_zero};
use crate::go;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The auth method types Tribune implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodType {
    Jwt,
    Oidc,
}

impl MethodType {
    pub const ALL: [MethodType; 2] = [MethodType::Jwt, MethodType::Oidc];

    pub fn as_str(self) -> &'static str {
        match self {
            MethodType::Jwt => "jwt",
            MethodType::Oidc => "oidc",
        }
    }

    pub fn parse(s: &str) -> Option<MethodType> {
        MethodType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Consul's bounds of `MaxTokenTTL` (`acl.token_min_expiration_ttl` and
/// `token_max_expiration_ttl`): one minute to 24 hours.
pub const MIN_TOKEN_TTL_NS: i64 = 60 * 1_000_000_000;
pub const MAX_TOKEN_TTL_NS: i64 = 24 * 3600 * 1_000_000_000;

/// The bounds of a token's lifetime (`acl { token_min_expiration_ttl
/// token_max_expiration_ttl }` in the agent's configuration), in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    pub min_ns: i64,
    pub max_ns: i64,
}

impl Default for TtlBounds {
    fn default() -> Self {
        TtlBounds {
            min_ns: MIN_TOKEN_TTL_NS,
            max_ns: MAX_TOKEN_TTL_NS,
        }
    }
}

/// An auth method as the API carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthMethod {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// How long tokens made by a login live (Go duration; absent: no expiry).
    #[serde(
        rename = "MaxTokenTTL",
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "duration_out",
        deserialize_with = "duration_in"
    )]
    pub max_token_ttl: i64,
    /// `local` (the default) or `global`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_locality: String,
    #[serde(default)]
    pub config: MethodConfig,
}

/// What `GET /v1/acl/auth-methods` lists of a method (no `Config`: it may hold a
/// client secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MethodStub {
    pub name: String,
    pub r#type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(
        rename = "MaxTokenTTL",
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "duration_out",
        deserialize_with = "duration_in"
    )]
    pub max_token_ttl: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_locality: String,
}

impl AuthMethod {
    /// The method as the list shows it.
    pub fn stub(&self) -> MethodStub {
        MethodStub {
            name: self.name.clone(),
            r#type: self.r#type.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            max_token_ttl: self.max_token_ttl,
            token_locality: self.token_locality.clone(),
        }
    }
}

/// The `Config` of a `jwt` or `oidc` method (Consul's names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodConfig {
    #[serde(
        rename = "JWTValidationPubKeys",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub jwt_validation_pub_keys: Vec<String>,
    #[serde(rename = "JWKSURL", default, skip_serializing_if = "String::is_empty")]
    pub jwks_url: String,
    #[serde(
        rename = "JWKSCACert",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub jwks_ca_cert: String,
    #[serde(
        rename = "OIDCDiscoveryURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub oidc_discovery_url: String,
    #[serde(
        rename = "OIDCDiscoveryCACert",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub oidc_discovery_ca_cert: String,
    #[serde(
        rename = "BoundIssuer",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub bound_issuer: String,
    #[serde(
        rename = "BoundAudiences",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub bound_audiences: Vec<String>,
    #[serde(
        rename = "ClaimMappings",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub claim_mappings: BTreeMap<String, String>,
    #[serde(
        rename = "ListClaimMappings",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub list_claim_mappings: BTreeMap<String, String>,
    #[serde(
        rename = "JWTSupportedAlgs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub jwt_supported_algs: Vec<String>,
    #[serde(
        rename = "ExpirationLeeway",
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "duration_out",
        deserialize_with = "duration_in"
    )]
    pub expiration_leeway: i64,
    #[serde(
        rename = "NotBeforeLeeway",
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "duration_out",
        deserialize_with = "duration_in"
    )]
    pub not_before_leeway: i64,
    #[serde(
        rename = "ClockSkewLeeway",
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "duration_out",
        deserialize_with = "duration_in"
    )]
    pub clock_skew_leeway: i64,
    #[serde(
        rename = "OIDCClientID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub oidc_client_id: String,
    #[serde(
        rename = "OIDCClientSecret",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub oidc_client_secret: String,
    #[serde(rename = "OIDCScopes", default, skip_serializing_if = "Vec::is_empty")]
    pub oidc_scopes: Vec<String>,
    #[serde(
        rename = "OIDCACRValues",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub oidc_acr_values: Vec<String>,
    #[serde(
        rename = "AllowedRedirectURIs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_redirect_uris: Vec<String>,
    #[serde(
        rename = "VerboseOIDCLogging",
        default,
        skip_serializing_if = "is_false"
    )]
    pub verbose_oidc_logging: bool,
}

fn duration_out<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&go::format_duration(*ns))
}

/// A Go duration: its text (`"10m"`, as [`go::parse_duration`] reads it) or integer
/// nanoseconds, as Consul decodes them; an empty text is none.
fn duration_in<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum In {
        Text(String),
        Nanos(i64),
    }
    match In::deserialize(d)? {
        In::Nanos(n) => Ok(n),
        In::Text(t) if t.is_empty() => Ok(0),
        In::Text(t) => go::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// A `%` not followed by two hex digits.
fn bad_escape(u: &str) -> bool {
    let b = u.as_bytes();
    b.iter().enumerate().any(|(i, c)| {
        *c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Why a method is refused (Consul's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodError(pub String);

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MethodError {}

fn invalid(msg: impl fmt::Display) -> MethodError {
    MethodError(format!("Invalid Auth Method: {msg}"))
}

/// Consul's name rule for auth methods: 1 to 128 of `[A-Za-z0-9_-]`.
fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The signing algorithms a method may list (Consul's: RSA, ECDSA and RSA-PSS).
pub const SUPPORTED_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
];

impl AuthMethod {
    /// Consul's checks of a method being written, in Consul's order; `existing` is
    /// the stored method of that name, whose type an update keeps. Fills the type
    /// from `existing` when the update leaves it out.
    pub fn validate(&mut self, existing: Option<&AuthMethod>) -> Result<(), MethodError> {
        self.validate_within(existing, TtlBounds::default())
    }

    /// [`Self::validate`] with the agent's token lifetime bounds.
    pub fn validate_within(
        &mut self,
        existing: Option<&AuthMethod>,
        ttl: TtlBounds,
    ) -> Result<(), MethodError> {
        if self.name.is_empty() {
            return Err(invalid("no Name is set"));
        }
        if !valid_name(&self.name) {
            return Err(invalid(
                "invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
            ));
        }
        if let Some(old) = existing {
            if self.r#type.is_empty() {
                self.r#type = old.r#type.clone();
            } else if self.r#type != old.r#type {
                return Err(MethodError(
                    "the Type field of an Auth Method is immutable".into(),
                ));
            }
        }
        let Some(kind) = MethodType::parse(&self.r#type) else {
            let names: Vec<&str> = MethodType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(invalid(format!(
                "Type should be one of: [{}]",
                names.join(" ")
            )));
        };
        if self.max_token_ttl != 0 {
            if self.max_token_ttl > ttl.max_ns {
                return Err(MethodError(format!(
                    "MaxTokenTTL {} cannot be more than {}",
                    go::format_duration(self.max_token_ttl),
                    go::format_duration(ttl.max_ns)
                )));
            }
            if self.max_token_ttl < ttl.min_ns {
                return Err(MethodError(format!(
                    "MaxTokenTTL {} cannot be less than {}",
                    go::format_duration(self.max_token_ttl),
                    go::format_duration(ttl.min_ns)
                )));
            }
        }
        match self.token_locality.as_str() {
            // One datacenter: this one is the primary.
            "" | "local" | "global" => {}
            _ => {
                return Err(invalid(
                    "TokenLocality should be one of 'local' or 'global'",
                ))
            }
        }
        self.config.validate(kind).map_err(invalid)
    }
}

/// Consul's default leeways: 60 s of clock skew; 150 s for an `exp` or `nbf` the
/// token leaves out.
const DEFAULT_SKEW_S: i64 = 60;
const DEFAULT_MISSING_S: i64 = 150;

/// A leeway in seconds: negative is none, zero is the default.
fn leeway_s(ns: i64, default: i64) -> i64 {
    match ns {
        n if n < 0 => 0,
        0 => default,
        n => n / 1_000_000_000,
    }
}

impl MethodConfig {
    /// The clock skew a login's token is checked with, in seconds.
    pub fn clock_skew_s(&self) -> i64 {
        leeway_s(self.clock_skew_leeway, DEFAULT_SKEW_S)
    }

    /// Consul's checks of a login token's registered claims once its signature is
    /// verified (`strict`: a `jwt` method with local keys or a JWKS, where an `aud`
    /// with no bound audiences is refused): a token needs `iat`, `exp` or `nbf`; a
    /// missing `exp` or `nbf` is derived with the method's leeways; `iss` must be
    /// `BoundIssuer` when set; `aud` must name one of `BoundAudiences` when set.
    /// The texts are Consul's.
    pub fn check_claims(
        &self,
        claims: &serde_json::Value,
        now: i64,
        strict: bool,
    ) -> Result<(), String> {
        let num = |name: &str| -> Result<i64, String> {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => Ok(0),
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .or_else(|| n.as_f64().map(|f| f as i64))
                    .ok_or_else(|| format!("error validating claims: {name} is not a number")),
                Some(_) => Err(format!("error validating claims: {name} is not a number")),
            }
        };
        let (iat, mut exp, mut nbf) = (num("iat")?, num("exp")?, num("nbf")?);
        if iat == 0 && exp == 0 && nbf == 0 {
            return Err("no issue time, notbefore, or expiration time encoded in token".into());
        }
        if exp == 0 {
            exp = iat.max(nbf) + leeway_s(self.expiration_leeway, DEFAULT_MISSING_S);
        }
        if nbf == 0 {
            nbf = if iat != 0 {
                iat
            } else {
                exp - leeway_s(self.not_before_leeway, DEFAULT_MISSING_S)
            };
        }
        let skew = self.clock_skew_s();
        let invalid = |why: &str| Err(format!("error validating claims: validation failed, {why}"));
        if !self.bound_issuer.is_empty()
            && claims.get("iss").and_then(|v| v.as_str()) != Some(self.bound_issuer.as_str())
        {
            return invalid("invalid issuer claim (iss)");
        }
        if now + skew < nbf {
            return invalid("token not valid yet (nbf)");
        }
        if now - skew > exp {
            return invalid("token is expired (exp)");
        }
        if iat != 0 && now + skew < iat {
            return invalid("token issued in the future (iat)");
        }
        let aud: Vec<&str> = match claims.get("aud") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            Some(_) => return Err("error validating claims: aud is not a string or a list".into()),
        };
        if strict && self.bound_audiences.is_empty() && !aud.is_empty() {
            return Err(
                "error validating claims: audience claim found in JWT but no audiences are bound"
                    .into(),
            );
        }
        if !self.bound_audiences.is_empty()
            && !self
                .bound_audiences
                .iter()
                .any(|b| aud.contains(&b.as_str()))
        {
            return Err(
                "error validating claims: aud claim does not match any bound audience".into(),
            );
        }
        Ok(())
    }

    /// Consul's `oidcauth.Config.Validate`, without its fetches.
    pub fn validate(&self, kind: MethodType) -> Result<(), String> {
        let t = kind.as_str();
        let must = |what: &str| Err(format!("'{what}' must be set for type {t:?}"));
        let must_not = |what: &str| Err(format!("'{what}' must not be set for type {t:?}"));
        match kind {
            MethodType::Oidc => {
                if self.oidc_discovery_url.is_empty() {
                    return must("OIDCDiscoveryURL");
                }
                if self.oidc_client_id.is_empty() {
                    return must("OIDCClientID");
                }
                if self.oidc_client_secret.is_empty() {
                    return must("OIDCClientSecret");
                }
                if self.allowed_redirect_uris.is_empty() {
                    return must("AllowedRedirectURIs");
                }
                for (set, what) in [
                    (!self.jwks_url.is_empty(), "JWKSURL"),
                    (!self.jwks_ca_cert.is_empty(), "JWKSCACert"),
                    (
                        !self.jwt_validation_pub_keys.is_empty(),
                        "JWTValidationPubKeys",
                    ),
                    (!self.bound_issuer.is_empty(), "BoundIssuer"),
                    (self.expiration_leeway != 0, "ExpirationLeeway"),
                    (self.not_before_leeway != 0, "NotBeforeLeeway"),
                    (self.clock_skew_leeway != 0, "ClockSkewLeeway"),
                ] {
                    if set {
                        return must_not(what);
                    }
                }
                let bad: Vec<&str> = self
                    .allowed_redirect_uris
                    .iter()
                    // What Go's url.Parse refuses: control characters and spaces
                    // (in the host), and percent signs that escape nothing.
                    .filter(|u| u.chars().any(|c| c.is_control() || c == ' ') || bad_escape(u))
                    .map(String::as_str)
                    .collect();
                if !bad.is_empty() {
                    return Err(format!(
                        "Invalid AllowedRedirectURIs provided: [{}]",
                        bad.join(" ")
                    ));
                }
            }
            MethodType::Jwt => {
                for (set, what) in [
                    (!self.oidc_client_id.is_empty(), "OIDCClientID"),
                    (!self.oidc_client_secret.is_empty(), "OIDCClientSecret"),
                    (!self.oidc_scopes.is_empty(), "OIDCScopes"),
                    (!self.oidc_acr_values.is_empty(), "OIDCACRValues"),
                    (
                        !self.allowed_redirect_uris.is_empty(),
                        "AllowedRedirectURIs",
                    ),
                    (self.verbose_oidc_logging, "VerboseOIDCLogging"),
                ] {
                    if set {
                        return must_not(what);
                    }
                }
                let sources = [
                    !self.oidc_discovery_url.is_empty(),
                    !self.jwt_validation_pub_keys.is_empty(),
                    !self.jwks_url.is_empty(),
                ];
                if sources.iter().filter(|s| **s).count() != 1 {
                    return Err(format!(
                        "exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL' must be set for type {t:?}"
                    ));
                }
                if self.jwks_url.is_empty() && !self.jwks_ca_cert.is_empty() {
                    return Err("'JWKSCACert' should not be set unless 'JWKSURL' is set".into());
                }
            }
        }
        if self.oidc_discovery_url.is_empty() && !self.oidc_discovery_ca_cert.is_empty() {
            return Err(
                "'OIDCDiscoveryCACert' should not be set unless 'OIDCDiscoveryURL' is set".into(),
            );
        }
        if let Some(a) = self
            .jwt_supported_algs
            .iter()
            .find(|a| !SUPPORTED_ALGS.contains(&a.as_str()))
        {
            return Err(format!("Invalid supported algorithm: {a}"));
        }
        for (what, map) in [
            ("ClaimMappings", &self.claim_mappings),
            ("ListClaimMappings", &self.list_claim_mappings),
        ] {
            let mut targets = std::collections::BTreeSet::new();
            for target in map.values() {
                if !targets.insert(target) {
                    return Err(format!(
                        "{what} contains multiple mappings for key {target:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn method(v: serde_json::Value) -> AuthMethod {
        serde_json::from_value(v).unwrap()
    }

    /// Nomad's `nomad setup consul` method: JWKS, bound audiences, claim mappings.
    fn nomad() -> serde_json::Value {
        json!({"Name": "nomad-workloads", "Type": "jwt", "DisplayName": "Nomad Workloads",
            "MaxTokenTTL": "1h", "TokenLocality": "local",
            "Config": {"JWKSURL": "https://nomad.example:4646/.well-known/jwks.json",
                "JWTSupportedAlgs": ["RS256"], "BoundAudiences": ["consul.io"],
                "ClaimMappings": {"nomad_namespace": "nomad_namespace",
                    "nomad_job_id": "nomad_job_id", "nomad_task": "nomad_task",
                    "nomad_service": "nomad_service"}}})
    }

    #[test]
    fn nomads_method_is_valid_and_round_trips() {
        let mut m = method(nomad());
        m.validate(None).unwrap();
        assert_eq!(m.max_token_ttl, 3600 * 1_000_000_000);
        let out = serde_json::to_value(&m).unwrap();
        assert_eq!(out["MaxTokenTTL"], "1h0m0s");
        assert_eq!(out["Config"]["BoundAudiences"], json!(["consul.io"]));
        assert_eq!(method(out), m);
    }

    #[test]
    fn each_mistake_gets_consuls_text() {
        let with = |patch: serde_json::Value| {
            let mut v = nomad();
            for (k, val) in patch.as_object().unwrap() {
                if k == "Config" {
                    for (ck, cv) in val.as_object().unwrap() {
                        v["Config"][ck] = cv.clone();
                    }
                } else {
                    v[k] = val.clone();
                }
            }
            let mut m = method(v);
            m.validate(None).unwrap_err().0
        };
        for (patch, want) in [
            (json!({"Name": ""}), "Invalid Auth Method: no Name is set"),
            (json!({"Name": "no spaces"}), "Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"),
            (json!({"Type": "kubernetes"}), "Invalid Auth Method: Type should be one of: [jwt oidc]"),
            (json!({"MaxTokenTTL": "30s"}), "MaxTokenTTL 30s cannot be less than 1m0s"),
            (json!({"MaxTokenTTL": "25h"}), "MaxTokenTTL 25h0m0s cannot be more than 24h0m0s"),
            (json!({"TokenLocality": "everywhere"}), "Invalid Auth Method: TokenLocality should be one of 'local' or 'global'"),
            (json!({"Config": {"OIDCDiscoveryURL": "https://idp.example/"}}), "Invalid Auth Method: exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL' must be set for type \"jwt\""),
            (json!({"Config": {"OIDCClientID": "x"}}), "Invalid Auth Method: 'OIDCClientID' must not be set for type \"jwt\""),
            (json!({"Config": {"JWTSupportedAlgs": ["HS256"]}}), "Invalid Auth Method: Invalid supported algorithm: HS256"),
            (json!({"Config": {"ListClaimMappings": {"a": "x", "b": "x"}}}), "Invalid Auth Method: ListClaimMappings contains multiple mappings for key \"x\""),
            (json!({"Config": {"OIDCDiscoveryCACert": "pem"}}), "Invalid Auth Method: 'OIDCDiscoveryCACert' should not be set unless 'OIDCDiscoveryURL' is set"),
        ] {
            assert_eq!(with(patch.clone()), want, "{patch}");
        }
    }

    /// Consul's claim checks after the signature: each failure named as Consul
    /// names it; leeways for the times a token leaves out.
    #[test]
    fn login_claims_are_checked_as_consul_checks_them() {
        let m = method(nomad());
        let now = 1_000_000;
        let ok = json!({"iat": now - 10, "exp": now + 300, "aud": "consul.io"});
        m.config.check_claims(&ok, now, true).unwrap();
        for (claims, want) in [
            (
                json!({"aud": "consul.io"}),
                "no issue time, notbefore, or expiration time encoded in token",
            ),
            (
                json!({"exp": now - 61, "aud": "consul.io"}),
                "error validating claims: validation failed, token is expired (exp)",
            ),
            (
                json!({"iat": now - 211, "aud": "consul.io"}),
                "error validating claims: validation failed, token is expired (exp)",
            ),
            (
                json!({"nbf": now + 61, "exp": now + 600, "aud": "consul.io"}),
                "error validating claims: validation failed, token not valid yet (nbf)",
            ),
            (
                json!({"iat": now + 61, "exp": now + 600, "aud": "consul.io"}),
                "error validating claims: validation failed, token not valid yet (nbf)",
            ),
            (
                json!({"exp": now + 60, "aud": ["other"]}),
                "error validating claims: aud claim does not match any bound audience",
            ),
            (
                json!({"exp": now + 60}),
                "error validating claims: aud claim does not match any bound audience",
            ),
        ] {
            assert_eq!(
                m.config.check_claims(&claims, now, true).unwrap_err(),
                want,
                "{claims}"
            );
        }
        // Within the default leeways: 60 s of skew, 150 s for a missing `exp`.
        m.config
            .check_claims(&json!({"iat": now - 200, "aud": "consul.io"}), now, true)
            .unwrap();
        let mut unbound = m.config.clone();
        unbound.bound_audiences.clear();
        unbound.bound_issuer = "https://nomad.example".into();
        assert_eq!(
            unbound
                .check_claims(
                    &json!({"exp": now + 60, "aud": "x", "iss": "https://nomad.example"}),
                    now,
                    true
                )
                .unwrap_err(),
            "error validating claims: audience claim found in JWT but no audiences are bound"
        );
        unbound
            .check_claims(
                &json!({"exp": now + 60, "aud": "x", "iss": "https://nomad.example"}),
                now,
                false,
            )
            .unwrap();
        assert_eq!(
            unbound
                .check_claims(
                    &json!({"exp": now + 60, "iss": "https://evil.example"}),
                    now,
                    true
                )
                .unwrap_err(),
            "error validating claims: validation failed, invalid issuer claim (iss)"
        );
    }

    #[test]
    fn an_oidc_method_needs_its_client_and_redirects_and_the_type_is_immutable() {
        let mut m = method(json!({"Name": "sso", "Type": "oidc",
            "Config": {"OIDCDiscoveryURL": "https://idp.example/", "OIDCClientID": "tribune"}}));
        assert_eq!(
            m.validate(None).unwrap_err().0,
            "Invalid Auth Method: 'OIDCClientSecret' must be set for type \"oidc\""
        );
        m.config.oidc_client_secret = "s".into();
        m.config.allowed_redirect_uris = vec!["http://localhost:8550/oidc/callback".into()];
        m.validate(None).unwrap();
        let stored = m.clone();
        let mut update = method(json!({"Name": "sso",
            "Config": {"OIDCDiscoveryURL": "https://idp.example/", "OIDCClientID": "tribune",
                "OIDCClientSecret": "s", "AllowedRedirectURIs": ["http://localhost:8550/oidc/callback"]}}));
        update.validate(Some(&stored)).unwrap();
        assert_eq!(update.r#type, "oidc", "an update without Type keeps it");
        let mut bad = update.clone();
        bad.config.allowed_redirect_uris = vec!["http://localhost/%zz".into()];
        assert_eq!(
            bad.validate(Some(&stored)).unwrap_err().0,
            "Invalid Auth Method: Invalid AllowedRedirectURIs provided: [http://localhost/%zz]"
        );
        update.r#type = "jwt".into();
        assert_eq!(
            update.validate(Some(&stored)).unwrap_err().0,
            "the Type field of an Auth Method is immutable"
        );
    }
}
