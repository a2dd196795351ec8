//! One named case per validation rule Consul applies to `jwt-provider` and
//! `service-intentions`, plus service-defaults/proxy-defaults, each asserting
//! Consul's exact message. Tribune reports every broken rule; the first one reported
//! is the one Consul reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tribune_model::{parse_entry, EntryError};

/// Messages of the validation errors of `input` (which must decode).
fn errors(input: &str) -> Vec<String> {
    match parse_entry(input) {
        Ok(e) => panic!("expected validation errors, got a valid entry: {e:?}"),
        Err(EntryError::Decode(d)) => panic!("expected validation errors, got decode error: {d}"),
        Err(EntryError::Invalid(v)) => v.messages(),
    }
}

/// Runs named cases; each expects `message` to be the first error reported.
fn first_error_cases(cases: &[(&str, &str, &str)]) {
    let mut failures = Vec::new();
    for (name, input, message) in cases {
        let got = std::panic::catch_unwind(|| errors(input));
        match got {
            Ok(list) if list.first().map(String::as_str) == Some(*message) => {}
            Ok(list) => failures.push(format!("{name}: expected first {message:?}, got {list:?}")),
            Err(_) => failures.push(format!("{name}: did not produce validation errors")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

const LONG_KEY_MESSAGE: &str = concat!(
    "Meta key \"",
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "\" exceeds maximum length 128"
);

const REMOTE: &str = r#"JSONWebKeySet { Remote { URI = "https://idp.example.com/keys" } }"#;

fn provider(body: &str) -> String {
    format!("Kind = \"jwt-provider\"\n{body}\n")
}

#[test]
fn jwt_provider_rules() {
    let many_meta: String = (0..65).map(|i| format!("k{i} = \"v\"\n")).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        ("a1_name_required", provider(REMOTE), "Name is required"),
        (
            "a2_meta_too_many_keys",
            provider(&format!("Name = \"p\"\n{REMOTE}\nMeta {{\n{many_meta}}}")),
            "Meta exceeds maximum element count 64",
        ),
        (
            "a2b_meta_key_too_long",
            provider(&format!("Name = \"p\"\n{REMOTE}\nMeta {{ \"{}\" = \"v\" }}", "k".repeat(129))),
            LONG_KEY_MESSAGE,
        ),
        (
            "a2c_meta_value_too_long",
            provider(&format!("Name = \"p\"\n{REMOTE}\nMeta {{ k = \"{}\" }}", "v".repeat(513))),
            "Meta value for key \"k\" exceeds maximum length 512",
        ),
        ("a4_key_set_required", provider("Name = \"p\""), "JSONWebKeySet is required"),
        (
            "a5_both_local_and_remote",
            provider(r#"Name = "p"
JSONWebKeySet { Local { Filename = "/k.json" } Remote { URI = "https://x/k" } }"#),
            "must specify exactly one of Local or Remote JSON Web key set",
        ),
        (
            "a5_neither_local_nor_remote",
            provider("Name = \"p\"\nJSONWebKeySet { }"),
            "must specify exactly one of Local or Remote JSON Web key set",
        ),
        (
            "a6_remote_uri_required",
            provider("Name = \"p\"\nJSONWebKeySet { Remote { CacheDuration = \"5m\" } }"),
            "Remote JWKS URI is required",
        ),
        (
            "a7_remote_uri_invalid",
            provider("Name = \"p\"\nJSONWebKeySet { Remote { URI = \"jibberishUrl\" } }"),
            "Remote JWKS URI is invalid: parse \"jibberishUrl\": invalid URI for request, uri: jibberishUrl",
        ),
        (
            "a8_backoff_max_below_base",
            provider(r#"Name = "p"
JSONWebKeySet { Remote {
  URI = "https://x/k"
  RetryPolicy { NumRetries = 2 RetryPolicyBackOff { BaseInterval = "10s" MaxInterval = "5s" } }
} }"#),
            "retry policy backoff's MaxInterval should be greater or equal to BaseInterval",
        ),
        (
            "a9_unknown_discovery_type",
            provider(r#"Name = "p"
JSONWebKeySet { Remote { URI = "https://x/k" JWKSCluster { DiscoveryType = "FANCY" } } }"#),
            "unsupported jwks cluster discovery type: \"FANCY\"",
        ),
        (
            "a10_tls_certificates_both",
            provider(r#"Name = "p"
JSONWebKeySet { Remote { URI = "https://x/k" JWKSCluster { TLSCertificates {
  CaCertificateProviderInstance { InstanceName = "default" }
  TrustedCA { Filename = "/ca.pem" }
} } } }"#),
            "must specify exactly one of: CaCertificateProviderInstance or TrustedCA for JKWS' TLSCertificates",
        ),
        (
            "a10_tls_certificates_neither",
            provider(r#"Name = "p"
JSONWebKeySet { Remote { URI = "https://x/k" JWKSCluster { TLSCertificates { } } } }"#),
            "must specify exactly one of: CaCertificateProviderInstance or TrustedCA for JKWS' TLSCertificates",
        ),
        (
            "a11_trusted_ca_two_sources",
            provider(r#"Name = "p"
JSONWebKeySet { Remote { URI = "https://x/k" JWKSCluster { TLSCertificates { TrustedCA {
  Filename = "/ca.pem"
  EnvironmentVariable = "CA_PEM"
} } } } }"#),
            "must specify exactly one of: Filename, EnvironmentVariable, InlineString or InlineBytes for JWKS' TrustedCA",
        ),
        (
            "a11_trusted_ca_no_source",
            provider(r#"Name = "p"
JSONWebKeySet { Remote { URI = "https://x/k" JWKSCluster { TLSCertificates { TrustedCA { } } } } }"#),
            "must specify exactly one of: Filename, EnvironmentVariable, InlineString or InlineBytes for JWKS' TrustedCA",
        ),
        (
            "a12_local_both",
            provider(r#"Name = "p"
JSONWebKeySet { Local { JWKS = "e30=" Filename = "/k.json" } }"#),
            "must specify exactly one of String or filename for local keyset",
        ),
        (
            "a12_local_neither",
            provider("Name = \"p\"\nJSONWebKeySet { Local { } }"),
            "must specify exactly one of String or filename for local keyset",
        ),
        (
            "a13_local_jwks_not_base64",
            provider(r#"Name = "p"
JSONWebKeySet { Local { JWKS = "{\"keys\":[]}" } }"#),
            "JWKS must be valid base64 encoded string",
        ),
        (
            "a14_location_without_kind",
            provider(&format!("Name = \"p\"\n{REMOTE}\nLocations = [ {{ }} ]")),
            "must set exactly one of: JWT location header, query param or cookie",
        ),
        (
            "a14_location_with_two_kinds",
            provider(&format!(
                "Name = \"p\"\n{REMOTE}\nLocations = [ {{ Header {{ Name = \"a\" }} Cookie {{ Name = \"c\" }} }} ]"
            )),
            "must set exactly one of: JWT location header, query param or cookie",
        ),
        (
            "a15_header_name_required",
            provider(&format!("Name = \"p\"\n{REMOTE}\nLocations = [ {{ Header {{ ValuePrefix = \"Bearer \" }} }} ]")),
            "JWT location header name must be specified",
        ),
        (
            "a15_query_param_name_required",
            provider(&format!("Name = \"p\"\n{REMOTE}\nLocations = [ {{ QueryParam {{ }} }} ]")),
            "JWT location query param name must be specified",
        ),
        (
            "a15_cookie_name_required",
            provider(&format!("Name = \"p\"\n{REMOTE}\nLocations = [ {{ Cookie {{ }} }} ]")),
            "JWT location cookie name must be specified",
        ),
        (
            "a16_forwarding_header_name_required",
            provider(&format!("Name = \"p\"\n{REMOTE}\nForwarding {{ PadForwardPayloadHeader = true }}")),
            "Header name required for forwarding config",
        ),
    ];
    let borrowed: Vec<(&str, &str, &str)> =
        cases.iter().map(|(n, i, m)| (*n, i.as_str(), *m)).collect();
    first_error_cases(&borrowed);
}

#[test]
fn jwt_provider_reports_every_location_error_at_once() {
    let input = provider(&format!(
        "Name = \"p\"\n{REMOTE}\nLocations = [ {{ Header {{ }} }}, {{ QueryParam {{ }} }}, {{ Cookie {{ }} }} ]"
    ));
    assert_eq!(
        errors(&input),
        [
            "JWT location header name must be specified",
            "JWT location query param name must be specified",
            "JWT location cookie name must be specified",
        ]
    );
}

#[test]
fn jwt_provider_things_consul_does_not_validate_are_accepted() {
    // Issuer, Audiences, ClockSkewSeconds sign, CacheConfig.Size, RequestTimeoutMs sign,
    // URI scheme and NumRetries sign are not validated by Consul (§a.3).
    let input = provider(
        r#"Name = "p"
JSONWebKeySet { Remote { URI = "ftp://x/k" RequestTimeoutMs = -5 RetryPolicy { NumRetries = -1 } } }
ClockSkewSeconds = -3
CacheConfig { Size = -1 }"#,
    );
    assert!(parse_entry(&input).is_ok());
}

fn intentions(body: &str) -> String {
    format!("Kind = \"service-intentions\"\n{body}\n")
}

fn l7(perm: &str) -> String {
    intentions(&format!(
        "Name = \"api\"\nSources = [ {{ Name = \"web\" Permissions = [ {perm} ] }} ]"
    ))
}

#[test]
fn service_intentions_rules() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "b1_name_required",
            intentions(r#"Sources = [ { Name = "web" Action = "allow" } ]"#),
            "Name is required",
        ),
        (
            "b2_partial_wildcard_name",
            intentions(r#"Name = "api-*"
Sources = [ { Name = "web" Action = "allow" } ]"#),
            "Name: wildcard character '*' cannot be used with partial values",
        ),
        (
            "b3_top_level_jwt_provider_name_required_before_sources",
            intentions(r#"Name = "api"
JWT { Providers = [ { VerifyClaims = [ { Path = ["a"] Value = "b" } ] } ] }"#),
            "JWT provider name is required",
        ),
        (
            "b4_meta_too_many_keys",
            intentions(&format!(
                "Name = \"api\"\nSources = [ {{ Name = \"web\" Action = \"allow\" }} ]\nMeta {{\n{}}}",
                (0..65).map(|i| format!("k{i} = \"v\"\n")).collect::<String>()
            )),
            "Meta exceeds maximum element count 64",
        ),
        (
            "b5_at_least_one_source",
            intentions("Name = \"api\"\nJWT { Providers = [ { Name = \"okta\" } ] }"),
            "At least one source is required",
        ),
        (
            "b6_source_name_required",
            intentions(r#"Name = "api"
Sources = [ { Action = "allow" } ]"#),
            "Sources[0].Name is required",
        ),
        (
            "b7_sameness_group_is_enterprise",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" SamenessGroup = "sg" Action = "allow" } ]"#),
            "Sources[0].SamenessGroup: Sameness groups are a Consul Enterprise feature. ",
        ),
        (
            "b8_source_partial_wildcard",
            intentions(r#"Name = "api"
Sources = [ { Name = "we*" Action = "allow" } ]"#),
            "Sources[0].Name: wildcard character '*' cannot be used with partial values",
        ),
        (
            "b8_peer_wildcard",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" Peer = "*" Action = "allow" } ]"#),
            "Sources[0].Peer: cannot use wildcard '*' in peer",
        ),
        (
            "b10_description_too_long",
            intentions(&format!(
                "Name = \"api\"\nSources = [ {{ Name = \"web\" Action = \"allow\" Description = \"{}\" }} ]",
                "d".repeat(513)
            )),
            "Sources[0].Description exceeds maximum length 512",
        ),
        (
            "b11_legacy_meta_must_be_omitted",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" Action = "allow" LegacyMeta { a = "b" } } ]"#),
            "Sources[0].LegacyMeta must be omitted",
        ),
        (
            "b12_action_required_without_permissions",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" } ]"#),
            "Sources[0].Action must be set to 'allow' or 'deny'",
        ),
        (
            "b12_action_is_case_sensitive",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" Action = "Allow" } ]"#),
            "Sources[0].Action must be set to 'allow' or 'deny'",
        ),
        (
            "b13_action_must_be_omitted_with_permissions",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" Action = "allow" Permissions = [ { Action = "allow" HTTP { PathPrefix = "/" } } ] } ]"#),
            "Sources[0].Action must be omitted if Permissions are specified",
        ),
        (
            "b14_no_permissions_on_wildcard_destination",
            intentions(r#"Name = "*"
Sources = [ { Name = "web" Permissions = [ { Action = "allow" HTTP { PathPrefix = "/" } } ] } ]"#),
            "Sources[0].Permissions cannot be specified on intentions with wildcarded destinations",
        ),
        (
            "b15_type_must_be_consul",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" Action = "allow" Type = "external" } ]"#),
            "Sources[0].Type must be set to 'consul'",
        ),
        (
            "b16_permission_action",
            l7(r#"{ Action = "maybe" HTTP { PathPrefix = "/" } }"#),
            "Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'",
        ),
        (
            "b16_permission_http_required",
            l7(r#"{ Action = "allow" JWT { Providers = [ { Name = "okta" } ] } }"#),
            "Sources[0].Permissions[0].HTTP is required",
        ),
        (
            "b16_path_exact_needs_slash",
            l7(r#"{ Action = "allow" HTTP { PathExact = "admin" } }"#),
            "Sources[0].Permissions[0].HTTP.PathExact doesn't start with '/': \"admin\"",
        ),
        (
            "b16_path_prefix_needs_slash",
            l7(r#"{ Action = "allow" HTTP { PathPrefix = "v1" } }"#),
            "Sources[0].Permissions[0].HTTP.PathPrefix doesn't start with '/': \"v1\"",
        ),
        (
            "b16_at_most_one_path",
            l7(r#"{ Action = "allow" HTTP { PathPrefix = "/v1" PathRegex = "/v[0-9]+" } }"#),
            "Sources[0].Permissions[0].HTTP should only contain at most one of PathExact, PathPrefix, or PathRegex",
        ),
        (
            "b16_header_name_required",
            l7(r#"{ Action = "allow" HTTP { Header = [ { Exact = "x" } ] } }"#),
            "Sources[0].Permissions[0].HTTP.Header[0] missing required Name field",
        ),
        (
            "b16_header_exactly_one_match_two_set",
            l7(r#"{ Action = "allow" HTTP { Header = [ { Name = "x" Exact = "a" Prefix = "b" } ] } }"#),
            "Sources[0].Permissions[0].HTTP.Header[0] should only contain one of Present, Exact, Prefix, Suffix, Contains, or Regex",
        ),
        (
            "b16_header_present_false_alone_sets_nothing",
            l7(r#"{ Action = "allow" HTTP { Header = [ { Name = "x" Present = false } ] } }"#),
            "Sources[0].Permissions[0].HTTP.Header[0] should only contain one of Present, Exact, Prefix, Suffix, Contains, or Regex",
        ),
        (
            "b16_header_ignore_case_with_regex",
            l7(r#"{ Action = "allow" HTTP { Header = [ { Name = "x" Regex = "a.*" IgnoreCase = true } ] } }"#),
            "Sources[0].Permissions[0].HTTP.Header[0] should set one of Exact, Prefix, Suffix, or Contains when using IgnoreCase",
        ),
        (
            "b16_header_ignore_case_with_present",
            l7(r#"{ Action = "allow" HTTP { Header = [ { Name = "x" Present = true IgnoreCase = true } ] } }"#),
            "Sources[0].Permissions[0].HTTP.Header[0] should set one of Exact, Prefix, Suffix, or Contains when using IgnoreCase",
        ),
        (
            "b16_invalid_method",
            l7(r#"{ Action = "allow" HTTP { Methods = ["GET", "FETCH"] } }"#),
            "Sources[0].Permissions[0].HTTP.Methods contains an invalid method \"FETCH\"",
        ),
        (
            "b16_duplicate_method_after_uppercasing",
            l7(r#"{ Action = "allow" HTTP { Methods = ["get", "GET"] } }"#),
            "Sources[0].Permissions[0].HTTP.Methods contains \"GET\" more than once",
        ),
        (
            "b16_http_should_not_be_empty",
            l7(r#"{ Action = "allow" HTTP { } }"#),
            "Sources[0].Permissions[0].HTTP should not be empty",
        ),
        (
            "b16_permission_jwt_provider_name_required",
            l7(r#"{ Action = "allow" HTTP { PathPrefix = "/" } JWT { Providers = [ { } ] } }"#),
            "JWT provider name is required",
        ),
        (
            "b17_duplicate_source",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" Action = "allow" }, { Name = "web" Action = "deny" } ]"#),
            "Sources[1] defines \"web\" more than once",
        ),
        (
            "b17_duplicate_peered_source",
            intentions(r#"Name = "api"
Sources = [ { Name = "web" Peer = "east" Action = "allow" }, { Name = "web" Peer = "east" Action = "deny" } ]"#),
            "Sources[1] defines peer(\"east\") \"web\" more than once",
        ),
    ];
    let borrowed: Vec<(&str, &str, &str)> =
        cases.iter().map(|(n, i, m)| (*n, i.as_str(), *m)).collect();
    first_error_cases(&borrowed);
}

#[test]
fn b8_b9_sameness_group_rules_follow_the_enterprise_error() {
    let input = intentions(
        r#"Name = "api"
Sources = [
  { Name = "web" SamenessGroup = "g*" Peer = "east" Action = "allow" },
  { Name = "web" SamenessGroup = "g*" Peer = "east" Action = "allow" }
]"#,
    );
    let errs = errors(&input);
    for want in [
        "Sources[0].SamenessGroup: Sameness groups are a Consul Enterprise feature. ",
        "Sources[0].SamenessGroup: cannot use wildcard '*' in sameness group",
        "Sources[0].SamenessGroup: cannot set SamenessGroup and Peer at the same time",
        "Sources[1] defines peer(\"east\") \"web\" more than once",
    ] {
        assert!(
            errs.iter().any(|e| e == want),
            "missing {want:?} in {errs:?}"
        );
    }
}

#[test]
fn b17_local_and_peered_sources_with_one_name_are_distinct() {
    let input = intentions(
        r#"Name = "api"
Sources = [ { Name = "web" Action = "allow" }, { Name = "web" Peer = "east" Action = "deny" } ]"#,
    );
    assert!(parse_entry(&input).is_ok());
}

#[test]
fn b11_legacy_id_and_times_are_cleared_not_rejected() {
    let input = intentions(
        r#"Name = "api"
Sources = [ { Name = "web" Action = "allow" LegacyID = "abc" LegacyCreateTime = "2020-01-01T00:00:00Z" LegacyUpdateTime = "2020-01-01T00:00:00Z" } ]"#,
    );
    let entry = parse_entry(&input).expect("valid");
    let json = entry.to_canonical_string();
    assert!(!json.contains("Legacy"), "{json}");
}

#[test]
fn errors_are_indexed_after_the_precedence_sort() {
    // `*` (precedence 8) is written first, `web` (9) second; Consul sorts before it
    // validates, so the broken `web` source is reported as Sources[0].
    let input = intentions(
        r#"Name = "api"
Sources = [ { Name = "*" Action = "deny" }, { Name = "web" Action = "permit" } ]"#,
    );
    assert_eq!(
        errors(&input),
        ["Sources[0].Action must be set to 'allow' or 'deny'"]
    );
}

#[test]
fn every_error_of_an_entry_is_reported_with_its_path() {
    let input = l7(
        r#"{ Action = "allow" HTTP { PathExact = "a" Methods = ["FETCH"] } },
           { Action = "nope" }"#,
    );
    let Err(EntryError::Invalid(errs)) = parse_entry(&input) else {
        panic!("expected validation errors");
    };
    let paths: Vec<String> = errs.0.iter().map(|e| e.with_path()).collect();
    assert_eq!(
        paths,
        [
            "Sources[0].Permissions[0].HTTP.PathExact doesn't start with '/': \"a\"",
            "Sources[0].Permissions[0].HTTP.Methods contains an invalid method \"FETCH\"",
            "Sources[0].Permissions[1].Action must be set to 'allow' or 'deny'",
            "Sources[0].Permissions[1].HTTP is required",
        ]
    );
    // One error prints bare; several print as a Go multierror, like Consul.
    assert!(errs
        .to_string()
        .starts_with("4 errors occurred:\n\t* Sources[0]"));
}

#[test]
fn service_defaults_rules() {
    first_error_cases(&[
        ("name_required", "Kind = \"service-defaults\"\nProtocol = \"http\"", "Name is required"),
        (
            "name_not_wildcard",
            "Kind = \"service-defaults\"\nName = \"*\"",
            "service-defaults name must be the name of a service, and not a wildcard",
        ),
        (
            "balance_inbound_connections",
            "Kind = \"service-defaults\"\nName = \"api\"\nBalanceInboundConnections = \"round_robin\"",
            "invalid value for balance_inbound_connections: round_robin",
        ),
    ]);
}

#[test]
fn proxy_defaults_rules() {
    first_error_cases(&[(
        "only_global",
        "Kind = \"proxy-defaults\"\nName = \"mine\"",
        "invalid name (\"mine\"), only \"global\" is supported",
    )]);
}

/// `Meta["tribune.upgrades"]` (Tribune's extension) names protocols the sidecar may
/// pass besides WebSocket: each must be a protocol name, and never `h2c`.
#[test]
fn service_defaults_upgrades_meta_names_protocols() {
    let sd = |list: &str| {
        format!("Kind = \"service-defaults\"\nName = \"chat\"\nProtocol = \"http\"\nMeta = {{ \"tribune.upgrades\" = \"{list}\" }}\n")
    };
    assert_eq!(
        errors(&sd("tcp-tunnel, Foo/2")),
        ["Meta[\"tribune.upgrades\"]: \"Foo/2\" is not a protocol name (letters, digits, - . _ +; comma-separated)"]
    );
    let ok = match parse_entry(&sd("tcp-tunnel, Foo")) {
        Ok(tribune_model::ConfigEntry::ServiceDefaults(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(ok.upgrades(), ["tcp-tunnel", "foo"]);
    assert_eq!(
        errors(&sd("h2c")),
        ["Meta[\"tribune.upgrades\"]: h2c cannot be passed: the sidecar speaks HTTP/2 to the service itself (Protocol = \"http2\")"]
    );
    assert_eq!(
        errors(&sd("a,,b")),
        ["Meta[\"tribune.upgrades\"]: \"\" is not a protocol name (letters, digits, - . _ +; comma-separated)"]
    );
}

/// Hardening round 3, item 5: `PathRegex = "/admin(unclosed"` was accepted at write
/// and then froze every sidecar of the service (they could not compile it). Every
/// regex is now compiled at write time, as the sidecar compiles it (Consul leaves
/// this to Envoy; Tribune's message names the field and the parser's reason).
#[test]
fn intention_regexes_are_compiled_at_write_time() {
    let e = errors(&l7(
        r#"{ Action = "allow" HTTP { PathRegex = "/admin(unclosed" } }"#,
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("Sources[0].Permissions[0].HTTP.PathRegex is not a valid regular expression: regex parse error:")
            && e[0].contains("unclosed group"),
        "{e:?}"
    );
    let e = errors(&l7(
        r#"{ Action = "deny" HTTP { Header = [ { Name = "x-a", Exact = "1" }, { Name = "x-user", Regex = "\\pL+" } ] } }"#,
    ));
    assert!(
        e[0].starts_with(
            "Sources[0].Permissions[0].HTTP.Header[1].Regex is not a valid regular expression"
        ),
        "{e:?}"
    );
    assert!(parse_entry(&l7(
        r#"{ Action = "allow" HTTP { PathRegex = "/v[0-9]+/.*" } }"#
    ))
    .is_ok());
}

/// Hardening round 3, item 6: 4 000 distinct `PathRegex = "/rN[a-z]{3000}"`
/// permissions (a 259 KB entry) cost 635 MB and 2.1 s per explain call, and the
/// sidecar kept 614 MB. An entry's regexes now compile within 8 MiB together.
#[test]
fn an_entrys_regexes_share_one_compiled_size_budget() {
    let perms = |n: usize| {
        (0..n)
            .map(|i| {
                format!(r#"{{ Action = "allow" HTTP {{ PathRegex = "/r{i}[a-z]{{3000}}" }} }}"#)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let e = errors(&l7(&perms(4000)));
    assert_eq!(
        e.len(),
        1,
        "one error, not 4 000: {:?}",
        &e[..e.len().min(3)]
    );
    assert!(
        e[0].contains("the entry's regular expressions together compile to more than 8 MiB"),
        "{e:?}"
    );
    // A handful fit; the same pattern repeated counts once.
    assert!(parse_entry(&l7(&perms(5))).is_ok());
    let same = vec![r#"{ Action = "allow" HTTP { PathRegex = "/r[a-z]{3000}" } }"#; 400].join(", ");
    assert!(parse_entry(&l7(&same)).is_ok());
}

/// Validation is anyone's (`POST /v1/tribune/config/validate`), so the regexes one
/// entry makes it compile are bounded in number too; a repeated pattern is compiled
/// once.
#[test]
fn an_entry_holds_at_most_1024_distinct_regexes() {
    let perms = |n: usize| {
        (0..n)
            .map(|i| format!(r#"{{ Action = "allow" HTTP {{ PathRegex = "/r{i}" }} }}"#))
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(parse_entry(&l7(&perms(1024))).is_ok());
    let e = errors(&l7(&perms(1025)));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("more than 1024 distinct regular expressions"),
        "{e:?}"
    );
}
