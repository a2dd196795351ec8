//! Decisions are values: allow or deny, and why. One function maps a denial to the
//! HTTP response the caller sees (decisions.md #12); the full explanation is for logs
//! and the explain API, never for the caller.

use crate::table::IntentionTable;
use std::fmt;
use std::sync::Arc;
use tribune_model::intentions::Action;

/// Why a decision was made, without the details (a [`Decision::code`]); metrics
/// are indexed by [`ReasonCode::ALL`], so none can be missed or mislabelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    Intention,
    Permission,
    Default,
    DefaultSameAction,
    DefaultShadowed,
    NoPermissionMatched,
    PermissionSameAsDefault,
    PermissionsOnNonHttp,
    JwtMissing,
    JwtInvalid,
    JwtIssuer,
    JwtClaim,
    JwtUnknownProvider,
    JwtIssuerUnknown,
    JwtMalformed,
    JwtWrongLocation,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 16] = [
        ReasonCode::Intention,
        ReasonCode::Permission,
        ReasonCode::Default,
        ReasonCode::DefaultSameAction,
        ReasonCode::DefaultShadowed,
        ReasonCode::NoPermissionMatched,
        ReasonCode::PermissionSameAsDefault,
        ReasonCode::PermissionsOnNonHttp,
        ReasonCode::JwtMissing,
        ReasonCode::JwtInvalid,
        ReasonCode::JwtIssuer,
        ReasonCode::JwtClaim,
        ReasonCode::JwtUnknownProvider,
        ReasonCode::JwtIssuerUnknown,
        ReasonCode::JwtMalformed,
        ReasonCode::JwtWrongLocation,
    ];

    /// The stable label (`intention`, `default`, `jwt_missing`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Intention => "intention",
            ReasonCode::Permission => "permission",
            ReasonCode::Default => "default",
            ReasonCode::DefaultSameAction => "default_same_action",
            ReasonCode::DefaultShadowed => "default_shadowed",
            ReasonCode::NoPermissionMatched => "no_permission_matched",
            ReasonCode::PermissionSameAsDefault => "permission_same_as_default",
            ReasonCode::PermissionsOnNonHttp => "permissions_on_non_http",
            ReasonCode::JwtMissing => "jwt_missing",
            ReasonCode::JwtInvalid => "jwt_invalid",
            ReasonCode::JwtIssuer => "jwt_issuer",
            ReasonCode::JwtClaim => "jwt_claim",
            ReasonCode::JwtUnknownProvider => "jwt_unknown_provider",
            ReasonCode::JwtIssuerUnknown => "jwt_issuer_unknown",
            ReasonCode::JwtMalformed => "jwt_malformed",
            ReasonCode::JwtWrongLocation => "jwt_wrong_location",
        }
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: Reason,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.action == Action::Allow
    }

    /// Why, as a code for logs and metrics.
    pub fn code(&self) -> ReasonCode {
        match &self.reason {
            Reason::Fired {
                permission: None, ..
            } => ReasonCode::Intention,
            Reason::Fired { .. } => ReasonCode::Permission,
            Reason::Default { closest: None } => ReasonCode::Default,
            Reason::Default {
                closest: Some((_, why)),
            } => match why {
                NotFired::SameAsDefault => ReasonCode::DefaultSameAction,
                NotFired::Shadowed { .. } => ReasonCode::DefaultShadowed,
                NotFired::NoPermissionMatched => ReasonCode::NoPermissionMatched,
                NotFired::PermissionSameAsDefault { .. } => ReasonCode::PermissionSameAsDefault,
                NotFired::PermissionsOnNonHttp => ReasonCode::PermissionsOnNonHttp,
                NotFired::Jwt { failure, .. } => match failure {
                    JwtFailure::Missing { .. } => ReasonCode::JwtMissing,
                    JwtFailure::Invalid { .. } => ReasonCode::JwtInvalid,
                    JwtFailure::IssuerMismatch { .. } => ReasonCode::JwtIssuer,
                    JwtFailure::Claim { .. } => ReasonCode::JwtClaim,
                    JwtFailure::UnknownProvider { .. } => ReasonCode::JwtUnknownProvider,
                    JwtFailure::IssuerUnknown { .. } => ReasonCode::JwtIssuerUnknown,
                    JwtFailure::Malformed { .. } => ReasonCode::JwtMalformed,
                    JwtFailure::WrongLocation { .. } => ReasonCode::JwtWrongLocation,
                },
            },
        }
    }

    /// The intention that decided (fired) or came closest, as an index into the table.
    pub fn intention(&self) -> Option<usize> {
        match &self.reason {
            Reason::Fired { intention, .. } => Some(*intention),
            Reason::Default { closest } => closest.as_ref().map(|(i, _)| *i),
        }
    }
}

