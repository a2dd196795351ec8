//! The decision path for one HTTP request, in the order the sidecar runs it, with
//! the one side effect (verifying a token) passed in as a [`Verify`]:
//!
//! 1. **screen**: `CONNECT` (405) and two `Host` headers (400) are answered before
//!    any policy is consulted;
//! 2. **normalize**: the path is normalized (decisions.md #15) with the `mesh`
//!    entry's rules: an escaped separator may be refused (400) or redirected (307);
//!    header names with `_` are allowed, refused (400) or dropped;
//! 3. **authenticate**: for each provider the intentions reference, the tokens at its
//!    `Locations` are routed by issuer and verified; all must pass ([`authenticate`]);
//! 4. **decide**: the intentions table decides from caller, method, path, headers and
//!    token outcomes ([`Policy::decide`]).
//!
//! The sidecar calls [`Policy::evaluate`] for every request and then rewrites or
//! answers from the [`Evaluation`]; the agent's explain, check and `intention test`
//! call the same function on a described request, so they give the sidecar's answer.

use crate::policy::Policy;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, HOST};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use tribune_authz::{
    already_normal, deny_response, normalize_in_full, Caller, Decision, DenyResponse, PathVerdict,
    ReasonCode, RequestFacts, StrayToken, TokenOutcome, Tokens,
};
use tribune_jwt::locate::{conclude, extract_known, forwards_token, Outcome, RequestParts, Values};
use tribune_jwt::Claims;
use tribune_jwt::{JwtError, Stray};
use tribune_model::mesh::Underscores;

/// Verifies tokens for the providers of a [`Policy`] (`provider` indexes
/// [`Policy::providers`]). The sidecar's and the agent's implementation is the same
/// key runtime (`tribune_jwks::ProviderRuntime`); `intention test` passes one that
/// takes described tokens as verified.
pub trait Verify {
    /// `None` when the token is not addressed to the provider (its unverified `iss`
    /// names another issuer, for a provider with an `Issuer`); else the verified
    /// payload or why it failed.
    fn check(
        &self,
        provider: usize,
        token: &str,
        now: i64,
    ) -> impl Future<Output = Option<Result<Arc<Claims>, JwtError>>> + Send;

    /// What [`Verify::check`] would answer for `token` when that answer is at hand
    /// without work (a verified-token cache's hit): asked about a header location's
    /// bytes before they are read to the token's end, so it must recognize only
    /// whole tokens that verified. `None` (the default): not known, checked.
    fn cached(
        &self,
        _provider: usize,
        _token: &[u8],
        _now: i64,
    ) -> Option<Result<Arc<Claims>, JwtError>> {
        None
    }
}

/// One HTTP request as it reaches the sidecar.
#[derive(Clone, Copy)]
pub struct Request<'a, 'p> {
    /// The caller's mesh identity; `None` on the edge listener.
    pub caller: Option<Caller<'a>>,
    pub method: &'a str,
    /// The path as received (not normalized), without the query: the only part a
    /// [`Decided`] borrows (its own lifetime, so that a caller may change the rest of
    /// its request while the decision is held).
    pub path: &'p str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Sidecar settings that change decisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `-merge-slashes`: merge `//` in paths even when the mesh entry does not.
    pub merge_slashes: bool,
}

