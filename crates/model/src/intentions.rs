//! `service-intentions`: which sources may call a destination, optionally per HTTP
//! route and with JWT requirements. Rules: Consul's validation of the entry and its precedence table.

use crate::entry::{is_false, validate_meta, Meta, WILDCARD};
use crate::error::ValidationErrors;
use crate::go;
use crate::wire;
use serde::Serialize;
use std::collections::HashSet;

/// Longest `Description` Consul accepts, in bytes.
const MAX_DESCRIPTION: usize = 512;

/// The HTTP methods a permission may name (after upper-casing).
pub const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// A validated `service-intentions` entry. `sources` are sorted by precedence,
/// highest first (stable for equal precedence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceIntentions {
    /// Destination service name, or `*` for every service.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Sources")]
    pub sources: Vec<SourceIntention>,
    /// Applies to every source of this entry (each gets a copy).
    #[serde(rename = "JWT", skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtRequirement>,
    #[serde(rename = "Meta", skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
}

impl ServiceIntentions {
    /// The Tribune extensions the entry uses (keys Consul would refuse).
    pub fn tribune_extensions(&self) -> Vec<&'static str> {
        let perms = self.sources.iter().flat_map(|s| match &s.rule {
            SourceRule::Permissions(p) => p.iter().filter_map(|p| p.jwt.as_ref()).collect(),
            SourceRule::Action(_) => Vec::new(),
        });
        let optional = self.jwt.iter().chain(perms).any(|j| j.optional);
        if optional {
            vec!["Optional"]
        } else {
            Vec::new()
        }
    }

    pub fn has_wildcard_destination(&self) -> bool {
        self.name == WILDCARD
    }

    pub fn has_any_permissions(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s.rule, SourceRule::Permissions(_)))
    }

    /// Every provider name referenced at the top level or in any permission, in order
    /// of first appearance, without repeats.
    pub fn referenced_providers(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let top = self.jwt.iter();
        let perms = self.sources.iter().flat_map(|s| match &s.rule {
            SourceRule::Permissions(p) => p.iter().filter_map(|p| p.jwt.as_ref()).collect(),
            SourceRule::Action(_) => Vec::new(),
        });
        for req in top.chain(perms) {
            for p in &req.providers {
                if seen.insert(p.name.as_str()) {
                    out.push(p.name.as_str());
                }
            }
        }
        out
    }
}

/// One source's intention towards the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceIntention {
    /// Source service name, or `*`.
    #[serde(rename = "Name")]
    pub name: String,
    /// L4 action, or L7 permissions: never both.
    #[serde(flatten)]
    pub rule: SourceRule,
    /// Computed from how exact source and destination are (§c.6); input is ignored.
    #[serde(rename = "Precedence")]
    pub precedence: u32,
    /// Always `consul`.
    #[serde(rename = "Type")]
    pub source_type: SourceType,
    #[serde(rename = "Description", skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Cluster peer of the source; empty for local sources.
    #[serde(rename = "Peer", skip_serializing_if = "String::is_empty")]
    pub peer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SourceType {
    #[serde(rename = "consul")]
    Consul,
}

/// What a source intention decides: one action (L4) or ordered permissions (L7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SourceRule {
    Action(Action),
    Permissions(Vec<Permission>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    #[serde(rename = "allow")]
    Allow,
    #[serde(rename = "deny")]
    Deny,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// An L7 rule: when `http` matches, `action` applies (subject to `jwt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permission {
    #[serde(rename = "Action")]
    pub action: Action,
    #[serde(rename = "HTTP")]
    pub http: HttpMatch,
    #[serde(rename = "JWT", skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtRequirement>,
}

/// HTTP criteria, all AND-ed: path (at most one kind), every header, method set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpMatch {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(rename = "Header", skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderMatch>,
    /// Upper-case, each one of [`HTTP_METHODS`], no repeats.
    #[serde(rename = "Methods", skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PathMatch {
    PathExact(String),
    PathPrefix(String),
    /// RE2 syntax, matched against the whole path (no query string).
    PathRegex(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderMatch {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(flatten)]
    pub kind: HeaderMatchKind,
    #[serde(rename = "Invert", skip_serializing_if = "is_false")]
    pub invert: bool,
    /// Only with `Exact`, `Prefix`, `Suffix` or `Contains`.
    #[serde(rename = "IgnoreCase", skip_serializing_if = "is_false")]
    pub ignore_case: bool,
}

