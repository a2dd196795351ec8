//! The compact JWS parser and its JSON header/payload parser: the input as a whole
//! token, and the input as the header and payload JSON of a token (the one-pass header
//! reader checked against the map-building parser).
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = tribune_jwt::Jws::parse(token, tribune_jwt::DEFAULT_MAX_TOKEN_BYTES);
        let _ = tribune_jwt::unverified_issuer(token);
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
