//! Changing ACL objects after they exist, and roles (Consul's shapes and rules):
//!
//! - `PUT /v1/acl/token/:id` replaces a token's Description, Policies and Roles
//!   (its SecretID and Local never change); `PUT /v1/acl/token/:id/clone` makes a new
//!   token (new AccessorID and SecretID) with the same links.
//! - `PUT /v1/acl/policy/:id` replaces a policy's Name, Description and Rules (the
//!   built-in global-management policy keeps its name and rules).
//! - `/v1/acl/role` (create), `/v1/acl/role/:id` (read, update, delete),
//!   `/v1/acl/role/name/:name`, `/v1/acl/roles`: a role is a named set of policies;
//!   a token linked to a role holds the role's policies.
//!
//! Links are given by ID or Name and stored by ID; every read shows the current
//! names and leaves out links to objects that were deleted, as Consul does.

use super::{
    delete_record, find_policy_by_name, identities, indexed, stored_indexed, token_view,
    write_guarded, Secret,
};
use crate::acl::{Policy, PolicyLink, Role, Rules, Token, MANAGEMENT_POLICY_ID};
use crate::extract::{AclCaller, GoJson, Query};
use crate::state::acl::{POLICIES, ROLES, TOKENS};
use crate::state::typed::Stored;
use crate::{filters, load_policy, now_rfc3339, ApiError, ApiResult, AppState, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use tribune_model::api::{AclPolicyBody, AclRoleBody, AclTokenBody, Indexed};
use tribune_store::Cas;

fn not_found() -> ApiError {
    ApiError(StatusCode::FORBIDDEN, "ACL not found".into())
}

/// The links of a request body (`[{"ID": ..} | {"Name": ..}]`), each resolved with
/// `find`, duplicates dropped.
async fn links<F, Fut>(given: &[PolicyLink], what: &str, find: F) -> ApiResult<Vec<PolicyLink>>
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Option<PolicyLink>>>,
{
    let mut out: Vec<PolicyLink> = Vec::new();
    for link in given {
        let shown = if link.id.is_empty() {
            format!("name {:?}", link.name)
        } else {
            format!("ID {:?}", link.id)
        };
        let found = find(link.id.clone(), link.name.clone())
            .await?
            .ok_or_else(|| ApiError::bad_request(format!("No such ACL {what} with {shown}")))?;
        if !out.iter().any(|l| l.id == found.id) {
            out.push(found);
        }
    }
    Ok(out)
}

/// A body's `Policies`, resolved to stored policies.
pub(super) async fn policy_links(
    state: &AppState,
    given: &[PolicyLink],
) -> ApiResult<Vec<PolicyLink>> {
    links(given, "policy", |id, name| async move {
        let p = if !id.is_empty() {
            load_policy(state, &id).await?
        } else {
            find_policy_by_name(state, &name).await?.map(|p| p.value)
        };
        Ok(p.map(|p| PolicyLink {
            id: p.id,
            name: p.name,
        }))
    })
    .await
}

/// A body's `Roles`, resolved to stored roles.
pub(super) async fn role_links(
    state: &AppState,
    given: &[PolicyLink],
) -> ApiResult<Vec<PolicyLink>> {
    links(given, "role", |id, name| async move {
        let r = if !id.is_empty() {
            load_role(state, &id).await?.map(|r| r.value)
        } else {
            find_role_by_name(state, &name).await?.map(|r| r.value)
        };
        Ok(r.map(|r| PolicyLink {
            id: r.id,
            name: r.name,
        }))
    })
    .await
}

async fn load_role(state: &AppState, id: &str) -> ApiResult<Option<Stored<Role>>> {
    ROLES.get(state, id).await
}

async fn find_role_by_name(state: &AppState, name: &str) -> ApiResult<Option<Stored<Role>>> {
    Ok(ROLES
        .list(state)
        .await?
        .into_iter()
        .find(|r| r.value.name == name))
}

/// The current names of every policy and role, to show links as they are now.
pub(super) struct Names {
    policies: HashMap<String, String>,
    roles: HashMap<String, String>,
}

impl Names {
    pub(super) async fn load(state: &AppState) -> ApiResult<Names> {
        let policies = POLICIES
            .list(state)
            .await?
            .into_iter()
            .map(|p| (p.value.id, p.value.name))
            .collect();
        let roles = ROLES
            .list(state)
            .await?
            .into_iter()
            .map(|r| (r.value.id, r.value.name))
            .collect();
        Ok(Names { policies, roles })
    }

    fn refresh(links: &mut Vec<PolicyLink>, names: &HashMap<String, String>) {
        links.retain_mut(|l| match names.get(&l.id) {
            Some(n) => {
                l.name = n.clone();
                true
            }
            None => false,
        });
    }

    pub(super) fn token(&self, t: &mut Token) {
        Self::refresh(&mut t.policies, &self.policies);
        Self::refresh(&mut t.roles, &self.roles);
    }

    fn role(&self, r: &mut Role) {
        Self::refresh(&mut r.policies, &self.policies);
    }
}

/// `PUT /v1/acl/token/:id`.
pub(crate) async fn update_token(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(authz): AclCaller,
    GoJson(v): GoJson<AclTokenBody>,
) -> ApiResult<Response> {
    authz.acl_write()?;
    if !v.accessor_id.is_empty() && v.accessor_id != id {
        return Err(ApiError::bad_request(
            "Token Accessor ID in URL and payload do not match",
        ));
    }
    let policies = policy_links(&state, &v.policies).await?;
    let roles = role_links(&state, &v.roles).await?;
    let applied = write_guarded(&state, &TOKENS, |tokens| {
        let old = tokens
            .iter()
            .find(|t| t.key == id && !crate::is_expired(&t.value))
            .map(|t| t.value.clone())
            .ok_or_else(|| ApiError::bad_request(format!("Cannot find token {id:?} to update")))?;
        let (secret, local) = (&v.secret_id, v.local);
        if !secret.is_empty()
            && !crate::constant_time_eq(secret.as_bytes(), old.secret_id.as_bytes())
        {
            return Err(ApiError::bad_request(
                "Invalid Token: Changing a token's SecretID is not permitted",
            ));
        }
        if local.is_some_and(|l| l != old.local) {
            return Err(ApiError::bad_request(format!(
                "Cannot toggle local mode of {id}"
            )));
        }
        if !v.auth_method.is_empty() && v.auth_method != old.auth_method {
            return Err(ApiError::bad_request(format!(
                "Cannot change AuthMethod of {id}"
            )));
        }
        identities::expiry_on_update(&v, &id, old.expiration_time.as_deref())?;
        let ids = identities::checked(&v, old.local)?;
        let token = Token {
            description: v.description.clone(),
            policies: policies.clone(),
            roles: roles.clone(),
            service_identities: ids.services,
            node_identities: ids.nodes,
            templated_policies: ids.templated,
            ..old
        };
        TOKENS.put(&id, &token, Cas::Any)
    })
    .await?;
    tracing::info!(accessor_id = %id, "ACL token updated");
    read_back_token(&state, &id, Secret::for_caller(&authz), applied.index).await
}

async fn read_back_token(
    state: &AppState,
    id: &str,
    secret: Secret,
    index: u64,
) -> ApiResult<Response> {
    let t = TOKENS.get(state, id).await?.ok_or_else(not_found)?;
    let names = Names::load(state).await?;
    let mut t = token_view(t, secret, &names);
    t.modify_index = index.max(t.modify_index);
    Ok(Json(t).into_response())
}

/// `PUT /v1/acl/token/:id/clone`: a new token with the same links.
pub(crate) async fn clone_token(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(authz): AclCaller,
    GoJson(v): GoJson<AclTokenBody>,
) -> ApiResult<Response> {
    authz.acl_write()?;
    let old = TOKENS
        .get(&state, &id)
        .await?
        .filter(|t| !crate::is_expired(&t.value))
        .ok_or_else(|| ApiError::bad_request(format!("Cannot find token {id:?} to clone")))?
        .value;
    if !old.auth_method.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot clone a token created from an auth method",
        ));
    }
    let description = Some(v.description)
        .filter(|d| !d.is_empty())
        .unwrap_or(old.description.clone());
    let token = Token {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: uuid::Uuid::new_v4().to_string(),
        description,
        create_time: now_rfc3339(),
        ..old
    };
    let applied = crate::state::write::apply(
        &state,
        &[TOKENS.put(&token.accessor_id, &token, Cas::Absent)?],
    )
    .await?;
    tracing::info!(from = %id, accessor_id = %token.accessor_id, "ACL token cloned");
    read_back_token(
        &state,
        &token.accessor_id,
        Secret::for_caller(&authz),
        applied.index,
    )
    .await
}

