//! Named decision cases for Consul's RBAC algorithm and docs/decisions.md #8, #9, #12.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use tribune_authz::{
    compile, deny_response, Action, Caller, CompileInput, HeaderList, IntentionTable, NotFired,
    Reason, RequestFacts, TokenOutcome, Tokens,
};
use tribune_model::{parse_entry, Claims, ConfigEntry, JwtProvider, ServiceIntentions};

fn intentions(hcl: &str) -> ServiceIntentions {
    match parse_entry(hcl) {
        Ok(ConfigEntry::ServiceIntentions(e)) => e,
        other => panic!("bad intentions fixture: {other:?}"),
    }
}

fn provider(name: &str, issuer: &str) -> JwtProvider {
    let hcl = format!(
        "Kind = \"jwt-provider\"\nName = \"{name}\"\nIssuer = \"{issuer}\"\nJSONWebKeySet {{ Local {{ Filename = \"/k\" }} }}"
    );
    match parse_entry(&hcl) {
        Ok(ConfigEntry::JwtProvider(p)) => p,
        other => panic!("bad provider fixture: {other:?}"),
    }
}

struct World {
    entries: Vec<ServiceIntentions>,
    providers: Vec<JwtProvider>,
}

impl World {
    fn new(entries: &[&str]) -> Self {
        World {
            entries: entries.iter().map(|e| intentions(e)).collect(),
            providers: vec![
                provider("okta", "https://okta"),
                provider("auth0", "https://auth0"),
            ],
        }
    }

    fn table(&self, destination: &str, http: bool, default: Action) -> IntentionTable {
        let entries: Vec<&ServiceIntentions> = self.entries.iter().collect();
        let providers: Vec<&JwtProvider> = self.providers.iter().collect();
        compile(&CompileInput {
            destination,
            entries: &entries,
            providers: &providers,
            http,
            default,
        })
        .unwrap_or_else(|e| panic!("compile: {e:?}"))
    }
}

struct Req<'a> {
    caller: Option<Caller<'a>>,
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    tokens: Vec<(&'a str, TokenOutcome<'a>)>,
}

fn from(name: &str) -> Req<'_> {
    Req {
        caller: Some(Caller::local(name)),
        method: "GET",
        path: "/",
        headers: Vec::new(),
        tokens: Vec::new(),
    }
}

impl<'a> Req<'a> {
    fn get(mut self, path: &'a str) -> Self {
        self.path = path;
        self
    }
    fn method(mut self, m: &'a str) -> Self {
        self.method = m;
        self
    }
    fn header(mut self, k: &'a str, v: &'a str) -> Self {
        self.headers.push((k, v));
        self
    }
    fn token(mut self, provider: &'a str, outcome: TokenOutcome<'a>) -> Self {
        self.tokens.push((provider, outcome));
        self
    }
    fn decide(&self, t: &IntentionTable) -> tribune_authz::Decision {
        let headers = HeaderList(&self.headers);
        t.evaluate(&RequestFacts {
            caller: self.caller,
            method: self.method,
            path: self.path,
            headers: &headers,
            tokens: Tokens::new(&self.tokens),
        })
    }
    fn allowed(&self, t: &IntentionTable) -> bool {
        self.decide(t).allowed()
    }
}

const DENY: Action = Action::Deny;
const ALLOW: Action = Action::Allow;

#[test]
fn same_source_dedupe_hides_the_wildcard_destination_intention() {
    // web -> api (9) hides web -> * (6) for api.
    let w = World::new(&[
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"deny\" } ]",
        "Kind = \"service-intentions\"\nName = \"*\"\nSources = [ { Name = \"web\" Action = \"allow\" } ]",
    ]);
    let t = w.table("api", true, DENY);
    assert_eq!(t.intentions().count(), 1);
    let d = from("web").decide(&t);
    assert!(!d.allowed());
    assert_eq!(
        d.reason,
        Reason::Default {
            closest: Some((0, NotFired::SameAsDefault))
        }
    );
    // For another destination the wildcard one applies.
    assert!(from("web").allowed(&w.table("billing", true, DENY)));
}

