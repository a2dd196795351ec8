//! Tribune's state store: named tables of `key -> value` records, each stamped with
//! the index of the write that created it and of the last one that changed it
//! (Consul's `CreateIndex`/`ModifyIndex`).
//!
//! - Every write that changes something gets the next index; a write that changes
//!   nothing (same bytes) does not bump it.
//! - A write is a batch of operations applied atomically; each may carry a
//!   check-and-set condition, and if any fails nothing is written.
//! - Watchers ([`Store::subscribe`]) are woken after each committed write; that is
//!   what blocking queries wait on.
//!
//! [`RedbStore`] is the embedded implementation: ACID, fsync on every commit, so an
//! acknowledged write survives `kill -9`. The [`Store`] trait is what the API layer
//! sees; `tribune-store-etcd` is the distributed implementation (several agents over
//! one etcd cluster), and the trait is asynchronous so that a network round trip
//! never blocks the agent's threads.

#![forbid(unsafe_code)]

/// The contract every [`Store`] meets, as a suite (the `conformance` feature).
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod plan;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use tokio::sync::watch;

/// `"<table>\0<key>"` -> 16-byte header (create, modify index, little endian) + value.
const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
/// `"index"` -> last index; `"table\0<table>"` -> last index that touched the table.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const INDEX_KEY: &str = "index";
/// `"format"` -> the store's format version ([`FORMAT_VERSION`]); absent in stores
/// written before formats were numbered (format 0).
const FORMAT_KEY: &str = "format";

/// The format of the stored state this build writes. A store of an older format is
/// migrated when opened (0 -> 1: the version is recorded; the records are unchanged);
/// a newer one is refused ([`check_format`]).
pub const FORMAT_VERSION: u64 = 1;

/// Whether this build may open a store of format `found` (`None`: unnumbered, 0).
pub fn check_format(found: Option<u64>) -> Result<(), StoreError> {
    match found {
        Some(v) if v > FORMAT_VERSION => Err(StoreError::internal(format!(
            "the stored state has format {v}, written by a newer Tribune; this build reads formats up to {FORMAT_VERSION}: run the newer tribune (or restore a snapshot this version took)"
        ))),
        _ => Ok(()),
    }
}

/// One stored value with its indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A check-and-set condition on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// No condition.
    Any,
    /// Only if the key does not exist (Consul `?cas=0`).
    Absent,
    /// Only if the key exists with this `ModifyIndex` (Consul `?cas=N`).
    ModifyIndex(u64),
}

/// One operation of an atomic write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        table: String,
        key: String,
        value: Vec<u8>,
        cas: Cas,
    },
    Delete {
        table: String,
        key: String,
        cas: Cas,
    },
    /// A condition only: the write goes through only while `table`'s index is still
    /// `index` (a read-check-write sequence guards everything its check read). When it
    /// fails, [`Applied::stale`] is set and the caller re-reads and retries.
    Unchanged { table: String, index: u64 },
    /// A condition only: the write goes through only while the record `key` still has
    /// ModifyIndex `index` (0: still absent). A narrower guard than [`Op::Unchanged`]
    /// for a check that read a few records; fails the same way ([`Applied::stale`]).
    UnchangedKey {
        table: String,
        key: String,
        index: u64,
    },
}

impl Op {
    pub fn put(table: &str, key: &str, value: Vec<u8>, cas: Cas) -> Op {
        Op::Put {
            table: table.into(),
            key: key.into(),
            value,
            cas,
        }
    }
    pub fn delete(table: &str, key: &str, cas: Cas) -> Op {
        Op::Delete {
            table: table.into(),
            key: key.into(),
            cas,
        }
    }
    pub fn unchanged(table: &str, index: u64) -> Op {
        Op::Unchanged {
            table: table.into(),
            index,
        }
    }
    pub fn unchanged_key(table: &str, key: &str, index: u64) -> Op {
        Op::UnchangedKey {
            table: table.into(),
            key: key.into(),
            index,
        }
    }
}

