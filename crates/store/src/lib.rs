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
//! sees, so a distributed backend (etcd) can replace it without touching the API.

#![forbid(unsafe_code)]

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use tokio::sync::watch;

/// `"<table>\0<key>"` -> 16-byte header (create, modify index, little endian) + value.
const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
/// `"index"` -> last index; `"table\0<table>"` -> last index that touched the table.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const INDEX_KEY: &str = "index";

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
}

#[derive(Debug)]
pub struct StoreError(String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

fn err(e: impl fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// What the API layer needs from a store.
pub trait Store: Send + Sync + 'static {
    fn get(&self, table: &str, key: &str) -> Result<Option<Record>, StoreError>;
    /// Every record of a table, ordered by key.
    fn list(&self, table: &str) -> Result<Vec<Record>, StoreError>;
    /// The last index that changed `table` (0 if never).
    fn table_index(&self, table: &str) -> Result<u64, StoreError>;
    /// The last index of any write.
    fn index(&self) -> Result<u64, StoreError>;
    /// Applies `ops` atomically.
    fn apply(&self, ops: &[Op]) -> Result<Applied, StoreError>;
    /// Receives the store index after each committed write.
    fn subscribe(&self) -> watch::Receiver<u64>;
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
        return Err(StoreError(format!("corrupt record {key:?}")));
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
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
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
            txn.open_table(META).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        let store = RedbStore {
            db,
            write_lock: Mutex::new(()),
            notify: watch::channel(0).0,
        };
        let index = store.index()?;
        store.notify.send_replace(index);
        Ok(store)
    }
}

impl Store for RedbStore {
    fn get(&self, table: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(RECORDS).map_err(err)?;
        let k = record_key(table, key);
        match t.get(k.as_str()).map_err(err)? {
            None => Ok(None),
            Some(v) => decode(key, v.value()).map(Some),
        }
    }

