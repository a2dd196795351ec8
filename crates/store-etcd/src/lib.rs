//! The [`Store`] over an etcd v3 cluster: any number of stateless agents sharing one
//! etcd are one control plane (`tribune agent -etcd-endpoints ...`).
//!
//! ```text
//!  <prefix>data/<table>/<key>   one record; CreateIndex = create_revision,
//!                               ModifyIndex = mod_revision
//!  <prefix>index/<table>        written in the same transaction as every change of
//!                               <table>: its mod_revision is the table's index
//! ```
//!
//! - Reads are etcd's linearizable ranges: they see every write acknowledged before
//!   they started, through any agent. Without quorum they time out (503), never
//!   answer stale data.
//! - A write is read-then-commit: one transaction reads every key it names (and the
//!   index keys of its guards) at one revision, the conditions are checked exactly as
//!   the embedded store checks them, and the commit compares the mod_revision of
//!   everything read. A concurrent write in between fails the compare and the write
//!   is evaluated again on the new state, so the outcome is the one a serial
//!   execution gives (the same semantics as [`tribune_store::RedbStore`]).
//! - One watch on the prefix wakes blocking queries; when it breaks it resumes from
//!   the last revision it saw, and when that revision has been compacted it re-reads
//!   the current revision and wakes every waiter (each re-reads what it waits on),
//!   so no change is missed.

#![forbid(unsafe_code)]

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tribune_store::plan::{plan, Existing, Refused, View, Write};
use tribune_store::{
    Applied, Changes, Dump, Membership, Op, Record, Store, StoreError, StoreFuture,
};

/// How an agent reaches etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:port` or `https://host:port`).
    pub endpoints: Vec<String>,
    /// Every key Tribune writes starts with this (default `/tribune/`).
    pub prefix: String,
    /// CA bundle that signs the etcd members' certificates (TLS).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, when etcd requires client authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Longest a single etcd request may take before the API answers 503.
    pub request_timeout: Duration,
}

pub const DEFAULT_PREFIX: &str = "/tribune/";

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            prefix: DEFAULT_PREFIX.into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            request_timeout: Duration::from_secs(4),
        }
    }
}

/// Attempts of one write's read-then-commit before it reports contention.
const COMMIT_ATTEMPTS: u32 = 64;

pub struct EtcdStore {
    client: Client,
    prefix: String,
    timeout: Duration,
    notify: watch::Sender<u64>,
    /// Times the watch fell behind compaction and re-read the current revision.
    resyncs: std::sync::atomic::AtomicU64,
    /// The TLS settings, for the per-member probes of `/v1/status/peers`.
    tls: Option<TlsOptions>,
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match &e {
        E::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic_code::InvalidArgument
                    | tonic_code::FailedPrecondition
                    | tonic_code::OutOfRange
            ) =>
        {
            StoreError::internal(format!("etcd refused the request: {}", s.message()))
        }
        E::InvalidArgs(m) => StoreError::internal(format!("etcd: {m}")),
        _ => StoreError::unavailable(format!("etcd unavailable: {e}")),
    }
}

/// tonic's status codes (etcd-client's error carries tonic's status).
mod tonic_code {
    pub use tonic::Code::*;
}

fn read_pem(path: &PathBuf, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| {
        StoreError::internal(format!(
            "Failed to read {what} file {:?}: {e}",
            path.display().to_string()
        ))
    })
}

