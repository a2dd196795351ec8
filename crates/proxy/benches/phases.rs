//! The sidecar's request path, one benchmark per phase, so a regression shows in the
//! phase that caused it: normalize, locate, verify (cache hit, and miss: an RS256
//! signature and the cache insert), decide, deny (the 401 of a request without a
//! token), rewrite, and the whole evaluation with a cached token.
//!
//! Run: `cargo bench -p tribune-proxy --bench phases` (BENCHMARKS.md records runs).
//! Everything the key runtime does for an inline key set completes without waiting,
//! so each future is polled once with a no-op waker: no runtime in the measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::json;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tribune_enforce::{Evaluation, Options, Policy, PolicyDocument, Request, View};
use tribune_jwks::runtime::{ProviderRuntime, Runtimes};
use tribune_test_support::tokens::Rs256;

const NOW: i64 = 1_700_000_000;

/// Polls a future that must be ready at once.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a phase waited; the benchmark measures only ready work"),
    }
}

/// The seed's shape: `api` takes edge callers on `/api/` with an okta token whose
/// `perms.role` is `admin`, and forwards the payload.
fn policy(key: &Rs256) -> Policy {
    let doc = PolicyDocument::from_json(&json!({
        "Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny",
        "Entries": [
            {"Kind": "jwt-provider", "Name": "okta", "Issuer": "https://okta.example",
             "Audiences": ["api"],
             "JSONWebKeySet": {"Local": {"JWKS": key.inline_jwks()}},
             "Forwarding": {"HeaderName": "x-jwt-payload"}},
            {"Kind": "service-intentions", "Name": "api",
             "JWT": {"Providers": [{"Name": "okta"}]},
             "Sources": [{"Name": "*", "Permissions": [
                {"Action": "deny", "HTTP": {"PathPrefix": "/api/admin"}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/api/", "Methods": ["GET", "POST"]},
                 "JWT": {"Providers": [{"Name": "okta",
                     "VerifyClaims": [{"Path": ["perms", "role"], "Value": "admin"}]}]}}]}]},
        ],
    }))
    .unwrap();
    Policy::compile(&doc).unwrap()
}

fn claims(i: u64) -> serde_json::Value {
    json!({"iss": "https://okta.example", "aud": "api", "sub": format!("user-{i}"),
           "exp": NOW + 3600, "iat": NOW, "perms": {"role": "admin"}, "scope": "read write"})
}

fn headers(token: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("api"));
    h.insert("user-agent", HeaderValue::from_static("bench/1"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    if let Some(t) = token {
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    h
}

fn bench(c: &mut Criterion) {
    let key = Rs256::new("k1");
    let policy = policy(&key);
    let provider = policy.providers[0].clone();
    let runtime: Arc<ProviderRuntime> = ProviderRuntime::new(&provider).unwrap();
    let runtimes = [runtime.clone()];
    let keys = Runtimes(&runtimes);
    let token = key.sign(&claims(0));
    // Leaked: the requests borrow them for the whole run.
    let with_token: &'static HeaderMap = Box::leak(Box::new(headers(Some(&token))));
    let without: &'static HeaderMap = Box::leak(Box::new(headers(None)));
    let path = "/api/v1/items/./42";

    // A path with a dot segment (the slow path), and an already normal one.
    c.bench_function("phase/normalize", |b| {
        b.iter(|| tribune_authz::normalize_request_path(black_box(path), &policy.normalization))
    });
    c.bench_function("phase/normalize_clean_path", |b| {
        let clean = "/api/v1/items/42";
        b.iter(|| tribune_authz::normalize_request_path(black_box(clean), &policy.normalization))
    });

    let view = View {
        headers: with_token,
        query: None,
        hide_underscores: false,
        authorization: None,
    };
    c.bench_function("phase/locate", |b| {
        b.iter(|| tribune_jwt::locate::extract(&provider.locations, black_box(&view)))
    });

    assert!(matches!(now(runtime.check(&token, NOW)), Some(Ok(_))));
    c.bench_function("phase/verify_hit", |b| {
        b.iter(|| now(runtime.check(black_box(&token), NOW)))
    });
    // The floor of a miss: the RSA-2048 public operation alone, key parsed and
    // signature decoded in advance (a miss's cost is compared with this in one run).
    {
        use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
        use base64::Engine;
        let der = key.public_key_der();
        let public = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).unwrap();
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap();
        c.bench_function("phase/verify_floor_rsa2048", |b| {
            b.iter(|| public.verify_sig(black_box(signed.as_bytes()), black_box(&sig)))
        });
    }
    // A miss: a runtime with an empty cache for each measured check (made and
    // dropped outside the measurement).
    c.bench_function("phase/verify_miss_rs256", |b| {
        b.iter_batched_ref(
            || ProviderRuntime::new(&provider).unwrap(),
            |rt| now(rt.check(black_box(&token), NOW)),
            BatchSize::SmallInput,
        )
    });

    let request = |h: &'static HeaderMap| Request {
        caller: None,
        method: "GET",
        path,
        query: None,
        headers: h,
    };
    let decided = match now(policy.evaluate(&request(with_token), Options::default(), NOW, &keys)) {
        Evaluation::Decided(d) => d,
        Evaluation::Refused(r) => panic!("refused: {:?}", r.refusal),
    };
    assert!(decided.decision.allowed(), "{:?}", decided.decision);
    c.bench_function("phase/decide", |b| {
        b.iter(|| {
            policy.decide(
                None,
                "GET",
                black_box(&decided.path),
                &view,
                &decided.outcomes,
            )
        })
    });
    c.bench_function("phase/rewrite", |b| {
        b.iter_batched_ref(
            || with_token.clone(),
            |h| policy.rewrite(&decided, h, None),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("phase/evaluate_cached_token", |b| {
        b.iter(|| {
            now(policy.evaluate(
                black_box(&request(with_token)),
                Options::default(),
                NOW,
                &keys,
            ))
        })
    });
    c.bench_function("phase/deny_no_token", |b| {
        b.iter(|| {
            let e =
                now(policy.evaluate(black_box(&request(without)), Options::default(), NOW, &keys));
            match e {
                Evaluation::Decided(d) => d
                    .deny_response(&policy)
                    .map(|r| (r.status, r.challenge, r.body.len())),
                Evaluation::Refused(_) => None,
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
