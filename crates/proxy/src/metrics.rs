//! Prometheus metrics (`/stats/prometheus` on the admin listener).

use crate::Proxy;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tribune_authz::ReasonCode;
use tribune_enforce::{Refusal, Why};

pub use tribune_jwks::runtime::{
    outcome_label as token_label, outcome_slot as token_slot, OUTCOME_SLOTS as TOKEN_SLOTS,
};

/// What became of an allowed request sent to the local service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamResult {
    Ok = 0,
    /// No connection could be made (503).
    Connect,
    /// The connection failed before a response (502).
    Reset,
    /// No response in time (504).
    Timeout,
    /// The client's own body was malformed (400).
    ClientBody,
}

impl UpstreamResult {
    pub const ALL: [UpstreamResult; 5] = [
        UpstreamResult::Ok,
        UpstreamResult::Connect,
        UpstreamResult::Reset,
        UpstreamResult::Timeout,
        UpstreamResult::ClientBody,
    ];

    /// The metric label, also the access log's reason for failures.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamResult::Ok => "ok",
            UpstreamResult::Connect => "upstream_connect",
            UpstreamResult::Reset => "upstream_reset",
            UpstreamResult::Timeout => "upstream_timeout",
            UpstreamResult::ClientBody => "bad_request_body",
        }
    }
}

/// Connection events (`connection_events_total{event}`): where connections are
/// opened and how handshakes end. Counted once per connection, never per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// A TCP connection accepted on the edge or mesh listener.
    Accepted = 0,
    /// A mesh (mTLS) handshake completed with a caller of this trust domain.
    MeshHandshakeOk,
    /// Of the completed mesh handshakes, those that resumed an earlier session.
    MeshHandshakeResumed,
    /// A mesh handshake failed, timed out, or the caller had no identity here.
    MeshHandshakeFailed,
    /// A new connection to the local service (HTTP/1.1 pool).
    ServiceConnected,
    /// An upstream listener connected to a destination's sidecar over mTLS.
    UpstreamDialed,
    /// An upstream listener could not reach any instance of its destination.
    UpstreamDialFailed,
    /// An upgrade (WebSocket) completed: bytes now flow both ways.
    UpgradeOpened,
    /// An upgraded connection ended (closed, idle, or at its maximum duration).
    UpgradeClosed,
}

impl ConnEvent {
    pub const ALL: [ConnEvent; 9] = [
        ConnEvent::Accepted,
        ConnEvent::MeshHandshakeOk,
        ConnEvent::MeshHandshakeResumed,
        ConnEvent::MeshHandshakeFailed,
        ConnEvent::ServiceConnected,
        ConnEvent::UpstreamDialed,
        ConnEvent::UpstreamDialFailed,
        ConnEvent::UpgradeOpened,
        ConnEvent::UpgradeClosed,
    ];

    /// The `event` label value.
    pub fn label(self) -> &'static str {
        match self {
            ConnEvent::Accepted => "accepted",
            ConnEvent::MeshHandshakeOk => "mesh_handshake_ok",
            ConnEvent::MeshHandshakeResumed => "mesh_handshake_resumed",
            ConnEvent::MeshHandshakeFailed => "mesh_handshake_failed",
            ConnEvent::ServiceConnected => "service_connected",
            ConnEvent::UpstreamDialed => "upstream_dialed",
            ConnEvent::UpstreamDialFailed => "upstream_dial_failed",
            ConnEvent::UpgradeOpened => "upgrade_opened",
            ConnEvent::UpgradeClosed => "upgrade_closed",
        }
    }
}

/// Why a check from an external proxy (`tribune connect authz`) ended without a
/// decision: `tribune_authz_checks_total{result="error",reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The check itself is malformed: a header the form needs is missing, the method
    /// or request target is not one (400).
    BadCheck = 0,
    /// No policy yet for the destination (503).
    NoPolicy,
    /// The path is not in normal form and the proxy is not declared to normalize it.
    PathNotNormalized,
    /// The request target could not be rewritten.
    BadRequestUri,
}

