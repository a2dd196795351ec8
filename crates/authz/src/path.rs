//! Path normalization before matching (decisions.md #15, the CVE-2024-10005 class):
//! `/admin` must not be reachable as `/./admin`, `/a/../admin` or `/%61dmin`.
//!
//! Steps, in order: drop the query and fragment; percent-decode unreserved characters
//! (RFC 3986 §2.3: ALPHA DIGIT `-` `.` `_` `~`) and upper-case the hex digits of the
//! escapes that stay (so `%2f` and `%2F` compare equal; `%2F` is *not* decoded, like
//! Envoy's default); optionally merge repeated slashes; remove dot segments
//! (RFC 3986 §5.2.4); make sure the result starts with `/`.
//!
//! [`normalize_request_path`] wraps these steps with the `mesh` entry's choices:
//! escaped separators rejected (the default), kept, or unescaped; backslashes as
//! separators; normalization off only when the entry says `Insecure...`.

use std::borrow::Cow;
use tribune_model::mesh::{EscapedSlashes, RequestNormalization};

/// What the proxy does with a request's path (decisions.md #17, the `mesh` entry's
/// `HTTP.Incoming.RequestNormalization`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathVerdict {
    /// Decide on this path and forward exactly this path.
    Forward(String),
    /// `UNESCAPE_AND_REDIRECT`: answer 307 with this path as `Location`.
    Redirect(String),
    /// The path holds an escaped separator (`%2F`, `%5C`, any case) and the action is
    /// to reject (Tribune's default): answer 400.
    Reject,
    /// Under the default action, the path holds what another server reads as a
    /// traversal this one does not see: a dot segment with a `;` parameter (`/..;/`,
    /// `/.;/`: Tomcat, Jetty and Spring strip parameters before removing dot segments,
    /// Apache Shiro CVE-2020-1957), or a double-encoded dot or separator (`%252e`,
    /// `%252f`, `%255c`: a service that decodes twice). Answer 400.
    Ambiguous,
}

/// The path a request is decided on and forwarded with. Invariant (tested): unless
/// `KEEP_UNCHANGED` or `InsecureDisablePathNormalization` says otherwise, the
/// forwarded path has no escaped separator, no dot segment even after one more
/// round of percent-decoding, and normalizing it again changes nothing, so an
/// upstream that decodes it once sees the path that was authorized.
pub fn normalize_request_path(raw: &str, rules: &RequestNormalization) -> PathVerdict {
    match already_normal(raw, rules) {
        Some(path) => PathVerdict::Forward(path.to_string()),
        None => normalize_in_full(raw, rules),
    }
}

/// [`normalize_request_path`] without its [`already_normal`] shortcut (the same
/// verdict for every path): for a caller that has tried `already_normal` first, so
/// that the path is not scanned twice.
pub fn normalize_in_full(raw: &str, rules: &RequestNormalization) -> PathVerdict {
    let path = &raw[..raw.find(['?', '#']).unwrap_or(raw.len())];
    if !rules.insecure_disable_path_normalization && !path.contains(['%', '\\', ';']) {
        // Most paths: no escape, no backslash; only dot segments and slashes to check.
        return PathVerdict::Forward(normalize_path(path, rules.merge_slashes));
    }
    let action = rules.path_with_escaped_slashes_action;
    let rejecting = matches!(
        action,
        EscapedSlashes::Default | EscapedSlashes::RejectRequest
    );
    let mut path: Cow<'_, str> = Cow::Borrowed(path);
    let mut unescaped = false;
    if has_escaped_separator(&path) {
        match action {
            EscapedSlashes::Default | EscapedSlashes::RejectRequest => return PathVerdict::Reject,
            EscapedSlashes::KeepUnchanged => {}
            EscapedSlashes::UnescapeAndRedirect | EscapedSlashes::UnescapeAndForward => {
                path = Cow::Owned(unescape_separators(&path));
                unescaped = true;
            }
        }
    }
    let out = if rules.insecure_disable_path_normalization {
        if rules.merge_slashes {
            merge_repeated_slashes(&path)
        } else {
            path.into_owned()
        }
    } else if path.contains('\\') {
        // Like Envoy's normalize_path: a backslash is a separator.
        normalize_path(&path.replace('\\', "/"), rules.merge_slashes)
    } else {
        normalize_path(&path, rules.merge_slashes)
    };
    // Checked on the result: normalizing can make an escape (`%2%46` is `%252F`).
    if rejecting && !rules.insecure_disable_path_normalization && is_ambiguous(&out) {
        return PathVerdict::Ambiguous;
    }
    if unescaped && action == EscapedSlashes::UnescapeAndRedirect {
        PathVerdict::Redirect(out)
    } else {
        PathVerdict::Forward(out)
    }
}