/// Why a request was answered before any intention was consulted. [`Refusal::ALL`]
/// lists every one (access-log reasons, explain's `ReasonCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    ConnectMethod,
    DuplicateHost,
    DuplicateAuthorization,
    EscapedSeparator,
    AmbiguousPath,
    PathRedirect,
    HeaderWithUnderscores,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::ConnectMethod,
        Refusal::DuplicateHost,
        Refusal::DuplicateAuthorization,
        Refusal::EscapedSeparator,
        Refusal::AmbiguousPath,
        Refusal::PathRedirect,
        Refusal::HeaderWithUnderscores,
    ];

    /// The stable label (access log `reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ConnectMethod => "connect_method",
            Refusal::DuplicateHost => "duplicate_host",
            Refusal::DuplicateAuthorization => "duplicate_authorization",
            Refusal::EscapedSeparator => "escaped_separator",
            Refusal::AmbiguousPath => "ambiguous_path",
            Refusal::PathRedirect => "path_redirect",
            Refusal::HeaderWithUnderscores => "header_with_underscores",
        }
    }

    /// The status the caller gets.
    pub fn status(self) -> u16 {
        match self {
            Refusal::ConnectMethod => 405,
            Refusal::PathRedirect => 307,
            _ => 400,
        }
    }

    /// The body the caller gets.
    pub fn body(self) -> &'static str {
        match self {
            Refusal::ConnectMethod => "Method Not Allowed",
            Refusal::PathRedirect => "",
            _ => "Bad Request",
        }
    }

    /// Why, in a sentence (explain).
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::ConnectMethod => "CONNECT is refused: an HTTP destination is not a tunnel",
            Refusal::DuplicateHost => "the request has two Host headers (RFC 9112 §3.2), which two parsers could read differently",
            Refusal::DuplicateAuthorization => "the request has more than one Authorization header (RFC 9110 §11.6.2 gives a request one set of credentials): the service could act on credentials other than those the policy decided on",
            Refusal::EscapedSeparator => "the path contains an escaped separator (%2F or %5C), which the mesh entry's PathWithEscapedSlashesAction rejects (Tribune's default)",
            Refusal::AmbiguousPath => "the path holds a dot segment with a ;parameter (/..;/) or a double-encoded dot or separator (%252e, %252f, %255c), which a service that strips parameters or decodes twice would read as a traversal; refused under the mesh entry's default PathWithEscapedSlashesAction",
            Refusal::PathRedirect => "the path contains an escaped separator (%2F or %5C); the mesh entry's PathWithEscapedSlashesAction = UNESCAPE_AND_REDIRECT redirects to the decoded path",
            Refusal::HeaderWithUnderscores => "a header name contains an underscore, which the mesh entry's HeadersWithUnderscoresAction = REJECT_REQUEST refuses",
        }
    }
}

/// A request answered before any intention was consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub refusal: Refusal,
    /// The `Location` of a redirect (decoded path and the query as received).
    pub location: Option<String>,
}

/// What the policy decided about a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided<'a> {
    /// The normalized path (matched, and forwarded when allowed): the request's own
    /// when it was already normal.
    pub path: Cow<'a, str>,
    /// Token outcome per provider (indexes [`Policy::providers`]).
    pub outcomes: Outcomes,
    /// Tokens a provider with `Forward = true` verified: the only values in token
    /// locations that may reach the upstream (decisions.md #18).
    pub forwarded_tokens: Vec<String>,
    /// Header names with `_` are dropped (`HeadersWithUnderscoresAction =
    /// DROP_HEADER`): they took no part in the decision and are not forwarded.
    pub drop_underscores: bool,
    pub decision: Decision,
}

impl Decided<'_> {
    /// The response a denial becomes (decisions.md #12); `None` when allowed.
    pub fn deny_response<'a>(&'a self, policy: &'a Policy) -> Option<DenyResponse<'a>> {
        deny_response(&self.decision, &policy.service)
    }
}

/// The outcome of [`Policy::evaluate`].
// Nearly every request is `Decided`: boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation<'a> {
    Refused(Refused),
    Decided(Decided<'a>),
}

/// Why a request was answered as it was: a decision's code, or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    Decided(ReasonCode),
    Refused(Refusal),
}

impl Why {
    /// How many there are ([`Why::slot`] is below it).
    pub const COUNT: usize = ReasonCode::ALL.len() + Refusal::ALL.len();

    /// A dense index for counters: decision codes first, then refusals.
    pub fn slot(self) -> usize {
        match self {
            Why::Decided(c) => c as usize,
            Why::Refused(r) => ReasonCode::ALL.len() + r as usize,
        }
    }

    /// The inverse of [`Why::slot`].
    pub fn from_slot(slot: usize) -> Option<Why> {
        match slot.checked_sub(ReasonCode::ALL.len()) {
            None => ReasonCode::ALL.get(slot).map(|c| Why::Decided(*c)),
            Some(i) => Refusal::ALL.get(i).map(|r| Why::Refused(*r)),
        }
    }

    /// The access log's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Decided(c) => c.as_str(),
            Why::Refused(r) => r.as_str(),
        }
    }
}

/// What a request gets, in short: what shadow evaluation compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The status the caller gets (200: forwarded).
    pub status: u16,
    pub why: Why,
}

