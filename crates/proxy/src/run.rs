//! Assembling a sidecar from its [`Settings`]: the one place that turns settings into
//! listeners and tasks (`tribune connect proxy` only maps its flags to `Settings`,
//! whose defaults are [`defaults`]). Every setting has a test that it changes
//! behaviour (`tests/settings.rs`), so a flag can no longer be parsed and then
//! ignored, as `-edge-tls-cert` once was.
//!
//! [`start`] is three steps, linkerd's `Config::build` -> `spawn` shape:
//! 1. load: the snapshot file, the saved state, the registration (or the saved one
//!    when no agent answers);
//! 2. [`plan`]: pure; settings + registration -> the service, the local service,
//!    every listener with its address and the proxy's configuration, or the error
//!    that names the flag (tested without sockets);
//! 3. spawn: bind what the plan names, start its tasks, and return the bound
//!    addresses ([`Listeners`]) with the banner's lines.

use crate::{sidecar, Proxy, ProxyConfig, SnapshotDoc};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tribune_client::{Client, Target};

/// The settings' defaults, in one place: [`Settings::new`] and the CLI's flags read
/// them (a test in the CLI checks that no flag given means these).
pub mod defaults {
    use super::*;
    /// `-admin-bind`.
    pub const ADMIN_BIND: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 19000));
    /// `-upstream-timeout`, seconds.
    pub const UPSTREAM_TIMEOUT_SECS: u64 = 15;
    /// `-state-max-age` (Go duration; [`crate::state::DEFAULT_MAX_AGE`]).
    pub const STATE_MAX_AGE: &str = "24h";
    /// `-replay-buffer`.
    pub const REPLAY_BUFFER: usize = crate::replay::DEFAULT_REPLAY_ENTRIES;
    /// `-workload-api-mode` (octal).
    pub const WORKLOAD_API_MODE: u32 = 0o600;
    /// `-upgrade-idle-timeout` (Go duration; [`crate::upgrade::Limits::default`]).
    pub const UPGRADE_IDLE_TIMEOUT: &str = "5m";
    /// `-upgrade-max-duration` (Go duration; 0: none).
    pub const UPGRADE_MAX_DURATION: &str = "0s";
}

/// Everything a sidecar is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Run as the sidecar registered for this service ID (service, mesh listener,
    /// local service and upstreams come from the registration).
    pub sidecar_for: Option<String>,
    /// The service guarded (the destination of its intentions).
    pub service: Option<String>,
    /// Where allowed requests go.
    pub local_service: Option<SocketAddr>,
    /// Overrides the registration's mesh listener address.
    pub mesh_listener: Option<SocketAddr>,
    /// Listener for callers outside the mesh.
    pub edge_listener: Option<SocketAddr>,
    /// Serve the edge listener over TLS: certificate chain and key, PEM files.
    pub edge_tls: Option<EdgeTls>,
    /// `/ready`, `/stats/prometheus`, `/config_dump`.
    pub admin_bind: SocketAddr,
    /// Enforce the snapshot in this file instead of following the agent.
    pub snapshot_file: Option<PathBuf>,
    /// Merge repeated slashes (on top of the `mesh` entry's `MergeSlashes`).
    pub merge_slashes: bool,
    /// Time allowed for the local service's response headers.
    pub upstream_timeout: Duration,
    /// The agent(s): addresses (comma-separated, failed over in order) and token.
    pub agent: Target,
    /// Where the last registration, identity and policy from the agent are kept, so
    /// that a restart while every agent is down enforces them (`None`: the default,
    /// [`crate::state::default_dir`]).
    pub state_dir: Option<PathBuf>,
    /// A saved state older than this is not used.
    pub state_max_age: Duration,
    /// Recent request facts kept for `POST /replay` (0: none).
    pub replay_buffer: usize,
    /// Idle and maximum-duration limits of upgraded (WebSocket) connections.
    pub upgrade_limits: crate::upgrade::Limits,
    /// Serve the SPIFFE Workload API on this Unix socket (with a mesh identity).
    pub workload_api_socket: Option<PathBuf>,
    /// The socket's file mode (default 0600: the sidecar's user only).
    pub workload_api_mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Settings {
    /// Defaults for everything but the agent.
    pub fn new(agent: Target) -> Settings {
        Settings {
            sidecar_for: None,
            service: None,
            local_service: None,
            mesh_listener: None,
            edge_listener: None,
            edge_tls: None,
            admin_bind: defaults::ADMIN_BIND,
            snapshot_file: None,
            merge_slashes: false,
            upstream_timeout: Duration::from_secs(defaults::UPSTREAM_TIMEOUT_SECS),
            agent,
            state_dir: None,
            state_max_age: crate::state::DEFAULT_MAX_AGE,
            replay_buffer: defaults::REPLAY_BUFFER,
            upgrade_limits: crate::upgrade::Limits::default(),
            workload_api_socket: None,
            workload_api_mode: defaults::WORKLOAD_API_MODE,
        }
    }
}

