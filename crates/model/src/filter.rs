//! Consul's filter expressions (`?filter=` on list endpoints), as Consul evaluates
//! them (hashicorp/go-bexpr v0.1.2, the version Consul pins).
//!
//! ```text
//!  "Meta.env == qa and \"primary\" in Tags"
//!        │ parse (PEG; farthest failure reported as `line:col (offset): no match found, expected: ...`)
//!        ▼
//!  Or/And/Not tree of matches ──compile against a Schema──▶ Filter
//!        (selector checked, operator allowed for its type,   │
//!         value coerced: `Precedence == abc` is refused)      ▼
//!                                         Filter::matches(&serde_json::Value) -> bool
//! ```
//!
//! The language: `Selector == Value`, `!=`, `Value in Selector`, `not in`,
//! `Selector contains Value` (the same match as `in`, written the other way round),
//! `not contains`, `matches` / `not matches` (a regular expression), `is empty`,
//! `is not empty`; `and` binds tighter than `or`; `not`; parentheses. Keywords are
//! lowercase. A selector is `Name(.Name | ["key"])*`; a value is a bare word, a
//! number, `"a Go string"` or `` `raw` ``.
//!
//! What each type allows (checked when the filter is created, as bexpr does):
//!
//! | type | operators |
//! |---|---|
//! | string | `==` `!=` `in`/`contains` (substring) `matches` |
//! | int, float, bool | `==` `!=` (the value must parse as the type) |
//! | list of strings | `in`/`contains` (an element equals) `is empty` |
//! | map of strings | `is empty`, `in` (a key), and `Map.key` takes the string operators |
//! | map of string lists | `is empty`, `in` (a key), and `Map.key` takes the list operators |
//! | list of structs | `is empty`; `List.Field op v` is true when any element matches (never for an empty list) |
//!
//! A missing map key makes `==`, `is not empty` and `in` false and every other
//! operator true, exactly as bexpr does.
//!
//! Parsing nests at most [`MAX_DEPTH`] parentheses and `not`s; chains of `and`/`or`
//! are parsed in a loop, so no input can exhaust the stack.
//!
//! Bounds (a filter is anyone's input, anonymous callers' included): an expression
//! is at most [`MAX_EXPR_LEN`] bytes and holds at most [`MAX_REGEXES`] `matches`;
//! each regular expression is RE2 syntax compiled by [`crate::re::bounded`] within
//! [`REGEX_SIZE_LIMIT`] (ASCII `\w`, as RE2). [`compile_with`] shares compiled
//! patterns through a [`RegexCache`], so the same pattern is compiled once.

use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::fmt;

/// How deeply parentheses and `not` may nest.
pub const MAX_DEPTH: usize = 32;

/// Longest expression accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 4096;

/// Most `matches` / `not matches` in one expression.
pub const MAX_REGEXES: usize = 16;

/// Compiled size budget of one `matches` pattern.
pub const REGEX_SIZE_LIMIT: usize = 256 << 10;

pub use crate::re::RegexCache;

/// The type of a field a selector can name.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    String,
    Int,
    Float,
    Bool,
    StringList,
    StringMap,
    /// A map of string lists (a binding rule's `list.<name>`): `Map.key` takes the
    /// list operators.
    StringListMap,
    Struct(&'static [Field]),
    StructList(&'static [Field]),
}

/// One named field of a schema.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Type,
}

impl Field {
    pub const fn new(name: &'static str, ty: Type) -> Self {
        Field { name, ty }
    }
}

/// A match operator, named as bexpr names it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl Op {
    pub const ALL: [Op; 8] = [
        Op::Equal,
        Op::NotEqual,
        Op::In,
        Op::NotIn,
        Op::IsEmpty,
        Op::IsNotEmpty,
        Op::Matches,
        Op::NotMatches,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Equal => "Equal",
            Op::NotEqual => "Not Equal",
            Op::In => "In",
            Op::NotIn => "Not In",
            Op::IsEmpty => "Is Empty",
            Op::IsNotEmpty => "Is Not Empty",
            Op::Matches => "Matches",
            Op::NotMatches => "Not Matches",
        }
    }

    fn negated(self) -> bool {
        matches!(
            self,
            Op::NotEqual | Op::NotIn | Op::IsNotEmpty | Op::NotMatches
        )
    }

    /// The positive operator this one negates (or itself).
    fn positive(self) -> Op {
        match self {
            Op::NotEqual => Op::Equal,
            Op::NotIn => Op::In,
            Op::IsNotEmpty => Op::IsEmpty,
            Op::NotMatches => Op::Matches,
            other => other,
        }
    }
}

