//! Tribune's one enforcement engine (decisions.md #23). The agent (explain, check,
//! `intention test`) and the sidecar (every request) call the same functions:
//!
//! ```text
//!   agent: entries ──► PolicyDocument::from_entries ──┐        sidecar: snapshot JSON
//!                                                     ▼                  │ from_json
//!                                              PolicyDocument ◄──────────┘
//!                                                     │ Policy::compile
//!                                                     ▼
//!   Request (described, or from hyper) ──► Policy::evaluate(request, options, now, Verify)
//!                                          screen → normalize → authenticate → decide
//!                                                     │
//!                                                     ▼
//!                        Evaluation ──► explain::answer (agent)  /  respond or rewrite (sidecar)
//! ```
//!
//! The only side effect, verifying a token with a provider's keys, is passed in as a
//! [`Verify`]; both sides pass the same key runtime (`tribune_jwks::ProviderRuntime`).
//! No I/O, no tokio.

#![forbid(unsafe_code)]

mod checks;
mod document;
mod evaluate;
pub mod explain;
mod policy;
mod rewrite;

pub use checks::cross_checks;
pub use document::{protocol_of, upgrades_of, PolicyDocument, UPGRADES_META};
pub use evaluate::{
    authenticate, has_underscore_name, Authenticated, Decided, Evaluation, Options, Outcomes,
    Refusal, Refused, Request, Verdict, Verify, View, Why,
};
pub use policy::{fold, Policy};
pub use rewrite::{forwarded_headers, strip_params};
