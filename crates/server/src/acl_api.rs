//! `/v1/acl/*`: bootstrap, policies and tokens (the part of Consul's ACL API Tribune
//! supports). Secrets never reach the logs.

use crate::acl::{Policy, PolicyLink, Rules, Token, MANAGEMENT_POLICY_ID, MANAGEMENT_POLICY_NAME};
use crate::extract::{AclCaller, GoJson, Query};
use crate::filters;
use crate::state::write::{guarded, Step};
use crate::{
    contended, find_token_by_secret, now_rfc3339, token_secret, ApiError, ApiResult, AppState,
    Shared, ACL_META_TABLE, POLICY_TABLE, TOKEN_TABLE,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tribune_model::api::{AclPolicyBody, AclTokenBody, Indexed};
use tribune_store::{Cas, Op, Record};

mod edit;

pub(crate) use edit::{
    clone_token, create_role, delete_role, list_roles, read_role, read_role_by_name, update_policy,
    update_role, update_token,
};
use edit::{policy_links, role_links, Names};

const BOOTSTRAP_KEY: &str = "bootstrapped";

/// A stored object as the API answers it, with the indexes of its record (or `index`,
/// the write that made it, when there is no record at hand).
fn indexed<T>(item: T, r: Option<&Record>, index: u64) -> Indexed<T> {
    Indexed {
        item,
        create_index: r.map_or(index, |r| r.create_index),
        modify_index: r.map_or(index, |r| r.modify_index),
    }
}

fn management_policy() -> Policy {
    Policy {
        id: MANAGEMENT_POLICY_ID.into(),
        name: MANAGEMENT_POLICY_NAME.into(),
        description: "Builtin Policy that grants unlimited access".into(),
        rules: String::new(),
    }
}

fn put_json(table: &str, key: &str, v: &impl serde::Serialize, cas: Cas) -> Op {
    Op::Put {
        table: table.into(),
        key: key.into(),
        value: serde_json::to_vec(v).unwrap_or_default(),
        cas,
    }
}

fn management_token(secret: &str, description: &str) -> Token {
    Token {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: secret.to_string(),
        description: description.to_string(),
        policies: vec![PolicyLink {
            id: MANAGEMENT_POLICY_ID.into(),
            name: MANAGEMENT_POLICY_NAME.into(),
        }],
        roles: Vec::new(),
        local: false,
        create_time: now_rfc3339(),
    }
}

/// Start-up: make sure a management token with this secret exists (Consul's
/// `acl.tokens.initial_management`), which also ends the bootstrap window.
pub(crate) async fn ensure_management_token(state: &AppState, secret: &str) -> ApiResult<()> {
    // Guarded: agents started at once with the same secret create one token.
    guarded(state, TOKEN_TABLE, move |_| async move {
        let index = state.store.table_index(TOKEN_TABLE).await?;
        if find_token_by_secret(state, secret).await?.is_some() {
            return Ok(Step::Skip(()));
        }
        let token = management_token(secret, "Initial Management Token");
        let mut ops = management_ops(&token, Cas::Any);
        ops.push(Op::unchanged(TOKEN_TABLE, index));
        Ok(Step::Write { ops, then: () })
    })
    .await?;
    Ok(())
}

/// Writes `op` (a create in `table`) once `check` passes on the table's records,
/// guarded on the index they were read at: a uniqueness rule (policy names, token
/// secrets) holds across agents writing at once. Retried on a lost race.
async fn create_unique(
    state: &AppState,
    table: &str,
    op: Op,
    check: impl Fn(&[Record]) -> ApiResult<()> + Sync,
) -> ApiResult<tribune_store::Applied> {
    write_guarded(state, table, |records| {
        check(records)?;
        Ok(op.clone())
    })
    .await
}

/// Builds one write from the table's records (`build` may refuse) and applies it
/// only if the table has not changed since they were read: read-modify-write of a
/// record, with a uniqueness rule, safe across agents. Retried on a lost race.
async fn write_guarded(
    state: &AppState,
    table: &str,
    build: impl Fn(&[Record]) -> ApiResult<Op> + Sync,
) -> ApiResult<tribune_store::Applied> {
    let build = &build;
    let (applied, ()) = guarded(state, table, move |_| async move {
        let index = state.store.table_index(table).await?;
        let op = build(&state.store.list(table).await?)?;
        Ok(Step::Write {
            ops: vec![op, Op::unchanged(table, index)],
            then: (),
        })
    })
    .await?;
    applied.ok_or_else(|| contended(table))
}

/// The writes that make `token` a management token and end the bootstrap window.
fn management_ops(token: &Token, cas: Cas) -> Vec<Op> {
    vec![
        put_json(
            POLICY_TABLE,
            MANAGEMENT_POLICY_ID,
            &management_policy(),
            Cas::Any,
        ),
        put_json(TOKEN_TABLE, &token.accessor_id, token, cas),
        put_json(ACL_META_TABLE, BOOTSTRAP_KEY, &json!(true), cas),
    ]
}

fn bootstrap_refused(reset_index: u64) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        format!("Permission denied: ACL bootstrap no longer allowed (reset index: {reset_index})"),
    )
}

