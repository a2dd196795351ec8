//! Property: canonical JSON decodes back to an equal entry (and so does the same
//! entry written as HCL1), for random valid `jwt-provider` and `service-intentions`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::subsequence;
use serde_json::{json, Map, Value};
use tribune_model::{entry_from_json, parse_entry, ConfigEntry};

/// Any text without `$` (HCL1 keeps `${...}` interpolations raw, so a lone `${` cannot
/// be written in HCL1 at all).
fn text() -> impl Strategy<Value = String> {
    "[^$]{0,12}"
}

fn nonempty() -> impl Strategy<Value = String> {
    "[^$]{1,12}"
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn meta() -> impl Strategy<Value = Value> {
    btree_map("[a-zA-Z0-9_.-]{1,10}", text(), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

fn maybe(
    key: &'static str,
    s: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Option<(String, Value)>> {
    proptest::option::of(s.prop_map(move |v| (key.to_string(), v)))
}

fn object(fields: Vec<Option<(String, Value)>>) -> Value {
    Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>())
}

fn tls() -> impl Strategy<Value = Value> {
    prop_oneof![
        (text(), text()).prop_map(|(i, c)| json!({"CaCertificateProviderInstance": {"InstanceName": i, "CertificateName": c}})),
        nonempty().prop_map(|f| json!({"TrustedCA": {"Filename": f}})),
        nonempty().prop_map(|f| json!({"TrustedCA": {"EnvironmentVariable": f}})),
        nonempty().prop_map(|f| json!({"TrustedCA": {"InlineString": f}})),
        vec(any::<u8>(), 1..16).prop_map(|b| json!({"TrustedCA": {"InlineBytes": b}})),
    ]
}

fn remote() -> impl Strategy<Value = Value> {
    let back_off = (0i64..10_000_000_000, 0i64..10_000_000_000)
        .prop_map(|(b, extra)| json!({"BaseInterval": b, "MaxInterval": b + extra}));
    let retry = (0i64..5, proptest::option::of(back_off)).prop_map(|(n, b)| {
        let mut m = json!({"NumRetries": n});
        if let Some(b) = b {
            m["RetryPolicyBackOff"] = b;
        }
        m
    });
    let cluster = (
        maybe(
            "DiscoveryType",
            prop_oneof![
                Just("STRICT_DNS"),
                Just("STATIC"),
                Just("LOGICAL_DNS"),
                Just("EDS"),
                Just("ORIGINAL_DST")
            ]
            .prop_map(Value::from),
        ),
        maybe("TLSCertificates", tls()),
        maybe(
            "ConnectTimeout",
            (0i64..10_000_000_000).prop_map(Value::from),
        ),
    )
        .prop_map(|(a, b, c)| object(vec![a, b, c]));
    (
        ("[a-z]{1,8}", "[a-z/]{0,8}").prop_map(|(h, p)| format!("https://{h}.example/{p}")),
        maybe("RequestTimeoutMs", (0i64..100_000).prop_map(Value::from)),
        maybe(
            "CacheDuration",
            (0i64..10_000_000_000_000).prop_map(Value::from),
        ),
        maybe("FetchAsynchronously", any::<bool>().prop_map(Value::from)),
        maybe("UseSNI", any::<bool>().prop_map(Value::from)),
        maybe("RetryPolicy", retry),
        maybe("JWKSCluster", cluster),
    )
        .prop_map(|(uri, a, b, c, d, e, f)| {
            let mut o = object(vec![a, b, c, d, e, f]);
            o["URI"] = Value::from(uri);
            json!({ "Remote": o })
        })
}

fn key_set() -> impl Strategy<Value = Value> {
    use base64::Engine;
    prop_oneof![
        vec(any::<u8>(), 1..40).prop_map(
            |b| json!({"Local": {"JWKS": base64::engine::general_purpose::STANDARD.encode(b)}})
        ),
        nonempty().prop_map(|f| json!({"Local": {"Filename": f}})),
        remote(),
    ]
}

fn location() -> impl Strategy<Value = Value> {
    prop_oneof![
        (nonempty(), text(), any::<bool>())
            .prop_map(|(n, p, f)| json!({"Header": {"Name": n, "ValuePrefix": p, "Forward": f}})),
        nonempty().prop_map(|n| json!({"QueryParam": {"Name": n}})),
        nonempty().prop_map(|n| json!({"Cookie": {"Name": n}})),
    ]
}

fn jwt_provider() -> impl Strategy<Value = Value> {
    (
        ident(),
        key_set(),
        maybe("Issuer", text().prop_map(Value::from)),
        maybe("Audiences", vec(text(), 0..3).prop_map(Value::from)),
        maybe("Locations", vec(location(), 0..3).prop_map(Value::from)),
        maybe(
            "Forwarding",
            (nonempty(), any::<bool>())
                .prop_map(|(h, p)| json!({"HeaderName": h, "PadForwardPayloadHeader": p})),
        ),
        maybe("ClockSkewSeconds", (0i64..300).prop_map(Value::from)),
        maybe("CacheConfig", (0i64..1000).prop_map(|s| json!({"Size": s}))),
        maybe("Meta", meta()),
    )
        .prop_map(|(name, ks, a, b, c, d, e, f, g)| {
            let mut o = object(vec![a, b, c, d, e, f, g]);
            o["Kind"] = Value::from("jwt-provider");
            o["Name"] = Value::from(name);
            o["JSONWebKeySet"] = ks;
            o
        })
}

fn jwt_requirement() -> impl Strategy<Value = Value> {
    let claim = (vec(nonempty(), 0..3), text()).prop_map(|(p, v)| json!({"Path": p, "Value": v}));
    vec(
        (ident(), vec(claim, 0..3)).prop_map(|(n, c)| json!({"Name": n, "VerifyClaims": c})),
        0..3,
    )
    .prop_map(|p| json!({"Providers": p}))
}

fn header() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just(("Present".to_string(), Value::from(true))),
        (
            prop_oneof![
                Just("Exact"),
                Just("Prefix"),
                Just("Suffix"),
                Just("Contains"),
            ],
            nonempty()
        )
            .prop_map(|(k, v)| (k.to_string(), Value::from(v))),
        // Regexes compile at write time: generated ones are valid.
        "[a-z.]{1,8}(\\.\\*)?".prop_map(|v| ("Regex".to_string(), Value::from(v))),
    ];
    (nonempty(), kind, any::<bool>(), any::<bool>()).prop_map(|(name, (k, v), invert, ic)| {
        let mut h = json!({"Name": name, "Invert": invert});
        let case_ok = k != "Present" && k != "Regex";
        h["IgnoreCase"] = Value::from(ic && case_ok);
        h[k] = v;
        h
    })
}

fn permission() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        Just(None),
        "/[a-z/]{0,8}".prop_map(|p| Some(("PathExact".to_string(), Value::from(p)))),
        "/[a-z/]{0,8}".prop_map(|p| Some(("PathPrefix".to_string(), Value::from(p)))),
        "[a-z/.]{1,8}(\\.\\*)?".prop_map(|p| Some(("PathRegex".to_string(), Value::from(p)))),
    ];
    let methods = subsequence(
        vec![
            "GET", "head", "Post", "PUT", "PATCH", "delete", "CONNECT", "OPTIONS", "TRACE",
        ],
        0..4,
    );
    (
        prop_oneof![Just("allow"), Just("deny")],
        path,
        vec(header(), 0..3),
        methods,
        proptest::option::of(jwt_requirement()),
    )
        .prop_filter("HTTP needs a path, header or method", |(_, p, h, m, _)| {
            p.is_some() || !h.is_empty() || !m.is_empty()
        })
        .prop_map(|(action, path, headers, methods, jwt)| {
            let mut http = object(vec![path]);
            http["Header"] = Value::from(headers);
            http["Methods"] = Value::from(methods);
            let mut p = json!({"Action": action, "HTTP": http});
            if let Some(j) = jwt {
                p["JWT"] = j;
            }
            p
        })
}

