//! Path normalization under every mesh setting, with its invariants: the result is a
//! fixed point, starts with `/`, never climbs above the root, and (unless the entry
//! keeps escapes or turns normalization off) decoded once it has the same separators
//! and no dot segment, so a decoding upstream sees the path that was authorized.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_authz::{normalize_request_path, PathVerdict};
use tribune_model::mesh::{EscapedSlashes, RequestNormalization};

fn decode_once(p: &str) -> Vec<u8> {
    let b = p.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

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
    let p = match normalize_request_path(raw, &rules) {
        PathVerdict::Forward(p) | PathVerdict::Redirect(p) => p,
        PathVerdict::Reject => return,
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
        let decoded = decode_once(&p);
        let slashes = |b: &[u8]| b.iter().filter(|c| **c == b'/').count();
        assert_eq!(slashes(&decoded), slashes(p.as_bytes()), "{raw:?} -> {p:?}");
        assert!(!decoded.contains(&b'\\'), "{raw:?} -> {p:?}");
        for seg in decoded.split(|c| *c == b'/') {
            assert!(seg != b"." && seg != b"..", "{raw:?} -> {p:?}");
        }
    }
});
