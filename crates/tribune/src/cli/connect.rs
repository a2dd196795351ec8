//! `tribune connect proxy`: the sidecar proxy.

use super::http::HttpArgs;
use super::Io;
use clap::{Args, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tribune_proxy::{EdgeTls, Settings};

#[derive(Debug, Subcommand)]
pub enum ConnectCommand {
    /// Run a sidecar proxy in front of a local service.
    Proxy(Box<ProxyArgs>),
    /// The built-in CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Decide for the proxies already in front of services: nginx auth_request,
    /// Traefik/Caddy forward auth, Envoy ext_authz (HTTP).
    Authz(Box<super::connect_authz::AuthzArgs>),
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
    #[command(flatten)]
    pub log: super::logging::LogArgs,
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
    #[arg(long = "admin-bind", default_value_t = tribune_proxy::run::defaults::ADMIN_BIND)]
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
    #[arg(long = "upstream-timeout", default_value_t = tribune_proxy::run::defaults::UPSTREAM_TIMEOUT_SECS)]
    pub upstream_timeout: u64,
    /// Close an upgraded (WebSocket) connection after this long with no byte either
    /// way (Go duration).
    #[arg(long = "upgrade-idle-timeout", default_value = tribune_proxy::run::defaults::UPGRADE_IDLE_TIMEOUT)]
    pub upgrade_idle_timeout: String,
    /// Close an upgraded (WebSocket) connection after this long in any case (Go
    /// duration; 0 keeps it open while it is used).
    #[arg(long = "upgrade-max-duration", default_value = tribune_proxy::run::defaults::UPGRADE_MAX_DURATION)]
    pub upgrade_max_duration: String,
    /// Directory for the last registration, identity and policy from the agent, so a
    /// restart while every agent is down enforces them (default: tribune-proxy-state-<uid>
    /// in the temp dir; the start banner names the file).
    #[arg(long = "state-dir")]
    pub state_dir: Option<std::path::PathBuf>,
    /// A saved state older than this (Go duration) is not enforced at start.
    #[arg(long = "state-max-age", default_value = tribune_proxy::run::defaults::STATE_MAX_AGE)]
    pub state_max_age: String,
    /// Recent requests kept in memory for `tribune intention replay` (their facts,
    /// never raw tokens; also bounded to 16 MiB); 0 keeps none.
    #[arg(long = "replay-buffer", default_value_t = tribune_proxy::run::defaults::REPLAY_BUFFER)]
    pub replay_buffer: usize,
    /// Serve the SPIFFE Workload API (X.509 and JWT SVIDs of this service) on this
    /// Unix socket; SPIFFE_ENDPOINT_SOCKET=unix://<path> for the standard clients.
    #[arg(long = "workload-api-socket", value_name = "PATH")]
    pub workload_api_socket: Option<std::path::PathBuf>,
    /// The socket's file mode, octal (default 0600: the sidecar's user only).
    #[arg(
        long = "workload-api-mode",
        default_value_t = format!("{:04o}", tribune_proxy::run::defaults::WORKLOAD_API_MODE),
        value_name = "MODE"
    )]
    pub workload_api_mode: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The binary `tribune connect proxy` hands over to when it sits beside `tribune`.
pub const SIDECAR_BINARY: &str = "tribune-sidecar";

/// `args`: the whole command line as parsed (the proxy hands them over).
pub fn run(cmd: ConnectCommand, args: &[OsString], io: &mut Io<'_>) -> u8 {
    match cmd {
        ConnectCommand::Proxy(proxy_args) => {
            hand_over(args);
            proxy(*proxy_args, io)
        }
        ConnectCommand::Authz(a) => super::connect_authz::run(*a, io),
        ConnectCommand::Ca(CaCommand::Rotate(a)) => {
            match super::http::call_ok(
                &a.http,
                "PUT",
                tribune_model::api::paths::CA_ROOTS_ROTATE,
                None,
                "Error rotating the CA root",
                1,
                io,
            ) {
                Ok(r) => match serde_json::from_str::<tribune_model::api::Rotated>(&r.body) {
                    Ok(rotated) => {
                        let _ = writeln!(
                            io.out,
                            "CA root rotated; active root: {}",
                            rotated.active_root_id
                        );
                        0
                    }
                    Err(e) => fail(
                        io,
                        format!("The CA root was rotated, but the agent's answer was not understood: {e}"),
                    ),
                },
                Err(code) => code,
            }
        }
    }
}

fn fail(io: &mut Io<'_>, msg: impl std::fmt::Display) -> u8 {
    let _ = writeln!(io.err, "==> {msg}");
    1
}

