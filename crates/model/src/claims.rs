//! A verified token's claims, kept as the payload's JSON text with its top-level
//! members indexed: one parse that checks the whole payload and records where each
//! member is, no map, no allocation per claim. A claim is decoded when a decision
//! reads it (`iss`, the paths of `VerifyClaims` and `ClaimToHeaders`), and the whole
//! object only for explanations and replay output.
//!
//! The payload is checked by the rules every JSON Tribune reads from a token follows
//! (RFC 7515 §4, decisions.md): one JSON object, no duplicate member names at any
//! depth, finite numbers, serde_json's nesting limit. [`Checked`] and [`MemberName`]
//! are those rules as serde seeds, also used for the JOSE header.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// A JSON object's text and where its members are.
#[derive(Clone)]
pub struct Claims {
    /// The object's JSON text, then the decoded names of members whose names hold
    /// escapes.
    text: Box<str>,
    members: Box<[Member]>,
    /// Where the object's text ends in `text`.
    json_len: u32,
}

#[derive(Clone, Copy)]
struct Member {
    name: Span,
    value: Span,
    /// The value is a string without escapes: the text between its quotes is it.
    plain_str: bool,
}

#[derive(Clone, Copy)]
struct Span {
    at: u32,
    len: u32,
}

impl Span {
    fn of(text: &str, part: &str) -> Span {
        // `part` is a subslice of `text` (borrowed by the parser from it).
        let at = part.as_ptr() as usize - text.as_ptr() as usize;
        Span {
            at: at as u32,
            len: part.len() as u32,
        }
    }
}

impl Claims {
    /// Parses and indexes a JSON object; `None` when `json` is not one JSON object
    /// by the rules above (or is larger than 4 GiB).
    pub fn parse(json: &[u8]) -> Option<Claims> {
        let text = std::str::from_utf8(json).ok()?;
        u32::try_from(text.len()).ok()?;
        // One pass for the members: names, and each value's text (its syntax checked
        // by the parser as it is skipped)...
        let mut d = serde_json::Deserializer::from_str(text);
        let spans = Index.deserialize(&mut d).ok()?;
        d.end().ok()?;
        // ...then the rules the skip does not check, where they can fail: distinct
        // names, and inside containers, numbers and escaped strings.
        if spans.len() <= 8 {
            let names = spans.iter().map(|(n, _)| n);
            if names
                .enumerate()
                .any(|(i, n)| spans[i + 1..].iter().any(|(m, _)| m == n))
            {
                return None;
            }
        } else {
            let mut names: Vec<&str> = spans.iter().map(|(n, _)| &**n).collect();
            if has_duplicate_names(&mut names) {
                return None;
            }
        }
        // One pass over the members: the checks the skip left (numbers and escaped
        // strings inside values), then each member's place in the kept text.
        let mut owned = String::with_capacity(text.len());
        owned.push_str(text);
        let mut members = Vec::with_capacity(spans.len());
        for (name, value) in spans {
            let raw = value.get();
            let bytes = raw.as_bytes();
            let plain_str = bytes.first() == Some(&b'"') && !bytes.contains(&b'\\');
            let plain = plain_str
                || match bytes.first() {
                    Some(b't' | b'f' | b'n') => true,
                    // An integer of up to 18 digits (a NumericDate) is finite.
                    Some(b'-' | b'0'..=b'9') => {
                        bytes.len() <= 18 && bytes[1..].iter().all(u8::is_ascii_digit)
                    }
                    _ => false,
                };
            if !plain {
                let mut d = serde_json::Deserializer::from_str(raw);
                Checked::MEMBER.deserialize(&mut d).ok()?;
            }
            let name = match name {
                Cow::Borrowed(n) => Span::of(text, n),
                Cow::Owned(n) => {
                    let at = owned.len() as u32;
                    owned.push_str(&n);
                    Span {
                        at,
                        len: n.len() as u32,
                    }
                }
            };
            members.push(Member {
                name,
                value: Span::of(text, raw),
                plain_str,
            });
        }
        u32::try_from(owned.len()).ok()?;
        Some(Claims {
            text: owned.into_boxed_str(),
            members: members.into_boxed_slice(),
            json_len: text.len() as u32,
        })
    }

    /// The claims of a JSON object built in memory (explanations, tests, replay).
    pub fn from_object(object: &Map<String, Value>) -> Claims {
        // serde_json writes valid JSON with the map's (unique) names.
        serde_json::to_string(object)
            .ok()
            .and_then(|text| Claims::parse(text.as_bytes()))
            .unwrap_or_else(Claims::empty)
    }

    /// The claims of `value` when it is a JSON object.
    pub fn from_value(value: &Value) -> Option<Claims> {
        value.as_object().map(Claims::from_object)
    }

    /// `{}`.
    pub fn empty() -> Claims {
        Claims {
            text: "{}".into(),
            members: Box::new([]),
            json_len: 2,
        }
    }

    fn span(&self, s: Span) -> &str {
        self.text
            .get(s.at as usize..(s.at + s.len) as usize)
            .unwrap_or_default()
    }

    /// The object's JSON text.
    pub fn json(&self) -> &str {
        self.text.get(..self.json_len as usize).unwrap_or_default()
    }