fn acl_enabled(state: &AppState) -> ApiResult<()> {
    if state.config.acl.enabled {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled".into(),
        ))
    }
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
pub(crate) async fn bootstrap(State(state): State<Shared>) -> ApiResult<Response> {
    acl_enabled(&state)?;
    let _guard = state.write_lock.lock().await;
    if let Some(r) = state.store.get(ACL_META_TABLE, BOOTSTRAP_KEY).await? {
        return Err(bootstrap_refused(r.modify_index));
    }
    let token = management_token(
        &uuid::Uuid::new_v4().to_string(),
        "Bootstrap Token (Global Management)",
    );
    // Absent: the token and the bootstrap marker are created once per cluster.
    let applied = state
        .store
        .apply(&management_ops(&token, Cas::Absent))
        .await?;
    if !applied.ok {
        // Another agent sharing the store bootstrapped first: once per cluster.
        let reset = match state.store.get(ACL_META_TABLE, BOOTSTRAP_KEY).await? {
            Some(r) => r.modify_index,
            None => applied.index,
        };
        return Err(bootstrap_refused(reset));
    }
    tracing::info!(accessor_id = %token.accessor_id, "ACL system bootstrapped");
    Ok(Json(indexed(token, None, applied.index)).into_response())
}

/// `PUT /v1/acl/policy`.
pub(crate) async fn create_policy(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    GoJson(v): GoJson<AclPolicyBody>,
) -> ApiResult<Response> {
    caller.acl_write()?;
    if v.name.is_empty() {
        return Err(ApiError::bad_request("Invalid Policy: no Name is set"));
    }
    Rules::parse(&v.rules)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse ACL rules: {e}")))?;
    let policy = Policy {
        id: uuid::Uuid::new_v4().to_string(),
        name: v.name,
        description: v.description,
        rules: v.rules,
    };
    // Names are unique cluster-wide.
    let name = policy.name.clone();
    let applied = create_unique(
        &state,
        POLICY_TABLE,
        put_json(POLICY_TABLE, &policy.id, &policy, Cas::Absent),
        |records| {
            if records
                .iter()
                .any(|r| serde_json::from_slice::<Policy>(&r.value).is_ok_and(|p| p.name == name))
            {
                return Err(ApiError::bad_request(format!(
                    "Invalid Policy: A Policy with Name {name:?} already exists"
                )));
            }
            Ok(())
        },
    )
    .await?;
    tracing::info!(policy = %policy.name, id = %policy.id, "ACL policy created");
    Ok(Json(indexed(policy, None, applied.index)).into_response())
}

async fn find_policy_by_name(state: &AppState, name: &str) -> ApiResult<Option<(Policy, Record)>> {
    for r in state.store.list(POLICY_TABLE).await? {
        if let Ok(p) = serde_json::from_slice::<Policy>(&r.value) {
            if p.name == name {
                return Ok(Some((p, r)));
            }
        }
    }
    Ok(None)
}

pub(crate) async fn read_policy(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let r = state
        .store
        .get(POLICY_TABLE, &id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    let p: Policy = serde_json::from_slice(&r.value)
        .map_err(|e| crate::internal_error(format!("stored policy {id}: {e}")))?;
    Ok(Json(indexed(p, Some(&r), 0)).into_response())
}

pub(crate) async fn read_policy_by_name(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let (p, r) = find_policy_by_name(&state, &name)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    Ok(Json(indexed(p, Some(&r), 0)).into_response())
}

pub(crate) async fn list_policies(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    query: Query,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let filter = filters::from_query(query.pairs(), filters::ACL_POLICY).await?;
    let mut out = Vec::new();
    for r in state.store.list(POLICY_TABLE).await? {
        let Ok(p) = serde_json::from_slice::<Policy>(&r.value) else {
            continue;
        };
        let p = indexed(p, Some(&r), 0);
        if filters::keeps_typed(&filter, &p)? {
            out.push(p);
        }
    }
    Ok(Json(out).into_response())
}

pub(crate) async fn delete_policy(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_write()?;
    if id == MANAGEMENT_POLICY_ID {
        return Err(ApiError::bad_request(
            "Delete operation not permitted on the builtin global-management policy",
        ));
    }
    state
        .store
        .apply(&[Op::Delete {
            table: POLICY_TABLE.into(),
            key: id,
            cas: Cas::Any,
        }])
        .await?;
    Ok(Json(true).into_response())
}

/// `PUT /v1/acl/token`.
pub(crate) async fn create_token(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    GoJson(v): GoJson<AclTokenBody>,
) -> ApiResult<Response> {
    caller.acl_write()?;
    let policies = policy_links(&state, &v.policies).await?;
    let roles = role_links(&state, &v.roles).await?;
    let fresh = |given: String| {
        Some(given)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    };
    let token = Token {
        accessor_id: fresh(v.accessor_id),
        secret_id: fresh(v.secret_id),
        description: v.description,
        policies,
        roles,
        local: v.local.unwrap_or(false),
        create_time: now_rfc3339(),
    };
    // Secrets are unique cluster-wide: checked against the kept tokens by SecretID
    // (a map lookup, not a decode of every token per creation), the write guarded on
    // the token table not having moved since.
    let (st, tok) = (&*state, &token);
    let (applied, before) = guarded(st, TOKEN_TABLE, move |_| async move {
        let before = crate::acl_indexes(st).await?;
        if crate::tokens_at(st, before.tokens)
            .await?
            .contains_key(&tok.secret_id)
        {
            return Err(ApiError::bad_request(
                "Invalid Token: SecretID is already in use",
            ));
        }
        Ok(Step::Write {
            ops: vec![
                put_json(TOKEN_TABLE, &tok.accessor_id, tok, Cas::Absent),
                Op::unchanged(TOKEN_TABLE, before.tokens),
            ],
            then: before,
        })
    })
    .await?;
    let applied = applied.ok_or_else(|| contended(TOKEN_TABLE))?;
    if applied.ok {
        let after = crate::acl_indexes(&state).await?;
        state
            .authorizers
            .created(before, applied.index, after, &token);
    }
    if !applied.ok {
        return Err(ApiError::bad_request(
            "Invalid Token: AccessorID is already in use",
        ));
    }
    tracing::info!(accessor_id = %token.accessor_id, "ACL token created");
    Ok(Json(indexed(token, None, applied.index)).into_response())
}

/// What Consul shows in place of a `SecretID` the caller may not see.
const REDACTED_SECRET: &str = "<hidden>";

/// Who may see a token's `SecretID` (Consul's rule): a caller with `acl:write`, or
/// the token's own holder (`token/self`). Everyone else reads `<hidden>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secret {
    Shown,
    Hidden,
}

