//! The cross-entry checks of a write (Consul's, for providers and intentions): what the agent
//! applies to every `config write` and `config delete`, and what the offline
//! `intention test -entries DIR` applies to the files it loads.

use std::collections::HashMap;
use tribune_authz::{is_http_like, ANY_PROVIDER};
use tribune_model::{go, ConfigEntry, Kind, WILDCARD};

fn l7_protocol_error(service: &str, protocol: &str) -> String {
    format!(
        "service {} has protocol {}, which is incompatible with L7 intentions permissions",
        go::quote(service),
        go::quote(protocol)
    )
}

/// §b.4 and its reverse: the state after writing `new` (or deleting `removed`) must
/// keep every provider reference resolvable and every L7 intention on an HTTP service.
pub fn cross_checks(
    current: &[&ConfigEntry],
    new: Option<&ConfigEntry>,
    removed: Option<(Kind, &str)>,
) -> Result<(), String> {
    let replaced = new.map(|e| (e.kind(), e.name()));
    let mut after: Vec<&ConfigEntry> = current
        .iter()
        .copied()
        .filter(|e| {
            let key = Some((e.kind(), e.name()));
            key != replaced && key != removed
        })
        .collect();
    if let Some(e) = new {
        after.push(e);
    }
    // Deleting a provider that an intention references.
    if let Some((Kind::JwtProvider, name)) = removed {
        for e in &after {
            if let ConfigEntry::ServiceIntentions(si) = e {
                if si.referenced_providers().contains(&name) {
                    return Err(format!(
                        "cannot delete jwt provider config entry referenced by an intention. Provider name: {name}, intention name: {}",
                        si.name
                    ));
                }
            }
        }
    }
    // Referenced providers must exist (checked for the entry being written).
    if let Some(ConfigEntry::ServiceIntentions(si)) = new {
        let missing: Vec<String> = si
            .referenced_providers()
            .into_iter()
            .filter(|p| *p != ANY_PROVIDER)
            .filter(|p| {
                !after
                    .iter()
                    .any(|e| matches!(e, ConfigEntry::JwtProvider(jp) if jp.name == *p))
            })
            .map(|p| format!("Referenced JWT Provider does not exist. Provider Name: {p}"))
            .collect();
        match missing.len() {
            0 => {}
            1 => return Err(missing[0].clone()),
            _ => return Err(tribune_model::error::multierror(&missing)),
        }
    }
    // Every non-wildcard destination with L7 permissions needs an HTTP-like protocol.
    // The stored entries passed this check when written, so only the destinations
    // whose protocol or intentions this write changes are checked again: one
    // service's for its intentions or defaults, all of them for `proxy-defaults`
    // (a write costs no scan of every intention, issue #40).
    let scope = match (new, removed) {
        (Some(ConfigEntry::ServiceIntentions(si)), _) => Some(Some(si.name.as_str())),
        (Some(ConfigEntry::ServiceDefaults(s)), _) => Some(Some(s.name.as_str())),
        (None, Some((Kind::ServiceDefaults, name))) => Some(Some(name)),
        (Some(ConfigEntry::ProxyDefaults(_)), _) | (None, Some((Kind::ProxyDefaults, _))) => {
            Some(None)
        }
        _ => None,
    };
    if let Some(only) = scope {
        let global = after.iter().find_map(|e| match e {
            ConfigEntry::ProxyDefaults(p) => p.protocol(),
            _ => None,
        });
        // One pass to index the protocols, then one lookup per intention (not a scan
        // of every entry per intention).
        let own: HashMap<&str, &str> = after
            .iter()
            .filter_map(|e| match e {
                ConfigEntry::ServiceDefaults(s)
                    if !s.protocol.is_empty() && only.is_none_or(|o| o == s.name) =>
                {
                    Some((s.name.as_str(), s.protocol.as_str()))
                }
                _ => None,
            })
            .collect();
        for e in &after {
            if let ConfigEntry::ServiceIntentions(si) = e {
                if si.name == WILDCARD
                    || only.is_some_and(|o| o != si.name)
                    || !si.has_any_permissions()
                {
                    continue;
                }
                let p = match own.get(si.name.as_str()) {
                    Some(p) => p.to_string(),
                    None => global.clone().unwrap_or_else(|| "tcp".into()),
                };
                if !is_http_like(&p) {
                    return Err(l7_protocol_error(&si.name, &p));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_model::entry_from_json;

    fn entry(v: serde_json::Value) -> ConfigEntry {
        entry_from_json(v).unwrap()
    }

    fn l7(name: &str) -> ConfigEntry {
        entry(serde_json::json!({
            "Kind": "service-intentions", "Name": name,
            "Sources": [{"Name": "web", "Permissions": [
                {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]
        }))
    }

    fn defaults(name: &str, protocol: &str) -> ConfigEntry {
        entry(serde_json::json!({
            "Kind": "service-defaults", "Name": name, "Protocol": protocol
        }))
    }

    #[test]
    fn a_write_checks_the_protocols_it_changes() {
        let api = defaults("api", "http");
        let stored = [api.clone(), l7("api")];
        let refs: Vec<&ConfigEntry> = stored.iter().collect();
        // Turning api to tcp under its L7 intentions is refused, as is deleting its
        // defaults or making the global default tcp while api has none.
        let err = cross_checks(&refs, Some(&defaults("api", "tcp")), None).unwrap_err();
        assert!(
            err.contains("service \"api\" has protocol \"tcp\""),
            "{err}"
        );
        assert!(cross_checks(&refs, None, Some((Kind::ServiceDefaults, "api"))).is_err());
        let only_intentions = [l7("api")];
        let refs: Vec<&ConfigEntry> = only_intentions.iter().collect();
        let tcp = entry(serde_json::json!({
            "Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}
        }));
        assert!(cross_checks(&refs, Some(&tcp), None).is_err());
        // L7 intentions for a service without an HTTP protocol are refused.
        assert!(cross_checks(&[], Some(&l7("db")), None).is_err());
    }

    #[test]
    fn a_write_is_not_refused_for_another_services_stored_state() {
        // Stored before the check existed (or by another version): db's L7 intentions
        // on tcp. Writing api's (an HTTP service) is not blocked by db's.
        let stored = [l7("db"), defaults("api", "http")];
        let refs: Vec<&ConfigEntry> = stored.iter().collect();
        assert_eq!(cross_checks(&refs, Some(&l7("api")), None), Ok(()));
    }
}
