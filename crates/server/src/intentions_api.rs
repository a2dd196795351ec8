//! `/v1/connect/intentions/*` (Consul's intentions API), computed from the
//! `service-intentions` entries.

use crate::entries::{can_write, delete_entry, load_all, load_one, write_entry};
use crate::extract::{self, Query};
use crate::{
    block_on_table, index_header, json_body, query_get, ApiError, ApiResult, AppState, Shared,
    CONFIG_TABLE,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tribune_authz::Caller;
use tribune_enforce::explain::{parse_service_ref, ExplainRequest};
use tribune_enforce::{Options, Policy, PolicyDocument};
use tribune_jwks::Runtimes;
use tribune_model::api::IntentionCheck;
use tribune_model::intentions::SourceIntention;
use tribune_model::{entry_from_json, go, ConfigEntry, Kind, ServiceIntentions, WILDCARD};
use tribune_store::{Cas, Record};

/// A source or destination parameter: `name`, `default/name` or `peer:<peer>/name`.
struct Ref {
    name: String,
    peer: String,
}

fn parse_ref(s: &str, param: &str) -> ApiResult<Ref> {
    let (name, peer) = parse_service_ref(s, param).map_err(ApiError::bad_request)?;
    Ok(Ref { name, peer })
}

/// The `source` and `destination` parameters every intentions endpoint takes.
fn endpoints(q: &[(String, String)]) -> ApiResult<(Ref, Ref)> {
    Ok((
        parse_ref(required(q, "source")?, "source")?,
        parse_ref(required(q, "destination")?, "destination")?,
    ))
}

fn required<'a>(q: &'a [(String, String)], key: &str) -> ApiResult<&'a str> {
    query_get(q, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("required query parameter '{key}' not set")))
}

/// One intention in Consul's `Intention` JSON shape.
fn intention_json(entry: &ServiceIntentions, src: &SourceIntention, r: &Record) -> Value {
    let mut v = serde_json::to_value(src).unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("ID".into(), Value::from(""));
    out.insert("Description".into(), Value::from(src.description.clone()));
    out.insert("SourcePeer".into(), Value::from(src.peer.clone()));
    out.insert("SourceNS".into(), Value::from("default"));
    out.insert("SourceName".into(), Value::from(src.name.clone()));
    out.insert("DestinationNS".into(), Value::from("default"));
    out.insert("DestinationName".into(), Value::from(entry.name.clone()));
    out.insert("SourceType".into(), Value::from("consul"));
    if let Some(a) = v.get_mut("Action").map(Value::take) {
        out.insert("Action".into(), a);
    }
    if let Some(p) = v.get_mut("Permissions").map(Value::take) {
        out.insert("Permissions".into(), p);
    }
    if let Some(j) = &entry.jwt {
        out.insert("JWT".into(), serde_json::to_value(j).unwrap_or(Value::Null));
    }
    out.insert(
        "Meta".into(),
        serde_json::to_value(&entry.meta).unwrap_or(Value::Null),
    );
    out.insert("Precedence".into(), Value::from(src.precedence));
    out.insert("CreateIndex".into(), Value::from(r.create_index));
    out.insert("ModifyIndex".into(), Value::from(r.modify_index));
    Value::Object(out)
}

fn intentions_of(all: &[(ConfigEntry, Record)]) -> Vec<(&ServiceIntentions, &Record)> {
    all.iter()
        .filter_map(|(e, r)| match e {
            ConfigEntry::ServiceIntentions(si) => Some((si, r)),
            _ => None,
        })
        .collect()
}

/// `GET /v1/connect/intentions`: every intention the token may read.
pub(crate) async fn list(
    State(state): State<Shared>,
    query: Query,
    extract::Caller(authz): extract::Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let filter = crate::filters::from_query(q, crate::filters::INTENTION).await?;
    let index = block_on_table(&state, CONFIG_TABLE, q).await?;
    let all = load_all(&state).await?;
    let mut out = Vec::new();
    for (si, r) in intentions_of(&all) {
        if authz.intentions_read(&si.name).is_err() {
            continue;
        }
        out.extend(
            si.sources
                .iter()
                .map(|s| intention_json(si, s, r))
                .filter(|i| crate::filters::keeps(&filter, i)),
        );
    }
    Ok(([index_header(index)], Json(out)).into_response())
}

/// `GET /v1/connect/intentions/exact?source=&destination=`.
pub(crate) async fn get_exact(
    State(state): State<Shared>,
    query: Query,
    extract::Caller(authz): extract::Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let (source, destination) = endpoints(q)?;
    authz
        .intentions_read(&destination.name)
        .or_else(|e| authz.intentions_read(&source.name).map_err(|_| e))?;
    let index = block_on_table(&state, CONFIG_TABLE, q).await?;
    if let Some((ConfigEntry::ServiceIntentions(si), r)) =
        load_one(&state, Kind::ServiceIntentions, &destination.name).await?
    {
        if let Some(src) = si
            .sources
            .iter()
            .find(|s| s.name == source.name && s.peer == source.peer)
        {
            return Ok(([index_header(index)], Json(intention_json(&si, src, &r))).into_response());
        }
    }
    Err(ApiError::not_found("Intention not found"))
}

