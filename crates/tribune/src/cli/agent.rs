//! `tribune agent`: the control plane (HTTP API over the embedded store).

use super::Io;
use clap::Args;
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
    /// HTTP API port (0 picks a free port; -1 turns plain HTTP off, like
    /// `ports { http = -1 }`).
    #[arg(long = "http-port", allow_negative_numbers = true)]
    pub http_port: Option<i32>,
    /// HTTPS API port (off unless set; 0 picks a free port). Needs
    /// `tls { defaults { cert_file key_file } }` in a config file.
    #[arg(long = "https-port")]
    pub https_port: Option<u16>,
    /// Agent configuration file (HCL or JSON); may be repeated.
    #[arg(long = "config-file")]
    pub config_file: Vec<std::path::PathBuf>,
    /// Overrides `default_intention_policy` (allow or deny).
    #[arg(long = "default-intention-policy")]
    pub default_intention_policy: Option<String>,
    /// Keep all state in this etcd cluster (comma-separated client URLs) instead of
    /// the embedded store; several agents on one etcd are one control plane.
    #[arg(long = "etcd-endpoints", value_name = "URL[,URL...]")]
    pub etcd_endpoints: Option<String>,
    /// Serve the web UI at /ui/ (default true; `-ui=false` turns it off, like
    /// `ui_config { enabled = false }`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ui: Option<bool>,
    /// Key prefix of everything this control plane writes to etcd (default /tribune/).
    #[arg(long = "etcd-prefix")]
    pub etcd_prefix: Option<String>,
    /// CA bundle of the etcd members' TLS certificates.
    #[arg(long = "etcd-cacert")]
    pub etcd_cacert: Option<String>,
    /// Client certificate for etcd (with -etcd-key).
    #[arg(long = "etcd-cert")]
    pub etcd_cert: Option<String>,
    /// Client key for etcd (with -etcd-cert).
    #[arg(long = "etcd-key")]
    pub etcd_key: Option<String>,
    /// A `Host` name served besides loopback ones while the API listens on loopback
    /// (DNS-rebinding defence; like `http_config { allowed_hosts }`); may be repeated.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_host: Vec<String>,
    /// The datacenter's name (like `datacenter = "..."`; default dc1).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// A directory of configuration files: every `*.hcl` and `*.json` in it, in
    /// lexical order, after the `-config-file`s (Consul's order).
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dir: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub log: super::logging::LogArgs,
}

/// Consul agent flags Tribune has no use for, and what to do instead: typed out of
/// habit, they get this answer rather than a parse error.
pub(super) const CONSUL_ONLY_FLAGS: &[(&str, &str)] = &[
    ("server", "Tribune has no server/client agents: every agent serves the whole API. For several agents, share one etcd store (-etcd-endpoints)"),
    ("bootstrap-expect", "Tribune agents elect no leader among themselves: for several agents, share one etcd store (-etcd-endpoints); etcd keeps the quorum"),
    ("bootstrap", "Tribune agents elect no leader among themselves: for several agents, share one etcd store (-etcd-endpoints)"),
    ("retry-join", "Tribune agents do not gossip or join each other: agents that share one etcd store (-etcd-endpoints) are one control plane"),
    ("join", "Tribune agents do not gossip or join each other: agents that share one etcd store (-etcd-endpoints) are one control plane"),
    ("bind", "Tribune agents have no cluster (gossip/RPC) address; the HTTP API listens on -client and -http-port"),
    ("advertise", "Tribune agents have no cluster (gossip/RPC) address; the HTTP API listens on -client and -http-port"),
    ("encrypt", "Tribune agents do not gossip; protect the HTTP API with ACLs (and the etcd connection with -etcd-cacert/-etcd-cert/-etcd-key)"),
    ("node", "a Tribune agent (or several sharing etcd) is one catalog node, named tribune"),
];

/// The answer for a Consul-only agent flag among `args`, if one is there.
pub(super) fn consul_only_flag(args: &[std::ffi::OsString]) -> Option<String> {
    args.iter().find_map(|a| {
        let a = a.to_str()?;
        let name = a.strip_prefix("--").or_else(|| a.strip_prefix('-'))?;
        let name = name.split('=').next().unwrap_or(name);
        CONSUL_ONLY_FLAGS
            .iter()
            .find(|(flag, _)| *flag == name)
            .map(|(flag, why)| format!("-{flag}: {why}."))
    })
}

