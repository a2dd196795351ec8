//! Decoding like Consul (§g.3): key matching, aliases, weak typing, durations and the
//! exact error texts for what cannot be decoded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tribune_model::{decode_text, parse_entry, ConfigEntry, DecodeError, EntryError};

fn decode_error(input: &str) -> DecodeError {
    match decode_text(input) {
        Ok(w) => panic!("expected a decode error, got {w:?}"),
        Err(e) => e,
    }
}

fn field_errors(input: &str) -> Vec<String> {
    match decode_error(input) {
        DecodeError::Fields(list) => list,
        other => panic!("expected field errors, got {other:?}"),
    }
}

fn provider(input: &str) -> tribune_model::JwtProvider {
    match parse_entry(input) {
        Ok(ConfigEntry::JwtProvider(p)) => p,
        other => panic!("expected a jwt-provider, got {other:?}"),
    }
}

#[test]
fn kind_must_be_present_a_string_and_known() {
    assert_eq!(
        decode_error("Name = \"x\"").to_string(),
        "Payload does not contain a kind/Kind key at the top level"
    );
    // Only `Kind` and `kind` name the kind, as in Consul.
    assert_eq!(
        decode_error("KIND = \"jwt-provider\"\nName = \"x\""),
        DecodeError::MissingKind
    );
    assert_eq!(
        decode_error("{\"Kind\": 5}").to_string(),
        "Kind value in payload is not a string"
    );
    assert_eq!(
        decode_error("Kind = \"service-routerz\"").to_string(),
        "invalid config entry kind: service-routerz"
    );
    assert_eq!(
        decode_error("Kind = \"jwt_provider\"\nName = \"x\"").to_string(),
        "invalid config entry kind: jwt_provider (did you mean \"jwt-provider\"?)"
    );
}

#[test]
fn unknown_keys_are_all_reported_with_dotted_paths() {
    let errs = field_errors(
        r#"Kind = "service-intentions"
Name = "api"
Bogus = 1
Sources = [ { Name = "web" Action = "allow" Extra = true Permissions = [ { HTTP { PathPrefx = "/" } } ] } ]"#,
    );
    assert_eq!(
        errs,
        [
            r#"invalid config key "Bogus""#,
            r#"invalid config key "Sources[0].Extra""#,
            r#"invalid config key "Sources[0].Permissions[0].HTTP.PathPrefx" (did you mean "PathPrefix"?)"#,
        ]
    );
}

