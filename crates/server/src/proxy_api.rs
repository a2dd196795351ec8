//! `GET /v1/tribune/proxy-snapshot/<service>`: everything a sidecar needs to enforce
//! its destination's policy, in one blocking query (Tribune's own endpoint; Consul
//! streams xDS instead).
//!
//! The body is a [`PolicyDocument`] (also what `tribune connect proxy -config FILE`
//! reads): the intentions for the service and `*`, the `jwt-provider`s they
//! reference, the `mesh` entry, and the other providers' forwarding header names.
//! With staged candidates that change the service's document, `Candidate` holds the
//! document they would make (the sidecar evaluates it beside the live one).
//! `X-Consul-Index` is the index at which the service's document last changed: a
//! sidecar's query waits for a change to its own document, not to the table.
//!
//! ACL: `service:write` on the service (what a sidecar's token holds in Consul),
//! re-checked while the query waits: a revoked token gets its 403 at once.

use crate::extract::{Query, WatchCaller};
use crate::{index_header, ApiError, ApiResult, Blocking, Holder, Shared};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub(crate) async fn snapshot(
    State(state): State<Shared>,
    Path(service): Path<String>,
    query: Query,
    headers: HeaderMap,
    WatchCaller(authz): WatchCaller,
) -> ApiResult<Response> {
    let q = query.pairs();
    authz.service_write(&service)?;
    let holder = Holder {
        headers: &headers,
        allowed: &|a| a.service_write(&service),
    };
    // The service's own document (built once per change for all its sidecars): only
    // a change to it ends the wait (crate::state::documents).
    let blocking = crate::blocking_index(q).is_some();
    let mut rx = state.documents.watch(&state, &service, blocking).await?;
    let current = rx.borrow_and_update().index;
    if let Some(mut wait) = Blocking::start(&state, q, current, Some(holder)).await? {
        wait.until(&state, q, rx.changed()).await?;
    }
    let published = rx.borrow().clone();
    match published.body {
        Ok(body) => Ok((
            [
                index_header(published.index),
                (
                    header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                ),
            ],
            body,
        )
            .into_response()),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use crate::staged::STAGED_TABLE;
    use crate::{AgentConfig, AppState, CONFIG_TABLE};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::watch;
    use tribune_store::{Applied, Cas, Membership, Op, Record, RedbStore, Store, StoreFuture};

    /// The embedded store, counting the reads of table indexes.
    struct Counting {
        inner: RedbStore,
        index_reads: AtomicUsize,
    }

    impl Store for Counting {
        fn get<'a>(&'a self, t: &'a str, k: &'a str) -> StoreFuture<'a, Option<Record>> {
            self.inner.get(t, k)
        }
        fn list<'a>(&'a self, t: &'a str) -> StoreFuture<'a, Vec<Record>> {
            self.inner.list(t)
        }
        fn table_index<'a>(&'a self, t: &'a str) -> StoreFuture<'a, u64> {
            self.index_reads.fetch_add(1, Ordering::SeqCst);
            self.inner.table_index(t)
        }
        fn table_indexes<'a>(&'a self, t: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
            self.index_reads.fetch_add(1, Ordering::SeqCst);
            self.inner.table_indexes(t)
        }
        fn index(&self) -> StoreFuture<'_, u64> {
            self.inner.index()
        }
        fn apply<'a>(&'a self, ops: &'a [Op]) -> StoreFuture<'a, Applied> {
            self.inner.apply(ops)
        }
        fn subscribe(&self) -> watch::Receiver<u64> {
            self.inner.subscribe()
        }
        fn membership<'a>(&'a self, own: &'a str) -> StoreFuture<'a, Membership> {
            self.inner.membership(own)
        }
        fn dump(&self) -> StoreFuture<'_, tribune_store::Dump> {
            self.inner.dump()
        }
    }

    #[tokio::test]
    async fn a_sidecars_re_arm_reads_no_store_index() {
        let store = Arc::new(Counting {
            inner: RedbStore::in_memory().unwrap(),
            index_reads: AtomicUsize::new(0),
        });
        let mut config = AgentConfig::default();
        config.acl.enabled = true;
        config.acl.initial_management = Some("root".into());
        let state = AppState::new(store.clone(), config).await.unwrap();
        let entry = br#"{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Action":"allow"}]}"#;
        store
            .apply(&[Op::put(
                CONFIG_TABLE,
                "service-intentions/api",
                entry.to_vec(),
                Cas::Any,
            )])
            .await
            .unwrap();
        // The agent's own task reads the written tables' indexes (bounded wait).
        for _ in 0..10_000 {
            if state.tables.known(&[CONFIG_TABLE, STAGED_TABLE]) > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Through the router: the caller extractor's authorization is counted too.
        let app = crate::router(state.clone());
        let get = |query: Option<String>| {
            let uri = match query {
                Some(q) => format!("/v1/tribune/proxy-snapshot/api?{q}"),
                None => "/v1/tribune/proxy-snapshot/api".to_string(),
            };
            let request = axum::http::Request::get(uri)
                .header("host", "127.0.0.1")
                .header("x-consul-token", "root")
                .body(axum::body::Body::empty())
                .unwrap();
            tower::ServiceExt::oneshot(app.clone(), request)
        };
        let first = get(None).await.unwrap();
        assert_eq!(first.status(), 200);
        let index = first.headers()["x-consul-index"]
            .to_str()
            .unwrap()
            .to_string();
        let before = store.index_reads.load(Ordering::SeqCst);
        let again = get(Some(format!("index={index}&wait=5ms"))).await.unwrap();
        assert_eq!(again.headers()["x-consul-index"], index.as_str());
        assert_eq!(
            store.index_reads.load(Ordering::SeqCst),
            before,
            "a blocking re-arm answered from what the agent knows"
        );
    }
}
