//! Full token verification (split, decode, header, key lookup, signature, claims)
//! next to the raw aws-lc-rs primitive with the key already parsed, per algorithm.
//! Run: `cargo bench -p tribune-jwt --bench verify`; compare with
//! `openssl speed -seconds 3 rsa2048 ecdsap256 ed25519` (see BENCHMARKS.md).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::Arc;
use tribune_jwt::{Jwks, Verifier};

fn claims() -> Value {
    json!({"iss": "https://idp.example.com/", "sub": "user-1234", "aud": ["api", "web"], "exp": 4_000_000_000_i64,
           "iat": 1_700_000_000, "nbf": 1_700_000_000, "email": "user@example.com", "scope": "read write",
           "roles": ["reader", "admin"]})
}

fn provider() -> tribune_model::JwtProvider {
    match tribune_model::parse_entry(
        r#"Kind = "jwt-provider"
Name = "idp"
Issuer = "https://idp.example.com/"
Audiences = ["web"]
JSONWebKeySet { Local { Filename = "/unused" } }"#,
    ) {
        Ok(tribune_model::ConfigEntry::JwtProvider(p)) => p,
        other => panic!("{other:?}"),
    }
}

fn token(alg: &str, kid: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string()),
        B64.encode(claims().to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let es = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec");
    let ed = Ed25519KeyPair::generate().expect("ed");
    let pk = rsa.public_key();
    let point = es.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
         "e": B64.encode(pk.exponent().big_endian_without_leading_zero())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": B64.encode(ed.public_key().as_ref())}
    ]});
    let keys = Arc::new(Jwks::parse(jwks.to_string().as_bytes()).expect("jwks"));
    let verifier = Verifier::new(&provider(), keys);

    let rs256 = token("RS256", "rsa", |m| {
        let mut s = vec![0; rsa.public_modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut s)
            .expect("sign");
        s
    });
    let es256 = token("ES256", "ec", |m| {
        es.sign(&rng, m).expect("sign").as_ref().to_vec()
    });
    let eddsa = token("EdDSA", "ed", |m| ed.sign(m).as_ref().to_vec());

    let rsa_der = pk.as_ref().to_vec();
    let raw: [(&str, &String, ParsedPublicKey); 3] = [
        (
            "RS256",
            &rs256,
            ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &rsa_der).expect("k"),
        ),
        (
            "ES256",
            &es256,
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point).expect("k"),
        ),
        (
            "EdDSA",
            &eddsa,
            ParsedPublicKey::new(&signature::ED25519, ed.public_key().as_ref()).expect("k"),
        ),
    ];
    let mut group = c.benchmark_group("jwt");
    for (alg, tok, key) in &raw {
        assert!(verifier.verify(tok, 1_800_000_000).is_ok(), "{alg}");
        let (input, sig) = tok.rsplit_once('.').expect("token");
        let sig = B64.decode(sig).expect("sig");
        assert!(key.verify_sig(input.as_bytes(), &sig).is_ok());
        group.bench_function(format!("{alg}/full_verify"), |b| {
            b.iter(|| black_box(verifier.verify(black_box(tok), 1_800_000_000)))
        });
        group.bench_function(format!("{alg}/raw_primitive"), |b| {
            b.iter(|| black_box(key.verify_sig(black_box(input.as_bytes()), black_box(&sig))))
        });
    }
    let cached = tribune_jwt::CachedVerifier::new(verifier.clone(), 30, 0);
    assert!(cached.verify(&rs256, 1_800_000_000).is_ok());
    group.bench_function("RS256/cache_hit", |b| {
        b.iter(|| black_box(cached.verify(black_box(&rs256), 1_800_000_000)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
