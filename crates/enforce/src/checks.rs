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
    let replaced = new.map(|e| (e.kind(), e.name().to_string()));
    let mut after: Vec<&ConfigEntry> = current
        .iter()
        .copied()
        .filter(|e| {
            let key = (e.kind(), e.name().to_string());
            Some(&key) != replaced.as_ref() && removed.map(|(k, n)| (k, n.to_string())) != Some(key)
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
    let protocol_may_change = matches!(
        new.map(|e| e.kind()).or(removed.map(|(k, _)| k)),
        Some(Kind::ServiceDefaults | Kind::ProxyDefaults | Kind::ServiceIntentions)
    );
    if protocol_may_change {
        // One pass to index the protocols, then one lookup per intention (not a scan
        // of every entry per intention).
        let own: HashMap<&str, &str> = after
            .iter()
            .filter_map(|e| match e {
                ConfigEntry::ServiceDefaults(s) if !s.protocol.is_empty() => {
                    Some((s.name.as_str(), s.protocol.as_str()))
                }
                _ => None,
            })
            .collect();
        let global = after.iter().find_map(|e| match e {
            ConfigEntry::ProxyDefaults(p) => p.protocol(),
            _ => None,
        });
        for e in &after {
            if let ConfigEntry::ServiceIntentions(si) = e {
                if si.name == WILDCARD || !si.has_any_permissions() {
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