/// The path of `raw` when [`normalize_request_path`] would forward it unchanged
/// (most request paths: see [`plain_normal`]), borrowed; `None` when it would
/// change, refuse or redirect it, or when the rules turn normalization off.
pub fn already_normal<'a>(raw: &'a str, rules: &RequestNormalization) -> Option<&'a str> {
    if rules.insecure_disable_path_normalization {
        return None;
    }
    plain_normal(raw, rules.merge_slashes).map(|end| &raw[..end])
}

/// Where the path of `raw` ends (`?`, `#` or its end) when it is already normal and
/// holds nothing the rules act on (no escape, backslash or dot segment, no repeated
/// slash when merging): most request paths, found in one pass over the bytes.
fn plain_normal(raw: &str, merge_slashes: bool) -> Option<usize> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return None;
    }
    let mut prev = 0u8;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'?' | b'#' => return Some(i),
            b'%' | b'\\' => return None,
            b'.' if prev == b'/' => return None,
            b'/' if merge_slashes && prev == b'/' => return None,
            _ => {}
        }
        prev = c;
    }
    Some(b.len())
}

/// The bytes a decoding upstream sees for `path`: every valid escape decoded once.
/// The invariant of [`normalize_request_path`] is stated over this (tests, fuzzing).
pub fn decoded_once(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
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

/// On a normalized path (it starts with `/`, has no `\`, and `%2e` is `.`): a
/// segment that is `.` or `..` followed by `;`, or `%25` followed by `2e`, `2f` or
/// `5c` (any case). See [`PathVerdict::Ambiguous`].
fn is_ambiguous(normalized: &str) -> bool {
    let double_encoded = normalized.as_bytes().windows(5).any(|w| {
        w[..3] == *b"%25" && matches!((w[3], w[4] | 0x20), (b'2', b'e' | b'f') | (b'5', b'c'))
    });
    double_encoded
        || normalized
            .split('/')
            .any(|segment| segment.starts_with(".;") || segment.starts_with("..;"))
}

/// `%2F`, `%2f`, `%5C` or `%5c` anywhere in `path`.
fn has_escaped_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && ((w[1] == b'2' && w[2] | 0x20 == b'f') || (w[1] == b'5' && w[2] | 0x20 == b'c'))
    })
}

/// Decodes `%2F`/`%5C` (any case) to `/` and `\`, leaving every other escape.
fn unescape_separators(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let (h, l) = (b[i + 1], b[i + 2] | 0x20);
            if h == b'2' && l == b'f' {
                out.push('/');
                i += 3;
                continue;
            }
            if h == b'5' && l == b'c' {
                out.push('\\');
                i += 3;
                continue;
            }
        }
        // Escapes are ASCII, so slicing by byte stays on character boundaries here.
        let next = path[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&path[i..i + next]);
        i += next;
    }
    out
}

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

