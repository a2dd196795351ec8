//! The replay window: a bounded ring of recent request facts (never raw tokens), and
//! the evaluation of a candidate entry against it (`POST /replay` on the admin
//! listener, `tribune intention replay`).
//!
//! A fact is what decided the request: caller, method, normalized path, the headers
//! except token locations, `Authorization` and `Cookie`, and per provider the token
//! outcome (the claims of a verified token, the failure of others). The ring lives in
//! memory only (never written to disk or logs) and is bounded in entries
//! (`-replay-buffer N`, default 10 000, 0 disables) and in bytes
//! ([`MAX_REPLAY_BYTES`]); the oldest facts go first.
//!
//! Replaying evaluates the candidate's intentions on the recorded facts with the
//! enforcement engine's `decide`. A provider the sidecar did not verify at the time
//! (the candidate is the first to reference it) has no outcome in the window; each
//! fact also keeps, per token location (Envoy's defaults and every location of the
//! policy's providers), the unverified `iss` of the tokens found there, so such a
//! provider's token counts as present (taken as valid, without claims; the answer's
//! `Assumed` counts these requests) when one was at its locations and named its
//! issuer, and as missing otherwise. Path normalization is not replayed (the path was
//! normalized with the rules of its time).

use crate::shadow::ShadowStats;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tribune_authz::Caller;
use tribune_enforce::{Policy, PolicyDocument, Verdict, View};
use tribune_jwt::locate::{default_locations, extract, locations, Outcome};
use tribune_jwt::{unverified_issuer, JwtError};
use tribune_model::jwt_provider::JwtLocation;
use tribune_model::ConfigEntry;

/// Default number of facts kept.
pub const DEFAULT_REPLAY_ENTRIES: usize = 10_000;
/// Most bytes the facts of one ring may hold (their strings and claims).
pub const MAX_REPLAY_BYTES: usize = 16 << 20;

/// A token outcome without the token.
#[derive(Debug, Clone)]
enum Recorded {
    Missing,
    Invalid(JwtError),
    Valid(Arc<Value>),
}

/// One request, as decisions see it.
#[derive(Debug, Clone)]
pub struct Fact {
    caller: Option<String>,
    method: String,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    hide_underscores: bool,
    tokens: Vec<(String, Recorded)>,
    /// (location key, unverified `iss`) of every token found at a known location.
    hints: Vec<(String, Option<String>)>,
    live: Verdict,
    bytes: usize,
}

/// A token location as a comparable key.
fn location_key(l: &JwtLocation) -> String {
    match l {
        JwtLocation::Header(h) => format!("h:{}:{}", h.name.to_ascii_lowercase(), h.value_prefix),
        JwtLocation::QueryParam(q) => format!("q:{}", q.name),
        JwtLocation::Cookie(c) => format!("c:{}", c.name),
    }
}

fn json_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 8,
        Value::Array(a) => 16 + a.iter().map(json_size).sum::<usize>(),
        Value::Object(m) => 16 + m.iter().map(|(k, v)| k.len() + json_size(v)).sum::<usize>(),
        _ => 8,
    }
}

