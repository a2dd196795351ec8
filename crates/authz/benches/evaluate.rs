//! Intentions engine benchmarks: evaluation latency with 10, 1 000 and 10 000
//! intentions on the destination (mixed L4/L7, regexes, headers, JWT claims), and
//! compile time. Run: `cargo bench -p tribune-authz --bench evaluate`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Value};
use std::hint::black_box;
use tribune_authz::{
    compile, Action, Caller, CompileInput, HeaderList, RequestFacts, TokenOutcome, Tokens,
};
use tribune_model::{entry_from_json, ConfigEntry, JwtProvider, ServiceIntentions};

fn source(i: usize) -> Value {
    let name = format!("svc-{i}");
    match i % 3 {
        0 => json!({"Name": name, "Action": if i % 2 == 0 { "allow" } else { "deny" }}),
        1 => json!({"Name": name, "Permissions": [
            {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
            {"Action": "allow", "HTTP": {"PathRegex": "/api/v[0-9]+/items(/.*)?", "Methods": ["GET", "HEAD"],
                "Header": [{"Name": "x-tenant", "Prefix": "t-"}]},
             "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": ["perms", "role"], "Value": "reader"}]}]}},
            {"Action": "allow", "HTTP": {"PathExact": "/healthz"}}
        ]}),
        _ => json!({"Name": name, "Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/api/", "Header": [{"Name": "x-env", "Exact": "prod", "IgnoreCase": true}]}}
        ]}),
    }
}

fn world(n: usize, unique_regexes: bool) -> (Vec<ServiceIntentions>, Vec<JwtProvider>) {
    let mut sources: Vec<Value> = (0..n).map(source).collect();
    if unique_regexes {
        // Worst case for compilation: every regex differs.
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(p) = s.pointer_mut("/Permissions/1/HTTP/PathRegex") {
                *p = Value::from(format!("/api/v[0-9]+/items{i}(/.*)?"));
            }
        }
    }
    let api = json!({"Kind": "service-intentions", "Name": "api",
        "JWT": {"Providers": [{"Name": "okta"}]}, "Sources": sources});
    let wild = json!({"Kind": "service-intentions", "Name": "*", "Sources": [{"Name": "*", "Action": "deny"}]});
    let entries = [api, wild]
        .into_iter()
        .map(|v| match entry_from_json(v) {
            Ok(ConfigEntry::ServiceIntentions(e)) => e,
            other => panic!("{other:?}"),
        })
        .collect();
    let provider = match entry_from_json(
        json!({"Kind": "jwt-provider", "Name": "okta", "Issuer": "https://okta",
        "JSONWebKeySet": {"Remote": {"URI": "https://okta/keys"}}}),
    ) {
        Ok(ConfigEntry::JwtProvider(p)) => p,
        other => panic!("{other:?}"),
    };
    (entries, vec![provider])
}

fn bench(c: &mut Criterion) {
    let payload = tribune_model::Claims::from_value(
        &json!({"iss": "https://okta", "sub": "u1", "perms": {"role": "reader"}}),
    )
    .expect("an object");
    let headers = [
        ("x-tenant", "t-42"),
        ("user-agent", "bench"),
        ("accept", "*/*"),
    ];
    let tokens = [("okta", TokenOutcome::Valid(&payload))];
    let mut group = c.benchmark_group("evaluate");
    for n in [10usize, 1_000, 10_000] {
        let (entries, providers) = world(n, false);
        let e: Vec<&ServiceIntentions> = entries.iter().collect();
        let p: Vec<&JwtProvider> = providers.iter().collect();
        let table = compile(&CompileInput {
            destination: "api",
            entries: &e,
            providers: &p,
            http: true,
            default: Action::Deny,
        })
        .expect("compiles");
        // A typical allowed request: L7 intention, regex path, header, JWT claim.
        let caller = format!("svc-{}", if n > 10 { 700 } else { 7 });
        let h = HeaderList(&headers);
        let facts = RequestFacts {
            caller: Some(Caller::local(&caller)),
            method: "GET",
            path: "/api/v2/items/17",
            headers: &h,
            tokens: Tokens::new(&tokens),
        };
        assert!(table.evaluate(&facts).allowed());
        group.bench_with_input(BenchmarkId::new("l7_jwt_allowed", n), &facts, |b, f| {
            b.iter(|| black_box(table.evaluate(black_box(f))))
        });
        let unknown = RequestFacts {
            caller: Some(Caller::local("stranger")),
            ..facts
        };
        assert!(!table.evaluate(&unknown).allowed());
        group.bench_with_input(
            BenchmarkId::new("unknown_caller_denied", n),
            &unknown,
            |b, f| b.iter(|| black_box(table.evaluate(black_box(f)))),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for (n, unique) in [
        (1_000usize, false),
        (10_000, false),
        (1_000, true),
        (10_000, true),
    ] {
        let (entries, providers) = world(n, unique);
        let e: Vec<&ServiceIntentions> = entries.iter().collect();
        let p: Vec<&JwtProvider> = providers.iter().collect();
        let id = if unique {
            format!("{n}-unique-regexes")
        } else {
            format!("{n}")
        };
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                black_box(compile(&CompileInput {
                    destination: "api",
                    entries: &e,
                    providers: &p,
                    http: true,
                    default: Action::Deny,
                }))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