/// Decodes escapes of unreserved characters and upper-cases the others. A `%` that
/// starts no valid escape becomes `%25`: left alone, decoding its neighbours could
/// assemble a new escape (`%2%46` -> `%2F`), which a decoding upstream would then
/// read as a separator the intentions never saw (found by the `path` fuzz target).
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
            out.extend_from_slice(b"%25");
            i += 1;
            continue;
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
        let alphabet = ["/", ".", "a", "%", "2", "f", "?", "#", "\\"];
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
                // The request path's one-pass check takes only paths the full
                // normalization leaves as they are.
                if let Some(plain) = plain_normal(p, merge) {
                    assert_eq!(plain, end, "{p:?}");
                    assert_eq!(normalize_slow(&p[..end], merge), p[..end], "{p:?}");
                }
                // The shortcut the sidecar takes on its own and the full verdict agree.
                for action in EscapedSlashes::ALL {
                    let rules = RequestNormalization {
                        merge_slashes: merge,
                        path_with_escaped_slashes_action: action,
                        ..Default::default()
                    };
                    assert_eq!(
                        normalize_in_full(p, &rules),
                        normalize_request_path(p, &rules),
                        "{p:?} merge={merge} {action:?}"
                    );
                }
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
        // A `%` that starts no escape is itself escaped, so nothing can be assembled.
        assert_eq!(normalize_path("/bad%zz", false), "/bad%25zz");
        assert_eq!(normalize_path("/trail%", false), "/trail%25");
        assert_eq!(normalize_path("/a%2%46b", false), "/a%252Fb");
        assert_eq!(normalize_path("/a%%32%66b", false), "/a%252fb");
    }

    fn rules(action: EscapedSlashes) -> RequestNormalization {
        RequestNormalization {
            path_with_escaped_slashes_action: action,
            ..Default::default()
        }
    }

    #[test]
    fn escaped_separators_follow_the_mesh_action() {
        use EscapedSlashes::*;
        use PathVerdict::*;
        let fwd = |p: &str| Forward(p.to_string());
        for (raw, action, want) in [
            // Tribune's default (and REJECT_REQUEST): 400 for every spelling.
            ("/public/..%2Fadmin/secret.txt", Default, Reject),
            ("/public/..%2fadmin", Default, Reject),
            ("/public/..%5Cadmin", Default, Reject),
            ("/public/%2e%2e%2fadmin", Default, Reject),
            ("/a%5cb", RejectRequest, Reject),
            // Kept: still escaped (upper-cased), never decoded.
            (
                "/public/..%2fadmin",
                KeepUnchanged,
                fwd("/public/..%2Fadmin"),
            ),
            // Unescaped first, then normalized: the traversal is resolved before
            // matching, so `/admin` rules see `/admin`.
            (
                "/public/..%2Fadmin/secret.txt",
                UnescapeAndForward,
                fwd("/admin/secret.txt"),
            ),
            ("/public/%2e%2e%5cadmin", UnescapeAndForward, fwd("/admin")),
            ("/a%2Fb", UnescapeAndRedirect, Redirect("/a/b".into())),
            // No escaped separator: no redirect.
            ("/a/b", UnescapeAndRedirect, fwd("/a/b")),
            // Backslashes are separators (decisions.md #17).
            ("/value\\supersecret", Default, fwd("/value/supersecret")),
            ("/a\\..\\admin", Default, fwd("/admin")),
            // A literal percent sign stays a literal...
            ("/a%2541", Default, fwd("/a%2541")),
            ("/100%25", Default, fwd("/100%25")),
            // ...but not before an encoded dot or separator (a service that decodes
            // twice would see a traversal): 400 under the default action.
            ("/a%252Fb", Default, Ambiguous),
            ("/public/%252e%252e/admin", Default, Ambiguous),
            ("/public/%252E%252E%252Finternal", RejectRequest, Ambiguous),
            ("/public/%255c", Default, Ambiguous),
            // Dot segments with a parameter (Shiro CVE-2020-1957).
            ("/public/..;/admin", Default, Ambiguous),
            ("/public/.;/admin", Default, Ambiguous),
            ("/public/%2e%2E;x=1/admin", Default, Ambiguous),
            ("/public\\..;\\admin", Default, Ambiguous),
            ("..;/admin", Default, Ambiguous),
            // Parameters elsewhere are ordinary bytes.
            ("/public/a;b/c", Default, fwd("/public/a;b/c")),
            ("/public/...;/c", Default, fwd("/public/...;/c")),
            ("/public/.a;/c", Default, fwd("/public/.a;/c")),
            // Other actions keep their meaning (the operator chose them).
            ("/a%252Fb", KeepUnchanged, fwd("/a%252Fb")),
            (
                "/public/..;/admin",
                UnescapeAndForward,
                fwd("/public/..;/admin"),
            ),
        ] {
            assert_eq!(
                normalize_request_path(raw, &rules(action)),
                want,
                "{raw} {action:?}"
            );
        }
        let off = RequestNormalization {
            insecure_disable_path_normalization: true,
            path_with_escaped_slashes_action: KeepUnchanged,
            ..RequestNormalization::default()
        };
        assert_eq!(normalize_request_path("/a/../b", &off), fwd("/a/../b"));
    }

    #[test]
    fn the_forwarded_path_decoded_once_is_the_authorized_path() {
        // Every path of up to four pieces over separators, dots and their escapes.
        let pieces = [
            "/", ".", "a", "%2F", "%2f", "%5C", "%2e", "%2E", "\\", "%25", "%61", "//", "%2",
            "%46", "%",
        ];
        let mut paths = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|p| pieces.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        for action in [
            EscapedSlashes::Default,
            EscapedSlashes::RejectRequest,
            EscapedSlashes::UnescapeAndForward,
            EscapedSlashes::UnescapeAndRedirect,
        ] {
            for merge in [false, true] {
                let r = RequestNormalization {
                    merge_slashes: merge,
                    ..rules(action)
                };
                for raw in &paths {
                    let p = match normalize_request_path(raw, &r) {
                        PathVerdict::Forward(p) | PathVerdict::Redirect(p) => p,
                        PathVerdict::Reject => {
                            assert!(has_escaped_separator(raw), "{raw:?} rejected");
                            continue;
                        }
                        PathVerdict::Ambiguous => continue,
                    };
                    assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
                    assert!(
                        !has_escaped_separator(&p) && !p.contains('\\'),
                        "{raw:?} -> {p:?}"
                    );
                    assert_eq!(
                        normalize_request_path(&p, &r),
                        PathVerdict::Forward(p.clone()),
                        "idempotent: {raw:?}"
                    );
                    let decoded = decoded_once(&p);
                    let slashes = |b: &[u8]| b.iter().filter(|c| **c == b'/').count();
                    assert_eq!(slashes(&decoded), slashes(p.as_bytes()), "{raw:?} -> {p:?}");
                    for seg in decoded.split(|c| *c == b'/') {
                        assert!(seg != b"." && seg != b"..", "{raw:?} -> {p:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn slashes_merge_only_when_asked() {
        assert_eq!(normalize_path("//admin", false), "//admin");
        assert_eq!(normalize_path("//admin", true), "/admin");
        assert_eq!(normalize_path("/a//b///c", true), "/a/b/c");
    }
}
