//! Where a provider's keys come from at run time (the adapter side of `tribune-jwt`).
//!
//! [`RemoteKeys`] follows a `JSONWebKeySet.Remote` block (decisions.md #5, #6, #13):
//! - each fetch attempt is bounded by `RequestTimeoutMs` (0: 5 s);
//! - failed attempts are retried `RetryPolicy.NumRetries` times (none by default) with
//!   fully jittered exponential back-off (`BaseInterval` 1 s, `MaxInterval` 10 x base);
//! - keys are kept for `CacheDuration` (0: 5 minutes), then refetched;
//! - a token whose `kid` is unknown triggers one refetch, at most once per
//!   [`RemoteKeys::rotation_interval`] (key rotation without refetch storms);
//! - a failed refetch keeps the last good keys until they are older than
//!   `CacheDuration` + [`RemoteKeys::max_stale`]; with no keys, verification fails
//!   closed (`Jwks remote fetch is failed`);
//! - concurrent callers share one fetch;
//! - `https://` URIs are fetched over TLS (rustls): the server certificate must chain to
//!   `JWKSCluster.TLSCertificates.TrustedCA` (file, environment variable, inline string
//!   or bytes) when set, else to the system's roots; SNI is sent only with `UseSNI`;
//!   `JWKSCluster.ConnectTimeout` bounds the TCP connect (default 5 s).

#![forbid(unsafe_code)]

pub mod check;
pub mod oidc;
pub mod runtime;

pub use runtime::{ProviderRuntime, Registry, Runtimes};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tribune_jwt::{Jwks, JwtError};
use tribune_model::jwt_provider::{RemoteJwks, TlsCertificates, TrustedCa};

/// Largest JWKS (or discovery) document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
const DEFAULT_BASE: Duration = Duration::from_secs(1);

fn from_ns(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

/// The fetch settings of one remote key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    pub uri: String,
    /// Trusted CA for https (None: the system's roots).
    pub trusted_ca: Option<TrustedCa>,
    /// Set when the entry names a TLS source Tribune does not support.
    pub tls_unsupported: Option<String>,
    pub use_sni: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub cache_duration: Duration,
    pub retries: u32,
    pub base_interval: Duration,
    pub max_interval: Duration,
    /// The provider's `Issuer`: an OpenID Connect discovery document must name it.
    pub issuer: String,
}

/// A `Remote.URI` ending in this is an OpenID Connect discovery document (Tribune's
/// extension): its `jwks_uri` is followed for the keys.
pub const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

/// The `jwks_uri` of a discovery document, checked: its `issuer` must equal the
/// provider's `Issuer` (when the provider has one), and an `https` document may only
/// point at `https` keys.
pub fn discovered_jwks_uri(
    document: &[u8],
    issuer: &str,
    discovery_uri: &str,
) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: Option<String>,
        jwks_uri: Option<String>,
    }
    // Tribune's nesting limit first, like every document from outside.
    let v = tribune_model::decode::parse_json(document)
        .map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let d: Discovery =
        serde_json::from_value(v).map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let found = d.issuer.unwrap_or_default();
    if !issuer.is_empty() && found != issuer {
        return Err(format!(
            "discovery document issuer {found:?} does not match the provider's Issuer {issuer:?}"
        ));
    }
    let jwks_uri = d
        .jwks_uri
        .filter(|u| !u.is_empty())
        .ok_or("discovery document has no jwks_uri")?;
    let https = discovery_uri.starts_with("https://");
    if !(jwks_uri.starts_with("https://") || (!https && jwks_uri.starts_with("http://"))) {
        return Err(format!(
            "discovery document's jwks_uri {jwks_uri:?} must be {}",
            if https {
                "https://"
            } else {
                "http:// or https://"
            }
        ));
    }
    Ok(jwks_uri)
}

