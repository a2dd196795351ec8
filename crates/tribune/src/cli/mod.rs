//! Command-line parsing and dispatch. Flags are spelled like Consul's (`-kind K`,
//! `-http-addr=...`); `--kind` works too.

mod acl;
#[cfg(test)]
mod acl_tests;
mod agent;
#[cfg(test)]
mod agent_tests;
mod config;
mod connect;
mod demo;
mod http;
mod intention;
mod intention_crud;
#[cfg(test)]
mod intention_crud_tests;
mod intention_test;
#[cfg(test)]
mod intention_tests;
mod jwt_provider;
#[cfg(test)]
mod jwt_provider_tests;
mod services;
#[cfg(test)]
mod staged_tests;

use clap::{CommandFactory, Parser, Subcommand};
use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "tribune",
    version,
    about = "Identity-based access control for services: JWT + intentions, Consul-compatible."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: the HTTP API over the embedded store.
    Agent(agent::AgentArgs),
    /// Work with config entries (jwt-provider, service-intentions, ...).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Check intentions.
    #[command(subcommand)]
    Intention(intention::IntentionCommand),
    /// Bootstrap ACLs, create policies and tokens.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Diagnose JWT providers: fetch their keys as a sidecar would, verify a token.
    #[command(subcommand, name = "jwt-provider")]
    JwtProvider(jwt_provider::JwtProviderCommand),
    /// Service mesh: the sidecar proxy and the CA.
    #[command(subcommand)]
    Connect(connect::ConnectCommand),
    /// The seed workflow in one process: an agent with the UI, a token issuer, two
    /// services with sidecars, and ready-to-paste requests.
    Demo(demo::DemoArgs),
    /// Print the version.
    Version,
    /// Register and deregister services (the catalog).
    #[command(subcommand)]
    Services(services::ServicesCommand),
}

/// Output streams, injected so commands can be tested without a terminal.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Parses `args` (including the program name) and runs the command.
pub fn run(args: Vec<OsString>) -> ExitCode {
    // Logs go to stderr; TRIBUNE_LOG sets the filter (default: info).
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIBUNE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    // Unlocked handles: long-running commands (agent, proxy) log to stderr from
    // other threads while they run.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = run_with(
        args,
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    ExitCode::from(code)
}

/// Like [`run`], writing to the given streams and returning the exit code.
pub fn run_with(args: Vec<OsString>, io: &mut Io<'_>) -> u8 {
    let args = consul_style_flags(args);
    // Bare `tribune`: the help, on stdout.
    if args.len() <= 1 {
        let _ = write!(io.out, "{}", Cli::command().render_help());
        return 0;
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let text = e.render().to_string();
            let _ = if code == 0 {
                write!(io.out, "{text}")
            } else {
                write!(io.err, "{text}")
            };
            return code;
        }
    };
    match cli.command {
        Command::Agent(args) => agent::run(args, io),
        Command::Config(cmd) => config::run(cmd, io),
        Command::Intention(cmd) => intention::run(cmd, io),
        Command::Acl(cmd) => acl::run(cmd, io),
        Command::JwtProvider(cmd) => jwt_provider::run(cmd, io),
        Command::Connect(cmd) => connect::run(cmd, io),
        Command::Services(cmd) => services::run(cmd, io),
        Command::Demo(args) => demo::run(args, io),
        Command::Version => {
            let _ = writeln!(io.out, "Tribune v{}", env!("CARGO_PKG_VERSION"));
            0
        }
    }
}

/// Rewrites Consul-style `-flag` / `-flag=value` into clap's `--flag` for every long
/// flag the CLI defines; anything else (values, `-`, positional args) is left alone.
fn consul_style_flags(args: Vec<OsString>) -> Vec<OsString> {
    let mut longs = HashSet::new();
    collect_longs(&Cli::command(), &mut longs);
    let mut out = Vec::with_capacity(args.len());
    let mut rest_positional = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest_positional {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest_positional = true;
            out.push(arg);
            continue;
        }
        if let Some(body) = s.strip_prefix('-').filter(|b| !b.starts_with('-')) {
            let name = body.split('=').next().unwrap_or(body);
            if longs.contains(name) {
                out.push(OsString::from(format!("--{body}")));
                continue;
            }
        }
        out.push(arg);
    }
    out
}

fn collect_longs(cmd: &clap::Command, into: &mut HashSet<String>) {
    into.insert("help".into());
    into.insert("version".into());
    for arg in cmd.get_arguments() {
        if let Some(l) = arg.get_long() {
            into.insert(l.to_string());
        }
    }
    for sub in cmd.get_subcommands() {
        collect_longs(sub, into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn run_args(args: &[&str]) -> (u8, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut argv = vec![OsString::from("tribune")];
        argv.extend(args.iter().map(OsString::from));
        let code = run_with(
            argv,
            &mut Io {
                out: &mut out,
                err: &mut err,
            },
        );
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn single_dash_long_flags_are_accepted() {
        let rewritten = consul_style_flags(
            ["tribune", "config", "validate", "-canonical", "-", "-x"]
                .iter()
                .map(OsString::from)
                .collect(),
        );
        let got: Vec<_> = rewritten
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            ["tribune", "config", "validate", "--canonical", "-", "-x"]
        );
    }

    #[test]
    fn bare_tribune_prints_help_on_stdout_and_version_has_two_spellings() {
        let (code, out, err) = run_args(&[]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(
            out.contains("Usage: tribune <COMMAND>") && out.contains("demo"),
            "{out}"
        );
        let version = format!("Tribune v{}\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(run_args(&["version"]), (0, version, String::new()));
        let (code, out, _) = run_args(&["--version"]);
        assert_eq!(code, 0);
        assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
        assert_eq!(run_args(&["-version"]).0, 0);
    }

    #[test]
    fn unknown_command_is_a_usage_error() {
        let (code, _, err) = run_args(&["frobnicate"]);
        assert_eq!(code, 1);
        assert!(err.contains("unrecognized subcommand"), "{err}");
    }
}
