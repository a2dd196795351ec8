//! Staged policies (Tribune's extension): a candidate of a `service-intentions`,
//! `jwt-provider` or `mesh` entry stored next to the live one, evaluated by the
//! sidecars beside it (shadow decisions) and never enforced until promoted.
//!
//! - `PUT /v1/config?stage=true`: the candidate goes through the same decoding,
//!   validation, ACLs and cross-entry checks as a live write (checked against the live
//!   entries with the other candidates in place); the live entry's `ModifyIndex` at
//!   staging time is recorded with it.
//! - `GET|DELETE /v1/config/<kind>/<name>?stage=true`: read or drop the candidate.
//! - `PUT /v1/tribune/staged/<kind>/<name>/promote[?force=true]`: the candidate becomes
//!   the live entry and the candidate is removed, in one transaction, only if the live
//!   entry is unchanged since staging (CAS on the recorded index; `force` skips it).
//! - `GET /v1/tribune/staged[/<kind>/<name>]`: candidates with what the sidecars saw:
//!   requests evaluated and requests the candidate would decide differently.
//! - `PUT /v1/tribune/shadow-report`: a sidecar's shadow counters (its `service:write`).
//!
//! Entries stay Consul files: nothing is added to the entry itself.

use crate::entries::{can_read, can_write, commit, entry_key, load_all_at, parse_kind};
use crate::extract::{Caller, JsonBody, Query};
use crate::state::typed::{Stored, Table};
use crate::{query_get, ApiError, ApiResult, AppState, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tribune_model::{entry_from_json, go, ConfigEntry, Kind};
use tribune_store::{Cas, Op, Record};

/// The table of candidates, keyed like the live entries (`<kind>/<name>`).
pub(crate) const STAGED_TABLE: &str = "config-staged";
/// Sidecars' shadow counters, keyed `<candidate label>\0<proxy>`.
pub(crate) const SHADOW_TABLE: &str = "shadow-reports";
/// Shadow reports by `candidate\0service\0proxy`.
const SHADOWS: Table<ShadowReport> = Table::new(SHADOW_TABLE);
/// Candidates by `<kind>/<name>`.
const STAGED: Table<StagedValue> = Table::new(STAGED_TABLE);

/// A stored candidate.
#[derive(Debug, Serialize, Deserialize)]
struct StagedValue {
    #[serde(rename = "Entry")]
    entry: Value,
    /// The live entry's `ModifyIndex` when the candidate was staged (0: none).
    #[serde(rename = "LiveIndex")]
    live_index: u64,
}

/// One candidate, decoded.
pub(crate) struct Staged {
    pub entry: ConfigEntry,
    pub live_index: u64,
    pub record: Record,
}

impl Staged {
    /// `kind/name@index`: what sidecars report their counters under.
    pub fn label(&self) -> String {
        format!(
            "{}/{}@{}",
            self.entry.kind(),
            self.entry.name(),
            self.record.modify_index
        )
    }
}

fn decode(stored: Stored<StagedValue>) -> ApiResult<Staged> {
    let record = stored.record();
    let entry = entry_from_json(stored.value.entry)
        .map_err(|e| crate::internal_error(format!("staged record {}: {e}", record.key)))?;
    Ok(Staged {
        entry,
        live_index: stored.value.live_index,
        record,
    })
}

/// Every candidate.
pub(crate) async fn load_staged(state: &AppState) -> ApiResult<Vec<Staged>> {
    STAGED.list(state).await?.into_iter().map(decode).collect()
}

fn stageable(kind: Kind) -> ApiResult<()> {
    match kind {
        Kind::ServiceIntentions | Kind::JwtProvider | Kind::Mesh => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "only service-intentions, jwt-provider and mesh entries can be staged, not {other}"
        ))),
    }
}

/// `PUT /v1/config?stage=true` (called by `put_config`).
pub(crate) async fn stage(state: &AppState, entry: &ConfigEntry) -> ApiResult<Response> {
    stageable(entry.kind())?;
    let key = entry_key(entry.kind(), entry.name());
    let _serial = state.write_lock.lock().await;
    let (_, live) = load_all_at(state).await?;
    let staged = load_staged(state).await?;
    // Checked against the state the candidates would make together (a staged
    // intention may reference a staged provider).
    let same = |a: &ConfigEntry, b: &ConfigEntry| a.kind() == b.kind() && a.name() == b.name();
    let overlay: Vec<(ConfigEntry, Record)> = live
        .iter()
        .filter(|(e, _)| {
            !staged
                .iter()
                .any(|s| same(&s.entry, e) && !same(&s.entry, entry))
        })
        .cloned()
        .chain(
            staged
                .iter()
                .filter(|s| !same(&s.entry, entry))
                .map(|s| (s.entry.clone(), s.record.clone())),
        )
        .collect();
    crate::entries::cross_checks(&overlay, Some(entry), None).map_err(ApiError::bad_request)?;
    let live_index = live
        .iter()
        .find(|(e, _)| same(e, entry))
        .map_or(0, |(_, r)| r.modify_index);
    let value = StagedValue {
        entry: entry.to_json(),
        live_index,
    };
    crate::state::write::apply(state, &[STAGED.put(&key, &value, Cas::Any)?]).await?;
    tracing::info!(kind = %entry.kind(), name = entry.name(), live_index, "config entry staged");
    Ok(Json(true).into_response())
}

