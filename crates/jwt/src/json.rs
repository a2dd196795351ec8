//! JSON parsing that rejects duplicate member names (RFC 7515 §4: a JWS with
//! duplicate header names must be rejected or use the last one; Tribune rejects, and
//! does the same for the payload so two parsers can never disagree on a claim).

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use std::fmt;

struct NoDups;

impl<'de> DeserializeSeed<'de> for NoDups {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(NoDupsVisitor)
    }
}

struct NoDupsVisitor;

impl<'de> Visitor<'de> for NoDupsVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("invalid number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(NoDups)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(k) = map.next_key::<String>()? {
            // One hash per member: the vacant slot is filled once the value is parsed.
            match out.entry(k) {
                Entry::Occupied(e) => {
                    return Err(de::Error::custom(format!("duplicate member {:?}", e.key())));
                }
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(NoDups)?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parses a JSON object, rejecting duplicate member names at any depth.
pub fn object_no_dups(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let v = NoDups.deserialize(&mut d).ok()?;
    d.end().ok()?;
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_rejected_at_any_depth() {
        assert!(object_no_dups(br#"{"a":1,"b":{"c":2}}"#).is_some());
        assert!(object_no_dups(br#"{"a":1,"a":2}"#).is_none());
        assert!(object_no_dups(br#"{"a":{"c":1,"c":2}}"#).is_none());
        assert!(object_no_dups(br#"[1]"#).is_none());
        assert!(object_no_dups(br#"{"a":1} x"#).is_none());
    }
}

#[cfg(test)]
mod claims_tests {
    use super::object_no_dups;
    use crate::Claims;
    use serde_json::{json, Value};

    /// The claims index accepts exactly what the map-building parser accepts and
    /// reads the same members from it (escaped names, nesting, numbers, duplicates
    /// at any depth, past 8 members, nesting past serde_json's limit).
    #[test]
    fn claims_agree_with_the_map_parser() {
        let deep = format!(
            r#"{{"iss":"a","x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let shallow = format!(
            r#"{{"iss":"a","x":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        // Around serde_json's limit: 127 containers deep in all (the object and 126
        // arrays) parse, 128 do not.
        let at = |n: usize| format!(r#"{{"x":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
        let (limit_less, limit, limit_more) = (at(125), at(126), at(127));
        // 70 members: plain strings, escaped strings and numbers in turn.
        let many = format!(
            "{{{}}}",
            (0..70)
                .map(|i| match i % 3 {
                    0 => format!(r#""m{i}":"v{i}""#),
                    1 => format!(r#""m{i}":"e\"{i}""#),
                    _ => format!(r#""m{i}":{i}"#),
                })
                .collect::<Vec<_>>()
                .join(",")
        );
        let cases = [
            many.as_str(),
            limit_less.as_str(),
            limit.as_str(),
            limit_more.as_str(),
            deep.as_str(),
            shallow.as_str(),
            r#"{"iss":"https://idp","aud":["api","web"],"exp":1700000000,"role":"admin"}"#,
            r#"{"r\u006fle":"admin","sub":"a\"b\\c","n":-1.5e3,"t":true,"z":null}"#,
            r#"{"org":{"team":{"name":"payments"}},"list":[{"a":1},{"b":[]}]}"#,
            r#"{"iss":"a","iss":"b"}"#,
            r#"{"iss":"a","\u0069ss":"b"}"#,
            r#"{"x":{"a":1,"a":2}}"#,
            r#"{"x":[{"a":1},{"a":1,"a":2}]}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":10}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}"#,
            r#"{"exp":1e999}"#,
            r#"{"big":18446744073709551616,"small":-9223372036854775809}"#,
            r#"{"s":"\ud83d\ude00","e":"\u00e9"}"#,
            r#"{"lone":"\ud800"}"#,
            r#"{"iss":"a"} x"#,
            r#"["iss"]"#,
            r#""iss""#,
            r#"{"iss":"a","#,
            "{}",
            " { \"spaced\" : [ 1 , 2 ] } ",
            "",
        ];
        for text in cases {
            let map = object_no_dups(text.as_bytes());
            let claims = Claims::parse(text.as_bytes());
            assert_eq!(map.is_some(), claims.is_some(), "{text}");
            if text == many || text == limit {
                assert!(claims.is_some(), "{text}");
            }
            if text == limit_more {
                assert!(claims.is_none(), "past the limit");
            }
            let (Some(map), Some(claims)) = (map, claims) else {
                continue;
            };
            assert_eq!(claims.len(), map.len(), "{text}");
            for (name, value) in &map {
                assert_eq!(claims.get(name).as_ref(), Some(value), "{text}: {name}");
                assert_eq!(
                    claims.str(name).as_deref(),
                    value.as_str(),
                    "{text}: {name}"
                );
            }
            assert_eq!(claims.to_value(), Value::Object(map), "{text}");
            assert_eq!(claims.json(), text, "the text is kept as signed");
        }
    }

    #[test]
    fn claims_read_members_paths_and_strings() {
        let c = Claims::parse(
            br#"{"r\u006fle":"admin","sub":"a\"b","org":{"team":{"name":"payments"}},"n":7}"#,
        )
        .unwrap();
        assert_eq!(c.str("role").as_deref(), Some("admin"), "escaped name");
        assert_eq!(c.str("sub").as_deref(), Some("a\"b"), "escaped value");
        assert_eq!(c.str("n"), None, "not a string");
        assert_eq!(c.raw("n"), Some("7"));
        assert_eq!(c.get("missing"), None);
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            c.at(&path(&["org", "team", "name"])),
            Some(json!("payments"))
        );
        assert_eq!(c.at(&path(&["org", "nope"])), None);
        assert_eq!(c.at(&path(&["n", "x"])), None, "a number has no members");
        assert_eq!(
            c.at(&[]),
            Some(c.to_value()),
            "the empty path is the payload"
        );
        let names: Vec<&str> = c.members().map(|(n, _)| n).collect();
        assert_eq!(names, ["role", "sub", "org", "n"], "in the payload's order");
        let built = Claims::from_value(&json!({"iss": "x", "aud": ["a"]})).unwrap();
        assert_eq!(built.str("iss").as_deref(), Some("x"));
        assert_eq!(Claims::from_value(&json!([1])), None);
        assert!(Claims::empty().is_empty());
    }
}
