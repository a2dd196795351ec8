//! Decoding config entries exactly like Consul's decoder (mapstructure over HCL1/JSON).
//!
//! Input is HCL1 or JSON (auto-detected), parsed into a [`serde_json::Value`] tree, then
//! deserialized into the permissive wire structs of [`crate::wire`] through
//! [`ConsulDe`], a serde `Deserializer` that reproduces what Consul's mapstructure set-up
//! does:
//! - field names match case-insensitively, and each field's snake_case alias
//!   (`json_web_key_set`, `path_prefix`, ...) matches too;
//! - a one-element list where a single value is expected is unwrapped (HCL1 blocks),
//!   and a single value where a list is expected becomes a one-element list;
//! - weak typing: `"false"`/`"1500"` decode as bool/int, numbers as strings;
//! - durations are Go duration strings or integer nanoseconds;
//! - unknown keys are collected, all of them, as `invalid config key "<dotted.path>"`
//!   (with Consul CE's texts for enterprise-only keys).
//!
//! The wire structs' serde field lists are the only list of accepted keys.

use crate::error::{multierror, DecodeError};
use crate::go;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

/// The input syntax of a config entry file or request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Hcl,
}

/// Detects JSON (first non-blank character `{`) versus HCL.
pub fn detect_syntax(input: &str) -> Syntax {
    let trimmed = input.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.starts_with('{') {
        Syntax::Json
    } else {
        Syntax::Hcl
    }
}

/// How deeply objects and lists may nest in any document Tribune parses (entries,
/// ACL rules, agent config, service definitions, snapshot documents, API bodies).
/// Consul's deepest entry nests 8 levels; the limit keeps every recursive step
/// (decoding, validation, dropping the tree) far from the end of a thread's stack.
pub const MAX_NESTING: usize = 64;

/// The error for a document nested deeper than [`MAX_NESTING`].
pub fn nesting_message() -> String {
    format!("nesting deeper than {MAX_NESTING} levels (the limit)")
}

/// Parses JSON text with Tribune's nesting limit: every JSON document that comes from
/// outside goes through here (or [`parse_raw`]).
pub fn parse_json(input: &[u8]) -> Result<Value, DecodeError> {
    match serde_json::from_slice::<Value>(input) {
        Ok(v) if nesting_depth(&v) > MAX_NESTING => Err(DecodeError::Syntax(nesting_message())),
        Ok(v) => Ok(v),
        // serde_json's own guard (128 levels) stops deeper input before it recurses.
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            Err(DecodeError::Syntax(nesting_message()))
        }
        Err(e) => Err(DecodeError::Syntax(format!("invalid JSON: {e}"))),
    }
}

/// The depth of a JSON tree (a scalar is 0, `[]` and `{}` are 1), without recursion.
pub fn nesting_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    deepest
}

/// Parses HCL or JSON text into a JSON object (the "raw map" Consul decodes from).
pub fn parse_raw(input: &str) -> Result<Map<String, Value>, DecodeError> {
    match detect_syntax(input) {
        Syntax::Json => match parse_json(input.as_bytes())? {
            Value::Object(m) => Ok(m),
            _ => Err(DecodeError::Syntax(
                "JSON config entry must be an object".into(),
            )),
        },
        Syntax::Hcl => crate::hcl::parse(input).map_err(|e| DecodeError::Syntax(e.to_string())),
    }
}

/// Deserializes `value` into `T` with Consul's rules; `root` is the path prefix used in
/// messages ("" at the top of an entry).
pub fn from_value<T: de::DeserializeOwned>(value: &Value, root: &str) -> Result<T, DecodeError> {
    decode_with(value, root, Keys::Consul)
}

/// Deserializes a request body that Consul decodes with Go's `encoding/json` (the ACL
/// endpoints): a key matches its field exactly, else in any case (py-consul sends
/// `{"name": ..., "rules": ...}`); no snake_case aliases, and unknown keys are
/// ignored, as Go ignores them. Values decode as in [`from_value`].
pub fn from_go_json<T: de::DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    decode_with(value, "", Keys::GoJson)
}