/// Whether a discovery document may send key fetches to `jwks_uri` (hardening round
/// 3, item 15). The document is the IdP's word, and Tribune trusts the IdP for the
/// keys; it does not trust it to aim this host's fetches at link-local addresses,
/// where cloud metadata services answer (169.254.169.254 and its kin), which any
/// service token could otherwise trigger through `jwt-provider check`. A `jwks_uri`
/// on the discovery document's own host is as trusted as that host; one elsewhere
/// is refused when its host is, or resolves to, such an address. An operator who
/// means it sets `Remote.URI` to the key set itself: configured URIs are not
/// filtered.
pub async fn discovered_target_allowed(jwks_uri: &str, discovery_uri: &str) -> Result<(), String> {
    let target: hyper::Uri = jwks_uri
        .parse()
        .map_err(|e| format!("jwks_uri {jwks_uri:?}: {e}"))?;
    let origin: Option<hyper::Uri> = discovery_uri.parse().ok();
    let host = target
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let same_host = origin
        .as_ref()
        .and_then(|o| o.host())
        .is_some_and(|h| h.eq_ignore_ascii_case(target.host().unwrap_or("")));
    if same_host {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(format!(
            "discovery document's jwks_uri {jwks_uri:?} {why}: refused (cloud metadata services answer there); set Remote.URI to the key set to fetch it anyway"
        ))
    };
    let lower = host.to_ascii_lowercase();
    if METADATA_NAMES.contains(&lower.trim_end_matches('.')) {
        return refuse("names a cloud metadata service".into());
    }
    let addrs: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let port = target.port_u16().unwrap_or(443);
            tokio::net::lookup_host((host, port))
                .await
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default()
        }
    };
    match addrs.iter().find(|ip| link_local_or_metadata(**ip)) {
        Some(ip) => refuse(format!("leads to {ip}, a link-local or metadata address")),
        None => Ok(()),
    }
}

/// Host names of cloud metadata services.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Link-local addresses (where every cloud's metadata service is) and the few
/// metadata addresses outside them.
pub fn link_local_or_metadata(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let v4 = |a: Ipv4Addr| {
        a.is_link_local()
            || a == Ipv4Addr::new(100, 100, 100, 200)
            || a == Ipv4Addr::new(192, 0, 0, 192)
    };
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => {
            (a.segments()[0] & 0xffc0) == 0xfe80
                || a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || a.to_ipv4_mapped().is_some_and(v4)
        }
    }
}

impl FetchPolicy {
    pub fn from_remote(r: &RemoteJwks) -> Self {
        let (retries, base, max) = match &r.retry_policy {
            None => (0, DEFAULT_BASE, DEFAULT_BASE * 10),
            Some(p) => {
                let (b, m) = p
                    .back_off
                    .as_ref()
                    .map(|b| (b.base_interval, b.max_interval))
                    .unwrap_or((0, 0));
                let base = from_ns(b, DEFAULT_BASE);
                (
                    p.num_retries.clamp(0, 100) as u32,
                    base,
                    from_ns(m, base * 10),
                )
            }
        };
        let tls = r
            .jwks_cluster
            .as_ref()
            .and_then(|c| c.tls_certificates.as_ref());
        let (trusted_ca, tls_unsupported) = match tls {
            None => (None, None),
            Some(TlsCertificates::TrustedCa(t)) => (Some(t.clone()), None),
            Some(TlsCertificates::CaCertificateProviderInstance(_)) => (
                None,
                Some("TLSCertificates.CaCertificateProviderInstance (Envoy SDS) is not supported; use TrustedCA".to_string()),
            ),
        };
        FetchPolicy {
            uri: r.uri.clone(),
            trusted_ca,
            tls_unsupported,
            use_sni: r.use_sni,
            connect_timeout: from_ns(
                r.jwks_cluster
                    .as_ref()
                    .map(|c| c.connect_timeout)
                    .unwrap_or(0),
                DEFAULT_TIMEOUT,
            ),
            timeout: if r.request_timeout_ms > 0 {
                Duration::from_millis(r.request_timeout_ms as u64)
            } else {
                DEFAULT_TIMEOUT
            },
            cache_duration: from_ns(r.cache_duration, DEFAULT_CACHE),
            retries,
            base_interval: base,
            max_interval: max,
            issuer: String::new(),
        }
    }

