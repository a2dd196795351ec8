//! Typed tables: a store table whose records are one type, as JSON. Handlers read and
//! write `T` through these instead of the raw store and `serde_json`; a record that no
//! longer decodes is named (table and key) where it is read.

use crate::{internal_error, ApiResult, AppState};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use tribune_store::{Cas, Op, Record};

/// A table of `T` records.
pub(crate) struct Table<T> {
    pub name: &'static str,
    _t: PhantomData<fn() -> T>,
}

/// A record of a typed table: its value and indexes.
#[derive(Debug, Clone)]
pub(crate) struct Stored<T> {
    pub key: String,
    pub value: T,
    pub create_index: u64,
    pub modify_index: u64,
}

impl<T> Stored<T> {
    /// The record's indexes as a store record would carry them (without the bytes).
    pub(crate) fn record(&self) -> Record {
        Record {
            key: self.key.clone(),
            value: Vec::new(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    pub(crate) const fn new(name: &'static str) -> Self {
        Table {
            name,
            _t: PhantomData,
        }
    }

    fn decode(&self, r: Record) -> ApiResult<Stored<T>> {
        let value = serde_json::from_slice(&r.value)
            .map_err(|e| internal_error(format!("stored {} record {:?}: {e}", self.name, r.key)))?;
        Ok(Stored {
            key: r.key,
            value,
            create_index: r.create_index,
            modify_index: r.modify_index,
        })
    }

    /// The record `key`; one that does not decode is an error naming it.
    pub(crate) async fn get(&self, state: &AppState, key: &str) -> ApiResult<Option<Stored<T>>> {
        match state.store.get(self.name, key).await? {
            None => Ok(None),
            Some(r) => self.decode(r).map(Some),
        }
    }

    /// Whether `key` is stored (its value is not decoded).
    pub(crate) async fn contains(&self, state: &AppState, key: &str) -> ApiResult<bool> {
        Ok(state.store.get(self.name, key).await?.is_some())
    }

    /// Every record, by key. One that does not decode is left out and logged (a
    /// listing is not refused for one bad record).
    pub(crate) async fn list(&self, state: &AppState) -> ApiResult<Vec<Stored<T>>> {
        Ok(self.decode_all(state.store.list(self.name).await?))
    }

    /// Records read elsewhere (a guarded write's step), decoded as [`Self::list`].
    pub(crate) fn decode_all(&self, records: Vec<Record>) -> Vec<Stored<T>> {
        records
            .into_iter()
            .filter_map(|r| match self.decode(r) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e.1, "skipping a stored record that does not decode");
                    None
                }
            })
            .collect()
    }

    /// The table's index.
    pub(crate) async fn index(&self, state: &AppState) -> ApiResult<u64> {
        Ok(state.store.table_index(self.name).await?)
    }

    /// Writes `value` at `key`.
    pub(crate) fn put(&self, key: &str, value: &T, cas: Cas) -> ApiResult<Op> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| internal_error(format!("encoding a {} record: {e}", self.name)))?;
        Ok(Op::put(self.name, key, bytes, cas))
    }

    /// Removes `key`.
    pub(crate) fn delete(&self, key: &str, cas: Cas) -> Op {
        Op::delete(self.name, key, cas)
    }

    /// A guard: the table is still at `index`.
    pub(crate) fn unchanged(&self, index: u64) -> Op {
        Op::unchanged(self.name, index)
    }
}
