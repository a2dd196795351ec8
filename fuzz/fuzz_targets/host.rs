//! The DNS-rebinding check of loopback listeners (`Host` and `Origin` values): never
//! panics, and whatever it serves names loopback or an added name.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_model::host::loopback_host_allowed;

fuzz_target!(|data: &[u8]| {
    let added = ["agent.internal".to_string()];
    if loopback_host_allowed(Some(data), &added) {
        let text = std::str::from_utf8(data).expect("a served Host is UTF-8");
        let lower = text.trim().to_ascii_lowercase();
        assert!(
            lower.contains("localhost")
                || lower.starts_with("127.")
                || lower.starts_with('[')
                || lower.contains("agent.internal"),
            "served {text:?}"
        );
    }
    assert_eq!(
        tribune_model::host::refused(Some(data), &added).is_none(),
        loopback_host_allowed(Some(data), &added)
    );
});
