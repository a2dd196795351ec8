//! Command-line parsing and dispatch. Flags are spelled like Consul's (`-kind K`,
//! `-http-addr=...`); `--kind` works too.

mod acl;
#[cfg(test)]
mod acl_tests;
mod agent;
#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod binding_rule_tests;
mod config;
mod connect;
mod connect_authz;
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
mod log_fields;
pub mod logging;
mod login;
mod services;
mod snapshot;
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
    /// Save, restore and inspect snapshots of the agent's whole state.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Exchange a JWT for an expiring ACL token through an auth method.
    Login(login::LoginArgs),
    /// End a token a login made (the request's token).
    Logout(login::LogoutArgs),
}

/// Output streams, injected so commands can be tested without a terminal.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Runs `command` on stdout and stderr. Unlocked handles: long-running commands
/// (agent, proxy) log to stderr from other threads while they run.
fn on_std_streams(command: impl FnOnce(&mut Io<'_>) -> u8) -> ExitCode {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    ExitCode::from(command(&mut Io {
        out: &mut out,
        err: &mut err,
    }))
}

/// Parses `args` (including the program name) and runs the command.
pub fn run(args: Vec<OsString>) -> ExitCode {
    on_std_streams(|io| run_with(args, io))
}

/// `tribune-sidecar`: `tribune connect proxy`'s flags, and nothing else of the CLI,
/// so the binary holds the sidecar alone (about 60 % of `tribune`'s code, which is
/// what a sidecar maps into memory).
#[derive(Debug, Parser)]
#[command(
    name = "tribune-sidecar",
    version,
    about = "The Tribune sidecar proxy: what `tribune connect proxy` runs."
)]
struct Sidecar {
    #[command(flatten)]
    proxy: connect::ProxyArgs,
}

/// Parses `args` as `tribune-sidecar`'s (the flags of `tribune connect proxy`) and
/// runs the sidecar.
pub fn sidecar(args: Vec<OsString>) -> ExitCode {
    on_std_streams(|io| {
        let cli = Sidecar::command();
        match Sidecar::try_parse_from(consul_style_flags_of(&cli, args)) {
            Ok(s) => connect::proxy(s.proxy, io),
            Err(e) => report_parse_error(&cli, &e, io),
        }
    })
}

/// Prints a parse error (or the help or version clap answers with) the Consul way;
/// the exit code.
fn report_parse_error(cli: &clap::Command, e: &clap::Error, io: &mut Io<'_>) -> u8 {
    let code = if e.use_stderr() { 1 } else { 0 };
    let text = consul_style_help_of(cli, &e.render().to_string());
    let _ = if code == 0 {
        write!(io.out, "{text}")
    } else {
        write!(io.err, "{text}")
    };
    code
}

/// Like [`run`], writing to the given streams and returning the exit code.
pub fn run_with(args: Vec<OsString>, io: &mut Io<'_>) -> u8 {
    let args = consul_style_flags(args);
    if args.get(1).and_then(|a| a.to_str()) == Some("agent") {
        if let Some(why) = agent::consul_only_flag(&args[2..]) {
            let _ = writeln!(io.err, "==> {why}");
            return 1;
        }
    }
    // Bare `tribune`: the help, on stdout.
    if args.len() <= 1 {
        let help = Cli::command().render_help().to_string();
        let _ = write!(io.out, "{}", consul_style_help(&help));
        return 0;
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return report_parse_error(&Cli::command(), &e, io),
    };
    // The long-running commands install the log their flags ask for.
    if !matches!(
        cli.command,
        Command::Agent(_) | Command::Demo(_) | Command::Connect(connect::ConnectCommand::Proxy(_))
    ) {
        let _ = logging::init(&logging::LogArgs::default());
    }
    match cli.command {
        Command::Agent(args) => agent::run(args, io),
        Command::Config(cmd) => config::run(cmd, io),
        Command::Intention(cmd) => intention::run(cmd, io),
        Command::Acl(cmd) => acl::run(cmd, io),
        Command::JwtProvider(cmd) => jwt_provider::run(cmd, io),
        Command::Connect(cmd) => connect::run(cmd, &args, io),
        Command::Services(cmd) => services::run(cmd, io),
        Command::Snapshot(cmd) => snapshot::run(cmd, io),
        Command::Login(a) => login::login(&a, io),
        Command::Logout(a) => login::logout(&a, io),
        Command::Demo(args) => demo::run(args, io),
        Command::Version => {
            let _ = writeln!(
                io.out,
                "Tribune v{}\nRevision {}\nStore format {} (opens formats 0 to {})",
                env!("CARGO_PKG_VERSION"),
                tribune_server::REVISION,
                tribune_store::FORMAT_VERSION,
                tribune_store::FORMAT_VERSION
            );
            0
        }
    }
}