impl Evaluation<'_> {
    /// The evaluation in short.
    pub fn verdict(&self, policy: &Policy) -> Verdict {
        match self {
            Evaluation::Refused(r) => Verdict {
                allowed: false,
                status: r.refusal.status(),
                why: Why::Refused(r.refusal),
            },
            Evaluation::Decided(d) => Verdict {
                allowed: d.decision.allowed(),
                status: d.deny_response(policy).map_or(200, |r| r.status),
                why: Why::Decided(d.decision.code()),
            },
        }
    }
}

/// The request's headers and query as token lookup and header matchers read them.
/// With `hide_underscores`, header names containing `_` are not there (they are
/// dropped before forwarding).
pub struct View<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub hide_underscores: bool,
    /// The `Authorization` values when already read (the screen reads them for
    /// every request); `None`: looked up when asked for.
    pub authorization: Option<Values<'a>>,
}

impl View<'_> {
    fn hidden(&self, name: &str) -> bool {
        self.hide_underscores && name.contains('_')
    }
}

impl RequestParts for View<'_> {
    fn header_values(&self, name: &str) -> Values<'_> {
        if self.hidden(name) {
            return Values::new();
        }
        // The default token location, without parsing its name on every request.
        let values = if name.eq_ignore_ascii_case("authorization") {
            if let Some(read) = &self.authorization {
                return read.iter().copied().collect();
            }
            self.headers.get_all(AUTHORIZATION)
        } else {
            self.headers.get_all(name)
        };
        values.iter().map(HeaderValue::as_bytes).collect()
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
}

impl tribune_authz::Headers for View<'_> {
    fn lines(&self, name: &str) -> Vec<Cow<'_, str>> {
        self.headers
            .iter()
            .filter(|(k, _)| !self.hidden(k.as_str()) && tribune_authz::alike(k.as_str(), name))
            .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()))
            .collect()
    }
}

/// Whether any header name contains `_`.
pub fn has_underscore_name(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| k.as_str().contains('_'))
}

/// Step 1: requests answered before any policy is consulted (`authorization`: the
/// request's `Authorization` values).
fn screen(req: &Request<'_, '_>, authorization: &Values<'_>) -> Option<Refusal> {
    if req.method == "CONNECT" {
        return Some(Refusal::ConnectMethod);
    }
    let mut hosts = req.headers.get_all(HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return Some(Refusal::DuplicateHost);
    }
    // Decided (hardening round 3): a second `Authorization` beside a verified bearer
    // token was forwarded (round 1 saw it removed). Neither is right: which line a
    // service reads is its parser's choice, so the request is refused.
    if authorization.len() > 1 {
        return Some(Refusal::DuplicateAuthorization);
    }
    None
}

/// Token outcomes, one per provider: a policy with one provider (the usual case)
/// keeps its outcome without an allocation.
pub type Outcomes = smallvec::SmallVec<[Outcome; 1]>;

/// The token outcomes of one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Authenticated {
    /// Per provider, indexing [`Policy::providers`].
    pub outcomes: Outcomes,
    /// See [`Decided::forwarded_tokens`].
    pub forwarded_tokens: Vec<String>,
}

