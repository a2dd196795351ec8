//! Known-answer vectors from the RFCs: RFC 7515 Appendix A.2 (RS256), A.3 (ES256),
//! A.4 (ES512) and RFC 8037 Appendix A.4 (Ed25519), verified with the public keys the
//! RFCs give (A.1, HS256, is in verify.rs). Each vector must verify, and fail once a
//! byte of the signing input or signature changes.
//!
//! A.2 and A.3 carry JSON claims and go through the full token path; A.4 and RFC 8037
//! sign non-JSON payloads (`Payload`, `Example of Ed25519 signing`), which Tribune's
//! token parser refuses by design, so they go through the key-selection and signature
//! step (`Jwks::verify_raw`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::json;
use tribune_jwt::{Alg, Jwks, Jws, JwtError};

const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const A4_X: &str =
    "AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk";
const A4_Y: &str =
    "ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2";
const A4_JWS: &str = "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn";
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const ED_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn jwks(key: serde_json::Value) -> Jwks {
    let set = Jwks::parse(json!({"keys": [key]}).to_string().as_bytes()).unwrap();
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    set
}

fn flip_last_signature_byte(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut raw = B64.decode(sig).unwrap();
    *raw.last_mut().unwrap() ^= 1;
    format!("{input}.{}", B64.encode(raw))
}

fn full_path(keys: &Jwks, token: &str) -> Result<(), JwtError> {
    let jws = Jws::parse(token, 8192)?;
    keys.verify_signature(&jws)
}

fn raw(keys: &Jwks, alg: Alg, token: &str) -> Result<(), JwtError> {
    let (input, sig) = token.rsplit_once('.').unwrap();
    keys.verify_raw(alg, None, input.as_bytes(), &B64.decode(sig).unwrap())
}

#[test]
fn rfc7515_a2_rs256() {
    let keys = jwks(json!({"kty": "RSA", "n": A2_N, "e": "AQAB"}));
    assert_eq!(full_path(&keys, A2_JWS), Ok(()));
    let jws = Jws::parse(A2_JWS, 8192).unwrap();
    assert_eq!(jws.payload.get("exp"), Some(1_300_819_380.into()));
    assert_eq!(
        full_path(&keys, &flip_last_signature_byte(A2_JWS)),
        Err(JwtError::BadSignature)
    );
    // The same signature under another RSA algorithm does not verify.
    assert_eq!(raw(&keys, Alg::PS256, A2_JWS), Err(JwtError::BadSignature));
}

#[test]
fn rfc7515_a3_es256() {
    let keys = jwks(json!({"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y}));
    assert_eq!(full_path(&keys, A3_JWS), Ok(()));
    assert_eq!(
        full_path(&keys, &flip_last_signature_byte(A3_JWS)),
        Err(JwtError::BadSignature)
    );
    // An EC key never verifies an RSA or HMAC algorithm (kty pins the family).
    assert_eq!(raw(&keys, Alg::HS256, A3_JWS), Err(JwtError::UnknownKey));
}

#[test]
fn rfc7515_a4_es512() {
    let keys = jwks(json!({"kty": "EC", "crv": "P-521", "x": A4_X, "y": A4_Y}));
    assert_eq!(raw(&keys, Alg::ES512, A4_JWS), Ok(()));
    assert_eq!(
        raw(&keys, Alg::ES512, &flip_last_signature_byte(A4_JWS)),
        Err(JwtError::BadSignature)
    );
    assert_eq!(
        raw(&keys, Alg::ES256, A4_JWS),
        Err(JwtError::UnknownKey),
        "curve pins the algorithm"
    );
    // The payload is not a JSON object: the token path refuses it before any key is used.
    assert!(matches!(
        Jws::parse(A4_JWS, 8192),
        Err(JwtError::Malformed(_))
    ));
}

#[test]
fn rfc8037_a4_ed25519() {
    let keys = jwks(json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X}));
    assert_eq!(raw(&keys, Alg::EdDSA, ED_JWS), Ok(()));
    assert_eq!(
        raw(&keys, Alg::EdDSA, &flip_last_signature_byte(ED_JWS)),
        Err(JwtError::BadSignature)
    );
    let (input, sig) = ED_JWS.rsplit_once('.').unwrap();
    let mut changed = input.as_bytes().to_vec();
    changed[0] ^= 1;
    assert_eq!(
        keys.verify_raw(Alg::EdDSA, None, &changed, &B64.decode(sig).unwrap()),
        Err(JwtError::BadSignature)
    );
}