/// Why a filter expression was refused; `Display` is bexpr's text (Consul's HTTP
/// API puts `Failed to create boolean expression evaluator: ` in front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

// ---- syntax ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Ast {
    Or(Vec<Ast>),
    And(Vec<Ast>),
    Not(Box<Ast>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: Option<String>,
    },
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    fail_pos: usize,
    expected: BTreeSet<&'static str>,
    depth: usize,
    too_deep: bool,
}

const WS: &str = "[ \\t\\r\\n]";

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn fail(&mut self, what: &'static str) {
        if self.pos > self.fail_pos {
            self.fail_pos = self.pos;
            self.expected.clear();
        }
        if self.pos == self.fail_pos {
            self.expected.insert(what);
        }
    }

    /// A literal; `shown` is how the expected list spells it (quoted).
    fn lit(&mut self, text: &str, shown: &'static str) -> bool {
        if self.rest().starts_with(text) {
            self.pos += text.len();
            true
        } else {
            self.fail(shown);
            false
        }
    }

    fn class(&mut self, ok: fn(char) -> bool, shown: &'static str) -> Option<char> {
        match self.rest().chars().next() {
            Some(c) if ok(c) => {
                self.pos += c.len_utf8();
                Some(c)
            }
            _ => {
                self.fail(shown);
                None
            }
        }
    }

    /// `[ \t\r\n]+`
    fn ws(&mut self) -> bool {
        let is_ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        if self.class(is_ws, WS).is_none() {
            return false;
        }
        while self.class(is_ws, WS).is_some() {}
        true
    }

    fn opt_ws(&mut self) {
        self.ws();
    }

    /// Runs `f`; on failure the position goes back to where it was.
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.pos;
        let out = f(self);
        if out.is_none() {
            self.pos = start;
        }
        out
    }

    fn input(&mut self) -> Option<Ast> {
        self.opt_ws();
        let e = self.or()?;
        self.opt_ws();
        if self.pos == self.s.len() {
            Some(e)
        } else {
            self.fail("EOF");
            None
        }
    }

    fn or(&mut self) -> Option<Ast> {
        let mut terms = vec![self.and()?];
        while let Some(t) = self.attempt(|p| {
            if p.ws() && p.lit("or", "\"or\"") && p.ws() {
                p.and()
            } else {
                None
            }
        }) {
            terms.push(t);
        }
        Some(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Ast::Or(terms)
        })
    }

    fn and(&mut self) -> Option<Ast> {
        let mut terms = vec![self.not()?];
        while let Some(t) = self.attempt(|p| {
            if p.ws() && p.lit("and", "\"and\"") && p.ws() {
                p.not()
            } else {
                None
            }
        }) {
            terms.push(t);
        }
        Some(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Ast::And(terms)
        })
    }

    /// Runs `f` one nesting level deeper; past [`MAX_DEPTH`] the parse stops.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= MAX_DEPTH {
            self.too_deep = true;
            return None;
        }
        self.depth += 1;
        let out = self.attempt(f);
        self.depth -= 1;
        out
    }

    fn not(&mut self) -> Option<Ast> {
        let rest = self.rest();
        let is_not = rest.starts_with("not") && rest[3..].starts_with([' ', '\t', '\r', '\n']);
        if is_not {
            if let Some(e) = self.nested(|p| {
                p.pos += 3;
                p.ws();
                p.not()
            }) {
                return Some(Ast::Not(Box::new(e)));
            }
        } else {
            self.fail("\"not\"");
        }
        if self.too_deep {
            return None;
        }
        if self.rest().starts_with('(') {
            if let Some(e) = self.nested(|p| {
                p.pos += 1;
                p.opt_ws();
                let e = p.or()?;
                p.opt_ws();
                p.lit(")", "\")\"").then_some(e)
            }) {
                return Some(e);
            }
            if self.too_deep {
                return None;
            }
        } else {
            self.fail("\"(\"");
        }
        self.matcher()
    }

    fn matcher(&mut self) -> Option<Ast> {
        // Selector (== | != | contains | not contains | matches | not matches) Value
        if let Some(m) = self.attempt(|p| {
            let selector = p.selector()?;
            let op = p.attempt(|p| {
                p.opt_ws();
                p.lit("==", "\"==\"").then(|| {
                    p.opt_ws();
                    Op::Equal
                })
            });
            let op = op.or_else(|| {
                p.attempt(|p| {
                    p.opt_ws();
                    p.lit("!=", "\"!=\"").then(|| {
                        p.opt_ws();
                        Op::NotEqual
                    })
                })
            });
            let op = op
                .or_else(|| p.keyword_op(&["contains"], Op::In))
                .or_else(|| p.keyword_op(&["not", "contains"], Op::NotIn))
                .or_else(|| p.keyword_op(&["matches"], Op::Matches))
                .or_else(|| p.keyword_op(&["not", "matches"], Op::NotMatches))?;
            let value = p.value()?;
            Some(Ast::Match {
                selector,
                op,
                value: Some(value),
            })
        }) {
            return Some(m);
        }
        // Selector is [not] empty
        if let Some(m) = self.attempt(|p| {
            let selector = p.selector()?;
            let op = p.attempt(|p| {
                (p.ws() && p.lit("is", "\"is\"") && p.ws() && p.lit("empty", "\"empty\""))
                    .then_some(Op::IsEmpty)
            });
            let op = op.or_else(|| {
                p.attempt(|p| {
                    (p.ws()
                        && p.lit("is", "\"is\"")
                        && p.ws()
                        && p.lit("not", "\"not\"")
                        && p.ws()
                        && p.lit("empty", "\"empty\""))
                    .then_some(Op::IsNotEmpty)
                })
            })?;
            Some(Ast::Match {
                selector,
                op,
                value: None,
            })
        }) {
            return Some(m);
        }
        // Value [not] in Selector
        self.attempt(|p| {
            let value = p.value()?;
            let op = p
                .keyword_op(&["in"], Op::In)
                .or_else(|| p.keyword_op(&["not", "in"], Op::NotIn))?;
            let selector = p.selector()?;
            Some(Ast::Match {
                selector,
                op,
                value: Some(value),
            })
        })
    }

    /// `_ word (_ word)* _`
    fn keyword_op(&mut self, words: &[&'static str], op: Op) -> Option<Op> {
        self.attempt(|p| {
            for w in words {
                if !(p.ws() && p.lit(w, quoted(w))) {
                    return None;
                }
            }
            p.ws().then_some(op)
        })
    }

    fn identifier(&mut self) -> Option<String> {
        let start = self.pos;
        self.class(|c| c.is_ascii_alphabetic(), "[a-zA-Z]")?;
        while self
            .class(|c| c.is_ascii_alphanumeric() || c == '_', "[a-zA-Z0-9_]")
            .is_some()
        {}
        Some(self.s[start..self.pos].to_string())
    }

    fn selector(&mut self) -> Option<Vec<String>> {
        let mut parts = vec![self.identifier()?];
        loop {
            if let Some(id) = self.attempt(|p| {
                if p.lit(".", "\".\"") {
                    p.identifier()
                } else {
                    None
                }
            }) {
                parts.push(id);
                continue;
            }
            if let Some(key) = self.attempt(|p| {
                if !p.lit("[", "\"[\"") {
                    return None;
                }
                p.opt_ws();
                let key = p.string_literal()?;
                p.opt_ws();
                p.lit("]", "\"]\"").then_some(key)
            }) {
                parts.push(key);
                continue;
            }
            return Some(parts);
        }
    }

    fn value(&mut self) -> Option<String> {
        if let Some(sel) = self.attempt(|p| p.selector()) {
            return Some(sel.join("."));
        }
        if let Some(n) = self.attempt(|p| p.number()) {
            return Some(n);
        }
        self.attempt(|p| p.string_literal())
    }

    fn number(&mut self) -> Option<String> {
        let start = self.pos;
        let digit = |c: char| c.is_ascii_digit();
        self.attempt(|p| p.lit("-", "\"-\"").then_some(()));
        if !self.lit("0", "\"0\"") {
            self.class(|c| ('1'..='9').contains(&c), "[1-9]")?;
            while self.class(digit, "[0-9]").is_some() {}
        }
        self.attempt(|p| {
            if !p.lit(".", "\".\"") {
                return None;
            }
            p.class(digit, "[0-9]")?;
            while p.class(digit, "[0-9]").is_some() {}
            Some(())
        });
        // &(_ / EOF / ")")
        match self.rest().chars().next() {
            None | Some(' ' | '\t' | '\r' | '\n' | ')') => {
                Some(self.s[start..self.pos].to_string())
            }
            Some(_) => {
                self.fail(WS);
                self.fail("EOF");
                self.fail("\")\"");
                None
            }
        }
    }

    fn string_literal(&mut self) -> Option<String> {
        if self.lit("`", "\"`\"") {
            let end = self.rest().find('`');
            return match end {
                Some(n) => {
                    let out = self.rest()[..n].to_string();
                    self.pos += n + 1;
                    Some(out)
                }
                None => {
                    self.pos = self.s.len();
                    self.fail("\"`\"");
                    None
                }
            };
        }
        if !self.lit("\"", "\"\\\"\"") {
            return None;
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        'u' | 'U' | 'x' => {
                            let n = match e {
                                'u' => 4,
                                'U' => 8,
                                _ => 2,
                            };
                            let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == n)
                                .and_then(char::from_u32);
                            match ch {
                                Some(ch) => out.push(ch),
                                None => {
                                    self.pos += i;
                                    self.fail("escape sequence");
                                    return None;
                                }
                            }
                        }
                        _ => {
                            self.pos += i;
                            self.fail("escape sequence");
                            return None;
                        }
                    }
                }
                c => out.push(c),
            }
        }
        self.pos = self.s.len();
        self.fail("\"\\\"\"");
        None
    }

    /// pigeon's `line:col (offset): no match found, expected: a, b or c`.
    fn error(&self) -> FilterError {
        let before = &self.s[..self.fail_pos];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        let list: Vec<&str> = self.expected.iter().copied().collect();
        let expected = match list.split_last() {
            None => String::new(),
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        };
        FilterError(format!(
            "{line}:{col} ({}): no match found, expected: {expected}",
            self.fail_pos
        ))
    }
}

