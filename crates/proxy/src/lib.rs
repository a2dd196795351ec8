//! Tribune's sidecar proxy.
//!
//! A [`Proxy`] holds the current [`Snapshot`] (swapped atomically, read lock-free by
//! every request), the upstream connection pools and the metrics. Listeners feed it
//! connections; the request path is in [`http`] (phases documented there and in
//! ARCHITECTURE.md); [`watch`] keeps the snapshot current from the agent.

#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod conns;
pub mod deadline;
pub mod grpc;
pub mod http;
pub mod serve;
pub use tribune_jwks::runtime as keys;
pub mod mesh;
pub mod metrics;
pub mod outbound;
pub mod race;
pub mod replay;
pub mod report;
pub mod run;
pub mod shadow;
pub mod sidecar;
pub mod snapshot;
pub mod state;
pub mod upgrade;
pub mod upstream;
pub mod watch;
pub mod workload_api;

use arc_swap::ArcSwapOption;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use http::{AccessRecord, ProxyBody};
pub use metrics::Metrics;
pub use run::{start, EdgeTls, Settings, Started};
pub use snapshot::{Builder, Snapshot, SnapshotDoc};

/// Seconds since the Unix epoch (injected so tests control token time).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Receives one record per request (the access log).
pub type AccessSink = Arc<dyn Fn(&AccessRecord<'_>) + Send + Sync>;

/// How the proxy runs.
#[derive(Clone)]
pub struct ProxyConfig {
    /// The local service requests are forwarded to.
    pub upstream: SocketAddr,
    /// Merge repeated slashes before matching (and forwarding).
    pub merge_slashes: bool,
    /// Time allowed for the upstream's response headers (answered 504 between this
    /// and a sixteenth of it later: [`deadline`]).
    pub upstream_timeout: Duration,
    /// Open downstream connections at most; at the cap the longest-idle one is shed
    /// for a new caller.
    pub max_connections: usize,
    /// A connection's first request must arrive this soon after accept (also
    /// hyper's bound on reading any request head).
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is shut down gracefully.
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
    pub clock: Clock,
    /// `None`: access records go to the `tribune::access` tracing target.
    pub access_sink: Option<AccessSink>,
    /// Recent request facts kept for replay (0: none).
    pub replay_buffer: usize,
    /// How long upgraded (WebSocket) connections may stay idle, and open at most.
    pub upgrade_limits: upgrade::Limits,
}

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl ProxyConfig {
    pub fn new(upstream: SocketAddr) -> Self {
        ProxyConfig {
            upstream,
            merge_slashes: false,
            upstream_timeout: Duration::from_secs(15),
            max_connections: 10_000,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            clock: Arc::new(system_clock),
            access_sink: None,
            replay_buffer: replay::DEFAULT_REPLAY_ENTRIES,
            upgrade_limits: upgrade::Limits::default(),
        }
    }
}

/// The sidecar.
/// The sidecar's watches on the agent, each of which can be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The policy (`proxy-snapshot`).
    Policy = 0,
    /// Roots and leaf certificate.
    Identity = 1,
}

impl Watch {
    pub const ALL: [Watch; 2] = [Watch::Policy, Watch::Identity];
}

pub struct Proxy {
    pub config: ProxyConfig,
    current: ArcSwapOption<Snapshot>,
    builder: Builder,
    versions: AtomicU64,
    install_lock: tokio::sync::Mutex<()>,
    pub metrics: Metrics,
    pub(crate) upstream: upstream::Upstream,
    pub(crate) conns: conns::Conns,
    /// Bounds waits on the local service by `config.upstream_timeout`.
    pub(crate) deadlines: deadline::Deadlines,
    /// Where what the agent sent is saved (fail static across restarts).
    state: std::sync::OnceLock<Arc<state::StateFile>>,
    /// Unix seconds of the last successful answer from an agent (0: never).
    last_sync: AtomicI64,
    /// Unix seconds of the last policy installed (0: none yet).
    installed_at: AtomicI64,
    /// What the agent said when it last refused this sidecar's token, per watch
    /// ([`Watch`]); `None` while it answers.
    refusals: std::sync::Mutex<[Option<String>; Watch::ALL.len()]>,
    /// Why the agent's latest document could not be installed (`None`: it was).
    install_failure: std::sync::Mutex<Option<String>>,
    /// Shadow evaluation of a staged candidate (`GET /shadow`).
    pub shadow: shadow::ShadowStats,
    /// Recent request facts (`POST /replay`).
    pub replay: replay::ReplayRing,
    /// Woken when a snapshot is installed (the report to the agent goes out at once).
    pub installed: tokio::sync::Notify,
}

