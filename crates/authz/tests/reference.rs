//! Property: the compiled evaluator agrees with a small, obviously-correct reference
//! evaluator written straight from Consul's RBAC algorithm (O(n²), no indexes), on
//! random intention sets and requests, under both default policies and protocols.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{json, Value};
use tribune_authz::{
    claim_matches, compile, Action, Caller, CompileInput, HeaderList, RequestFacts, TokenOutcome,
    Tokens,
};
use tribune_model::intentions::{HttpMatch, JwtRequirement, PathMatch, SourceRule};
use tribune_model::{entry_from_json, Claims, ConfigEntry, JwtProvider, ServiceIntentions};

const PROVIDERS: [(&str, &str); 2] = [("okta", "iss-okta"), ("auth0", "iss-auth0")];

/// One flattened intention, as §c.1 describes it.
struct Flat<'a> {
    src: &'a str,
    peer: &'a str,
    dst: &'a str,
    prec: u32,
    top: Option<&'a JwtRequirement>,
    rule: &'a SourceRule,
}

fn ref_j(req: Option<&JwtRequirement>, tokens: &[(&str, TokenOutcome<'_>)]) -> bool {
    let Some(req) = req else { return true };
    if req.providers.is_empty() {
        return true;
    }
    req.providers.iter().any(|p| {
        PROVIDERS
            .iter()
            .filter(|(name, _)| p.name == "*" || p.name == *name)
            .any(|(name, iss)| {
                let payload = tokens
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, o)| match o {
                        TokenOutcome::Valid(v) => Some(v.to_value()),
                        _ => None,
                    });
                payload.is_some_and(|v| {
                    v.get("iss").and_then(Value::as_str) == Some(*iss)
                        && p.verify_claims.iter().all(|c| {
                            let mut cur = Some(&v);
                            for k in &c.path {
                                cur = cur.and_then(|x| x.get(k));
                            }
                            // Scopes: a top-level scope/scp string is a list.
                            match (c.path.as_slice(), cur) {
                                ([name], Some(Value::String(s)))
                                    if name == "scope" || name == "scp" =>
                                {
                                    s.split(' ').filter(|e| !e.is_empty()).any(|e| e == c.value)
                                }
                                _ => claim_matches(cur, &c.value),
                            }
                        })
                })
            })
    })
}

fn ref_http(m: &HttpMatch, method: &str, path: &str) -> bool {
    let path_ok = match &m.path {
        None => true,
        Some(PathMatch::PathExact(p)) => path == p,
        Some(PathMatch::PathPrefix(p)) => path.starts_with(p.as_str()),
        Some(PathMatch::PathRegex(_)) => unreachable!("not generated"),
    };
    path_ok && (m.methods.is_empty() || m.methods.iter().any(|x| x == method))
}

