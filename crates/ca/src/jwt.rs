//! JWT-SVIDs (issue #45): JWTs naming a service by its SPIFFE ID, signed by a key of
//! the trust domain's own CA, per the SPIFFE JWT-SVID specification: `sub` is the
//! SPIFFE ID, `aud` is required, `exp` is short (5 minutes by default), `kid` names
//! the key in the header. No I/O; the time and the claims' issuer are passed in.
//!
//! Keys are ES256 (P-256) by default, RS256 (2048 bits) when a consumer needs it.
//! They rotate with the CA: a retired key no longer signs but stays published until
//! the last token it signed has expired ([`JwtKey::published_at`]).

use crate::{CaError, ServiceId};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

/// A JWT-SVID's lifetime unless asked otherwise.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(300);
/// The longest lifetime a JWT-SVID may be given (and how long a retired key stays
/// published).
pub const MAX_SVID_TTL: Duration = Duration::from_secs(3600);

/// The algorithm a trust domain signs JWT-SVIDs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Es256,
    Rs256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 2] = [SigningAlg::Es256, SigningAlg::Rs256];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::Rs256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<SigningAlg> {
        SigningAlg::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One signing key of a trust domain. `pkcs8` is the private key (it never leaves
/// the agent); everything a verifier needs is in [`JwtKey::jwk`].
#[derive(Clone, PartialEq, Eq)]
pub struct JwtKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub pkcs8: Vec<u8>,
    /// Unix seconds.
    pub created: i64,
    /// When it stopped signing (a newer key took over), if it did.
    pub retired: Option<i64>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("pkcs8", &"<redacted>")
            .finish()
    }
}

fn fail(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> CaError + '_ {
    move |_| CaError(format!("{what} failed"))
}

