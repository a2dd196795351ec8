//! Helpers Tribune's tests share (a dev-dependency only).

#![forbid(unsafe_code)]

pub mod etcd;
pub mod pki;
pub mod tokens;
