//! The agent's metrics (`GET /v1/agent/metrics`, Consul's JSON summary, or
//! `?format=prometheus` for OpenMetrics text): API requests by route, method and code,
//! ACL denials (answers 403), blocking queries held now, and every store operation's
//! count, errors and time, with whether the store answered its last operation (on
//! etcd: quorum). Counts are since the agent started (Consul's are per interval).
//!
//! One record of the numbers ([`Metrics`]) feeds both formats, through
//! [`Metrics::summary`].

use axum::http::Method;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tribune_store::{
    Applied, Changes, ErrorKind, Membership, Op, Record, Store, StoreError, StoreFuture,
};

/// A store operation, as metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Get,
    List,
    TableIndex,
    TableIndexes,
    Index,
    Apply,
    ChangesSince,
    Membership,
}

impl StoreOp {
    pub(crate) const ALL: [StoreOp; 8] = [
        StoreOp::Get,
        StoreOp::List,
        StoreOp::TableIndex,
        StoreOp::TableIndexes,
        StoreOp::Index,
        StoreOp::Apply,
        StoreOp::ChangesSince,
        StoreOp::Membership,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::List => "list",
            StoreOp::TableIndex => "table_index",
            StoreOp::TableIndexes => "table_indexes",
            StoreOp::Index => "index",
            StoreOp::Apply => "apply",
            StoreOp::ChangesSince => "changes_since",
            StoreOp::Membership => "membership",
        }
    }
}

/// One route's answers by (method, status).
type ByRoute = HashMap<(Method, u16), u64>;

#[derive(Default)]
struct OpStats {
    count: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
    max_micros: AtomicU64,
}

/// The agent's numbers.
pub(crate) struct Metrics {
    /// route pattern -> (method, status) -> answers. Routes are the router's patterns
    /// (`/v1/config/{kind}`; `unmatched` for the rest), so the map is bounded.
    requests: Mutex<HashMap<String, ByRoute>>,
    denied: AtomicU64,
    blocking: AtomicI64,
    store: [OpStats; StoreOp::ALL.len()],
    store_up: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            denied: AtomicU64::new(0),
            blocking: AtomicI64::new(0),
            store: Default::default(),
            store_up: AtomicBool::new(true),
        }
    }
}