/// Step 3: for each provider, the tokens at its locations (Envoy's defaults when it
/// lists none) that `keys` says are addressed to it; every one must verify
/// ([`conclude`]).
pub async fn authenticate<V: Verify + ?Sized>(
    policy: &Policy,
    view: &View<'_>,
    now: i64,
    keys: &V,
) -> Authenticated {
    let mut auth = Authenticated {
        outcomes: Outcomes::with_capacity(policy.providers.len()),
        forwarded_tokens: Vec::new(),
    };
    for (i, provider) in policy.providers.iter().enumerate() {
        // One or two tokens per provider in practice: kept without an allocation.
        let mut mine = tribune_jwt::locate::Founds::new();
        let mut results: smallvec::SmallVec<[_; 2]> = smallvec::SmallVec::new();
        // The first token at the provider's locations not addressed to it: diagnosed
        // only when the provider then has no token of its own.
        let mut stray = None;
        for (found, cached) in extract_known(&provider.locations, view, |t| keys.cached(i, t, now))
        {
            let result = match cached {
                Some(hit) => Some(hit),
                None => keys.check(i, &found.token, now).await,
            };
            match result {
                Some(result) => {
                    mine.push(found);
                    results.push(result);
                }
                None if stray.is_none() => stray = Some(found),
                None => {}
            }
        }
        let mut results = results.into_iter();
        let outcome = match conclude(provider, &mine, |_| {
            results.next().unwrap_or(Err(JwtError::Missing))
        }) {
            Outcome::Missing => tribune_jwt::locate::none_of_its_own(
                provider,
                stray.as_ref().map(|f| f.token.as_ref()),
                view,
            ),
            other => other,
        };
        if matches!(outcome, Outcome::Valid { .. }) && forwards_token(provider) {
            auth.forwarded_tokens
                .extend(mine.into_iter().map(|f| f.token.into_owned()));
        }
        auth.outcomes.push(outcome);
    }
    // A provider with no token that another provider of the policy found addressed
    // to it (by iss): told where it was.
    if auth.outcomes.iter().any(|o| matches!(o, Outcome::Stray(_))) {
        for i in 0..auth.outcomes.len() {
            let issuer = &policy.providers[i].issuer;
            if !matches!(auth.outcomes[i], Outcome::Missing) || issuer.is_empty() {
                continue;
            }
            let at = auth.outcomes.iter().enumerate().find_map(|(j, o)| match o {
                Outcome::Stray(tribune_jwt::Stray::OtherIssuer(Some(iss)))
                    if j != i && iss.as_ref() == issuer.as_str() =>
                {
                    Some(j)
                }
                _ => None,
            });
            if let Some(j) = at {
                auth.outcomes[i] = Outcome::Stray(tribune_jwt::Stray::Elsewhere(
                    format!("a location of provider {:?}", policy.providers[j].name).into(),
                ));
            }
        }
    }
    auth
}

