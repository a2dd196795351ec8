//! Logging in with an identity one already has (issue #43): binding rules, `login`
//! and `logout`, and the tokens they make, through the agent's API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use axum::http::StatusCode;
use serde_json::{json, Value};
use support::*;
use tribune_test_support::tokens::Rs256;

const ROOT: Option<&str> = Some("root-secret");

/// `nomad setup consul`'s auth method, its keys served by "Nomad" at `addr`.
fn nomad_method(addr: std::net::SocketAddr) -> Value {
    json!({"Name": "nomad-workloads", "Type": "jwt", "DisplayName": "Nomad Workloads",
        "MaxTokenTTL": "1h", "TokenLocality": "local",
        "Config": {"JWKSURL": format!("http://{addr}/.well-known/jwks.json"),
            "JWTSupportedAlgs": ["RS256"], "BoundAudiences": ["consul.io"],
            "ClaimMappings": {"nomad_namespace": "nomad_namespace", "nomad_job_id": "nomad_job_id",
                "nomad_task": "nomad_task", "nomad_service": "nomad_service"}}})
}

/// The two binding rules `nomad setup consul` creates.
fn nomad_rules() -> [Value; 2] {
    [
        json!({"AuthMethod": "nomad-workloads", "Description": "Binding rule for services registered from Nomad",
            "BindType": "service", "BindName": "${value.nomad_service}",
            "Selector": "\"nomad_service\" in value"}),
        json!({"AuthMethod": "nomad-workloads", "Description": "Binding rule for Nomad tasks",
            "BindType": "role", "BindName": "nomad-${value.nomad_namespace}",
            "Selector": "\"nomad_service\" not in value"}),
    ]
}

/// A workload identity as Nomad signs it for a service.
fn workload_claims(service: Option<&str>) -> Value {
    let now = unix_now();
    let mut c = json!({"nomad_namespace": "default", "nomad_job_id": "web",
        "nomad_allocation_id": "5f8ba6c4", "nomad_task": "server",
        "sub": "global:default:web:web:server:default", "aud": ["consul.io"],
        "iat": now, "nbf": now, "exp": now + 3600});
    if let Some(s) = service {
        c["nomad_service"] = json!(s);
    }
    c
}

async fn login(api: &Api, method: &str, bearer: &str, meta: Value) -> Reply {
    api.call(
        "POST",
        "/v1/acl/login",
        None,
        &json!({"AuthMethod": method, "BearerToken": bearer, "Meta": meta}).to_string(),
    )
    .await
}

async fn token_count(api: &Api) -> usize {
    let r = api.call("GET", "/v1/acl/tokens", ROOT, "").await;
    r.json().as_array().unwrap().len()
}

