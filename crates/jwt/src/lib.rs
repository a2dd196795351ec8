//! Tribune's JWT engine: compact JWS parsing, JSON Web Key Sets, signature and claims
//! verification. No I/O; the caller passes the current time.
//!
//! Security defaults (DEVELOPERS.md, RFC 8725):
//! - compact serialization only: three unpadded base64url segments, size-bounded;
//! - `alg` from an allow-list, case-sensitive; `none` in any casing is rejected;
//! - header keys `jwk`, `jku`, `x5u`, `x5c` are never used; any `crit` is rejected
//!   (no extension is understood); `b64: false` is rejected;
//! - JSON with duplicate member names is rejected (header and payload);
//! - the key family is pinned by the JWK's `kty`: an HS token can never be checked
//!   with an RSA or EC key's bytes; a key's `alg`, `use` and `key_ops` are honoured;
//! - RSA keys of at least 2048 bits, EC points validated on their curve, HMAC
//!   secrets at least as long as the hash; HMAC compared in constant time;
//! - unknown keys fail closed.

#![forbid(unsafe_code)]

pub mod cache;
mod header;
pub mod json;
pub mod jwks;
pub mod locate;
pub mod token;

use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use tribune_model::claims::json_str;
pub use tribune_model::Claims;

pub use cache::{CachedVerifier, DEFAULT_CACHE_SIZE};
pub use jwks::{Jwks, KeyInfo, KeySetError};
pub use token::{Alg, Jws, DEFAULT_MAX_TOKEN_BYTES};

/// Why a token was not accepted. `text()` gives the short, Envoy-style message that
/// may be shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    TooLarge {
        limit: usize,
    },
    Malformed(&'static str),
    UnsupportedAlgorithm(String),
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuerMismatch,
    AudienceNotAllowed,
    /// A registered claim has the wrong JSON type (`exp` as a string, ...).
    ClaimType(&'static str),
    /// No keys are available for the provider (fetch failed, never fetched).
    KeysUnavailable,
}

impl JwtError {
    pub fn text(&self) -> &'static str {
        match self {
            JwtError::Missing => "Jwt is missing",
            JwtError::TooLarge { .. } => "Jwt is too large",
            JwtError::Malformed(m) => m,
            JwtError::UnsupportedAlgorithm(_) => "Jwt header [alg] is not supported",
            JwtError::UnknownKey => "Jwks doesn't have key to match kid or alg from Jwt",
            JwtError::BadSignature => "Jwt verification fails",
            JwtError::Expired => "Jwt is expired",
            JwtError::NotYetValid => "Jwt not yet valid",
            JwtError::IssuerMismatch => "Jwt issuer is not configured",
            JwtError::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtError::ClaimType(c) => match *c {
                "exp" => "Jwt payload [exp] field is not a number",
                "nbf" => "Jwt payload [nbf] field is not a number",
                "iss" => "Jwt payload [iss] field is not a string",
                "aud" => "Jwt payload [aud] field is not a string or string list",
                _ => "Jwt payload has a claim of the wrong type",
            },
            JwtError::KeysUnavailable => "Jwks remote fetch is failed",
        }
    }
}

/// Why a token failed, without the details: what metrics and logs count by. Every
/// [`JwtError`] has one ([`JwtError::code`]); [`JwtCode::ALL`] lists them, so a
/// metric indexed by it cannot miss one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtCode {
    Missing,
    TooLarge,
    Malformed,
    UnsupportedAlgorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuerMismatch,
    AudienceNotAllowed,
    ClaimType,
    KeysUnavailable,
}

impl JwtCode {
    pub const ALL: [JwtCode; 12] = [
        JwtCode::Missing,
        JwtCode::TooLarge,
        JwtCode::Malformed,
        JwtCode::UnsupportedAlgorithm,
        JwtCode::UnknownKey,
        JwtCode::BadSignature,
        JwtCode::Expired,
        JwtCode::NotYetValid,
        JwtCode::IssuerMismatch,
        JwtCode::AudienceNotAllowed,
        JwtCode::ClaimType,
        JwtCode::KeysUnavailable,
    ];

