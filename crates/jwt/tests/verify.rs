//! Known answers, every algorithm end to end, and one named test per attack class.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use tribune_jwt::{check_claims, Claims, Jwks, Jws, JwtError, Verifier};

fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

fn jwks(keys: Value) -> Jwks {
    Jwks::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn unsigned(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}

fn verify(keys: &Jwks, token: &str) -> Result<(), JwtError> {
    let jws = Jws::parse(token, 8192)?;
    keys.verify_signature(&jws)
}

struct Rsa {
    kp: RsaKeyPair,
}

impl Rsa {
    fn new() -> Self {
        Rsa {
            kp: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
        }
    }
    fn jwk(&self, kid: &str) -> Value {
        let pk = self.kp.public_key();
        json!({"kty": "RSA", "kid": kid, "n": b64(pk.modulus().big_endian_without_leading_zero()),
               "e": b64(pk.exponent().big_endian_without_leading_zero())})
    }
    fn sign(&self, alg: &str, kid: &str, payload: &Value) -> String {
        let enc: &'static dyn signature::RsaEncoding = match alg {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            "RS384" => &signature::RSA_PKCS1_SHA384,
            "RS512" => &signature::RSA_PKCS1_SHA512,
            "PS256" => &signature::RSA_PSS_SHA256,
            "PS384" => &signature::RSA_PSS_SHA384,
            _ => &signature::RSA_PSS_SHA512,
        };
        let input = unsigned(&json!({"alg": alg, "kid": kid}), payload);
        let mut sig = vec![0; self.kp.public_modulus_len()];
        self.kp
            .sign(enc, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", b64(&sig))
    }
}

fn ec(alg: &str) -> (EcdsaKeyPair, Value) {
    let (signing, crv, size) = match alg {
        "ES256" => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
        "ES384" => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
        _ => (&signature::ECDSA_P521_SHA512_FIXED_SIGNING, "P-521", 66),
    };
    let kp = EcdsaKeyPair::generate(signing).unwrap();
    let point = kp.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": crv, "kid": alg, "x": b64(&point[1..1 + size]), "y": b64(&point[1 + size..])});
    (kp, jwk)
}

fn ec_sign(kp: &EcdsaKeyPair, alg: &str, payload: &Value) -> String {
    let input = unsigned(&json!({"alg": alg, "kid": alg}), payload);
    let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

#[test]
fn rfc7515_a1_hs256_known_answer() {
    let keys = jwks(json!([{"kty": "oct",
        "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]));
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert_eq!(verify(&keys, token), Ok(()));
    let jws = Jws::parse(token, 8192).unwrap();
    assert_eq!(jws.payload.str("iss").as_deref(), Some("joe"));
    assert_eq!(
        check_claims(&jws.payload, "joe", &[], 30, 1_300_819_380),
        Ok(())
    );
    assert_eq!(
        check_claims(&jws.payload, "joe", &[], 30, 1_300_819_411),
        Err(JwtError::Expired)
    );
    let mut tampered = token.to_string();
    tampered.replace_range(tampered.len() - 2.., "Yk");
    assert_eq!(verify(&keys, &tampered), Err(JwtError::BadSignature));
}

#[test]
fn every_rsa_algorithm_round_trips_and_rejects_tampering() {
    let rsa = Rsa::new();
    let keys = jwks(json!([rsa.jwk("r1")]));
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let t = rsa.sign(alg, "r1", &json!({"sub": "x"}));
        assert_eq!(verify(&keys, &t), Ok(()), "{alg}");
        let forged = rsa.sign(alg, "r1", &json!({"sub": "y"}));
        let mixed = format!(
            "{}.{}",
            &t[..t.rfind('.').unwrap()],
            &forged[forged.rfind('.').unwrap() + 1..]
        );
        assert_eq!(verify(&keys, &mixed), Err(JwtError::BadSignature), "{alg}");
    }
}

#[test]
fn ecdsa_and_eddsa_round_trip() {
    for alg in ["ES256", "ES384", "ES512"] {
        let (kp, jwk) = ec(alg);
        let keys = jwks(json!([jwk]));
        assert_eq!(
            verify(&keys, &ec_sign(&kp, alg, &json!({"a": 1}))),
            Ok(()),
            "{alg}"
        );
    }
    let kp = Ed25519KeyPair::generate().unwrap();
    let keys = jwks(json!([{"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())}]));
    let input = unsigned(&json!({"alg": "EdDSA"}), &json!({"a": 1}));
    let t = format!("{input}.{}", b64(kp.sign(input.as_bytes()).as_ref()));
    assert_eq!(verify(&keys, &t), Ok(()));
}

#[test]
fn attack_alg_none_in_every_casing_is_rejected() {
    let keys = jwks(json!([Rsa::new().jwk("r1")]));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = unsigned(&json!({"alg": alg}), &json!({"admin": true}));
        for token in [format!("{input}."), format!("{input}.{}", b64(b"sig"))] {
            assert_eq!(
                verify(&keys, &token),
                Err(JwtError::UnsupportedAlgorithm(alg.into())),
                "{token}"
            );
        }
    }
}

#[test]
fn attack_hs256_signed_with_the_rsa_public_key_bytes() {
    let rsa = Rsa::new();
    let jwk = rsa.jwk("r1");
    let keys = jwks(json!([jwk.clone()]));
    let pk = rsa.kp.public_key();
    let der = pk.as_ref().to_vec();
    for secret in [
        der.clone(),
        jwk.to_string().into_bytes(),
        b"-----BEGIN PUBLIC KEY-----".to_vec(),
    ] {
        let input = unsigned(
            &json!({"alg": "HS256", "kid": "r1"}),
            &json!({"admin": true}),
        );
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", b64(tag.as_ref()));
        assert_eq!(
            verify(&keys, &token),
            Err(JwtError::UnknownKey),
            "an RSA key never verifies HS256"
        );
    }
}

#[test]
fn attack_es256_zero_and_out_of_range_signatures() {
    let (kp, jwk) = ec("ES256");
    let keys = jwks(json!([jwk]));
    let good = ec_sign(&kp, "ES256", &json!({"a": 1}));
    let input = &good[..good.rfind('.').unwrap()];
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let zero = [0u8; 32];
    for (name, r, s) in [
        ("r=s=0", zero.to_vec(), zero.to_vec()),
        ("r=n", n.clone(), vec![1; 32]),
        ("s=n", vec![1; 32], n.clone()),
    ] {
        let sig = [r, s].concat();
        assert_eq!(
            verify(&keys, &format!("{input}.{}", b64(&sig))),
            Err(JwtError::BadSignature),
            "{name}"
        );
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn attack_der_encoded_and_wrong_length_ecdsa_signatures() {
    let (kp, jwk) = ec("ES256");
    let keys = jwks(json!([jwk]));
    let good = ec_sign(&kp, "ES256", &json!({"a": 1}));
    let (input, sig) = good.rsplit_once('.').unwrap();
    let raw = B64.decode(sig).unwrap();
    let mut der = vec![0x30, 0x44, 0x02, 0x20];
    der.extend_from_slice(&raw[..32]);
    der.extend_from_slice(&[0x02, 0x20]);
    der.extend_from_slice(&raw[32..]);
    assert_eq!(
        verify(&keys, &format!("{input}.{}", b64(&der))),
        Err(JwtError::BadSignature)
    );
    assert_eq!(
        verify(&keys, &format!("{input}.{}", b64(&raw[..63]))),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn attack_hostile_kid_values_match_nothing() {
    let rsa = Rsa::new();
    let keys = jwks(json!([rsa.jwk("good")]));
    for kid in ["../../etc/passwd".to_string(), "x".repeat(4000)] {
        let t = rsa.sign("RS256", &kid, &json!({}));
        assert_eq!(verify(&keys, &t), Err(JwtError::UnknownKey));
    }
}

#[test]
fn attack_embedded_jwk_and_jku_headers_are_never_trusted() {
    let trusted = Rsa::new();
    let keys = jwks(json!([trusted.jwk("k")]));
    let attacker = Rsa::new();
    let header = json!({"alg": "RS256", "kid": "k", "jwk": attacker.jwk("k"), "jku": "http://127.0.0.1:1/keys", "x5u": "http://127.0.0.1:1/x"});
    let input = unsigned(&header, &json!({"admin": true}));
    let mut sig = vec![0; attacker.kp.public_modulus_len()];
    attacker
        .kp
        .sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
    assert_eq!(
        verify(&keys, &format!("{input}.{}", b64(&sig))),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn duplicate_kid_in_a_jwks_tries_both_keys() {
    let a = Rsa::new();
    let b = Rsa::new();
    let keys = jwks(json!([a.jwk("same"), b.jwk("same")]));
    assert_eq!(verify(&keys, &b.sign("RS256", "same", &json!({}))), Ok(()));
    assert_eq!(
        verify(&keys, &Rsa::new().sign("RS256", "same", &json!({}))),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn attack_other_serializations_and_shapes_are_malformed() {
    let keys = jwks(json!([Rsa::new().jwk("k")]));
    let json_serialization =
        json!({"payload": "e30", "signatures": [{"protected": "e30", "signature": "AA"}]})
            .to_string();
    assert!(matches!(
        verify(&keys, &json_serialization),
        Err(JwtError::Malformed(_))
    ));
    assert_eq!(
        verify(&keys, "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"),
        Err(JwtError::Malformed(
            "Jwt is an encrypted JWE, which is not supported"
        ))
    );
    let not_object = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(b"[1,2]"),
        b64(b"sig")
    );
    assert_eq!(
        verify(&keys, &not_object),
        Err(JwtError::Malformed("Jwt payload is an invalid JSON"))
    );
    let dup_header = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","alg":"HS256"}"#),
        b64(b"{}"),
        b64(b"sig")
    );
    assert_eq!(
        verify(&keys, &dup_header),
        Err(JwtError::Malformed("Jwt header is an invalid JSON"))
    );
    let padded = format!(
        "{}=.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(b"{}"),
        b64(b"sig")
    );
    assert!(matches!(
        verify(&keys, &padded),
        Err(JwtError::Malformed(_))
    ));
    // Only the URL-safe alphabet, and canonical encodings (no stray trailing bits).
    let header = b64(br#"{"alg":"RS256"}"#);
    for bad in [
        format!("{header}.{}.c2ln+", b64(b"{}")),
        format!("{header}.{}.c2ln/", b64(b"{}")),
        format!("{header}.{}.c2l", b64(b"{}")), // "si" is c2k; c2l differs only in trailing bits
        format!("{header}.e30 .{}", b64(b"sig")),
    ] {
        assert!(
            matches!(verify(&keys, &bad), Err(JwtError::Malformed(_))),
            "{bad}"
        );
    }
    let crit = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","crit":["exp"]}"#),
        b64(b"{}"),
        b64(b"sig")
    );
    assert!(matches!(verify(&keys, &crit), Err(JwtError::Malformed(_))));
    let b64false = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","b64":false}"#),
        b64(b"{}"),
        b64(b"sig")
    );
    assert!(matches!(
        verify(&keys, &b64false),
        Err(JwtError::Malformed(_))
    ));
    let oversized = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        "A".repeat(9000),
        b64(b"sig")
    );
    assert_eq!(
        verify(&keys, &oversized),
        Err(JwtError::TooLarge { limit: 8192 })
    );
}

#[test]
fn expiry_and_not_before_at_the_skew_boundary() {
    let p = Claims::from_value(&json!({"exp": 1000, "nbf": 500})).unwrap();
    assert_eq!(
        check_claims(&p, "", &[], 30, 1030),
        Ok(()),
        "one second inside the skew"
    );
    assert_eq!(
        check_claims(&p, "", &[], 30, 1031),
        Err(JwtError::Expired),
        "one second outside"
    );
    assert_eq!(check_claims(&p, "", &[], 30, 470), Ok(()));
    assert_eq!(
        check_claims(&p, "", &[], 30, 469),
        Err(JwtError::NotYetValid)
    );
    let s = Claims::from_value(&json!({"exp": "1000"})).unwrap();
    assert_eq!(
        check_claims(&s, "", &[], 30, 0),
        Err(JwtError::ClaimType("exp"))
    );
}

#[test]
fn issuer_and_audience_checks() {
    let aud = vec!["api".to_string()];
    let ok = Claims::from_value(&json!({"iss": "idp", "aud": ["other", "api"]})).unwrap();
    assert_eq!(check_claims(&ok, "idp", &aud, 0, 0), Ok(()));
    let wrong = Claims::from_value(&json!({"iss": "idp", "aud": "other"})).unwrap();
    assert_eq!(
        check_claims(&wrong, "idp", &aud, 0, 0),
        Err(JwtError::AudienceNotAllowed)
    );
    assert_eq!(
        check_claims(&ok, "elsewhere", &[], 0, 0),
        Err(JwtError::IssuerMismatch)
    );
    let no_aud = Claims::from_value(&json!({"iss": "idp"})).unwrap();
    assert_eq!(
        check_claims(&no_aud, "idp", &aud, 0, 0),
        Err(JwtError::AudienceNotAllowed)
    );
    assert_eq!(
        check_claims(&no_aud, "idp", &[], 0, 0),
        Ok(()),
        "no Audiences: aud not checked"
    );
}

#[test]
fn unusable_keys_are_skipped_and_an_empty_set_is_an_error() {
    let rsa = Rsa::new();
    let set = Jwks::parse(
        json!({"keys": [
            {"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            {"kty": "oct", "k": b64(b"short")},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            rsa.jwk("ok")
        ]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.warnings.len(), 4, "{:?}", set.warnings);
    assert!(set.warnings[0].contains("below 2048"), "{:?}", set.warnings);
    assert!(
        set.warnings[1].contains("EC point rejected"),
        "{:?}",
        set.warnings
    );
    let err = Jwks::parse(br#"{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}"#).unwrap_err();
    assert!(err.0.starts_with("JWKS has no usable key:"), "{err}");
}

#[test]
fn inspect_reports_every_key_as_parse_judges_it() {
    let rsa = Rsa::new();
    let mut pinned = rsa.jwk("pinned");
    pinned["alg"] = json!("PS256");
    let doc = json!({"keys": [
        rsa.jwk("any"),
        pinned,
        {"kid": "weak", "kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB"},
        "not a key",
        {"kid": "enc", "kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}
    ]})
    .to_string();
    let keys = Jwks::inspect(doc.as_bytes()).unwrap();
    let summary: Vec<(Option<&str>, Vec<&str>, bool)> = keys
        .iter()
        .map(|k| (k.kid.as_deref(), k.algs.clone(), k.problem.is_none()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Some("any"),
                vec!["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
                true
            ),
            (Some("pinned"), vec!["PS256"], true),
            (Some("weak"), vec![], false),
            (None, vec![], false),
            (Some("enc"), vec![], false),
        ]
    );
    assert_eq!(keys[1].alg.as_deref(), Some("PS256"));
    assert_eq!(keys[0].kty.as_deref(), Some("RSA"));
    assert!(keys[2].problem.as_deref().unwrap().contains("below 2048"));
    assert_eq!(keys[3].problem.as_deref(), Some("not an object"));
    // The usable keys are exactly the ones parse keeps.
    let parsed = Jwks::parse(doc.as_bytes()).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed.warnings.len(), 3);
    assert_eq!(
        Jwks::inspect(b"[]").unwrap_err().0,
        "JWKS has no \"keys\" list"
    );
    assert!(Jwks::inspect(b"<html>")
        .unwrap_err()
        .0
        .starts_with("JWKS is not valid JSON"));
}

#[test]
fn jwk_alg_pins_the_algorithm() {
    let rsa = Rsa::new();
    let mut jwk = rsa.jwk("k");
    jwk["alg"] = json!("PS256");
    let keys = jwks(json!([jwk]));
    assert_eq!(verify(&keys, &rsa.sign("PS256", "k", &json!({}))), Ok(()));
    assert_eq!(
        verify(&keys, &rsa.sign("RS256", "k", &json!({}))),
        Err(JwtError::UnknownKey)
    );
}

#[test]
fn verifier_applies_the_provider_settings() {
    let rsa = Rsa::new();
    let provider = match tribune_model::parse_entry(
        r#"Kind = "jwt-provider"
Name = "okta"
Issuer = "https://okta"
Audiences = ["api"]
JSONWebKeySet { Local { Filename = "/unused" } }"#,
    ) {
        Ok(tribune_model::ConfigEntry::JwtProvider(p)) => p,
        other => panic!("{other:?}"),
    };
    let v = Verifier::new(&provider, Arc::new(jwks(json!([rsa.jwk("k")]))));
    let t = rsa.sign(
        "RS256",
        "k",
        &json!({"iss": "https://okta", "aud": "api", "exp": 2000}),
    );
    assert_eq!(
        v.verify(&t, 1000).map(|p| p.get("iss")),
        Ok(Some(json!("https://okta")))
    );
    assert_eq!(v.verify(&t, 2031), Err(JwtError::Expired));
    let t2 = rsa.sign("RS256", "k", &json!({"iss": "https://okta", "aud": "web"}));
    assert_eq!(v.verify(&t2, 1000), Err(JwtError::AudienceNotAllowed));
    assert_eq!(
        tribune_jwt::unverified_issuer(&t2).as_deref(),
        Some("https://okta")
    );
}

struct Req {
    headers: Vec<(String, String)>,
    query: Option<String>,
}

impl tribune_jwt::locate::RequestParts for Req {
    fn header_values(&self, name: &str) -> tribune_jwt::locate::Values<'_> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect()
    }
    fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
}

fn provider(extra: &str) -> tribune_model::JwtProvider {
    let hcl = format!(
        "Kind = \"jwt-provider\"\nName = \"okta\"\nIssuer = \"okta\"\nJSONWebKeySet {{ Local {{ Filename = \"/k\" }} }}\n{extra}"
    );
    match tribune_model::parse_entry(&hcl) {
        Ok(tribune_model::ConfigEntry::JwtProvider(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_verification_routes_by_issuer_forwards_the_payload_and_strips_tokens() {
    use tribune_jwt::locate::{forwards_token, locations, verify_request, Outcome};
    use tribune_model::jwt_provider::JwtLocation;
    let rsa = Rsa::new();
    let p = provider("Forwarding { HeaderName = \"x-claims\" PadForwardPayloadHeader = true }");
    let v = Verifier::new(&p, Arc::new(jwks(json!([rsa.jwk("k")]))));
    let mine = rsa.sign("RS256", "k", &json!({"iss": "okta", "sub": "alice"}));
    let req = Req {
        headers: vec![("Authorization".into(), format!("Bearer {mine}"))],
        query: None,
    };
    match verify_request(&p, &v, &req, 0) {
        Outcome::Valid {
            payload,
            forward_header,
        } => {
            assert_eq!(payload.str("sub").as_deref(), Some("alice"));
            let (name, value) = forward_header.unwrap();
            assert_eq!(name, "x-claims");
            assert_eq!(value.len() % 4, 0, "padded on request");
            let decoded = base64::engine::general_purpose::URL_SAFE
                .decode(&value)
                .unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&decoded).unwrap()["sub"],
                "alice"
            );
            // Stripped before forwarding: every value in the provider's locations.
            assert!(!forwards_token(&p));
            assert!(locations(&p)
                .iter()
                .any(|l| matches!(l, JwtLocation::Header(h) if h.name == "Authorization")));
        }
        other => panic!("{other:?}"),
    }
    // A token whose iss names another provider is not this provider's: none of its
    // own, with what was there instead (for diagnostics).
    let other = rsa.sign("RS256", "k", &json!({"iss": "auth0"}));
    let req = Req {
        headers: vec![("Authorization".into(), format!("Bearer {other}"))],
        query: None,
    };
    assert_eq!(
        verify_request(&p, &v, &req, 0),
        Outcome::Stray(tribune_jwt::Stray::OtherIssuer(Some("auth0".into())))
    );
    let req = Req {
        headers: vec![("Authorization".into(), "Bearer not-a-jwt".into())],
        query: None,
    };
    assert_eq!(
        verify_request(&p, &v, &req, 0),
        Outcome::Stray(tribune_jwt::Stray::Malformed(
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
        ))
    );
    // Several tokens for the provider: all must verify.
    let bad = Rsa::new().sign("RS256", "k", &json!({"iss": "okta"}));
    let req = Req {
        headers: vec![("Authorization".into(), format!("Bearer {mine}"))],
        query: Some(format!("access_token={bad}")),
    };
    assert_eq!(
        verify_request(&p, &v, &req, 0),
        Outcome::Invalid(JwtError::BadSignature)
    );
    assert_eq!(
        verify_request(
            &p,
            &v,
            &Req {
                headers: vec![],
                query: None
            },
            0
        ),
        Outcome::Missing
    );
}

/// A cache of `size` entries in front of a verifier of `rsa`'s key `k` (30 s skew).
fn cached_verifier(rsa: &Rsa, size: usize) -> tribune_jwt::CachedVerifier {
    tribune_jwt::CachedVerifier::new(
        Verifier::new(&provider(""), Arc::new(jwks(json!([rsa.jwk("k")])))),
        30,
        size,
    )
}

#[test]
fn verified_token_cache_rechecks_expiry_and_never_caches_failures() {
    let rsa = Rsa::new();
    let cached = cached_verifier(&rsa, 2);
    let t1 = rsa.sign("RS256", "k", &json!({"iss": "okta", "exp": 1000}));
    assert_eq!(
        cached.verify(&t1, 900).unwrap().get("exp"),
        Some(1000.into())
    );
    assert_eq!(cached.len(), 1);
    assert_eq!(
        cached.verify(&t1, 1000).unwrap().get("exp"),
        Some(1000.into()),
        "hit"
    );
    assert_eq!(
        cached.verify(&t1, 1031),
        Err(JwtError::Expired),
        "expiry re-checked on a hit"
    );
    let forged = Rsa::new().sign("RS256", "k", &json!({"iss": "okta"}));
    assert_eq!(cached.verify(&forged, 900), Err(JwtError::BadSignature));
    assert_eq!(cached.verify(&forged, 900), Err(JwtError::BadSignature));
    assert_eq!(cached.len(), 1, "failures are not cached");
    for i in 0..5 {
        cached
            .verify(
                &rsa.sign("RS256", "k", &json!({"iss": "okta", "n": i})),
                900,
            )
            .unwrap();
    }
    assert_eq!(cached.len(), 2, "bounded by its size");
}

/// The cache buckets tokens by their signature's tail; a token that shares that tail
/// (a cached token's signature on another payload) lands in the same bucket and is
/// still told apart by the whole token: it is verified, and fails.
#[test]
fn a_token_with_a_cached_tokens_signature_is_not_answered_from_the_cache() {
    let rsa = Rsa::new();
    let cached = cached_verifier(&rsa, 4);
    let good = rsa.sign("RS256", "k", &json!({"iss": "okta", "role": "reader"}));
    assert!(cached.verify(&good, 0).is_ok());
    let (header, rest) = good.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"iss": "okta", "role": "admin"}).to_string());
    let forged = format!("{header}.{payload}.{signature}");
    let (result, hit) = cached.verify_counting(&forged, 0);
    assert_eq!(result, Err(JwtError::BadSignature));
    assert!(!hit, "a shared signature tail is not a hit");
    let (result, hit) = cached.verify_counting(&good, 0);
    assert_eq!(result.unwrap().str("role").as_deref(), Some("reader"));
    assert!(hit);
}

/// The oldest inserted token is evicted first; the others stay hits. Once full, a
/// new token is kept only on its second sight, so tokens seen once never push out
/// the ones being reused.
#[test]
fn the_cache_evicts_its_oldest_token_first_and_once_full_admits_on_second_sight() {
    let rsa = Rsa::new();
    let cached = cached_verifier(&rsa, 2);
    let tokens: Vec<String> = (0..3)
        .map(|i| rsa.sign("RS256", "k", &json!({"iss": "okta", "n": i})))
        .collect();
    for t in &tokens {
        assert!(!cached.verify_counting(t, 0).1, "first sight is a miss");
    }
    assert_eq!(cached.len(), 2);
    assert!(
        cached.verify_counting(&tokens[0], 0).1,
        "kept while there was room"
    );
    assert!(cached.verify_counting(&tokens[1], 0).1);
    // Token 2 was seen once with the cache full (above): not kept, nothing evicted.
    // Seen again, it is verified and kept, and the oldest goes.
    assert!(
        !cached.verify_counting(&tokens[2], 0).1,
        "second sight verifies"
    );
    assert!(cached.verify_counting(&tokens[2], 0).1, "then it is kept");
    assert!(cached.verify_counting(&tokens[1], 0).1);
    assert!(
        !cached.verify_counting(&tokens[0], 0).1,
        "the oldest went first"
    );
    assert_eq!(cached.len(), 2);
    // A stream of tokens each seen once leaves the reused ones in place.
    for i in 0..50 {
        let once = rsa.sign("RS256", "k", &json!({"iss": "okta", "once": i}));
        assert!(cached.verify(&once, 0).is_ok());
        assert!(
            cached.verify_counting(&tokens[1], 0).1,
            "token 1 stays at {i}"
        );
        assert!(
            cached.verify_counting(&tokens[2], 0).1,
            "token 2 stays at {i}"
        );
    }
    assert_eq!(cached.len(), 2);
}
