//! `tribune`: one binary for the agent, the sidecar proxy and the CLI.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::run(std::env::args_os().collect())
}