    /// Delay before retry `attempt` (1-based): uniformly random up to
    /// `min(max, base * 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base_interval
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_interval);
        Duration::from_nanos(fastrand::u64(0..=cap.as_nanos() as u64))
    }
}

struct Cached {
    keys: Arc<Jwks>,
    fetched: Instant,
    /// The key set as fetched (what a sidecar saves to start from after a restart).
    raw: Arc<Vec<u8>>,
}

/// The keys of one remote provider.
pub struct RemoteKeys {
    policy: FetchPolicy,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    current: RwLock<Option<Cached>>,
    /// Serializes fetches (single flight) and remembers the last refetch for a `kid`.
    fetch_lock: tokio::sync::Mutex<Option<Instant>>,
    /// Minimum time between two refetches triggered by unknown `kid`s.
    pub rotation_interval: Duration,
    /// How long past `CacheDuration` the last good keys are still used when refetching
    /// fails.
    pub max_stale: Duration,
    /// Fetch results, for metrics.
    pub stats: FetchStats,
    /// After a failed fetch: no request-driven fetch before this instant (negative
    /// caching, so an IdP outage costs each sidecar a bounded number of fetches), and
    /// how many fetches in a row failed (the pause grows with it).
    failing: std::sync::Mutex<Option<(Instant, u32)>>,
    /// The pause after a failed fetch: at least this ([`MIN_FAILURE_PAUSE`]) ...
    pub failure_pause_min: Duration,
    /// ... and at most this ([`MAX_FAILURE_PAUSE`]).
    pub failure_pause_max: Duration,
}

/// The shortest pause after a failed fetch before requests may fetch again (the
/// policy's back-off may be shorter; an outage must not be fetched in a loop).
pub const MIN_FAILURE_PAUSE: Duration = Duration::from_secs(1);
/// The longest such pause.
pub const MAX_FAILURE_PAUSE: Duration = Duration::from_secs(30);