/// Exactly one way to match a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HeaderMatchKind {
    /// Always `true`: the header is present.
    Present(bool),
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(String),
}

/// Providers OR-ed: a valid token from any one of them (with its claims) satisfies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtRequirement {
    #[serde(rename = "Providers", skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<JwtProviderRef>,
    /// Tribune's extension (README, differences): a request with no token for the
    /// listed providers meets the requirement; a present token must still verify and
    /// meet its claims. Not serialized when false, so Consul's files stay as they are.
    #[serde(rename = "Optional", skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtProviderRef {
    /// Name of a `jwt-provider` entry.
    #[serde(rename = "Name")]
    pub name: String,
    /// All must hold.
    #[serde(rename = "VerifyClaims", skip_serializing_if = "Vec::is_empty")]
    pub verify_claims: Vec<ClaimVerification>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimVerification {
    #[serde(rename = "Path", skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    #[serde(rename = "Value", skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Intention precedence (§c.6) in CE, where namespaces are always exact:
/// 9 exact -> exact, 8 `*` -> exact, 6 exact -> `*`, 5 `*` -> `*`.
pub fn precedence(destination: &str, source: &str) -> u32 {
    let max = if destination == WILDCARD { 6 } else { 9 };
    let source_exact = if source == WILDCARD { 1 } else { 2 };
    max - (2 - source_exact)
}

/// Normalization (§b.2): default `Type`, precedence, legacy fields cleared, methods
/// upper-cased, sources stably sorted by precedence (highest first).
pub(crate) fn normalize(w: &mut wire::ServiceIntentions) {
    let destination = w.name.clone().unwrap_or_default();
    if let Some(sources) = w.sources.as_mut() {
        for src in sources.iter_mut() {
            if src.source_type.as_deref().unwrap_or("").is_empty() {
                src.source_type = Some("consul".into());
            }
            src.computed_precedence = precedence(&destination, src.name.as_deref().unwrap_or(""));
            src.legacy_id = None;
            src.legacy_create_time = None;
            src.legacy_update_time = None;
            for perm in src.permissions.iter_mut().flatten() {
                if let Some(http) = perm.http.as_mut() {
                    for m in http.methods.iter_mut().flatten() {
                        *m = m.to_uppercase();
                    }
                }
            }
        }
        sources.sort_by_key(|s| std::cmp::Reverse(s.computed_precedence));
    }
}

/// A name that is set, not the wildcard, must pass the one service-name rule.
fn service_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == WILDCARD {
        return Ok(());
    }
    crate::names::check_service_name(name)
}

fn wildcard_misuse(value: &str) -> bool {
    value != WILDCARD && value.contains(WILDCARD)
}