fn quoted(w: &str) -> &'static str {
    match w {
        "contains" => "\"contains\"",
        "not" => "\"not\"",
        "matches" => "\"matches\"",
        "in" => "\"in\"",
        _ => "keyword",
    }
}

fn parse(expr: &str) -> Result<Ast, FilterError> {
    let mut p = Parser {
        s: expr,
        pos: 0,
        fail_pos: 0,
        expected: BTreeSet::new(),
        depth: 0,
        too_deep: false,
    };
    match p.input() {
        Some(ast) => Ok(ast),
        None if p.too_deep => Err(FilterError(format!(
            "filter expression nests deeper than {MAX_DEPTH} levels of parentheses and \"not\""
        ))),
        None => Err(p.error()),
    }
}

// ---- compile + evaluate ----------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    /// A struct field.
    Field(&'static str),
    /// Every element of a list of structs (any must match).
    Any,
    /// A key of a map of strings (may be missing).
    Key(String),
}

#[derive(Debug, Clone)]
enum Operand {
    None,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Regex(regex::bytes::Regex),
}

#[derive(Debug, Clone)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Match {
        path: Vec<Step>,
        ty: Type,
        op: Op,
        operand: Operand,
    },
}

/// A compiled filter: evaluate it on each item with [`Filter::matches`].
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
}

