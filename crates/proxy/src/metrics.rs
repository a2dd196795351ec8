//! Prometheus metrics (`/stats/prometheus` on the admin listener).

use crate::Proxy;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Weak;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JwtLabels {
    pub provider: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub result: &'static str,
}

/// The proxy's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<DecisionLabels, Counter>,
    pub jwt: Family<JwtLabels, Counter>,
    pub upstream: Family<UpstreamLabels, Counter>,
    pub upstream_latency: Histogram,
    pub config_version: Gauge,
    pub config_index: Gauge,
    pub connections: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tribune_proxy");
        let requests = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by decision and reason code",
            requests.clone(),
        );
        let jwt = Family::<JwtLabels, Counter>::default();
        registry.register(
            "jwt_verifications",
            "Token outcomes per provider (valid, missing, or the error code)",
            jwt.clone(),
        );
        let upstream = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Forwarded requests by result",
            upstream.clone(),
        );
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
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open downstream connections",
            connections.clone(),
        );
        Metrics {
            registry,
            requests,
            jwt,
            upstream,
            upstream_latency,
            config_version,
            config_index,
            connections,
        }
    }

    /// Adds the collector that reads per-provider counters (cache, JWKS fetches).
    pub(crate) fn register_providers(&mut self, proxy: Weak<Proxy>) {
        self.registry
            .register_collector(Box::new(ProviderCollector { proxy }));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
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
        let mut cache: Vec<(ProviderResult, u64)> = Vec::new();
        let mut fetch: Vec<(ProviderResult, u64)> = Vec::new();
        for rt in &snap.providers {
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

/// Renders the registry in the Prometheus text format.
pub fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics.registry).is_err() {
        out.clear();
    }
    out
}
