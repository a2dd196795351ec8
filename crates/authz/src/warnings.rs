//! Write-time warnings (decisions.md #3): entries Consul accepts whose JWT or L7 parts
//! cannot have the effect their author most likely meant. Tribune decides exactly as
//! Consul does and says so when the entry is written.

use tribune_model::intentions::{Action, SourceRule};
use tribune_model::jwt_provider::{JsonWebKeySet, LocalJwks};
use tribune_model::{JwtProvider, ServiceIntentions, WILDCARD};

/// Warnings for one `jwt-provider` entry: inline symmetric (`oct`) keys are a shared
/// secret that anyone who can read the entry holds, and Consul lets every token with
/// `service:write` on any service read every provider.
///
/// Also the provider mistakes users make (issue #42): an `Issuer` that is not a URL
/// while the keys come from a remote set (an OpenID provider's tokens carry its URL
/// in `iss`, so every token would be refused as `jwt_issuer_unknown`), and no
/// `Audiences` (a token this issuer made for any other service is accepted).
pub fn provider_warnings(p: &JwtProvider) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(p.json_web_key_set, JsonWebKeySet::Remote(_))
        && !p.issuer.is_empty()
        && !p.issuer.contains("://")
    {
        out.push(format!(
            "jwt-provider {:?}: Issuer {:?} is not a URL, but its keys come from a remote key set: OpenID providers put their URL in a token's iss (such as \"https://{}.example.com/oauth2/default\"), and a token whose iss is not exactly the Issuer is refused (jwt_issuer_unknown); copy the issuer from the provider's /.well-known/openid-configuration",
            p.name, p.issuer, p.issuer
        ));
    }
    if p.audiences.is_empty() {
        out.push(format!(
            "jwt-provider {:?} has no Audiences: a token its issuer made for any other service or client is accepted; list the audiences meant for the services it guards",
            p.name
        ));
    }
    out.extend(symmetric_key_warning(p));
    out
}

fn symmetric_key_warning(p: &JwtProvider) -> Vec<String> {
    let JsonWebKeySet::Local(local @ LocalJwks::Inline(_)) = &p.json_web_key_set else {
        return Vec::new();
    };
    let symmetric = local
        .inline_json()
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|v| v.get("keys").and_then(|k| k.as_array()).cloned())
        .is_some_and(|keys| {
            keys.iter()
                .any(|k| k.get("kty").and_then(|t| t.as_str()) == Some("oct"))
        });
    if symmetric {
        vec![format!(
            "jwt-provider {:?} holds inline symmetric (oct) keys: every token with service:write on any service can read this entry and so can mint tokens it accepts; prefer asymmetric keys",
            p.name
        )]
    } else {
        Vec::new()
    }
}

