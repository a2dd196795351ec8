//! JSON Web Key Sets (RFC 7517/7518, RFC 8037): parsed once into verification keys
//! whose algorithm family is pinned by `kty`.

use crate::token::{Alg, Jws};
use crate::JwtError;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};
use std::fmt;

/// How many candidate keys one token may be tried against (no `kid`, or a repeated one).
const MAX_CANDIDATES: usize = 8;
const MIN_RSA_BITS: usize = 2048;

/// JWK members are base64url without padding; tolerate padding some servers add.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

enum Material {
    /// One pre-parsed public key per algorithm the key may verify.
    Public(Vec<(Alg, ParsedPublicKey)>),
    Hmac(Vec<(Alg, hmac::Key)>),
}

struct Key {
    kid: Option<String>,
    material: Material,
}

impl Key {
    fn algs(&self) -> Vec<&'static str> {
        match &self.material {
            Material::Public(v) => v.iter().map(|(a, _)| a.as_str()).collect(),
            Material::Hmac(v) => v.iter().map(|(a, _)| a.as_str()).collect(),
        }
    }

    fn supports(&self, alg: Alg) -> bool {
        match &self.material {
            Material::Public(v) => v.iter().any(|(a, _)| *a == alg),
            Material::Hmac(v) => v.iter().any(|(a, _)| *a == alg),
        }
    }

    fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Public(v) => v
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, k)| k.verify_sig(msg, sig).is_ok()),
            Material::Hmac(v) => v
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, k)| hmac::verify(k, msg, sig).is_ok()),
        }
    }
}

/// A key set with no usable key, or that is not a JWKS at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetError(pub String);

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeySetError {}

/// Verification keys of one provider.
pub struct Jwks {
    keys: Vec<Key>,
    /// Keys that were skipped, and why.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("keys", &self.keys.len())
            .field("warnings", &self.warnings)
            .finish()
    }
}

