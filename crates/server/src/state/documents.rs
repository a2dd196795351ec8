//! Every watched service's policy document (what `GET /v1/tribune/proxy-snapshot/<S>`
//! serves), rebuilt once per change that touches it and handed, as the same bytes, to
//! every sidecar waiting on it.
//!
//! Before (issue #40), each waiting sidecar woke on every write to the config table,
//! re-read the entries and built, compiled and serialized its own document: with
//! 5 000 watchers, one service's change answered its own sidecar after 8.8 s, behind
//! the herd. Now:
//!
//! ```text
//!  write ──▶ TableWatch (config, staged moved) ──▶ refresh: the keys this agent
//!    wrote since (else one walk of every entry's ModifyIndex), by reach ──▶ which
//!    documents can have changed?
//!      service-intentions/S, service-defaults/S ──▶ S's only
//!      `*`'s intentions, jwt-provider, mesh, proxy-defaults, staged ──▶ every one
//!    ──▶ rebuild those (blocking pool) ──▶ publish the ones whose bytes differ,
//!        at the new index ──▶ only their waiters wake
//! ```
//!
//! A document's index (`X-Consul-Index`) is the index at which its bytes last
//! changed, so a sidecar's next query blocks until its own document moves; a query
//! that holds an index is answered from what was last published, without a store
//! read, once the documents are current with what the agent last read. A service
//! is tracked from its first query until nobody has asked for it for
//! [`FORGET_AFTER`].

use crate::entries::{entry_key, load_all_at};
use crate::staged::{load_staged, STAGED_TABLE};
use crate::{ApiResult, AppState, CONFIG_TABLE};
use axum::body::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tribune_enforce::{Policy, PolicyDocument};
use tribune_model::intentions::Action;
use tribune_model::{ConfigEntry, Kind, WILDCARD};
use tribune_store::Record;

/// How long a service nobody queries stays tracked: longer than the longest blocking
/// wait (10 minutes and its jitter), so a sidecar's next query always finds it.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// One service's document as served: its index and its JSON, or why it is not
/// served (it does not compile).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Published {
    pub index: u64,
    pub body: Result<Bytes, Arc<str>>,
}

#[derive(Default)]
pub(crate) struct Documents {
    /// One refresh at a time, and what it last read.
    refreshing: tokio::sync::Mutex<Seen>,
    /// This agent's config writes since (at most [`WRITES_KEPT`]).
    written: Mutex<VecDeque<Written>>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The index the last refresh read (0: none yet) and the candidates staged then.
    at: u64,
    staged: Arc<Vec<(ConfigEntry, String)>>,
    /// The index through which every tracked document is published.
    published: u64,
    services: HashMap<String, Tracked>,
}

struct Tracked {
    tx: Arc<watch::Sender<Published>>,
    used: Instant,
}

/// The config entries (ordered by their store key, `kind/name`) and the staged
/// candidates at one index, while documents are built from them. Nothing is indexed
/// per view (a document's entries are found by key), and none is kept: the decoded
/// entries stay the agent's one cached list, which a write then changes in place
/// instead of copying.
struct View {
    at: u64,
    default: Action,
    entries: Arc<Vec<(ConfigEntry, Record)>>,
    /// The staged candidates and their labels.
    staged: Arc<Vec<(ConfigEntry, String)>>,
}

/// What the last refresh read of each entry (by store key): its `ModifyIndex`, which
/// documents read it, and the round it was last seen in.
#[derive(Default)]
struct Seen {
    round: u64,
    /// The config table's index of the entries last taken in.
    config_at: u64,
    entries: HashMap<String, (u64, Reach, u64)>,
    staged: Option<Vec<String>>,
}

/// A config write this agent made: the table went from `from` to `to` by writing
/// `key` alone (the write was guarded on the table being at `from`).
struct Written {
    from: u64,
    to: u64,
    key: String,
}

/// Config writes remembered for the next refresh.
const WRITES_KEPT: usize = 1024;

/// The keys written between the config table's indexes `from` and `to`, when this
/// agent's own writes account for every step (else `None`: another agent wrote, or
/// a write was guarded on fewer keys).
fn chain(from: u64, to: u64, written: &VecDeque<Written>) -> Option<Vec<&str>> {
    if from == 0 {
        return None;
    }
    let mut at = from;
    let mut keys = Vec::new();
    while at < to {
        let w = written.iter().find(|w| w.from == at)?;
        keys.push(w.key.as_str());
        at = w.to;
    }
    (at == to).then_some(keys)
}