/// A blocking query held: counted while this lives.
pub(crate) struct Held(Arc<Metrics>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.blocking.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// An answer to `method route` with `status`.
    pub(crate) fn request(&self, route: &str, method: &Method, status: u16) {
        if status == 403 {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut m) = self.requests.lock() {
            let by_route = match m.get_mut(route) {
                Some(r) => r,
                None => m.entry(route.to_string()).or_default(),
            };
            *by_route.entry((method.clone(), status)).or_insert(0) += 1;
        }
    }

    /// Every (route, method, status) count, sorted.
    fn request_counts(&self) -> Vec<(String, String, u16, u64)> {
        let mut out: Vec<(String, String, u16, u64)> = self
            .requests
            .lock()
            .map(|m| {
                m.iter()
                    .flat_map(|(route, by)| {
                        by.iter().map(move |((method, code), n)| {
                            (route.clone(), method.to_string(), *code, *n)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// A blocking query starts waiting (until the guard drops).
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        self.blocking.fetch_add(1, Ordering::Relaxed);
        Held(self.clone())
    }

    fn store_op(&self, op: StoreOp, started: Instant, failed: Option<&StoreError>) {
        let s = &self.store[op as usize];
        let us = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        s.count.fetch_add(1, Ordering::Relaxed);
        s.micros.fetch_add(us, Ordering::Relaxed);
        s.max_micros.fetch_max(us, Ordering::Relaxed);
        if failed.is_some() {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.store_up.store(
            !failed.is_some_and(|e| e.kind == ErrorKind::Unavailable),
            Ordering::Relaxed,
        );
    }

    /// The numbers now, in Consul's summary shape.
    pub(crate) fn summary(&self) -> Summary {
        let mut counters = Vec::new();
        for (route, method, code, n) in self.request_counts() {
            counters.push(Sample::count(
                "tribune.agent.http.requests",
                n,
                [
                    ("route", route),
                    ("method", method),
                    ("code", code.to_string()),
                ],
            ));
        }
        counters.push(Sample::count(
            "tribune.agent.acl.denied",
            self.denied.load(Ordering::Relaxed),
            [],
        ));
        let mut samples = Vec::new();
        for op in StoreOp::ALL {
            let s = &self.store[op as usize];
            let count = s.count.load(Ordering::Relaxed);
            counters.push(Sample::count(
                "tribune.agent.store.errors",
                s.errors.load(Ordering::Relaxed),
                [("op", op.as_str().to_string())],
            ));
            let sum_ms = s.micros.load(Ordering::Relaxed) as f64 / 1000.0;
            samples.push(Sample {
                name: "tribune.agent.store.ms".into(),
                count,
                rate: 0.0,
                sum: sum_ms,
                min: 0.0,
                max: s.max_micros.load(Ordering::Relaxed) as f64 / 1000.0,
                mean: if count == 0 {
                    0.0
                } else {
                    sum_ms / count as f64
                },
                stddev: 0.0,
                labels: BTreeMap::from([("op".to_string(), op.as_str().to_string())]),
            });
        }
        Summary {
            timestamp: now_text(),
            gauges: vec![
                Gauge {
                    name: "tribune.agent.blocking_queries".into(),
                    value: self.blocking.load(Ordering::Relaxed).max(0) as f64,
                    labels: BTreeMap::new(),
                },
                Gauge {
                    name: "tribune.agent.store.up".into(),
                    value: if self.store_up.load(Ordering::Relaxed) {
                        1.0
                    } else {
                        0.0
                    },
                    labels: BTreeMap::new(),
                },
            ],
            points: Vec::new(),
            counters,
            samples,
        }
    }

    /// The numbers as OpenMetrics text.
    pub(crate) fn openmetrics(self: &Arc<Self>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Collect(self.clone())));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `time`'s text of now, as Consul's summary stamps it (`2026-12-07 06:50:00 +0000 UTC`).
fn now_text() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] +0000 UTC"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// `GET /v1/agent/metrics` (Consul's `MetricsSummary`).
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "Gauges")]
    pub gauges: Vec<Gauge>,
    #[serde(rename = "Points")]
    pub points: Vec<serde_json::Value>,
    #[serde(rename = "Counters")]
    pub counters: Vec<Sample>,
    #[serde(rename = "Samples")]
    pub samples: Vec<Sample>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Gauge {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Value")]
    pub value: f64,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

/// A counter or a timing (Consul's `SampledValue`).
#[derive(Debug, Serialize)]
pub(crate) struct Sample {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Count")]
    pub count: u64,
    #[serde(rename = "Rate")]
    pub rate: f64,
    #[serde(rename = "Sum")]
    pub sum: f64,
    #[serde(rename = "Min")]
    pub min: f64,
    #[serde(rename = "Max")]
    pub max: f64,
    #[serde(rename = "Mean")]
    pub mean: f64,
    #[serde(rename = "Stddev")]
    pub stddev: f64,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

impl Sample {
    fn count<const N: usize>(name: &str, n: u64, labels: [(&str, String); N]) -> Sample {
        Sample {
            name: name.into(),
            count: n,
            rate: 0.0,
            sum: n as f64,
            min: 1.0,
            max: 1.0,
            mean: 1.0,
            stddev: 0.0,
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// Encodes [`Metrics`] for the OpenMetrics text (`tribune_agent_*` families).
#[derive(Debug)]
struct Collect(Arc<Metrics>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl prometheus_client::collector::Collector for Collect {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let counter = ConstCounter::new(0u64).metric_type();
        let gauge = ConstGauge::new(0i64).metric_type();
        let mut family = encoder.encode_descriptor(
            "tribune_agent_http_requests",
            "API answers by route pattern, method and status code",
            None,
            counter,
        )?;
        for (route, method, code, n) in m.request_counts() {
            let labels = RequestLabels {
                route,
                method,
                code: code.to_string(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        ConstCounter::new(m.denied.load(Ordering::Relaxed)).encode(encoder.encode_descriptor(
            "tribune_agent_acl_denied",
            "API answers 403: a token refused or lacking a permission",
            None,
            counter,
        )?)?;
        ConstGauge::new(m.blocking.load(Ordering::Relaxed).max(0)).encode(
            encoder.encode_descriptor(
                "tribune_agent_blocking_queries",
                "Blocking queries waiting now (sidecar watches among them)",
                None,
                gauge,
            )?,
        )?;
        ConstGauge::new(i64::from(m.store_up.load(Ordering::Relaxed))).encode(
            encoder.encode_descriptor(
                "tribune_agent_store_up",
                "1 when the store answered the last operation (on etcd: a quorum), else 0",
                None,
                gauge,
            )?,
        )?;
        for (name, help, pick) in [
            (
                "tribune_agent_store_operations",
                "Store operations by kind",
                0usize,
            ),
            (
                "tribune_agent_store_errors",
                "Store operations that failed, by kind",
                1,
            ),
            (
                "tribune_agent_store_seconds",
                "Time spent in store operations, by kind (seconds)",
                2,
            ),
        ] {
            if pick == 2 {
                let mut family = encoder.encode_descriptor(name, help, None, counter)?;
                for op in StoreOp::ALL {
                    let s = &m.store[op as usize];
                    let secs = s.micros.load(Ordering::Relaxed) as f64 / 1e6;
                    ConstCounter::new(secs)
                        .encode(family.encode_family(&OpLabel { op: op.as_str() })?)?;
                }
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, counter)?;
            for op in StoreOp::ALL {
                let s = &m.store[op as usize];
                let n = if pick == 0 { &s.count } else { &s.errors };
                ConstCounter::new(n.load(Ordering::Relaxed))
                    .encode(family.encode_family(&OpLabel { op: op.as_str() })?)?;
            }
        }
        Ok(())
    }
}

/// The agent's store, counted and timed per operation.
pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub(crate) fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    fn timed<'a, T: Send + 'a>(
        &'a self,
        op: StoreOp,
        fut: StoreFuture<'a, T>,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let started = Instant::now();
            let out = fut.await;
            self.metrics.store_op(op, started, out.as_ref().err());
            out
        })
    }
}

impl Store for MeteredStore {
    fn get<'a>(&'a self, table: &'a str, key: &'a str) -> StoreFuture<'a, Option<Record>> {
        self.timed(StoreOp::Get, self.inner.get(table, key))
    }
    fn list<'a>(&'a self, table: &'a str) -> StoreFuture<'a, Vec<Record>> {
        self.timed(StoreOp::List, self.inner.list(table))
    }
    fn dump(&self) -> StoreFuture<'_, tribune_store::Dump> {
        self.timed(StoreOp::List, self.inner.dump())
    }
    fn max_ops(&self) -> usize {
        self.inner.max_ops()
    }
    fn table_index<'a>(&'a self, table: &'a str) -> StoreFuture<'a, u64> {
        self.timed(StoreOp::TableIndex, self.inner.table_index(table))
    }
    fn table_indexes<'a>(&'a self, tables: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        self.timed(StoreOp::TableIndexes, self.inner.table_indexes(tables))
    }
    fn index(&self) -> StoreFuture<'_, u64> {
        self.timed(StoreOp::Index, self.inner.index())
    }
    fn apply<'a>(&'a self, ops: &'a [Op]) -> StoreFuture<'a, Applied> {
        self.timed(StoreOp::Apply, self.inner.apply(ops))
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }
    fn membership<'a>(&'a self, own: &'a str) -> StoreFuture<'a, Membership> {
        self.timed(StoreOp::Membership, self.inner.membership(own))
    }
    fn changes_since<'a>(&'a self, table: &'a str, index: u64) -> StoreFuture<'a, Option<Changes>> {
        self.timed(
            StoreOp::ChangesSince,
            self.inner.changes_since(table, index),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ops_have_their_own_slots() {
        for (i, op) in StoreOp::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i, "{}", op.as_str());
        }
    }
}