#[test]
fn consul_edge_case_less_specific_source_with_more_specific_destination() {
    let w = World::new(&[
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"*\" Action = \"allow\" } ]",
        "Kind = \"service-intentions\"\nName = \"*\"\nSources = [ { Name = \"web\" Action = \"deny\" } ]",
    ]);
    let deny_default = w.table("api", true, DENY);
    let allow_default = w.table("api", true, ALLOW);
    assert!(
        from("web").allowed(&deny_default),
        "default deny: the * allow fires"
    );
    assert!(
        !from("web").allowed(&allow_default),
        "default allow: the web deny fires"
    );
    // The check API reports Allowed in both modes (first matching intention).
    assert!(deny_default.check(Some(Caller::local("web"))).0);
    assert!(allow_default.check(Some(Caller::local("web"))).0);
}

#[test]
fn exact_source_with_default_action_shadows_the_wildcard_source() {
    let w = World::new(&[r#"Kind = "service-intentions"
Name = "api"
Sources = [ { Name = "*" Action = "allow" }, { Name = "web" Action = "deny" } ]"#]);
    let t = w.table("api", true, DENY);
    assert!(!from("web").allowed(&t));
    assert!(from("billing").allowed(&t));
}

#[test]
fn precedence_and_tie_breaks_order_the_table() {
    let w = World::new(&[
        r#"Kind = "service-intentions"
Name = "api"
Sources = [
  { Name = "*" Action = "deny" },
  { Name = "zeta" Action = "allow" },
  { Name = "web" Peer = "east" Action = "allow" },
  { Name = "web" Action = "allow" },
]"#,
        "Kind = \"service-intentions\"\nName = \"*\"\nSources = [ { Name = \"alpha\" Action = \"allow\" }, { Name = \"*\" Action = \"deny\" } ]",
    ]);
    let t = w.table("api", true, DENY);
    let order: Vec<(String, String, u32)> = t
        .intentions()
        .map(|i| (i.source.clone(), i.source_peer.clone(), i.precedence))
        .collect();
    assert_eq!(
        order,
        [
            ("web".into(), "".into(), 9),
            ("zeta".into(), "".into(), 9),
            ("web".into(), "east".into(), 9),
            ("*".into(), "".into(), 8),
            ("alpha".into(), "".into(), 6),
        ]
    );
}

#[test]
fn peers_and_unauthenticated_callers() {
    let w = World::new(&[r#"Kind = "service-intentions"
Name = "api"
Sources = [ { Name = "web" Peer = "east" Action = "allow" }, { Name = "*" Action = "allow" } ]"#]);
    let t = w.table("api", true, DENY);
    let peered = Req {
        caller: Some(Caller {
            name: "web",
            peer: "east",
        }),
        ..from("x")
    };
    assert!(peered.allowed(&t));
    let other_peer = Req {
        caller: Some(Caller {
            name: "web",
            peer: "west",
        }),
        ..from("x")
    };
    assert!(
        !other_peer.allowed(&t),
        "a * source only matches local callers"
    );
    let anonymous = Req {
        caller: None,
        ..from("x")
    };
    assert!(
        anonymous.allowed(&t),
        "no identity matches the local * source"
    );
    let t2 = World::new(&["Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"allow\" } ]"])
        .table("api", true, DENY);
    assert!(!Req {
        caller: None,
        ..from("x")
    }
    .allowed(&t2));
}

const L7: &str = r#"Kind = "service-intentions"
Name = "api"
Sources = [
  {
    Name = "web"
    Permissions = [
      { Action = "deny"  HTTP { PathPrefix = "/admin" } },
      { Action = "allow" HTTP { PathPrefix = "/" Methods = ["GET", "HEAD"] } },
    ]
  }
]"#;

#[test]
fn l7_first_matching_permission_decides() {
    let t = World::new(&[L7]).table("api", true, DENY);
    assert!(!from("web").get("/admin/users").allowed(&t));
    assert!(from("web").get("/orders").allowed(&t));
    assert!(
        !from("web").get("/orders").method("POST").allowed(&t),
        "no permission matches"
    );
    let d = from("web").get("/orders").method("POST").decide(&t);
    assert_eq!(
        d.reason,
        Reason::Default {
            closest: Some((0, NotFired::NoPermissionMatched))
        }
    );
    let d = from("web").get("/admin").decide(&t);
    assert_eq!(
        d.reason,
        Reason::Default {
            closest: Some((0, NotFired::PermissionSameAsDefault { permission: 0 }))
        }
    );
}

#[test]
fn l7_under_default_allow_only_deny_permissions_fire() {
    let t = World::new(&[L7]).table("api", true, ALLOW);
    assert!(!from("web").get("/admin").allowed(&t));
    assert!(from("web").get("/orders").method("POST").allowed(&t));
    assert!(from("web").get("/orders").allowed(&t));
}

#[test]
fn l4_and_l7_mixed_sources() {
    let w = World::new(&[r#"Kind = "service-intentions"
Name = "api"
Sources = [
  { Name = "intern" Action = "deny" },
  { Name = "web" Action = "allow" },
  { Name = "batch" Permissions = [ { Action = "allow" HTTP { PathExact = "/v1/settle" Methods = ["POST"] } } ] },
]"#]);
    let t = w.table("api", true, DENY);
    assert!(!from("intern").allowed(&t));
    assert!(from("web").get("/anything").method("DELETE").allowed(&t));
    assert!(from("batch").get("/v1/settle").method("POST").allowed(&t));
    assert!(!from("batch").get("/v1/settle").allowed(&t));
}

fn claims(v: Value) -> Claims {
    Claims::from_value(&v).expect("a JSON object")
}

const JWT_L7: &str = r#"Kind = "service-intentions"
Name = "api"
JWT { Providers = [ { Name = "okta" } ] }
Sources = [
  {
    Name = "web"
    Permissions = [
      {
        Action = "allow"
        HTTP { PathPrefix = "/admin" }
        JWT { Providers = [ { Name = "okta" VerifyClaims = [ { Path = ["perms", "role"] Value = "admin" } ] } ] }
      },
      { Action = "allow" HTTP { PathPrefix = "/" } }
    ]
  }
]"#;

#[test]
fn top_level_and_permission_jwt_are_and_ed() {
    let t = World::new(&[JWT_L7]).table("api", true, DENY);
    let admin = claims(json!({"iss": "https://okta", "perms": {"role": "admin"}}));
    let user = claims(json!({"iss": "https://okta", "perms": {"role": "user"}}));
    assert!(from("web")
        .get("/admin")
        .token("okta", TokenOutcome::Valid(&admin))
        .allowed(&t));
    assert!(from("web")
        .get("/public")
        .token("okta", TokenOutcome::Valid(&user))
        .allowed(&t));
    assert!(
        !from("web").get("/public").allowed(&t),
        "top-level JWT applies to every permission"
    );
    let d = from("web")
        .get("/admin")
        .token("okta", TokenOutcome::Valid(&user))
        .decide(&t);
    assert!(!d.allowed());
    let explained = t.explain(&d);
    assert!(
        explained.contains(
            "claim perms.role of provider \"okta\" token: expected \"admin\", got \"user\""
        ),
        "{explained}"
    );
    assert_eq!(deny_response(&d, "api").map(|r| r.status), Some(403));
}

#[test]
fn responses_follow_rfc_6750() {
    let t = World::new(&[JWT_L7]).table("api", true, DENY);
    let missing = from("web").get("/x").decide(&t);
    let r = deny_response(&missing, "api").expect("denied");
    assert_eq!(
        (r.status, r.www_authenticate().as_deref(), r.body),
        (401, Some("Bearer realm=\"api\""), "Jwt is missing")
    );
    let expired = from("web")
        .get("/x")
        .token("okta", TokenOutcome::Invalid("Jwt is expired"))
        .decide(&t);
    let r = deny_response(&expired, "api").expect("denied");
    assert_eq!(
        (r.status, r.www_authenticate().as_deref(), r.body),
        (
            401,
            Some("Bearer realm=\"api\", error=\"invalid_token\""),
            "Jwt is expired"
        )
    );
    let stranger = from("evil").decide(&t);
    let r = deny_response(&stranger, "api").expect("denied");
    assert_eq!((r.status, r.body), (403, "RBAC: access denied"));
    let ok_payload = claims(json!({"iss": "https://okta"}));
    assert_eq!(
        deny_response(
            &from("web")
                .get("/x")
                .token("okta", TokenOutcome::Valid(&ok_payload))
                .decide(&t),
            "api"
        ),
        None
    );
}

#[test]
fn providers_are_or_ed_and_issuer_is_checked() {
    let w = World::new(&[r#"Kind = "service-intentions"
Name = "api"
JWT { Providers = [ { Name = "okta" }, { Name = "auth0" } ] }
Sources = [ { Name = "web" Action = "allow" } ]"#]);
    let t = w.table("api", true, DENY);
    let auth0 = claims(json!({"iss": "https://auth0"}));
    let wrong_iss = claims(json!({"iss": "https://okta"}));
    assert!(from("web")
        .token("auth0", TokenOutcome::Valid(&auth0))
        .allowed(&t));
    let d = from("web")
        .token("auth0", TokenOutcome::Valid(&wrong_iss))
        .decide(&t);
    assert!(!d.allowed());
    assert!(
        t.explain(&d)
            .contains("has iss \"https://okta\" but the provider's Issuer is \"https://auth0\""),
        "{}",
        t.explain(&d)
    );
    assert_eq!(t.referenced_providers(), ["auth0", "okta"]);
}

/// Each `(path, value, want)`: an intention requiring claim `path` = `value` of an
/// okta token, evaluated with `payload` as the token's claims.
fn claim_cases(payload: &Claims, cases: &[(&str, &str, bool)]) {
    for (path, value, want) in cases {
        let entry = format!(
            "Kind = \"service-intentions\"\nName = \"api\"\nJWT {{ Providers = [ {{ Name = \"okta\" VerifyClaims = [ {{ Path = [{path}] Value = \"{value}\" }} ] }} ] }}\nSources = [ {{ Name = \"web\" Action = \"allow\" }} ]"
        );
        let t = World::new(&[&entry]).table("api", true, DENY);
        assert_eq!(
            from("web")
                .token("okta", TokenOutcome::Valid(payload))
                .allowed(&t),
            *want,
            "{path} = {value:?}"
        );
    }
}

#[test]
fn claim_values_strings_arrays_numbers_booleans_and_missing() {
    let payload = claims(json!({
        "iss": "https://okta",
        "roles": ["reader", "admin"],
        "level": 42,
        "staff": true,
        "org": {"team": {"name": "payments"}},
    }));
    claim_cases(
        &payload,
        &[
            ("\"roles\"", "admin", true),
            ("\"roles\"", "writer", false),
            ("\"level\"", "42", true),
            ("\"level\"", "42.0", false),
            ("\"staff\"", "true", true),
            ("\"org\", \"team\", \"name\"", "payments", true),
            ("\"org\", \"team\"", "payments", false),
            ("\"absent\"", "x", false),
        ],
    );
}

/// Tribune's `Optional = true` (README, differences): no token for the listed
/// providers meets the requirement; a present one must verify and meet the claims.
#[test]
fn optional_jwt_requirements_accept_no_token_but_not_a_bad_one() {
    let t = World::new(&[r#"Kind = "service-intentions"
Name = "api"
JWT { Optional = true Providers = [ { Name = "okta" VerifyClaims = [ { Path = ["role"] Value = "admin" } ] } ] }
Sources = [ { Name = "web" Action = "allow" } ]"#])
    .table("api", true, DENY);
    let admin = claims(json!({"iss": "https://okta", "role": "admin"}));
    let user = claims(json!({"iss": "https://okta", "role": "user"}));
    assert!(
        from("web").allowed(&t),
        "no token meets an optional requirement"
    );
    assert!(from("web")
        .token("okta", TokenOutcome::Valid(&admin))
        .allowed(&t));
    let d = from("web")
        .token("okta", TokenOutcome::Valid(&user))
        .decide(&t);
    assert_eq!(
        d.code(),
        tribune_authz::ReasonCode::JwtClaim,
        "claims still apply"
    );
    let d = from("web")
        .token("okta", TokenOutcome::Invalid("Jwt is expired"))
        .decide(&t);
    assert_eq!(
        d.code(),
        tribune_authz::ReasonCode::JwtInvalid,
        "a bad token is refused"
    );
    assert_eq!(
        tribune_authz::deny_response(&d, "api").map(|r| r.status),
        Some(401)
    );
    // Without Optional, no token is refused as before.
    let strict = World::new(&[r#"Kind = "service-intentions"
Name = "api"
JWT { Providers = [ { Name = "okta" } ] }
Sources = [ { Name = "web" Action = "allow" } ]"#])
    .table("api", true, DENY);
    assert!(!from("web").allowed(&strict));
}

/// Tribune's scope rule (README, differences): a top-level `scope` or `scp` string is a
/// space-delimited list (RFC 8693 §4.2); elsewhere strings compare whole.
#[test]
fn scope_strings_are_space_delimited_lists() {
    let payload = claims(json!({
        "iss": "https://okta",
        "scope": "openid api:read  profile",
        "scp": ["api:write"],
        "desc": "openid api:read",
        "nested": {"scope": "a b"},
    }));
    claim_cases(
        &payload,
        &[
            ("\"scope\"", "api:read", true),
            ("\"scope\"", "openid", true),
            ("\"scope\"", "profile", true),
            ("\"scope\"", "api", false),
            ("\"scope\"", "openid api:read  profile", false),
            ("\"scope\"", "", false),
            ("\"scp\"", "api:write", true),
            ("\"desc\"", "api:read", false),
            ("\"desc\"", "openid api:read", true),
            ("\"nested\", \"scope\"", "a", false),
        ],
    );
}

#[test]
fn wildcard_provider_accepts_any_configured_provider() {
    let t = World::new(&[r#"Kind = "service-intentions"
Name = "api"
JWT { Providers = [ { Name = "*" } ] }
Sources = [ { Name = "*" Action = "allow" } ]"#])
    .table("api", true, DENY);
    let auth0 = claims(json!({"iss": "https://auth0"}));
    assert!(from("any")
        .token("auth0", TokenOutcome::Valid(&auth0))
        .allowed(&t));
    assert!(!from("any").allowed(&t));
    assert!(!from("any")
        .token("unconfigured", TokenOutcome::Valid(&auth0))
        .allowed(&t));
    assert_eq!(t.referenced_providers(), ["auth0", "okta"]);
}

#[test]
fn default_allow_does_not_enforce_allow_jwt_and_inverts_deny_jwt() {
    let w = World::new(&[
        "Kind = \"service-intentions\"\nName = \"api\"\nJWT { Providers = [ { Name = \"okta\" } ] }\nSources = [ { Name = \"web\" Action = \"allow\" } ]",
        "Kind = \"service-intentions\"\nName = \"db\"\nJWT { Providers = [ { Name = \"okta\" } ] }\nSources = [ { Name = \"web\" Action = \"deny\" } ]",
    ]);
    assert!(
        from("web").allowed(&w.table("api", true, ALLOW)),
        "allow+JWT is not enforced"
    );
    let db = w.table("db", true, ALLOW);
    let valid = claims(json!({"iss": "https://okta"}));
    assert!(
        from("web").allowed(&db),
        "deny+JWT denies only requests with a valid token"
    );
    assert!(!from("web")
        .token("okta", TokenOutcome::Valid(&valid))
        .allowed(&db));
    // Under default deny a deny intention denies unconditionally.
    assert!(!from("web")
        .token("okta", TokenOutcome::Valid(&valid))
        .allowed(&w.table("db", true, DENY)));
}

#[test]
fn tcp_destinations_ignore_jwt_and_treat_l7_as_deny() {
    let w = World::new(&[
        "Kind = \"service-intentions\"\nName = \"*\"\nJWT { Providers = [ { Name = \"okta\" } ] }\nSources = [ { Name = \"web\" Action = \"allow\" } ]",
        L7,
    ]);
    let cache = w.table("cache", false, DENY);
    assert!(from("web").allowed(&cache), "JWT ignored on tcp");
    assert!(cache.referenced_providers().is_empty());
    let api_tcp = w.table("api", false, DENY);
    assert!(!from("web").allowed(&api_tcp));
    assert!(
        !from("web").allowed(&w.table("api", false, ALLOW)),
        "L7 on tcp counts as deny"
    );
}

#[test]
fn header_matchers_follow_envoy() {
    let w = World::new(&[r#"Kind = "service-intentions"
Name = "api"
Sources = [ { Name = "web" Permissions = [
  { Action = "deny"  HTTP { Header = [ { Name = "x-debug" Present = true } ] } },
  { Action = "deny"  HTTP { Header = [ { Name = "x-env" Exact = "PROD" IgnoreCase = true Invert = true } ] } },
  { Action = "allow" HTTP { Header = [ { Name = "x-tenant" Regex = "t-[0-9]+" }, { Name = "x-trace" Present = true Invert = true } ] } },
] } ]"#]);
    let t = w.table("api", true, DENY);
    let base = || {
        from("web")
            .header("x-env", "prod")
            .header("x-tenant", "t-42")
    };
    assert!(base().allowed(&t));
    assert!(!base().header("x-debug", "").allowed(&t), "present");
    assert!(
        !from("web")
            .header("x-env", "staging")
            .header("x-tenant", "t-42")
            .allowed(&t),
        "inverted exact"
    );
    assert!(
        !base().header("X-Trace", "1").allowed(&t),
        "inverted present, name case-insensitive"
    );
    assert!(
        !from("web")
            .header("x-env", "prod")
            .header("x-tenant", "t-42x")
            .allowed(&t),
        "regex is a full match"
    );
    // Several values (hardening round 3, item 4): an allow needs every one to match,
    // a deny fires on any one (or on the joined value, Envoy's reading).
    assert!(from("web")
        .header("x-env", "prod")
        .header("x-tenant", "t-1")
        .header("x-tenant", "t-2")
        .allowed(&t));
    assert!(!from("web")
        .header("x-env", "prod")
        .header("x-tenant", "t-1")
        .header("x-tenant", "admin")
        .allowed(&t));
    assert!(!from("web")
        .header("x-env", "prod")
        .header("x-tenant", "t-1, admin")
        .allowed(&t));
    assert!(
        !base().header("x_debug", "1").allowed(&t),
        "a look-alike is the header"
    );
    assert!(
        !base().header("x-env", "staging").allowed(&t),
        "any value decides a deny"
    );
    // An absent header never matches Exact, even inverted (Envoy).
    assert!(from("web").header("x-tenant", "t-7").allowed(&t));
    // Explain says how the permission that fired read the headers.
    assert_eq!(
        t.explain(&base().decide(&t)),
        "Allowed: intention web -> api (precedence 9), permission 2 (allow) matches the request; its header criteria hold only when every value of the header (its `_` spelling included) matches"
    );
    let open = w.table("api", true, ALLOW);
    assert_eq!(
        open.explain(&base().header("x_debug", "1").decide(&open)),
        "Denied: intention web -> api (precedence 9), permission 0 (deny) matches the request; its header criteria hold when any value of the header (its `_` spelling included) matches"
    );
}

#[test]
fn path_regex_is_a_full_match_on_the_normalized_path() {
    let t = World::new(&[r#"Kind = "service-intentions"
Name = "api"
Sources = [ { Name = "web" Permissions = [ { Action = "allow" HTTP { PathRegex = "/v[0-9]+/items" } } ] } ]"#])
    .table("api", true, DENY);
    assert!(from("web").get("/v2/items").allowed(&t));
    assert!(!from("web").get("/v2/items/1").allowed(&t));
    let normalized = tribune_authz::normalize_path("/x/../v3/%69tems?q=1", false);
    assert!(from("web").get(&normalized).allowed(&t));
}

#[test]
fn compile_fails_closed_on_unknown_providers_and_bad_regexes() {
    let mut w = World::new(&[r#"Kind = "service-intentions"
Name = "api"
JWT { Providers = [ { Name = "ghost" } ] }
Sources = [ { Name = "web" Permissions = [ { Action = "allow" HTTP { PathRegex = "/ok" } } ] } ]"#]);
    // Writes refuse a bad regex now; an entry stored before that still fails closed.
    if let tribune_model::intentions::SourceRule::Permissions(p) = &mut w.entries[0].sources[0].rule
    {
        p[0].http.path = Some(tribune_model::intentions::PathMatch::PathRegex(
            "(unclosed".into(),
        ));
    }
    let entries: Vec<&ServiceIntentions> = w.entries.iter().collect();
    let providers: Vec<&JwtProvider> = w.providers.iter().collect();
    let errs = compile(&CompileInput {
        destination: "api",
        entries: &entries,
        providers: &providers,
        http: true,
        default: DENY,
    })
    .expect_err("must fail");
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        text[0].starts_with(
            "service-intentions/api: Sources[0]: Permissions[0].HTTP.PathRegex: invalid regex"
        ),
        "{text:?}"
    );
    assert_eq!(text[1], "service-intentions/api: Sources[0]: provider specified in intention does not exist. Provider name: ghost");
}

#[test]
fn explain_names_the_intention_and_the_default() {
    let t = World::new(&[L7]).table("api", true, DENY);
    assert_eq!(
        t.explain(&from("web").get("/admin").decide(&t)),
        "Denied: intention web -> api (precedence 9) matches the caller but does not apply (the first matching permission (0) has action deny, the same as the default policy); the default policy is deny"
    );
    assert_eq!(
        t.explain(&from("web").get("/ok").decide(&t)),
        "Allowed: intention web -> api (precedence 9), permission 1 (allow) matches the request"
    );
    assert_eq!(
        t.explain(&from("stranger").decide(&t)),
        "Denied: no intention matches the caller; the default policy is deny"
    );
}

#[test]
fn check_api_semantics() {
    let t = World::new(&[L7, "Kind = \"service-intentions\"\nName = \"*\"\nJWT { Providers = [ { Name = \"okta\" } ] }\nSources = [ { Name = \"ops\" Action = \"allow\" } ]"])
        .table("api", true, DENY);
    assert!(
        !t.check(Some(Caller::local("web"))).0,
        "L7 intentions count as denied"
    );
    assert!(
        t.check(Some(Caller::local("ops"))).0,
        "JWT is ignored by check"
    );
    assert!(
        !t.check(Some(Caller::local("nobody"))).0,
        "no match: default"
    );
}