impl ProxyArgs {
    /// The flags as the proxy's settings: the only thing the CLI does for a sidecar.
    pub fn settings(&self) -> Result<Settings, String> {
        let mut s = Settings::new(self.http.target()?);
        s.sidecar_for = self.sidecar_for.clone();
        s.service = self.service.clone();
        s.local_service = self.local_service_address;
        s.mesh_listener = self.mesh_listener;
        s.edge_listener = self.edge_listener;
        s.edge_tls = match (&self.edge_tls_cert, &self.edge_tls_key) {
            (Some(cert), Some(key)) => Some(EdgeTls {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        s.admin_bind = self.admin_bind;
        s.snapshot_file = self.config.clone();
        s.merge_slashes = self.merge_slashes;
        s.upstream_timeout = Duration::from_secs(self.upstream_timeout.max(1));
        s.state_dir = self.state_dir.clone();
        s.replay_buffer = self.replay_buffer;
        s.workload_api_socket = self.workload_api_socket.clone();
        s.workload_api_mode =
            u32::from_str_radix(self.workload_api_mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    format!(
                        "-workload-api-mode {:?}: expected an octal file mode such as 0600 or 0660",
                        self.workload_api_mode
                    )
                })?;
        let age = tribune_model::go::parse_duration(&self.state_max_age)
            .map_err(|e| format!("-state-max-age {:?}: {e}", self.state_max_age))?;
        if age < 0 {
            return Err(format!(
                "-state-max-age {:?}: must not be negative",
                self.state_max_age
            ));
        }
        s.state_max_age = Duration::from_nanos(age as u64);
        let idle = duration_flag("-upgrade-idle-timeout", &self.upgrade_idle_timeout)?;
        if idle.is_zero() {
            return Err(format!(
                "-upgrade-idle-timeout {:?}: must be more than 0",
                self.upgrade_idle_timeout
            ));
        }
        let max = duration_flag("-upgrade-max-duration", &self.upgrade_max_duration)?;
        s.upgrade_limits = tribune_proxy::upgrade::Limits {
            idle,
            max: (!max.is_zero()).then_some(max),
        };
        Ok(s)
    }
}

/// A non-negative Go duration flag.
fn duration_flag(flag: &str, value: &str) -> Result<Duration, String> {
    let nanos =
        tribune_model::go::parse_duration(value).map_err(|e| format!("{flag} {value:?}: {e}"))?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{flag} {value:?}: must not be negative"))
}

/// The flags after `connect proxy` in a parsed command line (the CLI has no global
/// flags, so the subcommand path comes first).
fn proxy_flags(args: &[OsString]) -> Option<&[OsString]> {
    let at = args
        .windows(2)
        .position(|w| w[0] == "connect" && w[1] == "proxy")?;
    Some(&args[at + 2..])
}

/// The sidecar binary beside `exe`, when there is one.
fn sidecar_beside(exe: &Path) -> Option<PathBuf> {
    let binary = exe.with_file_name(SIDECAR_BINARY);
    binary.is_file().then_some(binary)
}

/// Becomes `tribune-sidecar` with the same flags (the same process, by `exec`) when
/// that binary sits beside this one: the sidecar then maps only the sidecar's code
/// (BENCHMARKS.md, issue #22: peak RSS at 1 000 req/s 15-16 -> 13 MB for a sidecar with
/// a full replay window, 12.5 -> 10 MB without one). Returns only when it did not:
/// no such binary (the proxy then runs in this process) or it could not be started.
#[cfg(unix)]
fn hand_over(args: &[OsString]) {
    use std::os::unix::process::CommandExt;
    let Some(flags) = proxy_flags(args) else {
        return;
    };
    let Some(binary) = std::env::current_exe()
        .ok()
        .and_then(|exe| sidecar_beside(&exe))
    else {
        return;
    };
    // Said on stderr: a `tribune-sidecar` from an older build would run its own code
    // (`cargo run -p tribune` rebuilds `tribune` only; `cargo build -p tribune` both).
    tracing::info!(binary = %binary.display(), "connect proxy runs as the sidecar binary beside tribune");
    let (flags, token) = without_token(flags);
    let mut cmd = std::process::Command::new(&binary);
    cmd.args(flags);
    if let Some(t) = token {
        // Not on the new command line, where `ps` shows it to every user: the
        // environment is readable by the process's owner alone.
        cmd.env("TRIBUNE_HTTP_TOKEN", t);
    }
    let err = cmd.exec();
    tracing::warn!(binary = %binary.display(), error = %err, "could not start the sidecar binary; the proxy runs in this process");
}

#[cfg(not(unix))]
fn hand_over(_: &[OsString]) {}

/// The flags without `-token T` / `-token=T` (either dash count), and the token.
fn without_token(flags: &[OsString]) -> (Vec<OsString>, Option<OsString>) {
    let mut rest = Vec::with_capacity(flags.len());
    let mut token = None;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let text = f.to_string_lossy();
        let name = text.trim_start_matches('-');
        if text.starts_with('-') && name == "token" {
            token = it.next().cloned();
        } else if let Some(v) = text
            .starts_with('-')
            .then(|| name.strip_prefix("token="))
            .flatten()
        {
            token = Some(OsString::from(v));
        } else {
            rest.push(f.clone());
        }
    }
    (rest, token)
}

/// Runs the sidecar in this process until a shutdown signal.
pub(super) fn proxy(args: ProxyArgs, io: &mut Io<'_>) -> u8 {
    if let Err(e) = super::logging::init(&args.log) {
        return fail(io, e);
    }
    let settings = match args.settings() {
        Ok(s) => s,
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
        let started = match tribune_proxy::start(settings).await {
            Ok(s) => s,
            Err(e) => return fail(io, e),
        };
        let _ = writeln!(io.out, "==> Tribune proxy for service {}", started.service);
        for (k, v) in &started.lines {
            let _ = writeln!(io.out, "{k:>22}: {v}");
        }
        let _ = writeln!(io.out, "==> Tribune proxy running!");
        let _ = io.out.flush();
        super::agent::shutdown_signal().await;
        let _ = writeln!(io.out, "==> Tribune proxy stopped");
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(subcommand)]
        cmd: ConnectCommand,
    }