/// The configuration files of `-config-dir DIR`: its `*.hcl` and `*.json` files in
/// lexical order.
fn config_dir_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("-config-dir: cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| {
                    x.eq_ignore_ascii_case("hcl") || x.eq_ignore_ascii_case("json")
                })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Where the agent's state lives.
enum Backend {
    Dir(std::path::PathBuf),
    Memory,
    Etcd(EtcdConfig),
}

#[cfg(feature = "etcd")]
use tribune_store_etcd::{EtcdConfig, DEFAULT_PREFIX};

/// What `-etcd-*` asked for, in a build without the etcd store.
#[cfg(not(feature = "etcd"))]
#[derive(Default)]
struct EtcdConfig {
    endpoints: Vec<String>,
    prefix: String,
    ca_file: Option<std::path::PathBuf>,
    cert_file: Option<std::path::PathBuf>,
    key_file: Option<std::path::PathBuf>,
}

#[cfg(not(feature = "etcd"))]
const DEFAULT_PREFIX: &str = "/tribune/";

#[cfg(feature = "etcd")]
async fn open_etcd(c: &EtcdConfig) -> Result<Arc<dyn Store>, String> {
    tribune_store_etcd::EtcdStore::connect(c)
        .await
        .map(|s| s as Arc<dyn Store>)
        .map_err(|e| format!("Error connecting to etcd: {}", e.message()))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(c: &EtcdConfig) -> Result<Arc<dyn Store>, String> {
    let _ = (&c.ca_file, &c.cert_file, &c.key_file);
    Err("This tribune was built without the etcd store: build it with `cargo build --release -p tribune --features etcd` (needs protoc: apt-get install protobuf-compiler)".into())
}

impl Backend {
    fn describe(&self) -> String {
        match self {
            Backend::Dir(d) => d.display().to_string(),
            Backend::Memory => "(in memory: -dev, lost on exit)".into(),
            Backend::Etcd(c) => format!("etcd {} (prefix {})", c.endpoints.join(","), c.prefix),
        }
    }

    /// Opens the store; warnings (permissions wider than they should be) are pushed
    /// to `warnings`.
    async fn open(&self, warnings: &mut Vec<String>) -> Result<Arc<dyn Store>, String> {
        match self {
            Backend::Dir(dir) => {
                warnings.extend(private_dir(dir)?);
                RedbStore::open(&dir.join("state.redb"))
                    .map(|s| Arc::new(s) as Arc<dyn Store>)
                    .map_err(|e| format!("Error opening state in {}: {e}", dir.display()))
            }
            Backend::Memory => RedbStore::in_memory()
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| format!("Error creating in-memory state: {e}")),
            Backend::Etcd(c) => {
                if let Some(key) = &c.key_file {
                    warnings.extend(private_key_file("-etcd-key", key)?);
                }
                open_etcd(c).await
            }
        }
    }
}

/// Creates the data dir readable by its owner alone (0700). An existing one that
/// others may enter is used, with a warning: the state file in it is 0600 (refused
/// otherwise), and service managers create state dirs 0755 by default.
fn private_dir(dir: &std::path::Path) -> Result<Vec<String>, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let existed = dir.exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("Error creating data dir {}: {e}", dir.display()))?;
        let meta = std::fs::metadata(dir)
            .map_err(|e| format!("Error reading data dir {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("Data dir {} is not a directory", dir.display()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if existed && mode & 0o077 != 0 {
            return Ok(vec![format!(
                "data dir {} is open to other users (mode {mode:04o}); it holds the CA key and ACL secrets: `chmod 700 {}`",
                dir.display(),
                dir.display()
            )]);
        }
        Ok(Vec::new())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("Error creating data dir {}: {e}", dir.display()))?;
        Ok(Vec::new())
    }
}

