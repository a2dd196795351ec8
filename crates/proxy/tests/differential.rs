//! Differential test: explain is the sidecar. Thousands of generated (policy,
//! request) pairs (random intentions with L7 rules, JWT requirements and claims,
//! provider locations and mesh normalization; random callers, methods, paths,
//! headers and tokens: valid, expired, wrong key, unknown key, other issuer, garbage,
//! in random locations), each sent through the sidecar's real request path (HTTP/1.1
//! over an in-memory stream into `serve_stream`, policy fetched from the agent's
//! snapshot endpoint) and through the agent's `POST /v1/connect/intentions/explain`.
//! Status, reason code and deciding intention must agree. A third side: the same
//! request as an external proxy's check (`connect authz`, `http::check`), which must
//! agree too, except that a path the sidecar would forward normalized is refused
//! there (`path_not_normalized`: the proxy in front forwards its own copy).
//!
//! `DIFF_SEED=<n>` replays one run; `DIFF_POLICIES` / `DIFF_REQUESTS` change its size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Body;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::Es256;
use tower::ServiceExt;
use tribune_enforce::explain::{ExplainRequest, ExplainResponse};
use tribune_proxy::{AccessRecord, Proxy, ProxyConfig, SnapshotDoc};
use tribune_server::{router, AgentConfig, AppState, Shared};

struct World {
    agent: Shared,
    proxy: Arc<Proxy>,
    records: Arc<Mutex<Vec<AccessRecord<'static>>>>,
    /// Provider "a" (inline), "b" (remote), "c" (inline, no Issuer).
    a: Es256,
    b: Es256,
    c: Es256,
    /// A key no provider has, with a's kid (bad signature) and its own (unknown kid).
    stranger_same_kid: Es256,
    stranger: Es256,
    jwks_uri: String,
}

async fn agent_call(agent: &Shared, method: &str, uri: &str, body: Value) -> (u16, String) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(if body.is_null() {
            String::new()
        } else {
            body.to_string()
        }))
        .unwrap();
    let res = router(agent.clone()).oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

const CALLERS: [Option<&str>; 5] = [Some("web"), Some("admin"), Some("batch"), Some("web"), None];
const METHODS: [&str; 5] = ["GET", "GET", "POST", "PUT", "DELETE"];
const PATHS: [&str; 14] = [
    "/",
    "/api/items",
    "/api/items/7",
    "/admin/users",
    "/public/doc.txt",
    "/api//items",
    "/api/%2e%2e/admin/users",
    "/public/..%2Fadmin/x",
    "/public/%2F%2Fx",
    "/API/items",
    "/api/items?access_token=placeholder",
    "/api/items?x=1&tok=placeholder",
    "/public/./doc.txt",
    "/admin%5Cusers",
];

fn locations(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..4) {
        0 => json!([]),
        1 => json!([{"Header": {"Name": "x-token", "ValuePrefix": "", "Forward": rng.bool()}}]),
        2 => json!([{"Cookie": {"Name": "session"}}, {"QueryParam": {"Name": "tok"}}]),
        _ => json!([
            {"Header": {"Name": "Authorization", "ValuePrefix": "Bearer ", "Forward": rng.bool()}},
            {"QueryParam": {"Name": "access_token"}},
        ]),
    }
}

fn provider_entries(w: &World, rng: &mut fastrand::Rng) -> Vec<Value> {
    let jwks = |k: &Es256| support::inline_jwks(&[k]);
    let mut a = json!({"Kind": "jwt-provider", "Name": "a", "Issuer": "https://a.example",
        "JSONWebKeySet": {"Local": {"JWKS": jwks(&w.a)}}, "Locations": locations(rng)});
    if rng.bool() {
        a["Forwarding"] = json!({"HeaderName": "x-jwt-a"});
    }
    if rng.bool() {
        a["Audiences"] = json!(["api"]);
    }
    let b = json!({"Kind": "jwt-provider", "Name": "b", "Issuer": "https://b.example",
        "JSONWebKeySet": {"Remote": {"URI": w.jwks_uri, "FetchAsynchronously": false}},
        "Locations": locations(rng)});
    let c = json!({"Kind": "jwt-provider", "Name": "c",
        "JSONWebKeySet": {"Local": {"JWKS": jwks(&w.c)}},
        "Locations": [{"Header": {"Name": "x-c-token"}}]});
    vec![a, b, c]
}

