use super::*;
use crate::auth_method::AuthMethod;
use serde_json::json;

/// The method `nomad setup consul` creates.
fn nomad_method() -> AuthMethod {
    serde_json::from_value(json!({"Name": "nomad-workloads", "Type": "jwt",
        "Config": {"JWKSURL": "https://nomad.example:4646/.well-known/jwks.json",
            "BoundAudiences": ["consul.io"],
            "ClaimMappings": {"nomad_namespace": "nomad_namespace",
                "nomad_job_id": "nomad_job_id", "nomad_task": "nomad_task",
                "nomad_service": "nomad_service"},
            "ListClaimMappings": {"/groups": "groups"}}}))
    .unwrap()
}

/// The two rules `nomad setup consul` creates.
fn nomad_rules() -> Vec<BindingRule> {
    vec![
        BindingRule {
            auth_method: "nomad-workloads".into(),
            selector: "\"nomad_service\" in value".into(),
            bind_type: "service".into(),
            bind_name: "${value.nomad_service}".into(),
            ..Default::default()
        },
        BindingRule {
            auth_method: "nomad-workloads".into(),
            selector: "\"nomad_service\" not in value".into(),
            bind_type: "role".into(),
            bind_name: "nomad-${value.nomad_namespace}-tasks".into(),
            ..Default::default()
        },
    ]
}

fn identity(claims: serde_json::Value) -> Identity {
    Identity::from_claims(&nomad_method().config, &claims).unwrap()
}

#[test]
fn nomads_rules_are_valid_and_bind_a_service_or_a_role() {
    let method = nomad_method();
    for mut r in nomad_rules() {
        r.validate(None, Some(&method)).unwrap();
    }
    let service = identity(json!({"nomad_namespace": "default", "nomad_job_id": "web",
        "nomad_service": "web", "aud": "consul.io"}));
    assert_eq!(
        bind(&nomad_rules(), &service).unwrap(),
        vec![Binding::Service("web".into())]
    );
    let task = identity(json!({"nomad_namespace": "prod", "nomad_job_id": "batch",
        "nomad_task": "t"}));
    assert_eq!(
        bind(&nomad_rules(), &task).unwrap(),
        vec![Binding::Role("nomad-prod-tasks".into())]
    );
}

#[test]
fn selectors_see_values_and_lists_and_nothing_else() {
    let id = identity(json!({"nomad_service": "web", "groups": ["ops", "dev"]}));
    let rule = |selector: &str| BindingRule {
        selector: selector.into(),
        ..Default::default()
    };
    assert!(rule("value.nomad_service == web").matches(&id));
    assert!(rule("\"ops\" in list.groups").matches(&id));
    assert!(!rule("\"admin\" in list.groups").matches(&id));
    assert!(rule("list.groups is not empty and \"nomad_job_id\" not in value").matches(&id));
    assert!(rule("").matches(&id), "no selector: everyone");
    // Claims outside the mappings are invisible: `sub` is in the token, not mapped.
    let with_sub = identity(json!({"sub": "admin", "nomad_service": "web"}));
    assert!(!rule("\"sub\" in value").matches(&with_sub));
    let e = filter::compile("claims.sub == admin", SELECTOR_SCHEMA).unwrap_err();
    assert_eq!(e.0, "Selector \"claims.sub\" is not valid");
}

#[test]
fn claims_are_extracted_as_consul_does() {
    let mut config = nomad_method().config;
    config
        .claim_mappings
        .insert("/meta/team".into(), "team".into());
    config.claim_mappings.insert("n".into(), "n".into());
    config.claim_mappings.insert("ok".into(), "ok".into());
    let id = Identity::from_claims(
        &config,
        &json!({"meta": {"team": "Payments"}, "n": 42.9, "ok": true, "groups": "solo"}),
    )
    .unwrap();
    assert_eq!(id.values["team"], "Payments");
    assert_eq!(id.values["n"], "42");
    assert_eq!(id.values["ok"], "true");
    assert_eq!(id.lists["groups"], vec!["solo".to_string()]);
    assert_eq!(id.projected()["value.nomad_service"], "", "mapped, absent");
    let e = Identity::from_claims(&config, &json!({"n": {"a": 1}})).unwrap_err();
    assert_eq!(
        e,
        "error converting claim 'n' to string from unknown type map[string]interface {}"
    );
    let e = Identity::from_claims(&config, &json!({"groups": [{"a": 1}]})).unwrap_err();
    assert!(
        e.contains("\"/groups\" list claim could not be parsed"),
        "{e}"
    );
}

