//! Endpoints the web UI needs beyond Consul's API (Tribune's own, usable by any
//! client):
//!
//! - `PUT /v1/tribune/sidecar-report`: a sidecar's status
//!   ([`tribune_model::status::SidecarReport`]); needs `service:write` on its service,
//!   like the sidecar's other calls. The agent keeps the last report of each sidecar.
//! - `GET /v1/tribune/sidecars`: those reports (`service:read` on each service), with
//!   `SecondsSinceReport` (the last contact), `SecondsSinceSync` (the last answer
//!   from an agent) and `SecondsSincePolicyChange` computed on the agent's clock.
//! - `POST /v1/tribune/config/validate`: an entry file's text (HCL or JSON) checked as
//!   `PUT /v1/config` would check it (decode, validation, the cross-entry checks
//!   against the stored entries, write-time warnings; the last two need the ACL a
//!   write of the entry needs, 403 otherwise), nothing stored: `{"Valid",
//!   "Kind", "Name", "Errors": [{"Field", "Message"}], "Warnings", "Extensions",
//!   "Entry"}` (`Entry`: the canonical JSON to write).

use crate::ca_api::now;
use crate::entries::{cross_checks, load_all_at, warnings_for};
use crate::extract::Caller;
use crate::state::typed::Table;
use crate::{json_body, ApiError, ApiResult, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tribune_model::status::SidecarReport;
use tribune_model::EntryError;
use tribune_store::Cas;

pub(crate) const SIDECARS_TABLE: &str = "sidecars";
/// Sidecar reports by `service\0proxy`.
const SIDECARS: Table<SidecarReport> = Table::new(SIDECARS_TABLE);

pub(crate) async fn report(
    State(state): State<Shared>,
    Caller(authz): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    if body.len() > MAX_SIDECAR_REPORT {
        return Err(ApiError(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("a sidecar report is at most {MAX_SIDECAR_REPORT} bytes"),
        ));
    }
    let v = json_body(&body)?;
    let mut report: SidecarReport = tribune_model::decode::from_value(&v, "")
        .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
    if report.service.is_empty() || report.proxy.is_empty() {
        return Err(ApiError::bad_request(
            "Request decoding failed: Service and Proxy are required",
        ));
    }
    if report.service.len() > 256 || report.proxy.len() > 256 {
        return Err(ApiError::bad_request(
            "Service and Proxy are at most 256 bytes",
        ));
    }
    authz.service_write(&report.service)?;
    let now = now();
    report.received_at = now;
    let key = format!("{}\0{}", report.service, report.proxy);
    let mut ops = vec![SIDECARS.put(&key, &report, Cas::Any)?];
    // A sidecar refreshing its report (every 10 s) is one write. A new one is
    // counted against its service's bound, and reports not refreshed for an hour go
    // with its write.
    if SIDECARS.contains(&state, &key).await? {
        crate::state::write::apply(&state, &ops).await?;
        return Ok(Json(true).into_response());
    }
    let mut kept = 0;
    for other in SIDECARS.list(&state).await? {
        if now - other.value.received_at > SIDECAR_REPORT_TTL_SECS {
            ops.push(SIDECARS.delete(&other.key, Cas::Any));
        } else if other.value.service == report.service && other.key != key {
            kept += 1;
        }
    }
    if kept >= MAX_SIDECARS_PER_SERVICE {
        return Err(ApiError(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{:?} already has {MAX_SIDECARS_PER_SERVICE} sidecar reports; a sidecar's report expires an hour after its last",
                report.service
            ),
        ));
    }
    crate::state::write::apply(&state, &ops).await?;
    Ok(Json(true).into_response())
}

/// Largest sidecar report taken (a real one is a few KB).
const MAX_SIDECAR_REPORT: usize = 64 << 10;
/// Sidecar reports kept per service.
const MAX_SIDECARS_PER_SERVICE: usize = 1024;
/// A sidecar's report is dropped an hour after its last.
const SIDECAR_REPORT_TTL_SECS: i64 = 3600;

pub(crate) async fn sidecars(
    State(state): State<Shared>,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let now = now();
    let mut out = Vec::new();
    for stored in SIDECARS.list(&state).await? {
        let report = stored.value;
        if authz.service_read(&report.service).is_err() {
            continue;
        }
        let mut v = serde_json::to_value(&report).unwrap_or(Value::Null);
        v["SecondsSinceReport"] = json!((now - report.received_at).max(0));
        // The sidecar's "last sync" moved onto the agent's clock by the report's age.
        let on_agent_clock = |t: Option<i64>| match t {
            Some(t) => json!((report.reported_at - t).max(0) + (now - report.received_at).max(0)),
            None => Value::Null,
        };
        v["SecondsSinceSync"] = on_agent_clock(report.last_sync);
        v["SecondsSincePolicyChange"] = on_agent_clock(report.installed_at);
        out.push(v);
    }
    Ok(Json(out).into_response())
}

/// The field an error message names: its path, or the quoted key of a decode error
/// (`invalid config key "Sources[0].Nmae"`).
fn field_of(message: &str) -> String {
    let mut parts = message.split('"');
    match (parts.next(), parts.next()) {
        (Some(_), Some(quoted)) if !quoted.contains(' ') => quoted.to_string(),
        _ => String::new(),
    }
}

pub(crate) async fn validate(
    State(state): State<Shared>,
    query: crate::extract::Query,
    Caller(authz): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("Request decoding failed: the body is not UTF-8"))?;
    let error = |field: String, message: String| json!({ "Field": field, "Message": message });
    let entry = match tribune_model::parse_entry(text) {
        Ok(e) => e,
        Err(EntryError::Invalid(list)) => {
            let errors: Vec<Value> = list
                .0
                .iter()
                .map(|e| error(e.path.clone(), e.with_path()))
                .collect();
            return Ok(Json(json!({"Valid": false, "Errors": errors})).into_response());
        }
        Err(EntryError::Decode(tribune_model::DecodeError::Fields(list))) => {
            let errors: Vec<Value> = list.iter().map(|m| error(field_of(m), m.clone())).collect();
            return Ok(Json(json!({"Valid": false, "Errors": errors})).into_response());
        }
        Err(EntryError::Decode(e)) => {
            return Ok(Json(
                json!({"Valid": false, "Errors": [error(String::new(), e.to_string())]}),
            )
            .into_response());
        }
    };
    // The checks against the stored entries (and the warnings) tell which providers
    // exist, protocols, and whether L7 intentions do: for callers who may write the
    // entry, as `PUT /v1/config` needs (hardening round 3, item 14). The entry's own
    // syntax and rules above are anyone's.
    crate::entries::can_write(&authz, entry.kind(), entry.name())?;
    let (_, current) = load_all_at(&state).await?;
    let mut errors = Vec::new();
    if let Err(e) = cross_checks(&current, Some(&entry), None) {
        errors.push(error(String::new(), e));
    }
    let mut warnings = warnings_for(&state, &current, &entry);
    // `?check=true`: the agent fetches a provider's keys now, as a write with the
    // check does.
    if let (true, tribune_model::ConfigEntry::JwtProvider(p)) = (
        matches!(
            crate::query_get(query.pairs(), "check"),
            Some("" | "true" | "1")
        ),
        &entry,
    ) {
        warnings.extend(crate::entries::key_fetch_warning(p).await);
    }
    Ok(Json(json!({
        "Valid": errors.is_empty(),
        "Kind": entry.kind().as_str(),
        "Name": entry.name(),
        "Errors": errors,
        "Warnings": warnings,
        "Extensions": entry.tribune_extensions(),
        "Entry": entry.to_json(),
    }))
    .into_response())
}
