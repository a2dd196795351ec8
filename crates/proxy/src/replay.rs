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
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tribune_authz::Caller;
use tribune_enforce::{Policy, PolicyDocument, Verdict, View};
use tribune_jwt::locate::{default_locations, extract, locations, Outcome};
use tribune_jwt::{unverified_issuer, Claims, JwtError};
use tribune_model::api::{ReplayResult, Truncated};
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
    /// A token at the provider's locations addressed to another issuer, or none.
    Stray(tribune_jwt::Stray),
    Invalid(JwtError),
    Valid(Arc<Claims>),
}

/// What the facts of one snapshot's requests are recorded with, computed once per
/// snapshot: the token locations to look at (Envoy's defaults and every location of
/// the policy's providers) and the providers' names and issuers.
#[derive(Debug, Default)]
pub struct Plan {
    specs: Vec<Spec>,
    /// Where any of `specs` could find a token: the header names, and whether the
    /// query or the `Cookie` header is read. A request with none of them (every
    /// request without credentials) has no hints, without a lookup per location.
    places: Places,
    names: Arc<Vec<String>>,
    issuers: IssuerMemo,
    /// Per provider, the bits of its locations in [`Places::present`] when each has
    /// a bit of its own (`None` otherwise): a provider that verified a token and has
    /// one of its locations in the request found it there, without a second look.
    provider_bits: Vec<Option<u64>>,
    /// The records of a request with no token for any provider (every 401 for a
    /// missing token), shared by the facts that have them instead of one box each.
    all_missing: Option<Arc<TokenRecords>>,
}

#[derive(Debug, Default)]
struct Places {
    headers: Vec<HeaderName>,
    query: bool,
    cookie: bool,
}

/// The bit of [`Places::present`] for the query, the `Cookie` header, and the one
/// that is always set (a header location past the first [`HEADER_BITS`] names, or
/// one whose name does not parse: looked up on every request that has any place).
const QUERY_BIT: u32 = 63;
const COOKIE_BIT: u32 = 62;
const ALWAYS_BIT: u32 = 61;
const HEADER_BITS: usize = 61;

impl Places {
    fn of(specs: &[Spec]) -> Places {
        let mut places = Places::default();
        for spec in specs {
            match &spec.location {
                JwtLocation::Header(h) => {
                    if let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) {
                        if !places.headers.contains(&name) {
                            places.headers.push(name);
                        }
                    }
                }
                JwtLocation::QueryParam(_) => places.query = true,
                JwtLocation::Cookie(_) => places.cookie = true,
            }
        }
        places
    }

    /// The bit of `location` in [`Places::present`].
    fn bit(&self, location: &JwtLocation) -> u32 {
        match location {
            JwtLocation::Header(h) => HeaderName::from_bytes(h.name.as_bytes())
                .ok()
                .and_then(|name| self.headers.iter().position(|n| *n == name))
                .filter(|&i| i < HEADER_BITS)
                .map_or(ALWAYS_BIT, |i| i as u32),
            JwtLocation::QueryParam(_) => QUERY_BIT,
            JwtLocation::Cookie(_) => COOKIE_BIT,
        }
    }

    /// Which places `headers` and `query` have (bit `i` for `self.headers[i]`, then
    /// [`COOKIE_BIT`], [`QUERY_BIT`] and, when any is there, [`ALWAYS_BIT`]); 0 for a
    /// request with none of them (every request without credentials).
    fn present(&self, headers: &HeaderMap, query: Option<&str>) -> u64 {
        let mut bits = 0u64;
        for (i, name) in self.headers.iter().enumerate() {
            if headers.contains_key(name) {
                bits |= 1 << i.min(ALWAYS_BIT as usize);
            }
        }
        if self.query && query.is_some_and(|q| !q.is_empty()) {
            bits |= 1 << QUERY_BIT;
        }
        if self.cookie && headers.contains_key(hyper::header::COOKIE) {
            bits |= 1 << COOKIE_BIT;
        }
        if bits != 0 {
            bits |= 1 << ALWAYS_BIT;
        }
        bits
    }
}

