//! What a sidecar learns from the agent: its registration (`-sidecar-for`), its
//! identity (roots + leaf, kept current) and its upstreams' endpoints.
//!
//! Root rotation: when the CA changes, the new roots are trusted at once (with the old
//! leaf still presented), and the new leaf is presented only after
//! [`ROTATION_GRACE`], so every sidecar trusts the new root before any presents a
//! leaf it signed. Leaves are also renewed with every blocking-query round (at most
//! every [`RENEW_EVERY`]), far ahead of their 72 h expiry.

use crate::mesh::{Endpoints, Identity, LeafPem, MeshTls};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tribune_client::Client;
use tribune_model::api::{paths, AgentService, CaRoots, LeafCert, ServiceEntry, ServiceKind};

/// Delay between trusting new roots and presenting a leaf signed by them.
pub const ROTATION_GRACE: Duration = Duration::from_secs(2);
/// Longest wait of one leaf blocking query (then a fresh leaf is installed); the
/// agent caps blocking queries at 10 minutes.
pub const RENEW_EVERY: Duration = Duration::from_secs(600);
/// Extra time allowed for a blocking query's answer before the connection is given up.
const ANSWER_GRACE: Duration = Duration::from_secs(60);

/// The sidecar's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The service the sidecar guards (its intentions' destination).
    pub service: String,
    pub mesh_addr: SocketAddr,
    pub local_service: SocketAddr,
    /// (destination, local bind address).
    pub upstreams: Vec<(String, SocketAddr)>,
    /// Upstreams whose requests carry a JWT-SVID for their destination: the local
    /// bind address (as text) -> the header it goes in (the upstream's
    /// `Config.jwt_svid_header`).
    pub identity_headers: std::collections::BTreeMap<String, String>,
}

impl Registration {
    pub fn to_saved(&self) -> crate::state::SavedRegistration {
        crate::state::SavedRegistration {
            service: self.service.clone(),
            mesh_addr: self.mesh_addr.to_string(),
            local_service: self.local_service.to_string(),
            upstreams: self
                .upstreams
                .iter()
                .map(|(d, a)| (d.clone(), a.to_string()))
                .collect(),
            identity_headers: self.identity_headers.clone(),
        }
    }

    pub fn from_saved(s: &crate::state::SavedRegistration) -> Result<Registration, String> {
        let parse = |a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|e| format!("saved address {a:?}: {e}"))
        };
        Ok(Registration {
            service: s.service.clone(),
            mesh_addr: parse(&s.mesh_addr)?,
            local_service: parse(&s.local_service)?,
            upstreams: s
                .upstreams
                .iter()
                .map(|(d, a)| Ok((d.clone(), parse(a)?)))
                .collect::<Result<_, String>>()?,
            identity_headers: s.identity_headers.clone(),
        })
    }
}

/// Why a request to the agent failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentError {
    /// No agent answered (refused connection, timeout): an outage, which a sidecar
    /// rides out on its saved state.
    Unreachable(String),
    /// An agent answered with this status (and message).
    Answered(u16, String),
    /// An agent answered something this sidecar cannot use.
    Invalid(String),
}

impl AgentError {
    /// The agent refused the sidecar's token (missing, revoked, or lacking the
    /// permission): not an outage. A refused sidecar never starts from saved state.
    pub fn refused(&self) -> bool {
        matches!(self, AgentError::Answered(401 | 403, _))
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Unreachable(m) | AgentError::Invalid(m) => f.write_str(m),
            AgentError::Answered(status, m) => write!(f, "agent answered {status}: {m}"),
        }
    }
}

impl From<AgentError> for String {
    fn from(e: AgentError) -> String {
        e.to_string()
    }
}

/// One request to the agent, `200` or an [`AgentError`].
pub(crate) async fn agent_get(
    client: &Client,
    path: &str,
    within: Duration,
) -> Result<tribune_client::Response, AgentError> {
    let res = tokio::time::timeout(within, client.request("GET", path, None))
        .await
        .map_err(|_| AgentError::Unreachable(format!("{path}: no answer from the agent")))?
        .map_err(|e| AgentError::Unreachable(e.to_string()))?;
    if res.status != 200 {
        return Err(AgentError::Answered(
            res.status,
            format!("{path}: {}", res.body.trim()),
        ));
    }
    Ok(res)
}

