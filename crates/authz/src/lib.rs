//! Tribune's intentions engine. Pure: no I/O, no clock.
//!
//! ```text
//!  service-intentions (dest + "*")  ─┐
//!  jwt-providers (Issuers)           ├─ compile ─▶ IntentionTable ─┐
//!  protocol, default policy         ─┘   (once per config change) │
//!                                                                 ├─ evaluate ─▶ Decision
//!  RequestFacts: caller, method, normalized path, headers,        │               │
//!                per-provider token outcomes ─────────────────────┘     deny_response / explain
//! ```
//!
//! The algorithm is Consul's generated RBAC (see [`table`] for a worked example);
//! decisions.md #8 (array/number/bool claims) and #9 (provider `*`) extend it.

pub mod decision;
pub mod facts;
pub mod matchers;
pub mod path;
pub mod table;
pub mod warnings;

pub use decision::{
    deny_response, Challenge, Decision, DenyResponse, JwtFailure, NotFired, Reason, ReasonCode,
    FIXED_DENY_BODIES, ISSUER_NOT_CONFIGURED,
};
pub use facts::{
    alike, Caller, HeaderList, Headers, RequestFacts, StrayToken, TokenOutcome, Tokens,
};
pub use matchers::{
    claim_holds, claim_matches, claim_matches_at, ANY_PROVIDER, SPACE_DELIMITED_CLAIMS,
};
pub use path::{
    already_normal, decoded_once, normalize_in_full, normalize_path, normalize_request_path,
    PathVerdict,
};
pub use table::{compile, is_http_like, CompileError, CompileInput, IntentionInfo, IntentionTable};
pub use tribune_model::intentions::Action;
pub use warnings::{entry_warnings, provider_warnings, write_warnings};