/// Nomad's setup: a workload identity for `web` becomes a token that may register
/// `web` and fetch its leaf, and nothing else; a task without a service gets the
/// namespace's role; logging out ends the token.
#[tokio::test]
async fn a_nomad_workload_logs_in_and_gets_a_service_token_for_its_own_service_only() {
    let nomad = Rs256::new("nomad-key-1");
    let addr = serve_json(vec![(
        "/.well-known/jwks.json".into(),
        json!({"keys": [nomad.jwk()]}).to_string(),
    )])
    .await;
    let api = Api::with_acls().await;
    let r = api
        .call(
            "PUT",
            "/v1/acl/auth-method",
            ROOT,
            &nomad_method(addr).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for rule in nomad_rules() {
        let r = api
            .call("PUT", "/v1/acl/binding-rule", ROOT, &rule.to_string())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    let before = unix_now();
    let r = login(
        &api,
        "nomad-workloads",
        &nomad.sign(&workload_claims(Some("web"))),
        json!({"nomad_job": "web"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.json();
    assert_eq!(token["AuthMethod"], "nomad-workloads");
    assert_eq!(token["ServiceIdentities"], json!([{"ServiceName": "web"}]));
    assert_eq!(token["Local"], true);
    assert_eq!(
        token["Description"],
        "token created via login: {\"nomad_job\":\"web\"}"
    );
    let expires = time::OffsetDateTime::parse(
        token["ExpirationTime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(
        (before + 3600..=unix_now() + 3600).contains(&expires),
        "MaxTokenTTL 1h: {token}"
    );
    let secret = token["SecretID"].as_str().unwrap().to_string();
    let web = Some(secret.as_str());

    // What a service identity gives: its service and sidecar, its leaf; reads.
    let reg = |name: &str| json!({"Name": name, "Port": 8080}).to_string();
    let r = api
        .call("PUT", "/v1/agent/service/register", web, &reg("web"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api
        .call("GET", "/v1/agent/connect/ca/leaf/web", web, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json()["CertPEM"]
        .as_str()
        .unwrap()
        .contains("CERTIFICATE"));
    let r = api.call("GET", "/v1/catalog/services", web, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // And nothing more.
    for (method, path, body) in [
        ("PUT", "/v1/agent/service/register", reg("api")),
        ("GET", "/v1/agent/connect/ca/leaf/api", String::new()),
        ("GET", "/v1/acl/tokens", String::new()),
        (
            "PUT",
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": "web",
            "Sources": [{"Name": "*", "Action": "allow"}]})
            .to_string(),
        ),
    ] {
        let r = api.call(method, path, web, &body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            r.body
        );
    }
    let me = api.call("GET", "/v1/acl/token/self", web, "").await;
    assert_eq!(me.json()["AuthMethod"], "nomad-workloads");

    // A task without a service: the namespace's role, once it exists.
    let task = nomad.sign(&workload_claims(None));
    let r = login(&api, "nomad-workloads", &task, json!({})).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, "Permission denied"),
        "the role does not exist yet: nothing to bind"
    );
    token_with(&api, "kv-read", "service_prefix \"\" { policy = \"read\" }").await;
    let r = api
        .call(
            "PUT",
            "/v1/acl/role",
            ROOT,
            &json!({"Name": "nomad-default", "Policies": [{"Name": "kv-read"}]}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = login(&api, "nomad-workloads", &task, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["Roles"][0]["Name"], "nomad-default");
    assert!(r.json().get("ServiceIdentities").is_none());
    assert_eq!(
        token_count(&api).await,
        4,
        "root, kv-read's, and two logins"
    );
    let listed = api
        .call("GET", "/v1/acl/tokens?authmethod=nomad-workloads", ROOT, "")
        .await;
    assert_eq!(listed.json().as_array().unwrap().len(), 2);

    // Logout: the login's own token only.
    let r = api.call("POST", "/v1/acl/logout", ROOT, "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, "Permission denied"),
        "a token no login made does not log out"
    );
    let r = api.call("POST", "/v1/acl/logout", web, "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "true"));
    let r = api
        .call("PUT", "/v1/agent/service/register", web, &reg("web"))
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, "ACL not found")
    );
    let r = api.call("POST", "/v1/acl/logout", web, "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "gone: {}", r.body);

    // Deleting the method takes its rules and its logins' tokens with it.
    let r = api
        .call("DELETE", "/v1/acl/auth-method/nomad-workloads", ROOT, "")
        .await;
    assert_eq!(r.body, "true");
    let rules = api.call("GET", "/v1/acl/binding-rules", ROOT, "").await;
    assert_eq!(rules.json(), json!([]));
    assert_eq!(token_count(&api).await, 2, "root and kv-read's remain");
}

/// A method with a local key (`JWTValidationPubKeys`) and one catch-all rule.
async fn static_method(api: &Api, key: &Rs256, extra: Value) {
    let mut m = json!({"Name": "ci", "Type": "jwt", "MaxTokenTTL": "10m",
        "Config": {"JWTValidationPubKeys": [key.public_key_pem()],
            "BoundIssuer": "https://ci.example", "BoundAudiences": ["tribune"],
            "ClaimMappings": {"project": "project"}}});
    for (k, v) in extra.as_object().unwrap() {
        m["Config"][k] = v.clone();
    }
    let r = api
        .call("PUT", "/v1/acl/auth-method", ROOT, &m.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api
        .call(
            "PUT",
            "/v1/acl/binding-rule",
            ROOT,
            &json!({"AuthMethod": "ci", "BindType": "service", "BindName": "${value.project}",
                "Selector": "value.project matches \"^[a-z]+$\""})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

fn ci_claims() -> Value {
    let now = unix_now();
    json!({"iss": "https://ci.example", "aud": "tribune", "project": "billing",
        "iat": now, "exp": now + 300})
}

/// Each bad login gets Consul's text, and no token is made.
#[tokio::test]
async fn bad_logins_are_refused_with_consuls_texts_and_make_no_token() {
    let key = Rs256::new("ci");
    let api = Api::with_acls().await;
    static_method(&api, &key, json!({})).await;
    let ok = login(&api, "ci", &key.sign(&ci_claims()), json!({})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["ServiceIdentities"][0]["ServiceName"], "billing");
    let count = token_count(&api).await;

    let with = |patch: Value| {
        let mut c = ci_claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        key.sign(&c)
    };
    let other = Rs256::new("ci");
    let cases = [
        (
            "unknown method",
            "nope",
            key.sign(&ci_claims()),
            "ACL not found: auth method \"nope\" not found",
        ),
        (
            "wrong issuer",
            "ci",
            with(json!({"iss": "https://evil.example"})),
            "error validating claims: validation failed, invalid issuer claim (iss)",
        ),
        (
            "wrong audience",
            "ci",
            with(json!({"aud": "consul.io"})),
            "error validating claims: aud claim does not match any bound audience",
        ),
        (
            "expired",
            "ci",
            with(json!({"iat": unix_now() - 900, "exp": unix_now() - 600})),
            "error validating claims: validation failed, token is expired (exp)",
        ),
        (
            "no time at all",
            "ci",
            key.sign(&json!({"iss": "https://ci.example", "aud": "tribune", "project": "billing"})),
            "no issue time, notbefore, or expiration time encoded in token",
        ),
        (
            "another key",
            "ci",
            other.sign(&ci_claims()),
            "no known key successfully validated the token signature",
        ),
        (
            "not a JWT",
            "ci",
            "not-a-jwt".to_string(),
            "error parsing token: ",
        ),
        (
            "no matching rule",
            "ci",
            with(json!({"project": "Billing Team"})),
            "Permission denied",
        ),
    ];
    for (what, method, bearer, want) in cases {
        let r = login(&api, method, &bearer, json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
        assert!(r.body.starts_with(want), "{what}: {}", r.body);
    }
    assert_eq!(token_count(&api).await, count, "no token was made");

    // A BindName that interpolates to a name no service may have: refused, named.
    let r = api
        .call(
            "PUT",
            "/v1/acl/binding-rule",
            ROOT,
            &json!({"AuthMethod": "ci", "BindType": "service", "BindName": "${value.project}"})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = login(
        &api,
        "ci",
        &with(json!({"project": "Billing/Team"})),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, "invalid bind name: \"billing/team\"");
    assert_eq!(token_count(&api).await, count, "no token was made");
}

/// Consul's binding rule endpoints, shapes and refusals.
#[tokio::test]
async fn binding_rules_are_created_read_listed_updated_and_deleted_as_in_consul() {
    let key = Rs256::new("ci");
    let api = Api::with_acls().await;
    static_method(&api, &key, json!({})).await;
    let list = api
        .call("GET", "/v1/acl/binding-rules", ROOT, "")
        .await
        .json();
    let rule = list[0].clone();
    let id = rule["ID"].as_str().unwrap();
    assert_eq!(rule["AuthMethod"], "ci");
    assert!(rule["CreateIndex"].as_u64().unwrap() > 0);
    let read = api
        .call("GET", &format!("/v1/acl/binding-rule/{id}"), ROOT, "")
        .await;
    assert_eq!(read.json(), rule);
    let missing = api
        .call(
            "GET",
            "/v1/acl/binding-rule/7ee4f0a4-0000-4000-8000-000000000000",
            ROOT,
            "",
        )
        .await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (StatusCode::NOT_FOUND, "")
    );

    // An update without AuthMethod keeps it.
    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/binding-rule/{id}"),
            ROOT,
            &json!({"BindType": "policy", "BindName": "ci-${value.project}"}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["AuthMethod"], "ci");
    assert_eq!(r.json()["BindType"], "policy");
    assert!(r.json()["ModifyIndex"].as_u64() > rule["ModifyIndex"].as_u64());

    for (body, want) in [
        (json!({"AuthMethod": "ci", "BindType": "service", "BindName": "x", "Selector": "value.project =="}),
            "invalid Binding Rule: Selector is invalid: "),
        (json!({"AuthMethod": "ci", "BindType": "service", "BindName": "${value.team}"}),
            "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType \"service\": error interpreting template: unknown variable accessed: value.team"),
        (json!({"AuthMethod": "gone", "BindType": "service", "BindName": "x"}),
            "cannot find auth method with name \"gone\""),
        (json!({"AuthMethod": "ci", "BindType": "everything", "BindName": "x"}),
            "Invalid Binding Rule: unknown BindType \"everything\""),
        (json!({"ID": id, "AuthMethod": "ci", "BindType": "service", "BindName": "x"}),
            "Cannot specify the ID when creating a new binding rule"),
    ] {
        let r = api
            .call("PUT", "/v1/acl/binding-rule", ROOT, &body.to_string())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert!(r.body.starts_with(want), "{body}: {}", r.body);
    }
    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/binding-rule/{id}"),
            ROOT,
            &json!({"AuthMethod": "other", "BindType": "service", "BindName": "x"}).to_string(),
        )
        .await;
    assert_eq!(
        r.body,
        "the AuthMethod field of an Binding Rule is immutable"
    );

    // Reading needs acl:read; writing acl:write.
    let reader = token_with(&api, "acl-read", "acl = \"read\"").await;
    let r = api
        .call(
            "GET",
            "/v1/acl/binding-rules?authmethod=ci",
            Some(&reader),
            "",
        )
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = api
        .call(
            "DELETE",
            &format!("/v1/acl/binding-rule/{id}"),
            Some(&reader),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .call("DELETE", &format!("/v1/acl/binding-rule/{id}"), ROOT, "")
        .await;
    assert_eq!(r.body, "true");
    assert_eq!(
        api.call("GET", "/v1/acl/binding-rules", ROOT, "")
            .await
            .json(),
        json!([])
    );
}

/// Tokens can carry identities without a login; Consul's checks of them.
#[tokio::test]
async fn tokens_carry_service_and_node_identities_and_templated_policies() {
    let api = Api::with_acls().await;
    let r = api
        .call(
            "PUT",
            "/v1/acl/token",
            ROOT,
            &json!({"ServiceIdentities": [{"ServiceName": "api"}, {"ServiceName": "api"}],
                "NodeIdentities": [{"NodeName": "node-1", "Datacenter": "dc1"}],
                "TemplatedPolicies": [{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "db"}}]})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = r.json();
    assert_eq!(
        t["ServiceIdentities"],
        json!([{"ServiceName": "api"}]),
        "deduplicated"
    );
    let secret = t["SecretID"].as_str().unwrap().to_string();
    for (name, want) in [
        ("api", StatusCode::OK),
        ("db", StatusCode::OK),
        ("web", StatusCode::FORBIDDEN),
    ] {
        let r = api
            .call(
                "PUT",
                "/v1/agent/service/register",
                Some(&secret),
                &json!({"Name": name, "Port": 1}).to_string(),
            )
            .await;
        assert_eq!(r.status, want, "{name}: {}", r.body);
    }
    // An update replaces them; the expiry may not change.
    let id = t["AccessorID"].as_str().unwrap();
    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/token/{id}"),
            ROOT,
            &json!({"ServiceIdentities": [{"ServiceName": "web"}]}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json().get("NodeIdentities").is_none());
    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/token/{id}"),
            ROOT,
            &json!({"ExpirationTTL": "1h"}).to_string(),
        )
        .await;
    assert_eq!(r.body, format!("Cannot change expiration time of {id}"));

    for (body, want) in [
        (json!({"ServiceIdentities": [{"ServiceName": ""}]}), "Service identity is missing the service name field on this token"),
        (json!({"ServiceIdentities": [{"ServiceName": "Web"}]}), "Service identity \"Web\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"),
        (json!({"NodeIdentities": [{"NodeName": "n1"}]}), "Node identity is missing the datacenter field on this token"),
        (json!({"TemplatedPolicies": [{"TemplateName": "builtin/admin"}]}), "Bind name for templated-policy bind type does not match existing template name: builtin/admin"),
        (json!({"AuthMethod": "ci"}), "AuthMethod field is disallowed outside of Login"),
        (json!({"ExpirationTTL": "1h", "ExpirationTime": "2030-01-01T00:00:00Z"}), "Token Expiration TTL and Expiration Time cannot both be set"),
        (json!({"ExpirationTTL": "30s"}), "ExpirationTime cannot be less than 1m0s in the future (was 30s)"),
        (json!({"ExpirationTTL": "25h"}), "ExpirationTime cannot be more than 24h0m0s in the future (was 25h0m0s)"),
        (json!({"ExpirationTTL": "-1h"}), "Token Expiration TTL '-1h0m0s' should be > 0"),
        (json!({"ExpirationTime": "yesterday"}), "ExpirationTime: \"yesterday\" is not an RFC 3339 time"),
    ] {
        let r = api.call("PUT", "/v1/acl/token", ROOT, &body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert!(r.body.starts_with(want), "{body}: {}", r.body);
    }
}

/// An expiring token stops working at its ExpirationTime and is then removed.
#[tokio::test]
async fn an_expired_token_stops_working_at_its_time_and_is_removed() {
    let mut c = tribune_server::AgentConfig::default();
    c.acl.enabled = true;
    c.acl.default_policy = "deny".into();
    c.acl.initial_management = Some("root-secret".into());
    c.acl.token_ttl.min_ns = 1_000_000_000;
    let api = Api::new(c).await;
    let r = api
        .call(
            "PUT",
            "/v1/acl/token",
            ROOT,
            &json!({"ExpirationTTL": "2s", "ServiceIdentities": [{"ServiceName": "web"}]})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = r.json();
    let (id, secret) = (
        t["AccessorID"].as_str().unwrap().to_string(),
        t["SecretID"].as_str().unwrap().to_string(),
    );
    let register = || async {
        api.call(
            "PUT",
            "/v1/agent/service/register",
            Some(&secret),
            &json!({"Name": "web", "Port": 1}).to_string(),
        )
        .await
    };
    assert_eq!(register().await.status, StatusCode::OK);
    // Bounded: the token lives 2 s; the reaper runs every second.
    let mut refused_at = None;
    for i in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = register().await;
        if r.status == StatusCode::FORBIDDEN {
            assert_eq!(r.body, "ACL not found");
            refused_at = Some(i);
            break;
        }
    }
    assert!(refused_at.is_some(), "the token still works after 5 s");
    let mut gone = false;
    for _ in 0..50 {
        let r = api
            .call("GET", &format!("/v1/acl/token/{id}"), ROOT, "")
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "expired reads as not found"
        );
        let stored = api.call("GET", "/v1/acl/tokens", ROOT, "").await.json();
        let still = tribune_store::Store::list(api.state.store.as_ref(), "acl-tokens")
            .await
            .unwrap()
            .iter()
            .any(|r| r.key == id);
        assert!(
            !stored
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["AccessorID"] == id),
            "expired tokens are not listed"
        );
        if !still {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the reaper removed the expired token");
}