fn intentions() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("*".to_string()), ident()],
        btree_set(prop_oneof![Just("*".to_string()), ident()], 1..5),
        proptest::option::of(jwt_requirement()),
        maybe("Meta", meta()),
        vec(
            (
                any::<bool>(),
                vec(permission(), 1..3),
                text(),
                proptest::option::of(ident()),
            ),
            5,
        ),
    )
        .prop_map(|(dest, names, jwt, meta, shapes)| {
            let sources: Vec<Value> = names
                .into_iter()
                .zip(shapes)
                .map(|(name, (l4, perms, desc, peer))| {
                    let mut s = json!({"Name": name, "Description": desc});
                    if l4 || dest == "*" {
                        s["Action"] =
                            Value::from(if desc.len() % 2 == 0 { "allow" } else { "deny" });
                    } else {
                        s["Permissions"] = Value::from(perms);
                    }
                    if let Some(peer) = peer.filter(|_| name != "*") {
                        s["Peer"] = Value::from(peer);
                    }
                    s
                })
                .collect();
            let mut o = object(vec![meta]);
            o["Kind"] = Value::from("service-intentions");
            o["Name"] = Value::from(dest);
            o["Sources"] = Value::from(sources);
            if let Some(j) = jwt {
                o["JWT"] = j;
            }
            o
        })
}