/// Validation (§b.3), every rule in Consul's order; indices are after the sort.
pub(crate) fn validate(w: wire::ServiceIntentions) -> Result<ServiceIntentions, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let name = w.name.unwrap_or_default();
    if name.is_empty() {
        errs.push("Name", "Name is required");
    }
    if wildcard_misuse(&name) {
        errs.push(
            "Name",
            "Name: wildcard character '*' cannot be used with partial values",
        );
    } else if let Err(e) = service_name(&name) {
        errs.push("Name", format!("Name: {e}"));
    }
    let destination_is_wildcard = name == WILDCARD;
    let jwt = w.jwt.map(|j| validate_jwt(j, "JWT", &mut errs));
    let meta = w.meta.unwrap_or_default();
    validate_meta(&meta, "Meta", &mut errs);

    let wire_sources = w.sources.unwrap_or_default();
    if wire_sources.is_empty() {
        errs.push("Sources", "At least one source is required");
    }

    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    let mut sources = Vec::with_capacity(wire_sources.len());
    for (i, src) in wire_sources.into_iter().enumerate() {
        let p = format!("Sources[{i}]");
        let src_name = src.name.unwrap_or_default();
        let peer = src.peer.unwrap_or_default();
        let sameness_group = src.sameness_group.unwrap_or_default();
        if src_name.is_empty() {
            errs.push(format!("{p}.Name"), format!("{p}.Name is required"));
        }
        if !sameness_group.is_empty() {
            errs.push(
                format!("{p}.SamenessGroup"),
                format!("{p}.SamenessGroup: Sameness groups are a Consul Enterprise feature. "),
            );
        }
        if wildcard_misuse(&src_name) {
            errs.push(
                format!("{p}.Name"),
                format!("{p}.Name: wildcard character '*' cannot be used with partial values"),
            );
        } else if let Err(e) = service_name(&src_name) {
            errs.push(format!("{p}.Name"), format!("{p}.Name: {e}"));
        }
        if peer.contains(WILDCARD) {
            errs.push(
                format!("{p}.Peer"),
                format!("{p}.Peer: cannot use wildcard '*' in peer"),
            );
        }
        if sameness_group.contains(WILDCARD) {
            errs.push(
                format!("{p}.SamenessGroup"),
                format!("{p}.SamenessGroup: cannot use wildcard '*' in sameness group"),
            );
        }
        if !sameness_group.is_empty() && !peer.is_empty() {
            errs.push(
                format!("{p}.SamenessGroup"),
                format!("{p}.SamenessGroup: cannot set SamenessGroup and Peer at the same time"),
            );
        }
        let description = src.description.unwrap_or_default();
        if description.len() > MAX_DESCRIPTION {
            errs.push(
                format!("{p}.Description"),
                format!("{p}.Description exceeds maximum length {MAX_DESCRIPTION}"),
            );
        }
        if !src.legacy_meta.unwrap_or_default().is_empty() {
            errs.push(
                format!("{p}.LegacyMeta"),
                format!("{p}.LegacyMeta must be omitted"),
            );
        }
        let action_text = src.action.unwrap_or_default();
        let wire_perms = src.permissions.unwrap_or_default();
        let action = Action::parse(&action_text);
        if wire_perms.is_empty() && action.is_none() {
            errs.push(
                format!("{p}.Action"),
                format!("{p}.Action must be set to 'allow' or 'deny'"),
            );
        }
        if !wire_perms.is_empty() && !action_text.is_empty() {
            errs.push(
                format!("{p}.Action"),
                format!("{p}.Action must be omitted if Permissions are specified"),
            );
        }
        if destination_is_wildcard && !wire_perms.is_empty() {
            errs.push(
                format!("{p}.Permissions"),
                format!(
                    "{p}.Permissions cannot be specified on intentions with wildcarded destinations"
                ),
            );
        }
        if src.source_type.as_deref() != Some("consul") {
            errs.push(
                format!("{p}.Type"),
                format!("{p}.Type must be set to 'consul'"),
            );
        }
        let perms: Vec<Permission> = wire_perms
            .into_iter()
            .enumerate()
            .filter_map(|(j, perm)| {
                validate_permission(perm, &format!("{p}.Permissions[{j}]"), &mut errs)
            })
            .collect();

        if !seen.insert((peer.clone(), sameness_group.clone(), src_name.clone())) {
            let msg = if !peer.is_empty() {
                format!(
                    "{p} defines peer({}) {} more than once",
                    go::quote(&peer),
                    go::quote(&src_name)
                )
            } else if !sameness_group.is_empty() {
                format!(
                    "{p} defines sameness-group({}) {} more than once",
                    go::quote(&sameness_group),
                    go::quote(&src_name)
                )
            } else {
                format!("{p} defines {} more than once", go::quote(&src_name))
            };
            errs.push(p.clone(), msg);
        }

        let rule = if perms.is_empty() {
            action.map(SourceRule::Action)
        } else {
            Some(SourceRule::Permissions(perms))
        };
        if let Some(rule) = rule {
            sources.push(SourceIntention {
                precedence: src.computed_precedence,
                name: src_name,
                rule,
                source_type: SourceType::Consul,
                description,
                peer,
            });
        }
    }

    if errs.is_empty() {
        check_regexes(&sources, &mut errs);
    }
    if errs.is_empty() {
        Ok(ServiceIntentions {
            name,
            sources,
            jwt,
            meta,
        })
    } else {
        Err(errs)
    }
}