impl JwtKey {
    /// A new key; its `kid` is its RFC 7638 thumbprint.
    pub fn generate(alg: SigningAlg, now: i64) -> Result<JwtKey, CaError> {
        let pkcs8 = match alg {
            SigningAlg::Es256 => EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(fail("generating a P-256 key"))?
            .as_ref()
            .to_vec(),
            SigningAlg::Rs256 => {
                let k = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| CaError("generating an RSA key failed".into()))?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = k
                    .as_der()
                    .map_err(|_| CaError("encoding an RSA key failed".into()))?;
                der.as_ref().to_vec()
            }
        };
        let mut key = JwtKey {
            kid: String::new(),
            alg,
            pkcs8,
            created: now,
            retired: None,
        };
        key.kid = thumbprint(&key.public_members()?);
        Ok(key)
    }

    /// The public members of the key's JWK (what the thumbprint covers).
    fn public_members(&self) -> Result<Value, CaError> {
        Ok(match self.alg {
            SigningAlg::Es256 => {
                let k = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.pkcs8,
                )
                .map_err(|_| CaError("stored P-256 key unreadable".into()))?;
                let point = k.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(CaError("unexpected P-256 public key encoding".into()));
                }
                json!({"crv": "P-256", "kty": "EC",
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
            }
            SigningAlg::Rs256 => {
                let k = RsaKeyPair::from_pkcs8(&self.pkcs8)
                    .map_err(|_| CaError("stored RSA key unreadable".into()))?;
                let p = k.public_key();
                json!({"e": B64.encode(p.exponent().big_endian_without_leading_zero()),
                    "kty": "RSA",
                    "n": B64.encode(p.modulus().big_endian_without_leading_zero())})
            }
        })
    }

    /// The key as a verifier's JWK: public members, `kid`, `alg`, `use: sig`.
    pub fn jwk(&self) -> Result<Value, CaError> {
        let mut v = self.public_members()?;
        if let Value::Object(m) = &mut v {
            m.insert("kid".into(), json!(self.kid));
            m.insert("alg".into(), json!(self.alg.as_str()));
            m.insert("use".into(), json!("sig"));
        }
        Ok(v)
    }

    /// Whether a verifier still needs this key at `now`: it signs, or it retired less
    /// than [`MAX_SVID_TTL`] ago (a token it signed may still be valid).
    pub fn published_at(&self, now: i64) -> bool {
        self.retired
            .is_none_or(|r| now < r + MAX_SVID_TTL.as_secs() as i64)
    }

    /// A compact JWS of `claims`, `kid` and `typ: JWT` in the header.
    pub fn sign(&self, claims: &Value) -> Result<String, CaError> {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self.alg {
            SigningAlg::Es256 => {
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
                    .map_err(|_| CaError("stored P-256 key unreadable".into()))?
                    .sign(&rng, input.as_bytes())
                    .map_err(fail("signing"))?
                    .as_ref()
                    .to_vec()
            }
            SigningAlg::Rs256 => {
                let k = RsaKeyPair::from_pkcs8(&self.pkcs8)
                    .map_err(|_| CaError("stored RSA key unreadable".into()))?;
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(fail("signing"))?;
                sig
            }
        };
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

/// RFC 7638: base64url of the SHA-256 of the required members, in order, no spaces.
fn thumbprint(members: &Value) -> String {
    // serde_json's map is ordered by key, which is RFC 7638's lexicographic order.
    let canonical = members.to_string();
    B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The claims of a JWT-SVID for `id` (SPIFFE JWT-SVID 3: `sub`, `aud`, `exp`; plus
/// `iat` and `iss`).
pub fn svid_claims(
    id: &ServiceId,
    issuer: &str,
    audience: &[String],
    now: i64,
    ttl: Duration,
) -> Value {
    json!({"iss": issuer, "sub": id.uri(), "aud": audience, "iat": now,
        "exp": now + ttl.as_secs() as i64})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_what_their_jwk_verifies_and_nothing_else() {
        let id = ServiceId::new("11111111-2222-3333-4444-555555555555.consul", "dc1", "web");
        for alg in SigningAlg::ALL {
            let key = JwtKey::generate(alg, 1_000).unwrap();
            let claims = svid_claims(
                &id,
                "https://agent.example",
                &["api".into()],
                1_000,
                DEFAULT_SVID_TTL,
            );
            let token = key.sign(&claims).unwrap();
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = B64.decode(sig).unwrap();
            let jwk = key.jwk().unwrap();
            assert_eq!(jwk["kid"], key.kid.as_str());
            assert_eq!(jwk["alg"], alg.as_str());
            assert!(jwk.get("d").is_none(), "no private member");
            // Verify with the public key as a verifier would rebuild it.
            let ok = match alg {
                SigningAlg::Es256 => {
                    let mut point = vec![4u8];
                    point.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
                    point.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(input.as_bytes(), &sig)
                        .is_ok()
                }
                SigningAlg::Rs256 => {
                    let k = RsaKeyPair::from_pkcs8(&key.pkcs8).unwrap();
                    signature::UnparsedPublicKey::new(
                        &signature::RSA_PKCS1_2048_8192_SHA256,
                        k.public_key().as_ref(),
                    )
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
                }
            };
            assert!(ok, "{alg:?}");
            let payload: Value =
                serde_json::from_slice(&B64.decode(input.split('.').nth(1).unwrap()).unwrap())
                    .unwrap();
            assert_eq!(payload["sub"], id.uri());
            assert_eq!(payload["exp"], 1_300);
            // A second key has another kid.
            assert_ne!(JwtKey::generate(alg, 1_000).unwrap().kid, key.kid);
        }
    }

    #[test]
    fn a_retired_key_stays_published_for_the_longest_token_it_signed() {
        let mut key = JwtKey::generate(SigningAlg::Es256, 0).unwrap();
        assert!(key.published_at(10_000_000));
        key.retired = Some(5_000);
        assert!(key.published_at(5_000 + 3_599));
        assert!(!key.published_at(5_000 + 3_600));
        assert!(format!("{key:?}").contains("redacted"));
    }
}
