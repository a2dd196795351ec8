//! Compiled matchers: HTTP criteria (path, headers, methods) and JWT requirements.
//! Regexes are compiled once per config change, never per request.

use crate::decision::JwtFailure;
use crate::facts::{Headers, RequestFacts, StrayToken, TokenOutcome, Tokens};
use regex::bytes::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use tribune_model::claims::Claims;
use tribune_model::intentions::{
    HeaderMatch, HeaderMatchKind, HttpMatch, JwtRequirement, PathMatch,
};

/// Provider name -> its `Issuer` (looked up on every JWT check: a fast hasher). The
/// names are shared: a failure names its provider without allocating.
pub(crate) type Issuers = HashMap<Arc<str>, String, foldhash::fast::RandomState>;

/// The provider name that stands for "any configured provider" (decisions.md #9).
pub const ANY_PROVIDER: &str = "*";

/// Compiles a user regex for a full match (Envoy `safe_regex` semantics, RE2 syntax).
///
/// Byte-oriented and without Unicode tables: request paths are ASCII on the wire, and
/// like RE2, `\w`, `\d`, `\s` and `\b` are ASCII. Unicode classes (`\pL`) are
/// rejected at compile time. Half the compile cost of the Unicode engine.
pub(crate) fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    tribune_model::re::full_match(pattern).map_err(|e| e.to_string())
}

/// Compiled regexes shared by pattern for one compilation: configs repeat the same
/// patterns across many sources, and a `Regex` clone shares its compiled program.
#[derive(Default)]
pub(crate) struct RegexCache(HashMap<String, Regex>);

impl RegexCache {
    fn get(&mut self, pattern: &str) -> Result<Regex, String> {
        if let Some(r) = self.0.get(pattern) {
            return Ok(r.clone());
        }
        let r = full_match_regex(pattern)?;
        self.0.insert(pattern.to_string(), r.clone());
        Ok(r)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum PathMatcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub(crate) enum HeaderKind {
    Present,
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub(crate) struct HeaderMatcher {
    name: String,
    kind: HeaderKind,
    invert: bool,
    ignore_case: bool,
    /// In a deny permission: any value decides (see [`HeaderMatcher::matches`]).
    any_value: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpMatcher {
    path: Option<PathMatcher>,
    headers: Vec<HeaderMatcher>,
    methods: Vec<String>,
}

impl HttpMatcher {
    /// `deny`: the permission's action is deny (its header criteria match on any
    /// value; an allow's on every value).
    pub(crate) fn compile(
        m: &HttpMatch,
        field: &str,
        regexes: &mut RegexCache,
        deny: bool,
    ) -> Result<Self, String> {
        let path = match &m.path {
            None => None,
            Some(PathMatch::PathExact(p)) => Some(PathMatcher::Exact(p.clone())),
            Some(PathMatch::PathPrefix(p)) => Some(PathMatcher::Prefix(p.clone())),
            Some(PathMatch::PathRegex(r)) => {
                Some(PathMatcher::Regex(regexes.get(r).map_err(|e| {
                    format!("{field}.PathRegex: invalid regex: {e}")
                })?))
            }
        };
        let headers = m
            .header
            .iter()
            .enumerate()
            .map(|(k, h)| HeaderMatcher::compile(h, &format!("{field}.Header[{k}]"), regexes, deny))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpMatcher {
            path,
            headers,
            methods: m.methods.clone(),
        })
    }

    /// Whether any header criterion is part of the match.
    pub(crate) fn has_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// Path AND every header AND method set.
    pub(crate) fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        let path_ok = match &self.path {
            None => true,
            Some(PathMatcher::Exact(p)) => facts.path == p,
            Some(PathMatcher::Prefix(p)) => facts.path.starts_with(p.as_str()),
            Some(PathMatcher::Regex(r)) => r.is_match(facts.path.as_bytes()),
        };
        path_ok
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == facts.method))
            && self.headers.iter().all(|h| h.matches(facts.headers))
    }
}

