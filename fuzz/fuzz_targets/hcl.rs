//! The HCL1 parser: never panics or overflows, and a parsed tree respects the
//! nesting limit.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(map) = tribune_model::hcl::parse(text) {
        let depth = tribune_model::decode::nesting_depth(&serde_json::Value::Object(map));
        assert!(depth <= tribune_model::decode::MAX_NESTING, "depth {depth}");
    }
});
