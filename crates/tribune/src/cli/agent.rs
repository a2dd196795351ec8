//! `tribune agent`: the control plane (HTTP API over the embedded store).

use super::Io;
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use tribune_server::{router, AgentConfig, AppState};
use tribune_store::{RedbStore, Store};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Development mode: state in memory (lost on exit), listens on 127.0.0.1.
    #[arg(long)]
    pub dev: bool,
    /// Directory for durable state (required unless -dev).
    #[arg(long = "data-dir")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Address the HTTP API binds to.
    #[arg(long)]
    pub client: Option<String>,
    /// HTTP API port (0 picks a free port).
    #[arg(long = "http-port")]
    pub http_port: Option<u16>,
    /// Agent configuration file (HCL or JSON); may be repeated.
    #[arg(long = "config-file")]
    pub config_file: Vec<std::path::PathBuf>,
    /// Overrides `default_intention_policy` (allow or deny).
    #[arg(long = "default-intention-policy")]
    pub default_intention_policy: Option<String>,
}

pub fn run(args: AgentArgs, io: &mut Io<'_>) -> u8 {
    let mut config = AgentConfig::default();
    for f in &args.config_file {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(io.err, "==> Error reading config file {}: {e}", f.display());
                return 1;
            }
        };
        if let Err(e) = config.merge_file(&text) {
            let _ = writeln!(io.err, "==> Error parsing {}: {e}", f.display());
            return 1;
        }
    }
    if let Some(c) = args.client {
        config.client_addr = c;
    }
    if let Some(p) = args.http_port {
        config.http_port = p;
    }
    if let Some(p) = args.default_intention_policy.as_deref() {
        config.default_intention_policy = match p {
            "allow" => tribune_model::intentions::Action::Allow,
            "deny" => tribune_model::intentions::Action::Deny,
            other => {
                let _ = writeln!(
                    io.err,
                    "==> -default-intention-policy must be allow or deny, got {other:?}"
                );
                return 1;
            }
        };
    }
    let store: Arc<dyn Store> = match (&args.data_dir, args.dev) {
        (Some(dir), _) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                let _ = writeln!(io.err, "==> Error creating data dir {}: {e}", dir.display());
                return 1;
            }
            match RedbStore::open(&dir.join("state.redb")) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    let _ = writeln!(io.err, "==> Error opening state in {}: {e}", dir.display());
                    return 1;
                }
            }
        }
        (None, true) => match RedbStore::in_memory() {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let _ = writeln!(io.err, "==> Error creating in-memory state: {e}");
                return 1;
            }
        },
        (None, false) => {
            let _ = writeln!(io.err, "==> Must specify -data-dir or -dev");
            return 1;
        }
    };
    let data = match &args.data_dir {
        Some(d) => d.display().to_string(),
        None => "(in memory: -dev, lost on exit)".into(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(io.err, "==> Error starting runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let state = match AppState::new(store, config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(io.err, "==> Error applying ACL settings: {e}");
                return 1;
            }
        };
        let addr = format!("{}:{}", config.client_addr, config.http_port);
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                let _ = writeln!(io.err, "==> Error binding HTTP API to {addr}: {e}");
                return 1;
            }
        };
        let bound: SocketAddr = listener
            .local_addr()
            .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
        let _ = writeln!(io.out, "==> Starting Tribune agent...");
        let _ = writeln!(
            io.out,
            "               Version: {}",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(io.out, "            Datacenter: {}", config.datacenter);
        let _ = writeln!(io.out, "             HTTP addr: {bound}");
        let _ = writeln!(io.out, "              Data dir: {data}");
        let _ = writeln!(
            io.out,
            "  Default intent. pol.: {}{}",
            config.default_intention_policy.as_str(),
            if config.default_intention_policy == tribune_model::intentions::Action::Deny {
                " (Tribune's default: set default_intention_policy = \"allow\" to change it)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            io.out,
            "                  ACLs: {}",
            if config.acl.enabled {
                format!("enabled, default policy {}", config.acl.default_policy)
            } else {
                "disabled".into()
            }
        );
        let _ = writeln!(io.out, "==> Tribune agent running!");
        let _ = io.out.flush();
        let app = router(state.clone());
        // On SIGINT/SIGTERM: blocking queries answer at once, connections finish
        // their responses, and whatever is still open after SHUTDOWN_GRACE is dropped.
        let signalled = Arc::new(tokio::sync::Notify::new());
        let stop = {
            let signalled = signalled.clone();
            async move {
                shutdown_signal().await;
                state.shut_down();
                signalled.notify_one();
            }
        };
        let listener = tribune_server::listener::LimitedListener::new(
            listener,
            config.http_max_conns_per_client,
        );
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop);
        let grace = async {
            signalled.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let result = tokio::select! {
            r = serve => r,
            _ = grace => {
                tracing::warn!("connections still open after the shutdown grace period; closing them");
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                let _ = writeln!(io.out, "==> Tribune agent stopped");
                0
            }
            Err(e) => {
                let _ = writeln!(io.err, "==> HTTP server failed: {e}");
                1
            }
        }
    })
}

/// How long connections may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