/// A token and its unverified `iss`.
type Remembered = (Arc<str>, Option<Arc<str>>);

/// Slots of [`IssuerMemo`].
const ISSUER_MEMO_SLOTS: usize = 64;

/// The unverified `iss` of tokens seen recently at locations no provider verified,
/// so that a token sent on every request is decoded once rather than per request
/// (the hint is the only thing read from such a token). Direct-mapped, at most
/// [`ISSUER_MEMO_SLOTS`] tokens, each compared in full (never by its hash alone);
/// in memory only, like the verified-token cache.
#[derive(Debug, Default)]
struct IssuerMemo {
    slots: Mutex<Vec<Option<Remembered>>>,
    hasher: foldhash::fast::RandomState,
}

impl IssuerMemo {
    fn issuer(&self, token: &str) -> Option<Arc<str>> {
        use std::hash::BuildHasher;
        let slot = (self.hasher.hash_one(token) as usize) % ISSUER_MEMO_SLOTS;
        if let Ok(slots) = self.slots.lock() {
            if let Some(Some((seen, iss))) = slots.get(slot) {
                if **seen == *token {
                    return iss.clone();
                }
            }
        }
        let iss: Option<Arc<str>> = unverified_issuer(token).map(Arc::from);
        if let Ok(mut slots) = self.slots.lock() {
            if slots.is_empty() {
                slots.resize(ISSUER_MEMO_SLOTS, None);
            }
            slots[slot] = Some((Arc::from(token), iss.clone()));
        }
        iss
    }
}

#[derive(Debug)]
struct Spec {
    location: JwtLocation,
    key: Arc<str>,
    /// The first provider (index) reading this location, and its issuer.
    provider: Option<(usize, Arc<str>)>,
    /// The location's bit in [`Places::present`] (set by [`Plan::new`]).
    bit: u32,
}

impl Plan {
    pub fn new(policy: &Policy) -> Plan {
        let mut specs: Vec<Spec> = Vec::new();
        let candidates = default_locations().iter().map(|l| (l, None)).chain(
            policy
                .providers
                .iter()
                .enumerate()
                .flat_map(|(i, p)| locations(p).iter().map(move |l| (l, Some((i, p))))),
        );
        for (location, provider) in candidates {
            let key = location_key(location);
            let provider = provider.map(|(i, p)| (i, Arc::<str>::from(p.issuer.as_str())));
            match specs.iter_mut().find(|s| *s.key == *key) {
                Some(s) => {
                    if s.provider.is_none() {
                        s.provider = provider;
                    }
                }
                None => specs.push(Spec {
                    location: location.clone(),
                    key: Arc::from(key),
                    provider,
                    bit: ALWAYS_BIT,
                }),
            }
        }
        let places = Places::of(&specs);
        for spec in &mut specs {
            spec.bit = places.bit(&spec.location);
        }
        let provider_bits = policy
            .providers
            .iter()
            .map(|p| {
                let mut mask = 0u64;
                for l in locations(p) {
                    let bit = places.bit(l);
                    if bit == ALWAYS_BIT || mask & (1 << bit) != 0 {
                        return None;
                    }
                    mask |= 1 << bit;
                }
                Some(mask)
            })
            .collect();
        let names = Arc::new(policy.providers.iter().map(|p| p.name.clone()).collect());
        let all_missing = match policy.providers.len() {
            0 => None,
            1 => Some(Records::One(Recorded::Missing)),
            n => Some(Records::Many(vec![Recorded::Missing; n])),
        }
        .map(|records| {
            Arc::new(TokenRecords {
                names: Arc::clone(&names),
                records,
            })
        });
        Plan {
            provider_bits,
            places,
            specs,
            names,
            issuers: IssuerMemo::default(),
            all_missing,
        }
    }
}