/// Warnings for one `service-intentions` entry under the given default policy.
/// `http` is the destination's protocol class when known (`None` for `*`).
pub fn write_warnings(
    entry: &ServiceIntentions,
    default: Action,
    http: Option<bool>,
) -> Vec<String> {
    let mut out = Vec::new();
    let top_jwt = entry.jwt.as_ref().is_some_and(|j| !j.providers.is_empty());
    if http == Some(false) && (top_jwt || entry.has_any_permissions()) {
        out.push(format!(
            "service {:?} does not use an HTTP protocol: its JWT requirements are ignored and only the caller's identity is checked",
            entry.name
        ));
        return out;
    }
    if entry.name == WILDCARD && top_jwt {
        out.push(
            "JWT on the wildcard destination applies only to services with an HTTP protocol; tcp services ignore it"
                .to_string(),
        );
    }
    out.extend(claim_paths(entry));
    for (i, src) in entry.sources.iter().enumerate() {
        let p = format!("Sources[{i}] ({})", src.name);
        match &src.rule {
            SourceRule::Action(a) if top_jwt => match (default, a) {
                (Action::Allow, Action::Allow) => out.push(format!(
                    "{p}: the JWT requirement of an allow intention is not enforced while the default intention policy is allow"
                )),
                (Action::Deny, Action::Deny) => out.push(format!(
                    "{p}: the JWT requirement of a deny intention is ignored; it denies every request from this source"
                )),
                (Action::Allow, Action::Deny) => out.push(format!(
                    "{p}: under default allow this deny intention denies only requests that carry a valid token meeting the JWT requirement"
                )),
                _ => {}
            },
            SourceRule::Action(_) => {}
            SourceRule::Permissions(perms) => {
                if default == Action::Allow && perms.iter().all(|pm| pm.action == Action::Allow) {
                    out.push(format!(
                        "{p}: only allow permissions, which change nothing while the default intention policy is allow"
                    ));
                }
                for (j, perm) in perms.iter().enumerate() {
                    let own_jwt = perm.jwt.as_ref().is_some_and(|j| !j.providers.is_empty());
                    if !(own_jwt || top_jwt) {
                        continue;
                    }
                    match (default, perm.action) {
                        // A top-level JWT also covers deny permissions; only a JWT
                        // written on the deny permission itself is surprising.
                        (Action::Deny, Action::Deny) if own_jwt => out.push(format!(
                            "{p}.Permissions[{j}]: the JWT requirement of a deny permission is ignored; it denies every matching request"
                        )),
                        (Action::Allow, Action::Allow) => out.push(format!(
                            "{p}.Permissions[{j}]: the JWT requirement of an allow permission is not enforced while the default intention policy is allow"
                        )),
                        _ => {}
                    }
                }
            }
        }
    }
    out
}

/// The warnings an entry earns on its own, without the agent's other entries or its
/// default policy (`tribune config validate`, offline): a provider's mistakes and
/// dotted claim paths.
pub fn entry_warnings(entry: &tribune_model::ConfigEntry) -> Vec<String> {
    match entry {
        tribune_model::ConfigEntry::JwtProvider(p) => provider_warnings(p),
        tribune_model::ConfigEntry::ServiceIntentions(si) => claim_paths(si),
        _ => Vec::new(),
    }
}

/// [`claim_path_warnings`] of every JWT requirement of `si`.
fn claim_paths(si: &ServiceIntentions) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(jwt) = &si.jwt {
        out.extend(claim_path_warnings("JWT", jwt));
    }
    for (i, src) in si.sources.iter().enumerate() {
        if let SourceRule::Permissions(perms) = &src.rule {
            for (j, perm) in perms.iter().enumerate() {
                if let Some(jwt) = &perm.jwt {
                    out.extend(claim_path_warnings(
                        &format!("Sources[{i}].Permissions[{j}].JWT"),
                        jwt,
                    ));
                }
            }
        }
    }
    out
}

