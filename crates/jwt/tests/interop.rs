//! Interoperability: tokens and key sets made by two independent JOSE libraries,
//! PyJWT (Python, `cryptography`) and `jose` (npm), verify in Tribune for every
//! algorithm both produce; tampered copies do not. The generators live in `interop/`;
//! `scripts/test.sh` and `.ci/run` install their dependencies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use tribune_jwt::{Jwks, JwtError, Verifier};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

fn generate(program: &str, script: &str) -> Value {
    let out = Command::new(program)
        .arg(script)
        .current_dir(interop_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {script}: {e} (run ./scripts/test.sh, which installs the interop tools)"));
    assert!(
        out.status.success(),
        "{program} {script} failed (run ./scripts/test.sh, which installs the interop tools): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn provider(issuer: &str, audience: &str) -> tribune_model::JwtProvider {
    let entry = serde_json::json!({
        "Kind": "jwt-provider", "Name": "interop", "Issuer": issuer, "Audiences": [audience],
        "JSONWebKeySet": {"Local": {"Filename": "/unused"}},
    });
    match tribune_model::entry_from_json(entry).unwrap() {
        tribune_model::ConfigEntry::JwtProvider(p) => p,
        other => panic!("{other:?}"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn check(library: &str, doc: Value, expected_algs: usize) {
    let jwks = Jwks::parse(doc["jwks"].to_string().as_bytes()).unwrap();
    assert!(jwks.warnings.is_empty(), "{library}: {:?}", jwks.warnings);
    let verifier = Verifier::new(
        &provider(
            doc["issuer"].as_str().unwrap(),
            doc["audience"].as_str().unwrap(),
        ),
        Arc::new(jwks),
    );
    let tokens = doc["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), expected_algs, "{library}");
    for t in tokens {
        let (alg, token) = (t["alg"].as_str().unwrap(), t["token"].as_str().unwrap());
        let payload = verifier
            .verify(token, now())
            .unwrap_or_else(|e| panic!("{library} {alg}: {e}"));
        assert_eq!(
            payload.str("role").as_deref(),
            Some("admin"),
            "{library} {alg}"
        );
        // Change one payload character: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
        parts[1].pop();
        parts[1].push(flipped);
        let tampered = parts.join(".");
        assert!(
            verifier.verify(&tampered, now()).is_err(),
            "{library} {alg}: tampered token accepted"
        );
        // Expired an hour later.
        assert_eq!(
            verifier.verify(token, now() + 3600),
            Err(JwtError::Expired),
            "{library} {alg}"
        );
    }
}

#[test]
fn pyjwt_tokens_verify() {
    check("PyJWT", generate("python3", "make_tokens.py"), 13);
}

#[test]
fn npm_jose_tokens_verify() {
    check("jose", generate("node", "make_tokens.mjs"), 13);
}