/// `GET /v1/config/<kind>/<name>?stage=true` (called by `get_config`).
pub(crate) async fn get(state: &AppState, kind: Kind, name: &str) -> ApiResult<Response> {
    let Some(r) = STAGED.get(state, &entry_key(kind, name)).await? else {
        return Err(not_staged(kind, name));
    };
    let s = decode(r)?;
    let mut v = s.entry.to_json();
    if let Value::Object(m) = &mut v {
        m.insert("CreateIndex".into(), Value::from(s.record.create_index));
        m.insert("ModifyIndex".into(), Value::from(s.record.modify_index));
    }
    Ok(Json(v).into_response())
}

/// `DELETE /v1/config/<kind>/<name>?stage=true` (called by `delete_config`).
pub(crate) async fn unstage(state: &AppState, kind: Kind, name: &str) -> ApiResult<Response> {
    let key = entry_key(kind, name);
    let mut ops = vec![STAGED.delete(&key, Cas::Any)];
    ops.extend(forget_reports(state, kind, name).await?);
    crate::state::write::apply(state, &ops).await?;
    Ok(Json(true).into_response())
}

/// Deletes of the sidecars' reports about any candidate of `kind/name`.
async fn forget_reports(state: &AppState, kind: Kind, name: &str) -> ApiResult<Vec<Op>> {
    let prefix = format!("{}@", entry_key(kind, name));
    Ok(SHADOWS
        .list(state)
        .await?
        .iter()
        .filter(|r| r.key.starts_with(&prefix))
        .map(|r| SHADOWS.delete(&r.key, Cas::Any))
        .collect())
}

fn not_staged(kind: Kind, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "No staged candidate for {} / {}",
        go::quote(kind.as_str()),
        go::quote(name)
    ))
}

/// `PUT /v1/tribune/staged/<kind>/<name>/promote[?force=true]`.
pub(crate) async fn promote(
    State(state): State<Shared>,
    Path((kind, name)): Path<(String, String)>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let kind = parse_kind(&kind)?;
    can_write(&authz, kind, &name)?;
    let force = matches!(query_get(q, "force"), Some("" | "true" | "1"));
    let key = entry_key(kind, &name);
    let Some(r) = STAGED.get(&state, &key).await? else {
        return Err(not_staged(kind, &name));
    };
    let s = decode(r)?;
    // Pinned to the candidate that was reviewed (hardening round 3, item 13).
    if let Some(pinned) = query_get(q, "index") {
        let pinned: u64 = pinned
            .parse()
            .map_err(|_| ApiError::bad_request(format!("index: not a number: {pinned:?}")))?;
        if pinned != s.record.modify_index {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "the candidate for {kind}/{name} was staged again since index {pinned} (it is at {} now); review it again before promoting",
                    s.record.modify_index
                ),
            ));
        }
    }
    let cas = match (force, s.live_index) {
        (true, _) => Cas::Any,
        (false, 0) => Cas::Absent,
        (false, i) => Cas::ModifyIndex(i),
    };
    let value = s.entry.to_canonical_string().into_bytes();
    let mut extra = vec![STAGED.delete(&key, Cas::ModifyIndex(s.record.modify_index))];
    extra.extend(forget_reports(&state, kind, &name).await?);
    let (ok, _) = commit(&state, kind, &name, Some((&s.entry, value)), cas, extra).await?;
    if ok {
        tracing::info!(kind = %kind, name, "staged candidate promoted");
        return Ok(Json(true).into_response());
    }
    // Why: the live entry moved on, or the candidate was re-staged meanwhile.
    let now = crate::entries::load_one(&state, kind, &name)
        .await?
        .map_or(0, |(_, r)| r.modify_index);
    let msg = if now != s.live_index {
        format!(
            "the live entry {kind}/{name} changed since the candidate was staged (ModifyIndex {} then, {now} now); stage it again, or promote with -force",
            s.live_index
        )
    } else {
        format!("the candidate for {kind}/{name} changed while it was promoted; try again")
    };
    Err(ApiError(StatusCode::CONFLICT, msg))
}

