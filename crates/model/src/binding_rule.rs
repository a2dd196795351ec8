//! ACL binding rules (issue #43), Consul's shapes, rules and texts: which identities
//! a login through an auth method gives its token.
//!
//! ```text
//!  verified JWT claims ──ClaimMappings / ListClaimMappings──▶ Identity
//!        {"nomad_service": "web", ...}                          value.nomad_service = "web"
//!                                                               list.groups = ["ops"]
//!  for each rule of the method:
//!    Selector (the filter language, over `value` and `list`) matches the identity?
//!      └─ yes: BindName with `${value.x}` interpolated (lowercased) ──▶ Binding
//!             service "web" | node "n1" | role "ops" | policy "p" | templated policy
//! ```
//!
//! Everything here is pure: the agent looks the role and policy names up, drops the
//! ones that do not exist (as Consul does), and refuses a login that binds nothing.
//! A rule can only name identities; nothing in a token's claims can widen what a
//! bound identity grants (the grants are fixed in [`crate::api`]'s identity types and
//! the agent's authorizer).

use crate::api::{AclTemplatedPolicy, AclTemplatedPolicyVariables};
use crate::auth_method::MethodConfig;
use crate::filter::{self, Field, Filter, Type};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a rule binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindType {
    Service,
    Node,
    Role,
    Policy,
    TemplatedPolicy,
}

impl BindType {
    pub const ALL: [BindType; 5] = [
        BindType::Service,
        BindType::Node,
        BindType::Role,
        BindType::Policy,
        BindType::TemplatedPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BindType::Service => "service",
            BindType::Node => "node",
            BindType::Role => "role",
            BindType::Policy => "policy",
            BindType::TemplatedPolicy => "templated-policy",
        }
    }

    pub fn parse(s: &str) -> Option<BindType> {
        BindType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A binding rule as the API carries it (Consul's `ACLBindingRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindingRule {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub auth_method: String,
    #[serde(default)]
    pub selector: String,
    /// Kept as text so an unknown type gets Consul's message, not a decoding error.
    #[serde(default)]
    pub bind_type: String,
    #[serde(default)]
    pub bind_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_vars: Option<AclTemplatedPolicyVariables>,
}

/// What a selector may name: `value.<name>` (a mapped claim) and `list.<name>` (a
/// mapped list claim).
pub const SELECTOR_SCHEMA: &[Field] = &[
    Field::new("value", Type::StringMap),
    Field::new("list", Type::StringListMap),
];

/// The identity a login proved: its mapped claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub values: BTreeMap<String, String>,
    pub lists: BTreeMap<String, Vec<String>>,
    /// Every `value.<name>` a BindName may use (mapped names; empty when the token
    /// did not carry the claim).
    projected: BTreeMap<String, String>,
}

impl Identity {
    /// The identity a method's rules are checked against when written: every mapped
    /// name present, with a placeholder value.
    pub fn placeholder(config: &MethodConfig) -> Identity {
        let projected = config
            .claim_mappings
            .values()
            .map(|t| (format!("value.{t}"), "fake".to_string()))
            .collect();
        Identity {
            values: BTreeMap::new(),
            lists: BTreeMap::new(),
            projected,
        }
    }

    /// Consul's claim extraction: each mapping's source is a claim name, or a JSON
    /// pointer (`/a/b`) into the claims; a value must be a string, a boolean or a
    /// number (a fraction is truncated); a list claim may be one such value. Claims
    /// the token does not carry are left out.
    pub fn from_claims(config: &MethodConfig, claims: &Value) -> Result<Identity, String> {
        let get = |source: &str| -> Option<&Value> {
            if source.starts_with('/') {
                claims.pointer(source)
            } else {
                claims.get(source)
            }
            .filter(|v| !v.is_null())
        };
        let mut id = Identity::default();
        for target in config.claim_mappings.values() {
            id.projected
                .insert(format!("value.{target}"), String::new());
        }
        for (source, target) in &config.claim_mappings {
            let Some(raw) = get(source) else { continue };
            let s = stringify(raw).ok_or_else(|| {
                format!(
                    "error converting claim '{source}' to string from unknown type {}",
                    go_type(raw)
                )
            })?;
            id.projected.insert(format!("value.{target}"), s.clone());
            id.values.insert(target.clone(), s);
        }
        for (source, target) in &config.list_claim_mappings {
            let Some(raw) = get(source) else { continue };
            let items: Vec<&Value> = match raw {
                Value::Array(a) => a.iter().collect(),
                Value::Object(_) => {
                    return Err(format!(
                        "{source:?} list claim could not be converted to string list"
                    ))
                }
                one => vec![one],
            };
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                let s = stringify(item).ok_or_else(|| {
                    format!("value {item} in {source:?} list claim could not be parsed as string")
                })?;
                if !s.is_empty() {
                    list.push(s);
                }
            }
            id.lists.insert(target.clone(), list);
        }
        Ok(id)
    }

    /// What a selector is evaluated on: `{"value": {...}, "list": {...}}`.
    pub fn selectable(&self) -> Value {
        serde_json::json!({"value": self.values, "list": self.lists})
    }

    /// The variables a BindName may interpolate.
    pub fn projected(&self) -> &BTreeMap<String, String> {
        &self.projected
    }
}

