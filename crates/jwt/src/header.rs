//! The JOSE header as the verifier reads it (RFC 7515 §4): `alg`, `kid`, `crit` and
//! `b64`, read in one pass over the header's JSON without building a map. Every other
//! member is checked (valid JSON, no duplicate names at any depth, as
//! [`crate::json`]'s parser requires) and skipped without allocating.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use tribune_model::claims::{has_duplicate_names, Checked, MemberName};

/// One header member's value, as far as the verifier cares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Member<'h> {
    Str(Cow<'h, str>),
    Bool(bool),
    /// A number, `null`, an array or an object (checked, not kept).
    Other,
}

/// The members the verifier reads; `None` when absent.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct HeaderFields<'h> {
    pub alg: Option<Member<'h>>,
    pub kid: Option<Member<'h>>,
    pub crit: bool,
    pub b64: Option<Member<'h>>,
}

/// Reads the header's fields; `None` when it is not one JSON object without duplicate
/// member names.
pub(crate) fn header_fields(bytes: &[u8]) -> Option<HeaderFields<'_>> {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let fields = Fields.deserialize(&mut d).ok()?;
    d.end().ok()?;
    Some(fields)
}

/// The header object.
struct Fields;

impl<'de> DeserializeSeed<'de> for Fields {
    type Value = HeaderFields<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields {
    type Value = HeaderFields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = HeaderFields::default();
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(k) = map.next_key_seed(MemberName)? {
            let value = map.next_value_seed(Value)?;
            match &*k {
                "alg" => fields.alg = Some(value),
                "kid" => fields.kid = Some(value),
                "crit" => fields.crit = true,
                "b64" => fields.b64 = Some(value),
                _ => {}
            }
            keys.push(k);
        }
        if has_duplicate_names(&mut keys) {
            return Err(de::Error::custom("duplicate member"));
        }
        Ok(fields)
    }
}

/// A member's value: strings and booleans kept, anything else checked and dropped.
struct Value;

impl<'de> DeserializeSeed<'de> for Value {
    type Value = Member<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value {
    type Value = Member<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Member::Bool(v))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Checked::MEMBER.visit_f64(v).map(|()| Member::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Checked::MEMBER.visit_seq(seq).map(|()| Member::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Checked::MEMBER.visit_map(map).map(|()| Member::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::object_no_dups;

    /// The header reader accepts exactly what the map-building parser accepts, and
    /// reads the same values from it.
    #[test]
    fn header_fields_agree_with_the_map_parser() {
        // Nesting past serde_json's recursion limit (128) is refused by both.
        let deep = format!(
            r#"{{"alg":"RS256","x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let shallow = format!(
            r#"{{"alg":"RS256","x":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(header_fields(deep.as_bytes()).is_none(), "too deep");
        assert!(header_fields(shallow.as_bytes()).is_some());
        for text in [
            deep.as_str(),
            shallow.as_str(),
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"alg":"RS256","kid":7}"#,
            r#"{"alg":"RS\u0032\u00356","kid":"k\"1"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"RS256","crit":["exp"]}"#,
            r#"{"alg":"RS256","b64":false}"#,
            r#"{"alg":"RS256","b64":true}"#,
            r#"{"alg":"RS256","jwk":{"kty":"RSA","n":"x","e":"AQAB"},"x5c":["a","b"]}"#,
            r#"{"alg":"RS256","alg":"HS256"}"#,
            r#"{"alg":"RS256","a\u006cg":"HS256"}"#,
            r#"{"alg":"RS256","jwk":{"n":1,"n":2}}"#,
            r#"{"alg":"RS256","x":[{"a":1},{"a":1,"a":2}]}"#,
            r#"{"alg":"RS256","x":1.5e3,"y":null,"z":-1}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":10}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}"#,
            r#"{"alg":"RS256"} x"#,
            r#"["alg"]"#,
            r#"{"alg":1e999}"#,
            r#"{"alg":"RS256","#,
            "",
        ] {
            let map = object_no_dups(text.as_bytes());
            let fields = header_fields(text.as_bytes());
            assert_eq!(map.is_some(), fields.is_some(), "{text}");
            let (Some(map), Some(fields)) = (map, fields) else {
                continue;
            };
            let member = |name: &str| {
                map.get(name).map(|v| match v {
                    serde_json::Value::String(s) => Member::Str(Cow::Owned(s.clone())),
                    serde_json::Value::Bool(b) => Member::Bool(*b),
                    _ => Member::Other,
                })
            };
            assert_eq!(fields.alg, member("alg"), "{text}");
            assert_eq!(fields.kid, member("kid"), "{text}");
            assert_eq!(fields.b64, member("b64"), "{text}");
            assert_eq!(fields.crit, map.contains_key("crit"), "{text}");
        }
    }
}
