//! Path normalization before matching (decisions.md #15, the CVE-2024-10005 class):
//! `/admin` must not be reachable as `/./admin`, `/a/../admin` or `/%61dmin`.
//!
//! Steps, in order: drop the query and fragment; percent-decode unreserved characters
//! (RFC 3986 §2.3: ALPHA DIGIT `-` `.` `_` `~`) and upper-case the hex digits of the
//! escapes that stay (so `%2f` and `%2F` compare equal; `%2F` is *not* decoded, like
//! Envoy's default); optionally merge repeated slashes; remove dot segments
//! (RFC 3986 §5.2.4); make sure the result starts with `/`.

/// Normalizes a request target's path for matching.
pub fn normalize_path(raw: &str, merge_slashes: bool) -> String {
    let path = &raw[..raw.find(['?', '#']).unwrap_or(raw.len())];
    if is_normal(path, merge_slashes) {
        return path.to_string();
    }
    normalize_slow(path, merge_slashes)
}

/// Whether `path` is already normalized: it starts with `/` and has no escape, no
/// dot segment and (when merging) no repeated slash. One pass over the bytes; most
/// request paths take this way.
fn is_normal(path: &str, merge_slashes: bool) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    b.windows(2).all(|w| {
        w[0] != b'%' && !(w[0] == b'/' && (w[1] == b'.' || (merge_slashes && w[1] == b'/')))
    }) && b.last() != Some(&b'%')
}

/// The full normalization of a path without query or fragment.
fn normalize_slow(path: &str, merge_slashes: bool) -> String {
    let decoded = decode_unreserved(path);
    let merged = if merge_slashes {
        merge_repeated_slashes(&decoded)
    } else {
        decoded
    };
    let mut out = remove_dot_segments(&merged);
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                let c = h * 16 + l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c);
                } else {
                    out.push(b'%');
                    out.push(b[i + 1].to_ascii_uppercase());
                    out.push(b[i + 2].to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII bytes were replaced by ASCII bytes, so UTF-8 stays valid.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn merge_repeated_slashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_slash = false;
    for c in s.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    out
}

/// RFC 3986 §5.2.4 `remove_dot_segments`.
fn remove_dot_segments(input: &str) -> String {
    let mut input = input;
    let mut output: Vec<&str> = Vec::new();
    // Work on segments: each output element is "/seg" (or "seg" at the very start).
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            output.pop();
        } else if input == "/.." {
            input = "/";
            output.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let seg_end = input[start..]
                .find('/')
                .map(|i| i + start)
                .unwrap_or(input.len());
            output.push(&input[..seg_end]);
            input = &input[seg_end..];
        }
    }
    output.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_agrees_with_the_full_normalization() {
        // Every path over a small alphabet up to length 5, both slash modes.
        let alphabet = ["/", ".", "a", "%", "2", "f", "?", "#"];
        let mut paths = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        for p in &paths {
            for merge in [false, true] {
                let end = p.find(['?', '#']).unwrap_or(p.len());
                assert_eq!(
                    normalize_path(p, merge),
                    normalize_slow(&p[..end], merge),
                    "{p:?} merge={merge}"
                );
            }
        }
    }

    #[test]
    fn bypass_attempts_normalize_to_the_protected_path() {
        for (raw, want) in [
            ("/admin", "/admin"),
            ("/./admin", "/admin"),
            ("/a/../admin", "/admin"),
            ("/a/b/../../admin", "/admin"),
            ("/../admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%2e/admin", "/admin"),
            ("/%2E%2E/admin", "/admin"),
            ("/x/%2e%2e/admin", "/admin"),
            ("/admin?debug=1", "/admin"),
            ("/admin#frag", "/admin"),
            ("/admin/.", "/admin/"),
            ("/admin/..", "/"),
            ("", "/"),
            ("admin", "/admin"),
        ] {
            assert_eq!(normalize_path(raw, false), want, "{raw}");
        }
    }

    #[test]
    fn reserved_escapes_stay_encoded_in_upper_case() {
        assert_eq!(normalize_path("/a%2fb", false), "/a%2Fb");
        assert_eq!(normalize_path("/a%2Fb/../c", false), "/c");
        assert_eq!(normalize_path("/caf%c3%a9", false), "/caf%C3%A9");
        assert_eq!(normalize_path("/bad%zz", false), "/bad%zz");
        assert_eq!(normalize_path("/trail%", false), "/trail%");
    }

    #[test]
    fn slashes_merge_only_when_asked() {
        assert_eq!(normalize_path("//admin", false), "//admin");
        assert_eq!(normalize_path("//admin", true), "/admin");
        assert_eq!(normalize_path("/a//b///c", true), "/a/b/c");
    }
}