fn stringify(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => i.to_string(),
            None => (n.as_f64()? as i64).to_string(),
        }),
        _ => None,
    }
}

/// How Go would name a decoded JSON value's type (Consul's text shows it).
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        _ => "<nil>",
    }
}

/// Consul's `InterpolateHIL` for the one form binding rules use: `${name}` is the
/// variable's value (lowercased when `lowercase`), `$${` is a literal `${`, and an
/// unknown variable is an error. Anything else inside `${ }` (HIL's functions and
/// arithmetic) is refused rather than guessed at.
pub fn interpolate(
    template: &str,
    vars: &BTreeMap<String, String>,
    lowercase: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let body = &rest[at + 2..];
        let end = body
            .find('}')
            .ok_or_else(|| format!("{template:?}: unterminated \"${{\""))?;
        let name = body[..end].trim();
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(format!(
                "{template:?}: only variables (\"${{value.name}}\") may be used, not {name:?}"
            ));
        }
        let v = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable accessed: {name}"))?;
        if lowercase {
            out.push_str(&v.to_lowercase());
        } else {
            out.push_str(v);
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Consul's rule for service and node identity names: lowercase letters, digits,
/// `-` and `_`, starting and ending with a letter or digit, at most 256 bytes.
pub fn valid_identity_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=256).contains(&b.len())
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || matches!(c, b'-' | b'_'))
}

/// Consul's role name rule (1 to 256 of `[A-Za-z0-9_-]`); policies allow 128.
fn valid_link_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Consul's built-in templated policies Tribune grants: `builtin/service` and
/// `builtin/node` (the same grants as a service or node identity, `Name`
/// required) and `builtin/dns` (read on every service and node).
pub const TEMPLATES: [&str; 3] = ["builtin/service", "builtin/node", "builtin/dns"];

/// Checks a templated policy's name and variables (Consul's schema: `Name` required
/// and a valid identity name for `builtin/service` and `builtin/node`).
pub fn check_templated(p: &AclTemplatedPolicy) -> Result<(), String> {
    if !TEMPLATES.contains(&p.template_name.as_str()) {
        return Err(format!(
            "Bind name for templated-policy bind type does not match existing template name: {}",
            p.template_name
        ));
    }
    if p.template_name == "builtin/dns" {
        return Ok(());
    }
    let name = p
        .template_variables
        .as_ref()
        .map(|v| v.name.as_str())
        .unwrap_or("");
    if name.is_empty() {
        return Err(format!(
            "templated policy failed validation: {}: name is required",
            p.template_name
        ));
    }
    if !valid_identity_name(name) {
        return Err(format!(
            "templated policy failed validation: {}: name {name:?} is not valid: only lowercase alphanumeric characters, '-' and '_' are allowed",
            p.template_name
        ));
    }
    Ok(())
}

/// What one matching rule gives a login's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Service(String),
    Node(String),
    /// A role by name: kept only if it exists.
    Role(String),
    /// A policy by name: kept only if it exists.
    Policy(String),
    Templated(AclTemplatedPolicy),
}

/// Why a rule is refused (Consul's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuleError {}