/// One request, as decisions see it: 64 bytes in the ring plus one buffer for its
/// strings (and, when the snapshot has providers, one for its token outcomes), never
/// pinning the connection's read buffers.
#[derive(Debug, Clone)]
pub struct Fact {
    /// The method, the normalized path, `name \0 value \0` for every kept header,
    /// then the hints ([`Fact::hints`]): one allocation.
    packed: Box<[u8]>,
    caller: Option<Arc<str>>,
    /// `None` when the snapshot had no providers; shared when no provider had a token
    /// ([`Plan`]'s `all_missing`).
    tokens: Option<Arc<TokenRecords>>,
    /// Where the path, the headers and the hints start in `packed`.
    path_at: u32,
    headers_at: u32,
    hints_at: u32,
    /// What this fact counts against the ring's byte bound.
    bytes: u32,
    live: Verdict,
    hide_underscores: bool,
}

/// A fact's token outcomes, one per provider, and the providers' names (shared by
/// the facts of one snapshot).
#[derive(Debug, Clone)]
struct TokenRecords {
    names: Arc<Vec<String>>,
    records: Records,
}

/// One provider (the usual case) is kept without an allocation of its own.
#[derive(Debug, Clone)]
enum Records {
    One(Recorded),
    Many(Vec<Recorded>),
}

impl Records {
    fn as_slice(&self) -> &[Recorded] {
        match self {
            Records::One(r) => std::slice::from_ref(r),
            Records::Many(v) => v,
        }
    }
}

/// Appends a length-prefixed string to a fact's buffer.
fn put(packed: &mut Vec<u8>, s: &[u8]) {
    // Hint strings are header names, prefixes and issuers: far below 4 GiB.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    packed.extend_from_slice(&len.to_le_bytes());
    packed.extend_from_slice(&s[..len as usize]);
}

/// Reads a string written by [`put`] from the front of `rest`.
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let s = tail.get(..len)?;
    *rest = &tail[len..];
    Some(s)
}

/// A string of a fact's buffer (written from a `&str` whole: never fails).
fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// Offsets into a fact's buffer (a request head is far below 4 GiB).
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A token location as a comparable key.
fn location_key(l: &JwtLocation) -> String {
    match l {
        JwtLocation::Header(h) => format!("h:{}:{}", h.name.to_ascii_lowercase(), h.value_prefix),
        JwtLocation::QueryParam(q) => format!("q:{}", q.name),
        JwtLocation::Cookie(c) => format!("c:{}", c.name),
    }
}

/// A hint of a fact: a token location's key and the issuer its token names.
type Hint<'a> = (&'a str, Option<Arc<str>>);

/// Whether a token is at `location` (without copying it when the location is a
/// header).
fn token_at(places: &Places, spec: &Spec, view: &View<'_>) -> bool {
    match &spec.location {
        // The name parsed once per snapshot; hidden as `View` hides it.
        JwtLocation::Header(h) if spec.bit < ALWAYS_BIT => {
            !(view.hide_underscores && h.name.contains('_'))
                && view
                    .headers
                    .get_all(&places.headers[spec.bit as usize])
                    .iter()
                    .any(|v| tribune_jwt::locate::holds_token(v.as_bytes(), &h.value_prefix))
        }
        JwtLocation::Header(h) => tribune_jwt::locate::RequestParts::header_values(view, &h.name)
            .iter()
            .any(|v| tribune_jwt::locate::holds_token(v, &h.value_prefix)),
        other => !extract(std::slice::from_ref(other), view).is_empty(),
    }
}