impl Seen {
    /// Takes in the entries and staged labels read now; answers the services whose
    /// documents may differ from the last call's (`None`: any of them). A walk of
    /// the entries without allocating for those unchanged.
    fn update(
        &mut self,
        config_at: u64,
        entries: &[(ConfigEntry, Record)],
        staged: Vec<String>,
        written: &VecDeque<Written>,
    ) -> Option<HashSet<String>> {
        self.round += 1;
        let round = self.round;
        let mut touched = Some(HashSet::new());
        if self.staged.as_ref() != Some(&staged) {
            touched = None;
            self.staged = Some(staged);
        }
        let note = |touched: &mut Option<HashSet<String>>, reach: &Reach| match (touched, reach) {
            (Some(t), Reach::One(s)) => {
                t.insert(s.clone());
            }
            (t, _) => *t = None,
        };
        let from = std::mem::replace(&mut self.config_at, config_at);
        if let Some(keys) = chain(from, config_at, written) {
            // Only these keys changed: no walk of the others.
            for key in keys {
                match entries.binary_search_by(|(_, r)| r.key.as_str().cmp(key)) {
                    Ok(i) => {
                        let r = reach_of_key(key);
                        note(&mut touched, &r);
                        self.entries
                            .insert(key.to_string(), (entries[i].1.modify_index, r, round));
                    }
                    Err(_) => {
                        self.entries.remove(key);
                        note(&mut touched, &reach_of_key(key));
                    }
                }
            }
            return touched;
        }
        for (_, record) in entries {
            match self.entries.get_mut(record.key.as_str()) {
                Some(seen) => {
                    seen.2 = round;
                    if seen.0 != record.modify_index {
                        seen.0 = record.modify_index;
                        note(&mut touched, &seen.1);
                    }
                }
                None => {
                    let r = reach_of_key(&record.key);
                    note(&mut touched, &r);
                    self.entries
                        .insert(record.key.clone(), (record.modify_index, r, round));
                }
            }
        }
        if self.entries.len() > entries.len() {
            // Deleted since.
            self.entries.retain(|_, (_, r, seen)| {
                let kept = *seen == round;
                if !kept {
                    note(&mut touched, r);
                }
                kept
            });
        }
        touched
    }
}

/// Which documents an entry is read by.
enum Reach {
    One(String),
    All,
}

/// The reach of the entry stored under `key` (`kind/name`): the service's own
/// intentions and defaults reach its document; `*`'s intentions, providers, `mesh`
/// and `proxy-defaults` reach every one.
fn reach_of_key(key: &str) -> Reach {
    let Some((kind, name)) = key.split_once('/') else {
        return Reach::All;
    };
    let own = [Kind::ServiceIntentions, Kind::ServiceDefaults]
        .iter()
        .any(|k| k.to_string() == kind);
    if own && name != WILDCARD {
        Reach::One(name.to_string())
    } else {
        Reach::All
    }
}

impl View {
    /// Where the records whose keys start with `prefix` are.
    fn range(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = self
            .entries
            .partition_point(|(_, r)| r.key.as_str() < prefix);
        let len = self.entries[start..]
            .iter()
            .take_while(|(_, r)| r.key.starts_with(prefix))
            .count();
        start..start + len
    }

    /// Where the record of `key` is.
    fn find(&self, key: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|(_, r)| r.key.as_str().cmp(key))
            .ok()
    }

    /// `service`'s document: built from the entries it reads ([`reach`]), in the
    /// store's order, so it is the document built from all of them.
    fn document(&self, service: &str) -> PolicyDocument {
        let mut at: Vec<usize> = self.range(&format!("{}/", Kind::JwtProvider)).collect();
        at.extend(self.range(&format!("{}/", Kind::Mesh)));
        at.extend(self.range(&format!("{}/", Kind::ProxyDefaults)));
        for name in [WILDCARD, service] {
            at.extend(self.find(&entry_key(Kind::ServiceIntentions, name)));
        }
        at.extend(self.find(&entry_key(Kind::ServiceDefaults, service)));
        at.sort_unstable();
        at.dedup();
        let refs: Vec<&ConfigEntry> = at.iter().map(|&i| &self.entries[i].0).collect();
        let staged: Vec<(&ConfigEntry, String)> =
            self.staged.iter().map(|(e, l)| (e, l.clone())).collect();
        PolicyDocument::with_candidates(service, self.default, &refs, &staged)
    }

    /// `service`'s document as served: never one the sidecars cannot install (they
    /// would keep their last one and say why; better that none is served and the
    /// agent says why), e.g. entries stored before a check existed, or by another
    /// agent's version.
    fn render(&self, service: &str) -> Result<Bytes, Arc<str>> {
        let doc = self.document(service);
        if let Err(e) = Policy::compile(&doc) {
            tracing::error!(service = %service, index = self.at, error = %e, "not serving a policy document that does not compile");
            return Err(format!("the policy document of {service} does not compile, so it is not served (its sidecars keep enforcing their last policy): {e}").into());
        }
        serde_json::to_vec(&doc.to_json())
            .map(Bytes::from)
            .map_err(|e| Arc::from(e.to_string()))
    }
}

