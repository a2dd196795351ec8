//! The catalog as its readers see it: the registrations decoded once per change of
//! the services table (every catalog read shares them), and each service's own index,
//! so a blocking `health/connect/S` (what sidecars hold for their upstreams) wakes for
//! S's changes only, not for every registration (issue #40: at mass registration,
//! each new sidecar woke every upstream watcher).
//!
//! A service's index is the last write that changed a registration naming it (as its
//! service or as the destination of its sidecar): the highest `ModifyIndex` of those
//! registrations, or the table's index when one of them went away (seen as fewer
//! registrations naming it than the previous view had), as Consul's per-service index.
//!
//! Worked example: `web` (index 5) and its sidecar (index 6), `api` (index 7).
//! `service_index("web")` = 6. Registering `billing` at 8 leaves it 6 (a
//! `health/connect/web` watcher at 6 stays asleep). Removing web's sidecar at 9 makes
//! it 9 (the watcher answers).

use super::typed::{Stored, Table};
use crate::{ApiResult, AppState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tribune_model::api::ServiceRecord;

/// The catalog's table.
pub(crate) const SERVICES: Table<ServiceRecord> = Table::new(crate::catalog::SERVICES_TABLE);

/// The registrations at (at least) one index of the services table.
pub(crate) struct CatalogView {
    /// The services table's index read before the records.
    pub at: u64,
    pub records: Arc<Vec<ServiceRecord>>,
    /// Service name -> (its index, how many registrations name it).
    by_service: HashMap<String, (u64, usize)>,
}

impl CatalogView {
    /// The last write that changed a registration naming `service` (at least 1).
    pub(crate) fn service_index(&self, service: &str) -> u64 {
        self.by_service.get(service).map_or(1, |(i, _)| *i).max(1)
    }

    fn build(at: u64, stored: Vec<Stored<ServiceRecord>>, previous: Option<&CatalogView>) -> Self {
        let mut by_service: HashMap<String, (u64, usize)> = HashMap::new();
        let mut records = Vec::with_capacity(stored.len());
        for s in stored {
            let r = &s.value;
            let names = [Some(r.service.as_str()), r.destination()];
            for name in names.into_iter().flatten() {
                let e = by_service.entry(name.to_string()).or_insert((0, 0));
                e.0 = e.0.max(s.modify_index);
                e.1 += 1;
            }
            records.push(s.value);
        }
        if let Some(p) = previous {
            for (name, (index, count)) in &p.by_service {
                match by_service.get_mut(name) {
                    // A registration naming it went away since the previous view.
                    Some(e) if e.1 < *count => e.0 = e.0.max(at),
                    Some(e) => e.0 = e.0.max(*index),
                    None if *count > 0 => {
                        by_service.insert(name.clone(), (at.max(*index), 0));
                    }
                    // Gone before too: keep when it went.
                    None => {
                        by_service.insert(name.clone(), (*index, 0));
                    }
                }
            }
        }
        CatalogView {
            at,
            records: Arc::new(records),
            by_service,
        }
    }
}

/// The newest [`CatalogView`], rebuilt once per change when it is read.
#[derive(Default)]
pub(crate) struct Catalog {
    current: Mutex<Option<Arc<CatalogView>>>,
    /// One rebuild at a time: the waiters a change wakes share it.
    rebuild: tokio::sync::Mutex<()>,
}

impl Catalog {
    fn at_least(&self, index: u64) -> Option<Arc<CatalogView>> {
        let current = self.current.lock().ok()?;
        current.as_ref().filter(|v| v.at >= index).cloned()
    }

    /// The view now (reads the table's index).
    pub(crate) async fn view(&self, state: &AppState) -> ApiResult<Arc<CatalogView>> {
        self.view_at(state, SERVICES.index(state).await?).await
    }

    /// A view at `index` or newer.
    pub(crate) async fn view_at(
        &self,
        state: &AppState,
        index: u64,
    ) -> ApiResult<Arc<CatalogView>> {
        if let Some(v) = self.at_least(index) {
            return Ok(v);
        }
        let _one = self.rebuild.lock().await;
        if let Some(v) = self.at_least(index) {
            return Ok(v);
        }
        // The index first: a write in between only makes the records newer than it.
        let at = SERVICES.index(state).await?;
        let stored = SERVICES.list(state).await?;
        let previous = self.current.lock().ok().and_then(|c| c.clone());
        let view = Arc::new(CatalogView::build(at, stored, previous.as_deref()));
        if let Ok(mut c) = self.current.lock() {
            *c = Some(view.clone());
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_model::api::{ServiceKind, ServiceProxy};

    fn stored(
        id: &str,
        service: &str,
        destination: Option<&str>,
        index: u64,
    ) -> Stored<ServiceRecord> {
        Stored {
            key: id.into(),
            value: ServiceRecord {
                id: id.into(),
                service: service.into(),
                kind: if destination.is_some() {
                    ServiceKind::ConnectProxy
                } else {
                    ServiceKind::Typical
                },
                proxy: destination.map(|d| ServiceProxy {
                    destination_service_name: d.into(),
                    ..ServiceProxy::default()
                }),
                ..ServiceRecord::default()
            },
            create_index: index,
            modify_index: index,
        }
    }

    /// The module's worked example.
    #[test]
    fn a_service_index_moves_only_with_registrations_naming_it() {
        let web = stored("web", "web", None, 5);
        let sidecar = stored("web-sidecar-proxy", "web-sidecar-proxy", Some("web"), 6);
        let api = stored("api", "api", None, 7);
        let v7 = CatalogView::build(7, vec![web.clone(), sidecar.clone(), api.clone()], None);
        assert_eq!(v7.service_index("web"), 6);
        assert_eq!(v7.service_index("api"), 7);
        assert_eq!(v7.service_index("nothing"), 1);
        let billing = stored("billing", "billing", None, 8);
        let v8 = CatalogView::build(
            8,
            vec![web.clone(), sidecar, api.clone(), billing.clone()],
            Some(&v7),
        );
        assert_eq!(v8.service_index("web"), 6, "another service's registration");
        let v9 = CatalogView::build(9, vec![web, api.clone(), billing.clone()], Some(&v8));
        assert_eq!(v9.service_index("web"), 9, "its sidecar went away");
        assert_eq!(v9.service_index("web-sidecar-proxy"), 9);
        let v10 = CatalogView::build(10, vec![api, billing], Some(&v9));
        assert_eq!(v10.service_index("web"), 10, "gone altogether");
        assert_eq!(v10.service_index("web-sidecar-proxy"), 9, "gone before");
    }
}