impl Fact {
    /// The fact of a decided request: `skip` names the headers not kept (token
    /// locations); `Authorization` and `Cookie` are never kept.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: &Plan,
        caller: Option<&Arc<str>>,
        method: &hyper::Method,
        path: &str,
        headers: &HeaderMap,
        query: Option<&str>,
        skip: &[HeaderName],
        hide_underscores: bool,
        outcomes: &[Outcome],
        live: Verdict,
    ) -> Fact {
        let kept = || {
            headers.iter().filter(|(k, _)| {
                *k != hyper::header::AUTHORIZATION
                    && *k != hyper::header::COOKIE
                    && !skip.contains(k)
            })
        };
        let view = View {
            headers,
            query,
            hide_underscores,
            authorization: None,
        };
        // The hints first, so that the buffer is sized once; only the token places
        // the request has are looked at (none for a request without credentials).
        let present = plan.places.present(headers, query);
        let mut hints: SmallVec<[Hint<'_>; 2]> = SmallVec::new();
        for spec in plan.specs.iter().filter(|s| present & (1 << s.bit) != 0) {
            match &spec.provider {
                // A provider that verified the request's tokens read this location:
                // a token here named its issuer (no decoding needed). When this is
                // the only one of its locations the request has, the token was here.
                Some((i, iss)) if matches!(outcomes.get(*i), Some(Outcome::Valid { .. })) => {
                    let only_place = plan
                        .provider_bits
                        .get(*i)
                        .copied()
                        .flatten()
                        .is_some_and(|mask| (present & mask).count_ones() == 1);
                    if only_place || token_at(&plan.places, spec, &view) {
                        hints.push((&spec.key, Some(iss.clone())));
                    }
                }
                _ => {
                    for found in extract(std::slice::from_ref(&spec.location), &view) {
                        hints.push((&spec.key, plan.issuers.issuer(&found.token)));
                    }
                }
            }
        }
        // One allocation per fact for its method, path, headers and hints.
        let kept: SmallVec<[(&HeaderName, &HeaderValue); 8]> = kept().collect();
        let method = method.as_str().as_bytes();
        let size = method.len()
            + path.len()
            + kept
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 2)
                .sum::<usize>()
            + hints
                .iter()
                .map(|(k, iss)| 4 + k.len() + 1 + iss.as_ref().map_or(0, |i| 4 + i.len()))
                .sum::<usize>();
        let mut packed: Vec<u8> = Vec::with_capacity(size);
        packed.extend_from_slice(method);
        packed.extend_from_slice(path.as_bytes());
        for (k, v) in &kept {
            packed.extend_from_slice(k.as_str().as_bytes());
            packed.push(0);
            packed.extend_from_slice(v.as_bytes());
            packed.push(0);
        }
        let hints_at = packed.len();
        for (key, iss) in &hints {
            put(&mut packed, key.as_bytes());
            match iss {
                Some(iss) => {
                    packed.push(1);
                    put(&mut packed, iss.as_bytes());
                }
                None => packed.push(0),
            }
        }
        let record = |o: &Outcome| match o {
            Outcome::Missing => Recorded::Missing,
            Outcome::Stray(s) => Recorded::Stray(s.clone()),
            Outcome::Invalid(e) => Recorded::Invalid(e.clone()),
            Outcome::Valid { payload, .. } => Recorded::Valid(payload.clone()),
        };
        let (tokens, token_bytes) = if outcomes.iter().all(|o| matches!(o, Outcome::Missing)) {
            // Shared with every such fact of the snapshot: nothing of its own.
            (plan.all_missing.clone(), 0)
        } else {
            let records = match outcomes {
                [one] => Records::One(record(one)),
                many => Records::Many(many.iter().map(record).collect()),
            };
            let bytes = std::mem::size_of::<TokenRecords>()
                + records
                    .as_slice()
                    .iter()
                    .map(|r| {
                        std::mem::size_of::<Recorded>()
                            + match r {
                                Recorded::Valid(v) => v.size(),
                                Recorded::Stray(tribune_jwt::Stray::OtherIssuer(Some(s)))
                                | Recorded::Stray(tribune_jwt::Stray::Elsewhere(s)) => s.len(),
                                _ => 0,
                            }
                    })
                    .sum::<usize>();
            let records = Arc::new(TokenRecords {
                names: plan.names.clone(),
                records,
            });
            (Some(records), bytes)
        };
        let bytes = std::mem::size_of::<Fact>() + packed.len() + token_bytes;
        Fact {
            packed: packed.into_boxed_slice(),
            caller: caller.cloned(),
            tokens,
            path_at: offset(method.len()),
            headers_at: offset(method.len() + path.len()),
            hints_at: offset(hints_at),
            bytes: offset(bytes),
            live,
            hide_underscores,
        }
    }

    /// Bytes this fact counts against the ring's bound.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// A part of the buffer.
    fn text(&self, from: u32, to: u32) -> &str {
        utf8(
            self.packed
                .get(from as usize..to as usize)
                .unwrap_or_default(),
        )
    }

    fn method(&self) -> &str {
        self.text(0, self.path_at)
    }

    /// The normalized path the live policy decided on.
    fn path(&self) -> &str {
        self.text(self.path_at, self.headers_at)
    }

    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        let headers = self
            .packed
            .get(self.headers_at as usize..self.hints_at as usize)
            .unwrap_or_default();
        if headers.is_empty() {
            return map;
        }
        let mut parts = headers.split(|b| *b == 0);
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k), HeaderValue::from_bytes(v)) {
                map.append(k, v);
            }
        }
        map
    }

    /// (location key, unverified `iss`) of every token found at a known location.
    fn hints(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        let mut rest = self
            .packed
            .get(self.hints_at as usize..)
            .unwrap_or_default();
        std::iter::from_fn(move || {
            let key = take(&mut rest)?;
            let (named, tail) = rest.split_first()?;
            rest = tail;
            let iss = match named {
                1 => Some(take(&mut rest)?),
                _ => None,
            };
            // Written from `&str`s whole.
            Some((utf8(key), iss.map(utf8)))
        })
    }

    fn outcome_of(&self, provider: &str) -> Option<&Recorded> {
        let tokens = self.tokens.as_ref()?;
        tokens
            .names
            .iter()
            .position(|n| n == provider)
            .and_then(|i| tokens.records.as_slice().get(i))
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

    /// Adds a fact, dropping the oldest beyond the bounds. The ring's storage grows
    /// by doubling up to exactly its entry bound, never past it: a full ring cycles
    /// through every slot it has, so each slot beyond the bound would stay resident.
    pub fn push(&self, fact: Fact) {
        let size = fact.bytes();
        if !self.enabled() || size > self.max_bytes {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        while inner.facts.len() >= self.capacity || inner.bytes + size > self.max_bytes {
            match inner.facts.pop_front() {
                Some(old) => inner.bytes -= old.bytes(),
                None => break,
            }
        }
        let (len, room) = (inner.facts.len(), inner.facts.capacity());
        if len == room {
            let want = (room * 2).clamp(16, self.capacity);
            inner.facts.reserve_exact(want - len);
        }
        inner.bytes += size;
        inner.facts.push_back(fact);
    }

    /// `(facts, bytes)` held now.
    pub fn usage(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|i| (i.facts.len(), i.bytes))
            .unwrap_or((0, 0))
    }

    /// Facts the ring's storage has room for now.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.inner.lock().map(|i| i.facts.capacity()).unwrap_or(0)
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
    fact.hints().any(|(k, iss)| {
        keys.iter().any(|key| key == k) && (p.issuer.is_empty() || iss == Some(p.issuer.as_str()))
    })
}

