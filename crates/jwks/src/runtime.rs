//! One provider's keys at run time, and its verified-token cache: what the sidecar
//! verifies every request's tokens with, and what the agent's explain, check and
//! `intention test` verify with (the one owner of key sources).
//!
//! - Inline key sets (`Local.JWKS`) are parsed once.
//! - File key sets (`Local.Filename`) are read at start and re-read when the file's
//!   modification time or size changes (checked every second).
//! - Remote key sets go through [`RemoteKeys`]: refreshed after `CacheDuration`, one
//!   rate-limited refetch when a token names an unknown `kid`, the last good keys kept
//!   within a bound. With `FetchAsynchronously = true` requests that arrive before the
//!   first fetch fail closed instead of waiting for it (decisions.md #6).
//!
//! A new key set gets a new [`CachedVerifier`], so cached results never outlive the
//! keys that produced them.

use crate::{FetchPolicy, RemoteKeys};
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use tribune_jwt::Claims;
use tribune_jwt::JwtCode;
use tribune_jwt::{unverified_kid, CachedVerifier, Jwks, JwtError, Verifier};
use tribune_model::jwt_provider::{JsonWebKeySet, LocalJwks};
use tribune_model::JwtProvider;

/// Token outcomes per provider (`jwt_verifications_total{outcome}`): slot 0 is
/// `valid`, slot `1 + code` each [`JwtCode`] (`missing` among them).
pub const OUTCOME_SLOTS: usize = 1 + JwtCode::ALL.len();

/// The slot of a token outcome in [`ProviderRuntime::outcomes`].
pub fn outcome_slot(failure: Option<JwtCode>) -> usize {
    failure.map_or(0, |c| 1 + c as usize)
}

/// The label of an outcome slot.
pub fn outcome_label(slot: usize) -> &'static str {
    match slot {
        0 => "valid",
        n => JwtCode::ALL.get(n - 1).map_or("unknown", |c| c.as_str()),
    }
}

/// How often a `Local.Filename` key set is checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(1);

enum Source {
    Inline,
    File {
        path: String,
        seen: Mutex<Option<(SystemTime, u64)>>,
    },
    Remote(Arc<RemoteKeys>),
}

/// A configured provider with its current keys.
pub struct ProviderRuntime {
    pub provider: JwtProvider,
    source: Source,
    current: ArcSwapOption<CachedVerifier>,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Token outcomes, indexed by [`outcome_slot`].
    pub outcomes: [AtomicU64; OUTCOME_SLOTS],
}

impl std::fmt::Debug for ProviderRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRuntime")
            .field("provider", &self.provider.name)
            .finish()
    }
}