    /// Every flag reaches the proxy's settings (the proxy's own tests show each
    /// setting changes behaviour).
    #[test]
    fn the_token_is_taken_off_the_sidecars_command_line() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        for (flags, rest, token) in [
            (
                &["-sidecar-for", "web", "-token", "s3cret"][..],
                &["-sidecar-for", "web"][..],
                Some("s3cret"),
            ),
            (
                &["--token=s3cret", "-admin-bind", "127.0.0.1:0"][..],
                &["-admin-bind", "127.0.0.1:0"][..],
                Some("s3cret"),
            ),
            (
                &["-token-file", "/run/t"][..],
                &["-token-file", "/run/t"][..],
                None,
            ),
        ] {
            let (r, t) = without_token(&os(flags));
            assert_eq!(r, os(rest));
            assert_eq!(t, token.map(OsString::from));
        }
    }

    /// The flags' defaults are the settings' (`tribune_proxy::run::defaults`): a
    /// sidecar started with no flag runs as `Settings::new` says.
    #[test]
    fn no_flag_means_the_settings_defaults() {
        let w = Wrapper::try_parse_from(super::super::consul_style_flags(
            ["connect", "proxy", "-http-addr", "127.0.0.1:8500"]
                .iter()
                .map(std::ffi::OsString::from)
                .collect(),
        ))
        .unwrap();
        let ConnectCommand::Proxy(args) = w.cmd else {
            panic!("not proxy")
        };
        let s = args.settings().unwrap();
        let want = Settings::new(s.agent.clone());
        assert_eq!(s, want);
        assert_eq!(s.state_max_age, tribune_proxy::state::DEFAULT_MAX_AGE);
        assert_eq!(s.upgrade_limits, tribune_proxy::upgrade::Limits::default());
    }

    #[test]
    fn every_flag_maps_to_a_setting() {
        let args = [
            "connect",
            "proxy",
            "-sidecar-for",
            "web-1",
            "-service",
            "web",
            "-local-service-address",
            "127.0.0.1:8080",
            "-mesh-listener",
            "127.0.0.1:21000",
            "-edge-listener",
            "127.0.0.1:21001",
            "-edge-tls-cert",
            "e.crt",
            "-edge-tls-key",
            "e.key",
            "-admin-bind",
            "127.0.0.1:19001",
            "-config",
            "s.json",
            "-merge-slashes",
            "-upstream-timeout",
            "7",
            "-replay-buffer",
            "5",
            "-upgrade-idle-timeout",
            "90s",
            "-upgrade-max-duration",
            "1h",
            "-http-addr",
            "127.0.0.1:8501",
            "-token",
            "t",
        ];
        let w = Wrapper::try_parse_from(super::super::consul_style_flags(
            args.iter().map(std::ffi::OsString::from).collect(),
        ))
        .unwrap();
        let ConnectCommand::Proxy(args) = w.cmd else {
            panic!("not proxy")
        };
        let s = args.settings().unwrap();
        let mut want = Settings::new(tribune_client::Target {
            addr: "127.0.0.1:8501".into(),
            token: Some("t".into()),
            ..Default::default()
        });
        want.sidecar_for = Some("web-1".into());
        want.service = Some("web".into());
        want.local_service = Some("127.0.0.1:8080".parse().unwrap());
        want.mesh_listener = Some("127.0.0.1:21000".parse().unwrap());
        want.edge_listener = Some("127.0.0.1:21001".parse().unwrap());
        want.edge_tls = Some(EdgeTls {
            cert: "e.crt".into(),
            key: "e.key".into(),
        });
        want.admin_bind = "127.0.0.1:19001".parse().unwrap();
        want.snapshot_file = Some("s.json".into());
        want.merge_slashes = true;
        want.upstream_timeout = Duration::from_secs(7);
        want.replay_buffer = 5;
        want.upgrade_limits = tribune_proxy::upgrade::Limits {
            idle: Duration::from_secs(90),
            max: Some(Duration::from_secs(3600)),
        };
        assert_eq!(s, want);
    }
}