impl Documents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the documents current from the config and staged tables' wake-ups until
    /// the agent state is gone.
    pub(crate) fn spawn(owner: Weak<AppState>) {
        let Some(state) = owner.upgrade() else { return };
        let mut rx = state.tables.subscribe(&[CONFIG_TABLE, STAGED_TABLE]);
        drop(state);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(state) = owner.upgrade() else { return };
                if let Err(e) = state.documents.refresh(&state).await {
                    tracing::warn!(error = %e.1, "rebuilding policy documents after a write failed; the next query or write retries");
                }
            }
        });
    }

    /// Brings every tracked document up to the store's current entries: one read,
    /// the touched documents rebuilt, the changed ones published.
    pub(crate) async fn refresh(&self, state: &AppState) -> ApiResult<()> {
        let mut seen = self.refreshing.lock().await;
        let staged_at = state.store.table_index(STAGED_TABLE).await?;
        let (config_at, entries) = load_all_at(state).await?;
        let at = config_at.max(staged_at).max(1);
        if at <= self.lock().published {
            return Ok(());
        }
        let staged: Arc<Vec<(ConfigEntry, String)>> = Arc::new(
            load_staged(state)
                .await?
                .into_iter()
                .map(|s| {
                    let label = s.label();
                    (s.entry, label)
                })
                .collect(),
        );
        let touched = {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            let touched = seen.update(
                config_at,
                &entries,
                staged.iter().map(|(_, l)| l.clone()).collect(),
                &written,
            );
            written.retain(|w| w.to > config_at);
            touched
        };
        let view = View {
            at,
            default: state.config.default_intention_policy,
            entries,
            staged,
        };
        let work: Vec<(String, Arc<watch::Sender<Published>>)> = {
            let mut g = self.lock();
            g.at = at;
            g.staged = view.staged.clone();
            g.services
                .retain(|_, t| t.tx.receiver_count() > 0 || t.used.elapsed() < FORGET_AFTER);
            g.services
                .iter()
                .filter(|(s, _)| touched.as_ref().is_none_or(|t| t.contains(*s)))
                .map(|(s, t)| (s.clone(), t.tx.clone()))
                .collect()
        };
        // Building many documents is CPU work: off the async workers.
        let built = {
            tokio::task::spawn_blocking(move || {
                work.into_iter()
                    .map(|(s, tx)| {
                        let body = view.render(&s);
                        (tx, body)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| crate::internal_error(format!("rebuilding policy documents: {e}")))?
        };
        for (tx, body) in built {
            tx.send_if_modified(|p| {
                let moved = p.body != body;
                if moved {
                    *p = Published { index: at, body };
                }
                moved
            });
        }
        let mut g = self.lock();
        g.published = g.published.max(at);
        Ok(())
    }

    /// A config write this agent made: `key` alone took the table from `from` to
    /// `to`. The next refresh looks at that key instead of every entry.
    pub(crate) fn written(&self, from: u64, to: u64, key: &str) {
        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= WRITES_KEPT {
            w.pop_front();
        }
        w.push_back(Written {
            from,
            to,
            key: key.to_string(),
        });
    }

    /// `service`'s document as of the store now (a write acknowledged before this
    /// call is in it), as a receiver that also tells of its next change.
    /// With `blocking` (a re-arm: the caller holds an index), a tracked document
    /// published through what this agent last read of the tables answers without
    /// reading the store; a later write wakes it.
    pub(crate) async fn watch(
        &self,
        state: &AppState,
        service: &str,
        blocking: bool,
    ) -> ApiResult<watch::Receiver<Published>> {
        if blocking {
            let known = state.tables.known(&[CONFIG_TABLE, STAGED_TABLE]);
            let mut g = self.lock();
            if known > 0 && g.published >= known {
                if let Some(t) = g.services.get_mut(service) {
                    t.used = Instant::now();
                    return Ok(t.tx.subscribe());
                }
            }
        }
        let now = crate::tables_index(state, &[CONFIG_TABLE, STAGED_TABLE]).await?;
        if self.lock().published < now {
            self.refresh(state).await?;
        }
        loop {
            let (at, staged) = {
                let mut g = self.lock();
                if let Some(t) = g.services.get_mut(service) {
                    t.used = Instant::now();
                    return Ok(t.tx.subscribe());
                }
                (g.at, g.staged.clone())
            };
            // The entries as cached (what the refresh read, or newer: a document's
            // content is never older than its index).
            let (_, entries) = load_all_at(state).await?;
            let view = View {
                at,
                default: state.config.default_intention_policy,
                entries,
                staged,
            };
            let body = view.render(service);
            let mut g = self.lock();
            // A refresh that read newer entries meanwhile did not see this service:
            // build it again from those.
            if g.at != view.at {
                continue;
            }
            let tx = Arc::new(watch::Sender::new(Published {
                index: view.at,
                body,
            }));
            let rx = tx.subscribe();
            g.services.insert(
                service.to_string(),
                Tracked {
                    tx,
                    used: Instant::now(),
                },
            );
            return Ok(rx);
        }
    }

    /// How many services are tracked (for tests and the scale benchmark's notes).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_model::entry_from_json;

    fn entry(v: serde_json::Value) -> ConfigEntry {
        entry_from_json(v).unwrap()
    }

    fn record(i: u64) -> Record {
        Record {
            key: String::new(),
            value: Vec::new(),
            create_index: i,
            modify_index: i,
        }
    }

    fn intentions(name: &str, source: &str, i: u64) -> (ConfigEntry, Record) {
        (
            entry(serde_json::json!({
                "Kind": "service-intentions", "Name": name,
                "Sources": [{"Name": source, "Action": "allow"}]
            })),
            record(i),
        )
    }

    /// The entries keyed and ordered as the store lists them.
    fn stored(mut entries: Vec<(ConfigEntry, Record)>) -> Vec<(ConfigEntry, Record)> {
        for (e, r) in &mut entries {
            r.key = entry_key(e.kind(), e.name());
        }
        entries.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        entries
    }

    /// A `Seen` that has taken in `world()`.
    fn seen_world() -> Seen {
        let mut seen = Seen::default();
        assert_eq!(
            seen.update(5, &stored(world()), vec![], &VecDeque::new()),
            None,
            "first read"
        );
        seen
    }

    fn world() -> Vec<(ConfigEntry, Record)> {
        vec![
            intentions("*", "ops", 1),
            intentions("api", "web", 2),
            intentions("db", "api", 3),
            (
                entry(serde_json::json!({
                    "Kind": "service-defaults", "Name": "api", "Protocol": "http"
                })),
                record(4),
            ),
            (
                entry(serde_json::json!({
                    "Kind": "jwt-provider", "Name": "okta", "Issuer": "https://okta",
                    "JSONWebKeySet": {"Remote": {"URI": "https://okta/keys"}},
                    "Forwarding": {"HeaderName": "x-okta"}
                })),
                record(5),
            ),
        ]
    }

    #[test]
    fn a_document_built_from_its_entries_is_the_one_built_from_all() {
        let v = View {
            at: 5,
            default: Action::Deny,
            entries: Arc::new(stored(world())),
            staged: Arc::default(),
        };
        let refs: Vec<&ConfigEntry> = v.entries.iter().map(|(e, _)| e).collect();
        for service in ["api", "db", "web", "nobody"] {
            let whole = PolicyDocument::with_candidates(service, Action::Deny, &refs, &[]);
            assert_eq!(v.document(service), whole, "{service}");
        }
    }

    #[test]
    fn one_services_change_touches_its_document_only() {
        let mut seen = seen_world();
        let mut all = world();
        all[1] = intentions("api", "admin", 6);
        assert_eq!(
            seen.update(6, &stored(all), vec![], &VecDeque::new()),
            Some(HashSet::from(["api".to_string()]))
        );
        // Deleting db's intentions touches db's.
        let mut seen = seen_world();
        let mut all = world();
        all.remove(2);
        assert_eq!(
            seen.update(6, &stored(all), vec![], &VecDeque::new()),
            Some(HashSet::from(["db".to_string()]))
        );
        // Nothing changed: nothing touched.
        let mut seen = seen_world();
        assert_eq!(
            seen.update(5, &stored(world()), vec![], &VecDeque::new()),
            Some(HashSet::new())
        );
    }

    #[test]
    fn this_agents_own_writes_name_what_changed_without_a_walk() {
        let log = |writes: &[(u64, u64, &str)]| {
            writes
                .iter()
                .map(|&(from, to, key)| Written {
                    from,
                    to,
                    key: key.to_string(),
                })
                .collect::<VecDeque<_>>()
        };
        let mut seen = seen_world();
        let mut all = world();
        all[1] = intentions("api", "admin", 6);
        all.remove(2);
        let writes = log(&[
            (6, 7, "service-intentions/db"),
            (5, 6, "service-intentions/api"),
        ]);
        assert_eq!(
            seen.update(7, &stored(all.clone()), vec![], &writes),
            Some(HashSet::from(["api".to_string(), "db".to_string()]))
        );
        // A step nobody here wrote (another agent's): the walk finds it.
        let mut seen = seen_world();
        let writes = log(&[(5, 6, "service-intentions/api")]);
        assert_eq!(
            seen.update(7, &stored(all), vec![], &writes),
            Some(HashSet::from(["api".to_string(), "db".to_string()]))
        );
        assert_eq!(chain(5, 7, &writes), None);
        assert_eq!(chain(5, 6, &writes), Some(vec!["service-intentions/api"]));
    }

    #[test]
    fn a_change_every_document_reads_touches_them_all() {
        let mut seen = seen_world();
        let mut all = world();
        all[0] = intentions("*", "admin", 6);
        assert_eq!(
            seen.update(6, &stored(all), vec![], &VecDeque::new()),
            None,
            "`*` changed"
        );
        let mut seen = seen_world();
        let mut all = world();
        all.remove(4);
        assert_eq!(
            seen.update(6, &stored(all), vec![], &VecDeque::new()),
            None,
            "a provider deleted"
        );
        let mut seen = seen_world();
        let staged = vec!["service-intentions/api@6".to_string()];
        assert_eq!(
            seen.update(6, &stored(world()), staged, &VecDeque::new()),
            None,
            "a candidate staged"
        );
    }

    #[tokio::test]
    async fn a_watcher_wakes_only_when_its_own_document_changes() {
        use crate::AgentConfig;
        use tribune_store::{Cas, Op, RedbStore, Store};
        let store: Arc<dyn Store> = Arc::new(RedbStore::in_memory().unwrap());
        let state = AppState::new(store.clone(), AgentConfig::default())
            .await
            .unwrap();
        let put = |e: (ConfigEntry, Record)| {
            let key = format!("{}/{}", e.0.kind(), e.0.name());
            Op::put(
                CONFIG_TABLE,
                &key,
                serde_json::to_vec(&e.0.to_json()).unwrap(),
                Cas::Any,
            )
        };
        store
            .apply(&[
                put(intentions("api", "web", 0)),
                put(intentions("db", "api", 0)),
            ])
            .await
            .unwrap();
        let mut api = state.documents.watch(&state, "api", false).await.unwrap();
        let mut db = state.documents.watch(&state, "db", false).await.unwrap();
        let db_index = db.borrow_and_update().index;
        assert_eq!(state.documents.tracked(), 2);
        store
            .apply(&[put(intentions("api", "admin", 0))])
            .await
            .unwrap();
        state.documents.refresh(&state).await.unwrap();
        assert!(api.has_changed().unwrap());
        let now = api.borrow_and_update().clone();
        assert!(now.index > db_index);
        assert!(String::from_utf8_lossy(now.body.as_ref().unwrap()).contains("admin"));
        assert!(!db.has_changed().unwrap(), "db's sidecar stays asleep");
        assert_eq!(db.borrow().index, db_index);
        // A `*` change reaches both.
        store
            .apply(&[put(intentions("*", "ops", 0))])
            .await
            .unwrap();
        state.documents.refresh(&state).await.unwrap();
        assert!(api.has_changed().unwrap() && db.has_changed().unwrap());
    }
}
