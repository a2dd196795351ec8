//! `tribune connect proxy`: the sidecar proxy.

use super::http::HttpArgs;
use super::Io;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tribune_proxy::{sidecar, Proxy, ProxyConfig, SnapshotDoc};

#[derive(Debug, Subcommand)]
pub enum ConnectCommand {
    /// Run a sidecar proxy in front of a local service.
    Proxy(Box<ProxyArgs>),
    /// The built-in CA.
    #[command(subcommand)]
    Ca(CaCommand),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Rotate the CA root: a new root signs new leaves; the old one stays trusted
    /// until the leaves it signed expire.
    Rotate(CaArgs),
}

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Run as the sidecar registered for this service ID: service, mesh listener,
    /// local service and upstreams come from the registration; identity from the CA.
    #[arg(long = "sidecar-for")]
    pub sidecar_for: Option<String>,
    /// Overrides the mesh listener address of the registration.
    #[arg(long = "mesh-listener")]
    pub mesh_listener: Option<SocketAddr>,
    /// The service this proxy guards (the destination of its intentions).
    #[arg(long)]
    pub service: Option<String>,
    /// Address of the local service requests are forwarded to.
    #[arg(long = "local-service-address")]
    pub local_service_address: Option<SocketAddr>,
    /// Listener for callers outside the mesh (plain HTTP; they match only `*` sources).
    #[arg(long = "edge-listener")]
    pub edge_listener: Option<SocketAddr>,
    /// Serve the edge listener over TLS with this certificate (PEM chain).
    #[arg(long = "edge-tls-cert", requires = "edge_tls_key")]
    pub edge_tls_cert: Option<std::path::PathBuf>,
    /// The edge TLS private key (PEM).
    #[arg(long = "edge-tls-key", requires = "edge_tls_cert")]
    pub edge_tls_key: Option<std::path::PathBuf>,
    /// Admin listener: /ready, /stats/prometheus, /config_dump.
    #[arg(long = "admin-bind", default_value = "127.0.0.1:19000")]
    pub admin_bind: SocketAddr,
    /// Read the policy snapshot from this file instead of the agent (no live updates).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Worker threads (default: the number of cores); 1 runs everything on one thread.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Merge repeated slashes in paths before matching.
    #[arg(long = "merge-slashes")]
    pub merge_slashes: bool,
    /// Seconds to wait for the local service's response headers.
    #[arg(long = "upstream-timeout", default_value_t = 15)]
    pub upstream_timeout: u64,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: ConnectCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        ConnectCommand::Proxy(args) => proxy(*args, io),
        ConnectCommand::Ca(CaCommand::Rotate(a)) => {
            match super::http::call_ok(
                &a.http,
                "PUT",
                "/v1/connect/ca/rotate",
                None,
                "Error rotating the CA root",
                1,
                io,
            ) {
                Ok(r) => {
                    let id = serde_json::from_str::<serde_json::Value>(&r.body)
                        .ok()
                        .and_then(|v| v["ActiveRootID"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let _ = writeln!(io.out, "CA root rotated; active root: {id}");
                    0
                }
                Err(code) => code,
            }
        }
    }
}

fn fail(io: &mut Io<'_>, msg: impl std::fmt::Display) -> u8 {
    let _ = writeln!(io.err, "==> {msg}");
    1
}