    /// How many members the object has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Bytes held (for bounds on what keeps claims).
    pub fn size(&self) -> usize {
        std::mem::size_of::<Claims>()
            + self.text.len()
            + self.members.len() * std::mem::size_of::<Member>()
    }

    /// The member named `name` (lengths compared first: most names differ there).
    fn member(&self, name: &str) -> Option<&Member> {
        let (text, name) = (self.text.as_bytes(), name.as_bytes());
        self.members.iter().find(|m| {
            m.name.len as usize == name.len()
                && text.get(m.name.at as usize..(m.name.at + m.name.len) as usize) == Some(name)
        })
    }

    /// The JSON text of the member `name`.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.member(name).map(|m| self.span(m.value))
    }

    /// The member `name` when it is a string (borrowed unless it holds escapes).
    pub fn str(&self, name: &str) -> Option<Cow<'_, str>> {
        let m = self.member(name)?;
        if m.plain_str {
            // Known at parse time: the text between the quotes is the value.
            let inner = Span {
                at: m.value.at + 1,
                len: m.value.len.saturating_sub(2),
            };
            return Some(Cow::Borrowed(self.span(inner)));
        }
        json_str(self.span(m.value))
    }

    /// The member `name`, decoded.
    pub fn get(&self, name: &str) -> Option<Value> {
        serde_json::from_str(self.raw(name)?).ok()
    }

    /// The value at `path` (nested objects); an empty path is the whole object.
    pub fn at(&self, path: &[String]) -> Option<Value> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self.to_value());
        };
        let mut v = self.get(first)?;
        for key in rest {
            v = v.as_object_mut()?.remove(key)?;
        }
        Some(v)
    }

    /// Every member: its name and JSON text, in the order of the object.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members
            .iter()
            .map(|m| (self.span(m.name), self.span(m.value)))
    }

    /// The whole object, decoded.
    pub fn to_value(&self) -> Value {
        let mut map = Map::with_capacity(self.members.len());
        for (name, raw) in self.members() {
            if let Ok(v) = serde_json::from_str(raw) {
                map.insert(name.to_owned(), v);
            }
        }
        Value::Object(map)
    }
}

/// A JSON string's value (borrowed unless it holds escapes); `None` for any other
/// JSON text.
pub fn json_str(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    // Checked when the claims were parsed: without a backslash, the text between the
    // quotes is the value.
    if !inner.as_bytes().contains(&b'\\') {
        return Some(Cow::Borrowed(inner));
    }
    match serde_json::from_str::<&str>(raw) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Claims({})", self.to_value())
    }
}

/// Equal when they hold the same members with the same values (member order and
/// spelling of the JSON aside).
impl PartialEq for Claims {
    fn eq(&self, other: &Claims) -> bool {
        self.to_value() == other.to_value()
    }
}

/// The top-level members of an object: names (borrowed unless escaped) and values'
/// text.
struct Index;

type Spans<'de> = Vec<(Cow<'de, str>, &'de RawValue)>;

impl<'de> DeserializeSeed<'de> for Index {
    type Value = Spans<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Index {
    type Value = Spans<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(k) = map.next_key_seed(MemberName)? {
            out.push((k, map.next_value::<&'de RawValue>()?));
        }
        Ok(out)
    }
}

/// Whether `keys` (one object's member names) holds a name twice. Sorted when long,
/// so an object of many members costs n log n, not n².
pub fn has_duplicate_names<T: Ord>(keys: &mut [T]) -> bool {
    if keys.len() <= 8 {
        return keys
            .iter()
            .enumerate()
            .any(|(i, k)| keys[i + 1..].contains(k));
    }
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// A member name, borrowed from the input unless it holds an escape.
pub struct MemberName;

impl<'de> DeserializeSeed<'de> for MemberName {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(MemberNameVisitor)
    }
}

struct MemberNameVisitor;

impl<'de> Visitor<'de> for MemberNameVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Any JSON value, checked (finite numbers, no duplicate member names at any depth,
/// valid strings) and not kept. `depth` is how many containers enclose the value:
/// nesting is bounded as serde_json bounds a whole document (at most 127 containers
/// deep), also for a value checked apart from the object that holds it.
#[derive(Clone, Copy)]
pub struct Checked {
    pub depth: usize,
}

/// Containers a document may nest (serde_json's recursion limit, 128, refuses the
/// 128th).
const MAX_CONTAINERS: usize = 127;

impl Checked {
    /// A member of a top-level object.
    pub const MEMBER: Checked = Checked { depth: 1 };

    fn inner(self) -> Result<Checked, ()> {
        // The value would be container number `depth + 1`.
        match self.depth >= MAX_CONTAINERS {
            true => Err(()),
            false => Ok(Checked {
                depth: self.depth + 1,
            }),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match v.is_finite() {
            true => Ok(()),
            false => Err(E::custom("invalid number")),
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self
            .inner()
            .map_err(|()| de::Error::custom("nested too deeply"))?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self
            .inner()
            .map_err(|()| de::Error::custom("nested too deeply"))?;
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(k) = map.next_key_seed(MemberName)? {
            map.next_value_seed(inner)?;
            keys.push(k);
        }
        match has_duplicate_names(&mut keys) {
            true => Err(de::Error::custom("duplicate member")),
            false => Ok(()),
        }
    }
}