/// A started sidecar: its proxy, the addresses it listens on, and the banner.
pub struct Started {
    pub service: String,
    pub proxy: Arc<Proxy>,
    pub listeners: Listeners,
    /// `(what, where)` lines for the banner, in the order they were set up.
    pub lines: Vec<(String, String)>,
}

/// Where a started sidecar listens (ports 0 resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub mesh: Option<SocketAddr>,
    pub edge: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// (destination, local bind address).
    pub upstreams: Vec<(String, SocketAddr)>,
}

/// What a sidecar will run: the output of [`plan`].
pub struct Plan {
    /// The service guarded.
    pub service: String,
    /// The local service (where allowed requests go).
    pub upstream: SocketAddr,
    pub mesh: Option<SocketAddr>,
    pub edge: Option<SocketAddr>,
    pub edge_tls: Option<EdgeTls>,
    pub admin: SocketAddr,
    /// Upstream listeners (with the mesh only).
    pub upstreams: Vec<UpstreamPlan>,
    /// The Workload API socket and its mode (with the mesh only).
    pub workload_api: Option<(PathBuf, u32)>,
    pub config: ProxyConfig,
    /// The policy from `-config`, else the agent's.
    pub policy_file: Option<(SnapshotDoc, PathBuf)>,
}

/// One upstream listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPlan {
    pub destination: String,
    pub bind: SocketAddr,
    /// The header its requests get a JWT-SVID in (`Config.jwt_svid_header`).
    pub jwt_svid_header: Option<hyper::header::HeaderName>,
}

fn read_snapshot(path: &PathBuf) -> Result<SnapshotDoc, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Error reading {}: {e}", path.display()))?;
    let v = tribune_model::decode::parse_json(text.as_bytes())
        .map_err(|e| format!("Error parsing {}: {e}", path.display()))?;
    SnapshotDoc::from_json(&v).map_err(|e| format!("Invalid snapshot {}: {e}", path.display()))
}

fn edge_tls(tls: &EdgeTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read_to_string(p).map_err(|e| format!("Error reading {what} {}: {e}", p.display()))
    };
    let cert = read(&tls.cert, "edge TLS certificate")?;
    let key = read(&tls.key, "edge TLS key")?;
    crate::serve::edge_tls_config(&cert, &key)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match (e.kind(), what) {
            (std::io::ErrorKind::AddrInUse, "admin listener") => {
                ": another process (often another sidecar on this host) holds it; give this one its own with -admin-bind 127.0.0.1:PORT (0 picks a free port)"
            }
            (std::io::ErrorKind::AddrInUse, "edge listener") => {
                ": another process holds it; choose another with -edge-listener"
            }
            (std::io::ErrorKind::AddrInUse, "mesh listener") => {
                ": another process holds it; the registration's port is taken (register the sidecar with another Port, or pass -mesh-listener)"
            }
            (std::io::ErrorKind::AddrInUse, _) => ": another process holds it",
            _ => "",
        };
        format!("Error binding {what} {addr}: {e}{hint}")
    })
}

