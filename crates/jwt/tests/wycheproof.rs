//! Wycheproof vectors through the engine's own path: each test key becomes a JWK, is
//! parsed by `Jwks::parse`, and the signature goes through `Jwks::verify_raw`. Every
//! `valid` vector must be accepted and every `invalid` one rejected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use tribune_jwt::{Alg, Jwks};
use wycheproof::TestResult;

#[derive(Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, set: &str, id: usize, result: TestResult, ok: bool) {
        match result {
            TestResult::Valid => {
                self.valid += 1;
                if !ok {
                    self.failures
                        .push(format!("{set} #{id}: valid signature rejected"));
                }
            }
            TestResult::Invalid => {
                self.invalid += 1;
                if ok {
                    self.failures
                        .push(format!("{set} #{id}: invalid signature accepted"));
                }
            }
            TestResult::Acceptable => {}
        }
    }

    fn finish(self, what: &str, min_cases: usize) {
        eprintln!(
            "{what}: {} valid accepted, {} invalid rejected",
            self.valid, self.invalid
        );
        assert!(
            self.failures.is_empty(),
            "{what}:\n{}",
            self.failures.join("\n")
        );
        assert!(
            self.valid + self.invalid >= min_cases,
            "{what}: only {} cases ran",
            self.valid + self.invalid
        );
        assert!(
            self.valid > 0 && self.invalid > 0,
            "{what}: needs both valid and invalid cases"
        );
    }
}

fn keyset(jwk: Value) -> Option<Jwks> {
    Jwks::parse(json!({ "keys": [jwk] }).to_string().as_bytes()).ok()
}

#[test]
fn ecdsa_p1363_es256_es384_es512() {
    use wycheproof::ecdsa::{TestName, TestSet};
    for (name, alg, crv, size) in [
        (TestName::EcdsaSecp256r1Sha256P1363, Alg::ES256, "P-256", 32),
        (TestName::EcdsaSecp384r1Sha384P1363, Alg::ES384, "P-384", 48),
        (TestName::EcdsaSecp521r1Sha512P1363, Alg::ES512, "P-521", 66),
    ] {
        let mut t = Tally::default();
        for g in TestSet::load(name).unwrap().test_groups {
            let point: &Vec<u8> = &g.key.key;
            assert_eq!(point.len(), 1 + 2 * size);
            let keys = keyset(json!({"kty": "EC", "crv": crv, "x": B64.encode(&point[1..1 + size]), "y": B64.encode(&point[1 + size..])}))
                .expect("Wycheproof test keys are valid points");
            for tc in g.tests {
                let ok = keys.verify_raw(alg, None, &tc.msg, &tc.sig).is_ok();
                t.check(alg.as_str(), tc.tc_id, tc.result, ok);
            }
        }
        t.finish(alg.as_str(), 100);
    }
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)})
}

#[test]
fn rsa_pkcs1_rs256_rs384_rs512() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    for (name, alg) in [
        (TestName::Rsa2048Sha256, Alg::RS256),
        (TestName::Rsa3072Sha256, Alg::RS256),
        (TestName::Rsa2048Sha384, Alg::RS384),
        (TestName::Rsa2048Sha512, Alg::RS512),
        (TestName::Rsa4096Sha512, Alg::RS512),
    ] {
        let mut t = Tally::default();
        for g in TestSet::load(name).unwrap().test_groups {
            let Some(keys) = keyset(rsa_jwk(&g.key.n, &g.key.e)) else {
                panic!("{name:?}: test key rejected");
            };
            for tc in g.tests {
                let ok = keys.verify_raw(alg, None, &tc.msg, &tc.sig).is_ok();
                t.check(alg.as_str(), tc.tc_id, tc.result, ok);
            }
        }
        t.finish(&format!("{name:?}"), 50);
    }
}

#[test]
fn rsa_pss_ps256_ps384_ps512() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    for (name, alg) in [
        (TestName::RsaPss2048Sha256Mgf1SaltLen32, Alg::PS256),
        (TestName::RsaPss3072Sha256Mgf1SaltLen32, Alg::PS256),
        (TestName::RsaPss2048Sha384Mgf1SaltLen48, Alg::PS384),
        (TestName::RsaPss4096Sha512Mgf1SaltLen64, Alg::PS512),
    ] {
        let mut t = Tally::default();
        for g in TestSet::load(name).unwrap().test_groups {
            let keys = keyset(rsa_jwk(&g.key.n, &g.key.e)).expect("test key");
            for tc in g.tests {
                let ok = keys.verify_raw(alg, None, &tc.msg, &tc.sig).is_ok();
                t.check(alg.as_str(), tc.tc_id, tc.result, ok);
            }
        }
        t.finish(&format!("{name:?}"), 20);
    }
}

#[test]
fn ed25519_eddsa() {
    use wycheproof::eddsa::{TestName, TestSet};
    let mut t = Tally::default();
    for g in TestSet::load(TestName::Ed25519).unwrap().test_groups {
        let keys = keyset(json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&*g.key.pk)}))
            .expect("test key");
        for tc in g.tests {
            let ok = keys.verify_raw(Alg::EdDSA, None, &tc.msg, &tc.sig).is_ok();
            t.check("EdDSA", tc.tc_id, tc.result, ok);
        }
    }
    t.finish("Ed25519", 100);
}

#[test]
fn hmac_hs256_hs384_hs512() {
    use wycheproof::mac::{TestName, TestSet};
    for (name, alg, bytes) in [
        (TestName::HmacSha256, Alg::HS256, 32),
        (TestName::HmacSha384, Alg::HS384, 48),
        (TestName::HmacSha512, Alg::HS512, 64),
    ] {
        let mut t = Tally::default();
        let mut short_keys_refused = 0;
        for g in TestSet::load(name).unwrap().test_groups {
            // JWS carries the full tag; truncated-tag groups do not apply.
            if g.tag_size != bytes * 8 {
                continue;
            }
            for tc in g.tests {
                let jwk = json!({"kty": "oct", "alg": alg.as_str(), "k": B64.encode(&*tc.key)});
                match keyset(jwk) {
                    // Keys shorter than the hash are refused by policy (never used).
                    None => {
                        assert!(
                            tc.key.len() < bytes,
                            "{name:?} #{}: key of {} bytes refused",
                            tc.tc_id,
                            tc.key.len()
                        );
                        short_keys_refused += 1;
                    }
                    Some(keys) => {
                        let ok = keys.verify_raw(alg, None, &tc.msg, &tc.tag).is_ok();
                        t.check(alg.as_str(), tc.tc_id, tc.result, ok);
                    }
                }
            }
        }
        assert!(
            short_keys_refused > 0,
            "{name:?}: the short-key policy was exercised"
        );
        t.finish(&format!("{name:?}"), 10);
    }
}
