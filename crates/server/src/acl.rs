//! ACLs, the part of Consul's model Tribune needs: policies whose rules are Consul ACL
//! rules (HCL or JSON), tokens holding policies, and an authorizer answering
//! `mesh`, `operator`, `acl`, `service` and `intentions` questions.
//!
//! Rule resolution follows Consul: an exact `service "name"` rule beats the longest
//! matching `service_prefix` rule, which beats the default policy; when several
//! policies give a rule for the same resource, deny > write > read.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const MANAGEMENT_POLICY_NAME: &str = "global-management";
pub const ANONYMOUS_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";

/// An access level, ordered by how much it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Deny,
    Read,
    Write,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        match s {
            "deny" => Some(Access::Deny),
            "read" | "list" => Some(Access::Read),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// When two policies set the same rule: deny > write > read.
    fn merge(a: Option<Access>, b: Option<Access>) -> Option<Access> {
        match (a, b) {
            (None, x) | (x, None) => x,
            (Some(Access::Deny), _) | (_, Some(Access::Deny)) => Some(Access::Deny),
            (Some(x), Some(y)) => Some(x.max(y)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ServiceRule {
    policy: Option<Access>,
    intentions: Option<Access>,
}

impl ServiceRule {
    fn merge(self, o: ServiceRule) -> ServiceRule {
        ServiceRule {
            policy: Access::merge(self.policy, o.policy),
            intentions: Access::merge(self.intentions, o.intentions),
        }
    }

    /// Consul: without an explicit `intentions`, read/write on the service grants
    /// intentions read, anything else denies.
    fn intentions(&self) -> Access {
        self.intentions.unwrap_or(match self.policy {
            Some(Access::Read) | Some(Access::Write) => Access::Read,
            _ => Access::Deny,
        })
    }
}

/// Parsed rules of one or more policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    acl: Option<Access>,
    mesh: Option<Access>,
    operator: Option<Access>,
    service: BTreeMap<String, ServiceRule>,
    service_prefix: BTreeMap<String, ServiceRule>,
}

/// Consul rule resources Tribune has no use for; accepted so existing policies load.
const IGNORED_RESOURCES: &[&str] = &[
    "agent",
    "agent_prefix",
    "event",
    "event_prefix",
    "identity",
    "identity_prefix",
    "key",
    "key_prefix",
    "keyring",
    "node",
    "node_prefix",
    "query",
    "query_prefix",
    "session",
    "session_prefix",
    "peering",
    "partition",
    "partition_prefix",
    "namespace",
    "namespace_prefix",
];

impl Rules {
    /// Parses Consul ACL rules (HCL or JSON).
    pub fn parse(text: &str) -> Result<Rules, String> {
        let raw = if text.trim().is_empty() {
            Map::new()
        } else {
            tribune_model::decode::parse_raw(text).map_err(|e| e.to_string())?
        };
        let mut rules = Rules::default();
        for (key, value) in &raw {
            match key.as_str() {
                "acl" => rules.acl = Some(access(value, "acl")?),
                "mesh" => rules.mesh = Some(access(value, "mesh")?),
                "operator" => rules.operator = Some(access(value, "operator")?),
                "service" | "service_prefix" => {
                    for (name, body) in labelled(value)? {
                        let rule = service_rule(&body, &format!("{key} {name:?}"))?;
                        let map = if key == "service" {
                            &mut rules.service
                        } else {
                            &mut rules.service_prefix
                        };
                        let merged = map.get(&name).copied().unwrap_or_default().merge(rule);
                        map.insert(name, merged);
                    }
                }
                k if IGNORED_RESOURCES.contains(&k) => {}
                other => return Err(format!("invalid rule key {other:?}")),
            }
        }
        Ok(rules)
    }

    /// Consul's service identity: write on the service and its sidecar, read on every
    /// service (and node) for discovery. Built as values, never as rule text, so no
    /// name can add a rule.
    pub fn service_identity(name: &str) -> Rules {
        let write = ServiceRule {
            policy: Some(Access::Write),
            intentions: None,
        };
        let mut r = Rules::read_all_services();
        r.service.insert(name.to_string(), write);
        r.service.insert(format!("{name}-sidecar-proxy"), write);
        r
    }

    /// Read on every service: what a node identity and `builtin/dns` grant among the
    /// resources Tribune has (their node and query rules have no resource here).
    pub fn read_all_services() -> Rules {
        let mut r = Rules::default();
        r.service_prefix.insert(
            String::new(),
            ServiceRule {
                policy: Some(Access::Read),
                intentions: None,
            },
        );
        r
    }

    /// What a token's service identities, node identities and templated policies
    /// grant, merged.
    pub fn of_identities(token: &Token) -> Rules {
        let mut r = Rules::default();
        for s in &token.service_identities {
            r.merge(&Rules::service_identity(&s.service_name));
        }
        if !token.node_identities.is_empty() {
            r.merge(&Rules::read_all_services());
        }
        for t in &token.templated_policies {
            let name = t.template_variables.as_ref().map(|v| v.name.as_str());
            match (t.template_name.as_str(), name) {
                ("builtin/service", Some(n)) => r.merge(&Rules::service_identity(n)),
                ("builtin/node" | "builtin/dns", _) => r.merge(&Rules::read_all_services()),
                // Checked when written; an unknown template grants nothing.
                _ => {}
            }
        }
        r
    }

    /// Merges another policy's rules into these.
    pub fn merge(&mut self, o: &Rules) {
        self.acl = Access::merge(self.acl, o.acl);
        self.mesh = Access::merge(self.mesh, o.mesh);
        self.operator = Access::merge(self.operator, o.operator);
        for (k, v) in &o.service {
            let cur = self.service.get(k).copied().unwrap_or_default();
            self.service.insert(k.clone(), cur.merge(*v));
        }
        for (k, v) in &o.service_prefix {
            let cur = self.service_prefix.get(k).copied().unwrap_or_default();
            self.service_prefix.insert(k.clone(), cur.merge(*v));
        }
    }
}

fn access(v: &Value, what: &str) -> Result<Access, String> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Array(a) if a.len() == 1 => a[0].as_str().unwrap_or(""),
        _ => "",
    };
    Access::parse(s).ok_or_else(|| format!("Invalid {what} policy: {v}"))
}

/// `service "a" { }` blocks: `{"a": {...}}` or a list of such objects.
fn labelled(v: &Value) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for item in items {
        let Value::Object(m) = item else {
            return Err(format!("expected a labelled block, got {item}"));
        };
        for (name, body) in m {
            out.push((name.clone(), body.clone()));
        }
    }
    Ok(out)
}