/// `GET path`, decoded as the agent's typed answer ([`tribune_model::api`]), with its
/// `X-Consul-Index`. A shape that does not decode names the path and the field.
async fn get_typed<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<(T, u64), AgentError> {
    // Blocking queries wait at most RENEW_EVERY on the agent; a silent connection must
    // not hang a watch forever.
    let res = agent_get(client, path, RENEW_EVERY + ANSWER_GRACE).await?;
    let index = res
        .header("x-consul-index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let v = tribune_model::decode::parse_json(res.body.as_bytes())
        .map_err(|e| AgentError::Invalid(format!("{path}: {e}")))?;
    let typed = serde_json::from_value(v)
        .map_err(|e| AgentError::Invalid(format!("{path}: unexpected answer: {e}")))?;
    Ok((typed, index))
}

fn addr(host: &str, port: u64) -> Result<SocketAddr, String> {
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("address {host}:{port}: {e}"))
}

/// Reads the sidecar registration for service ID `id` (`<id>-sidecar-proxy`, or `id`
/// itself when it is a `connect-proxy`).
pub async fn registration(client: &Client, id: &str) -> Result<Registration, AgentError> {
    let sidecar_id = format!("{id}-sidecar-proxy");
    let reg = match get_typed::<AgentService>(client, &paths::agent_service(&sidecar_id)).await {
        Ok((v, _)) => v.record,
        // Not an absent registration: say what happened (no agent, a refused token).
        Err(e) if !matches!(e, AgentError::Answered(404, _)) => return Err(e),
        Err(first) => match get_typed::<AgentService>(client, &paths::agent_service(id)).await {
            Ok((v, _)) if v.record.kind == ServiceKind::ConnectProxy => v.record,
            _ => {
                return Err(AgentError::Answered(
                    404,
                    format!("no sidecar registered for service ID {id:?} ({first})"),
                ))
            }
        },
    };
    let proxy = reg.proxy.unwrap_or_default();
    let mut upstreams = Vec::new();
    let mut identity_headers = std::collections::BTreeMap::new();
    for u in proxy.upstreams {
        let header = u.jwt_svid_header().map_err(|e| {
            AgentError::Invalid(format!("upstream {}: Config.{e}", u.destination_name))
        })?;
        let bind_host = if u.local_bind_address.is_empty() {
            "127.0.0.1"
        } else {
            &u.local_bind_address
        };
        let bind = addr(bind_host, u.local_bind_port.into()).map_err(AgentError::Invalid)?;
        if let Some(h) = header {
            identity_headers.insert(bind.to_string(), h);
        }
        upstreams.push((u.destination_name, bind));
    }
    Ok(Registration {
        service: proxy.destination_service_name,
        mesh_addr: addr(&reg.address, reg.port.into()).map_err(AgentError::Invalid)?,
        local_service: addr(
            &proxy.local_service_address,
            proxy.local_service_port.into(),
        )
        .map_err(AgentError::Invalid)?,
        upstreams,
        identity_headers,
    })
}

struct Fetched {
    trust_domain: String,
    roots: Vec<String>,
    leaf: LeafPem,
    root_id: String,
    index: u64,
}

async fn fetch(
    client: &Client,
    service: &str,
    index: u64,
    wait: Duration,
) -> Result<Fetched, AgentError> {
    let (leaf, index) = get_typed::<LeafCert>(
        client,
        &format!(
            "{}?index={index}&wait={}s",
            paths::leaf(service),
            wait.as_secs()
        ),
    )
    .await?;
    let (roots, _) = get_typed::<CaRoots>(client, paths::CA_ROOTS).await?;
    Ok(Fetched {
        trust_domain: roots.trust_domain,
        roots: roots.roots.into_iter().map(|r| r.root_cert).collect(),
        leaf: LeafPem {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.private_key_pem,
        },
        root_id: leaf.root_id,
        index,
    })
}

/// The sidecar's first identity, and the state to keep it current with.
pub struct IdentityWatch {
    pub tls: Arc<MeshTls>,
    client: Client,
    service: String,
    index: u64,
    root_id: String,
    leaf: LeafPem,
    trust_domain: String,
    roots: Vec<String>,
    state: Option<Arc<crate::state::StateFile>>,
    /// Told when the agent refuses the token (and when it accepts it again).
    proxy: Option<Arc<crate::Proxy>>,
}

impl IdentityWatch {
    pub async fn start(client: Client, service: &str) -> Result<IdentityWatch, AgentError> {
        let f = fetch(&client, service, 0, Duration::from_secs(1)).await?;
        let identity =
            Identity::new(&f.trust_domain, &f.roots, &f.leaf).map_err(AgentError::Invalid)?;
        Ok(IdentityWatch {
            tls: MeshTls::new(identity),
            client,
            service: service.to_string(),
            index: f.index,
            root_id: f.root_id,
            leaf: f.leaf,
            trust_domain: f.trust_domain,
            roots: f.roots,
            state: None,
            proxy: None,
        })
    }