pub use tribune_model::api::ShadowReport;
use tribune_model::api::{SidecarCounts, StagedCandidate};

/// Reports one request may carry.
const MAX_REPORTS_PER_REQUEST: usize = 64;
/// Records kept per service (sidecars times candidates).
pub(crate) const MAX_REPORTS_PER_SERVICE: usize = 256;
/// Longest `Service`, `Proxy` or `Candidate` taken.
const MAX_REPORT_NAME: usize = 256;
/// A report not refreshed for this long is dropped (sidecars report every 10 s).
pub(crate) const REPORT_TTL_SECS: i64 = 600;

/// `PUT /v1/tribune/shadow-report`: `[ShadowReport]` from one sidecar.
///
/// Evidence for a promotion, so it is taken with care (hardening round 3, item 9):
/// the candidate must be staged now; a candidate of `service-intentions/X` (not `*`)
/// only from sidecars of X; with `service:write` on the reporting service; names
/// bounded, at most [`MAX_REPORTS_PER_SERVICE`] records per service, each keyed by
/// candidate, service and proxy (a service cannot overwrite another's), summed with
/// saturation, and dropped after [`REPORT_TTL_SECS`] without a refresh.
pub(crate) async fn report(
    State(state): State<Shared>,
    Caller(authz): Caller,
    JsonBody(v): JsonBody,
) -> ApiResult<Response> {
    let mut reports: Vec<ShadowReport> = tribune_model::decode::from_value(&v, "")
        .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
    if reports.len() > MAX_REPORTS_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_REPORTS_PER_REQUEST} reports per request, got {}",
            reports.len()
        )));
    }
    let staged: Vec<String> = load_staged(&state)
        .await?
        .iter()
        .map(Staged::label)
        .collect();
    let now = crate::ca_api::now();
    for r in &mut reports {
        for (field, value) in [
            ("Candidate", &r.candidate),
            ("Service", &r.service),
            ("Proxy", &r.proxy),
        ] {
            if value.is_empty() || value.len() > MAX_REPORT_NAME || value.contains('\0') {
                return Err(ApiError::bad_request(format!(
                    "{field} must be 1 to {MAX_REPORT_NAME} bytes without NUL"
                )));
            }
        }
        check_groups(r)?;
        authz.service_write(&r.service)?;
        if !staged.contains(&r.candidate) {
            return Err(ApiError::bad_request(format!(
                "no staged candidate {}",
                go::quote(&r.candidate)
            )));
        }
        let intentions_of = r
            .candidate
            .strip_prefix("service-intentions/")
            .and_then(|rest| rest.rsplit_once('@'))
            .map(|(name, _)| name);
        if let Some(x) = intentions_of.filter(|x| *x != tribune_model::WILDCARD) {
            if r.service != x {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    format!(
                        "a report on {} is taken from sidecars of {} only, not of {}",
                        go::quote(&r.candidate),
                        go::quote(x),
                        go::quote(&r.service)
                    ),
                ));
            }
        }
        r.received_at = now;
    }
    // Refreshes of records already kept (every 10 s per sidecar) are plain writes;
    // only a new record is counted against its service's bound, and expired ones
    // go with that write.
    let mut all_known = true;
    for r in &reports {
        all_known &= SHADOWS.contains(&state, &report_key(r)).await?;
    }
    let existing = if all_known {
        Vec::new()
    } else {
        all_reports(&state).await?
    };
    let mut ops = Vec::new();
    for r in &reports {
        let key = report_key(r);
        let kept = existing
            .iter()
            .filter(|(k, e)| e.service == r.service && *k != key && fresh(e, now))
            .count();
        if kept >= MAX_REPORTS_PER_SERVICE {
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} already has {MAX_REPORTS_PER_SERVICE} shadow reports (sidecars times candidates); older ones expire after {REPORT_TTL_SECS} s",
                    go::quote(&r.service)
                ),
            ));
        }
        ops.push(SHADOWS.put(&key, r, Cas::Any)?);
    }
    // Expired records go with the write.
    ops.extend(
        existing
            .iter()
            .filter(|(_, e)| !fresh(e, now))
            .map(|(k, _)| SHADOWS.delete(k, Cas::Any)),
    );
    if !ops.is_empty() {
        crate::state::write::apply(&state, &ops).await?;
    }
    Ok(Json(true).into_response())
}

