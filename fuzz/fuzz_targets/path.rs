//! Path normalization under every mesh setting, with its invariants: the result is a
//! fixed point, starts with `/`, never climbs above the root, and (unless the entry
//! keeps escapes or turns normalization off) decoded once it has the same separators
//! and no dot segment, so a decoding upstream sees the path that was authorized; the
//! already-normal shortcut agrees with full normalization.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_authz::{decoded_once, normalize_in_full, normalize_request_path, PathVerdict};
use tribune_model::mesh::{EscapedSlashes, RequestNormalization};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let rules = RequestNormalization {
        insecure_disable_path_normalization: false,
        merge_slashes: flags & 1 != 0,
        path_with_escaped_slashes_action: EscapedSlashes::ALL[(flags as usize >> 1) % 5],
        headers_with_underscores_action: Default::default(),
    };
    let verdict = normalize_request_path(raw, &rules);
    // The shortcut the sidecar takes (an already normal path, borrowed) never
    // forwards a path that full normalization would change.
    assert_eq!(normalize_in_full(raw, &rules), verdict, "shortcut differs: {raw:?}");
    let p = match verdict {
        PathVerdict::Forward(p) | PathVerdict::Redirect(p) => p,
        PathVerdict::Reject | PathVerdict::Ambiguous => return,
    };
    assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
    assert_eq!(
        normalize_request_path(&p, &rules),
        PathVerdict::Forward(p.clone()),
        "not idempotent: {raw:?}"
    );
    for seg in p.split('/') {
        assert!(seg != "." && seg != "..", "{raw:?} -> {p:?}");
    }
    if rules.path_with_escaped_slashes_action != EscapedSlashes::KeepUnchanged {
        let decoded = decoded_once(&p);
        let slashes = |b: &[u8]| b.iter().filter(|c| **c == b'/').count();
        assert_eq!(slashes(&decoded), slashes(p.as_bytes()), "{raw:?} -> {p:?}");
        assert!(!decoded.contains(&b'\\'), "{raw:?} -> {p:?}");
        for seg in decoded.split(|c| *c == b'/') {
            assert!(seg != b"." && seg != b"..", "{raw:?} -> {p:?}");
        }
    }
});
