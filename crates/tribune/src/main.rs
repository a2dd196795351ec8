//! `tribune`: the agent, the sidecar proxy and the CLI (`tribune-sidecar` is the
//! sidecar alone).
#![forbid(unsafe_code)]

/// mimalloc: the request path allocates and frees small objects at a high rate, and
/// glibc's malloc cost several percent of the proxy's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tribune::cli::run(std::env::args_os().collect())
}