/// Parses and checks `expr` against `schema` (the fields of one listed item).
pub fn compile(expr: &str, schema: &'static [Field]) -> Result<Filter, FilterError> {
    compile_with(
        expr,
        schema,
        &RegexCache::new(REGEX_SIZE_LIMIT, MAX_REGEXES),
    )
}

/// [`compile`], taking compiled patterns from (and adding them to) `regexes`.
pub fn compile_with(
    expr: &str,
    schema: &'static [Field],
    regexes: &RegexCache,
) -> Result<Filter, FilterError> {
    if expr.len() > MAX_EXPR_LEN {
        return Err(FilterError(format!(
            "filter expression is {} bytes long; at most {MAX_EXPR_LEN} are accepted",
            expr.len()
        )));
    }
    let ast = parse(expr)?;
    let n = count_regexes(&ast);
    if n > MAX_REGEXES {
        return Err(FilterError(format!(
            "filter expression has {n} \"matches\" operators; at most {MAX_REGEXES} are accepted"
        )));
    }
    Ok(Filter {
        root: check(&ast, schema, regexes)?,
    })
}

fn count_regexes(ast: &Ast) -> usize {
    match ast {
        Ast::Or(v) | Ast::And(v) => v.iter().map(count_regexes).sum(),
        Ast::Not(a) => count_regexes(a),
        Ast::Match { op, .. } => usize::from(op.positive() == Op::Matches),
    }
}