fn jwt_requirement(rng: &mut fastrand::Rng) -> Value {
    let names = ["a", "b", "c", "a", "*"];
    let mut providers = Vec::new();
    for _ in 0..rng.usize(1..3) {
        let name = *pick(rng, &names);
        let mut p = json!({"Name": name});
        if name != "*" && rng.bool() {
            p["VerifyClaims"] = match rng.u8(..2) {
                0 => json!([{"Path": ["role"], "Value": "admin"}]),
                _ => json!([{"Path": ["perms", "level"], "Value": "2"}]),
            };
        }
        providers.push(p);
    }
    let mut req = json!({"Providers": providers});
    if rng.u8(..4) == 0 {
        // Tribune's extension: no token meets it, a present one must verify.
        req["Optional"] = json!(true);
    }
    req
}

fn permission(rng: &mut fastrand::Rng) -> Value {
    let mut http = serde_json::Map::new();
    match rng.u8(..4) {
        0 => {
            http.insert(
                "PathPrefix".into(),
                json!(pick(rng, &["/api/", "/admin", "/public/", "/"])),
            );
        }
        1 => {
            http.insert(
                "PathExact".into(),
                json!(pick(rng, &["/api/items", "/admin/users", "/"])),
            );
        }
        2 => {
            http.insert(
                "PathRegex".into(),
                json!(pick(rng, &["/api/items/[0-9]+", "/(public|api)/.*"])),
            );
        }
        _ => {}
    }
    if rng.u8(..3) == 0 {
        http.insert(
            "Methods".into(),
            json!(pick(rng, &[vec!["GET"], vec!["POST", "PUT"]])),
        );
    }
    if rng.u8(..3) == 0 {
        http.insert(
            "Header".into(),
            match rng.u8(..3) {
                0 => json!([{"Name": "x-env", "Exact": "prod"}]),
                1 => json!([{"Name": "x-env", "Present": true, "Invert": true}]),
                _ => json!([{"Name": "x_env", "Prefix": "pr"}]),
            },
        );
    }
    if http.is_empty() {
        http.insert("PathPrefix".into(), json!("/"));
    }
    let mut p = json!({"Action": pick(rng, &["allow", "deny"]), "HTTP": http});
    if rng.u8(..3) == 0 {
        p["JWT"] = jwt_requirement(rng);
    }
    p
}

fn intentions(name: &str, rng: &mut fastrand::Rng) -> Value {
    let mut sources = Vec::new();
    let mut used = Vec::new();
    for _ in 0..rng.usize(1..4) {
        let src = *pick(rng, &["web", "admin", "*", "batch"]);
        if used.contains(&src) {
            continue;
        }
        used.push(src);
        let mut s = json!({"Name": src});
        // Consul refuses L7 permissions on a `*` destination.
        if name == "*" || rng.bool() {
            s["Action"] = json!(pick(rng, &["allow", "deny"]));
        } else {
            s["Permissions"] = Value::from(
                (0..rng.usize(1..4))
                    .map(|_| permission(rng))
                    .collect::<Vec<_>>(),
            );
        }
        sources.push(s);
    }
    let mut e = json!({"Kind": "service-intentions", "Name": name, "Sources": sources});
    if rng.u8(..3) == 0 {
        e["JWT"] = jwt_requirement(rng);
    }
    e
}

fn mesh(rng: &mut fastrand::Rng) -> Value {
    json!({"Kind": "mesh", "HTTP": {"Incoming": {"RequestNormalization": {
        "MergeSlashes": rng.bool(),
        "PathWithEscapedSlashesAction": pick(rng, &["IMPLEMENTATION_SPECIFIC_DEFAULT", "KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_REDIRECT", "UNESCAPE_AND_FORWARD"]),
        "HeadersWithUnderscoresAction": pick(rng, &["ALLOW", "REJECT_REQUEST", "DROP_HEADER"]),
    }}}})
}

/// A token for one provider: valid, expired, signed by a stranger (with the right
/// kid, or an unknown kid), another issuer, or garbage.
fn token(w: &World, rng: &mut fastrand::Rng, provider: &str, now: i64) -> String {
    let (key, iss) = match provider {
        "a" => (&w.a, Some("https://a.example")),
        "b" => (&w.b, Some("https://b.example")),
        _ => (&w.c, None),
    };
    let mut claims = json!({"sub": "u1", "exp": now + 3600});
    if let Some(iss) = iss {
        claims["iss"] = json!(iss);
    }
    match rng.u8(..4) {
        0 | 3 => claims["role"] = json!(pick(rng, &["admin", "user"])),
        1 => claims["perms"] = json!({"level": pick(rng, &["2", "3"])}),
        _ => {}
    }
    if rng.bool() {
        claims["aud"] = json!(pick(rng, &["api", "other"]));
    }
    match rng.u8(..8) {
        0 => {
            claims["exp"] = json!(now - 3600);
            key.sign(&claims)
        }
        1 => w.stranger_same_kid.sign(&claims),
        2 => w.stranger.sign(&claims),
        3 => {
            claims["iss"] = json!("https://elsewhere.example");
            key.sign(&claims)
        }
        4 => "not-a-token".into(),
        _ => key.sign(&claims),
    }
}

