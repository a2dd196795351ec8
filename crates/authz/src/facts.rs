//! What the engine knows about one request: who calls, the HTTP request line and
//! headers, and what the JWT engine found for each provider.

use std::borrow::Cow;
use tribune_model::Claims;

/// The calling service, proven by mTLS (its SPIFFE identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// Service name.
    pub name: &'a str,
    /// Cluster peer the caller belongs to; empty for local services.
    pub peer: &'a str,
}

impl<'a> Caller<'a> {
    pub fn local(name: &'a str) -> Self {
        Caller { name, peer: "" }
    }
}

/// Header values by name. Names are matched case-insensitively; several values of one
/// header are joined with `,` (Envoy's behaviour for header matchers).
pub trait Headers {
    /// Every value of the header `name` and of its look-alikes ([`alike`]), one per
    /// header line, in order; empty when there is none.
    fn lines(&self, name: &str) -> Vec<Cow<'_, str>>;
}

/// Whether two header names are the same header to a server that merges `_` and
/// `-` (WSGI, CGI and the frameworks on them): equal ignoring ASCII case, with `_`
/// and `-` the same character. An intention naming `x-user` thus also reads
/// `x_user` and `X_User` (hardening round 3, item 4).
pub fn alike(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let fold = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            fold(x) == fold(y)
        })
}

/// Headers as a list of `(name, value)` pairs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderList<'a>(pub &'a [(&'a str, &'a str)]);

impl Headers for HeaderList<'_> {
    fn lines(&self, name: &str) -> Vec<Cow<'_, str>> {
        self.0
            .iter()
            .filter(|(k, _)| alike(k, name))
            .map(|(_, v)| Cow::Borrowed(*v))
            .collect()
    }
}

/// What token verification produced for one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenOutcome<'a> {
    /// No token for this provider was found in the request.
    Missing,
    /// No token for this provider, but one at its locations that is not addressed to
    /// it: missing, for an optional requirement; a diagnosis otherwise.
    Stray(StrayToken<'a>),
    /// A token for this provider that is not a JWT at all (the reason: Envoy's text);
    /// a failure like [`TokenOutcome::Invalid`].
    Malformed(&'static str),
    /// A token was found and failed verification; the short reason
    /// (`Jwt is expired`, `Jwt verification fails`, ...: the verifier's fixed texts).
    Invalid(&'static str),
    /// A token verified; its claims.
    Valid(&'a Claims),
}

/// A token at a provider's locations that is not addressed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrayToken<'a> {
    /// Its `iss` (`None`: it has none) is not the provider's Issuer.
    OtherIssuer(Option<&'a str>),
    /// It is not a JWT, so it names no issuer (Envoy's text).
    Malformed(&'static str),
    /// None where the provider looks, but one naming its Issuer at this place
    /// (`header Authorization`, `a location of provider "b"`).
    Elsewhere(&'a str),
}

/// Verification outcomes per provider name. Providers not listed count as `Missing`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokens<'a> {
    pub entries: &'a [(&'a str, TokenOutcome<'a>)],
}

impl<'a> Tokens<'a> {
    pub fn new(entries: &'a [(&'a str, TokenOutcome<'a>)]) -> Self {
        Tokens { entries }
    }

    pub fn get(&self, provider: &str) -> TokenOutcome<'a> {
        self.entries
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, o)| *o)
            .unwrap_or(TokenOutcome::Missing)
    }
}

/// One request, as the intentions engine sees it.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The caller's identity; `None` for callers outside the mesh (edge listener),
    /// which match only `*`-source intentions.
    pub caller: Option<Caller<'a>>,
    /// HTTP method as sent (`GET`); ignored for non-HTTP destinations.
    pub method: &'a str,
    /// Normalized path without query ([`crate::normalize_path`]).
    pub path: &'a str,
    pub headers: &'a dyn Headers,
    pub tokens: Tokens<'a>,
}

impl<'a> RequestFacts<'a> {
    /// Facts for a connection-level (L4) check: only the caller is known.
    pub fn l4(caller: Option<Caller<'a>>) -> Self {
        const NO_HEADERS: HeaderList<'static> = HeaderList(&[]);
        RequestFacts {
            caller,
            method: "",
            path: "/",
            headers: &NO_HEADERS,
            tokens: Tokens::default(),
        }
    }
}
