//! Shadow evaluation of a staged candidate: what the sidecar would have decided
//! differently, grouped for `GET /shadow` on the admin listener and summed for the
//! agent (`PUT /v1/tribune/shadow-report`).
//!
//! Every request of a snapshot with a candidate is evaluated twice (the candidate
//! reuses the live authentication when it can, `tribune_enforce::Policy::shadow`);
//! the live decision is enforced. The counters restart when the candidate changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tribune_enforce::Verdict;
use tribune_model::api::{paths, ShadowCounters, ShadowGroup, ShadowReport};

/// Most groups kept; further differences are counted in one `(other)` group.
pub const MAX_GROUPS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    caller: String,
    method: String,
    prefix: String,
    live: &'static str,
    candidate: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone)]
struct Group {
    count: u64,
    /// One request of the group: `METHOD path`.
    example: String,
    live_status: u16,
    candidate_status: u16,
}

#[derive(Default)]
struct Inner {
    /// The candidate the counters are for.
    labels: Vec<String>,
    groups: HashMap<GroupKey, Group>,
}

/// The shadow counters of one sidecar.
#[derive(Default)]
pub struct ShadowStats {
    seen: AtomicU64,
    changed: AtomicU64,
    inner: Mutex<Inner>,
}

/// The first path segment (`/v1/items/7` and `/v1` -> `/v1`, `/` -> `/`): what
/// differences are grouped by.
pub fn path_prefix(path: &str) -> &str {
    match path.get(1..).and_then(|rest| rest.find('/')) {
        Some(i) => &path[..i + 1],
        None => path,
    }
}

/// `allow` or `deny`.
pub fn label(allowed: bool) -> &'static str {
    if allowed {
        "allow"
    } else {
        "deny"
    }
}

impl ShadowStats {
    /// Starts counting for the candidate `labels` (a new candidate restarts the
    /// counters; the same one keeps them across snapshots).
    pub fn begin(&self, labels: &[String]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.labels != labels {
            inner.labels = labels.to_vec();
            inner.groups.clear();
            self.seen.store(0, Ordering::Relaxed);
            self.changed.store(0, Ordering::Relaxed);
        }
    }

    /// Records one request evaluated with both policies; `true` when they differ.
    pub fn record(
        &self,
        caller: Option<&str>,
        method: &str,
        path: &str,
        live: Verdict,
        candidate: Verdict,
    ) -> bool {
        self.seen.fetch_add(1, Ordering::Relaxed);
        if live.status == candidate.status && live.allowed == candidate.allowed {
            return false;
        }
        self.changed.fetch_add(1, Ordering::Relaxed);
        let Ok(mut inner) = self.inner.lock() else {
            return true;
        };
        let mut key = GroupKey {
            caller: caller.unwrap_or("-").to_string(),
            method: method.to_string(),
            prefix: path_prefix(path).to_string(),
            live: label(live.allowed),
            candidate: label(candidate.allowed),
            reason: candidate.why.as_str(),
        };
        if !inner.groups.contains_key(&key) && inner.groups.len() >= MAX_GROUPS {
            key = GroupKey {
                caller: "(other)".into(),
                method: "(other)".into(),
                prefix: "(other)".into(),
                live: "-",
                candidate: "-",
                reason: "-",
            };
        }
        inner
            .groups
            .entry(key)
            .or_insert_with(|| Group {
                count: 0,
                example: format!("{method} {path}"),
                live_status: live.status,
                candidate_status: candidate.status,
            })
            .count += 1;
        true
    }

    /// `(labels, seen, changed)`.
    pub fn totals(&self) -> (Vec<String>, u64, u64) {
        let labels = self
            .inner
            .lock()
            .map(|i| i.labels.clone())
            .unwrap_or_default();
        (
            labels,
            self.seen.load(Ordering::Relaxed),
            self.changed.load(Ordering::Relaxed),
        )
    }

    /// `GET /shadow`: the candidates, totals and the groups, largest first.
    pub fn counters(&self) -> ShadowCounters {
        let (candidates, seen, changed) = self.totals();
        let mut groups: Vec<(GroupKey, Group)> = self
            .inner
            .lock()
            .map(|i| {
                i.groups
                    .iter()
                    .map(|(k, g)| (k.clone(), g.clone()))
                    .collect()
            })
            .unwrap_or_default();
        groups.sort_by(|a, b| {
            b.1.count
                .cmp(&a.1.count)
                .then_with(|| a.1.example.cmp(&b.1.example))
        });
        ShadowCounters {
            candidates,
            seen,
            changed,
            groups: groups
                .into_iter()
                .map(|(k, g)| ShadowGroup {
                    caller: k.caller,
                    method: k.method,
                    path_prefix: k.prefix,
                    live: k.live.to_string(),
                    candidate: k.candidate.to_string(),
                    reason: k.reason.to_string(),
                    live_status: g.live_status,
                    candidate_status: g.candidate_status,
                    count: g.count,
                    example: g.example,
                })
                .collect(),
        }
    }
}