/// Every regex compiles as the sidecar compiles it (a bad one is refused here, not
/// found by each sidecar), and all of them together within
/// [`crate::re::ENTRY_REGEX_BUDGET`], at most [`crate::re::ENTRY_MAX_REGEXES`] of
/// them (validation is anyone's: `config/validate` takes anonymous entries, so the
/// work it does is bounded too). Run on a valid entry, so `sources` has the input's
/// indexes.
fn check_regexes(sources: &[SourceIntention], errs: &mut ValidationErrors) {
    let mut left = crate::re::ENTRY_REGEX_BUDGET;
    let mut counted = HashSet::new();
    for (i, src) in sources.iter().enumerate() {
        let SourceRule::Permissions(perms) = &src.rule else {
            continue;
        };
        for (j, perm) in perms.iter().enumerate() {
            let p = format!("Sources[{i}].Permissions[{j}].HTTP");
            let path = match &perm.http.path {
                Some(PathMatch::PathRegex(r)) => Some((format!("{p}.PathRegex"), r)),
                _ => None,
            };
            let headers = perm
                .http
                .header
                .iter()
                .enumerate()
                .filter_map(|(k, h)| match &h.kind {
                    HeaderMatchKind::Regex(r) => Some((format!("{p}.Header[{k}].Regex"), r)),
                    _ => None,
                });
            for (field, pattern) in path.into_iter().chain(headers) {
                // A pattern used again was checked (and counted) where it first stood.
                if !counted.insert(pattern.as_str()) {
                    continue;
                }
                if counted.len() > crate::re::ENTRY_MAX_REGEXES {
                    errs.push(
                        field.clone(),
                        format!(
                            "{field}: the entry has more than {} distinct regular expressions (Tribune's bound per entry)",
                            crate::re::ENTRY_MAX_REGEXES
                        ),
                    );
                    return;
                }
                if let Err(e) = crate::re::full_match(pattern) {
                    let why = e.to_string().replace('\n', " ");
                    errs.push(
                        field.clone(),
                        format!("{field} is not a valid regular expression: {why}"),
                    );
                    continue;
                }
                match crate::re::full_match_size(pattern, left) {
                    Some(size) => left -= size,
                    None => {
                        errs.push(
                            field.clone(),
                            format!(
                                "{field}: the entry's regular expressions together compile to more than {} MiB (Tribune's bound per entry); share patterns or simplify them",
                                crate::re::ENTRY_REGEX_BUDGET >> 20
                            ),
                        );
                        return;
                    }
                }
            }
        }
    }
}