/// Renders a JSON object as HCL1 with objects as blocks (`key { }`) when `blocks`.
fn to_hcl(v: &Value, blocks: bool) -> String {
    use tribune_model::hcl::render_string as quote;
    fn value(v: &Value, blocks: bool) -> String {
        match v {
            Value::Object(m) => format!("{{\n{}}}", body(m, blocks)),
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| value(i, blocks))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::String(s) => quote(s),
            other => other.to_string(),
        }
    }
    fn body(m: &Map<String, Value>, blocks: bool) -> String {
        let mut out = String::new();
        for (k, v) in m {
            if blocks && v.is_object() {
                out.push_str(&format!("{} {}\n", quote(k), value(v, blocks)));
            } else {
                out.push_str(&format!("{} = {}\n", quote(k), value(v, blocks)));
            }
        }
        out
    }
    match v {
        Value::Object(m) => body(m, blocks),
        _ => panic!("top level must be an object"),
    }
}

fn check_roundtrip(input: Value, blocks: bool) -> Result<(), TestCaseError> {
    let first: ConfigEntry = entry_from_json(input.clone())
        .map_err(|e| TestCaseError::fail(format!("generated entry invalid: {e}\n{input:#}")))?;
    let canonical = first.to_json();
    let again = entry_from_json(canonical.clone())
        .map_err(|e| TestCaseError::fail(format!("canonical JSON rejected: {e}\n{canonical:#}")))?;
    prop_assert_eq!(&again, &first);
    prop_assert_eq!(again.to_canonical_string(), first.to_canonical_string());
    // The model's renderer (what the UI and `config read -format hcl` show), or
    // objects written as blocks.
    let hcl = if blocks {
        to_hcl(&canonical, true)
    } else {
        tribune_model::hcl::render(canonical.as_object().unwrap())
    };
    let from_hcl = parse_entry(&hcl)
        .map_err(|e| TestCaseError::fail(format!("HCL rendering rejected: {e}\n{hcl}")))?;
    prop_assert_eq!(&from_hcl, &first);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn jwt_provider_canonical_json_decodes_to_an_equal_entry(v in jwt_provider(), blocks in any::<bool>()) {
        check_roundtrip(v, blocks)?;
    }

    #[test]
    fn service_intentions_canonical_json_decodes_to_an_equal_entry(v in intentions(), blocks in any::<bool>()) {
        check_roundtrip(v, blocks)?;
    }

    #[test]
    fn hcl_parser_never_panics(s in "\\PC{0,64}") {
        let _ = tribune_model::hcl::parse(&s);
    }

    #[test]
    fn go_duration_parser_never_panics(s in "\\PC{0,12}") {
        let _ = tribune_model::go::parse_duration(&s);
    }
}
