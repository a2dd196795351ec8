//! Consul ACL rules (HCL or JSON): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tribune_server::acl::Rules::parse(text);
    }
});
