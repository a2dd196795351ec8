//! Wake-ups per table. The store tells of every committed write as one index
//! ([`tribune_store::Store::subscribe`]); before, every blocking query held that
//! receiver, so one write woke every waiter of every endpoint, and each re-read its
//! tables' indexes (issue #40: 5 000 sidecar watchers woken by one service's change).
//! Now one task reads, after each write, the index of the tables someone waits on,
//! and wakes only the waiters of a table whose index moved.
//!
//! A waiter subscribes to a set of tables (the snapshot's config and staged tables,
//! the ACL's three) and is told the highest of their indexes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;
use tribune_store::{Store, StoreError};

type Set = (Vec<String>, Arc<watch::Sender<u64>>);

/// The latest index read of each set of tables with waiters.
#[derive(Default)]
pub(crate) struct TableWatch {
    sets: Mutex<HashMap<String, Set>>,
    /// Receivers held so their sets are read after every write, waiters or not.
    pinned: Mutex<Vec<watch::Receiver<u64>>>,
}

impl TableWatch {
    /// A receiver of the highest index of `tables`. Its value may be older than the
    /// store's (tables nobody waited on are not read), never newer: compare with `>`,
    /// not `!=`.
    pub(crate) fn subscribe(&self, tables: &[&str]) -> watch::Receiver<u64> {
        let mut g = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        g.entry(tables.join("\0"))
            .or_insert_with(|| {
                (
                    tables.iter().map(|t| t.to_string()).collect(),
                    Arc::new(watch::Sender::new(0)),
                )
            })
            .1
            .subscribe()
    }

    /// Keeps `tables`' index read after every write (what a blocking query's re-arm
    /// compares with instead of reading the store); returns it as now known (0 until
    /// the first write).
    pub(crate) fn pin(&self, tables: &[&str]) {
        let rx = self.subscribe(tables);
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rx);
    }

    /// The highest index of `tables` as last read (0: not read yet). Never newer than
    /// the store's.
    pub(crate) fn known(&self, tables: &[&str]) -> u64 {
        *self.subscribe(tables).borrow()
    }

    /// Reads the index of every table that has waiters and wakes those whose index
    /// moved. One read per table per change, however many wait on it.
    pub(crate) async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let watched: Vec<Set> = {
            let g = self.sets.lock().unwrap_or_else(|p| p.into_inner());
            g.values()
                .filter(|(_, tx)| tx.receiver_count() > 0)
                .cloned()
                .collect()
        };
        // Each table once, all in one read (one round trip on etcd).
        let names: BTreeSet<&str> = watched
            .iter()
            .flat_map(|(tables, _)| tables.iter().map(String::as_str))
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        let at = store.table_indexes(&names).await?;
        let read: BTreeMap<&str, u64> = names.iter().copied().zip(at).collect();
        for (tables, tx) in &watched {
            let index = tables
                .iter()
                .filter_map(|t| read.get(t.as_str()))
                .copied()
                .max()
                .unwrap_or(0);
            tx.send_if_modified(|at| {
                let moved = index > *at;
                if moved {
                    *at = index;
                }
                moved
            });
        }
        Ok(())
    }

    /// Keeps the tables' indexes current from the store's notifications until the
    /// owner is gone. `refresh` runs after each write; writes that land while it
    /// runs are coalesced into the next round.
    /// The task holds the owner weakly (not the store, which it reaches through the
    /// owner), and reads the tables once at start so pinned sets are known before the
    /// first write.
    pub(crate) fn spawn<S: Send + Sync + 'static>(
        owner: Weak<S>,
        mut rx: watch::Receiver<u64>,
        parts: impl Fn(&S) -> (&TableWatch, &dyn Store) + Send + 'static,
    ) {
        tokio::spawn(async move {
            loop {
                {
                    let Some(owner) = owner.upgrade() else { return };
                    let (this, store) = parts(&owner);
                    if let Err(e) = this.refresh(store).await {
                        tracing::warn!(error = %e, "reading table indexes after a write failed; waiters wake at their deadline or the next write");
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_store::{Cas, Op, RedbStore};

    #[tokio::test]
    async fn a_write_wakes_the_waiters_of_its_table_only() {
        let store = RedbStore::in_memory().unwrap();
        let tables = TableWatch::default();
        let mut config = tables.subscribe(&["config"]);
        let mut both = tables.subscribe(&["config", "staged"]);
        let catalog = tables.subscribe(&["catalog"]);
        store
            .apply_now(&[Op::put("config", "a", b"1".to_vec(), Cas::Any)])
            .unwrap();
        tables.refresh(&store).await.unwrap();
        assert!(config.has_changed().unwrap());
        assert_eq!(*config.borrow_and_update(), 1);
        assert_eq!(*both.borrow_and_update(), 1);
        assert!(!catalog.has_changed().unwrap());
        // No new write: nothing wakes.
        tables.refresh(&store).await.unwrap();
        assert!(!config.has_changed().unwrap());
    }

    #[tokio::test]
    async fn a_table_without_waiters_is_not_read() {
        let store = RedbStore::in_memory().unwrap();
        let tables = TableWatch::default();
        drop(tables.subscribe(&["config"]));
        store
            .apply_now(&[Op::put("config", "a", b"1".to_vec(), Cas::Any)])
            .unwrap();
        tables.refresh(&store).await.unwrap();
        // Its value stays behind the store's (never ahead): waiters compare with `>`.
        assert_eq!(*tables.subscribe(&["config"]).borrow(), 0);
    }
}
