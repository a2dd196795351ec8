//! The compact JWS parser and its JSON header/payload parser: the input as a whole
//! token, and the input as the header and payload JSON of a token (the one-pass header
//! reader and the claims index checked against the map-building parser).
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = tribune_jwt::Jws::parse(token, tribune_jwt::DEFAULT_MAX_TOKEN_BYTES);
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
        }
        assert_eq!(claims.to_value(), serde_json::Value::Object(map));
    }
    let half = data.len() / 2;
    let token = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(&data[..half]),
        URL_SAFE_NO_PAD.encode(&data[half..])
    );
    if let Ok(jws) = tribune_jwt::Jws::parse(&token, usize::MAX) {
        assert_eq!(jws.signing_input.matches('.').count(), 1);
        // The one-pass header reader and the map-building parser agree.
        let header = jws.header().expect("a header the reader took parses as a map");
        assert_eq!(header.get("alg").and_then(|a| a.as_str()), Some(jws.alg.as_str()));
        assert_eq!(header.get("kid").and_then(|k| k.as_str()), jws.kid.as_deref());
    }
});