fn service_rule(body: &Value, what: &str) -> Result<ServiceRule, String> {
    let body = match body {
        Value::Array(a) if a.len() == 1 => &a[0],
        b => b,
    };
    let Value::Object(m) = body else {
        return Err(format!("{what}: expected a block"));
    };
    let mut rule = ServiceRule::default();
    for (k, v) in m {
        match k.as_str() {
            "policy" => rule.policy = Some(access(v, &format!("{what} policy"))?),
            "intentions" => rule.intentions = Some(access(v, &format!("{what} intentions"))?),
            other => return Err(format!("{what}: invalid key {other:?}")),
        }
    }
    Ok(rule)
}

/// What a request's token may do.
#[derive(Debug, Clone)]
pub struct Authorizer {
    /// ACLs disabled, or a management token: everything is allowed.
    all: bool,
    rules: Rules,
    default: Access,
    /// For messages: `None` for the anonymous token.
    pub accessor_id: Option<String>,
    /// When the token stops working (seconds since the Unix epoch).
    pub expires_at: Option<i64>,
}

/// A permission a request lacked, with Consul's 403 text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Authorizer {
    pub fn allow_all() -> Self {
        Authorizer {
            all: true,
            rules: Rules::default(),
            default: Access::Write,
            accessor_id: None,
            expires_at: None,
        }
    }

    /// The token's expiry (an authorizer kept in a cache is checked on each use).
    pub fn expiring(mut self, at: Option<i64>) -> Self {
        self.expires_at = at;
        self
    }

    /// Whether the token expired at or before `now` (seconds since the Unix epoch).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub fn new(
        rules: Rules,
        management: bool,
        default_allow: bool,
        accessor_id: Option<String>,
    ) -> Self {
        Authorizer {
            all: management,
            rules,
            default: if default_allow {
                Access::Write
            } else {
                Access::Deny
            },
            accessor_id,
            expires_at: None,
        }
    }

    fn denied(&self, perm: &str, resource: Option<&str>) -> Denied {
        let on = resource
            .map(|r| format!(" on {}", tribune_model::go::quote(r)))
            .unwrap_or_default();
        Denied(match &self.accessor_id {
            Some(id) => format!("Permission denied: token with AccessorID '{id}' lacks permission '{perm}'{on}"),
            None => format!(
                "Permission denied: anonymous token lacks permission '{perm}'{on}. The anonymous token is used implicitly when a request does not specify a token."
            ),
        })
    }

    fn level(&self, a: Option<Access>) -> Access {
        a.unwrap_or(self.default)
    }

    fn mesh(&self) -> Access {
        self.level(self.rules.mesh.or(self.rules.operator))
    }

    fn service_rule(&self, name: &str) -> Option<ServiceRule> {
        if let Some(r) = self.rules.service.get(name) {
            return Some(*r);
        }
        self.rules
            .service_prefix
            .iter()
            .filter(|(p, _)| name.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, r)| *r)
    }

    fn service(&self, name: &str) -> Access {
        // Exact rule with a policy, else the longest prefix rule with a policy.
        if let Some(p) = self.rules.service.get(name).and_then(|r| r.policy) {
            return p;
        }
        let prefix = self
            .rules
            .service_prefix
            .iter()
            .filter(|(p, r)| name.starts_with(p.as_str()) && r.policy.is_some())
            .max_by_key(|(p, _)| p.len())
            .and_then(|(_, r)| r.policy);
        self.level(prefix)
    }

    fn intentions(&self, name: &str) -> Access {
        match self.service_rule(name) {
            Some(r) => r.intentions(),
            None => self.default,
        }
    }

    fn check(
        &self,
        have: Access,
        want: Access,
        perm: &str,
        resource: Option<&str>,
    ) -> Result<(), Denied> {
        if self.all || have >= want {
            Ok(())
        } else {
            Err(self.denied(perm, resource))
        }
    }

    pub fn mesh_read(&self) -> Result<(), Denied> {
        self.check(self.mesh(), Access::Read, "mesh:read", None)
    }
    pub fn mesh_write(&self) -> Result<(), Denied> {
        self.check(self.mesh(), Access::Write, "mesh:write", None)
    }
    /// A management token (or ACLs off): what a snapshot needs, since it holds every
    /// secret.
    pub fn management(&self) -> Result<(), Denied> {
        if self.all {
            Ok(())
        } else {
            Err(self.denied("management", None))
        }
    }

    pub fn operator_read(&self) -> Result<(), Denied> {
        self.check(
            self.level(self.rules.operator),
            Access::Read,
            "operator:read",
            None,
        )
    }
    pub fn operator_write(&self) -> Result<(), Denied> {
        self.check(
            self.level(self.rules.operator),
            Access::Write,
            "operator:write",
            None,
        )
    }
    pub fn acl_read(&self) -> Result<(), Denied> {
        self.check(self.level(self.rules.acl), Access::Read, "acl:read", None)
    }
    pub fn acl_write(&self) -> Result<(), Denied> {
        self.check(self.level(self.rules.acl), Access::Write, "acl:write", None)
    }
    pub fn service_read(&self, name: &str) -> Result<(), Denied> {
        self.check(self.service(name), Access::Read, "service:read", Some(name))
    }
    pub fn service_write(&self, name: &str) -> Result<(), Denied> {
        self.check(
            self.service(name),
            Access::Write,
            "service:write",
            Some(name),
        )
    }
    pub fn intentions_read(&self, name: &str) -> Result<(), Denied> {
        self.check(
            self.intentions(name),
            Access::Read,
            "intention:read",
            Some(name),
        )
    }
    pub fn intentions_write(&self, name: &str) -> Result<(), Denied> {
        self.check(
            self.intentions(name),
            Access::Write,
            "intention:write",
            Some(name),
        )
    }
    /// `service:write` on any service (Consul's rule for reading jwt-providers).
    pub fn service_write_any(&self) -> Result<(), Denied> {
        let any = self.default == Access::Write
            || self
                .rules
                .service
                .values()
                .chain(self.rules.service_prefix.values())
                .any(|r| r.policy == Some(Access::Write));
        if self.all || any {
            Ok(())
        } else {
            Err(self.denied("service:write", None))
        }
    }
}