fn b64(m: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = m
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing {name:?}"))?;
    B64URL
        .decode(s)
        .map_err(|_| format!("{name:?} is not base64url"))
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der_uint(b: &[u8], out: &mut Vec<u8>) {
    let trimmed: &[u8] = match b.iter().position(|x| *x != 0) {
        Some(i) => &b[i..],
        None => &[0],
    };
    let pad = trimmed[0] & 0x80 != 0;
    out.push(0x02);
    der_len(trimmed.len() + usize::from(pad), out);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_uint(n, &mut body);
    der_uint(e, &mut body);
    let mut out = vec![0x30];
    der_len(body.len(), &mut out);
    out.extend(body);
    out
}

fn rsa_params(alg: Alg) -> Option<&'static signature::RsaParameters> {
    Some(match alg {
        Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn parse_key(m: &Map<String, Value>) -> Result<Key, String> {
    let kty = m
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("missing \"kty\"")?;
    if let Some(u) = m.get("use") {
        if u.as_str() != Some("sig") {
            return Err(format!("\"use\" is {u}, not \"sig\""));
        }
    }
    if let Some(ops) = m.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err("\"key_ops\" does not include \"verify\"".into());
        }
    }
    let declared = match m.get("alg") {
        None => None,
        Some(Value::String(a)) => {
            Some(Alg::parse(a).ok_or_else(|| format!("unsupported \"alg\" {a:?}"))?)
        }
        Some(other) => return Err(format!("\"alg\" is not a string: {other}")),
    };
    let kid = match m.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(other) => return Err(format!("\"kid\" is not a string: {other}")),
    };
    let allowed = |family: &[Alg]| -> Result<Vec<Alg>, String> {
        match declared {
            None => Ok(family.to_vec()),
            Some(a) if family.contains(&a) => Ok(vec![a]),
            Some(a) => Err(format!("\"alg\" {} does not match kty {kty:?}", a.as_str())),
        }
    };
    let material = match kty {
        "RSA" => {
            let n = b64(m, "n")?;
            let e = b64(m, "e")?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits is below {MIN_RSA_BITS}"
                ));
            }
            let der = rsa_der(&n, &e);
            let mut keys = Vec::new();
            for alg in allowed(&[
                Alg::RS256,
                Alg::RS384,
                Alg::RS512,
                Alg::PS256,
                Alg::PS384,
                Alg::PS512,
            ])? {
                let params = rsa_params(alg).ok_or("internal: not an RSA alg")?;
                let k = ParsedPublicKey::new(params, &der)
                    .map_err(|e| format!("invalid RSA key: {e}"))?;
                keys.push((alg, k));
            }
            Material::Public(keys)
        }
        "EC" => {
            let crv = m
                .get("crv")
                .and_then(Value::as_str)
                .ok_or("missing \"crv\"")?;
            let (alg, size, verify_alg): (
                Alg,
                usize,
                &'static signature::EcdsaVerificationAlgorithm,
            ) = match crv {
                "P-256" => (Alg::ES256, 32, &signature::ECDSA_P256_SHA256_FIXED),
                "P-384" => (Alg::ES384, 48, &signature::ECDSA_P384_SHA384_FIXED),
                "P-521" => (Alg::ES512, 66, &signature::ECDSA_P521_SHA512_FIXED),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            allowed(&[alg])?;
            let x = b64(m, "x")?;
            let y = b64(m, "y")?;
            if x.len() != size || y.len() != size {
                return Err(format!("EC coordinates must be {size} bytes for {crv}"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend(x);
            point.extend(y);
            let k = ParsedPublicKey::new(verify_alg, &point)
                .map_err(|e| format!("EC point rejected: {e}"))?;
            Material::Public(vec![(alg, k)])
        }
        "OKP" => {
            let crv = m
                .get("crv")
                .and_then(Value::as_str)
                .ok_or("missing \"crv\"")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve {crv:?}"));
            }
            allowed(&[Alg::EdDSA])?;
            let x = b64(m, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes".into());
            }
            let k = ParsedPublicKey::new(&signature::ED25519, &x)
                .map_err(|e| format!("Ed25519 key rejected: {e}"))?;
            Material::Public(vec![(Alg::EdDSA, k)])
        }
        "oct" => {
            let k = b64(m, "k")?;
            let mut keys = Vec::new();
            for alg in allowed(&[Alg::HS256, Alg::HS384, Alg::HS512])? {
                let (hash, min) = match alg {
                    Alg::HS256 => (hmac::HMAC_SHA256, 32),
                    Alg::HS384 => (hmac::HMAC_SHA384, 48),
                    _ => (hmac::HMAC_SHA512, 64),
                };
                if k.len() >= min {
                    keys.push((alg, hmac::Key::new(hash, &k)));
                } else if declared.is_some() {
                    return Err(format!(
                        "{} secret must be at least {min} bytes",
                        alg.as_str()
                    ));
                }
            }
            if keys.is_empty() {
                return Err("HMAC secret shorter than 32 bytes".into());
            }
            Material::Hmac(keys)
        }
        other => return Err(format!("unsupported kty {other:?}")),
    };
    Ok(Key { kid, material })
}

/// One key of a JWKS document as [`Jwks::inspect`] sees it: what it says it is, the
/// algorithms Tribune would verify with it, or why it is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub index: usize,
    pub kid: Option<String>,
    pub kty: Option<String>,
    /// The key's declared `alg`, if any.
    pub alg: Option<String>,
    /// The algorithms tokens signed with this key may use (empty when skipped).
    pub algs: Vec<&'static str>,
    /// Why the key is skipped (None: usable).
    pub problem: Option<String>,
}

/// The `keys` list of a JWKS document.
fn key_list(json: &[u8]) -> Result<Vec<Value>, KeySetError> {
    let v: Value = serde_json::from_slice(json)
        .map_err(|e| KeySetError(format!("JWKS is not valid JSON: {e}")))?;
    match v {
        Value::Object(mut m) => match m.remove("keys") {
            Some(Value::Array(list)) => Ok(list),
            _ => Err(KeySetError("JWKS has no \"keys\" list".into())),
        },
        _ => Err(KeySetError("JWKS has no \"keys\" list".into())),
    }
}

