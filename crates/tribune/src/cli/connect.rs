//! `tribune connect proxy`: the sidecar proxy.

use super::http::HttpArgs;
use super::Io;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tribune_proxy::{Proxy, ProxyConfig, SnapshotDoc};

#[derive(Debug, Subcommand)]
pub enum ConnectCommand {
    /// Run a sidecar proxy in front of a local service.
    Proxy(ProxyArgs),
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The service this proxy guards (the destination of its intentions).
    #[arg(long)]
    pub service: Option<String>,
    /// Address of the local service requests are forwarded to.
    #[arg(long = "local-service-address")]
    pub local_service_address: Option<SocketAddr>,
    /// Listener for callers outside the mesh (plain HTTP; they match only `*` sources).
    #[arg(long = "edge-listener")]
    pub edge_listener: Option<SocketAddr>,
    /// Admin listener: /ready, /stats/prometheus, /config_dump.
    #[arg(long = "admin-bind", default_value = "127.0.0.1:19000")]
    pub admin_bind: SocketAddr,
    /// Read the policy snapshot from this file instead of the agent (no live updates).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Worker threads (default: the number of cores).
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
        ConnectCommand::Proxy(args) => proxy(args, io),
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
                    serde_json::from_str::<serde_json::Value>(&t)
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
    let service = match (&args.service, &file_doc) {
        (Some(s), Some(d)) if *s != d.service => {
            return fail(
                io,
                format!(
                    "-service {s} does not match the snapshot's Service {}",
                    d.service
                ),
            )
        }
        (Some(s), _) => s.clone(),
        (None, Some(d)) => d.service.clone(),
        (None, None) => return fail(io, "Must specify -service (or -config with a snapshot)"),
    };
    let Some(upstream) = args.local_service_address else {
        return fail(
            io,
            "Must specify -local-service-address (the local service's host:port)",
        );
    };
    let Some(edge) = args.edge_listener else {
        return fail(
            io,
            "Must specify -edge-listener (the mesh listener needs the mesh identity set-up)",
        );
    };
    let target = match args.http.target() {
        Ok(t) => t,
        Err(e) => return fail(io, e),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.workers {
        if n == 0 {
            return fail(io, "-workers must be at least 1");
        }
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => return fail(io, format!("Error starting runtime: {e}")),
    };
    let mut config = ProxyConfig::new(upstream);
    config.merge_slashes = args.merge_slashes;
    config.upstream_timeout = Duration::from_secs(args.upstream_timeout.max(1));
    runtime.block_on(async move {
        let proxy: Arc<Proxy> = Proxy::new(config);
        let edge_listener = match tokio::net::TcpListener::bind(edge).await {
            Ok(l) => l,
            Err(e) => return fail(io, format!("Error binding edge listener {edge}: {e}")),
        };
        let admin_listener = match tokio::net::TcpListener::bind(args.admin_bind).await {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    io,
                    format!("Error binding admin listener {}: {e}", args.admin_bind),
                )
            }
        };
        let edge_addr = edge_listener.local_addr().unwrap_or(edge);
        let admin_addr = admin_listener.local_addr().unwrap_or(args.admin_bind);
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
                let client = match tribune_client::Client::new(&target) {
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
        let _ = writeln!(io.out, "==> Tribune proxy for service {service}");
        let _ = writeln!(io.out, "         Edge listener: {edge_addr}");
        let _ = writeln!(io.out, "       Admin listener: {admin_addr}");
        let _ = writeln!(io.out, "        Local service: {upstream}");
        let _ = writeln!(io.out, "                Policy: {source}");
        let _ = writeln!(io.out, "==> Tribune proxy running!");
        let _ = io.out.flush();
        tokio::spawn(tribune_proxy::admin::serve_admin(
            proxy.clone(),
            admin_listener,
        ));
        tokio::spawn(tribune_proxy::http::serve_edge(
            proxy.clone(),
            edge_listener,
        ));
        super::agent::shutdown_signal().await;
        let _ = writeln!(io.out, "==> Tribune proxy stopped");
        0
    })
}
