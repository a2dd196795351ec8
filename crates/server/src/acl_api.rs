//! `/v1/acl/*`: bootstrap, policies and tokens (the part of Consul's ACL API Tribune
//! supports). Secrets never reach the logs.

use crate::acl::{Policy, PolicyLink, Rules, Token, MANAGEMENT_POLICY_ID, MANAGEMENT_POLICY_NAME};
use crate::extract::{AclCaller, GoJson, Query};
use crate::filters;
use crate::state::acl::{META, POLICIES, TOKENS};
use crate::state::typed::{Stored, Table};
use crate::state::write::{guarded, Step};
use crate::{
    contended, find_token_by_secret, now_rfc3339, token_secret, ApiError, ApiResult, AppState,
    Shared, TOKEN_TABLE,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tribune_model::api::{AclPolicyBody, AclTokenBody, Indexed};
use tribune_store::{Cas, Op, Record};

pub(crate) mod auth_methods;
pub(crate) mod binding_rules;
mod edit;
pub(crate) mod identities;
pub(crate) mod login;
pub(crate) mod oidc;

pub(crate) use edit::{
    clone_token, create_role, delete_role, list_roles, read_role, read_role_by_name, update_policy,
    update_role, update_token,
};
use edit::{policy_links, role_links, Names};

const BOOTSTRAP_KEY: &str = "bootstrapped";

/// A record of a typed table as the API answers it, with its indexes.
fn stored_indexed<T>(s: Stored<T>) -> Indexed<T> {
    Indexed {
        item: s.value,
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

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

fn management_token(secret: &str, description: &str) -> Token {
    Token {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: secret.to_string(),
        description: description.to_string(),
        policies: vec![PolicyLink {
            id: MANAGEMENT_POLICY_ID.into(),
            name: MANAGEMENT_POLICY_NAME.into(),
        }],
        create_time: now_rfc3339(),
        ..Default::default()
    }
}

/// Start-up: make sure a management token with this secret exists (Consul's
/// `acl.tokens.initial_management`), which also ends the bootstrap window.
pub(crate) async fn ensure_management_token(state: &AppState, secret: &str) -> ApiResult<()> {
    // Guarded: agents started at once with the same secret create one token.
    guarded(state, TOKEN_TABLE, move |_| async move {
        let index = TOKENS.index(state).await?;
        if find_token_by_secret(state, secret).await?.is_some() {
            return Ok(Step::Skip(()));
        }
        let token = management_token(secret, "Initial Management Token");
        let mut ops = management_ops(&token, Cas::Any)?;
        ops.push(Op::unchanged(TOKEN_TABLE, index));
        Ok(Step::Write { ops, then: () })
    })
    .await?;
    Ok(())
}

/// Writes `op` (a create in `table`) once `check` passes on the table's records,
/// guarded on the index they were read at: a uniqueness rule (policy names, token
/// secrets) holds across agents writing at once. Retried on a lost race.
async fn create_unique<T: serde::Serialize + serde::de::DeserializeOwned>(
    state: &AppState,
    table: &Table<T>,
    op: Op,
    check: impl Fn(&[Stored<T>]) -> ApiResult<()> + Sync,
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
async fn write_guarded<T: serde::Serialize + serde::de::DeserializeOwned>(
    state: &AppState,
    table: &Table<T>,
    build: impl Fn(&[Stored<T>]) -> ApiResult<Op> + Sync,
) -> ApiResult<tribune_store::Applied> {
    let build = &build;
    let (applied, ()) = guarded(state, table.name, move |_| async move {
        let index = table.index(state).await?;
        let op = build(&table.list(state).await?)?;
        Ok(Step::Write {
            ops: vec![op, table.unchanged(index)],
            then: (),
        })
    })
    .await?;
    applied.ok_or_else(|| contended(table.name))
}

/// The writes that make `token` a management token and end the bootstrap window.
fn management_ops(token: &Token, cas: Cas) -> ApiResult<Vec<Op>> {
    Ok(vec![
        POLICIES.put(MANAGEMENT_POLICY_ID, &management_policy(), Cas::Any)?,
        TOKENS.put(&token.accessor_id, token, cas)?,
        META.put(BOOTSTRAP_KEY, &true, cas)?,
    ])
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
    if let Some(r) = META.get(&state, BOOTSTRAP_KEY).await? {
        return Err(bootstrap_refused(r.modify_index));
    }
    let token = management_token(
        &uuid::Uuid::new_v4().to_string(),
        "Bootstrap Token (Global Management)",
    );
    // Absent: the token and the bootstrap marker are created once per cluster.
    let applied = crate::state::write::apply(&state, &management_ops(&token, Cas::Absent)?).await?;
    if !applied.ok {
        // Another agent sharing the store bootstrapped first: once per cluster.
        let reset = match META.get(&state, BOOTSTRAP_KEY).await? {
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
        &POLICIES,
        POLICIES.put(&policy.id, &policy, Cas::Absent)?,
        |policies| {
            if policies.iter().any(|p| p.value.name == name) {
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

async fn find_policy_by_name(state: &AppState, name: &str) -> ApiResult<Option<Stored<Policy>>> {
    Ok(POLICIES
        .list(state)
        .await?
        .into_iter()
        .find(|p| p.value.name == name))
}

pub(crate) async fn read_policy(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let p = POLICIES
        .get(&state, &id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    Ok(Json(stored_indexed(p)).into_response())
}

pub(crate) async fn read_policy_by_name(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let p = find_policy_by_name(&state, &name)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    Ok(Json(stored_indexed(p)).into_response())
}

pub(crate) async fn list_policies(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    query: Query,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let filter = filters::from_query(query.pairs(), filters::ACL_POLICY).await?;
    let mut out = Vec::new();
    for p in POLICIES.list(&state).await? {
        let p = stored_indexed(p);
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
    crate::state::write::apply(&state, &[POLICIES.delete(&id, Cas::Any)]).await?;
    Ok(Json(true).into_response())
}

/// `PUT /v1/acl/token`.
pub(crate) async fn create_token(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    GoJson(v): GoJson<AclTokenBody>,
) -> ApiResult<Response> {
    caller.acl_write()?;
    if !v.auth_method.is_empty() {
        return Err(ApiError::bad_request(
            "AuthMethod field is disallowed outside of Login",
        ));
    }
    let policies = policy_links(&state, &v.policies).await?;
    let roles = role_links(&state, &v.roles).await?;
    let local = v.local.unwrap_or(false);
    let ids = identities::checked(&v, local)?;
    let created = now_utc_seconds();
    let expiration_time = identities::expiry_on_create(&v, created, state.config.acl.token_ttl)?;
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
        service_identities: ids.services,
        node_identities: ids.nodes,
        templated_policies: ids.templated,
        local,
        auth_method: String::new(),
        expiration_time,
        create_time: identities::format_time(created),
    };
    let index = insert_token(&state, &token).await?;
    tracing::info!(accessor_id = %token.accessor_id, "ACL token created");
    Ok(Json(indexed(token, None, index)).into_response())
}

/// How often expired tokens are removed: as often as the shortest lifetime a token
/// may have, between 1 and 30 seconds. An expired token stops working at its
/// `ExpirationTime` whether or not it has been removed ([`crate::authorize`]).
fn reap_every(state: &AppState) -> std::time::Duration {
    let min = state.config.acl.token_ttl.min_ns.max(0) as u64;
    std::time::Duration::from_nanos(min).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    )
}

/// Removes expired tokens until the agent stops (Consul's token reaping). Every
/// agent sharing a store reaps; a delete of a token already gone is no error.
pub(crate) fn spawn_reaper(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        loop {
            let every = match state.upgrade() {
                Some(s) => reap_every(&s),
                None => break,
            };
            tokio::time::sleep(every).await;
            let Some(s) = state.upgrade() else { break };
            match reap(&s).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "expired ACL tokens removed"),
                Err(e) => {
                    tracing::warn!(error = %e.1, "removing expired ACL tokens failed; retrying")
                }
            }
            if let Err(e) = oidc::reap_states(&s).await {
                tracing::warn!(error = %e.1, "removing unfinished OIDC sign-ins failed; retrying");
            }
        }
    });
}

/// Deletes the tokens expired now; returns how many.
pub(crate) async fn reap(state: &AppState) -> ApiResult<usize> {
    let index = crate::acl_indexes(state).await?.tokens;
    let tokens = crate::tokens_at(state, index).await?;
    let ops: Vec<Op> = tokens
        .values()
        .filter(|t| crate::is_expired(t))
        .map(|t| TOKENS.delete(&t.accessor_id, Cas::Any))
        .collect();
    crate::state::write::apply_batched(state, &ops).await?;
    Ok(ops.len())
}

/// Now, to the second (how Consul's times read back).
pub(crate) fn now_utc_seconds() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Stores a new token; returns the index of its write. Secrets are unique
/// cluster-wide: checked against the kept tokens by SecretID (a map lookup, not a
/// decode of every token per creation), the write guarded on the token table not
/// having moved since.
pub(crate) async fn insert_token(state: &AppState, token: &Token) -> ApiResult<u64> {
    let (st, tok) = (state, token);
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
                TOKENS.put(&tok.accessor_id, tok, Cas::Absent)?,
                Op::unchanged(TOKEN_TABLE, before.tokens),
            ],
            then: before,
        })
    })
    .await?;
    let applied = applied.ok_or_else(|| contended(TOKEN_TABLE))?;
    if !applied.ok {
        return Err(ApiError::bad_request(
            "Invalid Token: AccessorID is already in use",
        ));
    }
    let after = crate::acl_indexes(state).await?;
    state
        .authorizers
        .created(before, applied.index, after, token);
    Ok(applied.index)
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
fn token_view(mut token: Stored<Token>, secret: Secret, names: &Names) -> Indexed<Token> {
    names.token(&mut token.value);
    if secret == Secret::Hidden {
        token.value.secret_id = REDACTED_SECRET.to_string();
    }
    stored_indexed(token)
}

pub(crate) async fn read_token(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(authz): AclCaller,
) -> ApiResult<Response> {
    authz.acl_read()?;
    let t = TOKENS
        .get(&state, &id)
        .await?
        .filter(|t| !crate::is_expired(&t.value))
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    let names = Names::load(&state).await?;
    Ok(Json(token_view(t, Secret::for_caller(&authz), &names)).into_response())
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
    let t = TOKENS
        .get(&state, &t.accessor_id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
    let names = Names::load(&state).await?;
    Ok(Json(token_view(t, Secret::Shown, &names)).into_response())
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
    // Consul's `?authmethod=<name>`: tokens made by that method's logins.
    let method = crate::query_get(q, "authmethod").filter(|m| !m.is_empty());
    let names = Names::load(&state).await?;
    let mut out = Vec::new();
    for t in TOKENS.list(&state).await? {
        if crate::is_expired(&t.value) || method.is_some_and(|m| t.value.auth_method != m) {
            continue;
        }
        let t = token_view(t, secret, &names);
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
    delete_record(&state, &TOKENS, &id).await
}

/// `DELETE` of a token or role (the caller's `acl:write` checked): the record goes (a
/// missing one is no error, as in Consul).
async fn delete_record<T: serde::Serialize + serde::de::DeserializeOwned>(
    state: &AppState,
    table: &Table<T>,
    key: &str,
) -> ApiResult<Response> {
    crate::state::write::apply(state, &[table.delete(key, Cas::Any)]).await?;
    Ok(Json(true).into_response())
}
