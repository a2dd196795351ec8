//! Config entries as the handlers read them: every stored entry decoded once through
//! the one validation pipeline and kept until the config table's index moves
//! (updated in place after this agent's own guarded writes, caught up from the
//! changed records when another agent wrote). Handlers read entries here, never
//! from the store.

use crate::entries::entry_key;
use crate::{ApiError, ApiResult, AppState, CONFIG_TABLE};
use serde_json::Value;
use std::sync::Arc;
use tribune_model::{entry_from_json, ConfigEntry, Kind};
use tribune_store::Record;

/// Every stored entry with its record (re-validated through the one pipeline).
/// Decoded entries are kept until the config table's index moves, so writes, checks
/// and the proxies' snapshot queries do not re-validate the whole store each time.
pub(crate) async fn load_all(state: &AppState) -> ApiResult<Arc<Vec<(ConfigEntry, Record)>>> {
    Ok(load_all_at(state).await?.1)
}

/// [`load_all`] and the config table index it was read at. The index is read before
/// the list: a write in between only makes the list newer than its index says, so a
/// write guarded with `Op::Unchanged(index)` fails and is retried, and the next call
/// reloads the cache.
pub(crate) async fn load_all_at(
    state: &AppState,
) -> ApiResult<(u64, Arc<Vec<(ConfigEntry, Record)>>)> {
    let index = state.store.table_index(CONFIG_TABLE).await?;
    if let Some(hit) = cached_at_least(state, index) {
        return Ok(hit);
    }
    // One reload at a time: the waiters a change wakes (every sidecar's blocking
    // query) share one read of the table instead of each reading and decoding it.
    let _one = state.reload_lock.lock().await;
    if let Some(hit) = cached_at_least(state, index) {
        return Ok(hit);
    }
    if let Some(caught_up) = catch_up(state).await? {
        return Ok(caught_up);
    }
    let index = state.store.table_index(CONFIG_TABLE).await?;
    let mut out = Vec::new();
    for r in state.store.list(CONFIG_TABLE).await? {
        if let Some(e) = decode_record(&r)? {
            out.push((e, r));
        }
    }
    let all = Arc::new(out);
    if let Ok(mut cache) = state.entries_cache.lock() {
        *cache = Some((index, all.clone()));
    }
    Ok((index, all))
}

/// Brings a stale cache up to date from the records changed since its index, when the
/// store can list those (another agent wrote: etcd) and nothing was deleted; `None`
/// when the whole table must be read.
async fn catch_up(state: &AppState) -> ApiResult<Option<(u64, Arc<Vec<(ConfigEntry, Record)>>)>> {
    let Some((since, cached)) = state
        .entries_cache
        .lock()
        .ok()
        .and_then(|c| c.as_ref().map(|(i, all)| (*i, all.clone())))
    else {
        return Ok(None);
    };
    let Some(changes) = state.store.changes_since(CONFIG_TABLE, since).await? else {
        return Ok(None);
    };
    let mut all = (*cached).clone();
    for r in changes.changed {
        let at = all.binary_search_by(|(_, old)| old.key.as_str().cmp(r.key.as_str()));
        match (decode_record(&r)?, at) {
            (Some(e), Ok(i)) => all[i] = (e, r),
            (Some(e), Err(i)) => all.insert(i, (e, r)),
            (None, Ok(i)) => {
                all.remove(i);
            }
            (None, Err(_)) => {}
        }
    }
    if all.len() != changes.count {
        return Ok(None); // something was deleted (or is stored but invalid)
    }
    let all = Arc::new(all);
    if let Ok(mut cache) = state.entries_cache.lock() {
        *cache = Some((changes.index, all.clone()));
    }
    Ok(Some((changes.index, all)))
}

/// The cached entries when they are at `index` or newer.
#[allow(clippy::type_complexity)]
fn cached_at_least(state: &AppState, index: u64) -> Option<(u64, Arc<Vec<(ConfigEntry, Record)>>)> {
    let cache = state.entries_cache.lock().ok()?;
    let (i, all) = cache.as_ref()?;
    (*i >= index).then(|| (*i, all.clone()))
}

/// A stored entry through the one validation pipeline; `None` (logged) when it is no
/// longer valid.
fn decode_record(r: &Record) -> ApiResult<Option<ConfigEntry>> {
    let value: Value = serde_json::from_slice(&r.value).map_err(|e| {
        ApiError(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored entry {}: {e}", r.key),
        )
    })?;
    match entry_from_json(value) {
        Ok(e) => Ok(Some(e)),
        Err(e) => {
            tracing::error!(key = %r.key, error = %e, "stored entry no longer valid; skipped");
            Ok(None)
        }
    }
}

/// After a write of `key` at store index `index`: the cached entries become `current`
/// with that one record replaced (`written`: the entry and its stored bytes), added or
/// removed (`None`), so the next write or snapshot query decodes nothing and reads
/// nothing. Valid because the write was guarded with `Op::Unchanged` on the index
/// `current` was read at: the table was exactly `current` when this write committed,
/// so `current` plus this change is the table at `index` (a newer cache is kept).
pub(crate) fn refresh_after_write(
    state: &AppState,
    current: Arc<Vec<(ConfigEntry, Record)>>,
    index: u64,
    key: &str,
    written: Option<(&ConfigEntry, Vec<u8>)>,
) {
    let Ok(mut cache) = state.entries_cache.lock() else {
        return;
    };
    if cache.as_ref().is_some_and(|(i, _)| *i > index) {
        return;
    }
    // The cache usually holds the same list as `current`: release it so the list can
    // be changed in place instead of copied (readers still holding it force a copy).
    drop(cache.take());
    let mut all = Arc::try_unwrap(current).unwrap_or_else(|shared| (*shared).clone());
    let at = all.iter().position(|(_, r)| r.key == key);
    let fresh = written.map(|(entry, value)| {
        let create_index = at.map(|i| all[i].1.create_index).unwrap_or(index);
        (
            entry.clone(),
            Record {
                key: key.to_string(),
                value,
                create_index,
                modify_index: index,
            },
        )
    });
    match (at, fresh) {
        (Some(i), Some(entry)) => all[i] = entry,
        (Some(i), None) => {
            all.remove(i);
        }
        (None, Some(entry)) => {
            let at = all.partition_point(|(_, r)| r.key.as_str() < key);
            all.insert(at, entry);
        }
        (None, None) => {}
    }
    *cache = Some((index, Arc::new(all)));
}

pub(crate) async fn load_one(
    state: &AppState,
    kind: Kind,
    name: &str,
) -> ApiResult<Option<(ConfigEntry, Record)>> {
    let Some(r) = state
        .store
        .get(CONFIG_TABLE, &entry_key(kind, name))
        .await?
    else {
        return Ok(None);
    };
    let value: Value =
        serde_json::from_slice(&r.value).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(entry_from_json(value).ok().map(|e| (e, r)))
}

/// Drops the decoded-entry cache (the next [`load_all`] reads the table).
pub(crate) fn forget_cache(state: &AppState) {
    if let Ok(mut cache) = state.entries_cache.lock() {
        *cache = None;
    }
}