fn validate_jwt(
    j: wire::JwtRequirement,
    path: &str,
    errs: &mut ValidationErrors,
) -> JwtRequirement {
    let providers = j
        .providers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(k, p)| {
            let name = p.name.unwrap_or_default();
            if name.is_empty() {
                errs.push(
                    format!("{path}.Providers[{k}].Name"),
                    "JWT provider name is required",
                );
            }
            JwtProviderRef {
                name,
                verify_claims: p
                    .verify_claims
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| ClaimVerification {
                        path: c.path.unwrap_or_default(),
                        value: c.value.unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect();
    JwtRequirement {
        providers,
        optional: j.optional.unwrap_or(false),
    }
}

fn validate_permission(
    perm: wire::Permission,
    p: &str,
    errs: &mut ValidationErrors,
) -> Option<Permission> {
    let before = errs.0.len();
    let action = Action::parse(perm.action.as_deref().unwrap_or(""));
    if action.is_none() {
        errs.push(
            format!("{p}.Action"),
            format!("{p}.Action must be set to 'allow' or 'deny'"),
        );
    }
    let http = match perm.http {
        None => {
            errs.push(format!("{p}.HTTP"), format!("{p}.HTTP is required"));
            None
        }
        Some(h) => validate_http(h, &format!("{p}.HTTP"), errs),
    };
    let jwt = perm.jwt.map(|j| validate_jwt(j, &format!("{p}.JWT"), errs));
    match (action, http) {
        (Some(action), Some(http)) if errs.0.len() == before => {
            Some(Permission { action, http, jwt })
        }
        _ => None,
    }
}

fn validate_http(
    h: wire::HttpPermission,
    p: &str,
    errs: &mut ValidationErrors,
) -> Option<HttpMatch> {
    let before = errs.0.len();
    let exact = h.path_exact.unwrap_or_default();
    let prefix = h.path_prefix.unwrap_or_default();
    let regex = h.path_regex.unwrap_or_default();
    if !exact.is_empty() && !exact.starts_with('/') {
        errs.push(
            format!("{p}.PathExact"),
            format!(
                "{p}.PathExact doesn't start with '/': {}",
                go::quote(&exact)
            ),
        );
    }
    if !prefix.is_empty() && !prefix.starts_with('/') {
        errs.push(
            format!("{p}.PathPrefix"),
            format!(
                "{p}.PathPrefix doesn't start with '/': {}",
                go::quote(&prefix)
            ),
        );
    }
    let path_parts = [&exact, &prefix, &regex]
        .iter()
        .filter(|s| !s.is_empty())
        .count();
    if path_parts > 1 {
        errs.push(
            p,
            format!("{p} should only contain at most one of PathExact, PathPrefix, or PathRegex"),
        );
    }
    let path = if !exact.is_empty() {
        Some(PathMatch::PathExact(exact))
    } else if !prefix.is_empty() {
        Some(PathMatch::PathPrefix(prefix))
    } else if !regex.is_empty() {
        Some(PathMatch::PathRegex(regex))
    } else {
        None
    };

    let mut header = Vec::new();
    let wire_headers = h.header.unwrap_or_default();
    for (k, hdr) in wire_headers.into_iter().enumerate() {
        let hp = format!("{p}.Header[{k}]");
        let name = hdr.name.unwrap_or_default();
        if name.is_empty() {
            errs.push(
                format!("{hp}.Name"),
                format!("{hp} missing required Name field"),
            );
            continue;
        }
        let present = hdr.present.unwrap_or(false);
        let ignore_case = hdr.ignore_case.unwrap_or(false);
        let candidates = [
            present.then_some(HeaderMatchKind::Present(true)),
            hdr.exact
                .filter(|s| !s.is_empty())
                .map(HeaderMatchKind::Exact),
            hdr.prefix
                .filter(|s| !s.is_empty())
                .map(HeaderMatchKind::Prefix),
            hdr.suffix
                .filter(|s| !s.is_empty())
                .map(HeaderMatchKind::Suffix),
            hdr.contains
                .filter(|s| !s.is_empty())
                .map(HeaderMatchKind::Contains),
            hdr.regex
                .filter(|s| !s.is_empty())
                .map(HeaderMatchKind::Regex),
        ];
        let mut set: Vec<HeaderMatchKind> = candidates.into_iter().flatten().collect();
        if set.len() != 1 {
            errs.push(
                hp,
                format!(
                    "{p}.Header[{k}] should only contain one of Present, Exact, Prefix, Suffix, Contains, or Regex"
                ),
            );
            continue;
        }
        let kind = set.remove(0);
        if ignore_case
            && matches!(
                kind,
                HeaderMatchKind::Present(_) | HeaderMatchKind::Regex(_)
            )
        {
            errs.push(
                format!("{hp}.IgnoreCase"),
                format!(
                    "{p}.Header[{k}] should set one of Exact, Prefix, Suffix, or Contains when using IgnoreCase"
                ),
            );
            continue;
        }
        header.push(HeaderMatch {
            name,
            kind,
            invert: hdr.invert.unwrap_or(false),
            ignore_case,
        });
    }

    let methods = h.methods.unwrap_or_default();
    let mut seen = HashSet::new();
    for m in &methods {
        if !HTTP_METHODS.contains(&m.as_str()) {
            errs.push(
                format!("{p}.Methods"),
                format!("{p}.Methods contains an invalid method {}", go::quote(m)),
            );
        } else if !seen.insert(m.as_str()) {
            errs.push(
                format!("{p}.Methods"),
                format!("{p}.Methods contains {} more than once", go::quote(m)),
            );
        }
    }
    if errs.0.len() == before && path.is_none() && header.is_empty() && methods.is_empty() {
        errs.push(p, format!("{p} should not be empty"));
    }
    (errs.0.len() == before).then_some(HttpMatch {
        path,
        header,
        methods,
    })
}