/// Reads a file named on the command line. The error names the file and says what
/// went wrong, without the OS error number: `Failed to read file "okta.hcl": No such
/// file or directory`.
pub(crate) fn read_file(path: impl AsRef<std::path::Path>) -> Result<String, String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|e| {
        let why = e.to_string();
        let why = why.split(" (os error ").next().unwrap_or(&why).to_string();
        format!("Failed to read file \"{}\": {why}", path.display())
    })
}

/// Rewrites Consul-style `-flag` / `-flag=value` into clap's `--flag` for every long
/// flag the CLI defines; anything else (values, `-`, positional args) is left alone.
fn consul_style_flags(args: Vec<OsString>) -> Vec<OsString> {
    consul_style_flags_of(&Cli::command(), args)
}

/// [`consul_style_flags`] for the flags of `cli`.
fn consul_style_flags_of(cli: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut longs = HashSet::new();
    collect_longs(cli, &mut longs);
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

/// Help and usage text with flags spelled as Consul spells them (`-http-addr`, not
/// clap's `--http-addr`), the description column kept aligned.
fn consul_style_help(text: &str) -> String {
    consul_style_help_of(&Cli::command(), text)
}

/// [`consul_style_help`] for the flags of `cli`.
fn consul_style_help_of(cli: &clap::Command, text: &str) -> String {
    let mut longs = HashSet::new();
    collect_longs(cli, &mut longs);
    let single = |s: &str| -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(at) = rest.find("--") {
            let (before, from) = rest.split_at(at);
            out.push_str(before);
            let name_len = from[2..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(from.len() - 2);
            let name = &from[2..2 + name_len];
            let after_dash = out.ends_with('-');
            if !after_dash && longs.contains(name) {
                out.push('-');
                out.push_str(name);
            } else {
                out.push_str(&from[..2 + name_len]);
            }
            rest = &from[2 + name_len..];
        }
        out.push_str(rest);
        out
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let option_line = indent <= 6 && line.trim_start().starts_with('-');
        match line[indent..].find("  ").filter(|_| option_line) {
            Some(end) => {
                let (flags, described) = line.split_at(indent + end);
                let spelled = single(flags);
                out.push_str(&spelled);
                out.push_str(&" ".repeat(flags.len() - spelled.len()));
                out.push_str(described);
            }
            None => out.push_str(&single(line)),
        }
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
        let version = format!(
            "Tribune v{}\nRevision {}\nStore format {} (opens formats 0 to {})\n",
            env!("CARGO_PKG_VERSION"),
            tribune_server::REVISION,
            tribune_store::FORMAT_VERSION,
            tribune_store::FORMAT_VERSION
        );
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

#[cfg(test)]
mod help_tests {
    use super::*;

    /// Every flag and argument of every command, as `command path: flag`, that has no
    /// help text.
    fn undescribed(cmd: &clap::Command, path: &str, into: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                into.push(format!("{path}: {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                into.push(format!("{path} {}: (no about)", sub.get_name()));
            }
            undescribed(sub, &format!("{path} {}", sub.get_name()), into);
        }
    }

    #[test]
    fn every_flag_of_every_command_is_described() {
        let mut missing = Vec::new();
        undescribed(&Cli::command(), "tribune", &mut missing);
        assert!(
            missing.is_empty(),
            "{} undescribed:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }

    /// Help spells every flag as Consul does (`-cas`, `-help`), keeps the description
    /// column aligned, and `config write` says it takes one file.
    #[test]
    fn help_spells_flags_with_one_dash_like_consul() {
        let (code, out, err) = super::tests::run_args(&["config", "write", "-help"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(!out.contains("--"), "{out}");
        assert!(
            out.contains("Usage: tribune config write [OPTIONS] <FILE>"),
            "{out}"
        );
        assert!(out.contains("The one entry file"), "{out}");
        let columns: Vec<usize> = out
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .map(|l| {
                let flags_end =
                    l.trim_start().find("  ").unwrap() + (l.len() - l.trim_start().len());
                flags_end + l[flags_end..].len() - l[flags_end..].trim_start().len()
            })
            .collect();
        assert!(columns.len() >= 6, "{out}");
        assert!(
            columns.windows(2).all(|w| w[0] == w[1]),
            "{columns:?}\n{out}"
        );
        for flag in [
            "-cas",
            "-modify-index <MODIFY_INDEX>",
            "-http-addr",
            "-h, -help",
        ] {
            assert!(out.contains(flag), "{flag}: {out}");
        }
        // Usage errors too.
        let (code, _, err) = super::tests::run_args(&["config", "read", "-kind"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("'-kind <KIND>'") && err.contains("'-help'"),
            "{err}"
        );
    }
}
