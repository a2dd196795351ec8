//! JWKS parsing (every key family), and the OpenID Connect discovery document a
//! remote key set may point at: never panics; `inspect` counts the keys `parse` keeps;
//! a discovered `jwks_uri` is http(s).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = tribune_jwt::Jwks::parse(data);
    if let Ok(set) = &parsed {
        let _ = set.has_kid("k");
    }
    // `jwt-provider check` lists the keys parse keeps, exactly.
    if let Ok(keys) = tribune_jwt::Jwks::inspect(data) {
        let usable = keys.iter().filter(|k| k.problem.is_none()).count();
        assert_eq!(parsed.as_ref().map(|s| s.len()).unwrap_or(0), usable);
    }
    for discovery in [
        "https://idp/.well-known/openid-configuration",
        "http://idp/.well-known/openid-configuration",
    ] {
        if let Ok(uri) = tribune_jwks::discovered_jwks_uri(data, "https://idp", discovery) {
            let https_only = discovery.starts_with("https://");
            assert!(
                uri.starts_with("https://") || (!https_only && uri.starts_with("http://")),
                "{uri}"
            );
        }
    }
});