/// How object keys meet struct fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Keys {
    /// mapstructure as Consul sets it up: any case, snake_case aliases, unknown keys
    /// reported.
    #[default]
    Consul,
    /// Go `encoding/json`: exact, else any case; unknown keys ignored.
    GoJson,
}

fn decode_with<T: de::DeserializeOwned>(
    value: &Value,
    root: &str,
    keys: Keys,
) -> Result<T, DecodeError> {
    // A value that cannot be decoded is recorded and taken out of the input, and the
    // decode runs again, so every such value is reported at once (like Consul's
    // multierror), not just the first. Each run takes one failing value out; after
    // `MAX_VALUE_ERRORS` the rest go unreported, so a body of ten thousand bad values
    // costs twenty decodes, not ten thousand.
    const MAX_VALUE_ERRORS: usize = 20;
    let mut errors: Vec<String> = Vec::new();
    let mut input = std::borrow::Cow::Borrowed(value);
    loop {
        let found = Found {
            mode: keys,
            ..Found::default()
        };
        let de = ConsulDe {
            value: &input,
            path: root.to_string(),
            unknown: &found,
        };
        let result = T::deserialize(de);
        let mut all = found.keys.into_inner();
        match result {
            Ok(v) if all.is_empty() && errors.is_empty() => return Ok(v),
            Ok(_) => {
                all.extend(errors);
                return Err(DecodeError::Fields(all));
            }
            Err(e) => {
                let repeated = errors.contains(&e.0);
                if !repeated {
                    errors.push(e.0);
                }
                let next = match found.failed.get() {
                    Some(gone)
                        if !repeated
                            && errors.len() < MAX_VALUE_ERRORS
                            && !std::ptr::eq(gone, &*input) =>
                    {
                        without(&input, gone)
                    }
                    _ => {
                        all.extend(errors);
                        return Err(DecodeError::Fields(all));
                    }
                };
                input = std::borrow::Cow::Owned(next);
            }
        }
    }
}

/// What one decode run found besides its result: the unknown keys, and the innermost
/// value that failed to decode.
#[derive(Default)]
pub struct Found<'a> {
    keys: RefCell<Vec<String>>,
    failed: std::cell::Cell<Option<&'a Value>>,
    mode: Keys,
}

impl<'a> Found<'a> {
    fn fail(&self, at: &'a Value) {
        if self.failed.get().is_none() {
            self.failed.set(Some(at));
        }
    }
}