impl CheckError {
    pub const ALL: [CheckError; 4] = [
        CheckError::BadCheck,
        CheckError::NoPolicy,
        CheckError::PathNotNormalized,
        CheckError::BadRequestUri,
    ];

    /// The `reason` label, also the access record's reason.
    pub fn label(self) -> &'static str {
        match self {
            CheckError::BadCheck => "bad_check",
            CheckError::NoPolicy => "no_policy",
            CheckError::PathNotNormalized => "path_not_normalized",
            CheckError::BadRequestUri => "bad_request_uri",
        }
    }
}

/// How one check ended, counted by [`Counters::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckEnd {
    /// The engine decided: allowed or not, and why.
    Decided {
        allowed: bool,
        code: ReasonCode,
    },
    /// Refused before a decision (the sidecar's 400/405/307 refusals).
    Refused(Refusal),
    Error(CheckError),
}

/// Request-path counters: plain atomics (no label lookups per request), exported at
/// scrape time.
#[derive(Default)]
pub struct Counters {
    /// [allow, deny] x [`ReasonCode::ALL`].
    pub decisions: [[AtomicU64; ReasonCode::ALL.len()]; 2],
    pub upstream: [AtomicU64; UpstreamResult::ALL.len()],
    pub connection_events: [AtomicU64; ConnEvent::ALL.len()],
    /// Shadow evaluation: [live allow, deny] x [candidate allow, deny] x the
    /// candidate's [`Why`] slot.
    pub shadow: [[[AtomicU64; Why::COUNT]; 2]; 2],
    /// Bytes carried by upgraded connections: [to the service, to the client].
    pub upgraded_bytes: [AtomicU64; 2],
    /// Checks from external proxies: [allow, deny] x [`ReasonCode::ALL`], then the
    /// refusals and the errors.
    pub checks: [[AtomicU64; ReasonCode::ALL.len()]; 2],
    pub check_refusals: [AtomicU64; Refusal::ALL.len()],
    pub check_errors: [AtomicU64; CheckError::ALL.len()],
    /// Set by `tribune connect authz`: the checks family is exported (from zero).
    pub serves_checks: std::sync::atomic::AtomicBool,
}

