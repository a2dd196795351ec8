//! Tribune's vocabulary: the config entries (`jwt-provider`, `service-intentions`,
//! `service-defaults`, `proxy-defaults`), decoded exactly like Consul decodes them,
//! normalized and validated into typed values. No I/O.
//!
//! ```text
//!  HCL1 / JSON text ──parse──▶ raw JSON object ──decode (Consul rules)──▶ wire::*
//!        (hcl.rs)                                  (decode.rs)              │
//!                                                          normalize + validate
//!                                                                           ▼
//!                               canonical JSON ◀──serialize── ConfigEntry (typed)
//! ```
//!
//! Every caller (HTTP API, CLI, store) goes through [`parse_entry`] /
//! [`entry_from_json`], so they can never disagree about what is valid.

pub mod api;
pub mod auth_method;
pub mod binding_rule;
pub mod claims;
pub mod decode;
pub mod entry;
pub mod error;
pub mod filter;
pub mod go;
pub mod hcl;
pub mod host;
pub mod intentions;
pub mod jwt_provider;
pub mod mesh;
pub mod names;
pub mod re;
pub mod status;
pub mod wire;

pub use claims::Claims;
pub use entry::{
    decode_object, decode_text, entry_from_json, parse_entry, ConfigEntry, Kind, Meta,
    ProxyDefaults, ServiceDefaults, WireEntry, WILDCARD,
};
pub use error::{DecodeError, EntryError, ValidationError, ValidationErrors};
pub use intentions::ServiceIntentions;
pub use jwt_provider::JwtProvider;
pub use mesh::Mesh;