impl Fact {
    /// The fact of a decided request: `skip` names the headers not kept (token
    /// locations); `Authorization` and `Cookie` are never kept.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        caller: Option<&str>,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        query: Option<&str>,
        skip: &[HeaderName],
        hide_underscores: bool,
        policy: &Policy,
        outcomes: &[Outcome],
        live: Verdict,
    ) -> Fact {
        let kept: Vec<(HeaderName, HeaderValue)> = headers
            .iter()
            .filter(|(k, _)| {
                *k != hyper::header::AUTHORIZATION
                    && *k != hyper::header::COOKIE
                    && !skip.contains(k)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let tokens: Vec<(String, Recorded)> = policy
            .providers
            .iter()
            .zip(outcomes)
            .map(|(p, o)| {
                (
                    p.name.clone(),
                    match o {
                        Outcome::Missing => Recorded::Missing,
                        Outcome::Invalid(e) => Recorded::Invalid(e.clone()),
                        Outcome::Valid { payload, .. } => Recorded::Valid(payload.clone()),
                    },
                )
            })
            .collect();
        let view = View {
            headers,
            query,
            hide_underscores,
        };
        let mut specs: Vec<&JwtLocation> = default_locations().iter().collect();
        for p in &policy.providers {
            specs.extend(p.locations.iter());
        }
        let mut hints: Vec<(String, Option<String>)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for spec in specs {
            let key = location_key(spec);
            if seen.contains(&key) {
                continue;
            }
            for found in extract(std::slice::from_ref(spec), &view) {
                hints.push((key.clone(), unverified_issuer(&found.token)));
            }
            seen.push(key);
        }
        let bytes = 128
            + hints
                .iter()
                .map(|(k, i)| k.len() + i.as_ref().map_or(0, String::len) + 16)
                .sum::<usize>()
            + caller.map_or(0, str::len)
            + method.len()
            + path.len()
            + kept
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 16)
                .sum::<usize>()
            + tokens
                .iter()
                .map(|(n, r)| {
                    n.len()
                        + 16
                        + match r {
                            Recorded::Valid(v) => json_size(v),
                            _ => 0,
                        }
                })
                .sum::<usize>();
        Fact {
            caller: caller.map(str::to_string),
            method: method.to_string(),
            path: path.to_string(),
            headers: kept,
            hide_underscores,
            tokens,
            hints,
            live,
            bytes,
        }
    }

    /// Bytes this fact counts against the ring's bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

struct Inner {
    facts: VecDeque<Fact>,
    bytes: usize,
}

/// The ring of recent facts.
pub struct ReplayRing {
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

impl ReplayRing {
    pub fn new(capacity: usize, max_bytes: usize) -> ReplayRing {
        ReplayRing {
            capacity,
            max_bytes,
            inner: Mutex::new(Inner {
                facts: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    /// Whether facts are recorded at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Adds a fact, dropping the oldest beyond the bounds.
    pub fn push(&self, fact: Fact) {
        if !self.enabled() || fact.bytes > self.max_bytes {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.bytes += fact.bytes;
        inner.facts.push_back(fact);
        while inner.facts.len() > self.capacity || inner.bytes > self.max_bytes {
            match inner.facts.pop_front() {
                Some(old) => inner.bytes -= old.bytes,
                None => break,
            }
        }
    }

    /// `(facts, bytes)` held now.
    pub fn usage(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|i| (i.facts.len(), i.bytes))
            .unwrap_or((0, 0))
    }

    fn snapshot(&self) -> Vec<Fact> {
        self.inner
            .lock()
            .map(|i| i.facts.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The document `current` would be with `candidates` in place of the entries of
/// their kind and name (or added): the candidate entry and the providers it
/// references that the sidecar does not carry yet.
pub fn with_candidate(current: &PolicyDocument, candidates: Vec<ConfigEntry>) -> PolicyDocument {
    let same = |a: &ConfigEntry, b: &ConfigEntry| a.kind() == b.kind() && a.name() == b.name();
    let mut entries: Vec<ConfigEntry> = current
        .entries
        .iter()
        .filter(|e| !candidates.iter().any(|c| same(c, e)))
        .cloned()
        .collect();
    entries.extend(candidates);
    let refs: Vec<&ConfigEntry> = entries.iter().collect();
    let mut doc =
        PolicyDocument::for_service(&current.service, &current.protocol, current.default, &refs);
    doc.forwarding_headers = current.forwarding_headers.clone();
    doc
}

/// Whether the fact saw a token addressed to `p` (at its locations, naming its
/// issuer) that was not verified at the time.
fn token_named(fact: &Fact, p: &tribune_model::JwtProvider) -> bool {
    let keys: Vec<String> = locations(p).iter().map(location_key).collect();
    fact.hints.iter().any(|(k, iss)| {
        keys.contains(k) && (p.issuer.is_empty() || iss.as_deref() == Some(p.issuer.as_str()))
    })
}

/// Evaluates `candidate` on every fact of `ring`: `{"Requests", "Changed",
/// "Assumed", "Groups"}`.
pub fn replay(ring: &ReplayRing, candidate: &Policy) -> Value {
    let stats = ShadowStats::default();
    let mut assumed = 0u64;
    for fact in ring.snapshot() {
        let mut headers = HeaderMap::new();
        for (k, v) in &fact.headers {
            headers.append(k.clone(), v.clone());
        }
        let view = View {
            headers: &headers,
            query: None,
            hide_underscores: fact.hide_underscores,
        };
        let mut inferred = false;
        let outcomes: Vec<Outcome> = candidate
            .providers
            .iter()
            .map(|p| {
                let recorded = fact.tokens.iter().find(|(n, _)| *n == p.name);
                match recorded.map(|(_, r)| r) {
                    Some(Recorded::Valid(v)) => Outcome::Valid {
                        payload: v.clone(),
                        forward_header: None,
                    },
                    Some(Recorded::Invalid(e)) => Outcome::Invalid(e.clone()),
                    Some(Recorded::Missing) => Outcome::Missing,
                    None if token_named(&fact, p) => {
                        // Not verified at the time: a token at one of its locations
                        // named its issuer.
                        inferred = true;
                        let mut claims = serde_json::Map::new();
                        if !p.issuer.is_empty() {
                            claims.insert("iss".into(), Value::from(p.issuer.clone()));
                        }
                        Outcome::Valid {
                            payload: Arc::new(Value::Object(claims)),
                            forward_header: None,
                        }
                    }
                    None => Outcome::Missing,
                }
            })
            .collect();
        assumed += u64::from(inferred);
        let caller = fact.caller.as_deref().map(Caller::local);
        let decision = candidate.decide(caller, &fact.method, &fact.path, &view, &outcomes);
        let verdict = Verdict {
            allowed: decision.allowed(),
            status: tribune_authz::deny_response(&decision, &candidate.service)
                .map_or(200, |r| r.status),
            why: tribune_enforce::Why::Decided(decision.code()),
        };
        stats.record(
            fact.caller.as_deref(),
            &fact.method,
            &fact.path,
            fact.live,
            verdict,
        );
    }
    let mut v = stats.to_json();
    let mut out = serde_json::Map::new();
    out.insert("Requests".into(), v["Seen"].take());
    out.insert("Changed".into(), v["Changed"].take());
    out.insert("Assumed".into(), Value::from(assumed));
    out.insert("Groups".into(), v["Groups"].take());
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_authz::ReasonCode;

    fn fact(i: usize, header_bytes: usize) -> Fact {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-big",
            HeaderValue::from_str(&"v".repeat(header_bytes)).unwrap(),
        );
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer secret.token.here"),
        );
        headers.insert("cookie", HeaderValue::from_static("sid=secret"));
        let doc = PolicyDocument::from_json(&serde_json::json!({"Service": "api"})).unwrap();
        let policy = Policy::compile(&doc).unwrap();
        Fact::new(
            Some("web"),
            "GET",
            &format!("/items/{i}"),
            &headers,
            None,
            &[],
            false,
            &policy,
            &[],
            Verdict {
                allowed: true,
                status: 200,
                why: tribune_enforce::Why::Decided(ReasonCode::Intention),
            },
        )
    }

    #[test]
    fn the_ring_stays_within_its_entry_and_byte_bounds_over_100_000_requests() {
        let ring = ReplayRing::new(10_000, 4 << 20);
        let mut most = 0;
        for i in 0..100_000 {
            ring.push(fact(i, 200 + i % 1000));
            let (n, bytes) = ring.usage();
            assert!(n <= 10_000 && bytes <= 4 << 20, "{n} facts, {bytes} bytes");
            most = most.max(bytes);
        }
        let (n, _) = ring.usage();
        assert!(
            n > 1000,
            "the byte bound, not the entry bound, limits big facts: {n}"
        );
        assert!(most > 3 << 20, "the ring fills up to its bound: {most}");
        // Tokens and cookies are never kept.
        let kept = ring.snapshot();
        assert!(kept.iter().all(|f| f
            .headers
            .iter()
            .all(|(k, _)| k != "authorization" && k != "cookie")));
        assert_eq!(kept.last().map(|f| f.path.as_str()), Some("/items/99999"));
    }

    #[test]
    fn a_disabled_ring_keeps_nothing() {
        let ring = ReplayRing::new(0, MAX_REPLAY_BYTES);
        ring.push(fact(1, 10));
        assert_eq!(ring.usage(), (0, 0));
    }
}