impl Counters {
    /// Counts one connection event.
    pub fn connection(&self, event: ConnEvent) {
        self.connection_events[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one check from an external proxy.
    pub fn check(&self, end: CheckEnd) {
        let slot = match end {
            CheckEnd::Decided { allowed, code } => {
                &self.checks[usize::from(!allowed)][code as usize]
            }
            CheckEnd::Refused(r) => &self.check_refusals[r as usize],
            CheckEnd::Error(e) => &self.check_errors[e as usize],
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    /// Every check's end with its count, in label order.
    pub fn checks(&self) -> Vec<(CheckEnd, u64)> {
        let mut out = Vec::new();
        for (d, allowed) in [true, false].into_iter().enumerate() {
            for code in ReasonCode::ALL {
                let n = self.checks[d][code as usize].load(Ordering::Relaxed);
                out.push((CheckEnd::Decided { allowed, code }, n));
            }
        }
        for r in Refusal::ALL {
            out.push((
                CheckEnd::Refused(r),
                self.check_refusals[r as usize].load(Ordering::Relaxed),
            ));
        }
        for e in CheckError::ALL {
            out.push((
                CheckEnd::Error(e),
                self.check_errors[e as usize].load(Ordering::Relaxed),
            ));
        }
        out
    }

    /// How many times `event` happened.
    pub fn connections(&self, event: ConnEvent) -> u64 {
        self.connection_events[event as usize].load(Ordering::Relaxed)
    }
}

/// The proxy's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub counters: Arc<Counters>,
    pub upstream_latency: Histogram,
    pub config_version: Gauge,
    pub config_index: Gauge,
    pub connections: Gauge,
    /// Unix time of the last successful answer from an agent.
    pub last_sync: Gauge,
    /// 1 while the agent refuses this sidecar's token.
    pub agent_token_refused: Gauge,
    /// 1 while the agent's latest policy document could not be installed.
    pub policy_install_failed: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        let counters = Arc::new(Counters::default());
        root.sub_registry_with_prefix("tribune_authz")
            .register_collector(Box::new(CheckCollector {
                counters: counters.clone(),
            }));
        let registry = root.sub_registry_with_prefix("tribune_proxy");
        registry.register_collector(Box::new(CounterCollector {
            counters: counters.clone(),
        }));
        let upstream_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "upstream_latency_seconds",
            "Time from forwarding to the upstream's response headers",
            upstream_latency.clone(),
        );
        let config_version = Gauge::default();
        registry.register(
            "config_version",
            "Version of the snapshot being enforced (0 = none yet)",
            config_version.clone(),
        );
        let config_index = Gauge::default();
        registry.register(
            "config_index",
            "The agent's config index of the snapshot being enforced",
            config_index.clone(),
        );
        let last_sync = Gauge::default();
        registry.register(
            "last_sync_timestamp_seconds",
            "Unix time of the last successful answer from an agent (0: none since start; the age is time() minus this)",
            last_sync.clone(),
        );
        let agent_token_refused = Gauge::default();
        registry.register(
            "agent_token_refused",
            "1 while the agent refuses this sidecar's ACL token (revoked, deleted or without service:write): the policy is not updated and the leaf not renewed",
            agent_token_refused.clone(),
        );
        let policy_install_failed = Gauge::default();
        registry.register(
            "policy_install_failed",
            "1 while the agent's latest policy document could not be installed: the last policy is enforced, with the new key sets of its providers",
            policy_install_failed.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open downstream connections",
            connections.clone(),
        );
        Metrics {
            registry: root,
            counters,
            upstream_latency,
            config_version,
            config_index,
            connections,
            last_sync,
            agent_token_refused,
            policy_install_failed,
        }
    }

    /// Adds the collector that reads per-provider counters (cache, JWKS fetches).
    pub(crate) fn register_providers(&mut self, proxy: Weak<Proxy>) {
        self.registry
            .sub_registry_with_prefix("tribune_proxy")
            .register_collector(Box::new(ProviderCollector { proxy }));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

struct CounterCollector {
    counters: Arc<Counters>,
}

impl std::fmt::Debug for CounterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CounterCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    live: &'static str,
    candidate: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

impl Collector for CounterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "requests",
            "Requests by decision and reason code",
            None,
            probe.metric_type(),
        )?;
        for (d, decision) in ["allow", "deny"].into_iter().enumerate() {
            for code in ReasonCode::ALL {
                let n = self.counters.decisions[d][code as usize].load(Ordering::Relaxed);
                if n > 0 {
                    let labels = DecisionLabels {
                        decision,
                        reason: code.as_str(),
                    };
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "shadow_decisions",
            "Requests evaluated with a staged candidate too: the live and the candidate decision, and the candidate's reason code",
            None,
            probe.metric_type(),
        )?;
        for (l, live) in ["allow", "deny"].into_iter().enumerate() {
            for (c, candidate) in ["allow", "deny"].into_iter().enumerate() {
                for slot in 0..Why::COUNT {
                    let n = self.counters.shadow[l][c][slot].load(Ordering::Relaxed);
                    if let (true, Some(why)) = (n > 0, Why::from_slot(slot)) {
                        let labels = ShadowLabels {
                            live,
                            candidate,
                            reason: why.as_str(),
                        };
                        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "upstream_requests",
            "Forwarded requests by result",
            None,
            probe.metric_type(),
        )?;
        for result in UpstreamResult::ALL {
            let n = self.counters.upstream[result as usize].load(Ordering::Relaxed);
            if n > 0 {
                let labels = ResultLabel {
                    result: result.label(),
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "connection_events",
            "Connections opened (downstream, to the local service, to destination sidecars) and how mesh handshakes ended",
            None,
            probe.metric_type(),
        )?;
        for event in ConnEvent::ALL {
            let n = self.counters.connections(event);
            let labels = EventLabel {
                event: event.label(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "upgraded_bytes",
            "Bytes carried by upgraded (WebSocket) connections, by direction",
            None,
            probe.metric_type(),
        )?;
        for (i, direction) in ["to_service", "to_client"].into_iter().enumerate() {
            let n = self.counters.upgraded_bytes[i].load(Ordering::Relaxed);
            ConstCounter::new(n).encode(family.encode_family(&DirectionLabel { direction })?)?;
        }
        let open = self
            .counters
            .connections(ConnEvent::UpgradeOpened)
            .saturating_sub(self.counters.connections(ConnEvent::UpgradeClosed));
        let gauge = prometheus_client::metrics::gauge::ConstGauge::new(open as i64);
        let family = encoder.encode_descriptor(
            "upgraded_connections_open",
            "Upgraded (WebSocket) connections open now",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(family)?;
        Ok(())
    }
}

/// `tribune_authz_checks_total{result,reason}`: checks from external proxies, once
/// `tribune connect authz` serves them (result `allow`/`deny` with the decision's
/// reason code, `refused` with the refusal, `error` with a [`CheckError`]).
struct CheckCollector {
    counters: Arc<Counters>,
}

impl std::fmt::Debug for CheckCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    result: &'static str,
    reason: &'static str,
}

impl CheckEnd {
    /// The (`result`, `reason`) labels.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            CheckEnd::Decided {
                allowed: true,
                code,
            } => ("allow", code.as_str()),
            CheckEnd::Decided {
                allowed: false,
                code,
            } => ("deny", code.as_str()),
            CheckEnd::Refused(r) => ("refused", r.as_str()),
            CheckEnd::Error(e) => ("error", e.label()),
        }
    }
}

impl Collector for CheckCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if !self.counters.serves_checks.load(Ordering::Relaxed) {
            return Ok(());
        }
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "checks",
            "Checks from external proxies (connect authz) by result (allow, deny, refused, error) and reason",
            None,
            probe.metric_type(),
        )?;
        // All of them, from zero (two results x the reason codes, the refusals and
        // the errors: a few dozen series).
        for (end, n) in self.counters.checks() {
            let (result, reason) = end.labels();
            ConstCounter::new(n).encode(family.encode_family(&CheckLabels { result, reason })?)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOutcome {
    provider: String,
    outcome: &'static str,
}

#[derive(Debug)]
struct ProviderCollector {
    proxy: Weak<Proxy>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderResult {
    provider: String,
    result: &'static str,
}

impl Collector for ProviderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(proxy) = self.proxy.upgrade() else {
            return Ok(());
        };
        let Some(snap) = proxy.current() else {
            return Ok(());
        };
        let mut outcomes: Vec<(ProviderOutcome, u64)> = Vec::new();
        for rt in &snap.runtimes {
            for i in 0..TOKEN_SLOTS {
                let outcome = token_label(i);
                let n = rt.outcomes[i].load(Ordering::Relaxed);
                if n > 0 {
                    outcomes.push((
                        ProviderOutcome {
                            provider: rt.provider.name.clone(),
                            outcome,
                        },
                        n,
                    ));
                }
            }
        }
        if !outcomes.is_empty() {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "jwt_verifications",
                "Token outcomes per provider (valid, missing, or the error code)",
                None,
                probe.metric_type(),
            )?;
            for (labels, n) in outcomes {
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut cache: Vec<(ProviderResult, u64)> = Vec::new();
        let mut fetch: Vec<(ProviderResult, u64)> = Vec::new();
        for rt in &snap.runtimes {
            let name = rt.provider.name.clone();
            cache.push((
                ProviderResult {
                    provider: name.clone(),
                    result: "hit",
                },
                rt.cache_hits.load(Ordering::Relaxed),
            ));
            cache.push((
                ProviderResult {
                    provider: name.clone(),
                    result: "miss",
                },
                rt.cache_misses.load(Ordering::Relaxed),
            ));
            if let Some(r) = rt.remote() {
                fetch.push((
                    ProviderResult {
                        provider: name.clone(),
                        result: "ok",
                    },
                    r.stats.ok.load(Ordering::Relaxed),
                ));
                fetch.push((
                    ProviderResult {
                        provider: name,
                        result: "error",
                    },
                    r.stats.failed.load(Ordering::Relaxed),
                ));
            }
        }
        for (name, help, rows) in [
            (
                "jwt_cache",
                "Verified-token cache lookups per provider",
                cache,
            ),
            (
                "jwks_fetches",
                "Remote JWKS fetch attempts per provider",
                fetch,
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (labels, value) in rows {
                let metric = family.encode_family(&labels)?;
                ConstCounter::new(value).encode(metric)?;
            }
        }
        Ok(())
    }
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics.registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_jwt::JwtCode;

    /// The attack pass found `keys_unavailable` counted as `claim_type`: the metric's
    /// label list re-typed the codes and missed one. Slots now come from the enums.
    #[test]
    fn every_token_code_reason_and_result_has_its_own_slot_and_label() {
        let mut seen = std::collections::HashSet::new();
        assert_eq!(token_label(token_slot(None)), "valid");
        seen.insert(token_slot(None));
        for code in JwtCode::ALL {
            let slot = token_slot(Some(code));
            assert!(slot < TOKEN_SLOTS && seen.insert(slot), "{code:?}");
            assert_eq!(token_label(slot), code.as_str());
        }
        assert_eq!(
            token_label(token_slot(Some(JwtCode::KeysUnavailable))),
            "keys_unavailable"
        );
        for (i, code) in ReasonCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i, "{code:?}");
        }
        for (i, r) in UpstreamResult::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "{r:?}");
        }
        let metrics = Metrics::new();
        for code in ReasonCode::ALL {
            metrics.counters.decisions[1][code as usize].fetch_add(1, Ordering::Relaxed);
        }
        for r in UpstreamResult::ALL {
            metrics.counters.upstream[r as usize].fetch_add(1, Ordering::Relaxed);
        }
        let text = render(&metrics);
        for code in ReasonCode::ALL {
            let line = format!(
                "tribune_proxy_requests_total{{decision=\"deny\",reason=\"{}\"}} 1",
                code.as_str()
            );
            assert!(text.contains(&line), "{line}\n{text}");
        }
        for r in UpstreamResult::ALL {
            let line = format!(
                "tribune_proxy_upstream_requests_total{{result=\"{}\"}} 1",
                r.label()
            );
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }

    #[test]
    fn every_connection_event_has_its_own_slot_and_label() {
        for (i, event) in ConnEvent::ALL.into_iter().enumerate() {
            assert_eq!(event as usize, i, "{event:?}");
        }
        let metrics = Metrics::new();
        metrics.counters.connection(ConnEvent::MeshHandshakeResumed);
        metrics.counters.connection(ConnEvent::MeshHandshakeResumed);
        metrics.counters.connection(ConnEvent::UpstreamDialFailed);
        let text = render(&metrics);
        assert!(text
            .contains("tribune_proxy_connection_events_total{event=\"mesh_handshake_resumed\"} 2"));
        assert!(text
            .contains("tribune_proxy_connection_events_total{event=\"upstream_dial_failed\"} 1"));
        assert!(text.contains("tribune_proxy_connection_events_total{event=\"accepted\"} 0"));
    }
}
