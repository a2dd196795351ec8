//! Where tokens are in a request (Consul's `Locations`), routing them to providers, and
//! what to forward or strip after verification (decisions.md #10).
//!
//! - No `Locations`: `Authorization: Bearer <t>`, then the `access_token` query
//!   parameter (Envoy's defaults). Any location replaces the defaults.
//! - Several providers may read the same location; a token goes to the provider whose
//!   `Issuer` equals its `iss`. When a provider finds several tokens, all must verify.
//! - `Forward = false` (the default): verified tokens are removed from headers and
//!   query parameters (cookies are never stripped); the last header location's
//!   `Forward` wins, as in Consul.

use crate::Claims;
use crate::{unverified_issuer, JwtError, Verifier};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::sync::Arc;
use tribune_model::jwt_provider::{JwtLocation, JwtProvider};

/// Read access to the parts of a request tokens can be in.
pub trait RequestParts {
    /// Every value of a header (name matched case-insensitively), as received:
    /// header values are bytes (RFC 9110 §5.5 allows obs-text), and a token is found,
    /// or stripped, whatever else the value holds.
    fn header_values(&self, name: &str) -> Values<'_>;
    /// The raw query string, without `?`.
    fn query(&self) -> Option<&str>;
}

/// A header's values: most requests have one or none, held without an allocation.
pub type Values<'a> = SmallVec<[&'a [u8]; 2]>;

/// The tokens a request holds at some locations: one or two in practice, held
/// without an allocation.
pub type Founds<'a> = SmallVec<[Found<'a>; 2]>;

/// Where a token was found (the location's name, borrowed from the provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place<'a> {
    Header(&'a str),
    Query(&'a str),
    Cookie(&'a str),
}

/// A token found in the request: borrowed from the request where it is written as
/// it is (headers, cookies), decoded only from a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub token: Cow<'a, str>,
    pub place: Place<'a>,
}

/// Bytes a token may hold: base64url, `.`, and the base64 / padding characters Envoy
/// also accepts. Written without branches so that [`token_len`] vectorizes: the scan
/// runs over every byte of every token.
#[inline(always)]
fn token_byte(b: u8) -> bool {
    // `-` `.` `/` and the digits are one range (0x2D-0x39).
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'-') <= b'9' - b'-')
        | (b == b'+')
        | (b == b'=')
        | (b == b'_')
}

/// How many leading bytes of `bytes` are token bytes (16 at a time, then one by one).
fn token_len(bytes: &[u8]) -> usize {
    let mut n = 0;
    for chunk in bytes.chunks_exact(16) {
        if !chunk.iter().fold(true, |all, &b| all & token_byte(b)) {
            break;
        }
        n += 16;
    }
    n + bytes[n..].iter().take_while(|&&b| token_byte(b)).count()
}

/// Whether every byte of `bytes` is one a token may hold (a compact JWS that
/// parses always is: the verified-token cache relies on it, see [`extract_known`]).
pub fn all_token_bytes(bytes: &[u8]) -> bool {
    token_len(bytes) == bytes.len()
}

/// A header value as cookie lookup reads it: its text when it is UTF-8, else nothing.
pub fn header_text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok()
}

/// The rest of `value` after `prefix` (compared without regard to case, as auth
/// schemes are).
fn after_prefix<'v>(value: &'v [u8], prefix: &str) -> Option<&'v [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| &value[prefix.len()..])
}

/// Envoy's header extraction: the value must start with the prefix; non-token bytes
/// after it are skipped, and the token is the run of token bytes that follows. Read
/// on bytes, as Envoy reads them: the value's other bytes need not be UTF-8. The
/// token is returned as written in `value` (no copy); the proxy uses the same
/// function to find what to strip.
pub fn token_in_header<'v>(value: &'v [u8], prefix: &str) -> Option<&'v str> {
    let rest = token_start(value, prefix)?;
    // Token bytes are ASCII: this cannot fail.
    std::str::from_utf8(&rest[..token_len(rest)]).ok()
}

/// The bytes of `value` from its token's first byte on (after the prefix and any
/// non-token bytes): where [`token_in_header`]'s token starts.
fn token_start<'v>(value: &'v [u8], prefix: &str) -> Option<&'v [u8]> {
    let rest = after_prefix(value, prefix)?;
    let start = rest.iter().position(|&b| token_byte(b))?;
    Some(&rest[start..])
}

