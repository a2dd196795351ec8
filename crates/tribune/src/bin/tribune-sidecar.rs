//! `tribune-sidecar`: the sidecar proxy alone, with the flags of `tribune connect
//! proxy` (which hands over to this binary when it sits beside `tribune`). Only the
//! sidecar's code is linked in, so a sidecar maps less than the whole CLI's binary.
#![forbid(unsafe_code)]

/// mimalloc, as in `tribune` (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tribune::cli::sidecar(std::env::args_os().collect())
}