impl Policy {
    /// Steps 1-4 for one HTTP request.
    pub async fn evaluate<'p, V: Verify + ?Sized>(
        &self,
        req: &Request<'_, 'p>,
        options: Options,
        now: i64,
        keys: &V,
    ) -> Evaluation<'p> {
        // Read once: by the screen, then by token lookup.
        let authorization: Values<'_> = req
            .headers
            .get_all(AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        if let Some(refusal) = screen(req, &authorization) {
            return Evaluation::Refused(Refused {
                refusal,
                location: None,
            });
        }
        let mut rules = self.normalization;
        rules.merge_slashes |= options.merge_slashes;
        let path = match already_normal(req.path, &rules) {
            // Most paths: nothing to change, nothing copied.
            Some(p) => Cow::Borrowed(p),
            None => match normalize_in_full(req.path, &rules) {
                PathVerdict::Forward(p) => Cow::Owned(p),
                PathVerdict::Reject => {
                    return Evaluation::Refused(Refused {
                        refusal: Refusal::EscapedSeparator,
                        location: None,
                    })
                }
                PathVerdict::Ambiguous => {
                    return Evaluation::Refused(Refused {
                        refusal: Refusal::AmbiguousPath,
                        location: None,
                    })
                }
                PathVerdict::Redirect(p) => {
                    let location = match req.query {
                        Some(q) => format!("{p}?{q}"),
                        None => p,
                    };
                    return Evaluation::Refused(Refused {
                        refusal: Refusal::PathRedirect,
                        location: Some(location),
                    });
                }
            },
        };
        let drop_underscores = match rules.headers_with_underscores_action {
            Underscores::Allow => false,
            Underscores::RejectRequest if has_underscore_name(req.headers) => {
                return Evaluation::Refused(Refused {
                    refusal: Refusal::HeaderWithUnderscores,
                    location: None,
                })
            }
            Underscores::RejectRequest => false,
            Underscores::DropHeader => has_underscore_name(req.headers),
        };
        let view = View {
            headers: req.headers,
            query: req.query,
            hide_underscores: drop_underscores,
            authorization: Some(authorization),
        };
        let auth = authenticate(self, &view, now, keys).await;
        let decision = self.decide(req.caller, req.method, &path, &view, &auth.outcomes);
        Evaluation::Decided(Decided {
            path,
            outcomes: auth.outcomes,
            forwarded_tokens: auth.forwarded_tokens,
            drop_underscores,
            decision,
        })
    }

    /// Step 4: the intentions table's decision, given the token outcomes.
    pub fn decide(
        &self,
        caller: Option<Caller<'_>>,
        method: &str,
        path: &str,
        headers: &dyn tribune_authz::Headers,
        outcomes: &[Outcome],
    ) -> Decision {
        let facts = self.providers.iter().zip(outcomes).map(|(p, o)| {
            (
                p.name.as_str(),
                match o {
                    Outcome::Missing => TokenOutcome::Missing,
                    Outcome::Stray(Stray::OtherIssuer(iss)) => {
                        TokenOutcome::Stray(StrayToken::OtherIssuer(iss.as_deref()))
                    }
                    Outcome::Stray(Stray::Malformed(m)) => {
                        TokenOutcome::Stray(StrayToken::Malformed(m))
                    }
                    Outcome::Stray(Stray::Elsewhere(at)) => {
                        TokenOutcome::Stray(StrayToken::Elsewhere(at))
                    }
                    Outcome::Invalid(JwtError::Malformed(m)) => TokenOutcome::Malformed(m),
                    Outcome::Invalid(e) => TokenOutcome::Invalid(e.text()),
                    Outcome::Valid { payload, .. } => TokenOutcome::Valid(payload),
                },
            )
        });
        let decide = |token_facts: &[(&str, TokenOutcome<'_>)]| {
            self.table.evaluate(&RequestFacts {
                caller,
                method,
                path,
                headers,
                tokens: Tokens::new(token_facts),
            })
        };
        // A few providers (the usual case) are listed on the stack.
        const ON_STACK: usize = 4;
        if self.providers.len() <= ON_STACK {
            let mut listed = [("", TokenOutcome::Missing); ON_STACK];
            let mut n = 0;
            for (slot, fact) in listed.iter_mut().zip(facts) {
                *slot = fact;
                n += 1;
            }
            decide(&listed[..n])
        } else {
            decide(&facts.collect::<Vec<_>>())
        }
    }

    /// Shadow evaluation: what this (candidate) policy answers a request that `live`
    /// evaluated as `live_eval`. With the same providers and path rules as the live
    /// policy the live token outcomes and normalized path are reused (one
    /// authentication, two decisions); otherwise the request is evaluated in full.
    pub async fn shadow<V: Verify + ?Sized>(
        &self,
        live: &Policy,
        live_eval: &Evaluation<'_>,
        req: &Request<'_, '_>,
        options: Options,
        now: i64,
        keys: &V,
    ) -> Verdict {
        let same_rules = self.normalization == live.normalization;
        match live_eval {
            Evaluation::Refused(_) if same_rules => return live_eval.verdict(live),
            Evaluation::Decided(d) if same_rules && self.providers == live.providers => {
                let view = View {
                    headers: req.headers,
                    query: req.query,
                    hide_underscores: d.drop_underscores,
                    authorization: None,
                };
                let decision = self.decide(req.caller, req.method, &d.path, &view, &d.outcomes);
                return Verdict {
                    allowed: decision.allowed(),
                    status: deny_response(&decision, &self.service).map_or(200, |r| r.status),
                    why: Why::Decided(decision.code()),
                };
            }
            _ => {}
        }
        self.evaluate(req, options, now, keys).await.verdict(self)
    }

    /// The decision for a connection to a non-HTTP destination (identity only).
    pub fn decide_connection(&self, caller: Option<Caller<'_>>) -> Decision {
        self.table.evaluate(&RequestFacts::l4(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_slots_cover_every_code_once() {
        let mut seen = Vec::new();
        for slot in 0..Why::COUNT {
            let why = Why::from_slot(slot).expect("every slot below COUNT has a Why");
            assert_eq!(why.slot(), slot);
            seen.push(why.as_str());
        }
        assert_eq!(Why::from_slot(Why::COUNT), None);
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "labels are distinct");
    }

    #[test]
    fn every_refusal_has_a_distinct_label_status_and_explanation() {
        let mut labels: Vec<&str> = Refusal::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
        for r in Refusal::ALL {
            assert!(matches!(r.status(), 307 | 400 | 405), "{r:?}");
            assert!(!r.explain().is_empty());
        }
    }
}
