//! Login's binding: a rule's selector and BindName, checked against a method and
//! applied to claims. Whatever the rule and the claims, nothing panics, and a bound
//! service or node name is always a valid identity name.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_model::auth_method::AuthMethod;
use tribune_model::binding_rule::{bind, valid_identity_name, Binding, BindingRule, Identity};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Fields separated by NUL: bind type, bind name, selector, claims JSON.
    let mut parts = text.splitn(4, '\0');
    let (bind_type, bind_name, selector, claims) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("{}"),
    );
    let method: AuthMethod = match serde_json::from_value(serde_json::json!({
        "Name": "m", "Type": "jwt",
        "Config": {"JWKSURL": "https://idp.example/keys",
            "ClaimMappings": {"a": "a", "/n/b": "b"}, "ListClaimMappings": {"g": "g"}}}))
    {
        Ok(m) => m,
        Err(_) => return,
    };
    let mut rule = BindingRule {
        auth_method: "m".into(),
        bind_type: bind_type.into(),
        bind_name: bind_name.into(),
        selector: selector.into(),
        ..Default::default()
    };
    let valid = rule.validate(None, Some(&method)).is_ok();
    let Ok(claims) = tribune_model::decode::parse_json(claims.as_bytes()) else {
        return;
    };
    let Ok(identity) = Identity::from_claims(&method.config, &claims) else {
        return;
    };
    let _ = rule.matches(&identity);
    if valid {
        if let Ok(bound) = bind(&[rule], &identity) {
            for b in bound {
                if let Binding::Service(n) | Binding::Node(n) = b {
                    assert!(valid_identity_name(&n), "bound an invalid name {n:?}");
                }
            }
        }
    }
});