/// A `VerifyClaims.Path` element holding a `.`: `Path` is the list of claim names,
/// one per level, so `"perms.role"` names a top-level claim with a dot in its name
/// (and every request then fails the check); `["perms", "role"]` was most likely
/// meant.
fn claim_path_warnings(at: &str, jwt: &tribune_model::intentions::JwtRequirement) -> Vec<String> {
    let mut out = Vec::new();
    for (k, provider) in jwt.providers.iter().enumerate() {
        for (m, claim) in provider.verify_claims.iter().enumerate() {
            if claim.path.iter().any(|e| e.contains('.')) {
                let meant: Vec<String> = claim
                    .path
                    .iter()
                    .flat_map(|e| e.split('.'))
                    .map(|e| format!("{e:?}"))
                    .collect();
                let given: Vec<String> = claim.path.iter().map(|e| format!("{e:?}")).collect();
                out.push(format!(
                    "{at}.Providers[{k}].VerifyClaims[{m}].Path: [{}] names one claim with a dot in its name; Path lists the claim names one level each: did you mean [{}]?",
                    given.join(", "),
                    meant.join(", ")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_model::{parse_entry, ConfigEntry};

    fn entry(hcl: &str) -> ServiceIntentions {
        match parse_entry(hcl) {
            Ok(ConfigEntry::ServiceIntentions(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    const JWT_ALLOW: &str = "Kind = \"service-intentions\"\nName = \"api\"\nJWT { Providers = [ { Name = \"okta\" } ] }\nSources = [ { Name = \"web\" Action = \"allow\" }, { Name = \"bad\" Action = \"deny\" } ]";

    #[test]
    fn a_dotted_claim_path_gets_a_did_you_mean() {
        let e = entry(
            "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Permissions = [ { Action = \"allow\" HTTP { PathPrefix = \"/\" } JWT { Providers = [ { Name = \"okta\" VerifyClaims = [ { Path = \"perms.role\" Value = \"admin\" } ] } ] } } ] } ]",
        );
        let w = write_warnings(&e, Action::Deny, Some(true));
        assert_eq!(
            w,
            ["Sources[0].Permissions[0].JWT.Providers[0].VerifyClaims[0].Path: [\"perms.role\"] names one claim with a dot in its name; Path lists the claim names one level each: did you mean [\"perms\", \"role\"]?"]
        );
    }

    #[test]
    fn provider_mistakes_are_named() {
        let remote = |extra: &str| {
            match parse_entry(&format!(
            "Kind = \"jwt-provider\"\nName = \"okta\"\nJSONWebKeySet {{ Remote {{ URI = \"https://idp.example/keys\" }} }}\n{extra}"
        )) {
            Ok(ConfigEntry::JwtProvider(p)) => p,
            other => panic!("{other:?}"),
        }
        };
        let w = provider_warnings(&remote("Issuer = \"okta\""));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("jwt-provider \"okta\": Issuer \"okta\" is not a URL"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("jwt-provider \"okta\" has no Audiences"),
            "{w:?}"
        );
        assert!(provider_warnings(&remote(
            "Issuer = \"https://idp.example/\"\nAudiences = [\"api\"]"
        ))
        .is_empty());
    }

    #[test]
    fn jwt_on_allow_under_default_allow_has_no_effect() {
        let w = write_warnings(&entry(JWT_ALLOW), Action::Allow, Some(true));
        assert_eq!(w.len(), 2);
        assert!(
            w[0].starts_with(
                "Sources[0] (web): the JWT requirement of an allow intention is not enforced"
            ),
            "{w:?}"
        );
        assert!(
            w[1].contains("denies only requests that carry a valid token"),
            "{w:?}"
        );
    }

    #[test]
    fn jwt_on_deny_under_default_deny_is_ignored() {
        let w = write_warnings(&entry(JWT_ALLOW), Action::Deny, Some(true));
        assert_eq!(w, ["Sources[1] (bad): the JWT requirement of a deny intention is ignored; it denies every request from this source"]);
    }

    #[test]
    fn jwt_on_tcp_service_is_ignored() {
        let w = write_warnings(&entry(JWT_ALLOW), Action::Deny, Some(false));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("does not use an HTTP protocol"), "{w:?}");
    }

    #[test]
    fn deny_permission_jwt_is_ignored_and_clean_entries_have_no_warnings() {
        let e = entry(
            "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Permissions = [ { Action = \"deny\" HTTP { PathPrefix = \"/a\" } JWT { Providers = [ { Name = \"okta\" } ] } }, { Action = \"allow\" HTTP { PathPrefix = \"/\" } } ] } ]",
        );
        let w = write_warnings(&e, Action::Deny, Some(true));
        assert_eq!(w, ["Sources[0] (web).Permissions[0]: the JWT requirement of a deny permission is ignored; it denies every matching request"]);
        let clean = entry("Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"allow\" } ]");
        assert!(write_warnings(&clean, Action::Deny, Some(true)).is_empty());
    }
}