/// The stored ACL objects are the API's shapes ([`tribune_model::api`]).
pub use tribune_model::api::{
    AclLink as PolicyLink, AclPolicy as Policy, AclRole as Role, AclToken as Token,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn authz(rules: &str, default_allow: bool) -> Authorizer {
        Authorizer::new(
            Rules::parse(rules).unwrap(),
            false,
            default_allow,
            Some("acc-1".into()),
        )
    }

    #[test]
    fn mesh_falls_back_to_operator_then_default() {
        assert!(authz("mesh = \"write\"", false).mesh_write().is_ok());
        assert!(authz("mesh = \"read\"", false).mesh_write().is_err());
        assert!(authz("mesh = \"read\"", false).mesh_read().is_ok());
        assert!(authz("operator = \"write\"", false).mesh_write().is_ok());
        assert!(authz("operator = \"read\"", false).mesh_read().is_ok());
        assert!(authz("operator = \"read\"", false).mesh_write().is_err());
        assert!(authz("", false).mesh_read().is_err());
        assert!(authz("", true).mesh_write().is_ok());
        assert!(authz("mesh = \"deny\"\noperator = \"write\"", true)
            .mesh_read()
            .is_err());
    }

    #[test]
    fn exact_service_rule_beats_longest_prefix() {
        let a = authz(
            r#"service_prefix "" { policy = "read" }
service_prefix "web" { policy = "write" }
service "web-admin" { policy = "deny" }"#,
            false,
        );
        assert!(a.service_write("web-frontend").is_ok());
        assert!(a.service_write("api").is_err());
        assert!(a.service_read("api").is_ok());
        assert!(a.service_read("web-admin").is_err());
    }

    #[test]
    fn intentions_follow_service_policy_unless_set() {
        let a = authz(r#"service "web" { policy = "write" }"#, false);
        assert!(a.intentions_read("web").is_ok());
        assert!(a.intentions_write("web").is_err());
        let b = authz(
            r#"service "web" { policy = "read" intentions = "write" }"#,
            false,
        );
        assert!(b.intentions_write("web").is_ok());
        let c = authz(r#"service_prefix "" { intentions = "write" }"#, false);
        assert!(c.intentions_write("anything").is_ok());
        assert!(c.service_read("anything").is_err());
    }

    #[test]
    fn merging_policies_deny_wins_then_write() {
        let mut r = Rules::parse(r#"service "web" { policy = "write" }"#).unwrap();
        r.merge(&Rules::parse(r#"service "web" { policy = "read" }"#).unwrap());
        assert!(Authorizer::new(r.clone(), false, false, None)
            .service_write("web")
            .is_ok());
        r.merge(&Rules::parse(r#"service "web" { policy = "deny" }"#).unwrap());
        assert!(Authorizer::new(r, false, false, None)
            .service_read("web")
            .is_err());
    }

    /// Consul's service identity: write on the service and its sidecar, read on the
    /// rest; nothing on ACLs, the mesh or intentions writes.
    #[test]
    fn a_service_identity_grants_its_service_and_sidecar_and_reads_the_rest() {
        let token = Token {
            service_identities: vec![tribune_model::api::AclServiceIdentity {
                service_name: "web".into(),
                datacenters: vec![],
            }],
            ..Default::default()
        };
        let a = Authorizer::new(Rules::of_identities(&token), false, false, None);
        assert!(a.service_write("web").is_ok());
        assert!(a.service_write("web-sidecar-proxy").is_ok());
        assert!(a.service_write("api").is_err());
        assert!(a.service_read("api").is_ok());
        assert!(a.intentions_read("web").is_ok());
        assert!(a.intentions_write("web").is_err());
        assert!(a.acl_read().is_err() && a.mesh_read().is_err() && a.operator_read().is_err());
        // A name carrying rule text grants only a service of that odd name.
        let odd = Rules::service_identity("x\" } service_prefix \"\" { policy = \"write");
        let a = Authorizer::new(odd, false, false, None);
        assert!(a.service_write("api").is_err());
    }

    #[test]
    fn service_write_any_reads_jwt_providers() {
        assert!(authz(r#"service "web" { policy = "write" }"#, false)
            .service_write_any()
            .is_ok());
        assert!(authz(r#"service "web" { policy = "read" }"#, false)
            .service_write_any()
            .is_err());
    }

    #[test]
    fn denial_texts_match_consul() {
        assert_eq!(
            authz("", false).mesh_write().unwrap_err().0,
            "Permission denied: token with AccessorID 'acc-1' lacks permission 'mesh:write'"
        );
        assert_eq!(
            Authorizer::new(Rules::default(), false, false, None).intentions_write("api").unwrap_err().0,
            "Permission denied: anonymous token lacks permission 'intention:write' on \"api\". The anonymous token is used implicitly when a request does not specify a token."
        );
    }

    #[test]
    fn rules_parse_json_and_reject_unknown_keys() {
        let a = Authorizer::new(
            Rules::parse(r#"{"service": {"web": {"policy": "write"}}, "node_prefix": {"": {"policy": "read"}}}"#).unwrap(),
            false,
            false,
            None,
        );
        assert!(a.service_write("web").is_ok());
        assert!(Rules::parse("mesh = \"admin\"")
            .unwrap_err()
            .contains("Invalid mesh policy"));
        assert!(Rules::parse("meshh = \"write\"")
            .unwrap_err()
            .contains("invalid rule key"));
    }
}