    fn list(&self, table: &str) -> Result<Vec<Record>, StoreError> {
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

    fn table_index(&self, table: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(META).map_err(err)?;
        let k = table_meta_key(table);
        Ok(t.get(k.as_str())
            .map_err(err)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn index(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(META).map_err(err)?;
        Ok(t.get(INDEX_KEY)
            .map_err(err)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn apply(&self, ops: &[Op]) -> Result<Applied, StoreError> {
        let _guard = self
            .write_lock
            .lock()
            .map_err(|_| StoreError("write lock poisoned".into()))?;
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
            // Check every condition first: all or nothing.
            for op in ops {
                let (table, key, cas) = match op {
                    Op::Put {
                        table, key, cas, ..
                    }
                    | Op::Delete { table, key, cas } => (table, key, *cas),
                };
                let existing = match records.get(record_key(table, key).as_str()).map_err(err)? {
                    None => None,
                    Some(v) => Some(decode(key, v.value())?),
                };
                let holds = match cas {
                    Cas::Any => true,
                    Cas::Absent => existing.is_none(),
                    Cas::ModifyIndex(i) => existing.as_ref().is_some_and(|r| r.modify_index == i),
                };
                if !holds {
                    return Ok(Applied {
                        ok: false,
                        changed: false,
                        index: current,
                    });
                }
            }
            let mut touched: Vec<&str> = Vec::new();
            for op in ops {
                match op {
                    Op::Put {
                        table, key, value, ..
                    } => {
                        let rk = record_key(table, key);
                        let existing = match records.get(rk.as_str()).map_err(err)? {
                            None => None,
                            Some(v) => Some(decode(key, v.value())?),
                        };
                        if existing.as_ref().is_some_and(|r| &r.value == value) {
                            continue;
                        }
                        let create = existing.map(|r| r.create_index).unwrap_or(next);
                        records
                            .insert(rk.as_str(), encode(create, next, value).as_slice())
                            .map_err(err)?;
                        touched.push(table);
                    }
                    Op::Delete { table, key, .. } => {
                        let rk = record_key(table, key);
                        if records.remove(rk.as_str()).map_err(err)?.is_some() {
                            touched.push(table);
                        }
                    }
                }
            }
            if touched.is_empty() {
                Applied {
                    ok: true,
                    changed: false,
                    index: current,
                }
            } else {
                meta.insert(INDEX_KEY, next).map_err(err)?;
                for table in touched {
                    meta.insert(table_meta_key(table).as_str(), next)
                        .map_err(err)?;
                }
                Applied {
                    ok: true,
                    changed: true,
                    index: next,
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

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: &str, key: &str, value: &str, cas: Cas) -> Op {
        Op::Put {
            table: table.into(),
            key: key.into(),
            value: value.as_bytes().to_vec(),
            cas,
        }
    }

    #[test]
    fn writes_get_increasing_indexes_and_keep_create_index() {
        let s = RedbStore::in_memory().unwrap();
        let a = s.apply(&[put("t", "a", "1", Cas::Any)]).unwrap();
        assert_eq!((a.ok, a.changed, a.index), (true, true, 1));
        let b = s.apply(&[put("t", "a", "2", Cas::Any)]).unwrap();
        assert_eq!(b.index, 2);
        let r = s.get("t", "a").unwrap().unwrap();
        assert_eq!(
            (r.create_index, r.modify_index, r.value.as_slice()),
            (1, 2, b"2".as_slice())
        );
        assert_eq!(s.table_index("t").unwrap(), 2);
        assert_eq!(s.table_index("other").unwrap(), 0);
    }

    #[test]
    fn a_write_that_changes_nothing_does_not_bump_the_index() {
        let s = RedbStore::in_memory().unwrap();
        s.apply(&[put("t", "a", "1", Cas::Any)]).unwrap();
        let again = s.apply(&[put("t", "a", "1", Cas::Any)]).unwrap();
        assert_eq!((again.ok, again.changed, again.index), (true, false, 1));
        let del = s
            .apply(&[Op::Delete {
                table: "t".into(),
                key: "missing".into(),
                cas: Cas::Any,
            }])
            .unwrap();
        assert_eq!((del.changed, del.index), (false, 1));
    }

    #[test]
    fn check_and_set_is_all_or_nothing() {
        let s = RedbStore::in_memory().unwrap();
        assert!(s.apply(&[put("t", "a", "1", Cas::Absent)]).unwrap().ok);
        assert!(!s.apply(&[put("t", "a", "2", Cas::Absent)]).unwrap().ok);
        assert!(
            !s.apply(&[put("t", "a", "2", Cas::ModifyIndex(7))])
                .unwrap()
                .ok
        );
        let r = s
            .apply(&[
                put("t", "b", "x", Cas::Any),
                put("t", "a", "3", Cas::ModifyIndex(9)),
            ])
            .unwrap();
        assert!(!r.ok);
        assert!(
            s.get("t", "b").unwrap().is_none(),
            "nothing written when a condition fails"
        );
        assert!(
            s.apply(&[put("t", "a", "3", Cas::ModifyIndex(1))])
                .unwrap()
                .ok
        );
    }

    #[test]
    fn list_is_scoped_to_the_table_and_ordered() {
        let s = RedbStore::in_memory().unwrap();
        s.apply(&[
            put("t", "b", "1", Cas::Any),
            put("t", "a", "2", Cas::Any),
            put("u", "c", "3", Cas::Any),
        ])
        .unwrap();
        let keys: Vec<String> = s.list("t").unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn watchers_are_woken_by_writes() {
        let s = RedbStore::in_memory().unwrap();
        let mut rx = s.subscribe();
        assert_eq!(*rx.borrow_and_update(), 0);
        s.apply(&[put("t", "a", "1", Cas::Any)]).unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
    }

    #[test]
    fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            s.apply(&[put("t", "a", "1", Cas::Any)]).unwrap();
            s.apply(&[put("t", "a", "2", Cas::Any)]).unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.index().unwrap(), 2);
        assert_eq!(*s.subscribe().borrow(), 2);
        assert_eq!(s.get("t", "a").unwrap().unwrap().modify_index, 2);
    }
}