#[test]
fn enterprise_keys_get_consul_ce_errors() {
    let errs = field_errors(
        r#"Kind = "service-intentions"
Name = "api"
Namespace = "team"
Partition = "p"
Sources = [ { Name = "web" Action = "allow" Namespace = "other" } ]"#,
    );
    assert_eq!(
        errs,
        [
            r#"invalid config key "Namespace", namespaces are a consul enterprise feature"#,
            r#"invalid config key "Partition""#,
            r#"invalid config key "Sources[0].Namespace", namespaces are a consul enterprise feature"#,
        ]
    );
    // Consul CE calls this "api-gateway jwt validation is a consul enterprise
    // feature"; it is an unknown key, no more (issue #42).
    let errs = field_errors("Kind = \"jwt-provider\"\nName = \"x\"\nJWTRules = 1");
    assert_eq!(errs, [r#"invalid config key "JWTRules""#]);
    // A JWT block on a source is told where it goes; a misspelt key gets a suggestion
    // and no Enterprise note.
    let errs = field_errors(
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"allow\" JWT { Providers = [ { Name = \"okta\" } ] } } ]",
    );
    assert_eq!(
        errs,
        [
            r#"invalid config key "Sources[0].JWT": a JWT block goes at the top level of a service-intentions entry (every source) or in a permission (Sources[i].Permissions[j].JWT)"#
        ]
    );
    let errs = field_errors(
        "Kind = \"service-intentions\"\nName = \"api\"\nJWT { Providers = [ { Name = \"okta\" VerifyClaim = [ { Path = [\"role\"] Value = \"admin\" } ] } ] }\nSources = [ { Name = \"web\" Action = \"allow\" } ]",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(r#"invalid config key "JWT.Providers[0].VerifyClaim" (did you mean"#),
        "{errs:?}"
    );
}

#[test]
fn old_doc_spelling_of_local_jwks_is_rejected() {
    let errs = field_errors(
        "Kind = \"jwt-provider\"\nName = \"x\"\nJWKS = { Local = { String = \"e30=\" } }",
    );
    assert_eq!(errs, [r#"invalid config key "JWKS""#]);
}

#[test]
fn read_only_fields_from_api_output_are_accepted_and_ignored() {
    let p = provider(
        r#"{"Kind":"jwt-provider","Name":"okta","JSONWebKeySet":{"Remote":{"URI":"https://x/k"}},
            "Hash":99,"CreateIndex":3,"ModifyIndex":4}"#,
    );
    assert_eq!(p.name, "okta");
}

#[test]
fn keys_match_case_insensitively_and_by_snake_alias() {
    for spelling in [
        "JSONWebKeySet",
        "jsonwebkeyset",
        "jsonWebKeySet",
        "json_web_key_set",
        "JSON_WEB_KEY_SET",
    ] {
        let p = provider(&format!(
            "{{\"kind\":\"jwt-provider\",\"name\":\"x\",\"{spelling}\":{{\"remote\":{{\"uri\":\"https://x/k\"}}}}}}"
        ));
        assert_eq!(p.name, "x", "{spelling}");
    }
    // Consul's typo'd alias is kept.
    let p = provider(
        r#"{"Kind":"jwt-provider","Name":"x","JSONWebKeySet":{"Local":{"Filename":"/k"}},
            "Forwarding":{"HeaderName":"h","pay_forward_payload_header":true}}"#,
    );
    assert!(p.forwarding.expect("forwarding").pad_forward_payload_header);
}

#[test]
fn two_spellings_of_one_field_are_rejected_not_merged() {
    let errs = field_errors(r#"{"Kind":"jwt-provider","Name":"a","name":"b"}"#);
    assert_eq!(errs, [r#"invalid config key "name""#]);
}

#[test]
fn weak_typing_converts_strings_numbers_and_bools() {
    let p = provider(
        r#"Kind = "jwt-provider"
Name = 42
ClockSkewSeconds = "0x10"
JSONWebKeySet { Remote { URI = "https://x/k" RequestTimeoutMs = "1500" FetchAsynchronously = "false" UseSNI = 1 } }
Audiences = "single"
"#,
    );
    assert_eq!(p.name, "42");
    assert_eq!(p.clock_skew_seconds, 16);
    assert_eq!(p.audiences, ["single"]);
    let tribune_model::jwt_provider::JsonWebKeySet::Remote(r) = p.json_web_key_set else {
        panic!("remote")
    };
    assert_eq!(r.request_timeout_ms, 1500);
    assert!(!r.fetch_asynchronously);
    assert!(r.use_sni);
}

#[test]
fn type_errors_name_the_field() {
    let errs = field_errors(
        r#"{"Kind":"jwt-provider","Name":"x","JSONWebKeySet":{"Remote":{"URI":"https://x/k","RequestTimeoutMs":"soon"}}}"#,
    );
    assert_eq!(
        errs,
        [
            r#"cannot parse 'JSONWebKeySet.Remote.RequestTimeoutMs' as int: strconv.ParseInt: parsing "soon": invalid syntax"#
        ]
    );
    let errs = field_errors(r#"{"Kind":"jwt-provider","Name":{"a":1}}"#);
    assert_eq!(
        errs,
        [
            r#"'Name' expected type 'string', got unconvertible type 'map[string]interface {}', value: '{"a":1}'"#
        ]
    );
    let errs = field_errors(
        r#"{"Kind":"jwt-provider","Name":"x","Forwarding":{"HeaderName":"h","PadForwardPayloadHeader":"maybe"}}"#,
    );
    assert_eq!(
        errs,
        [
            r#"cannot parse 'Forwarding.PadForwardPayloadHeader' as bool: strconv.ParseBool: parsing "maybe": invalid syntax"#
        ]
    );
}

#[test]
fn durations_are_go_strings_or_nanoseconds() {
    for (input, ns) in [
        ("\"30m\"", 1_800_000_000_000_i64),
        ("\"1h30m\"", 5_400_000_000_000),
        ("\"1.5s\"", 1_500_000_000),
        ("\"250ms\"", 250_000_000),
        ("20", 20),
        ("[\"2s\"]", 2_000_000_000),
    ] {
        let p = provider(&format!(
            "{{\"Kind\":\"jwt-provider\",\"Name\":\"x\",\"JSONWebKeySet\":{{\"Remote\":{{\"URI\":\"https://x/k\",\"CacheDuration\":{input}}}}}}}"
        ));
        let tribune_model::jwt_provider::JsonWebKeySet::Remote(r) = p.json_web_key_set else {
            panic!("remote")
        };
        assert_eq!(r.cache_duration, ns, "{input}");
    }
    let errs = field_errors(
        r#"{"Kind":"jwt-provider","Name":"x","JSONWebKeySet":{"Remote":{"URI":"https://x/k","CacheDuration":"2d"}}}"#,
    );
    assert_eq!(
        errs,
        [
            r#"error decoding 'JSONWebKeySet.Remote.CacheDuration': time: unknown unit "d" in duration "2d""#
        ]
    );
}

#[test]
fn syntax_errors_carry_a_position() {
    let e = decode_error("Kind = \"jwt-provider\"\nName = \n");
    assert!(e.to_string().starts_with("At 3:1:"), "{e}");
    let e = decode_error("{\"Kind\": ");
    assert!(e.to_string().starts_with("invalid JSON"), "{e}");
}

#[test]
fn pipeline_errors_distinguish_decode_from_validation() {
    assert!(matches!(
        parse_entry("Kind = \"nope\""),
        Err(EntryError::Decode(_))
    ));
    assert!(matches!(
        parse_entry("Kind = \"jwt-provider\""),
        Err(EntryError::Invalid(_))
    ));
}

#[test]
fn inline_bytes_accept_base64_or_raw_text() {
    let pem = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n";
    for (given, want) in [
        ("\"aGVsbG8=\"".to_string(), b"hello".to_vec()),
        (format!("\"{pem}\""), pem.replace("\\n", "\n").into_bytes()),
        ("[104, 105]".to_string(), b"hi".to_vec()),
    ] {
        let p = provider(&format!(
            r#"{{"Kind":"jwt-provider","Name":"x","JSONWebKeySet":{{"Remote":{{"URI":"https://x/k",
                "JWKSCluster":{{"TLSCertificates":{{"TrustedCA":{{"InlineBytes":{given}}}}}}}}}}}}}"#
        ));
        let tribune_model::jwt_provider::JsonWebKeySet::Remote(r) = p.json_web_key_set else {
            panic!("remote")
        };
        let tls = r.jwks_cluster.and_then(|c| c.tls_certificates);
        assert_eq!(
            tls,
            Some(tribune_model::jwt_provider::TlsCertificates::TrustedCa(
                tribune_model::jwt_provider::TrustedCa::InlineBytes(want)
            )),
            "{given}"
        );
    }
}

/// A key one or two edits from a field it could still be gets Consul's message and a
/// suggestion; a key close to nothing, or to a field already given, gets none.
#[test]
fn near_miss_keys_suggest_the_field() {
    let errors = field_errors(
        "Kind = \"jwt-provider\"\nName = \"okta\"\nIssuor = \"x\"\njson_web_key_sett = { Local = { JWKS = \"e30=\" } }\nForwarding = { HeaderNam = \"x\" }\nBogus = 1\n",
    );
    assert_eq!(
        errors,
        [
            r#"invalid config key "Issuor" (did you mean "Issuer"?)"#,
            r#"invalid config key "json_web_key_sett" (did you mean "JSONWebKeySet"?)"#,
            r#"invalid config key "Bogus""#,
            r#"invalid config key "Forwarding.HeaderNam" (did you mean "HeaderName"?)"#,
        ]
    );
    let table: &[(&str, &[&str], Option<&str>)] = &[
        ("Issuor", &["Issuer", "Audiences"], Some("Issuer")),
        ("issuer_", &["Issuer"], Some("Issuer")),
        ("Nam", &["Name", "Kind"], Some("Name")),
        ("Ky", &["ID"], None),
        ("Bogus", &["Name", "Kind", "Issuer"], None),
        (
            "ClockSkewSecond",
            &["ClockSkewSeconds", "CacheConfig"],
            Some("ClockSkewSeconds"),
        ),
    ];
    for (key, fields, want) in table {
        assert_eq!(
            tribune_model::decode::suggestion(key, fields.iter().copied()),
            *want,
            "{key}"
        );
    }
}

/// Every value that cannot be decoded is reported in one run, beside the unknown
/// keys, as validation errors are: a user fixes the file once, not once per error.
#[test]
fn every_undecodable_value_is_reported_at_once() {
    let errors = field_errors(
        "Kind = \"jwt-provider\"\nName = \"okta\"\nIssuer = \"x\"\nClockSkewSeconds = \"abc\"\nCacheConfig = { Size = \"big\" }\nLocations = [{ Header = { Name = \"a\" } }, { Header = \"oops\" }]\nBogus = 1\n",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(errors[0], r#"invalid config key "Bogus""#);
    for want in [
        "'ClockSkewSeconds' as int",
        "'CacheConfig.Size' as int",
        "'Locations[1].Header' expected type 'struct'",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{want}: {errors:#?}"
        );
    }
}

/// A body of many bad values reports a bounded number of them (each report is one
/// more decode of the body).
#[test]
fn undecodable_values_are_reported_up_to_a_bound() {
    let items: Vec<String> = (0..500).map(|_| r#"{"Header": "x"}"#.to_string()).collect();
    let input = format!(
        r#"{{"Kind": "jwt-provider", "Name": "p", "Locations": [{}]}}"#,
        items.join(",")
    );
    let errors = field_errors(&input);
    assert_eq!(errors.len(), 20, "{errors:#?}");
    assert!(errors[19].contains("Locations[19].Header"), "{errors:#?}");
}