/// How often a sidecar sends its shadow counters to the agent.
pub const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends the shadow counters once (`PUT /v1/tribune/shadow-report`): one report per
/// staged entry the candidate differs by. Nothing is sent without a candidate.
pub async fn report_once(
    proxy: &crate::Proxy,
    client: &tribune_client::Client,
    service: &str,
    name: &str,
) -> Result<(), String> {
    let counters = proxy.shadow.counters();
    let (labels, seen, changed) = (counters.candidates, counters.seen, counters.changed);
    if labels.is_empty() {
        return Ok(());
    }
    // The largest groups (counters() sorts them), so the agent can show where.
    let groups: Vec<_> = counters
        .groups
        .into_iter()
        .take(tribune_model::api::MAX_REPORTED_GROUPS)
        .collect();
    let body: Vec<ShadowReport> = labels
        .iter()
        .map(|l| ShadowReport {
            candidate: l.clone(),
            service: service.to_string(),
            proxy: name.to_string(),
            seen,
            changed,
            groups: groups.clone(),
            received_at: 0,
        })
        .collect();
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let r = client
        .request("PUT", paths::SHADOW_REPORT, Some(body))
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("agent answered {}: {}", r.status, r.body.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_authz::ReasonCode;
    use tribune_enforce::Why;

    fn verdict(allowed: bool, status: u16, code: ReasonCode) -> Verdict {
        Verdict {
            allowed,
            status,
            why: Why::Decided(code),
        }
    }

    #[test]
    fn differences_are_grouped_and_a_new_candidate_restarts_the_counts() {
        let s = ShadowStats::default();
        s.begin(&["service-intentions/api@7".into()]);
        let allow = verdict(true, 200, ReasonCode::Intention);
        let missing = verdict(false, 401, ReasonCode::JwtMissing);
        assert!(!s.record(Some("web"), "GET", "/v1/a", allow, allow));
        assert!(s.record(Some("web"), "GET", "/v1/a", allow, missing));
        assert!(s.record(Some("web"), "GET", "/v1/b/c", allow, missing));
        assert!(s.record(None, "POST", "/admin", allow, missing));
        let v = serde_json::to_value(s.counters()).unwrap();
        assert_eq!(
            (v["Seen"].as_u64(), v["Changed"].as_u64()),
            (Some(4), Some(3))
        );
        assert_eq!(v["Groups"][0]["Count"], 2);
        assert_eq!(v["Groups"][0]["PathPrefix"], "/v1");
        assert_eq!(v["Groups"][0]["Reason"], "jwt_missing");
        assert_eq!(v["Groups"][0]["Example"], "GET /v1/a");
        assert_eq!(v["Groups"][1]["Caller"], "-");
        s.begin(&["service-intentions/api@7".into()]);
        assert_eq!(s.totals().1, 4, "the same candidate keeps its counts");
        s.begin(&["service-intentions/api@9".into()]);
        assert_eq!(
            s.totals(),
            (vec!["service-intentions/api@9".to_string()], 0, 0)
        );
    }

    #[test]
    fn groups_are_bounded() {
        let s = ShadowStats::default();
        let allow = verdict(true, 200, ReasonCode::Intention);
        let deny = verdict(false, 403, ReasonCode::Default);
        for i in 0..MAX_GROUPS + 50 {
            s.record(Some(&format!("svc{i}")), "GET", "/", allow, deny);
        }
        let v = serde_json::to_value(s.counters()).unwrap();
        assert_eq!(v["Groups"].as_array().map(Vec::len), Some(MAX_GROUPS + 1));
        assert_eq!(v["Groups"][0]["Caller"], "(other)");
        assert_eq!(v["Groups"][0]["Count"], 50);
    }

    #[test]
    fn prefixes_are_the_first_segment() {
        assert_eq!(path_prefix("/v1/items/7"), "/v1");
        assert_eq!(path_prefix("/v1"), "/v1");
        assert_eq!(path_prefix("/admin"), "/admin");
        assert_eq!(path_prefix("/"), "/");
    }
}
