//! Assembling a sidecar from its [`Settings`]: the one place that turns settings into
//! listeners and tasks (`tribune connect proxy` only maps its flags to `Settings`).
//! Every setting has a test that it changes behaviour (`tests/settings.rs`), so a
//! flag can no longer be parsed and then ignored, as `-edge-tls-cert` once was.

use crate::{sidecar, Proxy, ProxyConfig, SnapshotDoc};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tribune_client::{Client, Target};

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
            admin_bind: SocketAddr::from(([127, 0, 0, 1], 19000)),
            snapshot_file: None,
            merge_slashes: false,
            upstream_timeout: Duration::from_secs(15),
            agent,
            state_dir: None,
            state_max_age: crate::state::DEFAULT_MAX_AGE,
            replay_buffer: crate::replay::DEFAULT_REPLAY_ENTRIES,
            upgrade_limits: crate::upgrade::Limits::default(),
            workload_api_socket: None,
            workload_api_mode: 0o600,
        }
    }
}

/// A started sidecar: its proxy and what it listens on (for the banner).
pub struct Started {
    pub service: String,
    pub proxy: Arc<Proxy>,
    /// `(what, where)` lines, in the order they were set up.
    pub lines: Vec<(String, String)>,
}

impl Started {
    /// The address of a listener by its banner name (`Edge listener`, ...).
    pub fn addr(&self, what: &str) -> Option<SocketAddr> {
        self.lines
            .iter()
            .find(|(k, _)| k == what)
            .and_then(|(_, v)| v.split(' ').next())
            .and_then(|a| a.parse().ok())
    }
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
    crate::http::edge_tls_config(&cert, &key)
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

/// Binds every listener and starts every task the settings ask for; returns once the
/// sidecar is serving (or would be, once a policy arrives from the agent).
pub async fn start(settings: Settings) -> Result<Started, String> {
    let file_doc = settings
        .snapshot_file
        .as_ref()
        .map(read_snapshot)
        .transpose()?;
    if settings.sidecar_for.is_some() && file_doc.is_some() {
        return Err("-sidecar-for and -config cannot be combined".into());
    }
    let agent = || Client::new(&settings.agent).map_err(|e| e.to_string());
    // Fail static across restarts (not for -config, whose file is the policy).
    let state = match (
        &file_doc,
        settings.sidecar_for.as_ref().or(settings.service.as_ref()),
    ) {
        (None, Some(key)) => {
            let dir = settings
                .state_dir
                .clone()
                .unwrap_or_else(crate::state::default_dir);
            Some(Arc::new(crate::state::StateFile::open(
                &dir,
                key,
                settings.state_max_age,
            )?))
        }
        _ => None,
    };
    let saved = state.as_ref().map(|s| s.get()).unwrap_or_default();
    let mut from_saved: Vec<&str> = Vec::new();
    let reg = match &settings.sidecar_for {
        None => None,
        Some(id) => match sidecar::registration(&agent()?, id).await {
            Ok(r) => {
                if let Some(st) = &state {
                    st.update(|s| {
                        s.service = r.service.clone();
                        s.registration = Some(r.to_saved());
                    });
                }
                Some(r)
            }
            Err(e) if e.refused() => return Err(refused_at_start(&e)),
            Err(e) => match &saved.registration {
                Some(r) => {
                    tracing::warn!(error = %e, "no agent answered; using the saved registration");
                    from_saved.push("registration");
                    Some(sidecar::Registration::from_saved(r)?)
                }
                None => {
                    return Err(match e {
                        sidecar::AgentError::Unreachable(why) => format!(
                            "No agent answered ({why}), and no registration of {id:?} was saved by an earlier run to start from: start the agent, or check -http-addr"
                        ),
                        other => other.to_string(),
                    })
                }
            },
        },
    };
    let service = match (&settings.service, &file_doc, &reg) {
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
        .or(reg.as_ref().map(|r| r.local_service))
        .ok_or("Must specify -local-service-address (the local service's host:port)")?;
    let mesh_addr = settings.mesh_listener.or(reg.as_ref().map(|r| r.mesh_addr));
    if mesh_addr.is_some() && file_doc.is_some() {
        return Err("the mesh listener needs the agent's CA; it cannot run with -config".into());
    }
    if mesh_addr.is_none() && settings.edge_listener.is_none() {
        return Err("Must specify -sidecar-for, -mesh-listener or -edge-listener".into());
    }
    if settings.edge_tls.is_some() && settings.edge_listener.is_none() {
        return Err("-edge-tls-cert and -edge-tls-key need -edge-listener".into());
    }
    // Read before anything is bound, so a bad certificate fails the start.
    let edge_tls = settings.edge_tls.as_ref().map(edge_tls).transpose()?;

    let mut config = ProxyConfig::new(upstream);
    config.merge_slashes = settings.merge_slashes;
    config.replay_buffer = settings.replay_buffer;
    config.upgrade_limits = settings.upgrade_limits;
    config.upstream_timeout = settings.upstream_timeout.max(Duration::from_millis(1));
    let proxy = Proxy::new(config);
    let mut lines: Vec<(String, String)> = Vec::new();

    if let Some(addr) = mesh_addr {
        let mut watch = match sidecar::IdentityWatch::start(agent()?, &service).await {
            Ok(w) => w,
            Err(e) if e.refused() => return Err(refused_at_start(&e)),
            Err(e) => match &saved.identity {
                Some(id) if saved.service == service => {
                    tracing::warn!(error = %e, "no agent answered; presenting the saved mesh identity");
                    from_saved.push("identity");
                    sidecar::IdentityWatch::from_saved(agent()?, &service, id)
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
        lines.push((
            "Mesh listener".into(),
            format!(
                "{} (mTLS, identity {})",
                listener.local_addr().unwrap_or(addr),
                tls.identity().service
            ),
        ));
        tokio::spawn(watch.run());
        tokio::spawn(crate::mesh::serve_mesh(
            proxy.clone(),
            tls.clone(),
            listener,
        ));
        if let Some(path) = &settings.workload_api_socket {
            let api = Arc::new(crate::workload_api::WorkloadApi {
                tls: tls.clone(),
                agent: agent()?,
            });
            crate::workload_api::serve(api, path.clone(), settings.workload_api_mode).await?;
            lines.push((
                "Workload API".into(),
                format!("{} (mode {:o})", path.display(), settings.workload_api_mode),
            ));
        }
        let identity_headers = reg
            .as_ref()
            .map(|r| r.identity_headers.clone())
            .unwrap_or_default();
        for (dest, at) in reg
            .as_ref()
            .map(|r| r.upstreams.clone())
            .unwrap_or_default()
        {
            let listener = bind(at, &format!("upstream {dest} on")).await?;
            let endpoints = Arc::new(crate::mesh::Endpoints::default());
            // Until an agent answers: the instances saved by the last run.
            if let Some(saved) = saved.endpoints.get(&dest) {
                endpoints.set(saved.iter().filter_map(|a| a.parse().ok()).collect());
            }
            tokio::spawn(sidecar::watch_endpoints_saved(
                agent()?,
                dest.clone(),
                endpoints.clone(),
                state.clone(),
            ));
            match identity_headers.get(&at.to_string()) {
                // Outbound identity: requests read as HTTP and given a JWT-SVID.
                Some(h) => {
                    let header =
                        hyper::header::HeaderName::from_bytes(h.as_bytes()).map_err(|e| {
                            format!("upstream {dest}: Config.jwt_svid_header {h:?}: {e}")
                        })?;
                    lines.push((
                        format!("Upstream {dest}"),
                        format!("{at} (JWT-SVID in {h})"),
                    ));
                    let source = crate::outbound::SvidSource::new(agent()?, &service, &dest);
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
                    lines.push((format!("Upstream {dest}"), at.to_string()));
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
    if let Some(edge) = settings.edge_listener {
        let listener = bind(edge, "edge listener").await?;
        let at = listener.local_addr().unwrap_or(edge).to_string();
        match edge_tls {
            Some(tls) => {
                lines.push(("Edge listener".into(), format!("{at} (TLS)")));
                tokio::spawn(crate::http::serve_edge_tls(proxy.clone(), listener, tls));
            }
            None => {
                lines.push(("Edge listener".into(), at));
                tokio::spawn(crate::http::serve_edge(proxy.clone(), listener));
            }
        }
    }
    let admin = bind(settings.admin_bind, "admin listener").await?;
    if !settings.admin_bind.ip().is_loopback() {
        tracing::warn!(admin = %settings.admin_bind, "the admin listener is not on loopback: anyone who reaches it reads the policy (/config_dump) and runs replays; bind it to 127.0.0.1 unless a firewall guards it");
    }
    lines.push((
        "Admin listener".into(),
        admin
            .local_addr()
            .unwrap_or(settings.admin_bind)
            .to_string(),
    ));
    lines.push(("Local service".into(), upstream.to_string()));
    let source = match (file_doc, &settings.snapshot_file) {
        (Some(doc), Some(path)) => {
            proxy
                .install(doc, 0)
                .await
                .map_err(|e| format!("Invalid snapshot: {e}"))?;
            format!("file {}", path.display())
        }
        _ => {
            if let Some(st) = &state {
                proxy.save_state_to(st.clone());
            }
            let client = agent()?;
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
                None => format!(
                    "{service}@{}",
                    admin
                        .local_addr()
                        .map_or_else(|_| settings.admin_bind.to_string(), |a| a.to_string())
                ),
            };
            tokio::spawn(crate::report::report_to_agent(
                proxy.clone(),
                agent()?,
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
        lines,
    })
}
