//! Compiling the intentions that apply to one destination, and deciding requests
//! with exactly the algorithm of Consul's generated RBAC (its RBAC generation).
//!
//! # How Consul's ordered intentions decide
//!
//! The intentions for destination `api` are the sources of the `api` entry and of the
//! `*` entry, one intention per source, each carrying its entry's top-level JWT. They
//! are sorted by precedence (9 `web -> api`, 8 `* -> api`, 6 `web -> *`, 5 `* -> *`),
//! ties broken by (peer, source, destination) ascending, and a later intention whose
//! source was already seen is dropped (`web -> api` hides `web -> *`).
//!
//! An intention *fires* for caller `S` when its source matches `S`, no earlier
//! intention with a strictly more specific source (an exact name under a `*`) matches
//! `S`, its action differs from the default, and its JWT holds (L4) or one of its
//! permissions fires (L7: the first permission whose HTTP criteria match, if its
//! action differs from the default and the top-level AND permission JWT hold). The
//! result is the non-default action if any intention fires, else the default.
//!
//! Worked example (callers to `api`): `* -> api allow` (8) and `web -> * deny` (6).
//! Default deny: `web` is allowed: the deny equals the default and cannot fire, the
//! `*` allow fires. Default allow: `web` is *denied*: the `*` allow cannot fire, and the
//! `web` deny is not shadowed because the earlier `*` source is less specific.
//!
//! After the dedupe every caller has at most two candidates: the intention whose
//! source is exactly its name, and the one whose source is `*` (both for its peer).
//! Evaluation is therefore two hash lookups plus the permissions of those two.

use crate::decision::{Decision, NotFired, Reason};
use crate::facts::RequestFacts;
use crate::matchers::{HttpMatcher, JwtMatcher, RegexCache};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// String-keyed map with a fast hasher (keys are service and peer names from config,
/// not attacker-chosen input sizes; foldhash is seeded per process).
type FastMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;
use tribune_model::intentions::{Action, SourceRule};
use tribune_model::{JwtProvider, ServiceIntentions, WILDCARD};

/// Everything compilation needs for one destination.
pub struct CompileInput<'a> {
    /// The destination service.
    pub destination: &'a str,
    /// `service-intentions` entries; those named `destination` or `*` apply.
    pub entries: &'a [&'a ServiceIntentions],
    /// Every configured `jwt-provider` (for Issuers and the `*` provider).
    pub providers: &'a [&'a JwtProvider],
    /// Whether the destination speaks an HTTP-like protocol (`http`, `http2`, `grpc`).
    pub http: bool,
    /// The default intention policy.
    pub default: Action,
}

/// Whether a protocol name is HTTP-like (Consul's `IsProtocolHTTPLike`).
pub fn is_http_like(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc")
}

/// Identity of one flattened intention, for explanations and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentionInfo {
    pub source: String,
    pub source_peer: String,
    pub destination: String,
    pub precedence: u32,
    /// Action of an L4 intention; `None` for L7 (permissions).
    pub action: Option<Action>,
}

#[derive(Debug, Clone)]
enum Rule {
    L4(Action),
    L7(Vec<PermissionMatcher>),
}

#[derive(Debug, Clone)]
struct PermissionMatcher {
    action: Action,
    http: HttpMatcher,
    jwt: Option<JwtMatcher>,
}

#[derive(Debug, Clone)]
struct Compiled {
    info: IntentionInfo,
    top_jwt: Option<JwtMatcher>,
    rule: Rule,
}

/// The intentions of one destination, compiled for fast evaluation.
#[derive(Debug, Clone)]
pub struct IntentionTable {
    destination: String,
    http: bool,
    default: Action,
    intentions: Vec<Compiled>,
    /// Local sources: name -> index of the intention with that exact source.
    exact_local: FastMap<usize>,
    /// Index of the intention whose source is the local `*`.
    wildcard_local: Option<usize>,
    /// Peered sources: peer -> name -> index.
    exact_peered: FastMap<FastMap<usize>>,
    /// Peered wildcards: peer -> index of `*` from that peer.
    wildcard_peered: FastMap<usize>,
    /// provider name -> Issuer, for every configured provider.
    issuers: crate::matchers::Issuers,
    /// Providers referenced by this table's intentions (only these need verifying).
    referenced: Vec<String>,
}

/// Why a table could not be compiled (the previous table should stay in force).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// Where: `service-intentions/<name>: Sources[i]...`.
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for CompileError {}