/// `PUT /v1/connect/intentions/exact`: upserts one source into the destination's
/// entry (its top-level JWT and Meta are kept).
pub(crate) async fn put_exact(
    State(state): State<Shared>,
    query: Query,
    extract::Caller(authz): extract::Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let q = query.pairs();
    let (source, destination) = endpoints(q)?;
    can_write(&authz, Kind::ServiceIntentions, &destination.name)?;
    let body = json_body(&body)?;
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request(
            "Request decoding failed: intention must be a JSON object",
        ));
    };
    let mut src = Map::new();
    src.insert("Name".into(), Value::from(source.name.clone()));
    if !source.peer.is_empty() {
        src.insert("Peer".into(), Value::from(source.peer.clone()));
    }
    for (k, v) in fields {
        match k.to_ascii_lowercase().as_str() {
            "sourcetype" => {
                src.insert("Type".into(), v);
            }
            "action" | "permissions" | "description" => {
                src.insert(k, v);
            }
            "meta" => {
                return Err(ApiError::bad_request(
                    "Meta cannot be set on intentions written with this endpoint",
                ))
            }
            _ => {}
        }
    }
    let mut entry = match load_one(&state, Kind::ServiceIntentions, &destination.name).await? {
        Some((e, _)) => e.to_json(),
        None => json!({"Kind": "service-intentions", "Name": destination.name}),
    };
    let sources = entry.as_object_mut().map(|m| {
        m.entry("Sources")
            .or_insert_with(|| Value::Array(Vec::new()))
    });
    if let Some(Value::Array(list)) = sources {
        list.retain(|s| {
            !(s.get("Name").and_then(Value::as_str) == Some(&source.name)
                && s.get("Peer").and_then(Value::as_str).unwrap_or("") == source.peer)
        });
        list.push(Value::Object(src));
    }
    let entry = entry_from_json(entry).map_err(|e| ApiError::bad_request(e.to_string()))?;
    write_entry(&state, &entry, Cas::Any).await?;
    Ok(Json(true).into_response())
}

/// `DELETE /v1/connect/intentions/exact`.
pub(crate) async fn delete_exact(
    State(state): State<Shared>,
    query: Query,
    extract::Caller(authz): extract::Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let (source, destination) = endpoints(q)?;
    can_write(&authz, Kind::ServiceIntentions, &destination.name)?;
    let Some((ConfigEntry::ServiceIntentions(mut si), r)) =
        load_one(&state, Kind::ServiceIntentions, &destination.name).await?
    else {
        return Ok(Json(true).into_response());
    };
    si.sources
        .retain(|s| !(s.name == source.name && s.peer == source.peer));
    if si.sources.is_empty() {
        delete_entry(
            &state,
            Kind::ServiceIntentions,
            &si.name,
            Cas::ModifyIndex(r.modify_index),
        )
        .await?;
    } else {
        let entry = ConfigEntry::ServiceIntentions(si);
        write_entry(&state, &entry, Cas::ModifyIndex(r.modify_index)).await?;
    }
    Ok(Json(true).into_response())
}

