//! `/v1/connect/intentions/*` (consul-reference §f.2), computed from the
//! `service-intentions` entries.

use crate::entries::{can_write, delete_entry, load_all, load_one, protocol_of, write_entry};
use crate::{
    authorize, block_on_table, index_header, json_body, parse_query, query_get, ApiError,
    ApiResult, AppState, Shared, CONFIG_TABLE,
};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tribune_authz::{
    compile, deny_response, is_http_like, normalize_request_path, Caller, CompileInput, HeaderList,
    NotFired, PathVerdict, Reason, RequestFacts, TokenOutcome, Tokens,
};
use tribune_model::intentions::SourceIntention;
use tribune_model::{
    entry_from_json, go, ConfigEntry, JwtProvider, Kind, ServiceIntentions, WILDCARD,
};
use tribune_store::{Cas, Record};

/// A source or destination parameter: `name`, `default/name` or `peer:<peer>/name`.
struct Ref {
    name: String,
    peer: String,
}

fn parse_ref(s: &str, param: &str) -> ApiResult<Ref> {
    if let Some(rest) = s.strip_prefix("peer:") {
        let (peer, name) = rest.split_once('/').ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid {param} {}: expected peer:<peer>/<name>",
                go::quote(s)
            ))
        })?;
        return Ok(Ref {
            name: name.into(),
            peer: peer.into(),
        });
    }
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [name] => Ok(Ref {
            name: (*name).into(),
            peer: String::new(),
        }),
        ["default", name] | ["default", "default", name] => Ok(Ref {
            name: (*name).into(),
            peer: String::new(),
        }),
        _ => Err(ApiError::bad_request(format!(
            "invalid {param} {}: namespaces and partitions are a Consul Enterprise feature",
            go::quote(s)
        ))),
    }
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let authz = authorize(&state, &headers, &q).await?;
    let index = block_on_table(&state, CONFIG_TABLE, &q).await?;
    let all = load_all(&state).await?;
    let mut out = Vec::new();
    for (si, r) in intentions_of(&all) {
        if authz.intentions_read(&si.name).is_err() {
            continue;
        }
        out.extend(si.sources.iter().map(|s| intention_json(si, s, r)));
    }
    Ok(([index_header(index)], Json(out)).into_response())
}

/// `GET /v1/connect/intentions/exact?source=&destination=`.
pub(crate) async fn get_exact(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let (source, destination) = endpoints(&q)?;
    let authz = authorize(&state, &headers, &q).await?;
    authz
        .intentions_read(&destination.name)
        .or_else(|e| authz.intentions_read(&source.name).map_err(|_| e))?;
    let index = block_on_table(&state, CONFIG_TABLE, &q).await?;
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let (source, destination) = endpoints(&q)?;
    let authz = authorize(&state, &headers, &q).await?;
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let (source, destination) = endpoints(&q)?;
    let authz = authorize(&state, &headers, &q).await?;
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
/// (repeatable `Name: value`) or a request token in `X-Tribune-Request-Token`, the
/// answer is the full L7 decision the proxy would make, in the same `{"Allowed"}` shape.
pub(crate) async fn check(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let (source, destination) = endpoints(&q)?;
    if let Some(t) = query_get(&q, "source-type") {
        if t != "consul" {
            return Err(ApiError::bad_request(format!(
                "unsupported SourceType: {}",
                go::quote(t)
            )));
        }
    }
    let authz = authorize(&state, &headers, &q).await?;
    authz.service_read(&destination.name)?;
    let token = headers
        .get("x-tribune-request-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let l7 = token.is_some()
        || q.iter()
            .any(|(k, _)| k == "method" || k == "path" || k == "header");
    if !l7 {
        let table = table_from(&state, &load_all(&state).await?, &destination.name)?;
        let (allowed, _) = table.check(Some(Caller {
            name: &source.name,
            peer: &source.peer,
        }));
        return Ok(Json(json!({ "Allowed": allowed })).into_response());
    }
    let mut header_pairs = Vec::new();
    for (k, v) in &q {
        if k == "header" {
            let (name, value) = v.split_once(':').ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid header {}: expected \"Name: value\"",
                    go::quote(v)
                ))
            })?;
            header_pairs.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let request = ExplainRequest {
        source,
        destination,
        method: query_get(&q, "method").unwrap_or("GET").to_string(),
        path: query_get(&q, "path").unwrap_or("/").to_string(),
        headers: header_pairs,
        token,
    };
    let out = decide(&state, &request).await?;
    Ok(Json(json!({ "Allowed": out["Allowed"] })).into_response())
}