impl EtcdStore {
    /// Connects to the cluster and starts the watch that wakes blocking queries.
    /// Must run inside a tokio runtime.
    pub async fn connect(config: &EtcdConfig) -> Result<Arc<EtcdStore>, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::internal("etcd: no endpoints given"));
        }
        if !config.prefix.ends_with('/') {
            return Err(StoreError::internal(format!(
                "etcd prefix {:?} must end with '/'",
                config.prefix
            )));
        }
        let mut options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let mut tls_used = None;
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca, "etcd CA")?));
            }
            match (&config.cert_file, &config.key_file) {
                (Some(c), Some(k)) => {
                    tls = tls.identity(Identity::from_pem(
                        read_pem(c, "etcd client certificate")?,
                        read_pem(k, "etcd client key")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::internal(
                        "etcd: -etcd-cert and -etcd-key go together",
                    ))
                }
            }
            tls_used = Some(tls.clone());
            options = options.with_tls(tls);
        }
        let endpoints: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else if config.ca_file.is_some() {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let client = tokio::time::timeout(
            config.request_timeout + Duration::from_secs(2),
            Client::connect(endpoints.clone(), Some(options)),
        )
        .await
        .map_err(|_| {
            StoreError::unavailable(format!(
                "etcd unavailable: no answer from {} within {:?}",
                endpoints.join(","),
                config.request_timeout
            ))
        })?
        .map_err(unavailable)?;
        let store = Arc::new(EtcdStore {
            client,
            prefix: config.prefix.clone(),
            timeout: config.request_timeout,
            notify: watch::channel(0).0,
            resyncs: std::sync::atomic::AtomicU64::new(0),
            tls: tls_used,
        });
        store.check_format().await?;
        let start = store.revision().await?;
        store.notify.send_replace(start);
        let watcher = Arc::downgrade(&store);
        tokio::spawn(watch_loop(watcher, start));
        Ok(store)
    }

    /// The stored state's format (`<prefix>format`): a newer one is refused
    /// ([`tribune_store::check_format`]); an unnumbered one (format 0) gets the current
    /// number, written once whichever agent comes first.
    async fn check_format(&self) -> Result<(), StoreError> {
        let key = format!("{}format", self.prefix);
        let k = key.clone();
        let got = self
            .retried(|mut kv| {
                let k = k.clone();
                async move { kv.get(k, None).await }
            })
            .await?;
        let found = match got.kvs().first() {
            None => None,
            Some(kv) => Some(
                std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        StoreError::internal(format!("etcd key {key}: not a format number"))
                    })?,
            ),
        };
        tribune_store::check_format(found)?;
        if found != Some(tribune_store::FORMAT_VERSION) {
            let value = tribune_store::FORMAT_VERSION.to_string();
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    got.kvs().first().map_or(0, |kv| kv.mod_revision()),
                )])
                .and_then([TxnOp::put(key.clone(), value, None)]);
            let mut kv = self.client.kv_client();
            self.bounded(kv.txn(txn)).await?;
        }
        Ok(())
    }

    /// How many times the watch fell behind etcd's compaction and resynchronized.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn data_prefix(&self, table: &str) -> String {
        format!("{}data/{table}/", self.prefix)
    }

    fn record_key(&self, table: &str, key: &str) -> String {
        format!("{}data/{table}/{key}", self.prefix)
    }

    fn index_key(&self, table: &str) -> String {
        format!("{}index/{table}", self.prefix)
    }

    /// Bounds one request: the client's own timeout, and this as a backstop.
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), f).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StoreError::unavailable(format!(
                "etcd unavailable: no answer within {:?} (is a quorum of members up?)",
                self.timeout
            ))),
        }
    }

    /// A request that is safe to repeat (a read), retried while etcd is unavailable
    /// (a member down behind the balancer, a leader election) for at most the
    /// request timeout in all; then the last error.
    async fn retried<T, F, Fut>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(etcd_client::KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(25);
        loop {
            match self.bounded(f(self.client.kv_client())).await {
                Ok(v) => return Ok(v),
                Err(e)
                    if e.kind == tribune_store::ErrorKind::Unavailable
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %e, "etcd request failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The cluster's current revision (a linearizable read).
    async fn revision(&self) -> Result<u64, StoreError> {
        let key = format!("{}index/", self.prefix);
        let resp = self
            .retried(|mut kv| {
                let key = key.clone();
                async move {
                    kv.get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(header_revision(resp.header()))
    }

    async fn get_record(&self, table: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let k = self.record_key(table, key);
        let resp = self
            .retried(|mut kv| {
                let k = k.clone();
                async move { kv.get(k, None).await }
            })
            .await?;
        Ok(resp.kvs().first().map(|kv| Record {
            key: key.to_string(),
            value: kv.value().to_vec(),
            create_index: kv.create_revision() as u64,
            modify_index: kv.mod_revision() as u64,
        }))
    }

    async fn list_records(&self, table: &str) -> Result<Vec<Record>, StoreError> {
        let prefix = self.data_prefix(table);
        let resp = self
            .retried(|mut kv| {
                let p = prefix.clone();
                async move { kv.get(p, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        // Ranges come back ordered by key bytes, as the embedded store orders them.
        records(resp.kvs(), &prefix)
    }

    /// One transaction (one revision): the table's index key, the records modified
    /// after `index`, and the number of records.
    async fn changes(&self, table: &str, index: u64) -> Result<Changes, StoreError> {
        let prefix = self.data_prefix(table);
        let index_key = self.index_key(table);
        let resp = self
            .retried(|mut kv| {
                let ops = vec![
                    TxnOp::get(index_key.clone(), None),
                    TxnOp::get(
                        prefix.clone(),
                        Some(
                            GetOptions::new()
                                .with_prefix()
                                .with_min_mod_revision(index as i64 + 1),
                        ),
                    ),
                    TxnOp::get(
                        prefix.clone(),
                        Some(GetOptions::new().with_prefix().with_count_only()),
                    ),
                ];
                async move { kv.txn(Txn::new().and_then(ops)).await }
            })
            .await?;
        let gets = get_responses(resp);
        let [idx, changed, count] = gets.as_slice() else {
            return Err(StoreError::internal("etcd: unexpected transaction answer"));
        };
        let changed = records(changed.kvs(), &prefix)?;
        Ok(Changes {
            index: idx
                .kvs()
                .first()
                .map(|kv| kv.mod_revision() as u64)
                .unwrap_or(0),
            changed,
            count: count.count().max(0) as usize,
        })
    }

    /// One transaction (one revision): every record and every table index key.
    async fn dump_all(&self) -> Result<Dump, StoreError> {
        let data = format!("{}data/", self.prefix);
        let index = format!("{}index/", self.prefix);
        let resp = self
            .retried(|mut kv| {
                let ops = vec![
                    TxnOp::get(data.clone(), Some(GetOptions::new().with_prefix())),
                    TxnOp::get(index.clone(), Some(GetOptions::new().with_prefix())),
                ];
                async move { kv.txn(Txn::new().and_then(ops)).await }
            })
            .await?;
        let revision = header_revision(resp.header());
        let gets = get_responses(resp);
        let [records, indexes] = gets.as_slice() else {
            return Err(StoreError::internal("etcd: unexpected transaction answer"));
        };
        let mut dump = Dump {
            index: revision,
            tables: BTreeMap::new(),
        };
        let name = |kv: &etcd_client::KeyValue, prefix: &str| -> Result<String, StoreError> {
            let full = kv
                .key_str()
                .map_err(|e| StoreError::internal(format!("etcd key: {e}")))?;
            Ok(full.get(prefix.len()..).unwrap_or("").to_string())
        };
        for kv in indexes.kvs() {
            let table = name(kv, &index)?;
            dump.tables.entry(table).or_default().index = kv.mod_revision() as u64;
        }
        for kv in records.kvs() {
            let rest = name(kv, &data)?;
            let Some((table, key)) = rest.split_once('/') else {
                return Err(StoreError::internal(format!("etcd: stray key {rest:?}")));
            };
            dump.tables
                .entry(table.to_string())
                .or_default()
                .records
                .push(Record {
                    key: key.to_string(),
                    value: kv.value().to_vec(),
                    create_index: kv.create_revision() as u64,
                    modify_index: kv.mod_revision() as u64,
                });
        }
        Ok(dump)
    }

    async fn table_index_of(&self, table: &str) -> Result<u64, StoreError> {
        let k = self.index_key(table);
        let resp = self
            .retried(|mut kv| {
                let k = k.clone();
                async move { kv.get(k, None).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| kv.mod_revision() as u64)
            .unwrap_or(0))
    }

    async fn apply_ops(&self, ops: &[Op]) -> Result<Applied, StoreError> {
        // Every key the write reads: the records it names and its guards' index keys.
        let mut reads: BTreeMap<String, ()> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put { table, key, .. } | Op::Delete { table, key, .. } => {
                    reads.insert(self.record_key(table, key), ());
                }
                Op::Unchanged { table, .. } => {
                    reads.insert(self.index_key(table), ());
                }
                Op::UnchangedKey { table, key, .. } => {
                    reads.insert(self.record_key(table, key), ());
                }
            }
        }
        let keys: Vec<String> = reads.into_keys().collect();
        let deadline = tokio::time::Instant::now() + self.timeout;
        for attempt in 0..COMMIT_ATTEMPTS {
            let (revision, seen) = self.read_keys(&keys).await?;
            let view = SeenView {
                store: self,
                seen: &seen,
            };
            let plan = match plan(ops, &view)? {
                Ok(p) => p,
                Err(why) => {
                    return Ok(Applied {
                        ok: false,
                        changed: false,
                        index: revision,
                        stale: why == Refused::Stale,
                    })
                }
            };
            if plan.writes.is_empty() {
                return Ok(Applied {
                    ok: true,
                    changed: false,
                    index: revision,
                    stale: false,
                });
            }
            let compares: Vec<Compare> = keys
                .iter()
                .map(|k| {
                    let rev = seen.get(k).map(|s| s.mod_revision).unwrap_or(0);
                    Compare::mod_revision(k.clone(), CompareOp::Equal, rev as i64)
                })
                .collect();
            // The index keys carry this commit's nonce, so a commit whose answer was
            // lost can be told apart from one that never happened.
            let nonce = format!("{:016x}", fastrand::u64(..));
            let mut then: Vec<TxnOp> = plan
                .writes
                .iter()
                .map(|w| match w {
                    Write::Put {
                        table, key, value, ..
                    } => TxnOp::put(self.record_key(table, key), value.to_vec(), None),
                    Write::Delete { table, key } => {
                        TxnOp::delete(self.record_key(table, key), None)
                    }
                })
                .collect();
            for table in &plan.touched {
                then.push(TxnOp::put(self.index_key(table), nonce.as_bytes(), None));
            }
            let txn = Txn::new().when(compares).and_then(then);
            let mut kv = self.client.kv_client();
            let outcome = match self.bounded(kv.txn(txn)).await {
                Ok(resp) if resp.succeeded() => Some(header_revision(resp.header())),
                Ok(_) => None,
                Err(e) => {
                    if e.kind != tribune_store::ErrorKind::Unavailable
                        || tokio::time::Instant::now() >= deadline
                    {
                        return Err(e);
                    }
                    if never_sent(&e) {
                        None
                    } else {
                        // Sent, answer lost (a member went down mid-request): find out
                        // from etcd's history whether it applied; never apply twice.
                        let index_key = self.index_key(plan.touched[0]);
                        self.committed_at(&index_key, revision, &nonce).await?
                    }
                }
            };
            if let Some(index) = outcome {
                return Ok(Applied {
                    ok: true,
                    changed: true,
                    index,
                    stale: false,
                });
            }
            // Something we read changed in between, or the commit never reached etcd:
            // evaluate again on the current state.
            tokio::time::sleep(Duration::from_micros(fastrand::u64(
                0..=200 * u64::from(attempt.min(20) + 1),
            )))
            .await;
        }
        Err(StoreError::unavailable(
            "etcd: too many concurrent writes to the same keys; retry",
        ))
    }

    /// After a commit whose answer was lost: the revision it was applied at, `None`
    /// if it was not applied (found by replaying the index key's changes since the
    /// commit's read revision and looking for its nonce). An error when that can't
    /// be known (etcd down, or the history compacted): the outcome stays unknown.
    async fn committed_at(
        &self,
        index_key: &str,
        read_revision: u64,
        nonce: &str,
    ) -> Result<Option<u64>, StoreError> {
        let k = index_key.to_string();
        let current = self
            .retried(|mut kv| {
                let k = k.clone();
                async move { kv.get(k, None).await }
            })
            .await?;
        let Some(latest) = current.kvs().first() else {
            return Ok(None);
        };
        let latest_rev = latest.mod_revision().max(0) as u64;
        if latest.value() == nonce.as_bytes() {
            return Ok(Some(latest_rev));
        }
        if latest_rev <= read_revision {
            return Ok(None);
        }
        let unknown = || {
            StoreError::unavailable(
                "etcd unavailable: a write was sent but not confirmed, and whether it applied can't be told; read the entry before retrying",
            )
        };
        let mut wc = self.client.watch_client();
        let options = WatchOptions::new().with_start_revision(read_revision as i64 + 1);
        let mut stream = self
            .bounded(wc.watch(index_key.to_string(), Some(options)))
            .await
            .map_err(|_| unknown())?;
        let scan = async {
            loop {
                let Ok(Some(resp)) = stream.message().await else {
                    return Err(unknown());
                };
                if resp.compact_revision() > 0 || resp.canceled() {
                    return Err(unknown());
                }
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    let rev = kv.mod_revision().max(0) as u64;
                    if kv.value() == nonce.as_bytes() {
                        return Ok(Some(rev));
                    }
                    if rev >= latest_rev {
                        return Ok(None);
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, scan)
            .await
            .map_err(|_| unknown())?
    }

    /// Reads `keys` in one transaction (one revision).
    async fn read_keys(
        &self,
        keys: &[String],
    ) -> Result<(u64, BTreeMap<String, Seen>), StoreError> {
        let resp = self
            .retried(|mut kv| {
                let gets: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
                async move { kv.txn(Txn::new().and_then(gets)).await }
            })
            .await?;
        let mut seen = BTreeMap::new();
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                for kv in g.kvs() {
                    if let Ok(k) = kv.key_str() {
                        seen.insert(
                            k.to_string(),
                            Seen {
                                value: kv.value().to_vec(),
                                create_revision: kv.create_revision() as u64,
                                mod_revision: kv.mod_revision() as u64,
                            },
                        );
                    }
                }
            }
        }
        Ok((header_revision(resp.header()), seen))
    }

    async fn members(&self, own: &str) -> Result<Membership, StoreError> {
        let _ = own;
        let mut cluster = self.client.cluster_client();
        let list = self.bounded(cluster.member_list()).await?;
        let mut maintenance = self.client.maintenance_client();
        let status = self.bounded(maintenance.status()).await?;
        let leader_id = status.leader();
        let mut leader = String::new();
        let mut peers = Vec::new();
        let mut probes = tokio::task::JoinSet::new();
        for m in list.members() {
            let Some(url) = m.client_urls().first().cloned() else {
                continue;
            };
            let id = m.id();
            let tls = self.tls.clone();
            probes.spawn(async move {
                let mut options = ConnectOptions::new()
                    .with_timeout(Duration::from_millis(800))
                    .with_connect_timeout(Duration::from_millis(800));
                if let Some(tls) = tls {
                    options = options.with_tls(tls);
                }
                let up = match tokio::time::timeout(
                    Duration::from_secs(1),
                    Client::connect([url.clone()], Some(options)),
                )
                .await
                {
                    Ok(Ok(mut c)) => tokio::time::timeout(Duration::from_secs(1), c.status())
                        .await
                        .is_ok_and(|r| r.is_ok()),
                    _ => false,
                };
                (id, url, up)
            });
        }
        while let Some(Ok((id, url, up))) = probes.join_next().await {
            let addr = host_port(&url);
            if id == leader_id && up {
                leader = addr.clone();
            }
            if up {
                peers.push(addr);
            }
        }
        peers.sort();
        Ok(Membership { leader, peers })
    }
}

/// The range answers of a transaction of gets, in order.
fn get_responses(resp: etcd_client::TxnResponse) -> Vec<etcd_client::GetResponse> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}

/// etcd key-values under a table's prefix as records (keys without the prefix).
fn records(kvs: &[etcd_client::KeyValue], prefix: &str) -> Result<Vec<Record>, StoreError> {
    kvs.iter()
        .map(|kv| {
            let full = kv
                .key_str()
                .map_err(|e| StoreError::internal(format!("etcd key: {e}")))?;
            Ok(Record {
                key: full.get(prefix.len()..).unwrap_or("").to_string(),
                value: kv.value().to_vec(),
                create_index: kv.create_revision() as u64,
                modify_index: kv.mod_revision() as u64,
            })
        })
        .collect()
}

/// What a write's read phase saw of one key.
struct Seen {
    value: Vec<u8>,
    create_revision: u64,
    mod_revision: u64,
}

/// The keys a write read (at one revision), as [`tribune_store::plan`] sees them.
struct SeenView<'a> {
    store: &'a EtcdStore,
    seen: &'a BTreeMap<String, Seen>,
}

impl View for SeenView<'_> {
    fn record(&self, table: &str, key: &str) -> Result<Option<Existing<'_>>, StoreError> {
        Ok(self
            .seen
            .get(&self.store.record_key(table, key))
            .map(|s| Existing {
                value: Cow::Borrowed(s.value.as_slice()),
                create_index: s.create_revision,
                modify_index: s.mod_revision,
            }))
    }
    fn table_index(&self, table: &str) -> Result<u64, StoreError> {
        Ok(self
            .seen
            .get(&self.store.index_key(table))
            .map_or(0, |s| s.mod_revision))
    }
}

/// A request that failed before reaching etcd (the connection could not be made),
/// so it certainly did not apply.
fn never_sent(e: &StoreError) -> bool {
    let m = e.message();
    m.contains("tcp connect error")
        || m.contains("Connection refused")
        || m.contains("error trying to connect")
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> u64 {
    h.map(|h| h.revision().max(0) as u64).unwrap_or(0)
}

/// `http://127.0.0.1:2379` -> `127.0.0.1:2379`.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.trim_end_matches('/').to_string()
}

/// Follows every change under the prefix and wakes blocking queries. Ends when the
/// store is dropped.
async fn watch_loop(store: std::sync::Weak<EtcdStore>, start: u64) {
    let mut seen = start;
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(s) = store.upgrade() else { return };
        let prefix = s.prefix.clone();
        let mut client = s.client.watch_client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(seen as i64 + 1);
        let stream = s.bounded(client.watch(prefix, Some(options))).await;
        drop(s);
        let mut stream = match stream {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch could not start; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let mut resync = false;
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    backoff = Duration::from_millis(50);
                    if resp.compact_revision() > 0 {
                        tracing::warn!(
                            compacted = resp.compact_revision(),
                            from = seen + 1,
                            "etcd watch fell behind compaction; re-reading"
                        );
                        resync = true;
                        break;
                    }
                    if resp.canceled() {
                        tracing::warn!(reason = resp.cancel_reason(), "etcd watch canceled");
                        break;
                    }
                    let rev = resp
                        .events()
                        .iter()
                        .filter_map(|e| e.kv().map(|kv| kv.mod_revision().max(0) as u64))
                        .max();
                    if let Some(rev) = rev {
                        if rev > seen {
                            seen = rev;
                            let Some(s) = store.upgrade() else { return };
                            s.notify.send_if_modified(|v| {
                                if rev > *v {
                                    *v = rev;
                                    true
                                } else {
                                    false
                                }
                            });
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch broken; resuming");
                    break;
                }
            }
        }
        if resync {
            // Changes between `seen` and now are gone from etcd's history: wake every
            // waiter at the current revision (each re-reads what it waits on).
            loop {
                let Some(s) = store.upgrade() else { return };
                match s.revision().await {
                    Ok(now) => {
                        seen = now;
                        s.resyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // Always wake (send_modify), even if the number did not move.
                        s.notify.send_modify(|v| *v = now.max(*v));
                        break;
                    }
                    Err(e) => {
                        drop(s);
                        tracing::warn!(error = %e, "etcd resync failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, table: &'a str, key: &'a str) -> StoreFuture<'a, Option<Record>> {
        Box::pin(self.get_record(table, key))
    }
    fn list<'a>(&'a self, table: &'a str) -> StoreFuture<'a, Vec<Record>> {
        Box::pin(self.list_records(table))
    }
    fn table_index<'a>(&'a self, table: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.table_index_of(table))
    }
    fn table_indexes<'a>(&'a self, tables: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(async move {
            let keys: Vec<String> = tables.iter().map(|t| self.index_key(t)).collect();
            let (_, seen) = self.read_keys(&keys).await?;
            Ok(keys
                .iter()
                .map(|k| seen.get(k).map(|s| s.mod_revision).unwrap_or(0))
                .collect())
        })
    }
    fn index(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.revision())
    }
    fn apply<'a>(&'a self, ops: &'a [Op]) -> StoreFuture<'a, Applied> {
        Box::pin(self.apply_ops(ops))
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }
    fn membership<'a>(&'a self, own: &'a str) -> StoreFuture<'a, Membership> {
        Box::pin(self.members(own))
    }
    fn changes_since<'a>(&'a self, table: &'a str, index: u64) -> StoreFuture<'a, Option<Changes>> {
        Box::pin(async move { self.changes(table, index).await.map(Some) })
    }
    fn dump(&self) -> StoreFuture<'_, Dump> {
        Box::pin(self.dump_all())
    }
    /// etcd refuses a transaction of more than 128 operations (`--max-txn-ops`); a
    /// write of 100 records stays under it with its compares and index keys.
    fn max_ops(&self) -> usize {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_urls_become_host_port() {
        assert_eq!(host_port("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(host_port("https://e1:2379/"), "e1:2379");
        assert_eq!(host_port("e1:2379"), "e1:2379");
    }
}