/// A refused token at start is not an outage: the sidecar does not start, whatever
/// it saved (a revoked token must stop a sidecar, not leave it on its saved state).
fn refused_at_start(e: &sidecar::AgentError) -> String {
    format!("The agent refused this sidecar's ACL token ({e}): it is missing, revoked or lacks service:write; not starting (saved state is used only when no agent answers)")
}

/// Step 2: what the settings (and the registration, when running for one) ask for,
/// or the error that names the flag. Pure: nothing is read, bound or started.
pub fn plan(
    settings: &Settings,
    file_doc: Option<SnapshotDoc>,
    reg: Option<&sidecar::Registration>,
) -> Result<Plan, String> {
    if settings.sidecar_for.is_some() && file_doc.is_some() {
        return Err("-sidecar-for and -config cannot be combined".into());
    }
    let service = match (&settings.service, &file_doc, reg) {
        (Some(s), Some(d), _) if *s != d.service => {
            return Err(format!(
                "-service {s} does not match the snapshot's Service {}",
                d.service
            ))
        }
        (Some(s), _, _) => s.clone(),
        (None, Some(d), _) => d.service.clone(),
        (None, None, Some(r)) => r.service.clone(),
        (None, None, None) => {
            return Err("Must specify -sidecar-for, -service, or -config with a snapshot".into())
        }
    };
    let upstream = settings
        .local_service
        .or(reg.map(|r| r.local_service))
        .ok_or("Must specify -local-service-address (the local service's host:port)")?;
    let mesh = settings.mesh_listener.or(reg.map(|r| r.mesh_addr));
    if mesh.is_some() && file_doc.is_some() {
        return Err("the mesh listener needs the agent's CA; it cannot run with -config".into());
    }
    if mesh.is_none() && settings.edge_listener.is_none() {
        return Err("Must specify -sidecar-for, -mesh-listener or -edge-listener".into());
    }
    if settings.edge_tls.is_some() && settings.edge_listener.is_none() {
        return Err("-edge-tls-cert and -edge-tls-key need -edge-listener".into());
    }
    if settings.workload_api_socket.is_some() && mesh.is_none() {
        return Err("-workload-api-socket serves the mesh identity: it needs -sidecar-for or -mesh-listener".into());
    }
    let mut upstreams = Vec::new();
    if mesh.is_some() {
        for (destination, bind) in reg.map(|r| r.upstreams.clone()).unwrap_or_default() {
            let jwt_svid_header = match reg.and_then(|r| r.identity_headers.get(&bind.to_string()))
            {
                None => None,
                Some(h) => Some(hyper::header::HeaderName::from_bytes(h.as_bytes()).map_err(
                    |e| format!("upstream {destination}: Config.jwt_svid_header {h:?}: {e}"),
                )?),
            };
            upstreams.push(UpstreamPlan {
                destination,
                bind,
                jwt_svid_header,
            });
        }
    }
    let mut config = ProxyConfig::new(upstream);
    config.merge_slashes = settings.merge_slashes;
    config.replay_buffer = settings.replay_buffer;
    config.upgrade_limits = settings.upgrade_limits;
    config.upstream_timeout = settings.upstream_timeout.max(Duration::from_millis(1));
    let policy_file = match (file_doc, &settings.snapshot_file) {
        (Some(doc), Some(path)) => Some((doc, path.clone())),
        _ => None,
    };
    Ok(Plan {
        service,
        upstream,
        mesh,
        edge: settings.edge_listener,
        edge_tls: settings.edge_tls.clone(),
        admin: settings.admin_bind,
        upstreams,
        workload_api: mesh.and(
            settings
                .workload_api_socket
                .clone()
                .map(|p| (p, settings.workload_api_mode)),
        ),
        config,
        policy_file,
    })
}

/// What an earlier run saved, and the file to keep saving to (not for `-config`,
/// whose file is the policy).
fn state_file(
    settings: &Settings,
    file_doc: &Option<SnapshotDoc>,
) -> Result<Option<Arc<crate::state::StateFile>>, String> {
    let key = settings.sidecar_for.as_ref().or(settings.service.as_ref());
    match (file_doc, key) {
        (None, Some(key)) => {
            let dir = settings
                .state_dir
                .clone()
                .unwrap_or_else(crate::state::default_dir);
            Ok(Some(Arc::new(crate::state::StateFile::open(
                &dir,
                key,
                settings.state_max_age,
            )?)))
        }
        _ => Ok(None),
    }
}

