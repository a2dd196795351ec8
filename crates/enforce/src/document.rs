//! The policy document: what `GET /v1/tribune/proxy-snapshot/<service>` serves and
//! what `tribune connect proxy -config FILE` reads.
//!
//! ```text
//! {"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny",
//!  "Entries": [ <the intentions for api and *>, <the jwt-providers they reference>,
//!               <the mesh entry> ],
//!  "ForwardingHeaders": [ <Forwarding.HeaderName of every other provider> ],
//!  "Candidate": { <the same document with the staged candidates>, "Staged": [...] }}
//! ```
//!
//! `Candidate` (staged policies) appears only when a staged entry changes the
//! service's document; the sidecar evaluates it beside the live one and never
//! enforces it.
//!
//! The agent chooses what travels with [`PolicyDocument::for_service`] (decisions.md
//! #19: a sidecar receives only the providers, and so the keys, its intentions
//! reference); the sidecar decodes with [`PolicyDocument::from_json`]: keys matched
//! like Consul's decoder (any case, snake_case), unknown keys refused with their
//! path, every entry through the model's one validation path.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tribune_authz::{Action, ANY_PROVIDER};
use tribune_model::jwt_provider::{is_header_name, JsonWebKeySet, LocalJwks};
use tribune_model::mesh::RequestNormalization;
use tribune_model::{entry_from_json, ConfigEntry, JwtProvider, ServiceIntentions, WILDCARD};

/// The policy of one service, as a sidecar enforces it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    pub service: String,
    /// The service's protocol (`tcp` unless its defaults say otherwise).
    pub protocol: String,
    pub default: Action,
    pub entries: Vec<ConfigEntry>,
    /// `Forwarding.HeaderName`s of providers the document does not carry: client
    /// copies are removed like those of the carried providers.
    pub forwarding_headers: Vec<String>,
    /// Staged policies (Tribune's extension): the document as it would be with the
    /// staged candidates, evaluated beside this one and never enforced. `None` when no
    /// candidate changes this service's document.
    pub candidate: Option<Box<PolicyDocument>>,
    /// In a candidate: the staged entries it differs by, `kind/name@index` (the
    /// index of the staged record: a new one is a new candidate).
    pub staged: Vec<String>,
    /// Connection upgrades the service takes besides `websocket` (Tribune's
    /// extension: its `service-defaults`' `Meta["tribune.upgrades"]`, comma-separated,
    /// lowercased).
    pub upgrades: Vec<String>,
}

pub use tribune_model::entry::UPGRADES_META;

/// The policy document format this build writes and the newest it reads: an agent
/// serving a newer one to this sidecar is refused with [`PolicyDocument::from_json`]'s
/// error, and the sidecar keeps its last policy (saying why in `/ready`).
pub const DOCUMENT_FORMAT: u64 = 1;

fn is_first_format(f: &u64) -> bool {
    *f == 1
}

