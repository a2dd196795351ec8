//! A [`PolicyDocument`] compiled into what a request is checked against: the
//! destination's intentions table, the providers it references (the `*` provider
//! expanded to every provider the document carries), the headers and parameters the
//! rewrite owns, and the path rules. Built the same way on the agent (explain, check,
//! test) and in the sidecar (every snapshot).

use crate::document::PolicyDocument;
use http::header::HeaderName;
use tribune_authz::{compile, is_http_like, Action, CompileInput, IntentionTable, ANY_PROVIDER};
use tribune_model::jwt_provider::JwtLocation;
use tribune_model::mesh::RequestNormalization;
use tribune_model::JwtProvider;

/// A header name folded for look-alike comparison: lower case, `_` as `-`.
pub fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

/// One service's compiled policy. Immutable; a new document makes a new policy.
#[derive(Debug)]
pub struct Policy {
    pub service: String,
    pub protocol: String,
    /// Whether the destination speaks HTTP (else decisions are L4, on connect).
    pub http: bool,
    pub default: Action,
    pub table: IntentionTable,
    /// The providers the intentions reference, in table order: provider `i` of a
    /// [`crate::Verify`] is `providers[i]`.
    pub providers: Vec<JwtProvider>,
    /// Every `Forwarding.HeaderName` (carried providers' and the document's other
    /// names): client copies are removed from every allowed request.
    pub forward_headers: Vec<HeaderName>,
    /// The `mesh` entry's request normalization (its defaults without one).
    pub normalization: RequestNormalization,
    /// Header token locations of providers with `Forward = false`, with their prefix
    /// (decisions.md #18): every token value there is removed from an allowed request
    /// unless a provider with `Forward = true` verified that very token.
    pub token_headers: Vec<(HeaderName, String)>,
    /// The same for query parameters (decoded names).
    pub token_params: Vec<String>,
    /// Every header token location of the referenced providers (forwarded or not).
    pub token_locations: Vec<HeaderName>,
    /// `ClaimToHeaders` of the referenced providers: (provider index, claim path,
    /// header). Client copies of these headers are removed (their names are in
    /// [`Policy::forward_headers`] too).
    pub claim_headers: Vec<(usize, Vec<String>, HeaderName)>,
    /// Headers the proxy sets or strips, folded ([`fold`]): a client header that folds
    /// to one of these is removed (`x_jwt_payload` would reach a WSGI app as
    /// `x-jwt-payload`).
    pub owned_headers: Vec<String>,
    /// Whether [`Policy::rewrite`] may remove or set `Host` ([`Policy::rewrite_touches`]),
    /// read once here rather than per request.
    pub rewrites_host: bool,
}

impl Policy {
    /// Compiles `doc`; every problem is reported, joined with `; `.
    pub fn compile(doc: &PolicyDocument) -> Result<Policy, String> {
        let intentions = doc.intentions();
        let all_providers = doc.providers();
        let http = is_http_like(&doc.protocol);
        let table = compile(&CompileInput {
            destination: &doc.service,
            entries: &intentions,
            providers: &all_providers,
            http,
            default: doc.default,
        })
        .map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let referenced = table.referenced_providers();
        let providers: Vec<JwtProvider> = all_providers
            .iter()
            .filter(|p| referenced.iter().any(|r| r == ANY_PROVIDER || *r == p.name))
            .map(|p| (*p).clone())
            .collect();
        let mut forward_headers: Vec<HeaderName> = Vec::new();
        let mut claim_header_names: Vec<HeaderName> = Vec::new();
        for p in &all_providers {
            for c in &p.claim_to_headers {
                let name = HeaderName::from_bytes(c.header_name.as_bytes()).map_err(|_| {
                    format!(
                        "jwt-provider {}: ClaimToHeaders HeaderName {:?} is not a valid header name",
                        p.name, c.header_name
                    )
                })?;
                if !claim_header_names.contains(&name) {
                    claim_header_names.push(name);
                }
            }
            if let Some(fw) = &p.forwarding {
                let name = HeaderName::from_bytes(fw.header_name.as_bytes()).map_err(|_| {
                    format!(
                        "jwt-provider {}: Forwarding.HeaderName {:?} is not a valid header name",
                        p.name, fw.header_name
                    )
                })?;
                if !forward_headers.contains(&name) {
                    forward_headers.push(name);
                }
            }
        }
        for name in claim_header_names {
            if !forward_headers.contains(&name) {
                forward_headers.push(name);
            }
        }
        for h in &doc.forwarding_headers {
            if let Ok(name) = HeaderName::from_bytes(h.as_bytes()) {
                if !forward_headers.contains(&name) {
                    forward_headers.push(name);
                }
            }
        }
        let mut token_headers: Vec<(HeaderName, String)> = Vec::new();
        let mut token_params: Vec<String> = Vec::new();
        let mut token_locations: Vec<HeaderName> = Vec::new();
        let mut owned_headers: Vec<String> =
            forward_headers.iter().map(|h| fold(h.as_str())).collect();
        for p in &providers {
            let stripping = !tribune_jwt::locate::forwards_token(p);
            for loc in tribune_jwt::locate::locations(p) {
                match loc {
                    JwtLocation::Header(h) => {
                        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                            continue;
                        };
                        owned_headers.push(fold(name.as_str()));
                        if !token_locations.contains(&name) {
                            token_locations.push(name.clone());
                        }
                        let entry = (name, h.value_prefix.clone());
                        if stripping && !token_headers.contains(&entry) {
                            token_headers.push(entry);
                        }
                    }
                    JwtLocation::QueryParam(q) => {
                        if stripping && !token_params.contains(&q.name) {
                            token_params.push(q.name.clone());
                        }
                    }
                    JwtLocation::Cookie(_) => {}
                }
            }
        }
        owned_headers.sort();
        owned_headers.dedup();
        let claim_headers: Vec<(usize, Vec<String>, HeaderName)> = providers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.claim_to_headers.iter().filter_map(move |c| {
                    HeaderName::from_bytes(c.header_name.as_bytes())
                        .ok()
                        .map(|h| (i, c.path.clone(), h))
                })
            })
            .collect();
        let mut policy = Policy {
            service: doc.service.clone(),
            protocol: doc.protocol.clone(),
            http,
            default: doc.default,
            table,
            providers,
            forward_headers,
            normalization: doc.normalization(),
            token_headers,
            token_params,
            token_locations,
            claim_headers,
            owned_headers,
            rewrites_host: false,
        };
        policy.rewrites_host = policy.rewrite_touches(&http::header::HOST);
        Ok(policy)
    }

    /// Whether the destination is served over HTTP/2 to the local service.
    pub fn h2(&self) -> bool {
        matches!(self.protocol.as_str(), "http2" | "grpc")
    }
}