/// The registration of `-sidecar-for`, from the agent, else the one saved by an
/// earlier run (noted in `from_saved`).
async fn registration(
    agent: &Client,
    settings: &Settings,
    state: &Option<Arc<crate::state::StateFile>>,
    saved: &crate::state::Saved,
    from_saved: &mut Vec<&'static str>,
) -> Result<Option<sidecar::Registration>, String> {
    let Some(id) = &settings.sidecar_for else {
        return Ok(None);
    };
    match sidecar::registration(agent, id).await {
        Ok(r) => {
            if let Some(st) = state {
                st.update(|s| {
                    s.service = r.service.clone();
                    s.registration = Some(r.to_saved());
                });
            }
            Ok(Some(r))
        }
        Err(e) if e.refused() => Err(refused_at_start(&e)),
        Err(e) => match &saved.registration {
            Some(r) => {
                tracing::warn!(error = %e, "no agent answered; using the saved registration");
                from_saved.push("registration");
                Ok(Some(sidecar::Registration::from_saved(r)?))
            }
            None => Err(match e {
                sidecar::AgentError::Unreachable(why) => format!(
                    "No agent answered ({why}), and no registration of {id:?} was saved by an earlier run to start from: start the agent, or check -http-addr"
                ),
                other => other.to_string(),
            }),
        },
    }
}

/// Binds every listener and starts every task the settings ask for; returns once the
/// sidecar is serving (or would be, once a policy arrives from the agent).
pub async fn start(settings: Settings) -> Result<Started, String> {
    // 1. load.
    let file_doc = settings
        .snapshot_file
        .as_ref()
        .map(read_snapshot)
        .transpose()?;
    let state = state_file(&settings, &file_doc)?;
    let saved = state.as_ref().map(|s| s.get()).unwrap_or_default();
    let mut from_saved: Vec<&'static str> = Vec::new();
    // One client for every watch and report: over HTTP/2 (where the agent speaks it)
    // they are streams of one connection.
    let agent = Client::multiplexed(&settings.agent).map_err(|e| e.to_string())?;
    let reg = if file_doc.is_some() && settings.sidecar_for.is_some() {
        None // refused by the plan
    } else {
        registration(&agent, &settings, &state, &saved, &mut from_saved).await?
    };
    // 2. plan.
    let plan = plan(&settings, file_doc, reg.as_ref())?;
    // 3. spawn.
    spawn(&settings, agent, plan, state, saved, from_saved).await
}