/// The upgrade protocols `service`'s defaults name in [`UPGRADES_META`].
pub fn upgrades_of(entries: &[&ConfigEntry], service: &str) -> Vec<String> {
    entries
        .iter()
        .find_map(|e| match e {
            ConfigEntry::ServiceDefaults(s) if s.name == service => Some(s.upgrades()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The document as it travels (every field optional; the model's decoder fills it).
#[derive(Debug, Default, Deserialize)]
struct Wire {
    /// Accepted here; checked on the raw value first (`from_json`).
    #[serde(rename = "Format")]
    _format: Option<u64>,
    #[serde(rename = "Service")]
    service: Option<String>,
    #[serde(rename = "Protocol")]
    protocol: Option<String>,
    #[serde(rename = "DefaultIntentionPolicy")]
    default_intention_policy: Option<String>,
    #[serde(rename = "Entries")]
    entries: Option<Vec<Value>>,
    #[serde(rename = "ForwardingHeaders")]
    forwarding_headers: Option<Vec<String>>,
    #[serde(rename = "Candidate")]
    candidate: Option<Value>,
    #[serde(rename = "Staged")]
    staged: Option<Vec<String>>,
    #[serde(rename = "Upgrades")]
    upgrades: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Out<'a> {
    /// Written only once it is past 1, so sidecars that predate the field keep
    /// reading the documents of this format.
    #[serde(rename = "Format", skip_serializing_if = "is_first_format")]
    format: u64,
    #[serde(rename = "Service")]
    service: &'a str,
    #[serde(rename = "Protocol")]
    protocol: &'a str,
    #[serde(rename = "DefaultIntentionPolicy")]
    default: &'static str,
    #[serde(rename = "Entries")]
    entries: Vec<Value>,
    #[serde(rename = "ForwardingHeaders")]
    forwarding_headers: &'a [String],
    #[serde(rename = "Candidate", skip_serializing_if = "Option::is_none")]
    candidate: Option<Value>,
    #[serde(rename = "Staged", skip_serializing_if = "<[String]>::is_empty")]
    staged: &'a [String],
    #[serde(rename = "Upgrades", skip_serializing_if = "<[String]>::is_empty")]
    upgrades: &'a [String],
}

/// The protocol of `service`: its `service-defaults`, else the global
/// `proxy-defaults`, else `tcp`.
pub fn protocol_of(entries: &[&ConfigEntry], service: &str) -> String {
    let own = entries.iter().find_map(|e| match e {
        ConfigEntry::ServiceDefaults(s) if s.name == service && !s.protocol.is_empty() => {
            Some(s.protocol.clone())
        }
        _ => None,
    });
    own.or_else(|| {
        entries.iter().find_map(|e| match e {
            ConfigEntry::ProxyDefaults(p) => p.protocol(),
            _ => None,
        })
    })
    .unwrap_or_else(|| "tcp".into())
}

impl PolicyDocument {
    /// [`Self::for_service`] with the service's protocol taken from `all`
    /// ([`protocol_of`]): what the agent serves and what `intention test` checks.
    pub fn from_entries(service: &str, default: Action, all: &[&ConfigEntry]) -> PolicyDocument {
        Self::for_service(service, &protocol_of(all, service), default, all)
    }

    /// What the agent sends the sidecar of `service`: its intentions and `*`'s, the
    /// providers they reference (all of them if one references `*`), the `mesh` entry,
    /// and the other providers' forwarding header names.
    pub fn for_service(
        service: &str,
        protocol: &str,
        default: Action,
        all: &[&ConfigEntry],
    ) -> PolicyDocument {
        let applies = |si: &ServiceIntentions| si.name == service || si.name == WILDCARD;
        let referenced: Vec<&str> = all
            .iter()
            .filter_map(|e| match e {
                ConfigEntry::ServiceIntentions(si) if applies(si) => {
                    Some(si.referenced_providers())
                }
                _ => None,
            })
            .flatten()
            .collect();
        let wanted = |name: &str| referenced.iter().any(|r| *r == name || *r == ANY_PROVIDER);
        let entries = all
            .iter()
            .filter(|e| match e {
                ConfigEntry::ServiceIntentions(si) => applies(si),
                ConfigEntry::JwtProvider(p) => wanted(&p.name),
                ConfigEntry::Mesh(_) => true,
                _ => false,
            })
            .map(|e| (*e).clone())
            .collect();
        let forwarding_headers = all
            .iter()
            .filter_map(|e| match e {
                ConfigEntry::JwtProvider(p) if !wanted(&p.name) => Some(p),
                _ => None,
            })
            .flat_map(|p| {
                p.forwarding
                    .iter()
                    .map(|f| f.header_name.clone())
                    .chain(p.claim_to_headers.iter().map(|c| c.header_name.clone()))
            })
            .collect();
        PolicyDocument {
            service: service.to_string(),
            protocol: protocol.to_string(),
            default,
            entries,
            forwarding_headers,
            candidate: None,
            staged: Vec::new(),
            upgrades: upgrades_of(all, service),
        }
    }

    /// [`Self::from_entries`] with its candidate: `staged` holds the staged entries
    /// (each with its label, `kind/name@index`); the candidate is the document built
    /// from `all` with each staged entry replacing the live one of its kind and name
    /// (or added), kept only when it differs from the live document.
    pub fn with_candidates(
        service: &str,
        default: Action,
        all: &[&ConfigEntry],
        staged: &[(&ConfigEntry, String)],
    ) -> PolicyDocument {
        let mut doc = Self::from_entries(service, default, all);
        if staged.is_empty() {
            return doc;
        }
        let same = |a: &ConfigEntry, b: &ConfigEntry| a.kind() == b.kind() && a.name() == b.name();
        let mut overlay: Vec<&ConfigEntry> = all
            .iter()
            .copied()
            .filter(|e| !staged.iter().any(|(s, _)| same(s, e)))
            .collect();
        overlay.extend(staged.iter().map(|(s, _)| *s));
        let mut candidate = Self::from_entries(service, default, &overlay);
        if candidate == doc {
            return doc;
        }
        candidate.staged = staged
            .iter()
            .filter(|(s, _)| {
                candidate.entries.iter().any(|e| same(e, s))
                    || doc.entries.iter().any(|e| same(e, s))
            })
            .map(|(_, label)| label.clone())
            .collect();
        doc.candidate = Some(Box::new(candidate));
        doc
    }

    /// The document as JSON (entries in their canonical form).
    pub fn to_json(&self) -> Value {
        self.render(|e| e.to_json())
    }

    /// The document with inline key material replaced by `"<redacted>"` (for the
    /// sidecar's `/config_dump`).
    pub fn redacted(&self) -> Value {
        self.render(|e| {
            let mut v = e.to_json();
            if let ConfigEntry::JwtProvider(JwtProvider {
                json_web_key_set: JsonWebKeySet::Local(LocalJwks::Inline(_)),
                ..
            }) = e
            {
                if let Some(local) = v
                    .get_mut("JSONWebKeySet")
                    .and_then(|k| k.get_mut("Local"))
                    .and_then(Value::as_object_mut)
                {
                    local.insert("JWKS".into(), Value::from("<redacted>"));
                }
            }
            v
        })
    }

    fn render(&self, entry: impl Fn(&ConfigEntry) -> Value + Copy) -> Value {
        serde_json::to_value(Out {
            format: DOCUMENT_FORMAT,
            service: &self.service,
            protocol: &self.protocol,
            default: self.default.as_str(),
            entries: self.entries.iter().map(entry).collect(),
            forwarding_headers: &self.forwarding_headers,
            candidate: self.candidate.as_ref().map(|c| c.render(entry)),
            staged: &self.staged,
            upgrades: &self.upgrades,
        })
        .unwrap_or(Value::Null)
    }

    /// Decodes a document; every problem is reported with its field.
    pub fn from_json(v: &Value) -> Result<PolicyDocument, String> {
        // Read first: a newer format may carry fields this build does not know.
        let format = v.get("Format").and_then(Value::as_u64);
        if let Some(f) = format.filter(|f| *f > DOCUMENT_FORMAT) {
            return Err(format!(
                "Format: this policy document is format {f}, from a newer agent; this sidecar reads formats up to {DOCUMENT_FORMAT}: upgrade the sidecar (it keeps enforcing its last policy)"
            ));
        }
        let w: Wire = tribune_model::decode::from_value(v, "").map_err(|e| e.to_string())?;
        let mut errors = Vec::new();
        let service = w.service.unwrap_or_default();
        if service.is_empty() {
            errors.push("Service: missing or empty".to_string());
        }
        let protocol = w.protocol.unwrap_or_else(|| "tcp".into());
        let default = match w.default_intention_policy.as_deref() {
            // Secure default (decisions.md #16).
            None => Action::Deny,
            Some(p) => Action::parse(p).unwrap_or_else(|| {
                errors.push(format!(
                    "DefaultIntentionPolicy: must be \"allow\" or \"deny\", got {p:?}"
                ));
                Action::Deny
            }),
        };
        let mut entries = Vec::new();
        for (i, item) in w.entries.unwrap_or_default().into_iter().enumerate() {
            match entry_from_json(item) {
                Ok(e) => entries.push(e),
                Err(e) => errors.push(format!("Entries[{i}]: {e}")),
            }
        }
        let forwarding_headers = w.forwarding_headers.unwrap_or_default();
        for (i, h) in forwarding_headers.iter().enumerate() {
            if !is_header_name(h) {
                errors.push(format!(
                    "ForwardingHeaders[{i}]: {h:?} is not a header name"
                ));
            }
        }
        let candidate = match w.candidate {
            None | Some(Value::Null) => None,
            Some(c) => match PolicyDocument::from_json(&c) {
                Ok(d) if d.candidate.is_some() => {
                    errors.push("Candidate: a candidate has no candidate of its own".into());
                    None
                }
                Ok(d) if d.service != service => {
                    errors.push(format!(
                        "Candidate: for service {:?}, not {service:?}",
                        d.service
                    ));
                    None
                }
                Ok(d) => Some(Box::new(d)),
                Err(e) => {
                    errors.push(format!("Candidate: {e}"));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(PolicyDocument {
            service,
            protocol,
            default,
            entries,
            forwarding_headers,
            candidate,
            staged: w.staged.unwrap_or_default(),
            upgrades: w.upgrades.unwrap_or_default(),
        })
    }

    /// The `service-intentions` entries.
    pub fn intentions(&self) -> Vec<&ServiceIntentions> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                ConfigEntry::ServiceIntentions(si) => Some(si),
                _ => None,
            })
            .collect()
    }

    /// The `jwt-provider` entries.
    pub fn providers(&self) -> Vec<&JwtProvider> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                ConfigEntry::JwtProvider(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The `mesh` entry's `HTTP.Incoming.RequestNormalization`, or the defaults.
    pub fn normalization(&self) -> RequestNormalization {
        self.entries
            .iter()
            .find_map(|e| match e {
                ConfigEntry::Mesh(m) => Some(m.request_normalization()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Upgrades (issue #41): a document of a newer format is refused naming both
    /// formats; this format is read with or without the field, and written without it
    /// (sidecars that predate the field read it).
    #[test]
    fn a_newer_document_format_is_refused_and_this_one_is_written_without_the_field() {
        let doc = json!({"Service": "api", "Protocol": "http", "Entries": []});
        assert!(PolicyDocument::from_json(&doc).is_ok());
        let mut v1 = doc.clone();
        v1["Format"] = json!(1);
        assert!(PolicyDocument::from_json(&v1).is_ok());
        let mut v2 = doc;
        v2["Format"] = json!(2);
        let e = PolicyDocument::from_json(&v2).unwrap_err();
        assert!(
            e.starts_with("Format: this policy document is format 2")
                && e.contains("reads formats up to 1")
                && e.contains("keeps enforcing its last policy"),
            "{e}"
        );
        let written = PolicyDocument::from_json(&v1).unwrap().to_json();
        assert!(written.get("Format").is_none(), "{written}");
    }

    fn entry(v: Value) -> ConfigEntry {
        entry_from_json(v).expect("valid entry")
    }

    fn provider(name: &str, header: &str) -> ConfigEntry {
        entry(json!({"Kind": "jwt-provider", "Name": name, "Issuer": name,
            "JSONWebKeySet": {"Remote": {"URI": "https://idp.example/keys"}},
            "Forwarding": {"HeaderName": header}}))
    }

    #[test]
    fn the_agent_sends_only_what_the_service_needs_and_the_sidecar_reads_it_back() {
        let all = [
            provider("okta", "x-okta"),
            provider("billing", "x-billing"),
            entry(json!({"Kind": "service-intentions", "Name": "api",
                "JWT": {"Providers": [{"Name": "okta"}]},
                "Sources": [{"Name": "web", "Action": "allow"}]})),
            entry(json!({"Kind": "service-intentions", "Name": "db",
                "JWT": {"Providers": [{"Name": "billing"}]},
                "Sources": [{"Name": "web", "Action": "allow"}]})),
            entry(json!({"Kind": "mesh"})),
            entry(json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"})),
        ];
        let refs: Vec<&ConfigEntry> = all.iter().collect();
        let doc = PolicyDocument::for_service("api", "http", Action::Deny, &refs);
        let kinds: Vec<String> = doc
            .entries
            .iter()
            .map(|e| format!("{}/{}", e.kind(), e.name()))
            .collect();
        assert_eq!(
            kinds,
            ["jwt-provider/okta", "service-intentions/api", "mesh/mesh"]
        );
        assert_eq!(doc.forwarding_headers, ["x-billing"]);
        let back = PolicyDocument::from_json(&doc.to_json()).expect("round trip");
        assert_eq!(back, doc);
    }

    #[test]
    fn bad_documents_name_every_field() {
        let err = PolicyDocument::from_json(&json!({
            "Service": "", "DefaultIntentionPolicy": "maybe",
            "Entries": [{"Kind": "mesh", "Name": "x"}], "ForwardingHeaders": ["bad header"],
        }))
        .unwrap_err();
        assert!(err.contains("Service: missing or empty"), "{err}");
        assert!(err.contains("DefaultIntentionPolicy: must be"), "{err}");
        assert!(err.contains("Entries[0]: "), "{err}");
        assert!(err.contains("ForwardingHeaders[0]"), "{err}");
        let err = PolicyDocument::from_json(&json!({"Service": "api", "Bogus": 1})).unwrap_err();
        assert!(err.contains("invalid config key \"Bogus\""), "{err}");
        // Keys in any case, as Consul's decoder matches them.
        let doc = PolicyDocument::from_json(&json!({"service": "api", "protocol": "http"}))
            .expect("lower-case keys");
        assert_eq!((doc.service.as_str(), doc.default), ("api", Action::Deny));
    }
}
