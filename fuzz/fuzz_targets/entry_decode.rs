//! Config entry decoding (HCL or JSON, auto-detected) through the one pipeline: never
//! panics, and a valid entry survives its canonical JSON unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entry) = tribune_model::parse_entry(text) {
        let again = tribune_model::entry_from_json(entry.to_json())
            .expect("canonical JSON of a valid entry decodes");
        assert_eq!(again, entry);
    }
});