/// Outcome of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// False when a check-and-set condition failed (nothing was written).
    pub ok: bool,
    /// False when every operation was a no-op (index not bumped).
    pub changed: bool,
    /// The store index after the write.
    pub index: u64,
    /// True when `ok` is false because an [`Op::Unchanged`] guard failed (something
    /// the caller's check read has changed), not a check-and-set condition.
    pub stale: bool,
}

impl Applied {
    fn refused(index: u64, stale: bool) -> Applied {
        Applied {
            ok: false,
            changed: false,
            index,
            stale,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The store can't be reached or has no quorum; retrying later may succeed
    /// (the API answers 503).
    Unavailable,
    /// Anything else (a corrupt record, a local I/O error).
    Internal,
}

#[derive(Debug)]
pub struct StoreError {
    pub kind: ErrorKind,
    message: String,
}

impl StoreError {
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> StoreError {
        StoreError {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

fn err(e: impl fmt::Display) -> StoreError {
    StoreError::internal(e.to_string())
}

/// Creates `path` with mode 0600 when it does not exist; refuses an existing file
/// with any group or world permission bit.
#[cfg(unix)]
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::internal(format!(
                    "{} is open to other users (mode {mode:04o}) and holds the CA key and every ACL secret: run `chmod 600 {}` and start again",
                    path.display(),
                    path.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(drop)
            .map_err(|e| StoreError::internal(format!("creating {}: {e}", path.display()))),
        Err(e) => Err(StoreError::internal(format!("{}: {e}", path.display()))),
    }
}

#[cfg(not(unix))]
fn private_file(_: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// A store operation in flight.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Who serves the store, for `/v1/status/leader` and `/v1/status/peers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The member that orders writes (`host:port`), empty when there is none (no quorum).
    pub leader: String,
    /// Every member that answered (`host:port`).
    pub peers: Vec<String>,
}

/// What changed in a table since an index ([`Store::changes_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The table's index now.
    pub index: u64,
    /// Every record written after the index asked for (ModifyIndex greater).
    pub changed: Vec<Record>,
    /// How many records the table holds now (fewer than the old ones plus the new
    /// ones means some were deleted).
    pub count: usize,
}

/// The whole state at one point in time ([`Store::dump`]): what a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// The store's index when it was read.
    pub index: u64,
    /// Every table that holds records or was ever written, by name.
    pub tables: std::collections::BTreeMap<String, TableDump>,
}

/// One table of a [`Dump`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDump {
    /// The last index that changed the table.
    pub index: u64,
    /// Its records, ordered by key.
    pub records: Vec<Record>,
}

/// What the API layer needs from a store. Reads are linearizable: they see every
/// write acknowledged before they started, whichever agent made it.
pub trait Store: Send + Sync + 'static {
    fn get<'a>(&'a self, table: &'a str, key: &'a str) -> StoreFuture<'a, Option<Record>>;
    /// Every record of a table, ordered by key.
    fn list<'a>(&'a self, table: &'a str) -> StoreFuture<'a, Vec<Record>>;
    /// The last index that changed `table` (0 if never).
    fn table_index<'a>(&'a self, table: &'a str) -> StoreFuture<'a, u64>;
    /// The last index that changed each of `tables`, read at one point in time (one
    /// round trip where the store is remote).
    fn table_indexes<'a>(&'a self, tables: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(tables.len());
            for t in tables {
                out.push(self.table_index(t).await?);
            }
            Ok(out)
        })
    }
    /// The last index of any write.
    fn index(&self) -> StoreFuture<'_, u64>;
    /// Applies `ops` atomically.
    fn apply<'a>(&'a self, ops: &'a [Op]) -> StoreFuture<'a, Applied>;
    /// Receives a store index after committed writes (of any agent sharing the store);
    /// a receiver that wakes must re-read what it waits on.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// The members serving the store. `own` is this agent's address, which an embedded
    /// store answers with.
    fn membership<'a>(&'a self, own: &'a str) -> StoreFuture<'a, Membership>;
    /// The records of `table` changed since `index`, read at one point in time, when
    /// the store can tell them without reading the whole table (`None`: read it).
    /// Lets an agent that did not make a write catch its cache up cheaply.
    fn changes_since<'a>(&'a self, table: &'a str, index: u64) -> StoreFuture<'a, Option<Changes>> {
        let _ = (table, index);
        Box::pin(std::future::ready(Ok(None)))
    }
    /// Every record of every table, each table's index and the store's index, read at
    /// one point in time while writes go on (a snapshot).
    fn dump(&self) -> StoreFuture<'_, Dump>;
    /// The most operations one [`Store::apply`] should carry (a restore writes in
    /// batches of this size where the store limits a transaction).
    fn max_ops(&self) -> usize {
        usize::MAX
    }
}