/// Compiles the intentions that apply to `input.destination`.
///
/// Fails (with every problem) when a regex does not compile or an intention names a
/// provider that is not configured: like Consul, the previous table stays in force.
pub fn compile(input: &CompileInput<'_>) -> Result<IntentionTable, Vec<CompileError>> {
    let issuers: crate::matchers::Issuers = input
        .providers
        .iter()
        .map(|p| (Arc::<str>::from(p.name.as_str()), p.issuer.clone()))
        .collect();
    let mut errors = Vec::new();
    let mut flat: Vec<Compiled> = Vec::new();
    let mut referenced = BTreeSet::new();
    let mut regexes = RegexCache::default();
    for entry in input.entries {
        if entry.name != input.destination && entry.name != WILDCARD {
            continue;
        }
        let top_jwt = entry.jwt.as_ref().map(JwtMatcher::compile);
        for (i, src) in entry.sources.iter().enumerate() {
            let location = format!("service-intentions/{}: Sources[{i}]", entry.name);
            let rule = match &src.rule {
                SourceRule::Action(a) => Rule::L4(*a),
                SourceRule::Permissions(perms) => {
                    let mut out = Vec::with_capacity(perms.len());
                    for (j, p) in perms.iter().enumerate() {
                        let field = format!("Permissions[{j}].HTTP");
                        let deny = p.action == Action::Deny;
                        match HttpMatcher::compile(&p.http, &field, &mut regexes, deny) {
                            Ok(http) => out.push(PermissionMatcher {
                                action: p.action,
                                http,
                                jwt: p.jwt.as_ref().map(JwtMatcher::compile),
                            }),
                            Err(message) => errors.push(CompileError {
                                location: location.clone(),
                                message,
                            }),
                        }
                    }
                    Rule::L7(out)
                }
            };
            let jwts = top_jwt.iter().chain(match &rule {
                Rule::L7(perms) => perms.iter().filter_map(|p| p.jwt.as_ref()).collect(),
                Rule::L4(_) => Vec::new(),
            });
            for j in jwts {
                for name in j.provider_names() {
                    match name {
                        None => referenced.extend(issuers.keys().map(|k| k.to_string())),
                        Some(n) if issuers.contains_key(n) => {
                            referenced.insert(n.to_string());
                        }
                        Some(n) => errors.push(CompileError {
                            location: location.clone(),
                            message: format!(
                                "provider specified in intention does not exist. Provider name: {n}"
                            ),
                        }),
                    }
                }
            }
            flat.push(Compiled {
                info: IntentionInfo {
                    source: src.name.clone(),
                    source_peer: src.peer.clone(),
                    destination: entry.name.clone(),
                    precedence: src.precedence,
                    action: match src.rule {
                        SourceRule::Action(a) => Some(a),
                        SourceRule::Permissions(_) => None,
                    },
                },
                top_jwt: top_jwt.clone(),
                rule,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    flat.sort_by(|a, b| {
        b.info
            .precedence
            .cmp(&a.info.precedence)
            .then_with(|| a.info.source_peer.cmp(&b.info.source_peer))
            .then_with(|| a.info.source.cmp(&b.info.source))
            .then_with(|| a.info.destination.cmp(&b.info.destination))
    });
    let mut intentions = Vec::with_capacity(flat.len());
    let mut exact_local: FastMap<usize> = FastMap::default();
    let mut wildcard_local: Option<usize> = None;
    let mut exact_peered: FastMap<FastMap<usize>> = FastMap::default();
    let mut wildcard_peered: FastMap<usize> = FastMap::default();
    for c in flat {
        let idx = intentions.len();
        let info = &c.info;
        let fresh = match (info.source_peer.is_empty(), info.source == WILDCARD) {
            (true, true) => wildcard_local.get_or_insert(idx) == &idx,
            (true, false) => {
                *exact_local
                    .entry(info.source.as_str().into())
                    .or_insert(idx)
                    == idx
            }
            (false, true) => {
                *wildcard_peered
                    .entry(info.source_peer.as_str().into())
                    .or_insert(idx)
                    == idx
            }
            (false, false) => {
                *exact_peered
                    .entry(info.source_peer.as_str().into())
                    .or_default()
                    .entry(info.source.as_str().into())
                    .or_insert(idx)
                    == idx
            }
        };
        if fresh {
            intentions.push(c);
        }
    }
    Ok(IntentionTable {
        destination: input.destination.to_string(),
        http: input.http,
        default: input.default,
        intentions,
        exact_local,
        wildcard_local,
        exact_peered,
        wildcard_peered,
        issuers,
        referenced: referenced.into_iter().collect(),
    })
}

impl IntentionTable {
    pub fn destination(&self) -> &str {
        &self.destination
    }

    pub fn default_action(&self) -> Action {
        self.default
    }

    /// Whether L7 permissions and JWT requirements apply (HTTP-like protocol).
    pub fn is_http(&self) -> bool {
        self.http
    }

    /// The sorted, deduplicated intentions.
    pub fn intentions(&self) -> impl Iterator<Item = &IntentionInfo> {
        self.intentions.iter().map(|c| &c.info)
    }

    pub fn intention(&self, index: usize) -> Option<&IntentionInfo> {
        self.intentions.get(index).map(|c| &c.info)
    }

    /// Providers whose tokens this table can use; the proxy verifies only these.
    /// Empty for non-HTTP destinations, where JWT requirements are ignored.
    pub fn referenced_providers(&self) -> &[String] {
        if self.http {
            &self.referenced
        } else {
            &[]
        }
    }

    /// How permission `permission` of intention `intention` read the request's
    /// headers, when it has header criteria (hardening round 3, item 4): explain says
    /// it, since a deny reads any value and an allow every value.
    pub fn header_reading(&self, intention: usize, permission: usize) -> Option<&'static str> {
        let c = self.intentions.get(intention)?;
        let Rule::L7(perms) = &c.rule else {
            return None;
        };
        let p = perms.get(permission)?;
        p.http.has_headers().then_some(match p.action {
            Action::Deny => "its header criteria hold when any value of the header (its `_` spelling included) matches",
            Action::Allow => "its header criteria hold only when every value of the header (its `_` spelling included) matches",
        })
    }

    /// `source -> destination` as users write it, with the peer when there is one.
    pub fn describe(&self, index: usize) -> String {
        match self.intentions.get(index) {
            None => format!("#{index}"),
            Some(c) => {
                let src = if c.info.source_peer.is_empty() {
                    c.info.source.clone()
                } else {
                    format!("{} (peer {})", c.info.source, c.info.source_peer)
                };
                format!(
                    "{src} -> {} (precedence {})",
                    c.info.destination, c.info.precedence
                )
            }
        }
    }

    /// The candidates for a caller, in list order: (index, shadowing index for a `*`).
    fn candidates(&self, facts: &RequestFacts<'_>) -> [Option<(usize, Option<usize>)>; 2] {
        let (exact, wild) = match facts.caller {
            None => (None, self.wildcard_local),
            Some(c) if c.peer.is_empty() => {
                (self.exact_local.get(c.name).copied(), self.wildcard_local)
            }
            Some(c) => (
                self.exact_peered
                    .get(c.peer)
                    .and_then(|m| m.get(c.name))
                    .copied(),
                self.wildcard_peered.get(c.peer).copied(),
            ),
        };
        match (exact, wild) {
            (Some(e), Some(w)) if e < w => [Some((e, None)), Some((w, Some(e)))],
            (Some(e), Some(w)) => [Some((w, None)), Some((e, None))],
            (Some(e), None) => [Some((e, None)), None],
            (None, Some(w)) => [Some((w, None)), None],
            (None, None) => [None, None],
        }
    }

    /// Decides one request (§c.4).
    pub fn evaluate(&self, facts: &RequestFacts<'_>) -> Decision {
        let mut closest: Option<(usize, NotFired)> = None;
        for (idx, shadowed_by) in self.candidates(facts).into_iter().flatten() {
            let outcome = match shadowed_by {
                Some(by) => Err(NotFired::Shadowed { by }),
                None => self.fires(&self.intentions[idx], facts),
            };
            match outcome {
                Ok(permission) => {
                    return Decision {
                        action: opposite(self.default),
                        reason: Reason::Fired {
                            intention: idx,
                            permission,
                        },
                    }
                }
                Err(why) => {
                    if closest.is_none() {
                        closest = Some((idx, why));
                    }
                }
            }
        }
        Decision {
            action: self.default,
            reason: Reason::Default { closest },
        }
    }

    /// Whether `c` fires; `Ok(permission index)` when it does.
    fn fires(&self, c: &Compiled, facts: &RequestFacts<'_>) -> Result<Option<usize>, NotFired> {
        match &c.rule {
            Rule::L4(action) => {
                if *action == self.default {
                    return Err(NotFired::SameAsDefault);
                }
                if self.http {
                    if let Some(j) = &c.top_jwt {
                        j.check(facts.tokens, &self.issuers)
                            .map_err(|failure| NotFired::Jwt {
                                permission: None,
                                failure,
                            })?;
                    }
                }
                Ok(None)
            }
            Rule::L7(_) if !self.http => {
                // Consul's network filter treats an L7 intention as deny.
                if self.default == Action::Deny {
                    Err(NotFired::PermissionsOnNonHttp)
                } else {
                    Ok(None)
                }
            }
            Rule::L7(perms) => {
                let Some((j, p)) = perms
                    .iter()
                    .enumerate()
                    .find(|(_, p)| p.http.matches(facts))
                else {
                    return Err(NotFired::NoPermissionMatched);
                };
                if p.action == self.default {
                    return Err(NotFired::PermissionSameAsDefault { permission: j });
                }
                for jwt in [c.top_jwt.as_ref(), p.jwt.as_ref()].into_iter().flatten() {
                    jwt.check(facts.tokens, &self.issuers)
                        .map_err(|failure| NotFired::Jwt {
                            permission: Some(j),
                            failure,
                        })?;
                }
                Ok(Some(j))
            }
        }
    }

    /// Consul's intention check (`/v1/connect/intentions/check`, §c.9): the first
    /// intention matching the caller decides; an L7 intention counts as deny; JWT is
    /// ignored; no match means the default. Returns the allowed flag and the index of
    /// the deciding intention.
    pub fn check(&self, caller: Option<crate::facts::Caller<'_>>) -> (bool, Option<usize>) {
        let facts = RequestFacts::l4(caller);
        match self.candidates(&facts)[0] {
            None => (self.default == Action::Allow, None),
            Some((idx, _)) => {
                let allowed = matches!(self.intentions[idx].rule, Rule::L4(Action::Allow));
                (allowed, Some(idx))
            }
        }
    }
}

fn opposite(a: Action) -> Action {
    match a {
        Action::Allow => Action::Deny,
        Action::Deny => Action::Allow,
    }
}