/// Counts of fetch attempts by result, and the last outcomes (for metrics and the
/// sidecar's report to the agent).
#[derive(Debug, Default)]
pub struct FetchStats {
    pub ok: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    /// Refetches caused by a token naming a `kid` the keys did not have.
    pub unknown_kid_refetches: std::sync::atomic::AtomicU64,
    /// Last successful fetch (Unix seconds; 0: none).
    pub last_ok: std::sync::atomic::AtomicI64,
    /// Last failed fetch: when (Unix seconds) and why.
    pub last_error: std::sync::Mutex<Option<(i64, String)>>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl RemoteKeys {
    pub fn new(policy: FetchPolicy) -> Result<Self, String> {
        let https = policy.uri.starts_with("https://");
        if !https && !policy.uri.starts_with("http://") {
            return Err(format!(
                "JWKS URI {}: must be http:// or https://",
                policy.uri
            ));
        }
        if let (true, Some(e)) = (https, &policy.tls_unsupported) {
            return Err(format!("JWKS URI {}: {e}", policy.uri));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(policy.connect_timeout.min(policy.timeout)));
        connector.enforce_http(false);
        let tls = tls_config(&policy)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(RemoteKeys {
            client: Client::builder(TokioExecutor::new()).build(connector),
            policy,
            current: RwLock::new(None),
            fetch_lock: tokio::sync::Mutex::new(None),
            rotation_interval: Duration::from_secs(10),
            max_stale: Duration::from_secs(3600),
            stats: FetchStats::default(),
            failing: std::sync::Mutex::new(None),
            failure_pause_min: MIN_FAILURE_PAUSE,
            failure_pause_max: MAX_FAILURE_PAUSE,
        })
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Whether keys are cached and younger than `CacheDuration`.
    pub fn is_fresh(&self) -> bool {
        self.cached_with_age()
            .is_some_and(|(_, age)| age < self.policy.cache_duration)
    }

    /// The cached keys, fresh or not.
    pub fn cached(&self) -> Option<Arc<Jwks>> {
        self.current.read().ok()?.as_ref().map(|c| c.keys.clone())
    }

    fn cached_with_age(&self) -> Option<(Arc<Jwks>, Duration)> {
        let g = self.current.read().ok()?;
        g.as_ref().map(|c| (c.keys.clone(), c.fetched.elapsed()))
    }

    /// One GET with the per-attempt timeout; the body must be a JWKS with a usable key.
    /// The last good key set as fetched, and how long ago it was fetched.
    pub fn last_good(&self) -> Option<(Arc<Vec<u8>>, Duration)> {
        let g = self.current.read().ok()?;
        g.as_ref().map(|c| (c.raw.clone(), c.fetched.elapsed()))
    }

    /// Starts from a key set fetched `age` ago by an earlier run (none fetched yet):
    /// it is used like one this process fetched then, so `CacheDuration` and the
    /// stale-keys bound count from the original fetch, not from now.
    pub fn seed(&self, raw: &[u8], age: Duration) -> Result<Arc<Jwks>, String> {
        let keys = Arc::new(Jwks::parse(raw).map_err(|e| e.to_string())?);
        let fetched = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let mut g = self
            .current
            .write()
            .map_err(|_| "key cache lock poisoned".to_string())?;
        if g.is_none() {
            *g = Some(Cached {
                keys: keys.clone(),
                fetched,
                raw: Arc::new(raw.to_vec()),
            });
        }
        Ok(keys)
    }

    /// One GET of `uri` (body bounded, status checked).
    async fn get(&self, uri: &str) -> Result<Bytes, String> {
        let uri: hyper::Uri = uri.parse().map_err(|e| format!("invalid URI: {e}"))?;
        let req = hyper::Request::get(uri)
            .header("accept", "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        Ok(body)
    }

    async fn fetch_once(&self) -> Result<(Jwks, Vec<u8>), String> {
        let attempt = async {
            let body = if self.policy.uri.ends_with(DISCOVERY_SUFFIX) {
                // OpenID Connect discovery: the document, then its jwks_uri (the
                // whole sequence is one attempt, bounded and retried as a fetch).
                let doc = self
                    .get(&self.policy.uri)
                    .await
                    .map_err(|e| format!("discovery document: {e}"))?;
                let jwks_uri = discovered_jwks_uri(&doc, &self.policy.issuer, &self.policy.uri)?;
                discovered_target_allowed(&jwks_uri, &self.policy.uri).await?;
                self.get(&jwks_uri)
                    .await
                    .map_err(|e| format!("jwks_uri {jwks_uri}: {e}"))?
            } else {
                self.get(&self.policy.uri).await?
            };
            let keys = Jwks::parse(&body).map_err(|e| e.to_string())?;
            Ok((keys, body.to_vec()))
        };
        tokio::time::timeout(self.policy.timeout, attempt)
            .await
            .map_err(|_| format!("timed out after {:?}", self.policy.timeout))?
    }

    /// Fetches with retries; on success replaces the keys, on failure keeps them.
    pub async fn refresh(&self) -> Result<Arc<Jwks>, String> {
        self.refresh_within(None).await
    }

    /// [`Self::refresh`], retrying only while a retry can start before `deadline`
    /// (a request waiting for keys waits about one `RequestTimeoutMs`, not every
    /// retry's). The outcome is remembered for [`Self::keys_for`]'s negative caching.
    async fn refresh_within(&self, deadline: Option<Instant>) -> Result<Arc<Jwks>, String> {
        let result = self.refresh_attempts(deadline).await;
        if let Ok(mut f) = self.failing.lock() {
            *f = match (&result, *f) {
                (Ok(_), _) => None,
                (Err(_), previous) => {
                    let n = previous.map_or(1, |(_, n)| n.saturating_add(1));
                    let pause = self
                        .policy
                        .backoff(n)
                        .clamp(self.failure_pause_min, self.failure_pause_max);
                    // Jitter: sidecars that failed together do not retry together.
                    let pause = pause + pause.mul_f64(fastrand::f64() * 0.25);
                    Some((Instant::now() + pause, n))
                }
            };
        }
        result
    }

    /// Whether a failed fetch's pause is still running (requests then fail fast).
    pub fn failing(&self) -> bool {
        self.failing
            .lock()
            .ok()
            .and_then(|f| *f)
            .is_some_and(|(until, _)| Instant::now() < until)
    }

    async fn refresh_attempts(&self, deadline: Option<Instant>) -> Result<Arc<Jwks>, String> {
        let mut last = String::new();
        for attempt in 0..=self.policy.retries {
            if attempt > 0 {
                let pause = self.policy.backoff(attempt);
                if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let result = self.fetch_once().await;
            let counter = if result.is_ok() {
                &self.stats.ok
            } else {
                &self.stats.failed
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match &result {
                Ok(_) => self
                    .stats
                    .last_ok
                    .store(unix_now(), std::sync::atomic::Ordering::Relaxed),
                Err(e) => {
                    if let Ok(mut g) = self.stats.last_error.lock() {
                        *g = Some((unix_now(), e.clone()));
                    }
                }
            }
            match result {
                Ok((jwks, raw)) => {
                    for w in &jwks.warnings {
                        tracing::warn!(uri = %self.policy.uri, warning = %w, "JWKS key skipped");
                    }
                    let keys = Arc::new(jwks);
                    if let Ok(mut g) = self.current.write() {
                        *g = Some(Cached {
                            keys: keys.clone(),
                            fetched: Instant::now(),
                            raw: Arc::new(raw),
                        });
                    }
                    return Ok(keys);
                }
                Err(e) => {
                    tracing::warn!(uri = %self.policy.uri, attempt, error = %e, "JWKS fetch failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Keys to verify a token with `kid`: refreshed when older than `CacheDuration`,
    /// refetched once (rate-limited) when the `kid` is unknown, stale keys used within
    /// `max_stale` when fetching fails, and `KeysUnavailable` when there are none.
    ///
    /// An IdP outage does not amplify: one fetch at a time (callers arriving meanwhile
    /// wait for it, at most `RequestTimeoutMs`), and after a failed fetch requests fail
    /// fast (stale keys or `KeysUnavailable`) until a jittered pause has passed
    /// ([`MIN_FAILURE_PAUSE`] .. [`MAX_FAILURE_PAUSE`], growing with each failure).
    pub async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<Jwks>, JwtError> {
        let cached = self.cached_with_age();
        let fresh = cached
            .as_ref()
            .is_some_and(|(_, age)| *age < self.policy.cache_duration);
        let kid_known = match (&cached, kid) {
            (Some((keys, _)), Some(k)) => keys.has_kid(k),
            _ => true,
        };
        if fresh && kid_known {
            return cached.map(|(k, _)| k).ok_or(JwtError::KeysUnavailable);
        }
        if self.failing() {
            return self.stale_or_unavailable();
        }
        let deadline = Instant::now() + self.policy.timeout;
        let Ok(mut last_kid_refetch) =
            tokio::time::timeout_at(deadline, self.fetch_lock.lock()).await
        else {
            // Another caller's fetch is still running: no second one, no longer wait.
            return self.stale_or_unavailable();
        };
        if self.failing() {
            return self.stale_or_unavailable();
        }
        // Another caller may have refreshed while we waited.
        if let Some((keys, age)) = self.cached_with_age() {
            let fresh = age < self.policy.cache_duration;
            let known = kid.is_none_or(|k| keys.has_kid(k));
            if fresh && known {
                return Ok(keys);
            }
            if fresh && !known {
                let recently =
                    last_kid_refetch.is_some_and(|t| t.elapsed() < self.rotation_interval);
                if recently {
                    return Ok(keys);
                }
                *last_kid_refetch = Some(Instant::now());
                self.stats
                    .unknown_kid_refetches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        match self.refresh_within(Some(deadline)).await {
            Ok(keys) => Ok(keys),
            Err(_) => self.stale_or_unavailable(),
        }
    }

    /// The last good keys while within the stale bound, else `KeysUnavailable`.
    fn stale_or_unavailable(&self) -> Result<Arc<Jwks>, JwtError> {
        match self.cached_with_age() {
            Some((keys, age)) if age < self.policy.cache_duration + self.max_stale => Ok(keys),
            _ => Err(JwtError::KeysUnavailable),
        }
    }
}

/// PEM text of a `TrustedCA` source.
fn trusted_ca_pem(t: &TrustedCa) -> Result<Vec<u8>, String> {
    match t {
        TrustedCa::Filename(f) => {
            std::fs::read(f).map_err(|e| format!("TrustedCA.Filename {f}: {e}"))
        }
        TrustedCa::EnvironmentVariable(v) => std::env::var(v)
            .map(String::into_bytes)
            .map_err(|_| format!("TrustedCA.EnvironmentVariable {v} is not set")),
        TrustedCa::InlineString(s) => Ok(s.clone().into_bytes()),
        TrustedCa::InlineBytes(b) => Ok(b.clone()),
    }
}

/// The roots a remote key set's server certificate must chain to, and where they came
/// from (for diagnostics).
fn root_store(policy: &FetchPolicy) -> Result<(rustls::RootCertStore, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let source = match &policy.trusted_ca {
        Some(t) => {
            let pem = trusted_ca_pem(t)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("TrustedCA: not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("TrustedCA: no certificate found".into());
            }
            let n = certs.len();
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("TrustedCA: unusable certificate: {e}"))?;
            }
            let plural = if n == 1 { "" } else { "s" };
            match t {
                TrustedCa::Filename(f) => {
                    format!("TrustedCA.Filename {f} ({n} certificate{plural})")
                }
                TrustedCa::EnvironmentVariable(v) => {
                    format!("TrustedCA.EnvironmentVariable {v} ({n} certificate{plural})")
                }
                TrustedCa::InlineString(_) => {
                    format!("TrustedCA.InlineString ({n} certificate{plural})")
                }
                TrustedCa::InlineBytes(_) => {
                    format!("TrustedCA.InlineBytes ({n} certificate{plural})")
                }
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                let _ = roots.add(c);
            }
            format!("the system's roots ({} certificates)", roots.len())
        }
    };
    Ok((roots, source))
}

fn crypto() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS client config for a remote key set.
fn tls_config(policy: &FetchPolicy) -> Result<rustls::ClientConfig, String> {
    Ok(tls_config_with(policy, |v| v)?.0)
}

/// [`tls_config`] with its certificate verifier (the standard one, for the policy's
/// roots) passed through `wrap` (`jwt-provider check` records what it is shown); also
/// where the roots came from, and the verifier `wrap` made.
fn tls_config_with<V: rustls::client::danger::ServerCertVerifier + 'static>(
    policy: &FetchPolicy,
    wrap: impl FnOnce(Arc<rustls::client::WebPkiServerVerifier>) -> Arc<V>,
) -> Result<(rustls::ClientConfig, String, Arc<V>), String> {
    let (roots, source) = root_store(policy)?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto())
            .build()
            .map_err(|e| format!("TLS roots unusable: {e}"))?;
    let verifier = wrap(verifier);
    let mut config = rustls::ClientConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    // Consul's UseSNI: the JWKS host name is sent as SNI only when asked for.
    config.enable_sni = policy.use_sni;
    Ok((config, source, verifier))
}