    /// The stable label (`expired`, `bad_signature`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JwtCode::Missing => "missing",
            JwtCode::TooLarge => "too_large",
            JwtCode::Malformed => "malformed",
            JwtCode::UnsupportedAlgorithm => "unsupported_algorithm",
            JwtCode::UnknownKey => "unknown_key",
            JwtCode::BadSignature => "bad_signature",
            JwtCode::Expired => "expired",
            JwtCode::NotYetValid => "not_yet_valid",
            JwtCode::IssuerMismatch => "issuer_mismatch",
            JwtCode::AudienceNotAllowed => "audience_not_allowed",
            JwtCode::ClaimType => "claim_type",
            JwtCode::KeysUnavailable => "keys_unavailable",
        }
    }
}

impl JwtError {
    /// The error's code, for metrics and logs.
    pub fn code(&self) -> JwtCode {
        match self {
            JwtError::Missing => JwtCode::Missing,
            JwtError::TooLarge { .. } => JwtCode::TooLarge,
            JwtError::Malformed(_) => JwtCode::Malformed,
            JwtError::UnsupportedAlgorithm(_) => JwtCode::UnsupportedAlgorithm,
            JwtError::UnknownKey => JwtCode::UnknownKey,
            JwtError::BadSignature => JwtCode::BadSignature,
            JwtError::Expired => JwtCode::Expired,
            JwtError::NotYetValid => JwtCode::NotYetValid,
            JwtError::IssuerMismatch => JwtCode::IssuerMismatch,
            JwtError::AudienceNotAllowed => JwtCode::AudienceNotAllowed,
            JwtError::ClaimType(_) => JwtCode::ClaimType,
            JwtError::KeysUnavailable => JwtCode::KeysUnavailable,
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for JwtError {}

/// How one provider verifies tokens (from its `jwt-provider` entry) and its keys.
#[derive(Clone)]
pub struct Verifier {
    pub provider: String,
    issuer: String,
    audiences: Vec<String>,
    skew_seconds: i64,
    max_token_bytes: usize,
    keys: Arc<Jwks>,
    /// Shared by clones: the same provider's tokens.
    header: Arc<token::HeaderMemo>,
}

impl Verifier {
    pub fn new(provider: &tribune_model::JwtProvider, keys: Arc<Jwks>) -> Self {
        Verifier {
            provider: provider.name.clone(),
            issuer: provider.issuer.clone(),
            audiences: provider.audiences.clone(),
            skew_seconds: provider.clock_skew_seconds.max(0),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            keys,
            header: Arc::default(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key set this verifier checks signatures with.
    pub fn keys(&self) -> &Arc<Jwks> {
        &self.keys
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch) and returns the payload.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        self.verify_parsed(self.parse(token)?, now)
    }

    /// Parses `token` under this verifier's size bound (not verified yet).
    pub fn parse<'a>(&self, token: &'a str) -> Result<Jws<'a>, JwtError> {
        Jws::parse_remembering(token, self.max_token_bytes, Some(&self.header))
    }

    /// [`Self::verify`] for a token already parsed with [`Self::parse`] (callers that
    /// read its unverified `iss` to route it first decode it once).
    pub fn verify_parsed(&self, jws: Jws<'_>, now: i64) -> Result<Claims, JwtError> {
        self.verify_parsed_timed(jws, now)
            .map(|(payload, _)| payload)
    }

    /// [`Self::verify_parsed`], also giving the token's `exp` and `nbf` (what a cache
    /// re-checks on every hit).
    pub fn verify_parsed_timed(&self, jws: Jws<'_>, now: i64) -> Result<(Claims, Times), JwtError> {
        self.keys.verify_signature(&jws)?;
        let times = check_registered(
            &jws.payload,
            &self.issuer,
            &self.audiences,
            self.skew_seconds,
            now,
        )?;
        Ok((jws.payload, times))
    }
}

/// A verified token's `exp` and `nbf`, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
}

/// The registered claims [`check_claims`] reads (their JSON text), found in one pass
/// over the payload's members.
#[derive(Default)]
struct Registered<'p> {
    exp: Option<&'p str>,
    nbf: Option<&'p str>,
    iss: Option<&'p str>,
    aud: Option<&'p str>,
}

impl<'p> Registered<'p> {
    fn of(payload: &'p Claims) -> Self {
        let mut r = Registered::default();
        for (k, v) in payload.members() {
            match k {
                "exp" => r.exp = Some(v),
                "nbf" => r.nbf = Some(v),
                "iss" => r.iss = Some(v),
                "aud" => r.aud = Some(v),
                _ => {}
            }
        }
        r
    }
}

/// Registered-claim checks (decisions.md #4: `ClockSkewSeconds` for `exp` and `nbf`).
pub fn check_claims(
    payload: &Claims,
    issuer: &str,
    audiences: &[String],
    skew: i64,
    now: i64,
) -> Result<(), JwtError> {
    check_registered(payload, issuer, audiences, skew, now).map(|_| ())
}

/// [`check_claims`], giving `exp` and `nbf` when they pass.
fn check_registered(
    payload: &Claims,
    issuer: &str,
    audiences: &[String],
    skew: i64,
    now: i64,
) -> Result<Times, JwtError> {
    let claims = Registered::of(payload);
    // A NumericDate: an integer, or a number with a fraction (truncated).
    let number = |name: &'static str, raw: Option<&str>| -> Result<Option<i64>, JwtError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let n: serde_json::Number =
            serde_json::from_str(raw).map_err(|_| JwtError::ClaimType(name))?;
        n.as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(JwtError::ClaimType(name))
    };
    let exp = number("exp", claims.exp)?;
    if exp.is_some_and(|exp| now > exp.saturating_add(skew)) {
        return Err(JwtError::Expired);
    }
    let nbf = number("nbf", claims.nbf)?;
    if nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if !issuer.is_empty() {
        match claims.iss.map(|raw| (raw, json_str(raw))) {
            Some((_, Some(s))) if s == issuer => {}
            Some((_, Some(_))) | None => return Err(JwtError::IssuerMismatch),
            Some((_, None)) => return Err(JwtError::ClaimType("iss")),
        }
    }
    if !audiences.is_empty() {
        let ok = match claims.aud {
            None => false,
            Some(raw) if raw.starts_with('"') => {
                json_str(raw).is_some_and(|s| audiences.iter().any(|a| *a == s))
            }
            Some(raw) if raw.starts_with('[') => {
                let items: Vec<Value> =
                    serde_json::from_str(raw).map_err(|_| JwtError::ClaimType("aud"))?;
                let mut any = false;
                for i in items {
                    match i {
                        Value::String(s) => any |= audiences.contains(&s),
                        _ => return Err(JwtError::ClaimType("aud")),
                    }
                }
                any
            }
            Some(_) => return Err(JwtError::ClaimType("aud")),
        };
        if !ok {
            return Err(JwtError::AudienceNotAllowed);
        }
    }
    Ok(Times { exp, nbf })
}

