//! The built-in CA (issue: mesh identity): roots kept in the store, leaves issued on
//! request, rotation.
//!
//! - `GET /v1/connect/ca/roots` (blocking on the CA index): Consul's shape with
//!   `ActiveRootID`, `TrustDomain`, `Roots[{ID, Name, RootCert, Active, ...}]`; only
//!   roots still trusted are listed (an old root stays until the leaves it signed
//!   have expired: rotation time + leaf TTL).
//! - `GET /v1/agent/connect/ca/leaf/<service>` (needs `service:write`): a fresh leaf
//!   for the service with its private key, returned once. `?index=N` blocks until the
//!   CA changes (a rotation) so sidecars re-fetch then.
//! - `PUT /v1/connect/ca/rotate` (needs `operator:write`; Tribune's endpoint): a new
//!   root becomes active.
//!
//! The root's private key never leaves the agent. The JWT-SVID keys live beside the
//! roots (`jwt_svid.rs` serves them).

use crate::extract::{Caller, Query, WatchCaller};
use crate::state::typed::Table;
use crate::state::write::{guarded, Step};
use crate::{
    block_on_table, block_on_tables_as, index_header, ApiError, ApiResult, AppState, Holder, Shared,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tribune_ca::{Root, ServiceId, DEFAULT_LEAF_TTL};
use tribune_model::api::{CaRoot, CaRoots, LeafCert, Rotated};
use tribune_store::{Cas, Op};

pub(crate) const CA_TABLE: &str = "ca";
pub(crate) const CA_KEY: &str = "state";

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredRoot {
    id: String,
    name: String,
    cert_pem: String,
    key_pem: String,
    not_before: i64,
    not_after: i64,
    leaves_until: i64,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CaState {
    pub cluster_id: String,
    pub trust_domain: String,
    pub active_id: String,
    roots: Vec<StoredRoot>,
    /// The trust domain's JWT-SVID keys (issue #45), oldest first; the last one not
    /// retired signs. A CA stored before them gets its first on first use.
    #[serde(default)]
    pub(crate) jwt_keys: Vec<StoredJwtKey>,
}

/// A JWT-SVID signing key as stored (the private key never leaves the agent).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredJwtKey {
    kid: String,
    alg: String,
    /// PKCS#8, standard base64.
    pkcs8: String,
    created: i64,
    #[serde(default)]
    retired: Option<i64>,
}

impl StoredJwtKey {
    pub(crate) fn from_key(k: &tribune_ca::jwt::JwtKey) -> Self {
        use base64::Engine;
        StoredJwtKey {
            kid: k.kid.clone(),
            alg: k.alg.as_str().to_string(),
            pkcs8: base64::engine::general_purpose::STANDARD.encode(&k.pkcs8),
            created: k.created,
            retired: k.retired,
        }
    }

    pub(crate) fn key(&self) -> ApiResult<tribune_ca::jwt::JwtKey> {
        use base64::Engine;
        Ok(tribune_ca::jwt::JwtKey {
            kid: self.kid.clone(),
            alg: tribune_ca::jwt::SigningAlg::parse(&self.alg).ok_or_else(|| {
                internal(format!(
                    "stored JWT key {} has alg {:?}",
                    self.kid, self.alg
                ))
            })?,
            pkcs8: base64::engine::general_purpose::STANDARD
                .decode(&self.pkcs8)
                .map_err(internal)?,
            created: self.created,
            retired: self.retired,
        })
    }
}

/// `ca` with a new signing key: the current one retires (still published until the
/// tokens it signed expire), keys no verifier needs any more are dropped.
pub(crate) fn with_new_jwt_key(
    mut ca: CaState,
    alg: tribune_ca::jwt::SigningAlg,
    t: i64,
) -> ApiResult<CaState> {
    let new = tribune_ca::jwt::JwtKey::generate(alg, t).map_err(internal)?;
    for k in ca.jwt_keys.iter_mut() {
        if k.retired.is_none() {
            k.retired = Some(t);
        }
    }
    ca.jwt_keys
        .retain(|k| k.key().map(|k| k.published_at(t)).unwrap_or(false));
    ca.jwt_keys.push(StoredJwtKey::from_key(&new));
    Ok(ca)
}

fn to_root(r: &StoredRoot, td: &str) -> Root {
    Root {
        id: r.id.clone(),
        name: r.name.clone(),
        trust_domain: td.to_string(),
        cert_pem: r.cert_pem.clone(),
        key_pem: r.key_pem.clone(),
        not_before: r.not_before,
        not_after: r.not_after,
        leaves_until: r.leaves_until,
    }
}

fn from_root(r: &Root) -> StoredRoot {
    StoredRoot {
        id: r.id.clone(),
        name: r.name.clone(),
        cert_pem: r.cert_pem.clone(),
        key_pem: r.key_pem.clone(),
        not_before: r.not_before,
        not_after: r.not_after,
        leaves_until: r.leaves_until,
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The CA's table: one record, [`CA_KEY`].
pub(crate) const CA: Table<CaState> = Table::new(CA_TABLE);

pub(crate) async fn load(state: &AppState) -> ApiResult<Option<CaState>> {
    Ok(CA.get(state, CA_KEY).await?.map(|s| s.value))
}

/// Stores the CA state; false when the check-and-set condition failed (another
/// agent sharing the store wrote first).
async fn save(state: &AppState, ca: &CaState, cas: Cas) -> ApiResult<bool> {
    let applied = crate::state::write::apply(state, &[CA.put(CA_KEY, ca, cas)?]).await?;
    Ok(applied.ok)
}

/// Creates the CA on first use (a cluster ID, trust domain and root).
pub(crate) async fn ensure(state: &AppState) -> Result<(), String> {
    if load(state).await.map_err(|e| e.1)?.is_some() {
        return Ok(());
    }
    let cluster_id = uuid::Uuid::new_v4().to_string();
    let trust_domain = format!("{cluster_id}.consul");
    let root = Root::generate(&trust_domain, now()).map_err(|e| e.to_string())?;
    let ca = CaState {
        cluster_id,
        trust_domain,
        active_id: root.id.clone(),
        roots: vec![from_root(&root)],
        jwt_keys: Vec::new(),
    };
    let ca =
        with_new_jwt_key(ca, state.config.connect.jwt_signing_algorithm, now()).map_err(|e| e.1)?;
    // Absent: two agents racing on one store cannot both create a CA; the loser
    // uses the winner's (read back by the caller).
    match save(state, &ca, Cas::Absent).await {
        Ok(true) => {
            tracing::info!(trust_domain = %ca.trust_domain, "CA created");
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(_) if load(state).await.ok().flatten().is_some() => Ok(()),
        Err(e) => Err(e.1),
    }
}

pub(crate) async fn required(state: &AppState) -> ApiResult<CaState> {
    if let Some(ca) = load(state).await? {
        return Ok(ca);
    }
    ensure(state).await.map_err(internal)?;
    load(state)
        .await?
        .ok_or_else(|| internal("CA not initialized"))
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `GET /v1/connect/ca/roots`.
pub(crate) async fn roots(State(state): State<Shared>, query: Query) -> ApiResult<Response> {
    required(&state).await?;
    let index = block_on_table(&state, CA_TABLE, query.pairs()).await?;
    let ca = required(&state).await?;
    let t = now();
    let roots: Vec<_> = ca
        .roots
        .iter()
        .filter(|r| to_root(r, &ca.trust_domain).trusted_at(t, r.id == ca.active_id))
        .map(|r| CaRoot {
            id: r.id.clone(),
            name: r.name.clone(),
            external_trust_domain: ca.cluster_id.clone(),
            not_before: rfc3339(r.not_before),
            not_after: rfc3339(r.not_after),
            root_cert: r.cert_pem.clone(),
            intermediate_certs: None,
            active: r.id == ca.active_id,
            private_key_type: "ec".into(),
            private_key_bits: 256,
            create_index: index,
            modify_index: index,
        })
        .collect();
    Ok((
        [index_header(index)],
        Json(CaRoots {
            active_root_id: ca.active_id.clone(),
            trust_domain: ca.trust_domain.clone(),
            roots,
        }),
    )
        .into_response())
}

/// `GET /v1/agent/connect/ca/leaf/<service>`.
pub(crate) async fn leaf(
    State(state): State<Shared>,
    Path(service): Path<String>,
    query: Query,
    headers: HeaderMap,
    WatchCaller(authz): WatchCaller,
) -> ApiResult<Response> {
    let q = query.pairs();
    authz.service_write(&service)?;
    tribune_model::names::check_service_name(&service).map_err(ApiError::bad_request)?;
    required(&state).await?;
    let holder = Holder {
        headers: &headers,
        allowed: &|a| a.service_write(&service),
    };
    let index = block_on_tables_as(&state, &[CA_TABLE], q, Some(holder)).await?;
    let ca = required(&state).await?;
    let active = ca
        .roots
        .iter()
        .find(|r| r.id == ca.active_id)
        .ok_or_else(|| internal("no active root"))?;
    let mut root = to_root(active, &ca.trust_domain);
    let id = ServiceId::new(&ca.trust_domain, &state.config.datacenter, &service);
    let leaf = root
        .issue_leaf(&id, now(), DEFAULT_LEAF_TTL)
        .map_err(internal)?;
    Ok((
        [index_header(index)],
        Json(LeafCert {
            serial_number: leaf.serial,
            cert_pem: leaf.cert_pem,
            private_key_pem: leaf.key_pem,
            service,
            service_uri: leaf.uri,
            valid_after: rfc3339(leaf.valid_after),
            valid_before: rfc3339(leaf.valid_before),
            root_id: leaf.root_id,
            create_index: index,
            modify_index: index,
        }),
    )
        .into_response())
}

/// `PUT /v1/connect/ca/rotate`: a new active root; the old ones stay trusted until
/// the leaves they signed expire.
pub(crate) async fn rotate(
    State(state): State<Shared>,
    Caller(authz): Caller,
) -> ApiResult<Response> {
    authz.operator_write()?;
    // Guarded on the state read: when another agent rotated concurrently, this one
    // rotates what it wrote.
    let state = &*state;
    let (_, ca) = guarded(state, CA_TABLE, move |_| async move {
        required(state).await?;
        let stored = CA
            .get(state, CA_KEY)
            .await?
            .ok_or_else(|| internal("CA not initialized"))?;
        let ca = rotated(stored.value, state.config.connect.jwt_signing_algorithm)?;
        Ok(Step::Write {
            ops: vec![
                CA.put(CA_KEY, &ca, Cas::Any)?,
                Op::unchanged_key(CA_TABLE, CA_KEY, stored.modify_index),
            ],
            then: ca,
        })
    })
    .await?;
    Ok(Json(Rotated {
        active_root_id: ca.active_id,
    })
    .into_response())
}

/// The CA state after a rotation: a new active root, the previous one kept trusted
/// until the leaves it signed expire.
fn rotated(mut ca: CaState, jwt_alg: tribune_ca::jwt::SigningAlg) -> ApiResult<CaState> {
    let t = now();
    let new = Root::generate(&ca.trust_domain, t).map_err(internal)?;
    for r in ca.roots.iter_mut() {
        if r.id == ca.active_id {
            // Leaves it signed are valid at most DEFAULT_LEAF_TTL from now.
            r.leaves_until = r.leaves_until.max(t + DEFAULT_LEAF_TTL.as_secs() as i64);
        }
    }
    let td = ca.trust_domain.clone();
    ca.roots.retain(|r| to_root(r, &td).trusted_at(t, false));
    ca.active_id = new.id.clone();
    ca.roots.push(from_root(&new));
    // The JWT-SVID key rotates with the root.
    with_new_jwt_key(ca, jwt_alg, t)
}