    /// The identity saved by an earlier run (every agent unreachable at start); the
    /// watch replaces it as soon as an agent answers.
    pub fn from_saved(
        client: Client,
        service: &str,
        saved: &crate::state::SavedIdentity,
    ) -> Result<IdentityWatch, String> {
        let leaf = LeafPem {
            cert_pem: saved.cert_pem.clone(),
            key_pem: saved.key_pem.clone(),
        };
        let identity = Identity::new(&saved.trust_domain, &saved.roots, &leaf)?;
        Ok(IdentityWatch {
            tls: MeshTls::new(identity),
            client,
            service: service.to_string(),
            index: 0,
            root_id: saved.root_id.clone(),
            leaf,
            trust_domain: saved.trust_domain.clone(),
            roots: saved.roots.clone(),
            state: None,
            proxy: None,
        })
    }

    /// Tells `proxy` when the agent refuses (or accepts again) this sidecar's token:
    /// its `/ready` and metrics say so.
    pub fn report_to(&mut self, proxy: Arc<crate::Proxy>) {
        self.proxy = Some(proxy);
    }

    /// Saves the identity to `state` now and after every change.
    pub fn save_to(&mut self, state: Arc<crate::state::StateFile>) {
        self.state = Some(state);
        self.save();
    }

    fn save(&self) {
        if let Some(state) = &self.state {
            let saved = crate::state::SavedIdentity {
                trust_domain: self.trust_domain.clone(),
                roots: self.roots.clone(),
                cert_pem: self.leaf.cert_pem.clone(),
                key_pem: self.leaf.key_pem.clone(),
                root_id: self.root_id.clone(),
            };
            state.update(|s| s.identity = Some(saved));
        }
    }

    /// Runs forever: blocking queries on the CA; rotation and renewal as documented
    /// above; on errors the current identity stays and the query is retried.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let fetched = fetch(&self.client, &self.service, self.index, RENEW_EVERY).await;
            if let Some(proxy) = &self.proxy {
                proxy.agent_refusal(
                    crate::Watch::Identity,
                    fetched.as_ref().err().filter(|e| e.refused()),
                );
            }
            match fetched {
                Ok(f) => {
                    backoff = Duration::from_millis(200);
                    if f.root_id != self.root_id {
                        // Trust the new roots first, still presenting the old leaf.
                        match Identity::new(&f.trust_domain, &f.roots, &self.leaf) {
                            Ok(i) => self.tls.replace(i),
                            Err(e) => tracing::warn!(error = %e, "cannot trust the new roots yet"),
                        }
                        tokio::time::sleep(ROTATION_GRACE).await;
                    }
                    match Identity::new(&f.trust_domain, &f.roots, &f.leaf) {
                        Ok(i) => {
                            self.tls.replace(i);
                            tracing::info!(service = %self.service, root = %f.root_id, "mesh identity updated");
                            self.leaf = f.leaf;
                            self.root_id = f.root_id;
                            self.trust_domain = f.trust_domain;
                            self.roots = f.roots;
                            self.save();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "new leaf unusable; keeping the current one")
                        }
                    }
                    self.index = if f.index < self.index { 0 } else { f.index };
                }
                Err(e) if e.refused() => {
                    tracing::error!(error = %e, "the agent refused this sidecar's token: the leaf certificate is not renewed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "identity watch failed; keeping the current certificate");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Keeps `endpoints` equal to the healthy sidecars of `destination`.
pub async fn watch_endpoints(client: Client, destination: String, endpoints: Arc<Endpoints>) {
    watch_endpoints_saved(client, destination, endpoints, None).await
}

/// [`watch_endpoints`], saving each new list to `state` (fail static across restarts).
pub async fn watch_endpoints_saved(
    client: Client,
    destination: String,
    endpoints: Arc<Endpoints>,
    state: Option<Arc<crate::state::StateFile>>,
) {
    let mut index = 0u64;
    let mut backoff = Duration::from_millis(200);
    loop {
        let path = format!(
            "{}?index={index}&wait=60s",
            paths::health_connect(&destination)
        );
        match get_typed::<Vec<ServiceEntry>>(&client, &path).await {
            Ok((entries, i)) => {
                backoff = Duration::from_millis(200);
                let addrs: Vec<SocketAddr> = entries
                    .iter()
                    .filter_map(|e| {
                        addr(&e.service.record.address, e.service.record.port.into()).ok()
                    })
                    .collect();
                if *endpoints.get() != addrs {
                    tracing::info!(upstream = %destination, endpoints = addrs.len(), "upstream endpoints updated");
                    if let Some(st) = &state {
                        let saved: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                        st.update(|s| {
                            s.endpoints.insert(destination.clone(), saved);
                        });
                    }
                    endpoints.set(addrs);
                }
                index = if i < index { 0 } else { i };
            }
            Err(e) => {
                tracing::warn!(upstream = %destination, error = %e, "endpoint watch failed; keeping the last list");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