/// `root` without the value `gone` (an object member is dropped, a list item becomes
/// null so later items keep their index).
fn without(root: &Value, gone: &Value) -> Value {
    match root {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !std::ptr::eq(*v, gone))
                .map(|(k, v)| (k.clone(), without(v, gone)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| {
                    if std::ptr::eq(v, gone) {
                        Value::Null
                    } else {
                        without(v, gone)
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The message for a key that no field takes: Consul CE's, with its Enterprise note
/// only where the feature really is Enterprise-only (namespaces). Consul CE calls
/// every unknown key holding `jwt` "api-gateway jwt validation", which misleads for
/// a `JWT` block put in the wrong place (issue #42): that one is told where it goes.
pub fn unknown_key_message(dotted: &str) -> String {
    let lower = dotted.to_ascii_lowercase();
    let last = lower.rsplit('.').next().unwrap_or(&lower);
    if lower.ends_with("namespace") {
        format!(
            "invalid config key {}, namespaces are a consul enterprise feature",
            go::quote(dotted)
        )
    } else if last == "jwt" {
        format!(
            "invalid config key {}: a JWT block goes at the top level of a service-intentions entry (every source) or in a permission (Sources[i].Permissions[j].JWT)",
            go::quote(dotted)
        )
    } else {
        format!("invalid config key {}", go::quote(dotted))
    }
}

/// The field an unknown key was most likely meant to be: within two edits (any case,
/// either spelling) and close for its length, so `Issuor` suggests `Issuer` and
/// `Bogus` suggests nothing.
pub fn suggestion<'f>(key: &str, fields: impl IntoIterator<Item = &'f str>) -> Option<&'f str> {
    let key = key.to_ascii_lowercase();
    fields
        .into_iter()
        .filter_map(|f| {
            let d = [f.to_ascii_lowercase(), snake_alias(f)]
                .iter()
                .map(|name| strsim::levenshtein(&key, name))
                .min()
                .unwrap_or(usize::MAX);
            (d <= 2 && d * 3 <= f.len()).then_some((d, f))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// snake_case alias of a CamelCase field name, as Consul's `alias:` tags spell them
/// (`JSONWebKeySet` -> `json_web_key_set`, `UseSNI` -> `use_sni`).
pub fn snake_alias(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Extra spellings Consul accepts beyond the mechanical alias (a typo kept in its tags).
fn extra_alias(field: &str) -> Option<&'static str> {
    match field {
        "PadForwardPayloadHeader" => Some("pay_forward_payload_header"),
        _ => None,
    }
}

/// An error during deserialization. `located` errors already carry their field path.
#[derive(Debug)]
pub struct DeError(String, bool);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string(), false)
    }
}

/// serde `Deserializer` over a parsed value with Consul's decoding rules.
pub struct ConsulDe<'a, 'u> {
    value: &'a Value,
    path: String,
    unknown: &'u Found<'a>,
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

impl<'a, 'u> ConsulDe<'a, 'u> {
    fn child(&self, value: &'a Value, path: String) -> ConsulDe<'a, 'u> {
        ConsulDe {
            value,
            path,
            unknown: self.unknown,
        }
    }

    fn field_path(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// A one-element list where a single value is expected is unwrapped.
    fn single(&self) -> &'a Value {
        match self.value {
            Value::Array(items) if items.len() == 1 => &items[0],
            v => v,
        }
    }

    fn located(&self, e: DeError) -> DeError {
        if e.1 {
            e
        } else {
            DeError(format!("error decoding '{}': {}", self.path, e.0), true)
        }
    }

    fn unconvertible(&self, want: &str, v: &Value) -> DeError {
        DeError(
            format!(
                "'{}' expected type '{want}', got unconvertible type '{}', value: '{}'",
                self.path,
                go_type(v),
                v
            ),
            true,
        )
    }

    fn parse_int(&self, v: &Value, bits: &str) -> Result<i128, DeError> {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Ok(i128::from(u))
                } else {
                    Ok(n.as_f64().unwrap_or(0.0).trunc() as i128)
                }
            }
            Value::Bool(b) => Ok(i128::from(*b)),
            Value::String(s) => {
                let s = if s.is_empty() { "0" } else { s.as_str() };
                go_parse_int(s).ok_or_else(|| {
                    DeError(
                        format!(
                            "cannot parse '{}' as {bits}: strconv.ParseInt: parsing {}: invalid syntax",
                            self.path,
                            go::quote(s)
                        ),
                        true,
                    )
                })
            }
            other => Err(self.unconvertible(bits, other)),
        }
    }
}

/// Go `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-0 octal
/// prefixes, underscores only between digits with a prefix.
fn go_parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    let clean: String = if radix != 10 {
        digits.replace('_', "")
    } else {
        digits.to_string()
    };
    if clean.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(&clean, radix).ok()?;
    let v = if neg { -v } else { v };
    (i128::from(i64::MIN)..=i128::from(i64::MAX))
        .contains(&v)
        .then_some(v)
}