/// `GET /v1/connect/intentions/check?source=&destination=`: Consul's check (§c.9).
///
/// Tribune extension (decisions.md #14): with any of `method`, `path`, `header`
/// (repeatable `Name: value`, repeated names kept), `cookie` (repeatable `n=v`) or a
/// request token in `X-Tribune-Request-Token`, the answer is the sidecar's decision
/// for that request (computed as explain computes it), in the same `{"Allowed"}` shape.
pub(crate) async fn check(
    State(state): State<Shared>,
    query: Query,
    headers: HeaderMap,
    extract::Caller(authz): extract::Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let (source, destination) = endpoints(q)?;
    if let Some(t) = query_get(q, "source-type") {
        if t != "consul" {
            return Err(ApiError::bad_request(format!(
                "unsupported SourceType: {}",
                go::quote(t)
            )));
        }
    }
    authz.service_read(&destination.name)?;
    let token = headers
        .get("x-tribune-request-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let l7 = token.is_some()
        || q.iter()
            .any(|(k, _)| matches!(k.as_str(), "method" | "path" | "header" | "cookie"));
    if !l7 {
        let policy = policy_for(&state, &destination.name).await?;
        let (allowed, _) = policy.table.check(Some(Caller {
            name: &source.name,
            peer: &source.peer,
        }));
        return Ok(Json(IntentionCheck { allowed }).into_response());
    }
    let mut request = ExplainRequest {
        source: query_get(q, "source").map(str::to_string),
        destination: destination.name.clone(),
        method: query_get(q, "method").map(str::to_string),
        path: query_get(q, "path").map(str::to_string),
        token,
        ..ExplainRequest::default()
    };
    for (k, v) in q {
        match k.as_str() {
            "header" => request.add_header(v).map_err(ApiError::bad_request)?,
            "cookie" => request.cookies.push(v.clone()),
            _ => {}
        }
    }
    let out = explain_request(&state, &request).await?;
    Ok(Json(IntentionCheck {
        allowed: out.allowed,
    })
    .into_response())
}

/// `POST /v1/connect/intentions/explain`: the sidecar's answer to a described
/// request, with the deciding intention, permission and failing check (decisions.md
/// #14). Body and answer: [`ExplainRequest`] and
/// [`tribune_enforce::explain::ExplainResponse`].
pub(crate) async fn explain(
    State(state): State<Shared>,
    extract::Caller(authz): extract::Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let v = json_body(&body)?;
    let request = ExplainRequest::from_json(&v)
        .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
    let destination = parse_ref(&request.destination, "Destination")?;
    authz.service_read(&destination.name)?;
    Ok(Json(explain_request(&state, &request).await?).into_response())
}

/// Explains `request` with the enforcement engine: the document the destination's
/// sidecar is served, compiled as the sidecar compiles it, and the sidecar's key
/// runtime for its providers.
async fn explain_request(
    state: &AppState,
    request: &ExplainRequest,
) -> ApiResult<tribune_enforce::explain::ExplainResponse> {
    let described = request.describe().map_err(ApiError::bad_request)?;
    let destination = parse_ref(&request.destination, "Destination")?;
    let policy = policy_for(state, &destination.name).await?;
    let (runtimes, fresh) = state
        .keys
        .runtimes(&policy.providers)
        .map_err(ApiError::bad_request)?;
    for rt in &fresh {
        rt.prepare().await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let options = Options {
        merge_slashes: request.merge_slashes,
    };
    Ok(
        tribune_enforce::explain::explain(&policy, &described, options, now, &Runtimes(&runtimes))
            .await,
    )
}

/// The destination's policy, compiled from the document its sidecar is served (once
/// per config index: [`crate::compiled`]).
async fn policy_for(state: &AppState, destination: &str) -> ApiResult<std::sync::Arc<Policy>> {
    let (index, all) = crate::entries::load_all_at(state).await?;
    let refs: Vec<&ConfigEntry> = all.iter().map(|(e, _)| e).collect();
    // Forget the runtimes of provider entries that no longer exist.
    let providers: Vec<&tribune_model::JwtProvider> = refs
        .iter()
        .filter_map(|e| match e {
            ConfigEntry::JwtProvider(p) => Some(p),
            _ => None,
        })
        .collect();
    state.keys.retain(&providers);
    state
        .policies
        .get(destination, index, || {
            let doc = PolicyDocument::from_entries(
                destination,
                state.config.default_intention_policy,
                &refs,
            );
            Policy::compile(&doc)
        })
        .map_err(ApiError::bad_request)
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=X[&name=Y]`.
pub(crate) async fn match_intentions(
    State(state): State<Shared>,
    query: Query,
    extract::Caller(authz): extract::Caller,
) -> ApiResult<Response> {
    let q = query.pairs();
    let by = query_get(q, "by")
        .ok_or_else(|| ApiError::bad_request("required query parameter 'by' not set"))?;
    if by != "source" && by != "destination" {
        return Err(ApiError::bad_request(
            "'by' parameter must be one of 'source' or 'destination'",
        ));
    }
    let names: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str())
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "required query parameter 'name' not set",
        ));
    }
    for n in &names {
        authz.intentions_read(n)?;
    }
    let index = block_on_table(&state, CONFIG_TABLE, q).await?;
    let all = load_all(&state).await?;
    let mut out = Map::new();
    for name in names {
        let mut matched: Vec<(u32, Value)> = Vec::new();
        for (si, r) in intentions_of(&all) {
            for src in &si.sources {
                let hit = if by == "destination" {
                    si.name == name || si.name == WILDCARD
                } else {
                    src.peer.is_empty() && (src.name == name || src.name == WILDCARD)
                };
                if hit {
                    matched.push((src.precedence, intention_json(si, src, r)));
                }
            }
        }
        matched.sort_by_key(|m| std::cmp::Reverse(m.0));
        out.insert(
            name.to_string(),
            Value::Array(matched.into_iter().map(|(_, v)| v).collect()),
        );
    }
    Ok(([index_header(index)], Json(Value::Object(out))).into_response())
}
