//! Verified-token cache (decisions.md #7), one per provider verifier.
//!
//! - Keyed by the whole token (compared in full; no hash collision can map one
//!   token onto another's result); bucketed with foldhash.
//! - Only successes are cached; `exp` and `nbf` are re-checked on every hit.
//! - Bounded: at most `capacity` entries, oldest inserted evicted first.
//! - A new key set means a new [`CachedVerifier`], so results never outlive the keys
//!   that produced them.

use crate::{JwtError, Verifier};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// Entries when `CacheConfig.Size` is 0 or absent.
pub const DEFAULT_CACHE_SIZE: usize = 1024;

struct Entry {
    payload: Arc<Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

type Map64<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

/// A verifier with a cache of verified tokens in front of it.
pub struct CachedVerifier {
    verifier: Verifier,
    skew: i64,
    capacity: usize,
    entries: RwLock<Map64<Entry>>,
    order: Mutex<VecDeque<Arc<str>>>,
}

fn time_claim(p: &Value, name: &str) -> Option<i64> {
    p.get(name)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

impl CachedVerifier {
    /// `size` is the provider's `CacheConfig.Size` (0 = [`DEFAULT_CACHE_SIZE`]).
    pub fn new(verifier: Verifier, skew: i64, size: usize) -> Self {
        let capacity = if size == 0 { DEFAULT_CACHE_SIZE } else { size };
        CachedVerifier {
            verifier,
            skew,
            capacity,
            entries: RwLock::new(Map64::default()),
            order: Mutex::new(VecDeque::new()),
        }
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Verifies `token` at `now`, from the cache when it was verified before.
    /// The payload is a JSON object.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Value>, JwtError> {
        self.verify_counting(token, now).0
    }

    /// [`Self::verify`], also telling whether the cache answered (`true` = hit).
    pub fn verify_counting(&self, token: &str, now: i64) -> (Result<Arc<Value>, JwtError>, bool) {
        match self.lookup(token, now) {
            Some(result) => (result, true),
            None => (self.verify_and_cache(token, now), false),
        }
    }

    /// The cached result for `token` at `now` (expiry re-checked), or `None` when the
    /// token is not cached.
    pub fn lookup(&self, token: &str, now: i64) -> Option<Result<Arc<Value>, JwtError>> {
        let map = self.entries.read().ok()?;
        let e = map.get(token)?;
        if e.exp.is_some_and(|exp| now > exp.saturating_add(self.skew)) {
            return Some(Err(JwtError::Expired));
        }
        if e.nbf.is_some_and(|nbf| now.saturating_add(self.skew) < nbf) {
            return Some(Err(JwtError::NotYetValid));
        }
        Some(Ok(e.payload.clone()))
    }

    /// Verifies `token` without looking in the cache first (for callers that just
    /// missed in [`Self::lookup`]) and caches a success.
    pub fn verify_and_cache(&self, token: &str, now: i64) -> Result<Arc<Value>, JwtError> {
        self.verify_parsed_and_cache(token, self.verifier.parse(token)?, now)
    }

    /// [`Self::verify_and_cache`] for `token` already parsed (as `jws`).
    pub fn verify_parsed_and_cache(
        &self,
        token: &str,
        jws: crate::Jws<'_>,
        now: i64,
    ) -> Result<Arc<Value>, JwtError> {
        let payload = Arc::new(Value::Object(self.verifier.verify_parsed(jws, now)?));
        let entry = Entry {
            exp: time_claim(&payload, "exp"),
            nbf: time_claim(&payload, "nbf"),
            payload: payload.clone(),
        };
        let key: Arc<str> = Arc::from(token);
        if let (Ok(mut map), Ok(mut order)) = (self.entries.write(), self.order.lock()) {
            if map.insert(key.clone(), entry).is_none() {
                order.push_back(key);
                while order.len() > self.capacity {
                    if let Some(old) = order.pop_front() {
                        map.remove(&old);
                    }
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