impl Secret {
    fn for_caller(authz: &crate::acl::Authorizer) -> Secret {
        if authz.acl_write().is_ok() {
            Secret::Shown
        } else {
            Secret::Hidden
        }
    }
}

/// A stored token as the API shows it: every token read goes through here, so the
/// redaction rule lives in one place.
fn token_view(r: &Record, secret: Secret, names: &Names) -> Option<Indexed<Token>> {
    let mut token: Token = serde_json::from_slice(&r.value).ok()?;
    names.token(&mut token);
    if secret == Secret::Hidden {
        token.secret_id = REDACTED_SECRET.to_string();
    }
    Some(indexed(token, Some(r), 0))
}

pub(crate) async fn read_token(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(authz): AclCaller,
) -> ApiResult<Response> {
    authz.acl_read()?;
    let r = state
        .store
        .get(TOKEN_TABLE, &id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    let names = Names::load(&state).await?;
    let t = token_view(&r, Secret::for_caller(&authz), &names)
        .ok_or_else(|| crate::internal_error(format!("stored token {id} does not decode")))?;
    Ok(Json(t).into_response())
}

/// `GET /v1/acl/token/self`: the caller's own token.
pub(crate) async fn token_self(
    State(state): State<Shared>,
    query: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    acl_enabled(&state)?;
    let secret = token_secret(&headers, query.pairs())
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    let t = find_token_by_secret(&state, &secret)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    // The caller proved it holds this secret, so it may see it (Consul does the same).
    let r = state
        .store
        .get(TOKEN_TABLE, &t.accessor_id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    let names = Names::load(&state).await?;
    let t = token_view(&r, Secret::Shown, &names)
        .ok_or_else(|| crate::internal_error("stored token does not decode".into()))?;
    Ok(Json(t).into_response())
}

pub(crate) async fn list_tokens(
    State(state): State<Shared>,
    AclCaller(authz): AclCaller,
    query: Query,
) -> ApiResult<Response> {
    authz.acl_read()?;
    let secret = Secret::for_caller(&authz);
    let q = query.pairs();
    let filter = filters::from_query(q, filters::ACL_TOKEN).await?;
    // Consul's `?policy=<id>` and `?role=<id>`: tokens linking that policy or role.
    let links = |list: &[PolicyLink], key: &str| {
        crate::query_get(q, key)
            .filter(|id| !id.is_empty())
            .is_none_or(|id| list.iter().any(|link| link.id == id))
    };
    let names = Names::load(&state).await?;
    let mut out = Vec::new();
    for r in state.store.list(TOKEN_TABLE).await? {
        let Some(t) = token_view(&r, secret, &names) else {
            continue;
        };
        if links(&t.item.policies, "policy")
            && links(&t.item.roles, "role")
            && filters::keeps_typed(&filter, &t)?
        {
            out.push(t);
        }
    }
    Ok(Json(out).into_response())
}

pub(crate) async fn delete_token(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_write()?;
    delete_record(&state, TOKEN_TABLE, id).await
}

/// `DELETE` of a token or role (the caller's `acl:write` checked): the record goes (a
/// missing one is no error, as in Consul).
async fn delete_record(state: &AppState, table: &str, key: String) -> ApiResult<Response> {
    state
        .store
        .apply(&[Op::Delete {
            table: table.into(),
            key,
            cas: Cas::Any,
        }])
        .await?;
    Ok(Json(true).into_response())
}