fn file_stamp(path: &str) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl ProviderRuntime {
    /// Builds the runtime; key sets that cannot be loaded leave it without keys (every
    /// token then fails closed) and the reason is logged.
    pub fn new(provider: &JwtProvider) -> Result<Arc<Self>, String> {
        let source = match &provider.json_web_key_set {
            JsonWebKeySet::Local(LocalJwks::Inline(_)) => Source::Inline,
            JsonWebKeySet::Local(LocalJwks::Filename(f)) => Source::File {
                path: f.clone(),
                seen: Mutex::new(None),
            },
            JsonWebKeySet::Remote(r) => {
                let mut policy = FetchPolicy::from_remote(r);
                policy.issuer = provider.issuer.clone();
                Source::Remote(Arc::new(RemoteKeys::new(policy)?))
            }
        };
        let rt = Arc::new(ProviderRuntime {
            provider: provider.clone(),
            source,
            current: ArcSwapOption::empty(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            outcomes: Default::default(),
        });
        match &rt.source {
            Source::Inline => {
                match provider
                    .json_web_key_set
                    .inline_json()
                    .map(|j| Jwks::parse(&j))
                {
                    Some(Ok(jwks)) => {
                        rt.install(Arc::new(jwks));
                    }
                    Some(Err(e)) => {
                        tracing::error!(provider = %provider.name, error = %e, "inline JWKS unusable; tokens fail closed")
                    }
                    None => {
                        tracing::error!(provider = %provider.name, "inline JWKS is not base64; tokens fail closed")
                    }
                }
            }
            Source::File { .. } => rt.reload_file(),
            Source::Remote(_) => {}
        }
        Ok(rt)
    }

    /// The remote key set, when the provider has one.
    pub fn remote(&self) -> Option<&Arc<RemoteKeys>> {
        match &self.source {
            Source::Remote(r) => Some(r),
            _ => None,
        }
    }

    fn fetch_asynchronously(&self) -> bool {
        matches!(&self.provider.json_web_key_set, JsonWebKeySet::Remote(r) if r.fetch_asynchronously)
    }

    /// What the sidecar reports about this provider: its key source, the keys in use
    /// (kid, kty, alg), and for a remote key set the fetch health.
    pub fn health(&self) -> tribune_model::status::ProviderHealth {
        use tribune_model::status::{KeySummary, ProviderHealth};
        let raw: Option<Vec<u8>> = match &self.source {
            Source::Inline => self.provider.json_web_key_set.inline_json(),
            Source::File { path, .. } => std::fs::read(path).ok(),
            Source::Remote(r) => r.last_good().map(|(raw, _)| raw.to_vec()),
        };
        let keys = raw
            .and_then(|b| Jwks::inspect(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|k| k.problem.is_none())
            .map(|k| KeySummary {
                kid: k.kid,
                kty: k.kty,
                alg: k
                    .alg
                    .or_else(|| (k.algs.len() == 1).then(|| k.algs[0].to_string())),
            })
            .collect();
        let mut h = ProviderHealth {
            name: self.provider.name.clone(),
            source: match &self.source {
                Source::Inline => "inline".to_string(),
                Source::File { path, .. } => format!("file {path}"),
                Source::Remote(r) => format!("remote {}", r.policy().uri),
            },
            keys,
            ..ProviderHealth::default()
        };
        if let Source::Remote(r) = &self.source {
            let s = &r.stats;
            h.fetches_ok = s.ok.load(Ordering::Relaxed);
            h.fetches_failed = s.failed.load(Ordering::Relaxed);
            h.unknown_kid_refetches = s.unknown_kid_refetches.load(Ordering::Relaxed);
            h.last_fetch = Some(s.last_ok.load(Ordering::Relaxed)).filter(|t| *t > 0);
            if let Some((at, e)) = s.last_error.lock().ok().and_then(|g| g.clone()) {
                h.last_error = Some(e);
                h.last_error_at = Some(at);
            }
        }
        h
    }

    /// Whether the provider has keys now.
    pub fn has_keys(&self) -> bool {
        self.current.load().is_some()
    }

    fn install(&self, keys: Arc<Jwks>) -> Arc<CachedVerifier> {
        for w in &keys.warnings {
            tracing::warn!(provider = %self.provider.name, warning = %w, "JWKS key skipped");
        }
        let verifier = Verifier::new(&self.provider, keys);
        let size = self
            .provider
            .cache_config
            .as_ref()
            .map(|c| c.size.max(0) as usize)
            .unwrap_or(0);
        let cached = Arc::new(CachedVerifier::new(
            verifier,
            self.provider.clock_skew_seconds.max(0),
            size,
        ));
        self.current.store(Some(cached.clone()));
        cached
    }

    fn verifier_with(&self, keys: Arc<Jwks>) -> Arc<CachedVerifier> {
        if let Some(v) = self.current.load_full() {
            if Arc::ptr_eq(v.verifier().keys(), &keys) {
                return v;
            }
        }
        self.install(keys)
    }

    /// Re-reads a `Local.Filename` key set if the file changed since the last read.
    fn reload_file(&self) {
        let Source::File { path, seen } = &self.source else {
            return;
        };
        let stamp = file_stamp(path);
        let Ok(mut seen) = seen.lock() else { return };
        if stamp.is_some() && *seen == stamp {
            return;
        }
        *seen = stamp;
        match std::fs::read(path)
            .map_err(|e| format!("cannot read {path}: {e}"))
            .and_then(|b| Jwks::parse(&b).map_err(|e| e.to_string()))
        {
            Ok(jwks) => {
                tracing::info!(provider = %self.provider.name, path = %path, "JWKS file loaded");
                self.install(Arc::new(jwks));
            }
            Err(e) => {
                // Keep the last good keys: a half-written file must not lock users out.
                tracing::error!(provider = %self.provider.name, error = %e, "JWKS file unusable; keeping the previous keys")
            }
        }
    }

    /// Starts a remote key set from keys an earlier run fetched `age` ago (used until a
    /// fetch succeeds, within the usual staleness bounds).
    pub fn seed_remote(&self, raw: &[u8], age: Duration) -> Result<(), String> {
        let Source::Remote(r) = &self.source else {
            return Ok(());
        };
        let keys = r.seed(raw, age)?;
        self.verifier_with(keys);
        Ok(())
    }

    /// Before serving: fetch a remote key set unless `FetchAsynchronously` (then the
    /// fetch runs in the background). File key sets start being watched.
    pub async fn prepare(self: &Arc<Self>) {
        match &self.source {
            Source::Remote(r) => {
                let r = r.clone();
                let me = Arc::downgrade(self);
                if self.fetch_asynchronously() {
                    // Serve at once; keep trying in the background until keys arrive.
                    tokio::spawn(async move {
                        let mut pause = Duration::from_millis(500);
                        loop {
                            match r.refresh().await {
                                Ok(keys) => {
                                    if let Some(me) = me.upgrade() {
                                        me.verifier_with(keys);
                                    }
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!(uri = %r.policy().uri, error = %e, "JWKS fetch failed; tokens fail closed until keys arrive");
                                }
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(30));
                            if me.strong_count() == 0 {
                                break;
                            }
                        }
                    });
                } else {
                    match r.refresh().await {
                        Ok(keys) => {
                            self.verifier_with(keys);
                        }
                        Err(e) => {
                            tracing::warn!(uri = %r.policy().uri, error = %e, "JWKS fetch failed; requests will retry it")
                        }
                    }
                }
            }
            Source::File { .. } => {
                let me: Weak<Self> = Arc::downgrade(self);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(FILE_POLL).await;
                        match me.upgrade() {
                            Some(rt) => rt.reload_file(),
                            None => break,
                        }
                    }
                });
            }
            Source::Inline => {}
        }
    }

    /// Routes and verifies one token: `None` when it is not addressed to this provider
    /// (its unverified `iss` names another issuer), else the verification result. A
    /// token found in the cache was addressed here when it verified, so a hit needs no
    /// routing parse; a miss is verified without a second lookup. A remote key set is
    /// refreshed when stale and refetched (rate-limited) when the `kid` is unknown.
    pub async fn check(&self, token: &str, now: i64) -> Option<Result<Arc<Claims>, JwtError>> {
        let current = self.current.load_full().filter(|_| self.keys_fresh());
        if let Some(hit) = current
            .as_ref()
            .and_then(|v| v.lookup(token.as_bytes(), now))
        {
            self.count(true);
            return Some(hit);
        }
        // Decoded once: its unverified `iss` routes it, then the same parse is verified.
        let parsed = current.as_ref().map(|v| v.verifier().parse(token));
        if !self.provider.issuer.is_empty() {
            let iss = match &parsed {
                Some(Ok(jws)) => jws.payload.str("iss"),
                _ => tribune_jwt::unverified_issuer(token).map(std::borrow::Cow::Owned),
            };
            if iss.as_deref() != Some(self.provider.issuer.as_str()) {
                return None;
            }
        }
        self.count(false);
        if let (Some(v), Some(parsed)) = (current, parsed) {
            let result = parsed.and_then(|jws| v.verify_parsed_and_cache(token, jws, now));
            if !matches!(result, Err(JwtError::UnknownKey)) || self.remote().is_none() {
                return Some(result);
            }
        }
        let Source::Remote(r) = &self.source else {
            return Some(Err(JwtError::KeysUnavailable));
        };
        if self.fetch_asynchronously() && r.cached().is_none() {
            return Some(Err(JwtError::KeysUnavailable));
        }
        // Boxed: the fetch is the rare path, and its future (an HTTP client's) would
        // otherwise be carried, unused, inside every request's future.
        Some(
            match Box::pin(r.keys_for(unverified_kid(token).as_deref())).await {
                Ok(keys) => self.verifier_with(keys).verify_and_cache(token, now),
                Err(e) => Err(e),
            },
        )
    }

    /// The cache's result for `token` (counted as a hit), or `None` when it is not
    /// cached under the current keys (then [`Self::check`] routes and verifies it).
    pub fn cached(&self, token: &[u8], now: i64) -> Option<Result<Arc<Claims>, JwtError>> {
        if !self.keys_fresh() {
            return None;
        }
        let hit = self.current.load().as_ref()?.lookup(token, now)?;
        self.count(true);
        Some(hit)
    }

    fn keys_fresh(&self) -> bool {
        match &self.source {
            Source::Remote(r) => r.is_fresh(),
            _ => true,
        }
    }

    fn count(&self, hit: bool) {
        let c = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one provider outcome (for metrics).
pub fn count_outcome(rt: &ProviderRuntime, outcome: &tribune_jwt::locate::Outcome) {
    use tribune_jwt::locate::Outcome;
    let failure = match outcome {
        // Another issuer's token is none of this provider's: missing, for it.
        Outcome::Missing
        | Outcome::Stray(tribune_jwt::Stray::OtherIssuer(_) | tribune_jwt::Stray::Elsewhere(_)) => {
            Some(JwtCode::Missing)
        }
        Outcome::Stray(tribune_jwt::Stray::Malformed(_)) => Some(JwtCode::Malformed),
        Outcome::Valid { .. } => None,
        Outcome::Invalid(e) => Some(e.code()),
    };
    rt.outcomes[outcome_slot(failure)].fetch_add(1, Ordering::Relaxed);
}

/// The runtimes of a policy's providers, in [`tribune_enforce::Policy::providers`]
/// order: the enforcement engine verifies provider `i` with runtime `i`.
#[derive(Clone, Copy)]
pub struct Runtimes<'a>(pub &'a [Arc<ProviderRuntime>]);