impl BindingRule {
    /// Consul's checks of a rule being written, in Consul's order. `existing` is the
    /// stored rule with this ID (an update keeps its AuthMethod); `method` is the
    /// rule's auth method, looked up by the caller.
    pub fn validate(
        &mut self,
        existing: Option<&BindingRule>,
        method: Option<&crate::auth_method::AuthMethod>,
    ) -> Result<(), RuleError> {
        let err = |m: String| Err(RuleError(m));
        if let Some(old) = existing {
            if self.auth_method.is_empty() {
                self.auth_method = old.auth_method.clone();
            } else if self.auth_method != old.auth_method {
                return err("the AuthMethod field of an Binding Rule is immutable".into());
            }
        }
        if self.auth_method.is_empty() {
            return err("Invalid Binding Rule: no AuthMethod is set".into());
        }
        let Some(method) = method else {
            return err(format!(
                "cannot find auth method with name {:?}",
                self.auth_method
            ));
        };
        if !self.selector.is_empty() {
            if let Err(e) = filter::compile(&self.selector, SELECTOR_SCHEMA) {
                return err(format!("invalid Binding Rule: Selector is invalid: {e}"));
            }
        }
        if self.bind_type.is_empty() {
            return err("Invalid Binding Rule: no BindType is set".into());
        }
        if self.bind_name.is_empty() {
            return err("Invalid Binding Rule: no BindName is set".into());
        }
        let Some(kind) = BindType::parse(&self.bind_type) else {
            return err(format!(
                "Invalid Binding Rule: unknown BindType {:?}",
                self.bind_type
            ));
        };
        let fake = Identity::placeholder(&method.config);
        if let Err(e) = compute(kind, &self.bind_name, self.bind_vars.as_ref(), &fake) {
            return err(format!(
                "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType {:?}: {e}",
                kind.as_str()
            ));
        }
        Ok(())
    }

    /// Whether the rule's selector matches `identity` (an empty selector matches
    /// everyone; one that no longer compiles matches no one, as in Consul).
    pub fn matches(&self, identity: &Identity) -> bool {
        if self.selector.is_empty() {
            return true;
        }
        filter::compile(&self.selector, SELECTOR_SCHEMA)
            .map(|f: Filter| f.matches(&identity.selectable()))
            .unwrap_or(false)
    }
}

/// The binding of one rule for `identity` (the rule's selector already matched).
fn compute(
    kind: BindType,
    bind_name: &str,
    bind_vars: Option<&AclTemplatedPolicyVariables>,
    identity: &Identity,
) -> Result<Binding, String> {
    let vars = identity.projected();
    // Consul lowercases the values it interpolates and refuses a name that only
    // became valid by it, rather than binding an identity the caller did not name.
    let name = |template: &str, valid: &dyn Fn(&str) -> bool| -> Result<String, String> {
        let computed = interpolate(template, vars, true)
            .map_err(|e| format!("error interpreting template: {e}"))?;
        if !valid(&computed) {
            return Err(format!("invalid bind name: {computed:?}"));
        }
        if template.contains("${") {
            let original = interpolate(template, vars, false).unwrap_or_default();
            if original != computed {
                return Err(format!(
                    "invalid bind name: the projected variables contain uppercase characters (interpolated as {original:?} before lowercasing), but bind names for this type must be lowercase; ensure the bound service or node name is lowercase"
                ));
            }
        }
        Ok(computed)
    };
    Ok(match kind {
        BindType::Service => Binding::Service(name(bind_name, &valid_identity_name)?),
        BindType::Node => Binding::Node(name(bind_name, &valid_identity_name)?),
        BindType::Role => Binding::Role(name(bind_name, &|n| valid_link_name(n, 256))?),
        BindType::Policy => Binding::Policy(name(bind_name, &|n| valid_link_name(n, 128))?),
        BindType::TemplatedPolicy => {
            let variables = match bind_vars {
                None => None,
                Some(v) => Some(AclTemplatedPolicyVariables {
                    name: name(&v.name, &|_| true).map_err(|e| {
                        format!("failed to interpret templated policy variables: {e}")
                    })?,
                }),
            };
            let p = AclTemplatedPolicy {
                template_name: bind_name.to_string(),
                template_variables: variables,
            };
            check_templated(&p)?;
            Binding::Templated(p)
        }
    })
}

/// Every binding the rules give `identity`, in the rules' order (Consul's `Bind`):
/// a rule whose name does not interpolate to a valid one fails the login.
pub fn bind(rules: &[BindingRule], identity: &Identity) -> Result<Vec<Binding>, String> {
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| r.matches(identity)) {
        let Some(kind) = BindType::parse(&rule.bind_type) else {
            continue;
        };
        let b = compute(kind, &rule.bind_name, rule.bind_vars.as_ref(), identity)?;
        if !out.contains(&b) {
            out.push(b);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "binding_rule_tests.rs"]
mod tests;
