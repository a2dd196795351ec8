//! JWKS parsing (every key family), and the OpenID Connect discovery document a
//! remote key set may point at: never panics; a discovered `jwks_uri` is http(s).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = tribune_jwt::Jwks::parse(data) {
        let _ = set.has_kid("k");
    }
    for discovery in ["https://idp/.well-known/openid-configuration", "http://idp/.well-known/openid-configuration"] {
        if let Ok(uri) = tribune_jwks::discovered_jwks_uri(data, "https://idp", discovery) {
            let https_only = discovery.starts_with("https://");
            assert!(
                uri.starts_with("https://") || (!https_only && uri.starts_with("http://")),
                "{uri}"
            );
        }
    }
});