/// aws-lc seeds its random generator from CPU jitter on the first draw in a process
/// (~45 ms on the benchmark VM). Done once when a proxy or a mesh identity is set up,
/// so the first TLS handshake (mesh, edge TLS, https key set) doesn't pay it.
pub fn seed_random() {
    static SEEDED: std::sync::Once = std::sync::Once::new();
    SEEDED.call_once(|| {
        let mut byte = [0u8; 1];
        let _ = rustls::crypto::aws_lc_rs::default_provider()
            .secure_random
            .fill(&mut byte);
    });
}

/// Keeps one short timer armed for the life of the runtime.
///
/// tokio's timer driver remembers, when it parks, the earliest deadline it will wake
/// for; registering a timer earlier than that (or with none pending) writes to the
/// runtime's eventfd so the driver re-parks with the new deadline, even when the
/// runtime is busy on this very thread. At low and medium load every request arms
/// timers on an otherwise empty wheel (hyper's header-read timeout, the upstream
/// timeout), which cost an eventfd write and an extra `epoll_wait` per request. With a
/// timer that is never more than a second away, request timers (seconds long) are
/// never the earliest, and the cost is one wake-up a second.
pub async fn keep_timer_armed() {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The configured connection cap, lowered to what the file limit leaves room for, so
/// that at the cap idle connections are shed before descriptors run out.
fn connection_cap(configured: usize) -> usize {
    match conns::fd_budget() {
        Some(budget) if budget < configured => {
            tracing::info!(
                configured,
                budget,
                "connection cap lowered to what the open-file limit allows"
            );
            budget
        }
        _ => configured,
    }
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Arc<Proxy> {
        seed_random();
        let replay_buffer = config.replay_buffer;
        Arc::new_cyclic(|me| {
            let mut metrics = Metrics::new();
            metrics.register_providers(me.clone());
            Proxy {
                upstream: upstream::Upstream::new(&config, metrics.counters.clone()),
                conns: conns::Conns::new(connection_cap(config.max_connections)),
                deadlines: deadline::Deadlines::new(config.upstream_timeout),
                config,
                current: ArcSwapOption::empty(),
                builder: Builder::default(),
                versions: AtomicU64::new(0),
                install_lock: tokio::sync::Mutex::new(()),
                metrics,
                state: std::sync::OnceLock::new(),
                last_sync: AtomicI64::new(0),
                installed_at: AtomicI64::new(0),
                refusals: std::sync::Mutex::new(Default::default()),
                install_failure: std::sync::Mutex::new(None),
                shadow: shadow::ShadowStats::default(),
                replay: replay::ReplayRing::new(replay_buffer, replay::MAX_REPLAY_BYTES),
                installed: tokio::sync::Notify::new(),
            }
        })
    }

    /// The sidecar settings the enforcement engine takes.
    pub fn options(&self) -> tribune_enforce::Options {
        tribune_enforce::Options {
            merge_slashes: self.config.merge_slashes,
        }
    }

    /// The snapshot being enforced, if any.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Compiles and installs a snapshot. Remote key sets that must be fetched before
    /// serving (`FetchAsynchronously = false`) are fetched first; the swap is atomic
    /// and requests in flight finish on the snapshot they started with. On error the
    /// current snapshot stays.
    pub async fn install(&self, doc: SnapshotDoc, index: u64) -> Result<u64, String> {
        let _one_at_a_time = self.install_lock.lock().await;
        let version = self.versions.load(Ordering::Relaxed) + 1;
        let (snapshot, fresh) = self.builder.build(doc, version, index)?;
        for rt in &fresh {
            // Keys saved by an earlier run first: a restart while the provider is down
            // verifies with them (within the staleness bounds) instead of failing closed.
            if let Some(uri) = rt.remote().map(|r| r.policy().uri.clone()) {
                if let Some(k) = self.state().and_then(|s| s.jwks(&uri)) {
                    let age = Duration::from_secs((state::now() - k.fetched_at).max(0) as u64);
                    if let Err(e) = rt.seed_remote(k.keys.as_bytes(), age) {
                        tracing::warn!(uri = %uri, error = %e, "saved key set unusable");
                    }
                }
            }
            rt.prepare().await;
        }
        self.versions.store(version, Ordering::Relaxed);
        self.installed_at.store(state::now(), Ordering::Relaxed);
        self.metrics.config_version.set(version as i64);
        self.metrics.config_index.set(index as i64);
        tracing::info!(
            version,
            index,
            service = %snapshot.service,
            intentions = snapshot.table.intentions().count(),
            providers = snapshot.runtimes.len(),
            "policy snapshot installed"
        );
        let labels = snapshot
            .shadow
            .as_ref()
            .map(|s| s.labels.clone())
            .unwrap_or_default();
        self.shadow.begin(&labels);
        self.current.store(Some(Arc::new(snapshot)));
        self.save_keys();
        self.installed.notify_one();
        Ok(version)
    }

    /// Ready when a snapshot is installed.
    pub fn ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// Saves what the agent sends to this state file from now on.
    pub fn save_state_to(&self, file: Arc<state::StateFile>) {
        let _ = self.state.set(file);
    }

    /// The state file, when one is kept.
    pub fn state(&self) -> Option<&Arc<state::StateFile>> {
        self.state.get()
    }

    /// Saves the remote key sets of the enforced snapshot to the state file (when one
    /// is kept and they changed).
    pub fn save_keys(&self) {
        let (Some(state), Some(snap)) = (self.state(), self.current()) else {
            return;
        };
        let now = state::now();
        let sets: Vec<(String, state::SavedJwks)> = snap
            .runtimes
            .iter()
            .filter_map(|rt| {
                let r = rt.remote()?;
                let (raw, age) = r.last_good()?;
                Some((
                    r.policy().uri.clone(),
                    state::SavedJwks {
                        fetched_at: now - age.as_secs() as i64,
                        keys: String::from_utf8_lossy(&raw).into_owned(),
                    },
                ))
            })
            .collect();
        if sets.is_empty() {
            return;
        }
        state.update(|s| {
            for (uri, k) in sets {
                // The computed fetch time wobbles by a second between calls: rewrite
                // only for new keys or a new fetch (a refresh), not for the wobble.
                if s.jwks
                    .get(&uri)
                    .is_none_or(|old| old.keys != k.keys || k.fetched_at - old.fetched_at > 5)
                {
                    s.jwks.insert(uri, k);
                }
            }
        });
    }

    /// Records a successful answer from an agent.
    pub fn synced(&self) {
        let now = state::now();
        self.last_sync.store(now, Ordering::Relaxed);
        self.metrics.last_sync.set(now);
    }

    /// Records what `watch` last heard: the agent's refusal of the token, or (`None`)
    /// an answer or an outage (which does not clear an earlier refusal).
    pub fn agent_refusal(&self, watch: Watch, refused: Option<&sidecar::AgentError>) {
        let mut all = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        all[watch as usize] = refused.map(|e| e.to_string());
        let any = all.iter().any(Option::is_some);
        self.metrics.agent_token_refused.set(i64::from(any));
    }

    /// Records whether the agent's latest document was installed (`None`) or why not.
    pub fn install_failed(&self, why: Option<String>) {
        self.metrics
            .policy_install_failed
            .set(i64::from(why.is_some()));
        *self
            .install_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why the agent's latest document could not be installed, if it could not.
    pub fn install_failure(&self) -> Option<String> {
        self.install_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The agent's refusal of this sidecar's token, if a watch heard one last.
    pub fn token_refused(&self) -> Option<String> {
        let all = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().flatten().next().cloned()
    }

    /// When the enforced policy was installed (Unix seconds; `None`: none yet).
    pub fn installed_at(&self) -> Option<i64> {
        match self.installed_at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Seconds since the last successful answer from an agent (`None`: never).
    pub fn since_sync(&self) -> Option<i64> {
        match self.last_sync.load(Ordering::Relaxed) {
            0 => None,
            t => Some((state::now() - t).max(0)),
        }
    }
}