/// `PUT /v1/acl/policy/:id`.
pub(crate) async fn update_policy(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
    GoJson(v): GoJson<AclPolicyBody>,
) -> ApiResult<Response> {
    caller.acl_write()?;
    if !v.id.is_empty() && v.id != id {
        return Err(ApiError::bad_request(
            "Policy ID in URL and payload do not match",
        ));
    }
    let AclPolicyBody {
        name,
        rules,
        description,
        ..
    } = v;
    if name.is_empty() {
        return Err(ApiError::bad_request("Invalid Policy: no Name is set"));
    }
    Rules::parse(&rules)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse ACL rules: {e}")))?;
    let mut stored = None;
    let applied = write_guarded(&state, &POLICIES, |stored| {
        let all: Vec<&Policy> = stored.iter().map(|p| &p.value).collect();
        let old = all.iter().find(|p| p.id == id).ok_or_else(not_found)?;
        if all.iter().any(|p| p.id != id && p.name == name) {
            return Err(ApiError::bad_request(format!(
                "Invalid Policy: A Policy with Name {name:?} already exists"
            )));
        }
        if id == MANAGEMENT_POLICY_ID {
            if name != old.name {
                return Err(ApiError::bad_request(
                    "Changing the Name for the builtin global-management policy is not permitted",
                ));
            }
            if rules != old.rules {
                return Err(ApiError::bad_request(
                    "Changing the Rules for the builtin global-management policy is not permitted",
                ));
            }
        }
        let policy = Policy {
            id: id.clone(),
            name: name.clone(),
            description: description.clone(),
            rules: rules.clone(),
        };
        POLICIES.put(&id, &policy, Cas::Any)
    })
    .await?;
    if let Some(p) = POLICIES.get(&state, &id).await? {
        let modify_index = p.modify_index.max(applied.index);
        stored = Some(Indexed {
            modify_index,
            ..stored_indexed(p)
        });
    }
    tracing::info!(policy = %name, id = %id, "ACL policy updated");
    Ok(Json(stored.ok_or_else(not_found)?).into_response())
}