/// Why the decision came out as it did. Intention indices point into the
/// [`IntentionTable`] that made the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// An intention fired with the non-default action: as an L4 intention, or through
    /// its permission at `permission`.
    Fired {
        intention: usize,
        permission: Option<usize>,
    },
    /// No intention fired, so the default policy applies. `closest` is the first
    /// intention that matched the caller, and why it did not fire.
    Default { closest: Option<(usize, NotFired)> },
}

/// Why a matching intention did not fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFired {
    /// Its action equals the default (e.g. a deny intention under default deny).
    SameAsDefault,
    /// It is shadowed by a more specific intention for this caller (listed first).
    Shadowed { by: usize },
    /// L7: no permission's HTTP criteria matched the request.
    NoPermissionMatched,
    /// L7: the first permission whose HTTP criteria matched has the default action.
    PermissionSameAsDefault { permission: usize },
    /// The JWT requirement (top-level, or top-level AND the permission's) failed.
    Jwt {
        permission: Option<usize>,
        failure: JwtFailure,
    },
    /// The intention has L7 permissions but the destination's protocol is not HTTP;
    /// like Consul it counts as deny.
    PermissionsOnNonHttp,
}

/// Why a JWT requirement was not met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtFailure {
    /// The request carried no token for the provider.
    Missing { provider: Arc<str> },
    /// A token was present and failed verification (`reason`: the verifier's
    /// message, which becomes the 401's body).
    Invalid {
        provider: Arc<str>,
        reason: &'static str,
    },
    /// The verified token's `iss` is not the provider's Issuer.
    IssuerMismatch {
        provider: Arc<str>,
        expected: String,
        got: Option<String>,
    },
    /// A `VerifyClaims` check failed; `got` is the claim's JSON, if present.
    Claim {
        provider: Arc<str>,
        path: Vec<String>,
        expected: String,
        got: Option<String>,
    },
    /// The requirement names a provider that is not configured (fails closed).
    UnknownProvider { provider: Arc<str> },
    /// A token was sent, but its `iss` (`got`; `None`: it has none) names none of the
    /// requirement's providers; `expected` lists their issuers.
    IssuerUnknown {
        provider: Arc<str>,
        got: Option<String>,
        expected: Vec<String>,
    },
    /// What was sent where the provider looks is not a JWT (`reason`: Envoy's text).
    Malformed {
        provider: Arc<str>,
        reason: &'static str,
    },
    /// No token where the provider looks, but one naming its Issuer at `found`.
    WrongLocation { provider: Arc<str>, found: String },
}

impl JwtFailure {
    /// True when the caller should be told its token was missing or invalid (401).
    fn is_authentication(&self) -> bool {
        !matches!(self, JwtFailure::Claim { .. })
    }
}

impl fmt::Display for JwtFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtFailure::Missing { provider } => write!(f, "no token for provider {provider:?}"),
            JwtFailure::Invalid { provider, reason } => {
                write!(f, "token for provider {provider:?} failed: {reason}")
            }
            JwtFailure::IssuerMismatch {
                provider,
                expected,
                got,
            } => write!(
                f,
                "token for provider {provider:?} has iss {} but the provider's Issuer is {expected:?}",
                got.as_deref().map(|g| format!("{g:?}")).unwrap_or_else(|| "missing".into())
            ),
            JwtFailure::Claim {
                provider,
                path,
                expected,
                got,
            } => write!(
                f,
                "claim {} of provider {provider:?} token: expected {expected:?}, got {}",
                path.join("."),
                got.as_deref().unwrap_or("nothing (claim missing)")
            ),
            JwtFailure::UnknownProvider { provider } => {
                write!(f, "provider {provider:?} is not configured")
            }
            JwtFailure::IssuerUnknown {
                provider,
                got,
                expected,
            } => {
                let got = got
                    .as_deref()
                    .map_or_else(|| "no iss".to_string(), |g| format!("iss {g:?}"));
                let expected = expected
                    .iter()
                    .map(|e| format!("{e:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                write!(
                    f,
                    "a token was sent for provider {provider:?}, but it has {got}: no provider of the requirement has that Issuer (expected {expected}); check the provider's Issuer against the tokens' iss"
                )
            }
            JwtFailure::Malformed { provider, reason } => write!(
                f,
                "what was sent where provider {provider:?} looks for a token is not a JWT: {reason}"
            ),
            JwtFailure::WrongLocation { provider, found } => write!(
                f,
                "no token where provider {provider:?} looks, but one with its Issuer was sent in {found}: send it where the provider's Locations say, or add that location to the provider"
            ),
        }
    }
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Challenge {
    /// No token was sent: `Bearer realm="<service>"`.
    Missing,
    /// A token failed: `Bearer realm="<service>", error="invalid_token"`.
    InvalidToken,
}

impl Challenge {
    pub const ALL: [Challenge; 2] = [Challenge::Missing, Challenge::InvalidToken];

    /// The header value for `service` (quotes and backslashes left out of the realm).
    pub fn header_value(self, service: &str) -> String {
        let realm = service.replace(['"', '\\'], "");
        match self {
            Challenge::Missing => format!("Bearer realm=\"{realm}\""),
            Challenge::InvalidToken => format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
        }
    }
}

