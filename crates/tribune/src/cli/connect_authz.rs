//! `tribune connect authz` (issue #44): the sidecar's decisions for nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth` and Envoy's HTTP
//! ext_authz, for one or more destination services ([`tribune_proxy::authz`]).

use super::http::HttpArgs;
use super::Io;
use clap::Args;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tribune_proxy::authz::{Authz, Cidr};

#[derive(Debug, Args)]
pub struct AuthzArgs {
    /// A destination service to decide for (repeatable).
    #[arg(long = "service", required = true)]
    pub services: Vec<String>,
    /// Where the proxies send their checks (HTTP/1.1: /nginx, /forward-auth,
    /// /envoy/<path>). Loopback by default: only a proxy on this host may ask.
    #[arg(long = "http-listener", default_value = "127.0.0.1:9191")]
    pub http_listener: SocketAddr,
    /// Also serve Envoy's external authorization gRPC API v3 here (h2c;
    /// `envoy.service.auth.v3.Authorization/Check`).
    #[arg(long = "grpc-listener")]
    pub grpc_listener: Option<SocketAddr>,
    /// Believe X-Forwarded-Client-Cert (the caller's mesh identity) only from hops in
    /// this network (repeatable; e.g. 127.0.0.1/32). Without it no check carries an
    /// identity: every caller is outside the mesh.
    #[arg(long = "trust-forwarded-from", value_name = "CIDR")]
    pub trust_forwarded_from: Vec<String>,
    /// Serve the check listeners in TLS with this certificate (PEM chain).
    #[arg(long = "tls-cert", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long = "tls-key", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require the proxy's client certificate, of this CA (PEM; a mesh root works).
    #[arg(long = "tls-client-ca", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Directory for each service's last policy from the agent, so a start while
    /// every agent is down decides with it (default: the sidecar's).
    #[arg(long = "state-dir")]
    pub state_dir: Option<std::path::PathBuf>,
    /// A saved policy older than this (Go duration) is not used at start.
    #[arg(long = "state-max-age", default_value = "24h")]
    pub state_max_age: String,
    /// Admin listeners, one per service (/ready, /stats/prometheus, /config_dump,
    /// /shadow, /replay), on this address (port 0: each its own free port).
    #[arg(long = "admin-bind", default_value = "127.0.0.1:0")]
    pub admin_bind: SocketAddr,
    /// The proxies normalize paths as the engine does (Envoy normalize_path +
    /// merge_slashes + path_with_escaped_slashes_action; nginx's $uri), so a path the
    /// engine would normalize is decided instead of refused.
    #[arg(long = "proxy-normalizes-paths")]
    pub proxy_normalizes_paths: bool,
    #[command(flatten)]
    pub log: super::logging::LogArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

fn fail(io: &mut Io<'_>, msg: impl std::fmt::Display) -> u8 {
    let _ = writeln!(io.err, "==> {msg}");
    1
}

pub fn run(args: AuthzArgs, io: &mut Io<'_>) -> u8 {
    if let Err(e) = super::logging::init(&args.log) {
        return fail(io, e);
    }
    let trusted = match args
        .trust_forwarded_from
        .iter()
        .map(|c| Cidr::parse(c).map_err(|e| format!("-trust-forwarded-from {e}")))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(t) => t,
        Err(e) => return fail(io, e),
    };
    let read = |p: &std::path::Path| super::read_file(p);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            let built = (|| -> Result<_, String> {
                let (cert, key) = (read(c)?, read(k)?);
                let ca = args.tls_client_ca.as_deref().map(read).transpose()?;
                Ok((
                    tribune_proxy::authz::tls_config(&cert, &key, ca.as_deref(), b"http/1.1")?,
                    tribune_proxy::authz::tls_config(&cert, &key, ca.as_deref(), b"h2")?,
                ))
            })();
            match built {
                Ok(t) => Some(t),
                Err(e) => return fail(io, e),
            }
        }
        _ => None,
    };
    let target = match args.http.target() {
        Ok(t) => t,
        Err(e) => return fail(io, e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(io, format!("Error starting runtime: {e}")),
    };
    runtime.block_on(async move {
        // One client for every watch and report: over HTTP/2 they are streams of one
        // connection to the agent.
        let shared = match tribune_client::Client::multiplexed(&target) {
            Ok(c) => c,
            Err(e) => return fail(io, e.to_string()),
        };
        let client = |_: &tribune_client::Target| -> Result<tribune_client::Client, String> {
            Ok(shared.clone())
        };
        let agent = match client(&target) {
            Ok(c) => c,
            Err(e) => return fail(io, e),
        };
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(tribune_proxy::state::default_dir);
        let max_age = match tribune_model::go::parse_duration(&args.state_max_age) {
            Ok(ns) if ns >= 0 => std::time::Duration::from_nanos(ns as u64),
            _ => {
                return fail(
                    io,
                    format!("-state-max-age {:?}: not a duration", args.state_max_age),
                )
            }
        };
        let mut saved_trust_domain = None;
        let mut from_saved = Vec::new();
        let mut state_files = Vec::new();
        let mut services = BTreeMap::new();
        let mut admins = Vec::new();
        for name in &args.services {
            if let Err(e) = tribune_model::names::check_service_name(name) {
                return fail(io, format!("-service {name:?}: {e}"));
            }
            // Each destination's engine: a sidecar's proxy without a local service.
            let proxy = tribune_proxy::Proxy::new(tribune_proxy::ProxyConfig::new(
                SocketAddr::from(([127, 0, 0, 1], 0)),
            ));
            let c = match client(&target) {
                Ok(c) => c,
                Err(e) => return fail(io, e),
            };
            // Like a sidecar: the agent's policy when one answers, else the one saved
            // by the last run (the watch replaces it as soon as an agent answers).
            let st = match tribune_proxy::state::StateFile::open(
                &state_dir,
                &format!("authz-{name}"),
                max_age,
            ) {
                Ok(st) => Arc::new(st),
                Err(e) => return fail(io, format!("-state-dir {}: {e}", state_dir.display())),
            };
            proxy.save_state_to(st.clone());
            state_files.push(st.clone());
            let saved = st.get();
            saved_trust_domain = saved_trust_domain.or(saved.trust_domain.clone());
            let mut body = String::new();
            let first = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tribune_proxy::watch::poll_once(&proxy, &c, name, 0, &mut body),
            )
            .await;
            let index = match first {
                Ok(Ok(i)) => i,
                Ok(Err(e)) if e.refused() => {
                    return fail(io, format!("The agent refused {name}'s policy: {e}"))
                }
                _ => {
                    if let (Some(doc), true) = (&saved.snapshot, saved.service == *name) {
                        if let Ok(d) = tribune_proxy::SnapshotDoc::from_json(doc) {
                            if proxy.install(d, saved.snapshot_index).await.is_ok() {
                                from_saved.push(name.clone());
                            }
                        }
                    }
                    0
                }
            };
            tokio::spawn(tribune_proxy::watch::watch_agent_from(
                proxy.clone(),
                c,
                name.clone(),
                index,
                body,
            ));
            // What a sidecar has beside its requests: an admin listener (metrics, the
            // replay window, shadow counters) and its reports to the agent (status,
            // staged-policy evidence).
            let admin = match tokio::net::TcpListener::bind(args.admin_bind).await {
                Ok(l) => l,
                Err(e) => return fail(io, format!("-admin-bind {}: {e}", args.admin_bind)),
            };
            let admin_at = admin.local_addr().unwrap_or(args.admin_bind);
            tokio::spawn(tribune_proxy::admin::serve_admin(proxy.clone(), admin));
            let c = match client(&target) {
                Ok(c) => c,
                Err(e) => return fail(io, e),
            };
            tokio::spawn(tribune_proxy::report::report_to_agent(
                proxy.clone(),
                c,
                name.clone(),
                format!("authz:{name}@{admin_at}"),
            ));
            admins.push((name.clone(), admin_at));
            services.insert(name.clone(), proxy);
        }
        let listener = match tokio::net::TcpListener::bind(args.http_listener).await {
            Ok(l) => l,
            Err(e) => return fail(io, format!("-http-listener {}: {e}", args.http_listener)),
        };
        let at = listener.local_addr().unwrap_or(args.http_listener);
        let authz = Arc::new(Authz::new(
            services,
            trusted,
            saved_trust_domain.unwrap_or_default(),
            args.proxy_normalizes_paths,
        ));
        // The mesh's trust domain (a caller's identity must be in it), from the agent
        // as soon as one answers; kept in the state files for a start without one.
        {
            let (authz, agent, files) = (authz.clone(), agent, state_files.clone());
            tokio::spawn(async move {
                loop {
                    let got = agent
                        .request("GET", tribune_model::api::paths::CA_ROOTS, None)
                        .await
                        .ok()
                        .filter(|r| r.status == 200)
                        .and_then(|r| {
                            serde_json::from_str::<tribune_model::api::CaRoots>(&r.body).ok()
                        });
                    if let Some(roots) = got {
                        authz.set_trust_domain(&roots.trust_domain);
                        for f in &files {
                            f.update(|s| s.trust_domain = Some(roots.trust_domain.clone()));
                        }
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            });
        }
        let grpc_at = match args.grpc_listener {
            None => None,
            Some(g) => match tokio::net::TcpListener::bind(g).await {
                Ok(l) => {
                    let at = l.local_addr().unwrap_or(g);
                    tokio::spawn(tribune_proxy::authz::envoy_grpc::serve(
                        authz.clone(),
                        l,
                        tls.as_ref().map(|t| t.1.clone()),
                    ));
                    Some(at)
                }
                Err(e) => return fail(io, format!("-grpc-listener {g}: {e}")),
            },
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(tribune_proxy::authz::serve(
            authz,
            listener,
            tls.as_ref().map(|t| t.0.clone()),
        ));
        let _ = writeln!(io.out, "==> Tribune authz for {}", args.services.join(", "));
        let _ = writeln!(
            io.out,
            "{:>22}: {at} ({scheme}: /nginx, /forward-auth, /envoy/<path>)",
            "HTTP listener"
        );
        let _ = writeln!(
            io.out,
            "{:>22}: {}{}",
            "State",
            state_dir.display(),
            if from_saved.is_empty() {
                String::new()
            } else {
                format!(
                    " (started from the saved policy of {}: no agent answered)",
                    from_saved.join(", ")
                )
            }
        );
        for (name, at) in &admins {
            let _ = writeln!(io.out, "{:>22}: {at}", format!("Admin ({name})"));
        }
        if let Some(g) = grpc_at {
            let _ = writeln!(
                io.out,
                "{:>22}: {g} (envoy.service.auth.v3.Authorization)",
                "gRPC listener"
            );
        }
        let _ = writeln!(io.out, "==> Tribune authz running!");
        let _ = io.out.flush();
        super::agent::shutdown_signal().await;
        let _ = writeln!(io.out, "==> Tribune authz stopped");
        0
    })
}
