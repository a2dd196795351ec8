//! Explain requests from arbitrary bytes: the JSON body of
//! `POST /v1/connect/intentions/explain` (and what `intention test` builds) decoded,
//! described as the request the sidecar would receive, and evaluated by the
//! enforcement engine against a policy with L7 rules, a provider and the mesh
//! entry's normalization. Never panics; an answer is consistent (HTTP destination:
//! a status; allowed exactly when the status is 200).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tribune_enforce::explain::{explain, ExplainRequest};
use tribune_enforce::{Options, Policy, PolicyDocument};
use tribune_jwks::{ProviderRuntime, Registry, Runtimes};

struct World {
    rt: tokio::runtime::Runtime,
    policy: Policy,
    runtimes: Vec<Arc<ProviderRuntime>>,
    _registry: Registry,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        use base64::Engine;
        let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh4"}]});
        let doc = PolicyDocument::from_json(&serde_json::json!({
            "Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny",
            "Entries": [
                {"Kind": "jwt-provider", "Name": "idp", "Issuer": "idp",
                 "JSONWebKeySet": {"Local": {"JWKS": base64::engine::general_purpose::STANDARD.encode(jwks.to_string())}},
                 "Locations": [{"Header": {"Name": "Authorization", "ValuePrefix": "Bearer "}}, {"Cookie": {"Name": "s"}}, {"QueryParam": {"Name": "t"}}],
                 "Forwarding": {"HeaderName": "x-jwt-payload"}},
                {"Kind": "mesh", "HTTP": {"Incoming": {"RequestNormalization": {"MergeSlashes": true, "HeadersWithUnderscoresAction": "DROP_HEADER"}}}},
                {"Kind": "service-intentions", "Name": "api", "Sources": [
                  {"Name": "web", "Permissions": [
                    {"Action": "allow", "HTTP": {"PathPrefix": "/public/"}},
                    {"Action": "allow", "HTTP": {"PathPrefix": "/api/", "Header": [{"Name": "x-a", "Present": true}]},
                     "JWT": {"Providers": [{"Name": "idp", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]}}]},
                  {"Name": "*", "Action": "deny"}]},
            ],
        }))
        .expect("document");
        let policy = Policy::compile(&doc).expect("policy");
        let registry = Registry::default();
        let (runtimes, _) = registry.runtimes(&policy.providers).expect("runtimes");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        World { rt, policy, runtimes, _registry: registry }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = tribune_model::decode::parse_json(data) else {
        return;
    };
    let Ok(req) = ExplainRequest::from_json(&v) else {
        return;
    };
    let Ok(described) = req.describe() else {
        return;
    };
    let w = world();
    let options = Options {
        merge_slashes: req.merge_slashes,
    };
    let answer = w.rt.block_on(explain(
        &w.policy,
        &described,
        options,
        1_700_000_000,
        &Runtimes(&w.runtimes),
    ));
    let status = answer
        .status
        .expect("an HTTP destination answers with a status");
    assert_eq!(answer.allowed, status == 200, "{answer:?}");
});