impl HeaderMatcher {
    fn compile(
        h: &HeaderMatch,
        field: &str,
        regexes: &mut RegexCache,
        any_value: bool,
    ) -> Result<Self, String> {
        let fold = |s: &String| {
            if h.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.clone()
            }
        };
        let kind = match &h.kind {
            HeaderMatchKind::Present(_) => HeaderKind::Present,
            HeaderMatchKind::Exact(v) => HeaderKind::Exact(fold(v)),
            HeaderMatchKind::Prefix(v) => HeaderKind::Prefix(fold(v)),
            HeaderMatchKind::Suffix(v) => HeaderKind::Suffix(fold(v)),
            HeaderMatchKind::Contains(v) => HeaderKind::Contains(fold(v)),
            HeaderMatchKind::Regex(r) => HeaderKind::Regex(
                regexes
                    .get(r)
                    .map_err(|e| format!("{field}.Regex: invalid regex: {e}"))?,
            ),
        };
        Ok(HeaderMatcher {
            name: h.name.clone(),
            kind,
            invert: h.invert,
            ignore_case: h.ignore_case,
            any_value,
        })
    }

    /// Envoy's header matcher, made impossible to dodge (hardening round 3, item 4):
    /// an absent header matches nothing, except that an inverted `Present` ("header
    /// is absent") matches; otherwise each value's match is XOR-ed with `Invert`.
    /// The header's values are its lines and those of its look-alikes
    /// ([`crate::facts::alike`]: `x_user` is `x-user`), and
    /// - in a **deny** permission, the criterion holds when the values joined with
    ///   `,` (Envoy's reading), **any** line, or any comma-separated element of a line
    ///   matches: repeating, listing or respelling a header cannot hide a value;
    /// - in an **allow** permission, it holds only when **every** line matches: a
    ///   second line (or a look-alike) with another value is not allowed through.
    fn matches(&self, headers: &dyn Headers) -> bool {
        let lines = headers.lines(&self.name);
        if lines.is_empty() {
            return self.invert && matches!(self.kind, HeaderKind::Present);
        }
        if self.any_value {
            let joined;
            let whole: &str = if lines.len() == 1 {
                &lines[0]
            } else {
                joined = lines.join(",");
                &joined
            };
            self.hit(whole)
                || lines.iter().any(|line| {
                    self.hit(line)
                        || (line.contains(',') && line.split(',').any(|e| self.hit(e.trim())))
                })
        } else {
            lines.iter().all(|line| self.hit(line))
        }
    }

    /// One value against the criterion (`Invert` applied).
    fn hit(&self, value: &str) -> bool {
        let folded;
        let v: &str = if self.ignore_case {
            folded = value.to_ascii_lowercase();
            &folded
        } else {
            value
        };
        let hit = match &self.kind {
            HeaderKind::Present => true,
            HeaderKind::Exact(x) => v == x,
            HeaderKind::Prefix(x) => v.starts_with(x.as_str()),
            HeaderKind::Suffix(x) => v.ends_with(x.as_str()),
            HeaderKind::Contains(x) => v.contains(x.as_str()),
            HeaderKind::Regex(r) => r.is_match(v.as_bytes()),
        };
        hit != self.invert
    }
}

/// One provider reference of a requirement: which provider(s), which claims.
#[derive(Debug, Clone)]
struct ProviderCheck {
    /// `None` = the wildcard provider `*`.
    name: Option<String>,
    claims: Vec<(Vec<String>, String)>,
}

/// A JWT requirement: satisfied when any one provider's token is valid, its `iss`
/// equals that provider's Issuer, and all of that reference's claims hold.
#[derive(Debug, Clone)]
pub(crate) struct JwtMatcher {
    providers: Vec<ProviderCheck>,
    /// `Optional = true`: no token for the listed providers meets the requirement.
    optional: bool,
}

impl JwtMatcher {
    pub(crate) fn compile(req: &JwtRequirement) -> Self {
        JwtMatcher {
            providers: req
                .providers
                .iter()
                .map(|p| ProviderCheck {
                    name: (p.name != ANY_PROVIDER).then(|| p.name.clone()),
                    claims: p
                        .verify_claims
                        .iter()
                        .map(|c| (c.path.clone(), c.value.clone()))
                        .collect(),
                })
                .collect(),
            optional: req.optional,
        }
    }

    pub(crate) fn provider_names(&self) -> impl Iterator<Item = Option<&str>> {
        self.providers.iter().map(|p| p.name.as_deref())
    }