/// Whether [`token_in_header`] would find a token in `value`, without reading it
/// to its end.
pub fn holds_token(value: &[u8], prefix: &str) -> bool {
    after_prefix(value, prefix).is_some_and(|rest| rest.iter().any(|&b| token_byte(b)))
}

/// A query component decoded the way token lookup decodes it (`%XX`, `+` as space):
/// parameter names are compared only after this, so `acc%65ss_token` is
/// `access_token` both when a token is found and when it is stripped.
/// Borrowed when there is nothing to decode (most names and tokens).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    // `+` first: an encoded `%2B` stays a `+`. Malformed escapes stay as written.
    let spaced = s.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Every token the provider's locations find, in location order.
pub fn extract<'a>(locations: &'a [JwtLocation], req: &'a dyn RequestParts) -> Founds<'a> {
    extract_known(locations, req, |_| None::<std::convert::Infallible>)
        .into_iter()
        .map(|(found, _)| found)
        .collect()
}

/// The tokens a request holds, each with what `known` said of it: a value found in
/// a header location by [`extract_known`] without being scanned.
pub type Known<'a, K> = SmallVec<[(Found<'a>, Option<K>); 2]>;

/// [`extract`], asking `known` first about a header value's bytes after its prefix
/// (and any non-token bytes before the token). When `known` recognizes them (the
/// verified-token cache: a verified compact JWS is base64url and two dots, all
/// token bytes), [`token_in_header`]'s scan would end where the value ends, so the
/// value is the token, found without reading its bytes twice; `known`'s answer comes
/// with it. Otherwise the value is scanned as `extract` scans it.
pub fn extract_known<'a, K>(
    locations: &'a [JwtLocation],
    req: &'a dyn RequestParts,
    mut known: impl FnMut(&[u8]) -> Option<K>,
) -> Known<'a, K> {
    let locations = if locations.is_empty() {
        &DEFAULT_LOCATIONS[..]
    } else {
        locations
    };
    let mut out = Known::new();
    for loc in locations {
        match loc {
            JwtLocation::Header(h) => {
                for v in req.header_values(&h.name) {
                    let Some(rest) = token_start(v, &h.value_prefix) else {
                        continue;
                    };
                    let place = Place::Header(&h.name);
                    if let Some(answer) = known(rest) {
                        // Recognized bytes are those of a `&str` the caller holds.
                        if let Ok(token) = std::str::from_utf8(rest) {
                            out.push((
                                Found {
                                    token: Cow::Borrowed(token),
                                    place,
                                },
                                Some(answer),
                            ));
                            continue;
                        }
                    }
                    let len = token_len(rest);
                    // Token bytes are ASCII: this cannot fail.
                    if let Ok(token) = std::str::from_utf8(&rest[..len]) {
                        out.push(unknown(Cow::Borrowed(token), place));
                    }
                }
            }
            JwtLocation::QueryParam(q) => {
                let Some(query) = req.query().filter(|q| !q.is_empty()) else {
                    continue;
                };
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if percent_decode(k) == q.name.as_str() && !v.is_empty() {
                        out.push(unknown(percent_decode(v), Place::Query(&q.name)));
                    }
                }
            }
            JwtLocation::Cookie(c) => {
                let cookies = req.header_values("cookie");
                for header in cookies.into_iter().filter_map(header_text) {
                    for kv in header.split(';') {
                        if let Some((k, v)) = kv.trim().split_once('=') {
                            if k == c.name && !v.is_empty() {
                                let token = Cow::Borrowed(v.trim_matches('"'));
                                out.push(unknown(token, Place::Cookie(&c.name)));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// A token found by reading it, that `known` was not asked about.
fn unknown<'a, K>(token: Cow<'a, str>, place: Place<'a>) -> (Found<'a>, Option<K>) {
    (Found { token, place }, None)
}

static DEFAULT_LOCATIONS: std::sync::LazyLock<Vec<JwtLocation>> =
    std::sync::LazyLock::new(build_default_locations);

fn build_default_locations() -> Vec<JwtLocation> {
    use tribune_model::jwt_provider::{LocationHeader, LocationName};
    vec![
        JwtLocation::Header(LocationHeader {
            name: "Authorization".into(),
            value_prefix: "Bearer ".into(),
            forward: false,
        }),
        JwtLocation::QueryParam(LocationName {
            name: "access_token".into(),
        }),
    ]
}

/// Envoy's default locations (`Authorization: Bearer`, then `access_token`).
pub fn default_locations() -> &'static [JwtLocation] {
    &DEFAULT_LOCATIONS[..]
}

/// The provider's locations, or Envoy's defaults when it lists none.
pub fn locations(provider: &JwtProvider) -> &[JwtLocation] {
    if provider.locations.is_empty() {
        &DEFAULT_LOCATIONS[..]
    } else {
        &provider.locations
    }
}

/// Consul's provider-wide `forward`: the last Header location's `Forward`.
pub fn forwards_token(provider: &JwtProvider) -> bool {
    provider
        .locations
        .iter()
        .rev()
        .find_map(|l| match l {
            JwtLocation::Header(h) => Some(h.forward),
            _ => None,
        })
        .unwrap_or(false)
}

/// What one provider concluded about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No token addressed to this provider.
    Missing,
    /// No token addressed to this provider, but one at its locations that is not a
    /// JWT or names another issuer: a diagnosis of what the caller sent (the decision
    /// treats it as missing for `optional` requirements).
    Stray(crate::Stray),
    /// A token addressed to this provider failed.
    Invalid(JwtError),
    /// Every token addressed to this provider verified; the first one's payload (a JSON
    /// object) and the `Forwarding` header value. (What to strip is not an outcome:
    /// with `Forward = false` every value in the provider's [`locations`] is stripped,
    /// verified or not; decisions.md #18.)
    Valid {
        payload: Arc<Claims>,
        forward_header: Option<(String, String)>,
    },
}

/// The tokens in the request addressed to `provider`: found at its locations and,
/// when it has an `Issuer`, naming it in their (unverified) `iss`; and the first
/// token at its locations that is not (for [`none_of_its_own`]).
pub fn addressed_to<'a>(
    provider: &'a JwtProvider,
    req: &'a dyn RequestParts,
) -> (Founds<'a>, Option<Found<'a>>) {
    let mut mine = Founds::new();
    let mut stray = None;
    for f in extract(&provider.locations, req) {
        if provider.issuer.is_empty()
            || unverified_issuer(&f.token).as_deref() == Some(provider.issuer.as_str())
        {
            mine.push(f);
        } else if stray.is_none() {
            stray = Some(f);
        }
    }
    (mine, stray)
}

/// The outcome of a provider that has no token of its own: `Missing`, or a `Stray`
/// naming what was sent instead (`stray`, the first token at its locations addressed
/// elsewhere; else a token naming its Issuer where it does not look). Read only on
/// this path, so requests with a token of their own pay nothing for it.
pub fn none_of_its_own(
    provider: &JwtProvider,
    stray: Option<&str>,
    req: &dyn RequestParts,
) -> Outcome {
    match stray {
        Some(token) => Outcome::Stray(crate::Stray::of(token)),
        None => elsewhere(provider, req).map_or(Outcome::Missing, Outcome::Stray),
    }
}

/// For a provider with its own `Locations` that found no token: where a token naming
/// its Issuer sits instead, among Envoy's default locations (`Authorization: Bearer`,
/// `access_token`). For diagnostics only.
pub fn elsewhere(provider: &JwtProvider, req: &dyn RequestParts) -> Option<crate::Stray> {
    if provider.issuer.is_empty() || provider.locations.is_empty() {
        return None;
    }
    extract(&[], req)
        .into_iter()
        .find(|f| unverified_issuer(&f.token).as_deref() == Some(provider.issuer.as_str()))
        .map(|f| {
            crate::Stray::Elsewhere(
                match f.place {
                    Place::Header(n) => format!("header {n}"),
                    Place::Query(n) => format!("query parameter {n}"),
                    Place::Cookie(n) => format!("cookie {n}"),
                }
                .into(),
            )
        })
}

/// The provider's outcome for the tokens addressed to it: all must pass `verify`.
pub fn conclude(
    provider: &JwtProvider,
    mine: &[Found<'_>],
    mut verify: impl FnMut(&str) -> Result<Arc<Claims>, JwtError>,
) -> Outcome {
    let mut first = None;
    for f in mine {
        match verify(&f.token) {
            Ok(p) => {
                if first.is_none() {
                    first = Some((p, f.token.as_ref()));
                }
            }
            Err(e) => return Outcome::Invalid(e),
        }
    }
    let Some((payload, token)) = first else {
        return Outcome::Missing;
    };
    let forward_header = provider.forwarding.as_ref().map(|fw| {
        // The payload segment is already base64url of the payload JSON, unpadded.
        let mut value = token.split('.').nth(1).unwrap_or("").to_string();
        if fw.pad_forward_payload_header {
            while value.len() % 4 != 0 {
                value.push('=');
            }
        }
        (fw.header_name.clone(), value)
    });
    Outcome::Valid {
        payload,
        forward_header,
    }
}

/// Verifies the request's tokens for one provider (no cache).
pub fn verify_request(
    provider: &JwtProvider,
    verifier: &Verifier,
    req: &dyn RequestParts,
    now: i64,
) -> Outcome {
    let (mine, stray) = addressed_to(provider, req);
    match conclude(provider, &mine, |t| verifier.verify(t, now).map(Arc::new)) {
        Outcome::Missing => {
            none_of_its_own(provider, stray.as_ref().map(|f| f.token.as_ref()), req)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    /// Query components decode as form data: `%XX`, `+` as a space (but `%2B` a
    /// plus), malformed escapes kept as written, bad UTF-8 replaced.
    #[test]
    fn query_components_decode_like_form_data() {
        for (raw, want) in [
            ("acc%65ss_token", "access_token"),
            ("a+b", "a b"),
            ("a%2Bb", "a+b"),
            ("100%", "100%"),
            ("%zz%4", "%zz%4"),
            ("%C3%A9", "\u{e9}"),
            ("%FF", "\u{fffd}"),
        ] {
            assert_eq!(super::percent_decode(raw), want, "{raw}");
        }
    }

    #[test]
    fn holds_token_agrees_with_token_in_header() {
        for value in [
            &b"Bearer abc.def.ghi"[..],
            b"bearer x",
            b"Bearer ",
            b"Basic dXNlcg==",
            b"",
            b"abc",
            b"Bear",
            b"Bearer  \t!!",
            "Bearer \u{e9}.x".as_bytes(),
            b"Bearer \xff\xfe",
            b"Bearer \xffa.b",
            b"\xffBearer a.b",
        ] {
            for prefix in ["Bearer ", "", "Token "] {
                assert_eq!(
                    super::holds_token(value, prefix),
                    super::token_in_header(value, prefix).is_some(),
                    "{value:?} {prefix:?}"
                );
            }
        }
    }

    #[test]
    fn a_token_is_read_from_a_value_whatever_its_other_bytes() {
        // Header values are bytes (obs-text is allowed): like Envoy, the token is
        // the run of token bytes after the prefix, wherever the value is not UTF-8.
        for (value, token) in [
            (&b"Bearer a.b.c\xff"[..], Some("a.b.c")),
            (b"Bearer \xff\xfea.b.c tail", Some("a.b.c")),
            (b"bearer a.b.c\x80\x80", Some("a.b.c")),
            (b"Bearer \xe9\xe9", None),
            (b"Bearer", None),
        ] {
            assert_eq!(super::token_in_header(value, "Bearer "), token, "{value:?}");
        }
    }

    use super::*;

    struct Req<'a> {
        headers: Vec<(&'a str, &'a str)>,
        query: Option<&'a str>,
    }

    impl RequestParts for Req<'_> {
        fn header_values(&self, name: &str) -> Values<'_> {
            self.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
                .collect()
        }
        fn query(&self) -> Option<&str> {
            self.query
        }
    }

    fn provider(locations: &str) -> JwtProvider {
        let hcl = format!(
            "Kind = \"jwt-provider\"\nName = \"p\"\nIssuer = \"me\"\nJSONWebKeySet {{ Local {{ Filename = \"/k\" }} }}\n{locations}"
        );
        match tribune_model::parse_entry(&hcl) {
            Ok(tribune_model::ConfigEntry::JwtProvider(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_len_stops_at_the_first_non_token_byte_at_any_offset() {
        let all: Vec<u8> = (0..=255u8).collect();
        let expected = |b: u8| b.is_ascii_alphanumeric() || b"-_.=+/".contains(&b);
        for b in all {
            assert_eq!(token_byte(b), expected(b), "byte {b}");
        }
        for len in [0usize, 1, 31, 32, 33, 64, 70, 600] {
            let mut v = vec![b'a'; len];
            assert_eq!(token_len(&v), len);
            v.push(b' ');
            v.extend_from_slice(b"abc");
            assert_eq!(token_len(&v), len, "stop at {len}");
        }
    }

    /// A header token the cache recognizes is found without the scan, and only when
    /// the value after its prefix is that whole token: the tokens and places are
    /// always `extract`'s, known or not.
    #[test]
    fn extract_known_finds_what_extract_finds() {
        let p = provider(
            "Locations = [{ Header = { Name = \"X-Token\" } }, { Header = { Name = \"Authorization\", ValuePrefix = \"Bearer \" } }]",
        );
        let cached = ["a.b.c", "d.e.f"];
        let known = |t: &[u8]| cached.iter().position(|c| c.as_bytes() == t);
        for (headers, want) in [
            (vec![("authorization", "Bearer a.b.c")], vec![Some(0)]),
            (vec![("authorization", "Bearer  \ta.b.c")], vec![Some(0)]),
            (vec![("authorization", "Bearer a.b.c d.e.f")], vec![None]),
            (vec![("authorization", "Bearer a.b.c!")], vec![None]),
            (vec![("authorization", "Bearer a.b.cd")], vec![None]),
            (vec![("authorization", "Bearer x.y.z")], vec![None]),
            (vec![("authorization", "Basic a.b.c")], vec![]),
            (
                vec![("x-token", "d.e.f"), ("authorization", "Bearer a.b.c")],
                vec![Some(1), Some(0)],
            ),
        ] {
            let req = Req {
                headers: headers.clone(),
                query: None,
            };
            let found = extract_known(&p.locations, &req, known);
            let said: Vec<Option<usize>> = found.iter().map(|(_, k)| *k).collect();
            assert_eq!(said, want, "{headers:?}");
            let tokens: Vec<&Found<'_>> = found.iter().map(|(f, _)| f).collect();
            let plain = extract(&p.locations, &req);
            assert_eq!(tokens, plain.iter().collect::<Vec<_>>(), "{headers:?}");
        }
    }

    #[test]
    fn defaults_are_bearer_header_then_access_token() {
        let p = provider("");
        let req = Req {
            headers: vec![("authorization", "bearer a.b.c")],
            query: Some("x=1&access_token=d.e.f"),
        };
        let found = extract(&p.locations, &req);
        assert_eq!(
            found[..],
            [
                Found {
                    token: "a.b.c".into(),
                    place: Place::Header("Authorization")
                },
                Found {
                    token: "d.e.f".into(),
                    place: Place::Query("access_token")
                },
            ]
        );
        let wrong_scheme = Req {
            headers: vec![("Authorization", "Basic abc")],
            query: None,
        };
        assert!(extract(&p.locations, &wrong_scheme).is_empty());
    }

    #[test]
    fn configured_locations_replace_the_defaults() {
        let p = provider(
            "Locations = [ { Header { Name = \"x-jwt\" ValuePrefix = \"Token\" Forward = true } }, { Cookie { Name = \"sess\" } } ]",
        );
        let req = Req {
            headers: vec![
                ("Authorization", "Bearer ignored.x.y"),
                ("X-JWT", "Token   g.h.i"),
                ("cookie", "a=1; sess=j.k.l"),
            ],
            query: Some("access_token=ignored"),
        };
        let tokens: Vec<String> = extract(&p.locations, &req)
            .into_iter()
            .map(|f| f.token.into_owned())
            .collect();
        assert_eq!(tokens, ["g.h.i", "j.k.l"]);
        assert!(forwards_token(&p));
        assert!(!forwards_token(&provider("")));
    }
}