/// Step 3: binds what `plan` names and starts its tasks.
async fn spawn(
    settings: &Settings,
    agent: Client,
    plan: Plan,
    state: Option<Arc<crate::state::StateFile>>,
    saved: crate::state::Saved,
    mut from_saved: Vec<&'static str>,
) -> Result<Started, String> {
    let service = plan.service.clone();
    // Read before anything is bound, so a bad certificate fails the start.
    let edge_tls = plan.edge_tls.as_ref().map(edge_tls).transpose()?;
    let proxy = Proxy::new(plan.config);
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut listeners = Listeners {
        mesh: None,
        edge: None,
        admin: plan.admin,
        upstreams: Vec::new(),
    };

    if let Some(addr) = plan.mesh {
        let mut watch = match sidecar::IdentityWatch::start(agent.clone(), &service).await {
            Ok(w) => w,
            Err(e) if e.refused() => return Err(refused_at_start(&e)),
            Err(e) => match &saved.identity {
                Some(id) if saved.service == service => {
                    tracing::warn!(error = %e, "no agent answered; presenting the saved mesh identity");
                    from_saved.push("identity");
                    sidecar::IdentityWatch::from_saved(agent.clone(), &service, id)
                        .map_err(|e| format!("Error using the saved mesh identity: {e}"))?
                }
                _ => return Err(format!("Error getting the mesh identity: {e}")),
            },
        };
        if let Some(st) = &state {
            watch.save_to(st.clone());
        }
        watch.report_to(proxy.clone());
        let tls = watch.tls.clone();
        let listener = bind(addr, "mesh listener").await?;
        let at = listener.local_addr().unwrap_or(addr);
        listeners.mesh = Some(at);
        lines.push((
            "Mesh listener".into(),
            format!("{at} (mTLS, identity {})", tls.identity().service),
        ));
        tokio::spawn(watch.run());
        tokio::spawn(crate::mesh::serve_mesh(
            proxy.clone(),
            tls.clone(),
            listener,
        ));
        if let Some((path, mode)) = &plan.workload_api {
            let api = Arc::new(crate::workload_api::WorkloadApi {
                tls: tls.clone(),
                agent: agent.clone(),
            });
            crate::workload_api::serve(api, path.clone(), *mode).await?;
            lines.push((
                "Workload API".into(),
                format!("{} (mode {mode:o})", path.display()),
            ));
        }
        for up in plan.upstreams {
            let dest = up.destination;
            let listener = bind(up.bind, &format!("upstream {dest} on")).await?;
            listeners
                .upstreams
                .push((dest.clone(), listener.local_addr().unwrap_or(up.bind)));
            let endpoints = Arc::new(crate::mesh::Endpoints::default());
            // Until an agent answers: the instances saved by the last run.
            if let Some(saved) = saved.endpoints.get(&dest) {
                endpoints.set(saved.iter().filter_map(|a| a.parse().ok()).collect());
            }
            tokio::spawn(sidecar::watch_endpoints_saved(
                agent.clone(),
                dest.clone(),
                endpoints.clone(),
                state.clone(),
            ));
            match up.jwt_svid_header {
                // Outbound identity: requests read as HTTP and given a JWT-SVID.
                Some(header) => {
                    lines.push((
                        format!("Upstream {dest}"),
                        format!("{} (JWT-SVID in {header})", up.bind),
                    ));
                    let source = crate::outbound::SvidSource::new(agent.clone(), &service, &dest);
                    tokio::spawn(crate::outbound::serve_upstream_with_identity(
                        proxy.clone(),
                        tls.clone(),
                        dest,
                        endpoints,
                        listener,
                        header,
                        source,
                    ));
                }
                None => {
                    lines.push((format!("Upstream {dest}"), up.bind.to_string()));
                    tokio::spawn(crate::mesh::serve_upstream(
                        proxy.clone(),
                        tls.clone(),
                        dest,
                        endpoints,
                        listener,
                    ));
                }
            }
        }
    }
    if let Some(edge) = plan.edge {
        let listener = bind(edge, "edge listener").await?;
        let at = listener.local_addr().unwrap_or(edge);
        listeners.edge = Some(at);
        match edge_tls {
            Some(tls) => {
                lines.push(("Edge listener".into(), format!("{at} (TLS)")));
                tokio::spawn(crate::serve::serve_edge_tls(proxy.clone(), listener, tls));
            }
            None => {
                lines.push(("Edge listener".into(), at.to_string()));
                tokio::spawn(crate::serve::serve_edge(proxy.clone(), listener));
            }
        }
    }
    let admin = bind(plan.admin, "admin listener").await?;
    if !plan.admin.ip().is_loopback() {
        tracing::warn!(admin = %plan.admin, "the admin listener is not on loopback: anyone who reaches it reads the policy (/config_dump) and runs replays; bind it to 127.0.0.1 unless a firewall guards it");
    }
    listeners.admin = admin.local_addr().unwrap_or(plan.admin);
    lines.push(("Admin listener".into(), listeners.admin.to_string()));
    lines.push(("Local service".into(), plan.upstream.to_string()));
    let source = match plan.policy_file {
        Some((doc, path)) => {
            proxy
                .install(doc, 0)
                .await
                .map_err(|e| format!("Invalid snapshot: {e}"))?;
            format!("file {}", path.display())
        }
        None => {
            if let Some(st) = &state {
                proxy.save_state_to(st.clone());
            }
            let client = agent.clone();
            // The agent's policy when one answers; the saved one only when none does
            // (the watch replaces it as soon as an agent answers).
            let mut body = String::new();
            let first = tokio::time::timeout(
                Duration::from_secs(5),
                crate::watch::poll_once(&proxy, &client, &service, 0, &mut body),
            )
            .await
            .map_err(|_| sidecar::AgentError::Unreachable("no answer within 5 s".into()))
            .and_then(|r| r);
            let index = match first {
                Ok(i) => i,
                Err(e) if e.refused() => return Err(refused_at_start(&e)),
                Err(e) => {
                    tracing::warn!(error = %e, "no policy from the agent yet");
                    0
                }
            };
            if let (None, Some(doc), true) =
                (proxy.current(), &saved.snapshot, saved.service == service)
            {
                match SnapshotDoc::from_json(doc) {
                    Ok(d) => match proxy.install(d, saved.snapshot_index).await {
                        Ok(_) => from_saved.push("policy"),
                        Err(e) => tracing::warn!(error = %e, "saved policy not usable"),
                    },
                    Err(e) => tracing::warn!(error = %e, "saved policy not usable"),
                }
            }
            tokio::spawn(crate::watch::watch_agent_from(
                proxy.clone(),
                client,
                service.clone(),
                index,
                body,
            ));
            let name = match &settings.sidecar_for {
                Some(id) => format!("{id}-sidecar-proxy"),
                None => format!("{service}@{}", listeners.admin),
            };
            tokio::spawn(crate::report::report_to_agent(
                proxy.clone(),
                agent.clone(),
                service.clone(),
                name,
            ));
            format!("agent {} (live)", settings.agent.addr)
        }
    };
    lines.push(("Policy".into(), source));
    if let Some(st) = &state {
        let note = if from_saved.is_empty() {
            String::new()
        } else {
            format!(
                " (started from the saved {}: no agent answered)",
                from_saved.join(", ")
            )
        };
        lines.push(("State".into(), format!("{}{note}", st.path().display())));
    }
    tokio::spawn(crate::admin::serve_admin(proxy.clone(), admin));
    tokio::spawn(crate::keep_timer_armed());
    Ok(Started {
        service,
        proxy,
        listeners,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings() -> Settings {
        Settings::new(Target {
            addr: "127.0.0.1:8500".into(),
            ..Default::default()
        })
    }

    fn registration() -> sidecar::Registration {
        sidecar::Registration {
            service: "web".into(),
            mesh_addr: "127.0.0.1:21000".parse().unwrap(),
            local_service: "127.0.0.1:8080".parse().unwrap(),
            upstreams: vec![
                ("api".into(), "127.0.0.1:9191".parse().unwrap()),
                ("billing".into(), "127.0.0.1:9192".parse().unwrap()),
            ],
            identity_headers: BTreeMap::from([(
                "127.0.0.1:9192".to_string(),
                "X-Workload-Token".to_string(),
            )]),
        }
    }

    fn doc(service: &str) -> SnapshotDoc {
        SnapshotDoc::from_json(&serde_json::json!({
            "Service": service, "Protocol": "http", "DefaultIntentionPolicy": "deny",
            "Entries": []}))
        .unwrap()
    }

    fn error(
        s: &Settings,
        file: Option<SnapshotDoc>,
        reg: Option<&sidecar::Registration>,
    ) -> String {
        plan(s, file, reg).err().unwrap_or_default()
    }

    #[test]
    fn a_registration_plans_the_mesh_its_upstreams_and_their_identity_headers() {
        let reg = registration();
        let p = plan(&settings(), None, Some(&reg)).unwrap();
        assert_eq!(p.service, "web");
        assert_eq!(p.upstream, reg.local_service);
        assert_eq!(p.mesh, Some(reg.mesh_addr));
        assert_eq!(p.edge, None);
        assert_eq!(p.admin, defaults::ADMIN_BIND);
        assert_eq!(
            p.upstreams,
            vec![
                UpstreamPlan {
                    destination: "api".into(),
                    bind: "127.0.0.1:9191".parse().unwrap(),
                    jwt_svid_header: None,
                },
                UpstreamPlan {
                    destination: "billing".into(),
                    bind: "127.0.0.1:9192".parse().unwrap(),
                    jwt_svid_header: Some(hyper::header::HeaderName::from_static(
                        "x-workload-token"
                    )),
                },
            ]
        );
        assert!(p.policy_file.is_none());
        // Flags win over the registration.
        let mut s = settings();
        s.local_service = Some("127.0.0.1:9999".parse().unwrap());
        s.mesh_listener = Some("127.0.0.1:22000".parse().unwrap());
        let p = plan(&s, None, Some(&reg)).unwrap();
        assert_eq!(p.upstream, s.local_service.unwrap());
        assert_eq!(p.mesh, s.mesh_listener);
    }

    #[test]
    fn a_snapshot_file_plans_the_edge_only_with_its_service() {
        let mut s = settings();
        s.snapshot_file = Some("/p/api.json".into());
        s.edge_listener = Some("127.0.0.1:0".parse().unwrap());
        s.local_service = Some("127.0.0.1:8080".parse().unwrap());
        s.upstream_timeout = Duration::from_secs(3);
        s.merge_slashes = true;
        let p = plan(&s, Some(doc("api")), None).unwrap();
        assert_eq!(p.service, "api");
        assert_eq!(p.mesh, None);
        assert_eq!(p.edge, s.edge_listener);
        assert_eq!(p.config.upstream_timeout, Duration::from_secs(3));
        assert!(p.config.merge_slashes);
        assert_eq!(p.policy_file.map(|(_, path)| path), s.snapshot_file);
    }

    #[test]
    fn each_impossible_combination_is_refused_naming_its_flags() {
        let reg = registration();
        let mut s = settings();
        s.sidecar_for = Some("web-1".into());
        assert_eq!(
            error(&s, Some(doc("web")), None),
            "-sidecar-for and -config cannot be combined"
        );
        let mut s = settings();
        s.service = Some("web".into());
        assert_eq!(
            error(&s, Some(doc("api")), None),
            "-service web does not match the snapshot's Service api"
        );
        assert!(error(&settings(), None, None).starts_with("Must specify -sidecar-for, -service"));
        let mut s = settings();
        s.service = Some("web".into());
        assert!(error(&s, None, None).starts_with("Must specify -local-service-address"));
        s.local_service = Some("127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            error(&s, None, None),
            "Must specify -sidecar-for, -mesh-listener or -edge-listener"
        );
        let mut s = settings();
        s.local_service = Some("127.0.0.1:8080".parse().unwrap());
        s.mesh_listener = Some("127.0.0.1:21000".parse().unwrap());
        assert!(error(&s, Some(doc("api")), None).contains("cannot run with -config"));
        let mut s = settings();
        s.service = Some("web".into());
        s.local_service = Some("127.0.0.1:8080".parse().unwrap());
        s.edge_tls = Some(EdgeTls {
            cert: "c".into(),
            key: "k".into(),
        });
        s.mesh_listener = Some("127.0.0.1:21000".parse().unwrap());
        assert_eq!(
            error(&s, None, None),
            "-edge-tls-cert and -edge-tls-key need -edge-listener"
        );
        // A Workload API socket without the mesh identity was ignored; now refused.
        let mut s = settings();
        s.service = Some("web".into());
        s.local_service = Some("127.0.0.1:8080".parse().unwrap());
        s.edge_listener = Some("127.0.0.1:0".parse().unwrap());
        s.workload_api_socket = Some("/run/w.sock".into());
        assert!(error(&s, None, None).starts_with("-workload-api-socket serves the mesh identity"));
        // A registration's header name that is not one.
        let mut bad = reg.clone();
        bad.identity_headers
            .insert("127.0.0.1:9191".into(), "bad header".into());
        assert!(error(&settings(), None, Some(&bad))
            .starts_with("upstream api: Config.jwt_svid_header \"bad header\""));
    }
}
