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
pub(crate) fn object_no_dups(bytes: &[u8]) -> Option<Map<String, Value>> {
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
