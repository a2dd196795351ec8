//! The compact JWS parser and its JSON header/payload parser: the input as a whole
//! token, and the input as the header and payload JSON of a token (the one-pass header
//! reader and the claims index checked against the map-building parser).
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;

/// A verifier's remembered header, kept across inputs.
static MEMO: std::sync::LazyLock<tribune_jwt::token::HeaderMemo> =
    std::sync::LazyLock::new(Default::default);

/// What a parse says about the token.
fn said(
    r: &Result<tribune_jwt::Jws<'_>, tribune_jwt::JwtError>,
) -> Result<(tribune_jwt::Alg, Option<String>, Vec<u8>), tribune_jwt::JwtError> {
    r.as_ref()
        .map(|j| {
            (
                j.alg,
                j.kid.as_deref().map(str::to_string),
                j.signature.clone(),
            )
        })
        .map_err(Clone::clone)
}

/// Parsed with and without the remembered header (twice: the second reads the
/// header from the memo), the token says the same.
fn same_with_memo(token: &str, max: usize) {
    let plain = tribune_jwt::Jws::parse(token, max);
    // A token that parses is all token bytes: a header value after its prefix that
    // equals a cached (verified) token is found whole without a scan.
    if plain.is_ok() {
        assert!(tribune_jwt::locate::all_token_bytes(token.as_bytes()));
    }
    for _ in 0..2 {
        let remembered = tribune_jwt::Jws::parse_remembering(token, max, Some(&MEMO));
        assert_eq!(said(&plain), said(&remembered));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        same_with_memo(token, tribune_jwt::DEFAULT_MAX_TOKEN_BYTES);
        let _ = tribune_jwt::unverified_issuer(token);
    }
    // The claims index accepts exactly what the map-building parser accepts, and
    // reads the same members from it.
    let claims = tribune_jwt::Claims::parse(data);
    let map = tribune_jwt::json::object_no_dups(data);
    assert_eq!(claims.is_some(), map.is_some());
    if let (Some(claims), Some(map)) = (claims, map) {
        assert_eq!(claims.len(), map.len());
        for (name, value) in &map {
            assert_eq!(claims.get(name).as_ref(), Some(value));
            // A string member read without decoding (remembered plain or unescaped).
            assert_eq!(claims.str(name).as_deref(), value.as_str());
        }
        assert_eq!(claims.to_value(), serde_json::Value::Object(map));
    }
    let half = data.len() / 2;
    let token = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(&data[..half]),
        URL_SAFE_NO_PAD.encode(&data[half..])
    );
    same_with_memo(&token, usize::MAX);
    if let Ok(jws) = tribune_jwt::Jws::parse(&token, usize::MAX) {
        assert_eq!(jws.signing_input.matches('.').count(), 1);
        // The one-pass header reader and the map-building parser agree.
        let header = jws
            .header()
            .expect("a header the reader took parses as a map");
        assert_eq!(
            header.get("alg").and_then(|a| a.as_str()),
            Some(jws.alg.as_str())
        );
        assert_eq!(
            header.get("kid").and_then(|k| k.as_str()),
            jws.kid.as_deref()
        );
    }
});