struct Case {
    caller: Option<&'static str>,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
}

fn request(w: &World, rng: &mut fastrand::Rng, now: i64) -> Case {
    let mut target = pick(rng, &PATHS).to_string();
    let mut headers: Vec<(String, String)> = vec![("host".into(), "api".into())];
    if rng.u8(..3) == 0 {
        headers.push(("x-env".into(), pick(rng, &["prod", "dev"]).to_string()));
    }
    if rng.u8(..4) == 0 {
        headers.push(("x_env".into(), "prod".into()));
    }
    if rng.u8(..6) == 0 {
        headers.push(("x-jwt-a".into(), "forged".into()));
    }
    for p in ["a", "b", "c"] {
        if rng.u8(..2) == 0 {
            continue;
        }
        let t = token(w, rng, p, now);
        match rng.u8(..5) {
            0 | 1 => headers.push(("authorization".into(), format!("Bearer {t}"))),
            2 => headers.push((if p == "c" { "x-c-token" } else { "x-token" }.into(), t)),
            3 => headers.push(("cookie".into(), format!("session={t}"))),
            _ => {
                let sep = if target.contains('?') { '&' } else { '?' };
                let name = pick(rng, &["access_token", "tok"]);
                target = format!("{target}{sep}{name}={t}");
            }
        }
    }
    if rng.u8(..30) == 0 {
        headers.push(("host".into(), "other".into()));
    }
    Case {
        caller: *pick(rng, &CALLERS),
        method: METHODS[rng.usize(..METHODS.len())],
        target,
        headers,
    }
}