/// The `iss` of a token without verifying it: only for routing a token to the
/// provider whose Issuer it names (never for a decision).
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss<'a> {
        #[serde(borrow)]
        iss: Option<std::borrow::Cow<'a, str>>,
    }
    let payload = token.split('.').nth(1)?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    // Only `iss` is read (other members are skipped without building values).
    let v: Iss<'_> = serde_json::from_slice(&bytes).ok()?;
    v.iss.map(std::borrow::Cow::into_owned)
}

/// Why a token found at a provider's locations is not addressed to it (so the
/// provider saw no token of its own), read without verification: for diagnostics
/// only, never for a decision to allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stray {
    /// Not a JWS in compact form (Envoy's text: two dots and three base64url
    /// sections, a JSON payload).
    Malformed(&'static str),
    /// A JWT whose `iss` (`None`: it has none) is not the provider's Issuer.
    OtherIssuer(Option<Box<str>>),
    /// No token where the provider looks, but one naming its Issuer where it does not
    /// look (`header Authorization`, `a location of provider "b"`, ...).
    Elsewhere(Box<str>),
}

impl Stray {
    /// Reads `token` as far as telling why it is not addressed to a provider.
    pub fn of(token: &str) -> Stray {
        // Only `iss` is kept; the other members are skipped (serde_json's recursion
        // limit bounds a deep payload).
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: Option<serde_json::Value>,
        }
        const FORM: &str =
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Stray::Malformed(FORM);
        };
        use base64::Engine;
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
            return Stray::Malformed(FORM);
        };
        match serde_json::from_slice::<Iss>(&bytes) {
            Err(_) => Stray::Malformed("Jwt payload is an invalid JSON"),
            Ok(v) => Stray::OtherIssuer(v.iss.and_then(|i| i.as_str().map(Box::from))),
        }
    }
}

/// The `kid` of a token's header, read without verification (to pick or refetch keys).
pub fn unverified_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("kid")?.as_str().map(str::to_string)
}
