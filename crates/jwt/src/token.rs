//! Compact JWS parsing (RFC 7515 §7.1 / RFC 7519), strict.

use crate::header::{header_fields, Member};
use crate::json::object_no_dups;
use crate::JwtError;
use base64::Engine;
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};
use tribune_model::Claims;

/// Default bound on a token's size, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The signature algorithms Tribune accepts (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Alg {
    pub const ALL: [Alg; 13] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    /// Exact, case-sensitive match; anything else (including `none`) is refused.
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    pub alg: Alg,
    pub kid: Option<Arc<str>>,
    /// The payload's claims (a JSON object, checked; decoded as they are read).
    pub payload: Claims,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// The error for a token that is not three base64url segments.
const NOT_THREE_SEGMENTS: JwtError = JwtError::Malformed(
    "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
);

/// Strict base64url: the URL-safe alphabet only, no padding, no non-zero trailing
/// bits (the engine rejects anything else, so no separate scan is needed).
fn b64url(segment: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| NOT_THREE_SEGMENTS)
}

/// Decoded segments up to this size are decoded on the stack (a JOSE header is tens
/// of bytes).
const ON_STACK: usize = 256;

/// [`b64url`] into a stack buffer when the segment is small, handed to `read`.
fn with_b64url<R>(segment: &str, read: impl FnOnce(&[u8]) -> R) -> Result<R, JwtError> {
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if base64::decoded_len_estimate(segment.len()) <= ON_STACK {
        let mut buf = [0u8; ON_STACK];
        let n = engine
            .decode_slice(segment, &mut buf)
            .map_err(|_| NOT_THREE_SEGMENTS)?;
        return Ok(read(&buf[..n]));
    }
    Ok(read(&b64url(segment)?))
}

/// The last JOSE header a verifier accepted, by its base64url text, with what it
/// said: a provider's tokens carry one header (`alg`, `kid`, `typ`) until its keys
/// rotate, so it is decoded and checked once, not on every new token.
#[derive(Debug, Default)]
pub struct HeaderMemo(RwLock<Option<Remembered>>);

/// A header's base64url text, its `alg` and its `kid`.
type Remembered = (Box<str>, Alg, Option<Arc<str>>);

impl HeaderMemo {
    /// [`read_header`] of the base64url `segment`, remembered when it passes.
    fn read(&self, segment: &str) -> Result<(Alg, Option<Arc<str>>), JwtError> {
        if let Ok(memo) = self.0.read() {
            if let Some((text, alg, kid)) = memo.as_ref() {
                if **text == *segment {
                    return Ok((*alg, kid.clone()));
                }
            }
        }
        let (alg, kid) = with_b64url(segment, read_header)??;
        if let Ok(mut memo) = self.0.write() {
            *memo = Some((segment.into(), alg, kid.clone()));
        }
        Ok((alg, kid))
    }
}