/// The role a request body describes (`id` fixed for updates).
async fn role_from(state: &AppState, v: AclRoleBody, id: String) -> ApiResult<Role> {
    if v.name.is_empty() {
        return Err(ApiError::bad_request("Invalid Role: no Name is set"));
    }
    tribune_model::names::check_name("role name", &v.name)
        .map_err(|e| ApiError::bad_request(format!("Invalid Role: {e}")))?;
    Ok(Role {
        id,
        policies: policy_links(state, &v.policies).await?,
        name: v.name,
        description: v.description,
    })
}

async fn write_role(state: &AppState, role: Role, create: bool) -> ApiResult<Response> {
    let applied = write_guarded(state, &ROLES, |stored| {
        let all: Vec<&Role> = stored.iter().map(|r| &r.value).collect();
        if !create && !all.iter().any(|r| r.id == role.id) {
            return Err(not_found());
        }
        if all.iter().any(|r| r.id != role.id && r.name == role.name) {
            return Err(ApiError::bad_request(format!(
                "Invalid Role: A Role with Name {:?} already exists",
                role.name
            )));
        }
        let cas = if create { Cas::Absent } else { Cas::Any };
        ROLES.put(&role.id, &role, cas)
    })
    .await?;
    tracing::info!(role = %role.name, id = %role.id, "ACL role written");
    let r = ROLES.get(state, &role.id).await?.map(|r| r.record());
    Ok(Json(indexed(role, r.as_ref(), applied.index)).into_response())
}

/// `PUT /v1/acl/role`.
pub(crate) async fn create_role(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    GoJson(v): GoJson<AclRoleBody>,
) -> ApiResult<Response> {
    caller.acl_write()?;
    if !v.id.is_empty() {
        return Err(ApiError::bad_request(
            "Role ID must not be specified on create; use PUT /v1/acl/role/:id to update",
        ));
    }
    let role = role_from(&state, v, uuid::Uuid::new_v4().to_string()).await?;
    write_role(&state, role, true).await
}

/// `PUT /v1/acl/role/:id`.
pub(crate) async fn update_role(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
    GoJson(v): GoJson<AclRoleBody>,
) -> ApiResult<Response> {
    caller.acl_write()?;
    if !v.id.is_empty() && v.id != id {
        return Err(ApiError::bad_request(
            "Role ID in URL and payload do not match",
        ));
    }
    let role = role_from(&state, v, id).await?;
    write_role(&state, role, false).await
}

async fn role_view(state: &AppState, mut role: Stored<Role>) -> ApiResult<Indexed<Role>> {
    Names::load(state).await?.role(&mut role.value);
    Ok(stored_indexed(role))
}

/// `GET /v1/acl/role/:id`.
pub(crate) async fn read_role(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let found = load_role(&state, &id).await?.ok_or_else(not_found)?;
    Ok(Json(role_view(&state, found).await?).into_response())
}

/// `GET /v1/acl/role/name/:name`.
pub(crate) async fn read_role_by_name(
    State(state): State<Shared>,
    Path(name): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let found = find_role_by_name(&state, &name)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(role_view(&state, found).await?).into_response())
}

/// `GET /v1/acl/roles` (`?policy=ID` keeps the roles linking that policy).
pub(crate) async fn list_roles(
    State(state): State<Shared>,
    AclCaller(caller): AclCaller,
    query: Query,
) -> ApiResult<Response> {
    caller.acl_read()?;
    let q = query.pairs();
    let filter = filters::from_query(q, filters::ACL_ROLE).await?;
    let policy = crate::query_get(q, "policy").filter(|p| !p.is_empty());
    let names = Names::load(&state).await?;
    let mut out = Vec::new();
    for mut role in ROLES.list(&state).await? {
        names.role(&mut role.value);
        if policy.is_some_and(|p| !role.value.policies.iter().any(|l| l.id == p)) {
            continue;
        }
        let v = stored_indexed(role);
        if filters::keeps_typed(&filter, &v)? {
            out.push(v);
        }
    }
    Ok(Json(out).into_response())
}

/// `DELETE /v1/acl/role/:id`.
pub(crate) async fn delete_role(
    State(state): State<Shared>,
    Path(id): Path<String>,
    AclCaller(caller): AclCaller,
) -> ApiResult<Response> {
    caller.acl_write()?;
    delete_record(&state, &ROLES, &id).await
}