fn proxy(args: ProxyArgs, io: &mut Io<'_>) -> u8 {
    let file_doc = match &args.config {
        None => None,
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| format!("Error reading {}: {e}", path.display()))
                .and_then(|t| {
                    tribune_model::decode::parse_json(t.as_bytes())
                        .map_err(|e| format!("Error parsing {}: {e}", path.display()))
                })
                .and_then(|v| {
                    SnapshotDoc::from_json(&v)
                        .map_err(|e| format!("Invalid snapshot {}: {e}", path.display()))
                });
            match parsed {
                Ok(d) => Some(d),
                Err(e) => return fail(io, e),
            }
        }
    };
    if args.sidecar_for.is_some() && file_doc.is_some() {
        return fail(io, "-sidecar-for and -config cannot be combined");
    }
    let target = match args.http.target() {
        Ok(t) => t,
        Err(e) => return fail(io, e),
    };
    // One worker: a single-threaded runtime (no work-stealing queues or cross-thread
    // wake-ups; like one nginx worker). More: the multi-threaded runtime.
    let mut builder = match args.workers {
        Some(0) => return fail(io, "-workers must be at least 1"),
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => return fail(io, format!("Error starting runtime: {e}")),
    };
    runtime.block_on(async move {
        let agent = || tribune_client::Client::new(&target).map_err(|e| e.to_string());
        let reg = match &args.sidecar_for {
            None => None,
            Some(id) => match agent() {
                Ok(c) => match sidecar::registration(&c, id).await {
                    Ok(r) => Some(r),
                    Err(e) => return fail(io, e),
                },
                Err(e) => return fail(io, e),
            },
        };
        let service = match (&args.service, &file_doc, &reg) {
            (Some(s), Some(d), _) if *s != d.service => {
                return fail(
                    io,
                    format!(
                        "-service {s} does not match the snapshot's Service {}",
                        d.service
                    ),
                )
            }
            (Some(s), _, _) => s.clone(),
            (None, Some(d), _) => d.service.clone(),
            (None, None, Some(r)) => r.service.clone(),
            (None, None, None) => {
                return fail(
                    io,
                    "Must specify -sidecar-for, -service, or -config with a snapshot",
                )
            }
        };
        let Some(upstream) = args
            .local_service_address
            .or(reg.as_ref().map(|r| r.local_service))
        else {
            return fail(
                io,
                "Must specify -local-service-address (the local service's host:port)",
            );
        };
        let mesh_addr = args.mesh_listener.or(reg.as_ref().map(|r| r.mesh_addr));
        if mesh_addr.is_some() && file_doc.is_some() {
            return fail(
                io,
                "the mesh listener needs the agent's CA; it cannot run with -config",
            );
        }
        if mesh_addr.is_none() && args.edge_listener.is_none() {
            return fail(
                io,
                "Must specify -sidecar-for, -mesh-listener or -edge-listener",
            );
        }
        let mut config = ProxyConfig::new(upstream);
        config.merge_slashes = args.merge_slashes;
        config.upstream_timeout = Duration::from_secs(args.upstream_timeout.max(1));
        let proxy: Arc<Proxy> = Proxy::new(config);
        let mut lines: Vec<(String, String)> = Vec::new();
        if let Some(addr) = mesh_addr {
            let client = match agent() {
                Ok(c) => c,
                Err(e) => return fail(io, e),
            };
            let watch = match sidecar::IdentityWatch::start(client, &service).await {
                Ok(w) => w,
                Err(e) => return fail(io, format!("Error getting the mesh identity: {e}")),
            };
            let tls = watch.tls.clone();
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => return fail(io, format!("Error binding mesh listener {addr}: {e}")),
            };
            lines.push((
                "Mesh listener".into(),
                format!(
                    "{} (mTLS, identity {})",
                    listener.local_addr().unwrap_or(addr),
                    tls.identity().service
                ),
            ));
            tokio::spawn(watch.run());
            tokio::spawn(tribune_proxy::mesh::serve_mesh(
                proxy.clone(),
                tls.clone(),
                listener,
            ));
            for (dest, bind) in reg
                .as_ref()
                .map(|r| r.upstreams.clone())
                .unwrap_or_default()
            {
                let listener = match tokio::net::TcpListener::bind(bind).await {
                    Ok(l) => l,
                    Err(e) => {
                        return fail(io, format!("Error binding upstream {dest} on {bind}: {e}"))
                    }
                };
                let endpoints = Arc::new(tribune_proxy::mesh::Endpoints::default());
                match agent() {
                    Ok(c) => {
                        tokio::spawn(sidecar::watch_endpoints(c, dest.clone(), endpoints.clone()));
                    }
                    Err(e) => return fail(io, e),
                }
                lines.push((format!("Upstream {dest}"), bind.to_string()));
                tokio::spawn(tribune_proxy::mesh::serve_upstream(
                    proxy.clone(),
                    tls.clone(),
                    dest,
                    endpoints,
                    listener,
                ));
            }
        }
        if let Some(edge) = args.edge_listener {
            let listener = match tokio::net::TcpListener::bind(edge).await {
                Ok(l) => l,
                Err(e) => return fail(io, format!("Error binding edge listener {edge}: {e}")),
            };
            lines.push((
                "Edge listener".into(),
                listener.local_addr().unwrap_or(edge).to_string(),
            ));
            tokio::spawn(tribune_proxy::http::serve_edge(proxy.clone(), listener));
        }
        let admin_listener = match tokio::net::TcpListener::bind(args.admin_bind).await {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    io,
                    format!("Error binding admin listener {}: {e}", args.admin_bind),
                )
            }
        };
        lines.push((
            "Admin listener".into(),
            admin_listener
                .local_addr()
                .unwrap_or(args.admin_bind)
                .to_string(),
        ));
        lines.push(("Local service".into(), upstream.to_string()));
        let source = match file_doc {
            Some(doc) => {
                if let Err(e) = proxy.install(doc, 0).await {
                    return fail(io, format!("Invalid snapshot: {e}"));
                }
                format!(
                    "file {}",
                    args.config
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )
            }
            None => {
                let client = match agent() {
                    Ok(c) => c,
                    Err(e) => return fail(io, e),
                };
                tokio::spawn(tribune_proxy::watch::watch_agent(
                    proxy.clone(),
                    client,
                    service.clone(),
                ));
                format!("agent {} (live)", target.addr)
            }
        };
        lines.push(("Policy".into(), source));
        let _ = writeln!(io.out, "==> Tribune proxy for service {service}");
        for (k, v) in lines {
            let _ = writeln!(io.out, "{k:>22}: {v}");
        }
        let _ = writeln!(io.out, "==> Tribune proxy running!");
        let _ = io.out.flush();
        tokio::spawn(tribune_proxy::admin::serve_admin(
            proxy.clone(),
            admin_listener,
        ));
        tokio::spawn(tribune_proxy::keep_timer_armed());
        super::agent::shutdown_signal().await;
        let _ = writeln!(io.out, "==> Tribune proxy stopped");
        0
    })
}