fn record_key(table: &str, key: &str) -> String {
    format!("{table}\0{key}")
}

fn table_meta_key(table: &str) -> String {
    format!("table\0{table}")
}

fn encode(create: u64, modify: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modify.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<Record, StoreError> {
    if raw.len() < 16 {
        return Err(StoreError::internal(format!("corrupt record {key:?}")));
    }
    let mut c = [0u8; 8];
    let mut m = [0u8; 8];
    c.copy_from_slice(&raw[..8]);
    m.copy_from_slice(&raw[8..16]);
    Ok(Record {
        key: key.to_string(),
        value: raw[16..].to_vec(),
        create_index: u64::from_le_bytes(c),
        modify_index: u64::from_le_bytes(m),
    })
}

/// The embedded, durable store.
pub struct RedbStore {
    db: Database,
    /// Serializes writers so the index sequence has no gaps or races.
    write_lock: Mutex<()>,
    notify: watch::Sender<u64>,
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`. The file holds the CA's private
    /// key and every ACL secret in clear: it is created readable by its owner alone
    /// (0600), and an existing one that others may read or write is refused.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        private_file(path)?;
        let db = Database::create(path).map_err(err)?;
        Self::init(db)
    }

    /// An ephemeral store in memory (`tribune agent -dev`).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(err)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(err)?;
        {
            txn.open_table(RECORDS).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let found = meta.get(FORMAT_KEY).map_err(err)?.map(|v| v.value());
            check_format(found)?;
            if found != Some(FORMAT_VERSION) {
                // Migration: 0 -> 1 records the version (records unchanged; the index
                // does not move, so no watcher wakes).
                meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        let store = RedbStore {
            db,
            write_lock: Mutex::new(()),
            notify: watch::channel(0).0,
        };
        let index = store.index_now()?;
        store.notify.send_replace(index);
        Ok(store)
    }
}

impl Store for RedbStore {
    fn get<'a>(&'a self, table: &'a str, key: &'a str) -> StoreFuture<'a, Option<Record>> {
        Box::pin(std::future::ready(self.get_now(table, key)))
    }
    fn list<'a>(&'a self, table: &'a str) -> StoreFuture<'a, Vec<Record>> {
        Box::pin(std::future::ready(self.list_now(table)))
    }
    fn table_index<'a>(&'a self, table: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(std::future::ready(self.table_index_now(table)))
    }
    fn table_indexes<'a>(&'a self, tables: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(std::future::ready(self.table_indexes_now(tables)))
    }
    fn index(&self) -> StoreFuture<'_, u64> {
        Box::pin(std::future::ready(self.index_now()))
    }
    fn apply<'a>(&'a self, ops: &'a [Op]) -> StoreFuture<'a, Applied> {
        Box::pin(std::future::ready(self.apply_now(ops)))
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }
    fn membership<'a>(&'a self, own: &'a str) -> StoreFuture<'a, Membership> {
        Box::pin(std::future::ready(Ok(Membership {
            leader: own.to_string(),
            peers: vec![own.to_string()],
        })))
    }
    fn dump(&self) -> StoreFuture<'_, Dump> {
        Box::pin(std::future::ready(self.dump_now()))
    }
}

/// The embedded store's operations, synchronous (a local transaction, no network).
impl RedbStore {
    pub fn get_now(&self, table: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(RECORDS).map_err(err)?;
        let k = record_key(table, key);
        match t.get(k.as_str()).map_err(err)? {
            None => Ok(None),
            Some(v) => decode(key, v.value()).map(Some),
        }
    }

    pub fn list_now(&self, table: &str) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(RECORDS).map_err(err)?;
        let start = format!("{table}\0");
        let end = format!("{table}\u{1}");
        let mut out = Vec::new();
        for item in t.range(start.as_str()..end.as_str()).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let key = &k.value()[start.len()..];
            out.push(decode(key, v.value())?);
        }
        Ok(out)
    }

    pub fn table_index_now(&self, table: &str) -> Result<u64, StoreError> {
        Ok(self
            .table_indexes_now(&[table])?
            .first()
            .copied()
            .unwrap_or(0))
    }

    /// The indexes of `tables`, read in one transaction.
    pub fn table_indexes_now(&self, tables: &[&str]) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(META).map_err(err)?;
        tables
            .iter()
            .map(|table| {
                Ok(t.get(table_meta_key(table).as_str())
                    .map_err(err)?
                    .map(|v| v.value())
                    .unwrap_or(0))
            })
            .collect()
    }

    /// [`Store::dump`]: one read transaction.
    pub fn dump_now(&self) -> Result<Dump, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let records = txn.open_table(RECORDS).map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        let mut dump = Dump {
            index: meta
                .get(INDEX_KEY)
                .map_err(err)?
                .map(|v| v.value())
                .unwrap_or(0),
            tables: Default::default(),
        };
        for item in meta.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if let Some(table) = k.value().strip_prefix("table\0") {
                dump.tables.entry(table.to_string()).or_default().index = v.value();
            }
        }
        for item in records.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let full = k.value();
            let Some((table, key)) = full.split_once('\0') else {
                return Err(StoreError::internal(format!("corrupt record key {full:?}")));
            };
            dump.tables
                .entry(table.to_string())
                .or_default()
                .records
                .push(decode(key, v.value())?);
        }
        Ok(dump)
    }

    pub fn index_now(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(META).map_err(err)?;
        Ok(t.get(INDEX_KEY)
            .map_err(err)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    pub fn apply_now(&self, ops: &[Op]) -> Result<Applied, StoreError> {
        let _guard = self
            .write_lock
            .lock()
            .map_err(|_| StoreError::internal("write lock poisoned"))?;
        let txn = self.db.begin_write().map_err(err)?;
        let outcome = {
            let mut records = txn.open_table(RECORDS).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let current = meta
                .get(INDEX_KEY)
                .map_err(err)?
                .map(|v| v.value())
                .unwrap_or(0);
            let next = current + 1;
            let planned = plan::plan(
                ops,
                &TxnView {
                    records: &records,
                    meta: &meta,
                },
            )?;
            match planned {
                Err(why) => Applied::refused(current, why == plan::Refused::Stale),
                Ok(p) if p.writes.is_empty() => Applied {
                    ok: true,
                    changed: false,
                    index: current,
                    stale: false,
                },
                Ok(p) => {
                    for write in &p.writes {
                        match write {
                            plan::Write::Put {
                                table,
                                key,
                                value,
                                create_index,
                            } => {
                                let create = create_index.unwrap_or(next);
                                records
                                    .insert(
                                        record_key(table, key).as_str(),
                                        encode(create, next, value).as_slice(),
                                    )
                                    .map_err(err)?;
                            }
                            plan::Write::Delete { table, key } => {
                                records
                                    .remove(record_key(table, key).as_str())
                                    .map_err(err)?;
                            }
                        }
                    }
                    meta.insert(INDEX_KEY, next).map_err(err)?;
                    for table in &p.touched {
                        meta.insert(table_meta_key(table).as_str(), next)
                            .map_err(err)?;
                    }
                    Applied {
                        ok: true,
                        changed: true,
                        index: next,
                        stale: false,
                    }
                }
            }
        };
        if outcome.changed {
            txn.commit().map_err(err)?;
            self.notify.send_replace(outcome.index);
        } else {
            txn.abort().map_err(err)?;
        }
        Ok(outcome)
    }
}

/// The embedded store's state inside a write transaction, as [`plan::plan`] reads it.
struct TxnView<'t, 'txn> {
    records: &'t redb::Table<'txn, &'static str, &'static [u8]>,
    meta: &'t redb::Table<'txn, &'static str, u64>,
}

impl plan::View for TxnView<'_, '_> {
    fn record(&self, table: &str, key: &str) -> Result<Option<plan::Existing<'_>>, StoreError> {
        match self
            .records
            .get(record_key(table, key).as_str())
            .map_err(err)?
        {
            None => Ok(None),
            Some(v) => {
                let r = decode(key, v.value())?;
                Ok(Some(plan::Existing {
                    value: std::borrow::Cow::Owned(r.value),
                    create_index: r.create_index,
                    modify_index: r.modify_index,
                }))
            }
        }
    }
    fn table_index(&self, table: &str) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(table_meta_key(table).as_str())
            .map_err(err)?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_store_meets_the_store_contract() {
        let s = RedbStore::in_memory().unwrap();
        conformance::run_all(&s).await;
    }

    #[test]
    fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let put = |v: &str| Op::put("t", "a", v.as_bytes().to_vec(), Cas::Any);
        {
            let s = RedbStore::open(&path).unwrap();
            s.apply_now(&[put("1")]).unwrap();
            s.apply_now(&[put("2")]).unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.index_now().unwrap(), 2);
        assert_eq!(*s.subscribe().borrow(), 2);
        assert_eq!(s.get_now("t", "a").unwrap().unwrap().modify_index, 2);
    }

    /// Upgrades (issue #41): a store written before formats were numbered opens and
    /// gets the current format; one of a newer format is refused, naming both, and
    /// left as it was.
    #[test]
    fn the_format_is_recorded_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            s.apply_now(&[Op::put("t", "a", b"1".to_vec(), Cas::Any)])
                .unwrap();
            // As a build before format numbers left it.
            let txn = s.db.begin_write().unwrap();
            txn.open_table(META).unwrap().remove(FORMAT_KEY).unwrap();
            txn.commit().unwrap();
        }
        {
            let s = RedbStore::open(&path).unwrap();
            assert_eq!(s.get_now("t", "a").unwrap().unwrap().value, b"1");
            assert_eq!(s.index_now().unwrap(), 1, "the migration wrote no record");
            let txn = s.db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            assert_eq!(
                meta.get(FORMAT_KEY).unwrap().map(|v| v.value()),
                Some(FORMAT_VERSION)
            );
            drop(meta);
            drop(txn);
            let txn = s.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(FORMAT_KEY, FORMAT_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let e = RedbStore::open(&path).err().unwrap().to_string();
        assert!(
            e.contains(&format!("format {}", FORMAT_VERSION + 1))
                && e.contains("newer Tribune")
                && e.contains(&format!("up to {FORMAT_VERSION}")),
            "{e}"
        );
    }

    /// Hardening round 3, item 2: `state.redb` (CA key, ACL secrets) was created 0644.
    #[cfg(unix)]
    #[test]
    fn the_state_file_is_private_to_its_owner_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        drop(RedbStore::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = RedbStore::open(&path).err().unwrap().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
    }
}