/// Evaluates `candidate` on every fact of `ring`: `{"Requests", "Changed",
/// "Assumed", "Groups"}`.
pub fn replay(ring: &ReplayRing, candidate: &Policy) -> ReplayResult {
    replay_within(ring, candidate, REPLAY_BUDGET)
}

/// Longest one replay runs (`POST /replay`): past it the answer covers the facts
/// replayed so far, newest last, and says so (`Truncated`, `Replayed` of `Recorded`).
pub const REPLAY_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// [`replay`] within `budget` of wall time (checked every 64 facts).
pub fn replay_within(
    ring: &ReplayRing,
    candidate: &Policy,
    budget: std::time::Duration,
) -> ReplayResult {
    let stats = ShadowStats::default();
    let mut assumed = 0u64;
    let facts = ring.snapshot();
    let recorded = facts.len();
    let started = std::time::Instant::now();
    let mut replayed = 0usize;
    for fact in facts {
        if replayed % 64 == 0 && replayed > 0 && started.elapsed() > budget {
            break;
        }
        replayed += 1;
        let headers = fact.header_map();
        let view = View {
            headers: &headers,
            query: None,
            hide_underscores: fact.hide_underscores,
            authorization: None,
        };
        let mut inferred = false;
        let outcomes: Vec<Outcome> = candidate
            .providers
            .iter()
            .map(|p| {
                match fact.outcome_of(&p.name) {
                    Some(Recorded::Valid(v)) => Outcome::Valid {
                        payload: v.clone(),
                        forward_header: None,
                    },
                    Some(Recorded::Invalid(e)) => Outcome::Invalid(e.clone()),
                    Some(Recorded::Missing) => Outcome::Missing,
                    Some(Recorded::Stray(s)) => Outcome::Stray(s.clone()),
                    None if token_named(&fact, p) => {
                        // Not verified at the time: a token at one of its locations
                        // named its issuer.
                        inferred = true;
                        let mut claims = serde_json::Map::new();
                        if !p.issuer.is_empty() {
                            claims.insert("iss".into(), Value::from(p.issuer.clone()));
                        }
                        Outcome::Valid {
                            payload: Arc::new(Claims::from_object(&claims)),
                            forward_header: None,
                        }
                    }
                    None => Outcome::Missing,
                }
            })
            .collect();
        assumed += u64::from(inferred);
        let caller = fact.caller.as_deref().map(Caller::local);
        let decision = candidate.decide(caller, fact.method(), fact.path(), &view, &outcomes);
        let verdict = Verdict {
            allowed: decision.allowed(),
            status: tribune_authz::deny_response(&decision, &candidate.service)
                .map_or(200, |r| r.status),
            why: tribune_enforce::Why::Decided(decision.code()),
        };
        stats.record(
            fact.caller.as_deref(),
            fact.method(),
            fact.path(),
            fact.live,
            verdict,
        );
    }
    let counters = stats.counters();
    ReplayResult {
        requests: counters.seen,
        changed: counters.changed,
        assumed,
        groups: counters.groups,
        truncated: (replayed < recorded).then_some(Truncated {
            truncated: true,
            replayed: replayed as u64,
            recorded: recorded as u64,
        }),
    }
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
        let plan = Plan::new(&policy);
        let caller: Arc<str> = Arc::from("web");
        Fact::new(
            &plan,
            Some(&caller),
            &hyper::Method::GET,
            &format!("/items/{i}"),
            &headers,
            None,
            &[],
            false,
            &[],
            Verdict {
                allowed: true,
                status: 200,
                why: tribune_enforce::Why::Decided(ReasonCode::Intention),
            },
        )
    }

    /// The memo answers every token with its own issuer, also when tokens share a
    /// slot (300 tokens over 64 slots, each asked twice, interleaved).
    #[test]
    fn the_issuer_memo_answers_each_token_with_its_own_issuer() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = |i: usize| {
            let payload = if i % 7 == 0 {
                r#"{"sub":"no-iss"}"#.to_string()
            } else {
                format!(r#"{{"iss":"https://idp-{i}.example"}}"#)
            };
            format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64(&payload))
        };
        let memo = IssuerMemo::default();
        for round in 0..2 {
            for i in 0..300 {
                let t = token(i);
                let want = unverified_issuer(&t);
                assert_eq!(
                    memo.issuer(&t).as_deref(),
                    want.as_deref(),
                    "token {i}, round {round}"
                );
            }
        }
        assert_eq!(memo.issuer("not-a-token"), None);
    }

    #[test]
    fn the_ring_stays_within_its_entry_and_byte_bounds_over_100_000_requests() {
        let ring = ReplayRing::new(10_000, 4 << 20);
        let mut most = 0;
        for i in 0..100_000 {
            ring.push(fact(i, 200 + i % 1000));
            let (n, bytes) = ring.usage();
            assert!(n <= 10_000 && bytes <= 4 << 20, "{n} facts, {bytes} bytes");
            assert!(ring.slots() <= 10_000, "storage for {} facts", ring.slots());
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
        assert!(kept.iter().all(|f| {
            let h = f.header_map();
            !h.contains_key("authorization") && !h.contains_key("cookie") && h.contains_key("x-big")
        }));
        assert_eq!(kept.last().map(|f| f.path()), Some("/items/99999"));
    }

    /// The default window holds 10 000 facts: each is 64 bytes in the ring, and a
    /// full ring's storage is exactly its bound (it cycles through every slot).
    #[test]
    fn a_fact_takes_64_bytes_in_the_ring_and_a_full_ring_no_more_slots_than_its_bound() {
        assert!(
            std::mem::size_of::<Fact>() <= 64,
            "{} bytes",
            std::mem::size_of::<Fact>()
        );
        let ring = ReplayRing::new(1000, MAX_REPLAY_BYTES);
        for i in 0..5000 {
            ring.push(fact(i, 10));
        }
        assert_eq!(ring.usage().0, 1000);
        assert_eq!(ring.slots(), 1000);
        let one = fact(7, 10);
        assert_eq!(one.method(), "GET");
        assert_eq!(one.path(), "/items/7");
        // The method and path, `x-big` with its value, and the hint of the (not a
        // JWT) bearer token: its location and no issuer.
        let hint = 4 + "h:authorization:Bearer ".len() + 1;
        assert_eq!(
            one.bytes(),
            64 + "GET/items/7".len() + "x-big".len() + 12 + hint
        );
    }

    /// Tokens at known locations leave their location and unverified issuer, read
    /// back in order; a fact without tokens has none.
    #[test]
    fn a_fact_keeps_the_location_and_issuer_of_each_token_it_saw() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = |payload: &str| format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64(payload));
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", token(r#"{"iss":"https://idp"}"#)))
                .unwrap(),
        );
        let doc = PolicyDocument::from_json(&serde_json::json!({"Service": "api"})).unwrap();
        let plan = Plan::new(&Policy::compile(&doc).unwrap());
        let live = Verdict {
            allowed: true,
            status: 200,
            why: tribune_enforce::Why::Decided(ReasonCode::Intention),
        };
        let query = format!("access_token={}", token(r#"{"sub":"x"}"#));
        let seen = Fact::new(
            &plan,
            None,
            &hyper::Method::POST,
            "/p",
            &headers,
            Some(&query),
            &[],
            false,
            &[],
            live,
        );
        let hints: Vec<(String, Option<String>)> = seen
            .hints()
            .map(|(k, i)| (k.to_owned(), i.map(str::to_owned)))
            .collect();
        assert_eq!(
            hints,
            vec![
                (
                    "h:authorization:Bearer ".to_owned(),
                    Some("https://idp".to_owned())
                ),
                ("q:access_token".to_owned(), None),
            ]
        );
        assert_eq!((seen.method(), seen.path()), ("POST", "/p"));
        assert!(seen.header_map().is_empty(), "Authorization is never kept");
        let plain = Fact::new(
            &plan,
            None,
            &hyper::Method::GET,
            "/",
            &HeaderMap::new(),
            None,
            &[],
            false,
            &[],
            live,
        );
        assert_eq!(plain.hints().count(), 0);
    }

    /// Hardening round 3, item 10: a replay has a time budget; past it the answer
    /// covers what was replayed and says so.
    #[test]
    fn a_replay_stops_at_its_budget_and_says_so() {
        let doc = PolicyDocument::from_json(&serde_json::json!({"Service": "api"})).unwrap();
        let policy = Policy::compile(&doc).unwrap();
        let ring = ReplayRing::new(1000, MAX_REPLAY_BYTES);
        for i in 0..300 {
            ring.push(fact(i, 10));
        }
        // The wire shape: `Truncated`, `Replayed` and `Recorded` beside the counts.
        let all = serde_json::to_value(replay_within(
            &ring,
            &policy,
            std::time::Duration::from_secs(60),
        ))
        .unwrap();
        assert_eq!(all["Requests"], 300);
        assert!(all.get("Truncated").is_none());
        let cut =
            serde_json::to_value(replay_within(&ring, &policy, std::time::Duration::ZERO)).unwrap();
        assert_eq!(cut["Truncated"], true);
        assert_eq!(
            (cut["Replayed"].as_u64(), cut["Recorded"].as_u64()),
            (Some(64), Some(300))
        );
        assert_eq!(cut["Requests"], 64);
    }

    #[test]
    fn a_disabled_ring_keeps_nothing() {
        let ring = ReplayRing::new(0, MAX_REPLAY_BYTES);
        ring.push(fact(1, 10));
        assert_eq!(ring.usage(), (0, 0));
    }
}
