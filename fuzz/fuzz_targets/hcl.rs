//! The HCL1 parser: never panics or overflows, and a parsed tree respects the
//! nesting limit; the renderer writes every tree without `$` (HCL1 keeps `${...}`
//! raw, so those cannot be written) as text that parses back to the same tree.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(map) = tribune_model::hcl::parse(text) {
        let tree = serde_json::Value::Object(map);
        let depth = tribune_model::decode::nesting_depth(&tree);
        assert!(depth <= tribune_model::decode::MAX_NESTING, "depth {depth}");
        let serde_json::Value::Object(map) = tree else {
            return;
        };
        if !serde_json::to_string(&map)
            .unwrap_or_default()
            .contains('$')
        {
            let text = tribune_model::hcl::render(&map);
            let again = tribune_model::hcl::parse(&text);
            assert_eq!(again.as_ref().ok(), Some(&map), "{text}");
        }
    }
});