/// A report's groups are bounded like its names: at most
/// [`tribune_model::api::MAX_REPORTED_GROUPS`], each text at most
/// [`MAX_REPORT_NAME`] bytes without NUL.
fn check_groups(r: &ShadowReport) -> ApiResult<()> {
    let max = tribune_model::api::MAX_REPORTED_GROUPS;
    if r.groups.len() > max {
        return Err(ApiError::bad_request(format!(
            "Groups: at most {max} per report, got {}",
            r.groups.len()
        )));
    }
    for (i, g) in r.groups.iter().enumerate() {
        for (field, value) in [
            ("Caller", &g.caller),
            ("Method", &g.method),
            ("PathPrefix", &g.path_prefix),
            ("Live", &g.live),
            ("Candidate", &g.candidate),
            ("Reason", &g.reason),
            ("Example", &g.example),
        ] {
            if value.len() > MAX_REPORT_NAME || value.contains('\0') {
                return Err(ApiError::bad_request(format!(
                    "Groups[{i}].{field} must be at most {MAX_REPORT_NAME} bytes without NUL"
                )));
            }
        }
    }
    Ok(())
}

/// The groups of `reports` summed by what they group (caller, method, path
/// prefix, both decisions, reason), largest first, at most 50.
fn merged_groups(reports: &[&ShadowReport]) -> Vec<tribune_model::api::ShadowGroup> {
    let mut merged: Vec<tribune_model::api::ShadowGroup> = Vec::new();
    for g in reports.iter().flat_map(|r| &r.groups) {
        match merged.iter_mut().find(|m| {
            (
                &m.caller,
                &m.method,
                &m.path_prefix,
                &m.live,
                &m.candidate,
                &m.reason,
            ) == (
                &g.caller,
                &g.method,
                &g.path_prefix,
                &g.live,
                &g.candidate,
                &g.reason,
            )
        }) {
            Some(m) => m.count = m.count.saturating_add(g.count),
            None => merged.push(g.clone()),
        }
    }
    merged.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.example.cmp(&b.example))
    });
    merged.truncate(50);
    merged
}

fn report_key(r: &ShadowReport) -> String {
    format!("{}\0{}\0{}", r.candidate, r.service, r.proxy)
}

fn fresh(r: &ShadowReport, now: i64) -> bool {
    now - r.received_at <= REPORT_TTL_SECS
}

/// One candidate as `GET /v1/tribune/staged` shows it.
async fn describe(
    state: &AppState,
    s: &Staged,
    reports: &[ShadowReport],
) -> ApiResult<StagedCandidate> {
    let label = s.label();
    let mine: Vec<&ShadowReport> = reports.iter().filter(|r| r.candidate == label).collect();
    let live = crate::entries::load_one(state, s.entry.kind(), s.entry.name())
        .await?
        .map(|(_, r)| r.modify_index);
    Ok(StagedCandidate {
        kind: s.entry.kind().as_str().to_string(),
        name: s.entry.name().to_string(),
        candidate: label,
        staged_index: s.record.modify_index,
        live_index_at_staging: s.live_index,
        live_index: live.unwrap_or(0),
        live_changed: live.unwrap_or(0) != s.live_index,
        seen: mine.iter().fold(0u64, |sum, r| sum.saturating_add(r.seen)),
        changed: mine
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.changed)),
        sidecars: mine
            .iter()
            .map(|r| SidecarCounts {
                service: r.service.clone(),
                proxy: r.proxy.clone(),
                seen: r.seen,
                changed: r.changed,
            })
            .collect(),
        groups: merged_groups(&mine),
    })
}

/// Every stored report with its key.
async fn all_reports(state: &AppState) -> ApiResult<Vec<(String, ShadowReport)>> {
    Ok(SHADOWS
        .list(state)
        .await?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect())
}

/// The reports still fresh.
async fn reports(state: &AppState) -> ApiResult<Vec<ShadowReport>> {
    let now = crate::ca_api::now();
    Ok(all_reports(state)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| fresh(r, now))
        .collect())
}

/// `GET /v1/tribune/staged`: every candidate the token may read.
pub(crate) async fn list(
    State(state): State<Shared>,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let all = reports(&state).await?;
    let mut out = Vec::new();
    for s in load_staged(&state).await? {
        if can_read(&authz, s.entry.kind(), s.entry.name()).is_ok() {
            out.push(describe(&state, &s, &all).await?);
        }
    }
    Ok(Json(out).into_response())
}

/// `GET /v1/tribune/staged/<kind>/<name>`.
pub(crate) async fn show(
    State(state): State<Shared>,
    Path((kind, name)): Path<(String, String)>,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let kind = parse_kind(&kind)?;
    can_read(&authz, kind, &name)?;
    let Some(r) = STAGED.get(&state, &entry_key(kind, &name)).await? else {
        return Err(not_staged(kind, &name));
    };
    let s = decode(r)?;
    Ok(Json(describe(&state, &s, &reports(&state).await?).await?).into_response())
}