/// The sidecar's answer: status, and the access record's reason and intention.
async fn through_sidecar(w: &World, case: &Case) -> (u16, String, Option<String>) {
    let mut req = hyper::Request::builder()
        .method(case.method)
        .uri(case.target.as_str());
    for (k, v) in &case.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    w.records.lock().unwrap().clear();
    let status = support::through_stream(
        &w.proxy,
        case.caller,
        req.body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    let record = w.records.lock().unwrap().pop().expect("an access record");
    (status, record.reason.to_string(), record.intention)
}

/// The answer to the same request as an external proxy's check.
async fn through_check(w: &World, case: &Case) -> (u16, String, Option<String>) {
    let mut req = hyper::Request::builder()
        .method(case.method)
        .uri(case.target.as_str());
    for (k, v) in &case.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    w.records.lock().unwrap().clear();
    let resp = tribune_proxy::http::check(&w.proxy, case.caller.map(Arc::from), parts, false).await;
    let record = w.records.lock().unwrap().pop().expect("an access record");
    (
        resp.status().as_u16(),
        record.reason.to_string(),
        record.intention,
    )
}

async fn through_explain(w: &World, case: &Case) -> ExplainResponse {
    let mut req = ExplainRequest {
        source: case.caller.map(str::to_string),
        destination: "api".into(),
        method: Some(case.method.into()),
        path: Some(case.target.clone()),
        ..ExplainRequest::default()
    };
    for (k, v) in &case.headers {
        if k == "cookie" {
            // Explain's own cookie field (one `Cookie` header, as the sidecar got).
            req.cookies.push(v.clone());
        } else if k == "authorization" && v.starts_with("Bearer ") && req.token.is_none() {
            // And its token shorthand.
            req.token = Some(v["Bearer ".len()..].to_string());
        } else {
            req.headers.entry(k.clone()).or_default().push(v.clone());
        }
    }
    let (status, body) = agent_call(
        &w.agent,
        "POST",
        "/v1/connect/intentions/explain",
        serde_json::to_value(&req).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "explain failed: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn world() -> World {
    let echo = support::echo().await;
    let b = Es256::new("kb");
    let jwks = json!({"keys": [b.jwk()]});
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_uri = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let store = Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let agent = AppState::new(store, AgentConfig::default()).await.unwrap();
    let records: Arc<Mutex<Vec<AccessRecord<'static>>>> = Arc::new(Mutex::new(Vec::new()));
    let r = records.clone();
    let mut config = ProxyConfig::new(echo.addr);
    config.access_sink = Some(Arc::new(move |rec: &AccessRecord<'_>| {
        r.lock().unwrap().push(rec.clone().into_owned())
    }));
    World {
        agent,
        proxy: Proxy::new(config),
        records,
        a: Es256::new("ka"),
        b,
        c: Es256::new("kc"),
        stranger_same_kid: Es256::new("ka"),
        stranger: Es256::new("k-unknown"),
        jwks_uri,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_the_sidecars_answer_for_generated_policies_and_requests() {
    // A fixed seed by default (CI is reproducible); `DIFF_SEED=random` explores.
    let seed = match std::env::var("DIFF_SEED").ok().as_deref() {
        Some("random") => fastrand::u64(..),
        Some(s) => s.parse().expect("DIFF_SEED is a number or \"random\""),
        None => 20261202,
    };
    let policies: usize = std::env::var("DIFF_POLICIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let per_policy: usize = std::env::var("DIFF_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    eprintln!("differential: DIFF_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let w = world().await;
    let put = |v: Value| {
        let agent = w.agent.clone();
        async move { agent_call(&agent, "PUT", "/v1/config", v).await }
    };
    assert_eq!(
        put(json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}))
            .await
            .0,
        200
    );
    let (mut compared, mut installed, mut refused_writes) = (0usize, 0usize, 0usize);
    let mut normalized_refusals = 0usize;
    let mut seen_codes = std::collections::BTreeSet::new();
    for round in 0..policies {
        let mut entries = provider_entries(&w, &mut rng);
        entries.push(mesh(&mut rng));
        entries.push(intentions("api", &mut rng));
        let wildcard = rng.u8(..3) == 0;
        if wildcard {
            entries.push(intentions("*", &mut rng));
        } else {
            agent_call(
                &w.agent,
                "DELETE",
                "/v1/config/service-intentions/*",
                Value::Null,
            )
            .await;
        }
        let mut ok = true;
        for e in &entries {
            let (status, body) = put(e.clone()).await;
            if status != 200 {
                // A generated entry the agent refuses (a cross-entry check): the
                // policy is skipped, as no sidecar could be served it.
                assert_eq!(status, 400, "{body}");
                if refused_writes < 3 {
                    eprintln!("differential: refused: {body}");
                }
                ok = false;
                refused_writes += 1;
                break;
            }
        }
        if !ok {
            continue;
        }
        let (status, body) = agent_call(
            &w.agent,
            "GET",
            "/v1/tribune/proxy-snapshot/api",
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let doc = SnapshotDoc::from_json(&serde_json::from_str(&body).unwrap()).unwrap();
        w.proxy
            .install(doc, round as u64 + 1)
            .await
            .expect("the sidecar installs it");
        installed += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for _ in 0..per_policy {
            let case = request(&w, &mut rng, now);
            let (status, reason, intention) = through_sidecar(&w, &case).await;
            let e = through_explain(&w, &case).await;
            let explained = (
                e.status.unwrap_or(0),
                e.reason_code.clone(),
                e.intention.as_ref().map(|i| i.describe()),
            );
            assert_eq!(
                (status, reason.clone(), intention.clone()),
                explained,
                "DIFF_SEED={seed} round {round}: sidecar and explain disagree\nentries: {}\nrequest: {} {} from {:?} headers {:?}\nexplain: {}",
                serde_json::to_string_pretty(&entries).unwrap(),
                case.method,
                case.target,
                case.caller,
                case.headers,
                serde_json::to_string_pretty(&e).unwrap(),
            );
            let checked = through_check(&w, &case).await;
            if checked.1 == "path_not_normalized" {
                // Only a request the sidecar allows and forwards in another form.
                assert!(
                    (200..300).contains(&status),
                    "DIFF_SEED={seed} round {round}: check refused a path the sidecar answered {status}: {} {}",
                    case.method,
                    case.target
                );
                normalized_refusals += 1;
            } else {
                assert_eq!(
                    checked,
                    (status, reason.clone(), intention.clone()),
                    "DIFF_SEED={seed} round {round}: the external check and the sidecar disagree\nentries: {}\nrequest: {} {} from {:?} headers {:?}",
                    serde_json::to_string_pretty(&entries).unwrap(),
                    case.method,
                    case.target,
                    case.caller,
                    case.headers,
                );
            }
            seen_codes.insert(reason);
            compared += 1;
        }
    }
    eprintln!(
        "differential: {compared} requests over {installed} policies agree ({refused_writes} generated policies refused at write; {normalized_refusals} checks refused a path the sidecar forwards normalized); reasons seen: {seen_codes:?}"
    );
    assert!(
        normalized_refusals > 0,
        "the generator reaches unnormalized paths"
    );
    assert!(
        installed * 2 >= policies,
        "most generated policies must be valid ({installed}/{policies})"
    );
    // The generator reaches the interesting answers, or the test proves little.
    for code in [
        "intention",
        "permission",
        "default",
        "jwt_missing",
        "jwt_invalid",
        "jwt_claim",
        "escaped_separator",
    ] {
        assert!(
            seen_codes.contains(code),
            "no case ended in {code}: {seen_codes:?}"
        );
    }
}
