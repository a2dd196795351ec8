//! The DNS-rebinding defence of every loopback listener (the agent's API and UI, the
//! demo's token issuer, a sidecar's admin listener).
//!
//! A page on `rebind.attacker.test`, resolved to 127.0.0.1, can send requests to a
//! loopback listener from the victim's browser, and the browser treats the answers
//! as the attacker's origin. What gives it away is the `Host` header: the browser
//! sends the attacker's name. A listener bound to loopback therefore serves only
//! `Host` values that name loopback (`localhost`, `*.localhost`, `127.0.0.0/8`,
//! `[::1]`) or a name its operator added (the standard defence: webpack-dev-server
//! after CVE-2018-14732, `geth --http.vhosts`). Others get 421 Misdirected Request.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Whether a loopback listener serves a request whose `Host` header is `host`
/// (`None`: no header, which no browser sends, so it is not a rebinding).
pub fn loopback_host_allowed(host: Option<&[u8]>, allowed: &[String]) -> bool {
    let Some(host) = host else {
        return true;
    };
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let name = strip_port(host.trim());
    if name.is_empty() {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    if let Some(v6) = lower.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
            || allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
    }
    // IPv6 only in brackets (RFC 3986 host syntax).
    if lower.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    allowed.iter().any(|a| {
        strip_port(a)
            .trim_end_matches('.')
            .eq_ignore_ascii_case(lower)
    })
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The 421 body for a request whose `Host` a loopback listener does not serve;
/// `None` when it serves it (see [`loopback_host_allowed`]).
pub fn refused(host: Option<&[u8]>, allowed: &[String]) -> Option<String> {
    if loopback_host_allowed(host, allowed) {
        return None;
    }
    Some(format!(
        "Host {:?} is not served here: this listener is bound to loopback and answers only loopback addresses, localhost and the names it is told to (DNS rebinding defence)\n",
        String::from_utf8_lossy(host.unwrap_or_default())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_added_names_are_served_and_others_are_not() {
        let added = vec!["agent.internal".to_string()];
        for (host, want) in [
            (Some("127.0.0.1:8500"), true),
            (Some("127.1.2.3"), true),
            (Some("localhost:8500"), true),
            (Some("LOCALHOST."), true),
            (Some("api.localhost:19000"), true),
            (Some("[::1]:8500"), true),
            (Some("agent.internal:8500"), true),
            (Some("Agent.Internal"), true),
            (None, true),
            (Some("rebind.attacker.test"), false),
            (Some("rebind.attacker.test:8500"), false),
            (Some("localhost.attacker.test"), false),
            (Some("10.0.0.1:8500"), false),
            (Some("[::2]:8500"), false),
            (Some("0.0.0.0:8500"), false),
            (Some(""), false),
            (Some("agent"), false),
            (Some("::1:80"), false),
        ] {
            assert_eq!(
                loopback_host_allowed(host.map(str::as_bytes), &added),
                want,
                "{host:?}"
            );
        }
        assert!(!loopback_host_allowed(Some(b"caf\xe9"), &added));
    }
}