/// The bodies of a denial that are not a token's own failure reason (Envoy's): a
/// missing token, a token that fails a check other than verification, and RBAC.
pub const FIXED_DENY_BODIES: [&str; 3] = [
    "Jwt is missing",
    "Jwt verification fails",
    "RBAC: access denied",
];

/// Envoy's body for a token whose issuer no provider of the requirement has.
pub const ISSUER_NOT_CONFIGURED: &str = "Jwt issuer is not configured";

/// What the caller of a denied request receives; borrowed from the decision, so
/// answering a denial allocates nothing here (the sidecar keeps each challenge's
/// header value ready per service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenyResponse<'a> {
    pub status: u16,
    /// The 401's challenge (`None` for a 403).
    pub challenge: Option<Challenge>,
    pub body: &'a str,
    /// The service the realm names.
    pub service: &'a str,
}

impl DenyResponse<'_> {
    /// The `WWW-Authenticate` header value, for 401s.
    pub fn www_authenticate(&self) -> Option<String> {
        self.challenge.map(|c| c.header_value(self.service))
    }
}

/// Maps a decision to the response for the caller, or `None` when it is allowed.
///
/// 401 with `WWW-Authenticate: Bearer realm="<service>"` when a required token was
/// missing; 401 with `error="invalid_token"` when it failed verification; 403 with
/// `RBAC: access denied` otherwise (identity, path, method, claims).
pub fn deny_response<'a>(decision: &'a Decision, service: &'a str) -> Option<DenyResponse<'a>> {
    if decision.allowed() {
        return None;
    }
    let jwt = match &decision.reason {
        Reason::Default {
            closest: Some((_, NotFired::Jwt { failure, .. })),
        } if failure.is_authentication() => Some(failure),
        _ => None,
    };
    let [missing, fails, rbac] = FIXED_DENY_BODIES;
    let (status, challenge, body) = match jwt {
        // Nothing where the provider looks: missing, as the caller sees it.
        Some(JwtFailure::Missing { .. } | JwtFailure::WrongLocation { .. }) => {
            (401, Some(Challenge::Missing), missing)
        }
        Some(JwtFailure::Invalid { reason, .. } | JwtFailure::Malformed { reason, .. }) => {
            (401, Some(Challenge::InvalidToken), *reason)
        }
        Some(JwtFailure::IssuerUnknown { .. }) => {
            (401, Some(Challenge::InvalidToken), ISSUER_NOT_CONFIGURED)
        }
        Some(_) => (401, Some(Challenge::InvalidToken), fails),
        None => (403, None, rbac),
    };
    Some(DenyResponse {
        status,
        challenge,
        body,
        service,
    })
}

impl IntentionTable {
    /// The decision in plain words, naming the intention, permission and failing check.
    pub fn explain(&self, decision: &Decision) -> String {
        let verdict = match decision.action {
            Action::Allow => "Allowed",
            Action::Deny => "Denied",
        };
        match &decision.reason {
            Reason::Fired {
                intention,
                permission,
            } => {
                let what = self.describe(*intention);
                match permission {
                    None => format!(
                        "{verdict}: intention {what} ({}) applies",
                        decision.action.as_str()
                    ),
                    Some(p) => format!(
                        "{verdict}: intention {what}, permission {} ({}) matches the request{}",
                        p,
                        decision.action.as_str(),
                        self.header_reading(*intention, *p)
                            .map(|r| format!("; {r}"))
                            .unwrap_or_default()
                    ),
                }
            }
            Reason::Default { closest: None } => format!(
                "{verdict}: no intention matches the caller; the default policy is {}",
                self.default_action().as_str()
            ),
            Reason::Default {
                closest: Some((i, why)),
            } => {
                let what = self.describe(*i);
                let default = self.default_action().as_str();
                let why = match why {
                    NotFired::SameAsDefault => format!(
                        "its action is {default}, the same as the default policy"
                    ),
                    NotFired::Shadowed { by } => format!(
                        "the more specific intention {} takes precedence for this caller",
                        self.describe(*by)
                    ),
                    NotFired::NoPermissionMatched => {
                        "no permission matches the request's path, method and headers".into()
                    }
                    NotFired::PermissionSameAsDefault { permission } => format!(
                        "the first matching permission ({permission}) has action {default}, the same as the default policy"
                    ),
                    NotFired::Jwt {
                        permission: None,
                        failure,
                    } => format!("its JWT requirement is not met: {failure}"),
                    NotFired::Jwt {
                        permission: Some(p),
                        failure,
                    } => format!("permission {p} matches but its JWT requirement is not met: {failure}"),
                    NotFired::PermissionsOnNonHttp => {
                        "it has L7 permissions but the service's protocol is not HTTP".into()
                    }
                };
                format!("{verdict}: intention {what} matches the caller but does not apply ({why}); the default policy is {default}")
            }
        }
    }
}
