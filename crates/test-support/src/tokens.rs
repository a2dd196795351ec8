//! Token minting for tests and benchmarks: an RS256 signer with its JWK, so a
//! provider can be given the key inline (`JSONWebKeySet.Local.JWKS`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

/// An RSA-2048 key that signs RS256 tokens.
pub struct Rs256 {
    key: RsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl Rs256 {
    /// A new key with this `kid`.
    ///
    /// # Panics
    /// If the platform cannot generate an RSA key.
    pub fn new(kid: &str) -> Rs256 {
        Rs256 {
            key: RsaKeyPair::generate(KeySize::Rsa2048).expect("generate an RSA-2048 key"),
            kid: kid.to_string(),
            rng: SystemRandom::new(),
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let pk = self.key.public_key();
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(pk.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(pk.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The public key, DER (`RSAPublicKey`), as aws-lc-rs parses it.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// The public key as PEM `PUBLIC KEY` (`SubjectPublicKeyInfo`), as an auth
    /// method's `JWTValidationPubKeys` takes it.
    ///
    /// # Panics
    /// If the key cannot be encoded (it can).
    pub fn public_key_pem(&self) -> String {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        let der: PublicKeyX509Der<'static> = self.key.public_key().as_der().expect("SPKI");
        pem("PUBLIC KEY", der.as_ref())
    }

    /// A JWKS with this key, base64 (standard) as `Local.JWKS` takes it.
    pub fn inline_jwks(&self) -> String {
        STANDARD.encode(json!({"keys": [self.jwk()]}).to_string())
    }

    /// A compact RS256 token with these claims.
    ///
    /// # Panics
    /// If signing fails (it does not for a generated key).
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// `der` as a PEM block with this label.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
