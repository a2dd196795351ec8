//! The server's state layer: what handlers read instead of the raw store, kept
//! current from the store's notifications (issue #40).
//!
//! - [`tables`]: which blocking queries a write wakes (the waiters of its tables).
//! - [`documents`]: each watched service's policy document, rebuilt once per change
//!   that touches it and handed to all its waiting sidecars.
//! - [`write`]: the one read-check-write loop of guarded writes.

pub(crate) mod documents;
pub(crate) mod tables;
pub(crate) mod write;