/// One request to explain.
struct ExplainRequest {
    source: Ref,
    destination: Ref,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    token: Option<String>,
}

/// `POST /v1/connect/intentions/explain`: the decision for a described request, with
/// the matched intention, permission and failing check (decisions.md #14).
///
/// Body: `{"Source", "Destination", "Method", "Path", "Headers": {"Name": "value"},
/// "Token"}`; only `Source` and `Destination` are required.
pub(crate) async fn explain(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let v = json_body(&body)?;
    let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
    let source = parse_ref(
        &field("Source").ok_or_else(|| ApiError::bad_request("Source is required"))?,
        "Source",
    )?;
    let destination = parse_ref(
        &field("Destination").ok_or_else(|| ApiError::bad_request("Destination is required"))?,
        "Destination",
    )?;
    let authz = authorize(&state, &headers, &q).await?;
    authz.service_read(&destination.name)?;
    let mut header_pairs = Vec::new();
    match v.get("Headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                match val {
                    Value::String(s) => header_pairs.push((k.clone(), s.clone())),
                    Value::Array(items) => {
                        for i in items {
                            header_pairs
                                .push((k.clone(), i.as_str().unwrap_or_default().to_string()));
                        }
                    }
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Headers.{k}: expected a string, got {other}"
                        )))
                    }
                }
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Headers: expected an object, got {other}"
            )))
        }
    }
    let request = ExplainRequest {
        source,
        destination,
        method: field("Method").unwrap_or_else(|| "GET".into()),
        path: field("Path").unwrap_or_else(|| "/".into()),
        headers: header_pairs,
        token: field("Token").filter(|t| !t.is_empty()),
    };
    Ok(Json(decide(&state, &request).await?).into_response())
}

