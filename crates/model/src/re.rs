//! Regular expressions written by users (intention `PathRegex`/`Regex` matchers and
//! `?filter=` `matches`), compiled with one set of bounds so that no pattern can cost
//! the process more than a known amount of memory or time.
//!
//! - RE2 syntax (the language Consul and Envoy take), byte-oriented and without
//!   Unicode tables: like RE2, `\w`, `\d`, `\s` and `\b` are ASCII, and Unicode
//!   classes (`\pL`) are refused. A literal non-ASCII character still matches its UTF-8
//!   bytes. Half the compile cost of the Unicode engine, and a fraction of its size
//!   (`(?i)\w{200}` is 13 MB with Unicode tables, a few KB without).
//! - The compiled program is at most `size_limit` bytes (the caller's budget), and the
//!   lazy DFA's cache at most [`DFA_SIZE_LIMIT`]; past that the search falls back to a
//!   slower engine, never to more memory.
//! - [`RegexCache`] compiles a pattern once and shares the program (a `Regex` clone
//!   shares it) among every caller that asks for the same pattern, within a bound on
//!   how many patterns it keeps.

use regex::bytes::{Regex, RegexBuilder};
use std::collections::HashMap;
use std::sync::Mutex;

/// The lazy DFA's cache bound for one regex (per search thread).
pub const DFA_SIZE_LIMIT: usize = 1 << 20;

/// Compiled size bound of one intention regex (`PathRegex`, a header's `Regex`).
pub const INTENTION_REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiled size bound of all the regexes of one `service-intentions` entry
/// together (a pattern used twice counts once: it is compiled once). A policy
/// document holds at most two such entries (the service's and `*`'s), so its
/// regexes stay within twice this. 4 000 `/rN[a-z]{3000}` permissions cost a
/// sidecar 614 MB before this bound (hardening round 3, item 6).
pub const ENTRY_REGEX_BUDGET: usize = 8 << 20;

/// Distinct regexes one `service-intentions` entry may hold.
pub const ENTRY_MAX_REGEXES: usize = 1024;

/// An intention regex as the sidecar compiles it: a full match of the path or value.
pub fn full_match(pattern: &str) -> Result<Regex, regex::Error> {
    bounded(&format!("^(?:{pattern})$"), INTENTION_REGEX_SIZE_LIMIT)
}

/// The compiled size (NFA bytes) of [`full_match`]'s program for `pattern`, or
/// `None` when it exceeds `budget`.
pub fn full_match_size(pattern: &str, budget: usize) -> Option<usize> {
    use regex_automata::nfa::thompson::NFA;
    use regex_automata::util::syntax;
    NFA::compiler()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(NFA::config().utf8(false).nfa_size_limit(Some(budget)))
        .build(&format!("^(?:{pattern})$"))
        .ok()
        .map(|nfa| nfa.memory_usage())
}

/// Compiles `pattern` (unanchored) within `size_limit` bytes of compiled program.
pub fn bounded(pattern: &str, size_limit: usize) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(size_limit)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        // RE2's default nesting bound; the parser is iterative past it anyway.
        .nest_limit(250)
        .build()
}

/// Compiled patterns shared by text, at most `capacity` of them (once full, the
/// oldest is dropped). Safe to share between threads.
pub struct RegexCache {
    size_limit: usize,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_pattern: HashMap<String, Regex>,
    /// Insertion order, oldest first (for eviction).
    order: std::collections::VecDeque<String>,
}

impl RegexCache {
    pub fn new(size_limit: usize, capacity: usize) -> Self {
        RegexCache {
            size_limit,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The compiled `pattern`: from the cache, or compiled now (and kept).
    pub fn get(&self, pattern: &str) -> Result<Regex, regex::Error> {
        if let Some(r) = self.lock().by_pattern.get(pattern) {
            return Ok(r.clone());
        }
        // Compiled without the lock held: other patterns are not held up.
        let r = bounded(pattern, self.size_limit)?;
        let mut inner = self.lock();
        if !inner.by_pattern.contains_key(pattern) {
            while inner.by_pattern.len() >= self.capacity {
                let Some(oldest) = inner.order.pop_front() else {
                    break;
                };
                inner.by_pattern.remove(&oldest);
            }
            inner.by_pattern.insert(pattern.to_string(), r.clone());
            inner.order.push_back(pattern.to_string());
        }
        Ok(r)
    }

    /// How many patterns are kept.
    pub fn len(&self) -> usize {
        self.lock().by_pattern.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_re2_like_and_bounded() {
        // ASCII classes, as RE2: compiles small.
        let r = bounded(r"(?i)\w{200}", 64 << 10).unwrap();
        assert!(r.is_match("a".repeat(200).as_bytes()));
        // Unicode classes are refused by name.
        assert!(bounded(r"\pL", 64 << 10).is_err());
        // A literal non-ASCII character matches its UTF-8 bytes.
        assert!(bounded("café", 64 << 10)
            .unwrap()
            .is_match("un café".as_bytes()));
        // Past the size budget: an error, not memory.
        let e = bounded(r"[a-z]{3000}[0-9]{3000}", 64 << 10).unwrap_err();
        assert!(e.to_string().contains("size limit"), "{e}");
    }

    #[test]
    fn a_full_match_size_is_counted_and_bounded() {
        let small = full_match_size("/api/[a-z]+", ENTRY_REGEX_BUDGET).unwrap();
        let big = full_match_size("/r[a-z]{3000}", ENTRY_REGEX_BUDGET).unwrap();
        assert!(small < 4096 && big > 50 * small, "{small} {big}");
        assert_eq!(full_match_size("/r[a-z]{3000}", big - 1), None);
    }

    #[test]
    fn the_cache_compiles_a_pattern_once_and_keeps_at_most_its_capacity() {
        let cache = RegexCache::new(64 << 10, 2);
        let a = cache.get("a+").unwrap();
        let again = cache.get("a+").unwrap();
        assert_eq!(a.as_str(), again.as_str());
        assert_eq!(cache.len(), 1);
        cache.get("b+").unwrap();
        cache.get("c+").unwrap();
        assert_eq!(cache.len(), 2, "the oldest pattern was dropped");
        assert!(cache.get("(").is_err());
        assert_eq!(cache.len(), 2, "a bad pattern is not kept");
    }
}
