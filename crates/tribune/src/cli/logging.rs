//! The log of the long-running commands (`agent`, `connect proxy`, `demo`): stderr,
//! and with `-log-file` a file too; text or, with `-log-json`, one JSON object per
//! line. The level comes from `-log-level` (Consul's names), else `TRIBUNE_LOG` (an
//! `EnvFilter`, e.g. `tribune_server=debug`), else `info`.
//!
//! A log line that cannot be written is dropped: by default `tracing-subscriber`
//! reports the failure with `eprintln!`, which panics once stderr is a closed pipe, so
//! `tribune agent 2>&1 | tee log` lost the task that logged after Ctrl-C ended `tee`
//! (the shutdown signal's, which left the agent deaf to Ctrl-C and SIGTERM).

use super::log_fields::PlainFields;
use clap::Args;
use std::path::PathBuf;
use std::sync::Mutex;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The logging flags of the long-running commands (Consul's names).
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Log level: trace, debug, info, warn or err (`error` too). Default: info, or
    /// the filter in TRIBUNE_LOG.
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log one JSON object per line (timestamp, level, target, fields).
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// Also append the log to this file (created readable by its owner only).
    #[arg(long = "log-file", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// A `-log-level` value as a filter directive, or what is wrong with it.
pub fn level_directive(level: &str) -> Result<&'static str, String> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        _ => {
            return Err(format!(
                "-log-level: {level:?} is not a level (trace, debug, info, warn, err)"
            ))
        }
    })
}

/// Installs the log as `args` asks (once per process; later calls change nothing).
pub fn init(args: &LogArgs) -> Result<(), String> {
    let filter = match &args.log_level {
        Some(level) => EnvFilter::new(level_directive(level)?),
        None => EnvFilter::try_from_env("TRIBUNE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let file = match &args.log_file {
        None => None,
        Some(path) => Some(open_log_file(path)?),
    };
    // Colours only for a terminal, and never into a file.
    let ansi =
        !args.log_json && file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Without colours, the fields are written without styling each name
    // (`PlainFields`: the same text, a fraction of the instructions).
    let layer = match (file, args.log_json) {
        (None, false) if ansi => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(true)
            .log_internal_errors(false)
            .boxed(),
        (None, false) => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(PlainFields)
            .log_internal_errors(false)
            .boxed(),
        (None, true) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
            .boxed(),
        (Some(f), false) => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr.and(Mutex::new(f)))
            .with_ansi(false)
            .fmt_fields(PlainFields)
            .log_internal_errors(false)
            .boxed(),
        (Some(f), true) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr.and(Mutex::new(f)))
            .log_internal_errors(false)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    Ok(())
}

/// Opens `path` to append, creating it with mode 0600.
fn open_log_file(path: &std::path::Path) -> Result<std::fs::File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| format!("-log-file: cannot open {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_consuls_names() {
        assert_eq!(level_directive("ERR"), Ok("error"));
        assert_eq!(level_directive("warn"), Ok("warn"));
        let e = level_directive("verbose").unwrap_err();
        assert!(
            e.starts_with("-log-level: \"verbose\" is not a level"),
            "{e}"
        );
    }
}