impl<'a> Jws<'a> {
    /// Parses `token`, enforcing the size bound and every header rule.
    pub fn parse(token: &'a str, max_bytes: usize) -> Result<Jws<'a>, JwtError> {
        Self::parse_remembering(token, max_bytes, None)
    }

    /// [`Jws::parse`], with the header's verdict read from (and kept in) `memo` when
    /// the header is the one it remembers.
    pub fn parse_remembering(
        token: &'a str,
        max_bytes: usize,
        memo: Option<&HeaderMemo>,
    ) -> Result<Jws<'a>, JwtError> {
        if token.is_empty() {
            return Err(JwtError::Missing);
        }
        if token.len() > max_bytes {
            return Err(JwtError::TooLarge { limit: max_bytes });
        }
        // The dots found with a vectorized search: the scan covers the whole token.
        let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
        let (Some(d1), Some(d2)) = (dots.next(), dots.next()) else {
            return Err(NOT_THREE_SEGMENTS);
        };
        let (h, p, s) = (&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]);
        match dots.count() {
            0 => {}
            2 => {
                return Err(JwtError::Malformed(
                    "Jwt is an encrypted JWE, which is not supported",
                ))
            }
            _ => return Err(NOT_THREE_SEGMENTS),
        }
        let (alg, kid) = match memo {
            Some(memo) => memo.read(h)?,
            None => with_b64url(h, read_header)??,
        };
        let payload = Claims::parse(&b64url(p)?)
            .ok_or(JwtError::Malformed("Jwt payload is an invalid JSON"))?;
        let signature = b64url(s)?;
        if signature.is_empty() {
            return Err(JwtError::Malformed("Jwt signature is empty"));
        }
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Jws {
            alg,
            kid,
            payload,
            signing_input,
            signature,
        })
    }

    /// The whole JOSE header as a JSON object (for diagnostics; verification reads
    /// only the members [`Jws::parse`] checked).
    pub fn header(&self) -> Option<Map<String, Value>> {
        let segment = self.signing_input.split('.').next()?;
        object_no_dups(&b64url(segment).ok()?)
    }
}

/// The header rules: `alg` from the allow-list, no `crit`, no `b64: false`, `kid` a
/// string when present.
fn read_header(bytes: &[u8]) -> Result<(Alg, Option<Arc<str>>), JwtError> {
    let header =
        header_fields(bytes).ok_or(JwtError::Malformed("Jwt header is an invalid JSON"))?;
    let alg = match &header.alg {
        Some(Member::Str(a)) => {
            Alg::parse(a).ok_or_else(|| JwtError::UnsupportedAlgorithm(a.to_string()))?
        }
        _ => {
            return Err(JwtError::Malformed(
                "Jwt header [alg] field is required and must be a string",
            ))
        }
    };
    if header.crit {
        return Err(JwtError::Malformed(
            "Jwt header [crit] names an extension that is not supported",
        ));
    }
    if header.b64 == Some(Member::Bool(false)) {
        return Err(JwtError::Malformed(
            "Jwt header [b64] false (unencoded payload) is not supported",
        ));
    }
    let kid = match header.kid {
        None => None,
        Some(Member::Str(k)) => Some(Arc::from(k.as_ref())),
        Some(_) => {
            return Err(JwtError::Malformed(
                "Jwt header [kid] field is not a string",
            ))
        }
    };
    Ok((alg, kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str) -> String {
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2ln",
            b64.encode(header),
            b64.encode(r#"{"iss":"a"}"#)
        )
    }

    /// What a parse says, to compare two ways of parsing.
    fn said(r: &Result<Jws<'_>, JwtError>) -> Result<(Alg, Option<String>), JwtError> {
        r.as_ref()
            .map(|j| (j.alg, j.kid.as_deref().map(str::to_string)))
            .map_err(Clone::clone)
    }

    #[test]
    fn a_remembered_header_says_what_reading_it_says() {
        let memo = HeaderMemo::default();
        let headers = [
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"alg":"ES256","kid":"k2"}"#,
            r#"{"alg":"RS256","crit":["x"]}"#,
            r#"{"alg":"RS256","alg":"RS256"}"#,
            r#"{"alg":"ES256","kid":"k2"}"#,
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
        ];
        for h in headers {
            let t = token(h);
            let plain = Jws::parse(&t, DEFAULT_MAX_TOKEN_BYTES);
            let remembered = Jws::parse_remembering(&t, DEFAULT_MAX_TOKEN_BYTES, Some(&memo));
            assert_eq!(said(&plain), said(&remembered), "{h}");
        }
        // Only a header that passed is remembered.
        let remembered = memo.0.read().unwrap();
        let (text, alg, kid) = remembered.as_ref().unwrap();
        assert_eq!(**text, *token(headers[8]).split('.').next().unwrap());
        assert_eq!((*alg, kid.as_deref()), (Alg::RS256, Some("k1")));
    }
}