#[test]
fn bind_names_interpolate_lowercase_and_refuse_what_would_change_meaning() {
    let vars = BTreeMap::from([("value.a".to_string(), "Web".to_string())]);
    assert_eq!(interpolate("x-${value.a}", &vars, true).unwrap(), "x-web");
    assert_eq!(
        interpolate("$${value.a}", &vars, true).unwrap(),
        "${value.a}"
    );
    assert_eq!(
        interpolate("${value.b}", &vars, true).unwrap_err(),
        "unknown variable accessed: value.b"
    );
    assert!(interpolate("${upper(value.a)}", &vars, true).is_err());
    assert!(interpolate("${value.a", &vars, true).is_err());
    let id = identity(json!({"nomad_service": "Web"}));
    let e = bind(&nomad_rules()[..1], &id).unwrap_err();
    assert!(e.contains("uppercase"), "{e}");
    let id = identity(json!({"nomad_service": "web/../admin"}));
    assert_eq!(
        bind(&nomad_rules()[..1], &id).unwrap_err(),
        "invalid bind name: \"web/../admin\""
    );
}

#[test]
fn each_rule_mistake_gets_consuls_text() {
    let method = nomad_method();
    let check = |patch: serde_json::Value, method: Option<&AuthMethod>| {
        let mut v = serde_json::to_value(&nomad_rules()[0]).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        let mut r: BindingRule = serde_json::from_value(v).unwrap();
        r.validate(None, method).unwrap_err().0
    };
    let m = Some(&method);
    for (patch, method, want) in [
        (json!({"AuthMethod": ""}), m, "Invalid Binding Rule: no AuthMethod is set".to_string()),
        (json!({}), None, "cannot find auth method with name \"nomad-workloads\"".to_string()),
        (json!({"Selector": "value.x =="}), m, "invalid Binding Rule: Selector is invalid: ".to_string()),
        (json!({"BindType": ""}), m, "Invalid Binding Rule: no BindType is set".to_string()),
        (json!({"BindName": ""}), m, "Invalid Binding Rule: no BindName is set".to_string()),
        (json!({"BindType": "admin"}), m, "Invalid Binding Rule: unknown BindType \"admin\"".to_string()),
        (json!({"BindName": "${value.nope}"}), m, "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType \"service\": error interpreting template: unknown variable accessed: value.nope".to_string()),
        (json!({"BindName": "Web_"}), m, "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType \"service\": invalid bind name: \"Web_\"".to_string()),
        (json!({"BindType": "templated-policy", "BindName": "builtin/admin"}), m, "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType \"templated-policy\": Bind name for templated-policy bind type does not match existing template name: builtin/admin".to_string()),
        (json!({"BindType": "templated-policy", "BindName": "builtin/service"}), m, "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType \"templated-policy\": templated policy failed validation: builtin/service: name is required".to_string()),
    ] {
        let got = check(patch.clone(), method);
        assert!(got.starts_with(&want), "{patch}: {got}");
    }
    // An update keeps the method; it may not move the rule to another.
    let stored = nomad_rules()[0].clone();
    let mut update = BindingRule {
        auth_method: String::new(),
        ..stored.clone()
    };
    update.validate(Some(&stored), Some(&method)).unwrap();
    assert_eq!(update.auth_method, "nomad-workloads");
    update.auth_method = "other".into();
    assert_eq!(
        update.validate(Some(&stored), Some(&method)).unwrap_err().0,
        "the AuthMethod field of an Binding Rule is immutable"
    );
}

#[test]
fn templated_policies_bind_with_their_variables() {
    let rule = BindingRule {
        bind_type: "templated-policy".into(),
        bind_name: "builtin/service".into(),
        bind_vars: Some(AclTemplatedPolicyVariables {
            name: "${value.nomad_service}".into(),
        }),
        ..Default::default()
    };
    let id = identity(json!({"nomad_service": "api"}));
    assert_eq!(
        bind(&[rule], &id).unwrap(),
        vec![Binding::Templated(AclTemplatedPolicy {
            template_name: "builtin/service".into(),
            template_variables: Some(AclTemplatedPolicyVariables { name: "api".into() }),
        })]
    );
}

#[test]
fn bind_types_all_round_trip() {
    for t in BindType::ALL {
        assert_eq!(BindType::parse(t.as_str()), Some(t));
    }
}