impl tribune_enforce::Verify for Runtimes<'_> {
    fn check(
        &self,
        provider: usize,
        token: &str,
        now: i64,
    ) -> impl std::future::Future<Output = Option<Result<Arc<Claims>, JwtError>>> + Send {
        let rt = self.0.get(provider);
        async move {
            match rt {
                Some(rt) => rt.check(token, now).await,
                None => Some(Err(JwtError::KeysUnavailable)),
            }
        }
    }

    fn cached(
        &self,
        provider: usize,
        token: &[u8],
        now: i64,
    ) -> Option<Result<Arc<Claims>, JwtError>> {
        self.0.get(provider)?.cached(token, now)
    }
}

/// Provider runtimes by provider entry (name and content: a staged candidate of a
/// provider runs beside the live one), kept with their fetched keys and caches while
/// the entry is unchanged.
#[derive(Default)]
pub struct Registry {
    runtimes: Mutex<HashMap<String, Arc<ProviderRuntime>>>,
}

impl Registry {
    /// The runtimes of `providers`, in order, and those of them that are new (they
    /// still need [`ProviderRuntime::prepare`]).
    #[allow(clippy::type_complexity)]
    pub fn runtimes(
        &self,
        providers: &[tribune_model::JwtProvider],
    ) -> Result<(Vec<Arc<ProviderRuntime>>, Vec<Arc<ProviderRuntime>>), String> {
        let mut known = self
            .runtimes
            .lock()
            .map_err(|_| "provider registry poisoned".to_string())?;
        let mut fresh = Vec::new();
        let mut out = Vec::with_capacity(providers.len());
        for p in providers {
            let key = registry_key(p);
            let rt = match known.get(&key) {
                Some(rt) if rt.provider == *p => rt.clone(),
                _ => {
                    let rt = ProviderRuntime::new(p)
                        .map_err(|e| format!("jwt-provider {}: {e}", p.name))?;
                    known.insert(key, rt.clone());
                    fresh.push(rt.clone());
                    rt
                }
            };
            out.push(rt);
        }
        Ok((out, fresh))
    }

    /// Forgets the runtimes of provider entries not in `keep`.
    pub fn retain(&self, keep: &[&tribune_model::JwtProvider]) {
        let keys: Vec<String> = keep.iter().map(|p| registry_key(p)).collect();
        if let Ok(mut known) = self.runtimes.lock() {
            known.retain(|key, _| keys.contains(key));
        }
    }
}

fn registry_key(p: &tribune_model::JwtProvider) -> String {
    format!(
        "{}\0{}",
        p.name,
        serde_json::to_string(p).unwrap_or_default()
    )
}
