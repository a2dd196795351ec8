//! JWKS parsing (every key family): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = tribune_jwt::Jwks::parse(data) {
        let _ = set.has_kid("k");
    }
});