/// Each key of a `keys` list, parsed (or why not), with its JSON object.
fn each_key(
    list: &[Value],
) -> impl Iterator<Item = (usize, Option<&Map<String, Value>>, Result<Key, String>)> {
    list.iter().enumerate().map(|(i, k)| match k.as_object() {
        None => (i, None, Err("not an object".to_string())),
        Some(m) => (i, Some(m), parse_key(m)),
    })
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`); unusable keys are skipped with a
    /// warning; a set without any usable key is an error.
    pub fn parse(json: &[u8]) -> Result<Jwks, KeySetError> {
        let list = key_list(json)?;
        let mut keys = Vec::new();
        let mut warnings = Vec::new();
        for (i, m, parsed) in each_key(&list) {
            match parsed {
                Ok(key) => keys.push(key),
                Err(e) => warnings.push(format!(
                    "key {i}{}: {e}",
                    m.and_then(|m| m.get("kid"))
                        .and_then(Value::as_str)
                        .map(|k| format!(" (kid {k:?})"))
                        .unwrap_or_default()
                )),
            }
        }
        if keys.is_empty() {
            return Err(KeySetError(if warnings.is_empty() {
                "JWKS has no keys".into()
            } else {
                format!("JWKS has no usable key: {}", warnings.join("; "))
            }));
        }
        Ok(Jwks { keys, warnings })
    }

    /// Keys given as DER `SubjectPublicKeyInfo`s (an auth method's
    /// `JWTValidationPubKeys`). Each verifies only the algorithms of its own type:
    /// RSA (RS*, PS*, at least 2048 bits), one EC curve (ES256, ES384 or ES512), or
    /// Ed25519. Never HMAC: a public key is not a shared secret, so a token signed
    /// HS256 with the key's bytes (algorithm confusion) verifies with nothing here.
    pub fn from_public_keys(spkis: &[Vec<u8>]) -> Result<Jwks, KeySetError> {
        const RSA: [Alg; 6] = [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
        ];
        let ec: [(Alg, &'static signature::EcdsaVerificationAlgorithm); 3] = [
            (Alg::ES256, &signature::ECDSA_P256_SHA256_FIXED),
            (Alg::ES384, &signature::ECDSA_P384_SHA384_FIXED),
            (Alg::ES512, &signature::ECDSA_P521_SHA512_FIXED),
        ];
        let mut keys = Vec::with_capacity(spkis.len());
        for (i, der) in spkis.iter().enumerate() {
            let mut found: Vec<(Alg, ParsedPublicKey)> = Vec::new();
            for alg in RSA {
                let params = rsa_params(alg)
                    .ok_or_else(|| KeySetError("internal: not an RSA alg".into()))?;
                if let Ok(k) = ParsedPublicKey::new(params, der) {
                    found.push((alg, k));
                }
            }
            if found.is_empty() {
                for (alg, verify) in ec {
                    if let Ok(k) = ParsedPublicKey::new(verify, der) {
                        found.push((alg, k));
                        break;
                    }
                }
            }
            if found.is_empty() {
                if let Ok(k) = ParsedPublicKey::new(&signature::ED25519, der) {
                    found.push((Alg::EdDSA, k));
                }
            }
            if found.is_empty() {
                return Err(KeySetError(format!(
                    "public key {i}: not an RSA (2048 bits or more), ECDSA (P-256, P-384, P-521) or Ed25519 key"
                )));
            }
            keys.push(Key {
                kid: None,
                material: Material::Public(found),
            });
        }
        if keys.is_empty() {
            return Err(KeySetError("no public keys".into()));
        }
        Ok(Jwks {
            keys,
            warnings: Vec::new(),
        })
    }

    /// Every key of a JWKS document, usable or not, as [`Jwks::parse`] judges it (what
    /// `jwt-provider check` reports). Errs only when the document is not a key set.
    pub fn inspect(json: &[u8]) -> Result<Vec<KeyInfo>, KeySetError> {
        let list = key_list(json)?;
        let text = |m: Option<&Map<String, Value>>, name: &str| {
            m.and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Ok(each_key(&list)
            .map(|(index, m, parsed)| {
                let (algs, problem) = match parsed {
                    Ok(key) => (key.algs(), None),
                    Err(e) => (Vec::new(), Some(e)),
                };
                KeyInfo {
                    index,
                    kid: text(m, "kid"),
                    kty: text(m, "kty"),
                    alg: text(m, "alg"),
                    algs,
                    problem,
                }
            })
            .collect())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether any key carries this `kid` (for a rotation refetch decision).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Checks the signature with the keys that may verify it: same family as `alg`,
    /// and matching `kid` when both the token and the key have one.
    pub fn verify_signature(&self, jws: &Jws<'_>) -> Result<(), JwtError> {
        self.verify_raw(
            jws.alg,
            jws.kid.as_deref(),
            jws.signing_input.as_bytes(),
            &jws.signature,
        )
    }

    /// The key-selection and signature step on raw bytes (what known-answer vectors
    /// exercise): `UnknownKey` when no key may verify `alg`/`kid`, `BadSignature` when
    /// none of the candidates (at most eight) accepts the signature.
    pub fn verify_raw(
        &self,
        alg: Alg,
        kid: Option<&str>,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), JwtError> {
        let mut tried = 0;
        for key in &self.keys {
            let kid_ok = match (kid, &key.kid) {
                (Some(t), Some(k)) => t == k,
                _ => true,
            };
            if !kid_ok || !key.supports(alg) {
                continue;
            }
            if tried == MAX_CANDIDATES {
                break;
            }
            tried += 1;
            if key.verify(alg, msg, sig) {
                return Ok(());
            }
        }
        if tried == 0 {
            Err(JwtError::UnknownKey)
        } else {
            Err(JwtError::BadSignature)
        }
    }
}
