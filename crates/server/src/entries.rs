//! `/v1/config`: write, read, list and delete config entries (Consul's `/v1/config`),
//! with Consul's cross-entry checks for providers and intentions.

use crate::acl::{Authorizer, Denied};
use crate::extract::{Caller, JsonBody, Query};
use crate::state::config::{forget_cache, refresh_after_write};
pub(crate) use crate::state::config::{load_all, load_all_at, load_one};
use crate::state::write::{guarded_then, Step};
use crate::{
    block_on_table, index_header, query_get, ApiError, ApiResult, AppState, Shared, CONFIG_TABLE,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tribune_authz::is_http_like;
use tribune_model::{entry_from_json, go, ConfigEntry, EntryError, Kind, WILDCARD};
use tribune_store::{Cas, Op, Record};

pub(crate) fn entry_key(kind: Kind, name: &str) -> String {
    format!("{kind}/{name}")
}

/// The entry as the API returns it: canonical JSON plus `Hash`, `CreateIndex`,
/// `ModifyIndex`.
pub(crate) fn entry_json(entry: &ConfigEntry, r: &Record) -> Value {
    let mut v = entry.to_json();
    if let Value::Object(m) = &mut v {
        m.insert("Hash".into(), Value::from(entry.content_hash()));
        m.insert("CreateIndex".into(), Value::from(r.create_index));
        m.insert("ModifyIndex".into(), Value::from(r.modify_index));
    }
    v
}

/// The protocol of a service: its `service-defaults`, else `proxy-defaults`, else tcp.
pub(crate) use tribune_enforce::protocol_of;

pub(crate) fn can_write(a: &Authorizer, entry_kind: Kind, name: &str) -> Result<(), Denied> {
    match entry_kind {
        // Consul: mesh:write, which falls back to operator:write.
        Kind::JwtProvider | Kind::ProxyDefaults | Kind::Mesh => a.mesh_write(),
        // decisions.md #11: intentions:write on the destination, or mesh:write.
        Kind::ServiceIntentions => a
            .intentions_write(name)
            .or_else(|e| a.mesh_write().map_err(|_| e)),
        Kind::ServiceDefaults => a.service_write(name),
    }
}

pub(crate) fn can_read(a: &Authorizer, entry_kind: Kind, name: &str) -> Result<(), Denied> {
    match entry_kind {
        Kind::JwtProvider => a.service_write_any().or_else(|_| a.mesh_read()),
        Kind::ServiceIntentions => a.intentions_read(name),
        Kind::ServiceDefaults => a.service_read(name),
        // Consul: anyone may read these (every proxy needs them).
        Kind::ProxyDefaults | Kind::Mesh => Ok(()),
    }
}

/// §b.4 and its reverse, in the enforcement crate (the offline `intention test`
/// applies them too).
pub(crate) fn cross_checks(
    current: &[(ConfigEntry, Record)],
    new: Option<&ConfigEntry>,
    removed: Option<(Kind, &str)>,
) -> Result<(), String> {
    let current: Vec<&ConfigEntry> = current.iter().map(|(e, _)| e).collect();
    tribune_enforce::cross_checks(&current, new, removed)
}

fn decode_error(e: EntryError) -> ApiError {
    match e {
        EntryError::Decode(d) => ApiError::bad_request(format!("Request decoding failed: {d}")),
        EntryError::Invalid(v) => ApiError::bad_request(v.to_string()),
    }
}

fn parse_cas(q: &[(String, String)]) -> ApiResult<Cas> {
    match query_get(q, "cas") {
        None => Ok(Cas::Any),
        Some(s) => match s.parse::<u64>() {
            Ok(0) => Ok(Cas::Absent),
            Ok(i) => Ok(Cas::ModifyIndex(i)),
            Err(_) => Err(ApiError::bad_request(format!(
                "Failed to parse cas parameter: {s:?}"
            ))),
        },
    }
}

/// The records the cross-entry checks of writing (or deleting) `kind/name` read, as
/// guards on their ModifyIndex; `None` when the checks read the whole table (a
/// proxy-defaults change re-checks every intention, a provider's deletion every
/// reference). Writes race first with the whole-table guard, whose success lets the
/// decoded-entry cache be updated in place; a write that lost that race retries with
/// these narrow guards, so writers of unrelated entries through different agents do
/// not keep failing each other's checks.
fn narrow_guards(
    current: &[(ConfigEntry, Record)],
    kind: Kind,
    name: &str,
    new: Option<&ConfigEntry>,
) -> Option<Vec<Op>> {
    let guard = |k: Kind, n: &str| {
        let index = current
            .iter()
            .find(|(e, _)| e.kind() == k && e.name() == n)
            .map(|(_, r)| r.modify_index)
            .unwrap_or(0);
        Op::unchanged_key(CONFIG_TABLE, &entry_key(k, n), index)
    };
    let global = tribune_model::entry::PROXY_DEFAULTS_NAME;
    match kind {
        // Its providers exist; its destination's protocol allows its permissions.
        Kind::ServiceIntentions => {
            let mut ops = vec![
                guard(Kind::ServiceDefaults, name),
                guard(Kind::ProxyDefaults, global),
            ];
            if let Some(ConfigEntry::ServiceIntentions(si)) = new {
                for p in si.referenced_providers() {
                    if p != tribune_authz::ANY_PROVIDER {
                        ops.push(guard(Kind::JwtProvider, p));
                    }
                }
            }
            Some(ops)
        }
        // The service's protocol still fits its intentions.
        Kind::ServiceDefaults => Some(vec![
            guard(Kind::ServiceIntentions, name),
            guard(Kind::ProxyDefaults, global),
        ]),
        // Writing a provider or the mesh entry checks nothing else.
        Kind::JwtProvider if new.is_some() => Some(Vec::new()),
        Kind::Mesh => Some(Vec::new()),
        Kind::JwtProvider | Kind::ProxyDefaults => None,
    }
}

/// Outcome of [`write_entry`].
pub(crate) struct Written {
    /// False when the check-and-set condition failed.
    pub ok: bool,
    /// decisions.md #3 warnings for the written entry.
    pub warnings: Vec<String>,
}

/// Writes an entry after all checks, against one snapshot of the state.
pub(crate) async fn write_entry(
    state: &AppState,
    entry: &ConfigEntry,
    cas: Cas,
) -> ApiResult<Written> {
    let value = entry.to_canonical_string().into_bytes();
    let (ok, warnings) = commit(
        state,
        entry.kind(),
        entry.name(),
        Some((entry, value)),
        cas,
        Vec::new(),
    )
    .await?;
    Ok(Written { ok, warnings })
}

/// Writes (`Some`) or deletes (`None`) `kind/name` after the cross-entry checks, against
/// one snapshot of the state, guarded on what the checks read (the whole table first,
/// then the narrow guards; retried while another agent wins the race). Returns the CAS
/// outcome and the write's warnings. `extra` operations (on other tables) commit in
/// the same transaction.
pub(crate) async fn commit(
    state: &AppState,
    kind: Kind,
    name: &str,
    written: Option<(&ConfigEntry, Vec<u8>)>,
    cas: Cas,
    extra: Vec<Op>,
) -> ApiResult<(bool, Vec<String>)> {
    let key = entry_key(kind, name);
    let new = written.as_ref().map(|(e, _)| *e);
    let (key, written, extra) = (&key, &written, &extra);
    // The step: check against one snapshot, guarded on what the check read (the whole
    // table first; after a lost race, the narrow guards of what it depends on).
    let step = move |attempt: u32| async move {
        let (index, current) = load_all_at(state).await?;
        let removed = new.is_none().then_some((kind, name));
        cross_checks(&current, new, removed).map_err(ApiError::bad_request)?;
        let warnings = new
            .map(|e| warnings_for(state, &current, e))
            .unwrap_or_default();
        let narrow = match attempt {
            0 => None,
            _ => narrow_guards(&current, kind, name, new),
        };
        let whole_table = narrow.is_none();
        let mut ops = vec![match written {
            Some((_, value)) => Op::put(CONFIG_TABLE, key, value.clone(), cas),
            None => Op::delete(CONFIG_TABLE, key, cas),
        }];
        ops.extend(narrow.unwrap_or_else(|| vec![Op::unchanged(CONFIG_TABLE, index)]));
        ops.extend(extra.iter().cloned());
        Ok(Step::Write {
            ops,
            then: (index, current, whole_table, warnings),
        })
    };
    guarded_then(state, CONFIG_TABLE, step, |applied, then| {
        let (index, current, whole_table, warnings) = then;
        let Some(applied) = applied else {
            return (false, warnings);
        };
        if applied.changed {
            let what = if new.is_some() { "written" } else { "deleted" };
            tracing::info!(kind = %kind, name, index = applied.index, "config entry {what}");
            if whole_table {
                let fresh = written.as_ref().map(|(e, v)| (*e, v.clone()));
                refresh_after_write(state, current, applied.index, key, fresh);
                state.documents.written(index, applied.index, key);
            } else {
                forget_cache(state);
            }
        }
        (applied.ok, warnings)
    })
    .await
}

/// `PUT /v1/config[?cas=N]`.
pub(crate) async fn put_config(
    State(state): State<Shared>,
    query: Query,
    Caller(authz): Caller,
    JsonBody(value): JsonBody,
) -> ApiResult<Response> {
    let q = query.pairs();
    let entry = entry_from_json(value).map_err(decode_error)?;
    can_write(&authz, entry.kind(), entry.name())?;
    if staging(q) {
        return crate::staged::stage(&state, &entry).await;
    }
    let cas = parse_cas(q)?;
    let mut written = write_entry(&state, &entry, cas).await?;
    // `?check=true` (what `tribune config write` sends): a provider whose keys the
    // agent cannot fetch now is written, with a warning saying why. Asked for, not
    // done on every write: an agent may not reach the provider from where it runs.
    if let (true, ConfigEntry::JwtProvider(p)) = (
        matches!(query_get(q, "check"), Some("" | "true" | "1")),
        &entry,
    ) {
        written.warnings.extend(key_fetch_warning(p).await);
    }
    let mut res = Json(written.ok).into_response();
    for w in written.warnings {
        if let Ok(v) = HeaderValue::from_str(&w) {
            res.headers_mut()
                .append(HeaderName::from_static("x-tribune-warning"), v);
        }
    }
    Ok(res)
}

/// How long a write waits for its provider check (`?check=true`).
const WRITE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A warning when `p`'s remote keys cannot be fetched now (a key set answering 404,
/// a discovery document naming another issuer, a host that does not answer); none
/// for keys held in the entry or a file.
pub(crate) async fn key_fetch_warning(p: &tribune_model::JwtProvider) -> Option<String> {
    if !matches!(
        p.json_web_key_set,
        tribune_model::jwt_provider::JsonWebKeySet::Remote(_)
    ) {
        return None;
    }
    let hint = format!(
        "requests that carry a token for it fail until the keys can be fetched (`tribune jwt-provider check {}` shows each step)",
        p.name
    );
    let check = tribune_jwks::check::check(p, None, crate::ca_api::now());
    match tokio::time::timeout(WRITE_CHECK_TIMEOUT, check).await {
        Err(_) => Some(format!(
            "jwt-provider {:?}: the agent got no key set within {} s; {hint}",
            p.name,
            WRITE_CHECK_TIMEOUT.as_secs()
        )),
        Ok(report) if report.ok => None,
        Ok(report) => {
            let failed = report.steps.iter().find(|s| !s.ok);
            let why = failed.map_or_else(
                || "the key set holds no usable key".to_string(),
                |s| format!("{}: {}", s.target, s.detail),
            );
            Some(format!(
                "jwt-provider {:?}: the agent could not fetch its keys ({why}); {hint}",
                p.name
            ))
        }
    }
}

/// decisions.md #3: warnings for intentions Consul accepts but that likely do not do
/// what their author meant.
pub(crate) fn warnings_for(
    state: &AppState,
    current: &[(ConfigEntry, Record)],
    entry: &ConfigEntry,
) -> Vec<String> {
    if let ConfigEntry::JwtProvider(p) = entry {
        return tribune_authz::provider_warnings(p);
    }
    let ConfigEntry::ServiceIntentions(si) = entry else {
        return Vec::new();
    };
    let entries: Vec<&ConfigEntry> = current.iter().map(|(e, _)| e).collect();
    let http = (si.name != WILDCARD).then(|| is_http_like(&protocol_of(&entries, &si.name)));
    tribune_authz::write_warnings(si, state.config.default_intention_policy, http)
}

/// `?stage=true`: the request is about the staged candidate (Tribune's extension).
fn staging(q: &[(String, String)]) -> bool {
    matches!(query_get(q, "stage"), Some("" | "true" | "1"))
}

pub(crate) fn parse_kind(kind: &str) -> ApiResult<Kind> {
    Kind::parse(kind).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /v1/config/:kind/:name` (blocking).
pub(crate) async fn get_config(
    State(state): State<Shared>,
    Path((kind, name)): Path<(String, String)>,
    query: Query,
    _headers: HeaderMap,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let kind = parse_kind(&kind)?;
    can_read(&authz, kind, &name)?;
    if staging(q) {
        return crate::staged::get(&state, kind, &name).await;
    }
    let index = block_on_table(&state, CONFIG_TABLE, q).await?;
    match load_one(&state, kind, &name).await? {
        None => Err(ApiError::not_found(format!(
            "Config entry not found for {} / {}",
            go::quote(kind.as_str()),
            go::quote(&name)
        ))),
        Some((e, _)) if query_get(q, "format") == Some("hcl") => {
            // Tribune's extension: the entry as an HCL file (what the UI shows).
            let hcl = match e.to_json() {
                serde_json::Value::Object(m) => tribune_model::hcl::render(&m),
                _ => String::new(),
            };
            Ok((
                [
                    index_header(index),
                    (
                        axum::http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    ),
                ],
                hcl,
            )
                .into_response())
        }
        Some((e, r)) => Ok(([index_header(index)], Json(entry_json(&e, &r))).into_response()),
    }
}

async fn list(
    state: &AppState,
    kind: Option<Kind>,
    q: &[(String, String)],
    authz: Authorizer,
) -> ApiResult<Response> {
    // Consul filters service-defaults only (with go-bexpr).
    let filter = match kind {
        Some(Kind::ServiceDefaults) => {
            crate::filters::from_query(q, crate::filters::SERVICE_DEFAULTS).await?
        }
        _ if query_get(q, "filter").is_some_and(|f| !f.is_empty()) => {
            return Err(ApiError::bad_request(match kind {
                Some(k) => format!("filtering not supported for config entry kind={k}"),
                None => "filtering not supported when listing every kind".to_string(),
            }));
        }
        _ => None,
    };
    let index = block_on_table(state, CONFIG_TABLE, q).await?;
    let mut filtered = false;
    let mut out = Vec::new();
    for (e, r) in load_all(state).await?.iter() {
        if kind.is_some_and(|k| k != e.kind()) {
            continue;
        }
        if can_read(&authz, e.kind(), e.name()).is_err() {
            filtered = true;
            continue;
        }
        let json = entry_json(e, r);
        if crate::filters::keeps(&filter, &json) {
            out.push(json);
        }
    }
    let mut res = ([index_header(index)], Json(out)).into_response();
    if filtered {
        res.headers_mut().insert(
            HeaderName::from_static("x-consul-results-filtered-by-acls"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(res)
}

/// `GET /v1/config/:kind` (blocking, ACL-filtered).
pub(crate) async fn list_kind(
    State(state): State<Shared>,
    Path(kind): Path<String>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let kind = parse_kind(&kind)?;
    list(&state, Some(kind), query.pairs(), authz).await
}

/// `GET /v1/config/`: entries of every kind.
pub(crate) async fn list_all(
    State(state): State<Shared>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    list(&state, None, query.pairs(), authz).await
}

/// `DELETE /v1/config/:kind/:name[?cas=N]`.
pub(crate) async fn delete_config(
    State(state): State<Shared>,
    Path((kind, name)): Path<(String, String)>,
    query: Query,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let kind = parse_kind(&kind)?;
    can_write(&authz, kind, &name)?;
    if staging(q) {
        return crate::staged::unstage(&state, kind, &name).await;
    }
    let cas = query_get(q, "cas").is_some();
    let cas_cond = parse_cas(q)?;
    let ok = delete_entry(&state, kind, &name, cas_cond).await?;
    if cas {
        Ok(Json(ok).into_response())
    } else {
        Ok(Json(serde_json::json!({})).into_response())
    }
}

pub(crate) async fn delete_entry(
    state: &AppState,
    kind: Kind,
    name: &str,
    cas: Cas,
) -> ApiResult<bool> {
    Ok(commit(state, kind, name, None, cas, Vec::new()).await?.0)
}
