//! Verified-token cache (decisions.md #7), one per provider verifier.
//!
//! - Keyed by the whole token (compared in full; no hash collision can map one
//!   token onto another's result); bucketed by a seeded foldhash of the token's
//!   length and signature tail ([`CachedVerifier`]'s `hash`).
//! - Only successes are cached; `exp` and `nbf` are re-checked on every hit.
//! - Bounded: at most `capacity` entries, oldest inserted evicted first.
//! - Admitted on second sight once full (TinyLFU's doorkeeper, as Caffeine and moka
//!   admit): while there is room every verified token is kept; once the cache is full
//!   a token is kept only when it was verified before, recently. Tokens seen once
//!   (a stream of distinct tokens, 10 000 clients each sending one request) then cost
//!   no insert and no eviction, and never push out the tokens that are being reused.
//! - A new key set means a new [`CachedVerifier`], so results never outlive the keys
//!   that produced them.

use crate::Claims;
use crate::{JwtError, Times, Verifier};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Entries when `CacheConfig.Size` is 0 or absent.
pub const DEFAULT_CACHE_SIZE: usize = 1024;

/// Bytes at the end of a token that its bucket is chosen by.
const HASHED_TAIL: usize = 32;

/// The most slots a doorkeeper has (8 bytes each).
const DOORKEEPER_SLOTS: usize = 4096;

/// The hashes of tokens verified recently and not kept, one per slot (direct
/// mapped: a later token in the same slot replaces the earlier one, so "recently"
/// means within about as many distinct tokens as there are slots).
struct Doorkeeper {
    slots: Box<[AtomicU64]>,
}

impl Doorkeeper {
    fn new(capacity: usize) -> Doorkeeper {
        let n = capacity.clamp(1, DOORKEEPER_SLOTS);
        Doorkeeper {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether the token with `hash` was seen recently; marks it seen.
    fn seen_before(&self, hash: u64) -> bool {
        let slot = &self.slots[(hash % self.slots.len() as u64) as usize];
        slot.swap(hash, Ordering::Relaxed) == hash
    }
}

struct Cached {
    token: Arc<str>,
    payload: Arc<Claims>,
    times: Times,
}

/// A verifier with a cache of verified tokens in front of it.
pub struct CachedVerifier {
    verifier: Verifier,
    skew: i64,
    capacity: usize,
    hasher: foldhash::fast::RandomState,
    entries: RwLock<HashTable<Cached>>,
    /// Insertion order, with each token's hash (eviction finds the entry without
    /// hashing again).
    order: Mutex<VecDeque<(u64, Arc<str>)>>,
    /// The cache has been full: new tokens are admitted on second sight.
    full: AtomicBool,
    doorkeeper: Doorkeeper,
}

impl CachedVerifier {
    /// `size` is the provider's `CacheConfig.Size` (0 = [`DEFAULT_CACHE_SIZE`]).
    pub fn new(verifier: Verifier, skew: i64, size: usize) -> Self {
        let capacity = if size == 0 { DEFAULT_CACHE_SIZE } else { size };
        CachedVerifier {
            verifier,
            skew,
            capacity,
            hasher: foldhash::fast::RandomState::default(),
            entries: RwLock::new(HashTable::new()),
            order: Mutex::new(VecDeque::new()),
            full: AtomicBool::new(false),
            doorkeeper: Doorkeeper::new(capacity),
        }
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The bucket of `token`: its length and its last [`HASHED_TAIL`] bytes, which
    /// lie in the signature of a compact JWS (itself a digest of the rest), with
    /// a per-cache random seed. Entries are found by comparing the whole token, so
    /// the hash only spreads them; only verified tokens are ever inserted, so no
    /// one can fill a bucket without the issuer signing for it.
    fn hash(&self, bytes: &[u8]) -> u64 {
        let tail = &bytes[bytes.len().saturating_sub(HASHED_TAIL)..];
        self.hasher.hash_one((bytes.len(), tail))
    }

    /// Verifies `token` at `now`, from the cache when it was verified before.
    /// The payload is a JSON object.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Claims>, JwtError> {
        self.verify_counting(token, now).0
    }

    /// [`Self::verify`], also telling whether the cache answered (`true` = hit).
    pub fn verify_counting(&self, token: &str, now: i64) -> (Result<Arc<Claims>, JwtError>, bool) {
        match self.lookup(token.as_bytes(), now) {
            Some(result) => (result, true),
            None => (self.verify_and_cache(token, now), false),
        }
    }

    /// The cached result for `token` at `now` (expiry re-checked), or `None` when the
    /// token is not cached. Only tokens that verified are cached, so bytes found here
    /// are a compact JWS: base64url and two dots.
    pub fn lookup(&self, token: &[u8], now: i64) -> Option<Result<Arc<Claims>, JwtError>> {
        let map = self.entries.read().ok()?;
        let e = map.find(self.hash(token), |e| e.token.as_bytes() == token)?;
        if e.times
            .exp
            .is_some_and(|exp| now > exp.saturating_add(self.skew))
        {
            return Some(Err(JwtError::Expired));
        }
        if e.times
            .nbf
            .is_some_and(|nbf| now.saturating_add(self.skew) < nbf)
        {
            return Some(Err(JwtError::NotYetValid));
        }
        Some(Ok(e.payload.clone()))
    }

    /// Verifies `token` without looking in the cache first (for callers that just
    /// missed in [`Self::lookup`]) and caches a success.
    pub fn verify_and_cache(&self, token: &str, now: i64) -> Result<Arc<Claims>, JwtError> {
        self.verify_parsed_and_cache(token, self.verifier.parse(token)?, now)
    }

    /// [`Self::verify_and_cache`] for `token` already parsed (as `jws`).
    pub fn verify_parsed_and_cache(
        &self,
        token: &str,
        jws: crate::Jws<'_>,
        now: i64,
    ) -> Result<Arc<Claims>, JwtError> {
        let (payload, times) = self.verifier.verify_parsed_timed(jws, now)?;
        let payload = Arc::new(payload);
        let hash = self.hash(token.as_bytes());
        if self.full.load(Ordering::Relaxed) && !self.doorkeeper.seen_before(hash) {
            return Ok(payload);
        }
        let (Ok(mut map), Ok(mut order)) = (self.entries.write(), self.order.lock()) else {
            return Ok(payload);
        };
        let Entry::Vacant(slot) = map.entry(
            hash,
            |e| *e.token == *token,
            |e| self.hash(e.token.as_bytes()),
        ) else {
            return Ok(payload);
        };
        let token: Arc<str> = Arc::from(token);
        slot.insert(Cached {
            token: token.clone(),
            payload: payload.clone(),
            times,
        });
        order.push_back((hash, token));
        if order.len() >= self.capacity {
            self.full.store(true, Ordering::Relaxed);
        }
        while order.len() > self.capacity {
            if let Some((old_hash, old)) = order.pop_front() {
                if let Ok(found) = map.find_entry(old_hash, |e| Arc::ptr_eq(&e.token, &old)) {
                    found.remove();
                }
            }
        }
        Ok(payload)
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