/// Verifies the request token for every referenced provider whose Issuer it names
/// (Envoy's issuer routing), then evaluates the destination's table.
async fn decide(state: &AppState, req: &ExplainRequest) -> ApiResult<Value> {
    let all = load_all(state).await?;
    let table = table_from(state, &all, &req.destination.name)?;
    let providers = providers_of(&all);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let iss = req
        .token
        .as_deref()
        .and_then(tribune_jwt::unverified_issuer);
    let mut payloads: Vec<(String, Result<Value, String>)> = Vec::new();
    if let Some(token) = &req.token {
        for name in table.referenced_providers() {
            let Some(p) = providers.iter().find(|p| &p.name == name) else {
                continue;
            };
            if iss.as_deref() != Some(p.issuer.as_str()) {
                continue;
            }
            let outcome = crate::keys::verifier_for(p)
                .and_then(|v| v.verify(token, now).map_err(|e| e.text().to_string()))
                .map(Value::Object);
            payloads.push((name.clone(), outcome));
        }
    }
    let tokens: Vec<(&str, TokenOutcome<'_>)> = payloads
        .iter()
        .map(|(n, o)| {
            (
                n.as_str(),
                match o {
                    Ok(v) => TokenOutcome::Valid(v),
                    Err(e) => TokenOutcome::Invalid(e.as_str()),
                },
            )
        })
        .collect();
    // The sidecar's own normalization, with the mesh entry's settings: a path it
    // refuses or redirects is answered before any intention is consulted.
    let rules = all
        .iter()
        .find_map(|(e, _)| match e {
            ConfigEntry::Mesh(m) => Some(m.request_normalization()),
            _ => None,
        })
        .unwrap_or_default();
    let path = match normalize_request_path(&req.path, &rules) {
        PathVerdict::Forward(p) => p,
        PathVerdict::Reject => {
            return Ok(answered_before_deciding(
                &req.path,
                400,
                "the path contains an escaped separator (%2F or %5C), which the mesh entry's PathWithEscapedSlashesAction rejects (Tribune's default)",
            ))
        }
        PathVerdict::Redirect(p) => {
            return Ok(answered_before_deciding(
                &p,
                307,
                "the path contains an escaped separator (%2F or %5C); the mesh entry's PathWithEscapedSlashesAction = UNESCAPE_AND_REDIRECT redirects to the decoded path",
            ))
        }
    };
    let header_refs: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let header_list = HeaderList(&header_refs);
    let decision = table.evaluate(&RequestFacts {
        caller: Some(Caller {
            name: &req.source.name,
            peer: &req.source.peer,
        }),
        method: &req.method,
        path: &path,
        headers: &header_list,
        tokens: Tokens::new(&tokens),
    });
    let (intention, permission) = match &decision.reason {
        Reason::Fired {
            intention,
            permission,
        } => (Some(*intention), *permission),
        Reason::Default {
            closest: Some((i, NotFired::Jwt { permission, .. })),
        } => (Some(*i), *permission),
        Reason::Default {
            closest: Some((i, NotFired::PermissionSameAsDefault { permission })),
        } => (Some(*i), Some(*permission)),
        Reason::Default {
            closest: Some((i, _)),
        } => (Some(*i), None),
        Reason::Default { closest: None } => (None, None),
    };
    let response = deny_response(&decision, &req.destination.name);
    Ok(json!({
        "Allowed": decision.allowed(),
        "Decision": decision.action.as_str(),
        "Reason": table.explain(&decision),
        "Intention": intention.and_then(|i| table.intention(i)).map(|i| json!({
            "SourceName": i.source,
            "SourcePeer": i.source_peer,
            "DestinationName": i.destination,
            "Precedence": i.precedence,
        })),
        "Permission": permission,
        "NormalizedPath": path,
        "Status": response.as_ref().map(|r| r.status).unwrap_or(200),
        "Body": response.as_ref().map(|r| r.body.clone()),
        "WWWAuthenticate": response.and_then(|r| r.www_authenticate),
    }))
}

/// The explain answer for a request the sidecar answers at normalization.
fn answered_before_deciding(path: &str, status: u16, why: &str) -> Value {
    json!({
        "Allowed": false,
        "Decision": "deny",
        "Reason": why,
        "Intention": null,
        "Permission": null,
        "NormalizedPath": path,
        "Status": status,
        "Body": if status == 400 { Some("Bad Request") } else { None },
        "WWWAuthenticate": null,
    })
}

fn providers_of(all: &[(ConfigEntry, Record)]) -> Vec<&JwtProvider> {
    all.iter()
        .filter_map(|(e, _)| match e {
            ConfigEntry::JwtProvider(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Compiles the intentions table of a destination from a snapshot of the entries.
fn table_from(
    state: &AppState,
    all: &[(ConfigEntry, Record)],
    destination: &str,
) -> ApiResult<tribune_authz::IntentionTable> {
    let entries: Vec<&ConfigEntry> = all.iter().map(|(e, _)| e).collect();
    let intentions: Vec<&ServiceIntentions> =
        intentions_of(all).into_iter().map(|(si, _)| si).collect();
    compile(&CompileInput {
        destination,
        entries: &intentions,
        providers: &providers_of(all),
        http: is_http_like(&protocol_of(&entries, destination)),
        default: state.config.default_intention_policy,
    })
    .map_err(|errs| {
        ApiError::bad_request(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=X[&name=Y]`.
pub(crate) async fn match_intentions(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref());
    let by = query_get(&q, "by")
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
    let authz = authorize(&state, &headers, &q).await?;
    for n in &names {
        authz.intentions_read(n)?;
    }
    let index = block_on_table(&state, CONFIG_TABLE, &q).await?;
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