#[allow(clippy::too_many_arguments)]
fn reference(
    entries: &[ServiceIntentions],
    dst: &str,
    http: bool,
    default: Action,
    caller: Option<(&str, &str)>,
    method: &str,
    path: &str,
    tokens: &[(&str, TokenOutcome<'_>)],
) -> bool {
    let mut flat: Vec<Flat<'_>> = entries
        .iter()
        .filter(|e| e.name == dst || e.name == "*")
        .flat_map(|e| {
            e.sources.iter().map(move |s| Flat {
                src: &s.name,
                peer: &s.peer,
                dst: &e.name,
                prec: s.precedence,
                top: e.jwt.as_ref(),
                rule: &s.rule,
            })
        })
        .collect();
    flat.sort_by(|a, b| {
        b.prec
            .cmp(&a.prec)
            .then(a.peer.cmp(b.peer))
            .then(a.src.cmp(b.src))
            .then(a.dst.cmp(b.dst))
    });
    let mut seen = Vec::new();
    flat.retain(|f| {
        let key = (f.peer.to_string(), f.src.to_string());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    let (c_name, c_peer) = match caller {
        Some((n, p)) => (Some(n), p),
        None => (None, ""),
    };
    let matches = |f: &Flat<'_>| f.peer == c_peer && (f.src == "*" || Some(f.src) == c_name);
    for (i, f) in flat.iter().enumerate() {
        if !matches(f) {
            continue;
        }
        // (b) an earlier, strictly more specific, contained source matching the caller.
        let shadowed = flat[..i]
            .iter()
            .any(|h| f.src == "*" && h.src != "*" && h.peer == f.peer && matches(h));
        if shadowed {
            continue;
        }
        let fires = match f.rule {
            SourceRule::Action(a) => *a != default && (!http || ref_j(f.top, tokens)),
            SourceRule::Permissions(_) if !http => default == Action::Allow,
            SourceRule::Permissions(perms) => {
                match perms.iter().find(|p| ref_http(&p.http, method, path)) {
                    None => false,
                    Some(p) => {
                        p.action != default && ref_j(f.top, tokens) && ref_j(p.jwt.as_ref(), tokens)
                    }
                }
            }
        };
        if fires {
            return default == Action::Deny;
        }
    }
    default == Action::Allow
}

fn jwt_req() -> impl Strategy<Value = Value> {
    let claim = prop_oneof![
        Just(json!({"Path": ["role"], "Value": "admin"})),
        Just(json!({"Path": ["tags"], "Value": "x"})),
        Just(json!({"Path": ["scope"], "Value": "api:read"}))
    ];
    proptest::collection::vec(
        (
            prop_oneof![Just("okta"), Just("auth0"), Just("*")],
            proptest::collection::vec(claim, 0..2),
        )
            .prop_map(|(n, c)| json!({"Name": n, "VerifyClaims": c})),
        0..3,
    )
    .prop_map(|p| json!({"Providers": p}))
}

fn permission() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        Just(json!({})),
        Just(json!({"PathPrefix": "/a"})),
        Just(json!({"PathExact": "/a/b"})),
        Just(json!({"PathPrefix": "/"})),
    ];
    let methods = prop_oneof![
        Just(json!([])),
        Just(json!(["GET"])),
        Just(json!(["POST", "GET"]))
    ];
    (
        prop_oneof![Just("allow"), Just("deny")],
        path,
        methods,
        proptest::option::of(jwt_req()),
    )
        .prop_filter("non-empty HTTP", |(_, p, m, _)| {
            p != &json!({}) || m != &json!([])
        })
        .prop_map(|(a, mut http, m, jwt)| {
            http["Methods"] = m;
            let mut p = json!({"Action": a, "HTTP": http});
            if let Some(j) = jwt {
                p["JWT"] = j;
            }
            p
        })
}

fn entry(dest: &'static str) -> impl Strategy<Value = Value> {
    let source = (
        prop_oneof![Just("web"), Just("db"), Just("*")],
        prop_oneof![Just(""), Just("east")],
        prop_oneof![Just(json!("allow")), Just(json!("deny"))],
        proptest::collection::vec(permission(), 1..3),
        any::<bool>(),
    );
    (
        proptest::collection::vec(source, 1..5),
        proptest::option::of(jwt_req()),
    )
        .prop_map(move |(srcs, jwt)| {
            let mut seen = Vec::new();
            let sources: Vec<Value> = srcs
                .into_iter()
                .filter(|(n, p, ..)| {
                    let k = (*n, *p);
                    !seen.contains(&k) && {
                        seen.push(k);
                        true
                    }
                })
                .map(|(name, peer, action, perms, l7)| {
                    let mut s = json!({"Name": name, "Peer": peer});
                    if l7 && dest != "*" {
                        s["Permissions"] = Value::from(perms);
                    } else {
                        s["Action"] = action;
                    }
                    s
                })
                .collect();
            let mut e = json!({"Kind": "service-intentions", "Name": dest, "Sources": sources});
            if let Some(j) = jwt {
                e["JWT"] = j;
            }
            e
        })
}

fn payload() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(
        (prop_oneof![Just("iss-okta"), Just("iss-auth0"), Just("other")], prop_oneof![Just("admin"), Just("user")], any::<bool>(),
         prop_oneof![Just("openid api:read"), Just("api:read"), Just("openid"), Just("api:readx api")])
            .prop_map(|(iss, role, tag, scope)| json!({"iss": iss, "role": role, "scope": scope, "tags": if tag { json!(["x", "y"]) } else { json!([]) }})),
    )
}

fn parse(v: Value) -> Option<ServiceIntentions> {
    match entry_from_json(v) {
        Ok(ConfigEntry::ServiceIntentions(e)) => Some(e),
        _ => None,
    }
}

fn providers() -> Vec<JwtProvider> {
    PROVIDERS
        .iter()
        .map(|(n, iss)| {
            match entry_from_json(json!({"Kind": "jwt-provider", "Name": n, "Issuer": iss, "JSONWebKeySet": {"Local": {"Filename": "/k"}}})) {
                Ok(ConfigEntry::JwtProvider(p)) => p,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_evaluator_agrees_with_the_reference(
        api in entry("api"),
        wild in proptest::option::of(entry("*")),
        default_allow in any::<bool>(),
        http in any::<bool>(),
        caller in prop_oneof![Just(None), Just(Some(("web", ""))), Just(Some(("db", ""))), Just(Some(("web", "east"))), Just(Some(("other", "")))],
        method in prop_oneof![Just("GET"), Just("POST")],
        path in prop_oneof![Just("/"), Just("/a"), Just("/a/b"), Just("/c")],
        okta in payload(),
        auth0 in payload(),
    ) {
        let mut entries = vec![parse(api).expect("generated api entry is valid")];
        if let Some(w) = wild {
            entries.push(parse(w).expect("generated wildcard entry is valid"));
        }
        let default = if default_allow { Action::Allow } else { Action::Deny };
        let provs = providers();
        let prov_refs: Vec<&JwtProvider> = provs.iter().collect();
        let entry_refs: Vec<&ServiceIntentions> = entries.iter().collect();
        let table = compile(&CompileInput { destination: "api", entries: &entry_refs, providers: &prov_refs, http, default })
            .expect("compiles");
        let mut tokens: Vec<(&str, TokenOutcome<'_>)> = Vec::new();
        let okta = okta.as_ref().and_then(Claims::from_value);
        let auth0 = auth0.as_ref().and_then(Claims::from_value);
        if let Some(p) = &okta { tokens.push(("okta", TokenOutcome::Valid(p))); }
        if let Some(p) = &auth0 { tokens.push(("auth0", TokenOutcome::Valid(p))); } else { tokens.push(("auth0", TokenOutcome::Invalid("Jwt is expired"))); }
        let no_headers = HeaderList(&[]);
        let decision = table.evaluate(&RequestFacts {
            caller: caller.map(|(name, peer)| Caller { name, peer }),
            method,
            path,
            headers: &no_headers,
            tokens: Tokens::new(&tokens),
        });
        let want = reference(&entries, "api", http, default, caller, method, path, &tokens);
        prop_assert_eq!(decision.allowed(), want, "explain: {}", table.explain(&decision));
    }
}