/// Go `strconv.ParseBool`.
fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        let f = n.as_f64().unwrap_or(0.0);
        if f.fract() == 0.0 && f.abs() < 1e21 {
            format!("{f:.0}")
        } else {
            f.to_string()
        }
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty, $name:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.single();
            let i = self.parse_int(v, $name)?;
            let n = <$ty>::try_from(i).map_err(|_| {
                DeError(
                    format!(
                        "cannot parse '{}' as {}: value {} out of range",
                        self.path, $name, i
                    ),
                    true,
                )
            })?;
            visitor.$visit(n).map_err(|e| self.located(e))
        }
    };
}

impl<'de> de::Deserializer<'de> for ConsulDe<'de, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => {
                let path = self.path.clone();
                return visitor.visit_seq(Seq {
                    items: items.iter(),
                    index: 0,
                    path,
                    unknown: self.unknown,
                });
            }
            Value::Object(map) => {
                return visitor.visit_map(RawMap {
                    iter: map.iter(),
                    value: None,
                    parent: &self,
                });
            }
        };
        r.map_err(|e| self.located(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.single();
        let b = match v {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
            Value::String(s) => match go_parse_bool(s) {
                Some(b) => b,
                None if s.is_empty() => false,
                None => {
                    return Err(DeError(
                        format!(
                        "cannot parse '{}' as bool: strconv.ParseBool: parsing {}: invalid syntax",
                        self.path,
                        go::quote(s)
                    ),
                        true,
                    ))
                }
            },
            other => return Err(self.unconvertible("bool", other)),
        };
        visitor.visit_bool(b).map_err(|e| self.located(e))
    }

    int_method!(deserialize_i8, visit_i8, i8, "int");
    int_method!(deserialize_i16, visit_i16, i16, "int");
    int_method!(deserialize_i32, visit_i32, i32, "int");
    int_method!(deserialize_i64, visit_i64, i64, "int");
    int_method!(deserialize_u8, visit_u8, u8, "uint");
    int_method!(deserialize_u16, visit_u16, u16, "uint");
    int_method!(deserialize_u32, visit_u32, u32, "uint");
    int_method!(deserialize_u64, visit_u64, u64, "uint");

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.single();
        let f = match v {
            Value::Number(n) => n.as_f64().unwrap_or(0.0),
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::String(s) if s.is_empty() => 0.0,
            Value::String(s) => s.parse().map_err(|_| {
                DeError(
                    format!(
                        "cannot parse '{}' as float: strconv.ParseFloat: parsing {}: invalid syntax",
                        self.path,
                        go::quote(s)
                    ),
                    true,
                )
            })?,
            other => return Err(self.unconvertible("float64", other)),
        };
        visitor.visit_f64(f).map_err(|e| self.located(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.single();
        let r = match v {
            Value::String(s) => visitor.visit_str(s),
            Value::Bool(b) => visitor.visit_str(if *b { "1" } else { "0" }),
            Value::Number(n) => visitor.visit_string(number_text(n)),
            other => return Err(self.unconvertible("string", other)),
        };
        r.map_err(|e| self.located(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::String(s) => visitor.visit_str(s).map_err(|e| self.located(e)),
            _ => self.deserialize_seq(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let inner = self.child(self.single(), self.path.clone());
        visitor.visit_newtype_struct(inner)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                index: 0,
                path: self.path.clone(),
                unknown: self.unknown,
            }),
            Value::Null => visitor.visit_seq(Seq {
                items: [].iter(),
                index: 0,
                path: self.path.clone(),
                unknown: self.unknown,
            }),
            one => visitor.visit_seq(Seq {
                items: std::slice::from_ref(one).iter(),
                index: 0,
                path: self.path.clone(),
                unknown: self.unknown,
            }),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.single() {
            Value::Object(map) => {
                let de = self.child(self.single(), self.path.clone());
                visitor.visit_map(RawMap {
                    iter: map.iter(),
                    value: None,
                    parent: &de,
                })
            }
            Value::Null => visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(
                String,
                String,
            )>())),
            other => Err(self.unconvertible("map", other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let map = match self.single() {
            Value::Object(map) => map,
            Value::Null => {
                return visitor.visit_map(StructMap {
                    entries: Vec::new().into_iter(),
                    value: None,
                    parent: &self,
                })
            }
            other => return Err(self.unconvertible("struct", other)),
        };
        let mut taken = vec![false; fields.len()];
        let mut used = vec![false; map.len()];
        let keys: Vec<(&String, &Value)> = map.iter().collect();
        let mut entries: Vec<(&'static str, &'de Value)> = Vec::new();
        let consul = self.unknown.mode == Keys::Consul;
        for (fi, field) in fields.iter().enumerate() {
            let alias = snake_alias(field);
            let extra = extra_alias(field);
            let pick = keys
                .iter()
                .position(|(k, _)| k.as_str() == *field)
                .or_else(|| {
                    keys.iter().enumerate().position(|(ki, (k, _))| {
                        !used[ki]
                            && (k.eq_ignore_ascii_case(field)
                                || (consul
                                    && (k.eq_ignore_ascii_case(&alias)
                                        || extra.is_some_and(|x| k.eq_ignore_ascii_case(x)))))
                    })
                });
            if let Some(ki) = pick {
                if !used[ki] {
                    used[ki] = true;
                    taken[fi] = true;
                    entries.push((field, keys[ki].1));
                }
            }
        }
        for (ki, (k, _)) in keys.iter().enumerate() {
            if !used[ki] && consul {
                let dotted = self.field_path(k);
                let mut message = unknown_key_message(&dotted);
                let free = fields
                    .iter()
                    .zip(&taken)
                    .filter(|(_, t)| !**t)
                    .map(|(f, _)| *f);
                if let Some(near) = suggestion(k, free) {
                    message.push_str(&format!(" (did you mean {}?)", go::quote(near)));
                }
                self.unknown.keys.borrow_mut().push(message);
            }
        }
        visitor.visit_map(StructMap {
            entries: entries.into_iter(),
            value: None,
            parent: &self,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.single() {
            Value::String(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| self.located(e)),
            other => Err(self.unconvertible("string", other)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct Seq<'a, 'u> {
    items: std::slice::Iter<'a, Value>,
    index: usize,
    path: String,
    unknown: &'u Found<'a>,
}

impl<'de> SeqAccess<'de> for Seq<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(v) = self.items.next() else {
            return Ok(None);
        };
        let de = ConsulDe {
            value: v,
            path: format!("{}[{}]", self.path, self.index),
            unknown: self.unknown,
        };
        self.index += 1;
        seed.deserialize(de)
            .inspect_err(|_| self.unknown.fail(v))
            .map(Some)
    }
}

/// A map with arbitrary keys (e.g. `Meta`): keys kept as written.
struct RawMap<'a, 'p, 'u> {
    iter: serde_json::map::Iter<'a>,
    value: Option<(&'a String, &'a Value)>,
    parent: &'p ConsulDe<'a, 'u>,
}

impl<'de> MapAccess<'de> for RawMap<'de, '_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some((k, v));
        seed.deserialize(k.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| DeError("map value without key".into(), true))?;
        seed.deserialize(self.parent.child(v, self.parent.field_path(k)))
            .inspect_err(|_| self.parent.unknown.fail(v))
    }
}

/// A struct's members, keys already mapped to the canonical field names.
struct StructMap<'a, 'p, 'u> {
    entries: std::vec::IntoIter<(&'static str, &'a Value)>,
    value: Option<(&'static str, &'a Value)>,
    parent: &'p ConsulDe<'a, 'u>,
}

impl<'de> MapAccess<'de> for StructMap<'de, '_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((k, v));
        seed.deserialize(k.into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| DeError("map value without key".into(), true))?;
        seed.deserialize(self.parent.child(v, self.parent.field_path(k)))
            .inspect_err(|_| self.parent.unknown.fail(v))
    }
}

/// A Go `time.Duration` on input: a duration string or integer nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoDuration(pub i64);

impl<'de> de::Deserialize<'de> for GoDuration {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\" or integer nanoseconds")
            }
            fn visit_newtype_struct<D: de::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<GoDuration, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                Ok(GoDuration(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                i64::try_from(v)
                    .map(GoDuration)
                    .map_err(|_| E::custom(format!("duration {v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
                Ok(GoDuration(v.trunc() as i64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                go::parse_duration(v).map(GoDuration).map_err(E::custom)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<GoDuration, E> {
                Err(E::custom(format!("expected a duration, got {v}")))
            }
        }
        d.deserialize_newtype_struct("GoDuration", V)
    }
}

/// Bytes on input (`TrustedCA.InlineBytes`): standard base64 (what the API returns)
/// when the text is valid base64, otherwise the string's own bytes (what Consul's
/// weak decoding does with a PEM pasted as a string), or a list of byte values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputBytes(pub Vec<u8>);

impl<'de> de::Deserialize<'de> for InputBytes {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("base64 text, a string, or a list of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<InputBytes, E> {
                use base64::Engine;
                match base64::engine::general_purpose::STANDARD.decode(v) {
                    Ok(b) if !v.is_empty() => Ok(InputBytes(b)),
                    _ => Ok(InputBytes(v.as_bytes().to_vec())),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputBytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(InputBytes(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Formats decode errors the way Consul prints them (a Go multierror).
pub fn format_decode_errors(errors: &[String]) -> String {
    multierror(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_aliases_match_consul_tags() {
        for (field, alias) in [
            ("JSONWebKeySet", "json_web_key_set"),
            ("RequestTimeoutMs", "request_timeout_ms"),
            ("CacheDuration", "cache_duration"),
            ("FetchAsynchronously", "fetch_asynchronously"),
            ("UseSNI", "use_sni"),
            ("RetryPolicy", "retry_policy"),
            ("NumRetries", "num_retries"),
            ("RetryPolicyBackOff", "retry_policy_back_off"),
            ("BaseInterval", "base_interval"),
            ("JWKSCluster", "jwks_cluster"),
            ("DiscoveryType", "discovery_type"),
            ("ConnectTimeout", "connect_timeout"),
            ("TLSCertificates", "tls_certificates"),
            (
                "CaCertificateProviderInstance",
                "ca_certificate_provider_instance",
            ),
            ("InstanceName", "instance_name"),
            ("TrustedCA", "trusted_ca"),
            ("EnvironmentVariable", "environment_variable"),
            ("InlineBytes", "inline_bytes"),
            ("ValuePrefix", "value_prefix"),
            ("QueryParam", "query_param"),
            ("HeaderName", "header_name"),
            ("PadForwardPayloadHeader", "pad_forward_payload_header"),
            ("ClockSkewSeconds", "clock_skew_seconds"),
            ("CacheConfig", "cache_config"),
            ("VerifyClaims", "verify_claims"),
            ("LegacyID", "legacy_id"),
            ("LegacyCreateTime", "legacy_create_time"),
            ("SamenessGroup", "sameness_group"),
            ("PathExact", "path_exact"),
            ("IgnoreCase", "ignore_case"),
            ("ExternalSNI", "external_sni"),
            ("MaxInboundConnections", "max_inbound_connections"),
            ("URI", "uri"),
            ("JWT", "jwt"),
        ] {
            assert_eq!(snake_alias(field), alias, "{field}");
        }
    }

    #[test]
    fn go_ints_and_bools() {
        assert_eq!(go_parse_int("1500"), Some(1500));
        assert_eq!(go_parse_int("-0x10"), Some(-16));
        assert_eq!(go_parse_int("0755"), Some(493));
        assert_eq!(go_parse_int("1_000"), None);
        assert_eq!(go_parse_int("abc"), None);
        assert_eq!(go_parse_bool("False"), Some(false));
        assert_eq!(go_parse_bool("yes"), None);
    }
}