/// A TLS private key file (`what`: the flag or key that named it): refused when
/// anyone may read it, a warning when its group may (a key shared with a service
/// group, 0640, is a common layout).
fn private_key_file(what: &str, path: &std::path::Path) -> Result<Vec<String>, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("Error reading {what} {}: {e}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o007 != 0 {
            return Err(format!(
                "{what} {} is readable by every user (mode {mode:04o}): `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
        if mode & 0o070 != 0 {
            return Ok(vec![format!(
                "{what} {} is open to its group (mode {mode:04o})",
                path.display()
            )]);
        }
    }
    #[cfg(not(unix))]
    let _ = (what, path);
    Ok(Vec::new())
}

/// Flags over the config file's `etcd` block; `None` when neither names endpoints.
// With the etcd feature the config has more fields (timeouts) than flags set here.
#[allow(clippy::needless_update)]
fn etcd_backend(
    args: &AgentArgs,
    file: &tribune_server::agent_config::EtcdSettings,
) -> Option<EtcdConfig> {
    let endpoints: Vec<String> = match &args.etcd_endpoints {
        Some(list) => list
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        None => file.endpoints.clone(),
    };
    if endpoints.is_empty() {
        return None;
    }
    let pick = |flag: &Option<String>, file: &Option<String>| {
        flag.clone().or_else(|| file.clone()).map(Into::into)
    };
    Some(EtcdConfig {
        endpoints,
        prefix: args
            .etcd_prefix
            .clone()
            .or_else(|| file.prefix.clone())
            .unwrap_or_else(|| DEFAULT_PREFIX.into()),
        ca_file: pick(&args.etcd_cacert, &file.ca_file),
        cert_file: pick(&args.etcd_cert, &file.cert_file),
        key_file: pick(&args.etcd_key, &file.key_file),
        ..Default::default()
    })
}

pub fn run(args: AgentArgs, io: &mut Io<'_>) -> u8 {
    let mut config = AgentConfig::default();
    let mut files = args.config_file.clone();
    for dir in &args.config_dir {
        match config_dir_files(dir) {
            Ok(found) => files.extend(found),
            Err(e) => {
                let _ = writeln!(io.err, "==> {e}");
                return 1;
            }
        }
    }
    for f in &files {
        let text = match super::read_file(f) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(io.err, "==> {e}");
                return 1;
            }
        };
        if let Err(e) = config.merge_file(&text) {
            let _ = writeln!(io.err, "==> Error parsing {}: {e}", f.display());
            return 1;
        }
    }
    // The log: the flags, else the config files' `log_level`, `log_json`, `log_file`.
    let log = super::logging::LogArgs {
        log_level: args.log.log_level.clone().or(config.log.level.clone()),
        log_json: args.log.log_json || config.log.json,
        log_file: args
            .log
            .log_file
            .clone()
            .or(config.log.file.clone().map(Into::into)),
    };
    if let Err(e) = super::logging::init(&log) {
        let _ = writeln!(io.err, "==> {e}");
        return 1;
    }
    if let Some(c) = args.client.clone() {
        config.client_addr = c;
    }
    if let Some(dc) = args.datacenter.clone() {
        config.datacenter = dc;
    }
    match args.http_port {
        Some(-1) => config.http_port = None,
        Some(p) => match u16::try_from(p) {
            Ok(p) => config.http_port = Some(p),
            Err(_) => {
                let _ = writeln!(
                    io.err,
                    "==> -http-port: invalid port {p} (0-65535, or -1 for off)"
                );
                return 1;
            }
        },
        None => {}
    }
    if let Some(p) = args.https_port {
        config.https_port = Some(p);
    }
    if config.http_port.is_none() && config.https_port.is_none() {
        let _ = writeln!(
            io.err,
            "==> The HTTP port is off (-1) and no HTTPS port is set: the agent would serve nothing"
        );
        return 1;
    }
    // The HTTPS listener's TLS: checked before anything is opened.
    let mut tls_warnings = Vec::new();
    let tls = match config.https_port {
        None => None,
        Some(_) => {
            let block = config.tls.for_https();
            if let Some(key) = &block.key_file {
                match private_key_file("tls key_file", std::path::Path::new(key)) {
                    Ok(w) => tls_warnings.extend(w),
                    Err(e) => {
                        let _ = writeln!(io.err, "==> {e}");
                        return 1;
                    }
                }
            }
            match tribune_server::tls::server_config(&block) {
                Ok(c) => Some((
                    tokio_rustls::TlsAcceptor::from(c),
                    block.verify_incoming == Some(true),
                )),
                Err(e) => {
                    let _ = writeln!(io.err, "==> {e}");
                    return 1;
                }
            }
        }
    };
    if let Some(ui) = args.ui {
        config.ui = ui;
    }
    config
        .allowed_hosts
        .extend(args.allowed_host.iter().cloned());
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
    let backend = match (etcd_backend(&args, &config.etcd), &args.data_dir, args.dev) {
        (Some(etcd), None, _) => Backend::Etcd(etcd),
        (Some(_), Some(_), _) => {
            let _ = writeln!(
                io.err,
                "==> -etcd-endpoints and -data-dir can't be used together: state lives in one place"
            );
            return 1;
        }
        (None, Some(dir), _) => Backend::Dir(dir.clone()),
        (None, None, true) => Backend::Memory,
        (None, None, false) => {
            let _ = writeln!(
                io.err,
                "==> Must specify -data-dir, -dev or -etcd-endpoints"
            );
            return 1;
        }
    };
    let data = backend.describe();
    let runtime = match server_runtime(io) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let mut warnings = tls_warnings;
        let store = match backend.open(&mut warnings).await {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(io.err, "==> {e}");
                return 1;
            }
        };
        for w in &warnings {
            let _ = writeln!(io.err, "==> Warning: {w}");
        }
        let state = match AppState::new(store, config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(io.err, "==> Error applying ACL settings: {e}");
                return 1;
            }
        };
        let http = match config.http_port {
            Some(port) => match bind(&config.client_addr, port, "HTTP", "-http-port").await {
                Ok(l) => Some(l),
                Err(e) => {
                    let _ = writeln!(io.err, "==> {e}");
                    return 1;
                }
            },
            None => None,
        };
        let https = match (config.https_port, &tls) {
            (Some(port), Some(_)) => {
                match bind(&config.client_addr, port, "HTTPS", "-https-port").await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        let _ = writeln!(io.err, "==> {e}");
                        return 1;
                    }
                }
            }
            _ => None,
        };
        let bound_http = http.as_ref().and_then(|l| l.local_addr().ok());
        let bound_https = https.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(a) = bound_http.or(bound_https) {
            state.set_advertise(a);
        }
        let _ = writeln!(io.out, "==> Starting Tribune agent...");
        let _ = writeln!(
            io.out,
            "               Version: {}",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(io.out, "            Datacenter: {}", config.datacenter);
        let _ = writeln!(
            io.out,
            "             HTTP addr: {}",
            bound_http.map_or_else(|| "off".to_string(), |a| a.to_string())
        );
        if let (Some(a), Some((_, verify))) = (bound_https, &tls) {
            let _ = writeln!(
                io.out,
                "            HTTPS addr: {a}{}",
                if *verify { " (client certificates required)" } else { "" }
            );
        }
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
        let _ = writeln!(
            io.out,
            "                    UI: {}",
            if config.ui {
                match (bound_http, bound_https) {
                    (Some(a), _) => format!("http://{a}/ui/"),
                    (None, Some(a)) => format!("https://{a}/ui/"),
                    (None, None) => "disabled".into(),
                }
            } else {
                "disabled".into()
            }
        );
        let _ = writeln!(io.out, "==> Tribune agent running!");
        let _ = io.out.flush();
        let app = router(state.clone());
        // On SIGINT/SIGTERM: blocking queries answer at once, connections finish
        // their responses, and whatever is still open after SHUTDOWN_GRACE is dropped.
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown_signal().await;
            state.shut_down();
            let _ = stopping.send(true);
        };
        let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let limited = |l| {
            tribune_server::listener::LimitedListener::new(l, config.http_max_conns_per_client)
        };
        // Each connection gets a clone of the router (an Arc), not a router rebuilt
        // per connection (about 18 KB of every held sidecar watch, issue #40).
        let serve_http = async {
            if let Some(l) = http {
                tribune_server::listener::serve(limited(l), app.clone(), None, stop(stopped.clone()))
                    .await;
            }
        };
        let serve_https = async {
            if let (Some(l), Some((acceptor, _))) = (https, tls) {
                tribune_server::listener::serve(
                    limited(l),
                    app.clone(),
                    Some(acceptor),
                    stop(stopped.clone()),
                )
                .await;
            }
        };
        let serve = async { tokio::join!(serve_http, serve_https) };
        let grace = async {
            stop(stopped.clone()).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::spawn(signal);
        tokio::select! {
            _ = serve => {}
            _ = grace => {
                tracing::warn!("connections still open after the shutdown grace period; closing them");
            }
        };
        let _ = writeln!(io.out, "==> Tribune agent stopped");
        0
    })
}

/// Binds one of the API's listeners; a failure names the address and the flag that
/// moves it.
async fn bind(
    host: &str,
    port: u16,
    what: &str,
    flag: &str,
) -> Result<tokio::net::TcpListener, String> {
    let addr = format!("{host}:{port}");
    tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(" (another agent on this host? pass {flag} for another port)")
        } else {
            String::new()
        };
        format!("Error binding {what} API to {addr}: {e}{hint}")
    })
}

/// The multi-threaded runtime of a long-running command (agent, demo); a failure is
/// printed and becomes exit code 1.
pub(super) fn server_runtime(io: &mut Io<'_>) -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            let _ = writeln!(io.err, "==> Error starting runtime: {e}");
            1
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
    tracing::info!(target: "tribune", "shutting down");
}