fn allowed(ty: Type) -> &'static [Op] {
    use Op::*;
    match ty {
        Type::String => &[Equal, NotEqual, In, NotIn, Matches, NotMatches],
        Type::Int | Type::Float | Type::Bool => &[Equal, NotEqual],
        Type::StringList | Type::StringMap | Type::StringListMap => {
            &[In, NotIn, IsEmpty, IsNotEmpty]
        }
        Type::StructList(_) => &[IsEmpty, IsNotEmpty],
        Type::Struct(_) => &[],
    }
}

fn check(ast: &Ast, schema: &'static [Field], regexes: &RegexCache) -> Result<Node, FilterError> {
    Ok(match ast {
        Ast::Or(v) => Node::Or(
            v.iter()
                .map(|a| check(a, schema, regexes))
                .collect::<Result<_, _>>()?,
        ),
        Ast::And(v) => Node::And(
            v.iter()
                .map(|a| check(a, schema, regexes))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Not(a) => Node::Not(Box::new(check(a, schema, regexes)?)),
        Ast::Match {
            selector,
            op,
            value,
        } => {
            let shown = selector.join(".");
            let invalid = || FilterError(format!("Selector \"{shown}\" is not valid"));
            let mut ty = Type::Struct(schema);
            let mut path = Vec::new();
            for part in selector {
                ty = match ty {
                    Type::Struct(fields) | Type::StructList(fields) => {
                        if matches!(ty, Type::StructList(_)) {
                            path.push(Step::Any);
                        }
                        let f = fields.iter().find(|f| f.name == part).ok_or_else(invalid)?;
                        path.push(Step::Field(f.name));
                        f.ty
                    }
                    Type::StringMap => {
                        path.push(Step::Key(part.clone()));
                        Type::String
                    }
                    Type::StringListMap => {
                        path.push(Step::Key(part.clone()));
                        Type::StringList
                    }
                    _ => return Err(invalid()),
                };
            }
            if !allowed(ty).contains(op) {
                return Err(FilterError(format!(
                    "Invalid match operator \"{}\" for selector \"{shown}\"",
                    op.name()
                )));
            }
            let coerce_fail = |v: &str, why: String| {
                FilterError(format!(
                    "Failed to coerce value \"{v}\" for selector \"{shown}\": {why}"
                ))
            };
            let operand = match (value, ty, op.positive()) {
                (None, _, _) => Operand::None,
                (Some(v), Type::String, Op::Matches) => match regexes.get(v) {
                    Ok(r) => Operand::Regex(r),
                    Err(e) => {
                        return Err(FilterError(format!(
                            "Failed to compile regular expression \"{v}\" for selector \"{shown}\": {e}"
                        )))
                    }
                },
                (Some(v), Type::Int, _) => Operand::Int(v.parse::<i64>().map_err(|e| {
                    let why = if matches!(
                        e.kind(),
                        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
                    ) {
                        "value out of range"
                    } else {
                        "invalid syntax"
                    };
                    coerce_fail(v, format!("strconv.ParseInt: parsing \"{v}\": {why}"))
                })?),
                (Some(v), Type::Float, _) => Operand::Float(v.parse::<f64>().map_err(|_| {
                    coerce_fail(v, format!("strconv.ParseFloat: parsing \"{v}\": invalid syntax"))
                })?),
                (Some(v), Type::Bool, _) => Operand::Bool(match v.as_str() {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                    _ => {
                        return Err(coerce_fail(
                            v,
                            format!("strconv.ParseBool: parsing \"{v}\": invalid syntax"),
                        ))
                    }
                }),
                (Some(v), _, _) => Operand::Str(v.clone()),
            };
            Node::Match {
                path,
                ty,
                op: *op,
                operand,
            }
        }
    })
}

impl Filter {
    /// Whether `item` (one listed object, shaped like the schema) passes.
    pub fn matches(&self, item: &Json) -> bool {
        eval(&self.root, item)
    }
}

fn eval(node: &Node, item: &Json) -> bool {
    match node {
        Node::Or(v) => v.iter().any(|n| eval(n, item)),
        Node::And(v) => v.iter().all(|n| eval(n, item)),
        Node::Not(n) => !eval(n, item),
        Node::Match {
            path,
            ty,
            op,
            operand,
        } => walk(path, item, *ty, *op, operand),
    }
}

static NULL: Json = Json::Null;

fn walk(path: &[Step], v: &Json, ty: Type, op: Op, operand: &Operand) -> bool {
    match path.split_first() {
        None => leaf(v, ty, op, operand),
        Some((Step::Field(name), rest)) => {
            walk(rest, v.get(*name).unwrap_or(&NULL), ty, op, operand)
        }
        Some((Step::Any, rest)) => v
            .as_array()
            .is_some_and(|items| items.iter().any(|e| walk(rest, e, ty, op, operand))),
        Some((Step::Key(k), rest)) => match v.get(k.as_str()) {
            Some(found) => walk(rest, found, ty, op, operand),
            None => !matches!(op, Op::Equal | Op::IsNotEmpty | Op::In),
        },
    }
}

fn leaf(v: &Json, ty: Type, op: Op, operand: &Operand) -> bool {
    let positive = match (ty, op.positive(), operand) {
        (Type::String, Op::Equal, Operand::Str(want)) => v.as_str().unwrap_or("") == want,
        (Type::String, Op::In, Operand::Str(part)) => {
            v.as_str().unwrap_or("").contains(part.as_str())
        }
        (Type::String, Op::Matches, Operand::Regex(r)) => {
            r.is_match(v.as_str().unwrap_or("").as_bytes())
        }
        (Type::Int, Op::Equal, Operand::Int(want)) => v.as_i64().unwrap_or(0) == *want,
        (Type::Float, Op::Equal, Operand::Float(want)) => v.as_f64().unwrap_or(0.0) == *want,
        (Type::Bool, Op::Equal, Operand::Bool(want)) => v.as_bool().unwrap_or(false) == *want,
        (Type::StringList, Op::In, Operand::Str(want)) => v
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e.as_str() == Some(want.as_str()))),
        (Type::StringMap | Type::StringListMap, Op::In, Operand::Str(key)) => {
            v.as_object().is_some_and(|m| m.contains_key(key.as_str()))
        }
        (Type::StringList | Type::StructList(_), Op::IsEmpty, _) => {
            v.as_array().is_none_or(Vec::is_empty)
        }
        (Type::StringMap | Type::StringListMap, Op::IsEmpty, _) => {
            v.as_object().is_none_or(|m| m.is_empty())
        }
        // `check` allows no other combination.
        _ => false,
    };
    positive != op.negated()
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
