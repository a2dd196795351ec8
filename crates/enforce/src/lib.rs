//! What the agent and the sidecar must agree on to enforce one service's policy, in
//! one place both call (decisions.md #23). Today: the [`PolicyDocument`], which the
//! agent builds and serializes and the sidecar deserializes, from the same type.
//! No I/O, no tokio.

#![forbid(unsafe_code)]

mod document;

pub use document::PolicyDocument;