    /// `J(list)`: OR over providers. An empty list is satisfied.
    pub(crate) fn check(&self, tokens: Tokens<'_>, issuers: &Issuers) -> Result<(), JwtFailure> {
        if self.providers.is_empty() {
            return Ok(());
        }
        if self.optional {
            // A token not addressed to a provider is none of its own.
            let missing =
                |o: TokenOutcome<'_>| matches!(o, TokenOutcome::Missing | TokenOutcome::Stray(_));
            let none_present = self.providers.iter().all(|p| match &p.name {
                Some(name) => missing(tokens.get(name)),
                None => tokens.entries.iter().all(|(_, o)| missing(*o)),
            });
            if none_present {
                return Ok(());
            }
        }
        let mut first_failure: Option<JwtFailure> = None;
        for p in &self.providers {
            let result = match &p.name {
                Some(name) => check_one(name, tokens.get(name), &p.claims, issuers),
                None => {
                    // Any configured provider with a valid token and matching claims.
                    let mut any: Result<(), JwtFailure> = Err(JwtFailure::Missing {
                        provider: ANY_PROVIDER.into(),
                    });
                    for (name, outcome) in tokens.entries {
                        if !issuers.contains_key(*name) {
                            continue;
                        }
                        match check_one(name, *outcome, &p.claims, issuers) {
                            Ok(()) => {
                                any = Ok(());
                                break;
                            }
                            Err(f) => {
                                if matches!(any, Err(JwtFailure::Missing { .. })) {
                                    any = Err(f);
                                }
                            }
                        }
                    }
                    any
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(f) => {
                    // Report the most telling failure: a present-but-bad token beats
                    // a missing one.
                    // The same stray token seen by several providers: one failure
                    // naming every issuer the requirement would take.
                    if let (
                        Some(JwtFailure::IssuerUnknown { got, expected, .. }),
                        JwtFailure::IssuerUnknown {
                            got: got2,
                            expected: more,
                            ..
                        },
                    ) = (&mut first_failure, &f)
                    {
                        if got == got2 {
                            for e in more {
                                if !expected.contains(e) {
                                    expected.push(e.clone());
                                }
                            }
                            continue;
                        }
                    }
                    let replace = match (&first_failure, &f) {
                        (None, _) => true,
                        (Some(JwtFailure::Missing { .. }), JwtFailure::Missing { .. }) => false,
                        (Some(JwtFailure::Missing { .. }), _) => true,
                        _ => false,
                    };
                    if replace {
                        first_failure = Some(f);
                    }
                }
            }
        }
        // Lazily: an `Arc<str>` is an allocation, and a failure was found in practice.
        Err(first_failure.unwrap_or_else(|| JwtFailure::Missing {
            provider: "".into(),
        }))
    }
}

fn check_one(
    provider: &str,
    outcome: TokenOutcome<'_>,
    claims: &[(Vec<String>, String)],
    issuers: &Issuers,
) -> Result<(), JwtFailure> {
    let Some((name, issuer)) = issuers.get_key_value(provider) else {
        return Err(JwtFailure::UnknownProvider {
            provider: provider.into(),
        });
    };
    let payload = match outcome {
        TokenOutcome::Missing => {
            return Err(JwtFailure::Missing {
                provider: name.clone(),
            })
        }
        TokenOutcome::Invalid(reason) => {
            return Err(JwtFailure::Invalid {
                provider: name.clone(),
                reason,
            })
        }
        TokenOutcome::Stray(StrayToken::OtherIssuer(got)) => {
            return Err(JwtFailure::IssuerUnknown {
                provider: name.clone(),
                got: got.map(str::to_string),
                expected: vec![issuer.clone()],
            })
        }
        TokenOutcome::Stray(StrayToken::Elsewhere(found)) => {
            return Err(JwtFailure::WrongLocation {
                provider: name.clone(),
                found: found.to_string(),
            })
        }
        TokenOutcome::Malformed(reason) | TokenOutcome::Stray(StrayToken::Malformed(reason)) => {
            return Err(JwtFailure::Malformed {
                provider: name.clone(),
                reason,
            })
        }
        TokenOutcome::Valid(p) => p,
    };
    let iss = payload.str("iss");
    if iss.as_deref() != Some(issuer.as_str()) {
        return Err(JwtFailure::IssuerMismatch {
            provider: name.clone(),
            expected: issuer.clone(),
            got: iss.map(Cow::into_owned),
        });
    }
    for (path, expected) in claims {
        if !claim_holds(payload, path, expected) {
            return Err(JwtFailure::Claim {
                provider: name.clone(),
                path: path.clone(),
                expected: expected.clone(),
                got: payload.at(path).map(|v| v.to_string()),
            });
        }
    }
    Ok(())
}

/// [`claim_matches_at`] for the claim at `path` of `payload`. A top-level string
/// claim (the usual `role`, `scope`, `sub`) is compared as the payload holds it,
/// without decoding anything else.
pub fn claim_holds(payload: &Claims, path: &[String], expected: &str) -> bool {
    if let [name] = path {
        if let Some(s) = payload.str(name) {
            return string_matches(name, &s, expected);
        }
    }
    claim_matches_at(path, payload.at(path).as_ref(), expected)
}

/// A top-level string claim `name` against `expected`, with the scope rule of
/// [`claim_matches_at`].
fn string_matches(name: &str, s: &str, expected: &str) -> bool {
    match SPACE_DELIMITED_CLAIMS.contains(&name) {
        true => s.split(' ').any(|e| !e.is_empty() && e == expected),
        false => s == expected,
    }
}

/// Registered claims whose string value is a space-delimited list (RFC 8693 §4.2
/// `scope`; `scp` as Azure AD and others spell it).
pub const SPACE_DELIMITED_CLAIMS: [&str; 2] = ["scope", "scp"];

/// [`claim_matches`] for the claim at `path`, with Tribune's scope rule: a string under
/// a top-level [`SPACE_DELIMITED_CLAIMS`] claim matches when `expected` is one of its
/// space-separated elements (`"openid api:read"` satisfies `api:read`). Consul compares
/// the whole string, so a scope check there only works for tokens with one scope.
pub fn claim_matches_at(path: &[String], value: Option<&Value>, expected: &str) -> bool {
    match (path, value) {
        ([name], Some(Value::String(s))) => string_matches(name, s, expected),
        _ => claim_matches(value, expected),
    }
}

/// decisions.md #8: a string must equal `expected`; an array matches if any element is
/// a string equal to it; numbers and booleans match their JSON text.
pub fn claim_matches(value: Option<&Value>, expected: &str) -> bool {
    match value {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(expected)),
        Some(Value::Number(n)) => n.to_string() == expected,
        Some(Value::Bool(b)) => (if *b { "true" } else { "false" }) == expected,
        _ => false,
    }
}
