//! The `tribune` package's library: the CLI both binaries run. `tribune` is the
//! agent, the sidecar proxy and the CLI; `tribune-sidecar` is `tribune connect proxy`
//! alone (a smaller binary, which `tribune connect proxy` hands over to when it sits
//! beside `tribune`).
#![forbid(unsafe_code)]

pub mod cli;
