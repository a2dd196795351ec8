//! A small parser for HCL **version 1**, the dialect Consul decodes config entries with.
//!
//! HCL2 parsers (hcl-rs) reject forms that Consul's own documentation uses, such as a
//! block without `=` inside an object in a list (`Permissions = [ { Action = "allow"
//! HTTP { PathPrefix = "/v2" } } ]`) or object members on one line without commas.
//! This parser accepts HCL1 and produces a [`serde_json::Value`] tree that the
//! Consul-compatible decoder ([`crate::decode`]) then maps onto typed entries.
//!
//! Mapping to JSON:
//! - `key = value` and `key { ... }` are the same: a member of the enclosing object;
//! - `key "label" { ... }` nests: `{"key": {"label": {...}}}`;
//! - a key given more than once collects its values into a list (repeated blocks
//!   append, lists are concatenated), as HCL1 does;
//! - strings keep `${...}` interpolations literally; heredocs (`<<EOF`, `<<-EOF`);
//!   numbers (decimal, `0x` hex, floats with exponents); `true`/`false`.

use crate::decode::MAX_NESTING;
use serde_json::{Map, Number, Value};
use std::fmt;

/// A syntax error with the 1-based line and column where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for HclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "At {}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for HclError {}

/// Parses an HCL1 document into a JSON object.
pub fn parse(src: &str) -> Result<Map<String, Value>, HclError> {
    let tokens = Lexer::new(src).tokens()?;
    let mut p = Parser {
        tokens,
        pos: 0,
        // The document itself is an object: depths count like `decode::nesting_depth`.
        depth: 1,
    };
    let body = p.body(false)?;
    Ok(body)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Number(Number),
    Bool(bool),
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Assign,
    Comma,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Str(_) => "string".into(),
            Tok::Number(n) => format!("number {n}"),
            Tok::Bool(b) => format!("{b}"),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LBrack => "'['".into(),
            Tok::RBrack => "']'".into(),
            Tok::Assign => "'='".into(),
            Tok::Comma => "','".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Spanned {
    tok: Tok,
    line: usize,
    col: usize,
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    col: usize,
    _src: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            chars: src.chars().collect(),
            pos: 0,
            line: 1,
            col: 1,
            _src: src,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err(&self, line: usize, col: usize, message: impl Into<String>) -> HclError {
        HclError {
            line,
            col,
            message: message.into(),
        }
    }

    fn tokens(mut self) -> Result<Vec<Spanned>, HclError> {
        let mut out = Vec::new();
        loop {
            self.skip_space_and_comments()?;
            let (line, col) = (self.line, self.col);
            let Some(c) = self.peek() else {
                out.push(Spanned {
                    tok: Tok::Eof,
                    line,
                    col,
                });
                return Ok(out);
            };
            let tok = match c {
                '{' => {
                    self.bump();
                    Tok::LBrace
                }
                '}' => {
                    self.bump();
                    Tok::RBrace
                }
                '[' => {
                    self.bump();
                    Tok::LBrack
                }
                ']' => {
                    self.bump();
                    Tok::RBrack
                }
                '=' | ':' => {
                    self.bump();
                    Tok::Assign
                }
                ',' => {
                    self.bump();
                    Tok::Comma
                }
                '"' => Tok::Str(self.string()?),
                '<' if self.peek_at(1) == Some('<') => Tok::Str(self.heredoc()?),
                c if c.is_ascii_digit()
                    || (c == '-' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
                {
                    Tok::Number(self.number()?)
                }
                c if c.is_alphabetic() || c == '_' => {
                    let mut s = String::new();
                    while let Some(c) = self.peek() {
                        if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
                            s.push(c);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    match s.as_str() {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        _ => Tok::Ident(s),
                    }
                }
                other => return Err(self.err(line, col, format!("illegal char {other:?}"))),
            };
            out.push(Spanned { tok, line, col });
        }
    }

    fn skip_space_and_comments(&mut self) -> Result<(), HclError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some('/') if self.peek_at(1) == Some('/') => self.skip_line(),
                Some('/') if self.peek_at(1) == Some('*') => {
                    let (line, col) = (self.line, self.col);
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(self.err(line, col, "comment not terminated")),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn string(&mut self) -> Result<String, HclError> {
        let (line, col) = (self.line, self.col);
        self.bump(); // opening quote
        let mut out = String::new();
        let mut interp_depth = 0usize;
        loop {
            let Some(c) = self.bump() else {
                return Err(self.err(line, col, "literal not terminated"));
            };
            match c {
                '\n' if interp_depth == 0 => {
                    return Err(self.err(line, col, "literal not terminated"));
                }
                '"' if interp_depth == 0 => return Ok(out),
                '$' if self.peek() == Some('{') => {
                    out.push('$');
                    out.push('{');
                    self.bump();
                    interp_depth += 1;
                }
                '{' if interp_depth > 0 => {
                    out.push('{');
                    interp_depth += 1;
                }
                '}' if interp_depth > 0 => {
                    out.push('}');
                    interp_depth -= 1;
                }
                '\\' if interp_depth == 0 => {
                    let Some(e) = self.bump() else {
                        return Err(self.err(line, col, "literal not terminated"));
                    };
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        'u' | 'U' => {
                            let n = if e == 'u' { 4 } else { 8 };
                            let mut hex = String::new();
                            for _ in 0..n {
                                match self.bump() {
                                    Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                                    _ => return Err(self.err(line, col, "invalid unicode escape")),
                                }
                            }
                            let cp = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err(line, col, "invalid unicode escape"))?;
                            out.push(cp);
                        }
                        other => {
                            return Err(self.err(
                                line,
                                col,
                                format!("unknown escape sequence \\{other}"),
                            ))
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn heredoc(&mut self) -> Result<String, HclError> {
        let (line, col) = (self.line, self.col);
        self.bump();
        self.bump();
        let indented = if self.peek() == Some('-') {
            self.bump();
            true
        } else {
            false
        };
        let mut marker = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                marker.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if marker.is_empty() {
            return Err(self.err(line, col, "heredoc must have a marker, e.g. <<EOF"));
        }
        // Rest of the opening line must be empty.
        while let Some(c) = self.peek() {
            if c == '\r' || c == ' ' || c == '\t' {
                self.bump();
            } else {
                break;
            }
        }
        if self.bump() != Some('\n') {
            return Err(self.err(line, col, "heredoc marker must be followed by a new line"));
        }
        let mut lines: Vec<String> = Vec::new();
        loop {
            if self.peek().is_none() {
                return Err(self.err(line, col, "heredoc not terminated"));
            }
            let mut l = String::new();
            while let Some(c) = self.peek() {
                if c == '\n' {
                    break;
                }
                l.push(c);
                self.bump();
            }
            let at_end = self.peek().is_none();
            let trimmed = l.trim_end_matches('\r');
            let is_end = if indented {
                trimmed.trim_start() == marker
            } else {
                trimmed == marker
            };
            if is_end {
                break;
            }
            if at_end {
                return Err(self.err(line, col, "heredoc not terminated"));
            }
            self.bump(); // newline
            lines.push(trimmed.to_string());
        }
        if indented {
            // Indentation is spaces and tabs (one byte each), so every cut is on a
            // character boundary; other whitespace (U+00A0, ...) is content. (A cut
            // measured with `trim_start` panicked inside U+00A0: found by fuzzing.)
            let lead = |l: &str| l.len() - l.trim_start_matches([' ', '\t']).len();
            let indent = lines
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| lead(l))
                .min()
                .unwrap_or(0);
            for l in &mut lines {
                let cut = indent.min(lead(l));
                *l = l[cut..].to_string();
            }
        }
        let mut out = String::new();
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        Ok(out)
    }

    fn number(&mut self) -> Result<Number, HclError> {
        let (line, col) = (self.line, self.col);
        let mut s = String::new();
        if self.peek() == Some('-') {
            s.push('-');
            self.bump();
        }
        while let Some(c) = self.peek() {
            let sign_of_exponent = (c == '+' || c == '-') && s.ends_with(['e', 'E']) && !is_hex(&s);
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || sign_of_exponent {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        parse_number(&s).ok_or_else(|| self.err(line, col, format!("invalid number {s:?}")))
    }
}

fn is_hex(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    s.starts_with("0x") || s.starts_with("0X")
}

fn parse_number(s: &str) -> Option<Number> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let int = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(i64::from_str_radix(hex, 16).ok()?)
    } else if body.chars().all(|c| c.is_ascii_digit()) {
        if body.len() > 1 && body.starts_with('0') {
            Some(i64::from_str_radix(&body[1..], 8).ok()?)
        } else {
            Some(body.parse::<i64>().ok()?)
        }
    } else {
        None
    };
    match int {
        Some(i) => Some(Number::from(if neg { -i } else { i })),
        None => {
            let f: f64 = s.parse().ok()?;
            Number::from_f64(f)
        }
    }
}

struct Parser {
    tokens: Vec<Spanned>,
    pos: usize,
    /// Objects and lists open around the current token (labels count as objects).
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Spanned {
        // The lexer always ends the stream with Eof, and the parser never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Spanned {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn err(&self, at: &Spanned, message: impl Into<String>) -> HclError {
        HclError {
            line: at.line,
            col: at.col,
            message: message.into(),
        }
    }

    /// Enters `levels` more objects or lists; refuses past [`MAX_NESTING`] so no input
    /// can recurse the parser (or anything that walks its tree) off the stack.
    fn enter(&mut self, at: &Spanned, levels: usize) -> Result<(), HclError> {
        self.depth += levels;
        if self.depth > MAX_NESTING {
            return Err(self.err(at, crate::decode::nesting_message()));
        }
        Ok(())
    }

    /// Parses object members until `}` (when `nested`) or end of input.
    fn body(&mut self, nested: bool) -> Result<Map<String, Value>, HclError> {
        let mut map = Map::new();
        loop {
            let t = self.peek().clone();
            match &t.tok {
                Tok::Eof if !nested => return Ok(map),
                Tok::Eof => return Err(self.err(&t, "object expected closing RBRACE got: EOF")),
                Tok::RBrace if nested => {
                    self.next();
                    return Ok(map);
                }
                Tok::Comma => {
                    self.next();
                }
                Tok::Ident(_) | Tok::Str(_) => {
                    let (key, value) = self.item()?;
                    insert(&mut map, key, value);
                }
                other => {
                    return Err(self.err(
                        &t,
                        format!("expected an object key, got {}", other.describe()),
                    ))
                }
            }
        }
    }

    fn key(&mut self) -> Option<String> {
        match self.peek().tok.clone() {
            Tok::Ident(s) | Tok::Str(s) => {
                self.next();
                Some(s)
            }
            _ => None,
        }
    }

    fn item(&mut self) -> Result<(String, Value), HclError> {
        let mut keys = Vec::new();
        while let Some(k) = self.key() {
            keys.push(k);
        }
        let t = self.next();
        let value = match &t.tok {
            Tok::Assign if keys.len() == 1 => self.value()?,
            Tok::Assign => {
                return Err(self.err(&t, "nested object expected: LBRACE got: ASSIGN"));
            }
            Tok::LBrace => {
                // `a "b" "c" {` opens one object per key.
                self.enter(&t, keys.len())?;
                let body = self.body(true)?;
                self.depth -= keys.len();
                Value::Object(body)
            }
            other => {
                return Err(self.err(
                    &t,
                    format!(
                        "key {:?} expected '=' or '{{', got {}",
                        keys.last().cloned().unwrap_or_default(),
                        other.describe()
                    ),
                ))
            }
        };
        // `a "b" "c" { }` nests as {"a": {"b": {"c": {...}}}}.
        let mut value = value;
        while keys.len() > 1 {
            let label = keys.pop().unwrap_or_default();
            let mut m = Map::new();
            m.insert(label, value);
            value = Value::Object(m);
        }
        Ok((keys.pop().unwrap_or_default(), value))
    }

    fn value(&mut self) -> Result<Value, HclError> {
        let t = self.next();
        Ok(match &t.tok {
            Tok::Str(s) => Value::String(s.clone()),
            Tok::Number(n) => Value::Number(n.clone()),
            Tok::Bool(b) => Value::Bool(*b),
            Tok::LBrace => {
                self.enter(&t, 1)?;
                let body = self.body(true)?;
                self.depth -= 1;
                Value::Object(body)
            }
            Tok::LBrack => {
                self.enter(&t, 1)?;
                let mut items = Vec::new();
                loop {
                    let t = self.peek().clone();
                    match t.tok {
                        Tok::RBrack => {
                            self.next();
                            break;
                        }
                        Tok::Comma => {
                            self.next();
                        }
                        Tok::Eof => {
                            return Err(
                                self.err(&t, "error parsing list, expected comma or list end")
                            )
                        }
                        _ => items.push(self.value()?),
                    }
                }
                self.depth -= 1;
                Value::Array(items)
            }
            Tok::Ident(s) => {
                return Err(self.err(
                    &t,
                    format!("unknown token: identifier {s:?} (strings must be quoted)"),
                ))
            }
            other => {
                return Err(self.err(&t, format!("expected a value, got {}", other.describe())))
            }
        })
    }
}

/// Inserts `key = value`; a repeated key turns the member into a list of all its values.
fn insert(map: &mut Map<String, Value>, key: String, value: Value) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, value);
        }
        Some(existing) => {
            if !existing.is_array() {
                let first = existing.take();
                *existing = Value::Array(vec![first]);
            }
            if let Value::Array(list) = existing {
                match value {
                    Value::Array(more) => list.extend(more),
                    one => list.push(one),
                }
            }
        }
    }
}

/// Renders a JSON object as HCL1 that [`parse`] reads back to the same object: one
/// `Key = value` per member, objects and lists of objects indented by two spaces, lists
/// of scalars on one line (what the UI's HCL view and `config read -format hcl` show).
/// `null` members are left out (HCL1 has no null). A string holding `${` cannot be
/// written in HCL1 (interpolations are kept raw), so it comes back as written.
pub fn render(object: &Map<String, Value>) -> String {
    let mut out = String::new();
    render_body(object, 0, &mut out);
    out
}

fn render_key(k: &str) -> String {
    let bare = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && k != "true"
        && k != "false";
    if bare {
        k.to_string()
    } else {
        render_string(k)
    }
}

/// `s` as an HCL1 string literal (quotes and control characters escaped).
pub fn render_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_body(m: &Map<String, Value>, depth: usize, out: &mut String) {
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        out.push_str(&"  ".repeat(depth));
        out.push_str(&render_key(k));
        out.push_str(" = ");
        render_value(v, depth, out);
        out.push('\n');
    }
}

fn render_value(v: &Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(m) if m.values().all(Value::is_null) => out.push_str("{}"),
        Value::Object(m) => {
            out.push_str("{\n");
            render_body(m, depth + 1, out);
            out.push_str(&pad);
            out.push('}');
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            out.push_str("[\n");
            for i in items.iter().filter(|i| !i.is_null()) {
                out.push_str(&pad);
                out.push_str("  ");
                render_value(i, depth + 1, out);
                out.push_str(",\n");
            }
            out.push_str(&pad);
            out.push(']');
        }
        Value::Array(items) => {
            out.push('[');
            let mut first = true;
            for i in items.iter().filter(|i| !i.is_null()) {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                render_value(i, depth, out);
            }
            out.push(']');
        }
        Value::String(s) => out.push_str(&render_string(s)),
        Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Value {
        Value::Object(parse(s).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn block_without_assign_inside_object_in_list() {
        let v = p(r#"
Permissions = [
  {
    Action = "allow"
    HTTP {
      PathPrefix = "/v2"
      Methods = ["GET", "PUT"]
    }
  },
  { Action = "deny"  HTTP { PathExact = "/admin" } }
]
"#);
        assert_eq!(
            v,
            json!({"Permissions": [
                {"Action": "allow", "HTTP": {"PathPrefix": "/v2", "Methods": ["GET", "PUT"]}},
                {"Action": "deny", "HTTP": {"PathExact": "/admin"}}
            ]})
        );
    }

    #[test]
    fn members_on_one_line_without_commas() {
        assert_eq!(
            p(r#"Sources = [{ Name = "a" Action = "allow" }]"#),
            json!({"Sources": [{"Name": "a", "Action": "allow"}]})
        );
    }

    #[test]
    fn repeated_blocks_append_and_lists_concatenate() {
        assert_eq!(
            p(r#"sources { name = "a" } sources { name = "b" } x = [1] x = [2, 3]"#),
            json!({"sources": [{"name": "a"}, {"name": "b"}], "x": [1, 2, 3]})
        );
    }

    #[test]
    fn labelled_blocks_nest() {
        assert_eq!(
            p(r#"service "web" { policy = "write" } service_prefix "" { intentions = "read" }"#),
            json!({"service": {"web": {"policy": "write"}}, "service_prefix": {"": {"intentions": "read"}}})
        );
    }

    #[test]
    fn scalars_comments_and_heredocs() {
        let v = p(r#"
# comment
// another
/* block
   comment */
a = 1
b = -2.5e3
c = 0x1F
d = true
e = "tab\there \"q\" ${var.x["k"]}"
f = <<EOF
line1
  line2
EOF
g = <<-EOT
    x
      y
    EOT
h: "colon"
"quoted key" = "v"
"#);
        assert_eq!(
            v,
            json!({
                "a": 1, "b": -2500.0, "c": 31, "d": true,
                "e": "tab\there \"q\" ${var.x[\"k\"]}",
                "f": "line1\n  line2\n", "g": "x\n  y\n", "h": "colon", "quoted key": "v"
            })
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("a = \"unterminated\nb = 1").unwrap_err();
        assert_eq!((e.line, e.col), (1, 5));
        assert!(e.to_string().starts_with("At 1:5: literal not terminated"));
        let e = parse("a = b").unwrap_err();
        assert!(e.message.contains("strings must be quoted"), "{e}");
        let e = parse("a { b = 1").unwrap_err();
        assert!(e.message.contains("RBRACE"), "{e}");
        let e = parse("a = [1, 2").unwrap_err();
        assert!(e.message.contains("list"), "{e}");
        let e = parse("= 1").unwrap_err();
        assert!(e.message.contains("expected an object key"), "{e}");
    }

    /// Fuzz finds (`fuzz/artifacts`, hcl and acl_rules targets): an indented heredoc
    /// whose lines start with U+00A0 panicked on a cut inside the character.
    #[test]
    fn indented_heredocs_with_unicode_spaces_do_not_panic() {
        let v = p("a = <<-e\n\n\u{a0}\u{a0}x\n  y\n  e\n");
        // U+00A0 is content, not indentation: the common indent is 0.
        assert_eq!(v["a"], "\n\u{a0}\u{a0}x\n  y\n");
        assert!(parse("=<<-e\n\n\u{a0}\u{a0}\u{a0}\n\n \n\n [\n\n e").is_err());
        let v = p("a = <<-E\n\t\tx\n\t y\n\tE\n");
        assert_eq!(v["a"], "x\ny\n");
    }

    #[test]
    fn nesting_is_limited_for_objects_lists_and_labels() {
        let deep = |open: &str, close: &str, n: usize| {
            format!("a = {}1{}", open.repeat(n), close.repeat(n))
        };
        // At the limit: parsed, and as deep as the JSON parser measures it.
        let ok = format!(
            "{}b = 1{}",
            "a { ".repeat(MAX_NESTING - 1),
            "}".repeat(MAX_NESTING - 1)
        );
        let v = Value::Object(parse(&ok).unwrap());
        assert_eq!(crate::decode::nesting_depth(&v), MAX_NESTING);
        let lists = deep("[", "]", MAX_NESTING - 1);
        assert_eq!(
            crate::decode::nesting_depth(&Value::Object(parse(&lists).unwrap())),
            MAX_NESTING
        );
        // One more, and 3 000 more (which used to overflow the stack), are refused.
        for n in [MAX_NESTING, 3_000] {
            for src in [
                format!("{}b = 1{}", "a { ".repeat(n), "}".repeat(n)),
                deep("[", "]", n),
                deep("{ b = ", "}", n),
                format!("a {} {{ }}", "\"l\" ".repeat(n)),
            ] {
                let e = parse(&src).unwrap_err();
                assert!(e.message.contains("nesting deeper than 64 levels"), "{e}");
            }
        }
    }
}
