//! The one read-check-write loop every guarded write goes through.
//!
//! A write that depends on what it read (a uniqueness rule, the cross-entry checks of
//! a config entry, a port taken, a rotation of the CA state) reads, checks and builds
//! its operations in a step, together with guards on what the step read
//! ([`Op::Unchanged`], [`Op::UnchangedKey`]). [`guarded`] applies them; when another
//! writer (another agent sharing etcd, or a write this agent's lock does not cover)
//! moved what the step read, the store refuses the batch as stale and the step runs
//! again on the new state after a short random pause, up to [`WRITE_ATTEMPTS`] times.
//! This agent's writers are serialized by its write lock, so only other agents make
//! a step run twice.
//!
//! ```text
//! lock ─▶ step(attempt) ─┬─ Skip(v) ───────────────────────────▶ (None, v)
//!   ▲                    └─ Write{ops, then} ─▶ apply ─┬─ stale ─▶ unlock, pause ─┐
//!   └──────────────────────────────────────────────────┼───────────────────────────┘
//!                                                      └─ else ─▶ (Some(applied), then)
//! ```

use crate::{contended, contention_backoff, ApiResult, AppState, WRITE_ATTEMPTS};
use std::future::Future;
use tribune_store::{Applied, Op};

/// What a step decided.
pub(crate) enum Step<T> {
    /// Apply `ops` (with the step's guards); `then` is returned with the outcome.
    Write { ops: Vec<Op>, then: T },
    /// Nothing to write (already done, or nothing changed).
    Skip(T),
}

/// Runs `step` under the agent's write lock and applies what it builds, again on a
/// stale refusal. `table` names the contended table in the error after the last
/// attempt. `step` gets the attempt number (0 first); it is a closure returning a
/// future (`move |_| async move { .. }` over references), which keeps the handlers'
/// futures `Send` (an `async` closure's future is not known to be).
pub(crate) async fn guarded<T, F, Fut>(
    state: &AppState,
    table: &str,
    step: F,
) -> ApiResult<(Option<Applied>, T)>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ApiResult<Step<T>>>,
{
    guarded_then(state, table, step, |applied, then| (applied, then)).await
}

/// [`guarded`], with `after` run on the outcome while the write lock is still held
/// (what keeps this agent's caches in the order of its writes).
pub(crate) async fn guarded_then<T, R, F, Fut>(
    state: &AppState,
    table: &str,
    mut step: F,
    after: impl FnOnce(Option<Applied>, T) -> R,
) -> ApiResult<R>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ApiResult<Step<T>>>,
{
    for attempt in 0..WRITE_ATTEMPTS {
        let serial = state.write_lock.lock().await;
        let (ops, then) = match step(attempt).await? {
            Step::Skip(v) => return Ok(after(None, v)),
            Step::Write { ops, then } => (ops, then),
        };
        let applied = state.store.apply(&ops).await?;
        if !applied.stale {
            let out = after(Some(applied), then);
            drop(serial);
            return Ok(out);
        }
        drop(serial);
        contention_backoff(attempt).await;
    }
    Err(contended(table))
}

/// Applies `ops` as they are: writes whose conditions are in their own CAS (a
/// record's index, `Absent`) and need no read-check-write step.
pub(crate) async fn apply(state: &AppState, ops: &[Op]) -> ApiResult<Applied> {
    Ok(state.store.apply(ops).await?)
}

/// Applies `ops` in as many transactions as the store's limit needs (etcd: 128
/// operations per transaction), for sweeps where each operation stands alone
/// (expired records, everything of a deleted owner).
pub(crate) async fn apply_batched(state: &AppState, ops: &[Op]) -> ApiResult<Vec<Applied>> {
    let mut out = Vec::new();
    for chunk in ops.chunks(state.store.max_ops().max(1)) {
        out.push(state.store.apply(chunk).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentConfig, AppState};
    use tribune_store::{Cas, RedbStore, Store};

    /// A step whose guard went stale runs again on the new state; a skip writes
    /// nothing; the last lost race names the table.
    #[tokio::test]
    async fn a_stale_step_runs_again_on_the_new_state() {
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(RedbStore::in_memory().unwrap());
        let state = AppState::new(store.clone(), AgentConfig::default())
            .await
            .unwrap();
        let runs = std::sync::atomic::AtomicU32::new(0);
        let (state, store, runs) = (&state, &store, &runs);
        let (applied, seen) = guarded(state, "t", move |attempt| async move {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let index = state.store.table_index("t").await?;
            if attempt == 0 {
                // Another writer gets in between the read and the write.
                store
                    .apply(&[Op::put("t", "other", b"1".to_vec(), Cas::Any)])
                    .await?;
            }
            Ok(Step::Write {
                ops: vec![
                    Op::put("t", "mine", b"1".to_vec(), Cas::Any),
                    Op::unchanged("t", index),
                ],
                then: index,
            })
        })
        .await
        .unwrap();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(applied.unwrap().changed);
        let other = store.get("t", "other").await.unwrap().unwrap();
        assert_eq!(
            seen, other.modify_index,
            "the second run read the new state"
        );
        assert!(store.get("t", "mine").await.unwrap().is_some());

        let (none, v) = guarded(state, "t", |_| async { Ok(Step::Skip(7)) })
            .await
            .unwrap();
        assert!(none.is_none());
        assert_eq!(v, 7);

        let e = guarded(state, "t", move |_| async move {
            let index = state.store.table_index("t").await?;
            store
                .apply(&[Op::put(
                    "t",
                    "x",
                    fastrand::u64(..).to_le_bytes().to_vec(),
                    Cas::Any,
                )])
                .await?;
            Ok(Step::Write {
                ops: vec![Op::unchanged("t", index)],
                then: (),
            })
        })
        .await
        .err()
        .unwrap();
        assert_eq!(e.0, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.1.contains("concurrent writes to t"), "{}", e.1);
    }
}
