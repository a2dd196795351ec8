//! The agent's own configuration (`-config-file`, HCL or JSON, Consul's spellings).

use serde_json::Value;
use tribune_authz::Action;

/// ACL settings (`acl { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    pub enabled: bool,
    /// `allow` (Consul's default) or `deny`.
    pub default_policy: String,
    /// `tokens { initial_management = "<secret>" }`.
    pub initial_management: Option<String>,
    /// `token_min_expiration_ttl` and `token_max_expiration_ttl` (Consul's: 1m and
    /// 24h): the bounds of an expiring token's lifetime and of an auth method's
    /// `MaxTokenTTL`.
    pub token_ttl: tribune_model::auth_method::TtlBounds,
}

impl AclConfig {
    pub fn default_allow(&self) -> bool {
        !self.enabled || self.default_policy != "deny"
    }
}

/// `etcd { endpoints = [...], prefix = "...", ca_file, cert_file, key_file }`: where
/// the agent keeps its state when several agents share it (empty `endpoints`: the
/// embedded store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub prefix: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// One block of `tls { defaults { ... } https { ... } }` (Consul's names); unset
/// keys of `https` come from `defaults`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsBlock {
    pub ca_file: Option<String>,
    pub ca_path: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub verify_incoming: Option<bool>,
    /// `TLSv1_2` (the default) or `TLSv1_3`.
    pub tls_min_version: Option<String>,
}

impl TlsBlock {
    /// `self`'s keys, else `fallback`'s.
    pub fn or(&self, fallback: &TlsBlock) -> TlsBlock {
        TlsBlock {
            ca_file: self.ca_file.clone().or_else(|| fallback.ca_file.clone()),
            ca_path: self.ca_path.clone().or_else(|| fallback.ca_path.clone()),
            cert_file: self
                .cert_file
                .clone()
                .or_else(|| fallback.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| fallback.key_file.clone()),
            verify_incoming: self.verify_incoming.or(fallback.verify_incoming),
            tls_min_version: self
                .tls_min_version
                .clone()
                .or_else(|| fallback.tls_min_version.clone()),
        }
    }

    /// Applies one key of a `tls.<block>` (or a legacy top-level TLS key); `path`
    /// names it in errors. `Ok(false)`: not a TLS key.
    fn set(&mut self, key: &str, v: &Value, path: &str) -> Result<bool, String> {
        match key {
            "ca_file" => self.ca_file = Some(string(v, path)?),
            "ca_path" => self.ca_path = Some(string(v, path)?),
            "cert_file" => self.cert_file = Some(string(v, path)?),
            "key_file" => self.key_file = Some(string(v, path)?),
            "verify_incoming" => self.verify_incoming = Some(boolean(v, path)?),
            "tls_min_version" => {
                let version = string(v, path)?;
                match version.as_str() {
                    "TLSv1_2" | "TLSv1_3" => self.tls_min_version = Some(version),
                    "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => {
                        return Err(format!(
                            "{path}: {version} is not supported: TLS 1.2 is the oldest version Tribune speaks"
                        ))
                    }
                    "tls12" => self.tls_min_version = Some("TLSv1_2".into()),
                    "tls13" => self.tls_min_version = Some("TLSv1_3".into()),
                    other => {
                        return Err(format!(
                            "{path}: expected \"TLSv1_2\" or \"TLSv1_3\", got {other:?}"
                        ))
                    }
                }
            }
            // Consul's settings for its server RPC, which Tribune does not have.
            "verify_outgoing" | "verify_server_hostname" => {
                boolean(v, path)?;
            }
            "tls_cipher_suites" => {
                return Err(format!(
                    "{path}: not supported: Tribune uses rustls's safe default cipher suites"
                ))
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `tls { ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub defaults: TlsBlock,
    pub https: TlsBlock,
}

impl TlsSettings {
    /// What the HTTPS listener uses: `tls.https`, else `tls.defaults`.
    pub fn for_https(&self) -> TlsBlock {
        self.https.or(&self.defaults)
    }
}

/// What `tribune agent` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub datacenter: String,
    pub client_addr: String,
    /// `ports { http }`; `None` (`http = -1`): no plain-HTTP listener.
    pub http_port: Option<u16>,
    /// `ports { https }` (or `-https-port`): the HTTPS listener, off unless set.
    pub https_port: Option<u16>,
    /// `tls { defaults { ... } https { ... } }`: the HTTPS listener's certificate,
    /// key and client verification.
    pub tls: TlsSettings,
    /// decisions.md #16: `deny` unless set otherwise.
    pub default_intention_policy: Action,
    pub acl: AclConfig,
    /// `limits { http_max_conns_per_client }` (0: no limit).
    pub http_max_conns_per_client: usize,
    pub etcd: EtcdSettings,
    /// Serve the web UI at `/ui/` (`ui_config { enabled = false }` or `-ui=false`: off).
    pub ui: bool,
    /// `http_config { allowed_hosts = [...] }` (and `-allowed-host`): `Host` names
    /// served besides loopback ones while the API listens on loopback
    /// ([`tribune_model::host`], the DNS-rebinding defence).
    pub allowed_hosts: Vec<String>,
    /// `log_level`, `log_json`, `log_file` (Consul's keys; the `-log-*` flags win).
    pub log: LogSettings,
    /// `connect { ca_config { jwt_issuer jwt_signing_algorithm } }`.
    pub connect: ConnectSettings,
}

/// `connect { enabled ca_config { ... } }`: Connect is always on; `ca_config` sets how
/// the CA issues JWT-SVIDs (issue #45).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    /// The `iss` of JWT-SVIDs and of the agent's OIDC discovery document (default:
    /// the agent's own address, `http://<client_addr>:<port>`). Agents sharing a store
    /// behind one name give that name here, so every agent's tokens and documents
    /// agree.
    pub jwt_issuer: Option<String>,
    /// `ES256` (default) or `RS256`, for keys generated from now on.
    pub jwt_signing_algorithm: tribune_ca::jwt::SigningAlg,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            jwt_issuer: None,
            jwt_signing_algorithm: tribune_ca::jwt::SigningAlg::Es256,
        }
    }
}

/// The log settings a config file may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub level: Option<String>,
    pub json: bool,
    pub file: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            datacenter: "dc1".into(),
            client_addr: "127.0.0.1".into(),
            http_port: Some(8500),
            https_port: None,
            tls: TlsSettings::default(),
            default_intention_policy: Action::Deny,
            acl: AclConfig {
                enabled: false,
                default_policy: "allow".into(),
                initial_management: None,
                token_ttl: Default::default(),
            },
            http_max_conns_per_client: crate::listener::DEFAULT_MAX_CONNS_PER_CLIENT,
            etcd: EtcdSettings::default(),
            ui: true,
            allowed_hosts: Vec::new(),
            log: LogSettings::default(),
            connect: ConnectSettings::default(),
        }
    }
}

fn single(v: &Value) -> &Value {
    match v {
        Value::Array(a) if a.len() == 1 => &a[0],
        other => other,
    }
}

fn string(v: &Value, key: &str) -> Result<String, String> {
    match single(v) {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("{key}: expected a string, got {other}")),
    }
}

fn boolean(v: &Value, key: &str) -> Result<bool, String> {
    match single(v) {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        other => Err(format!("{key}: expected true or false, got {other}")),
    }
}

/// A port number, or -1 (Consul's "off").
fn port(v: &Value, path: &str) -> Result<Option<u16>, String> {
    match single(v).as_i64() {
        Some(-1) => Ok(None),
        Some(p) => u16::try_from(p)
            .map(Some)
            .map_err(|_| format!("{path}: invalid port {v} (0-65535, or -1 for off)")),
        None => Err(format!("{path}: expected a port number, got {v}")),
    }
}

impl AgentConfig {
    /// Applies a config file's settings over `self`. Unknown keys are errors.
    pub fn merge_file(&mut self, text: &str) -> Result<(), String> {
        let raw = tribune_model::decode::parse_raw(text).map_err(|e| e.to_string())?;
        for (key, value) in &raw {
            match key.as_str() {
                "datacenter" => self.datacenter = string(value, key)?,
                "ui_config" => {
                    let Value::Object(ui) = single(value) else {
                        return Err("ui_config: expected a block".into());
                    };
                    for (k, v) in ui {
                        match k.as_str() {
                            "enabled" => self.ui = boolean(v, "ui_config.enabled")?,
                            other => return Err(format!("ui_config: unknown key {other:?}")),
                        }
                    }
                }
                "client_addr" => self.client_addr = string(value, key)?,
                "http_config" => {
                    let Value::Object(http) = single(value) else {
                        return Err("http_config: expected a block".into());
                    };
                    for (k, v) in http {
                        let path = format!("http_config.{k}");
                        match k.as_str() {
                            "allowed_hosts" => {
                                let Value::Array(items) = v else {
                                    return Err(format!("{path}: expected a list of names"));
                                };
                                self.allowed_hosts = items
                                    .iter()
                                    .map(|i| string(i, &path))
                                    .collect::<Result<_, _>>()?;
                            }
                            other => return Err(format!("http_config: unknown key {other:?}")),
                        }
                    }
                }
                "ports" => {
                    let Value::Object(ports) = single(value) else {
                        return Err("ports: expected a block".into());
                    };
                    for (k, v) in ports {
                        let path = format!("ports.{k}");
                        match k.as_str() {
                            "http" => self.http_port = port(v, &path)?,
                            "https" => self.https_port = port(v, &path)?,
                            // Consul's other listeners, which Tribune does not have.
                            "dns" | "grpc" | "grpc_tls" | "serf_lan" | "serf_wan" | "server" => {
                                port(v, &path)?;
                            }
                            other => return Err(format!("ports: unknown key {other:?}")),
                        }
                    }
                }
                "default_intention_policy" => {
                    self.default_intention_policy = match string(value, key)?.as_str() {
                        "allow" => Action::Allow,
                        "deny" => Action::Deny,
                        other => {
                            return Err(format!(
                        "default_intention_policy: must be \"allow\" or \"deny\", got {other:?}"
                    ))
                        }
                    }
                }
                "acl" => {
                    let Value::Object(acl) = single(value) else {
                        return Err("acl: expected a block".into());
                    };
                    for (k, v) in acl {
                        match k.as_str() {
                            "enabled" => self.acl.enabled = boolean(v, "acl.enabled")?,
                            "default_policy" => {
                                let p = string(v, "acl.default_policy")?;
                                if p != "allow" && p != "deny" {
                                    return Err(format!(
                                        "acl.default_policy: must be \"allow\" or \"deny\", got {p:?}"
                                    ));
                                }
                                self.acl.default_policy = p;
                            }
                            "tokens" => {
                                let Value::Object(t) = single(v) else {
                                    return Err("acl.tokens: expected a block".into());
                                };
                                for (tk, tv) in t {
                                    match tk.as_str() {
                                        "initial_management" | "master" => {
                                            self.acl.initial_management =
                                                Some(string(tv, "acl.tokens.initial_management")?)
                                        }
                                        other => {
                                            return Err(format!(
                                                "acl.tokens: unknown key {other:?}"
                                            ))
                                        }
                                    }
                                }
                            }
                            "token_min_expiration_ttl" | "token_max_expiration_ttl" => {
                                let what = format!("acl.{k}");
                                let text = string(v, &what)?;
                                let ns = tribune_model::go::parse_duration(&text)
                                    .map_err(|e| format!("{what}: {e}"))?;
                                if ns <= 0 {
                                    return Err(format!("{what}: must be positive, got {text:?}"));
                                }
                                if k == "token_min_expiration_ttl" {
                                    self.acl.token_ttl.min_ns = ns;
                                } else {
                                    self.acl.token_ttl.max_ns = ns;
                                }
                            }
                            "enable_token_persistence" | "down_policy" => {}
                            other => return Err(format!("acl: unknown key {other:?}")),
                        }
                    }
                    let ttl = self.acl.token_ttl;
                    if ttl.min_ns > ttl.max_ns {
                        return Err(format!(
                            "acl.token_min_expiration_ttl ({}) is longer than acl.token_max_expiration_ttl ({})",
                            tribune_model::go::format_duration(ttl.min_ns),
                            tribune_model::go::format_duration(ttl.max_ns)
                        ));
                    }
                }
                "limits" => {
                    let Value::Object(limits) = single(value) else {
                        return Err("limits: expected a block".into());
                    };
                    for (k, v) in limits {
                        match k.as_str() {
                            "http_max_conns_per_client" => {
                                self.http_max_conns_per_client = single(v)
                                    .as_u64()
                                    .and_then(|n| usize::try_from(n).ok())
                                    .ok_or_else(|| {
                                        format!(
                                    "limits.http_max_conns_per_client: expected a number, got {v}"
                                )
                                    })?
                            }
                            "rpc_max_conns_per_client" | "rpc_rate" | "rpc_max_burst" => {}
                            other => return Err(format!("limits: unknown key {other:?}")),
                        }
                    }
                }
                "etcd" => {
                    let Value::Object(etcd) = single(value) else {
                        return Err("etcd: expected a block".into());
                    };
                    for (k, v) in etcd {
                        let path = format!("etcd.{k}");
                        match k.as_str() {
                            "endpoints" => {
                                self.etcd.endpoints = match v {
                                    Value::Array(items) => items
                                        .iter()
                                        .map(|i| string(i, &path))
                                        .collect::<Result<_, _>>()?,
                                    other => string(other, &path)?
                                        .split(',')
                                        .map(|e| e.trim().to_string())
                                        .filter(|e| !e.is_empty())
                                        .collect(),
                                }
                            }
                            "prefix" => self.etcd.prefix = Some(string(v, &path)?),
                            "ca_file" => self.etcd.ca_file = Some(string(v, &path)?),
                            "cert_file" => self.etcd.cert_file = Some(string(v, &path)?),
                            "key_file" => self.etcd.key_file = Some(string(v, &path)?),
                            other => return Err(format!("etcd: unknown key {other:?}")),
                        }
                    }
                }
                "tls" => {
                    let Value::Object(tls) = single(value) else {
                        return Err("tls: expected a block".into());
                    };
                    for (block, keys) in tls {
                        let target = match block.as_str() {
                            "defaults" => &mut self.tls.defaults,
                            "https" => &mut self.tls.https,
                            // Consul's server RPC and gRPC (xDS) listeners: Tribune has
                            // neither, so their settings are checked and unused.
                            "internal_rpc" | "grpc" => &mut TlsBlock::default(),
                            other => {
                                return Err(format!(
                                    "tls: unknown block {other:?} (expected defaults or https)"
                                ))
                            }
                        };
                        let Value::Object(keys) = single(keys) else {
                            return Err(format!("tls.{block}: expected a block"));
                        };
                        for (k, v) in keys {
                            let path = format!("tls.{block}.{k}");
                            if !target.set(k, v, &path)? {
                                return Err(format!("tls.{block}: unknown key {k:?}"));
                            }
                        }
                    }
                }
                // Consul's pre-1.12 top-level TLS keys.
                "ca_file"
                | "ca_path"
                | "cert_file"
                | "key_file"
                | "verify_incoming"
                | "tls_min_version"
                | "verify_outgoing"
                | "verify_server_hostname"
                | "tls_cipher_suites" => {
                    self.tls.defaults.set(key, value, key)?;
                }
                "verify_incoming_https" => {
                    self.tls.https.verify_incoming = Some(boolean(value, key)?);
                }
                "log_level" => self.log.level = Some(string(value, key)?),
                "log_json" => self.log.json = boolean(value, key)?,
                "log_file" => self.log.file = Some(string(value, key)?),
                "ui" => self.ui = boolean(value, key)?,
                "connect" => {
                    let Value::Object(c) = single(value) else {
                        return Err("connect: expected a block".into());
                    };
                    for (k, v) in c {
                        match k.as_str() {
                            // Connect is always on.
                            "enabled" => {
                                boolean(v, "connect.enabled")?;
                            }
                            "ca_config" => {
                                let Value::Object(cc) = single(v) else {
                                    return Err("connect.ca_config: expected a block".into());
                                };
                                for (ck, cv) in cc {
                                    match ck.as_str() {
                                        "jwt_issuer" => {
                                            let iss = string(cv, "connect.ca_config.jwt_issuer")?;
                                            if !(iss.starts_with("https://")
                                                || iss.starts_with("http://"))
                                            {
                                                return Err(format!(
                                                    "connect.ca_config.jwt_issuer: must be an http:// or https:// URL (OIDC discovery is found under it), got {iss:?}"
                                                ));
                                            }
                                            self.connect.jwt_issuer =
                                                Some(iss.trim_end_matches('/').to_string());
                                        }
                                        "jwt_signing_algorithm" => {
                                            let a = string(
                                                cv,
                                                "connect.ca_config.jwt_signing_algorithm",
                                            )?;
                                            self.connect.jwt_signing_algorithm =
                                                tribune_ca::jwt::SigningAlg::parse(&a).ok_or_else(|| {
                                                    format!("connect.ca_config.jwt_signing_algorithm: must be \"ES256\" or \"RS256\", got {a:?}")
                                                })?;
                                        }
                                        other => {
                                            return Err(format!(
                                                "connect.ca_config: unknown key {other:?}"
                                            ))
                                        }
                                    }
                                }
                            }
                            other => return Err(format!("connect: unknown key {other:?}")),
                        }
                    }
                }
                "data_dir" | "server" | "bootstrap_expect" | "node_name" => {}
                other => return Err(format!("unknown agent config key {other:?}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_and_ui_keys_are_consuls() {
        let mut c = AgentConfig::default();
        c.merge_file("log_level = \"DEBUG\"\nlog_json = true\nlog_file = \"/var/log/tribune.log\"\nui = false")
            .unwrap();
        assert_eq!(
            c.log,
            LogSettings {
                level: Some("DEBUG".into()),
                json: true,
                file: Some("/var/log/tribune.log".into()),
            }
        );
        assert!(!c.ui);
    }

    #[test]
    fn parses_consul_style_agent_config() {
        let mut c = AgentConfig::default();
        c.merge_file(
            r#"datacenter = "east"
ports { http = 8600 }
default_intention_policy = "allow"
acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = "s3cr3t" }
}"#,
        )
        .unwrap();
        assert_eq!(c.datacenter, "east");
        assert_eq!(c.http_port, Some(8600));
        assert_eq!(c.default_intention_policy, Action::Allow);
        assert!(c.acl.enabled && !c.acl.default_allow());
        assert_eq!(c.acl.initial_management.as_deref(), Some("s3cr3t"));
        assert_eq!(c.http_max_conns_per_client, 200);
        c.merge_file("limits { http_max_conns_per_client = 7 }")
            .unwrap();
        assert_eq!(c.http_max_conns_per_client, 7);
        assert!(AgentConfig::default()
            .merge_file("acl { default_policy = \"maybe\" }")
            .is_err());
        assert!(AgentConfig::default().merge_file("bogus = 1").is_err());
    }

    #[test]
    fn parses_the_connect_block_and_token_ttls() {
        let mut c = AgentConfig::default();
        c.merge_file(
            r#"connect {
  enabled = true
  ca_config {
    jwt_issuer = "https://mesh.example/"
    jwt_signing_algorithm = "RS256"
  }
}
acl {
  token_min_expiration_ttl = "10s"
  token_max_expiration_ttl = "2h"
}"#,
        )
        .unwrap();
        assert_eq!(
            c.connect.jwt_issuer.as_deref(),
            Some("https://mesh.example")
        );
        assert_eq!(
            c.connect.jwt_signing_algorithm,
            tribune_ca::jwt::SigningAlg::Rs256
        );
        assert_eq!(c.acl.token_ttl.min_ns, 10_000_000_000);
        assert_eq!(c.acl.token_ttl.max_ns, 7_200_000_000_000);
        for (text, want) in [
            (
                r#"connect { ca_config { jwt_signing_algorithm = "HS256" } }"#,
                "connect.ca_config.jwt_signing_algorithm: must be \"ES256\" or \"RS256\", got \"HS256\"",
            ),
            (
                r#"connect { ca_config { jwt_issuer = "mesh" } }"#,
                "connect.ca_config.jwt_issuer: must be an http:// or https:// URL (OIDC discovery is found under it), got \"mesh\"",
            ),
            (r#"connect { ca_provider = "vault" }"#, "connect: unknown key \"ca_provider\""),
            (
                r#"acl { token_min_expiration_ttl = "25h" }"#,
                "acl.token_min_expiration_ttl (25h0m0s) is longer than acl.token_max_expiration_ttl (24h0m0s)",
            ),
            (
                r#"acl { token_max_expiration_ttl = "soon" }"#,
                "acl.token_max_expiration_ttl: time: invalid duration \"soon\"",
            ),
        ] {
            let e = AgentConfig::default().merge_file(text).unwrap_err();
            assert_eq!(e, want, "{text}");
        }
    }

    #[test]
    fn parses_consuls_tls_block_and_https_port() {
        let mut c = AgentConfig::default();
        c.merge_file(
            r#"ports { http = -1, https = 8501, grpc = 8502 }
tls {
  defaults {
    ca_file = "/etc/tribune/ca.pem"
    cert_file = "/etc/tribune/agent.pem"
    key_file = "/etc/tribune/agent-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  https { verify_incoming = false, tls_min_version = "TLSv1_3" }
  internal_rpc { verify_server_hostname = true }
}"#,
        )
        .unwrap();
        assert_eq!((c.http_port, c.https_port), (None, Some(8501)));
        let https = c.tls.for_https();
        assert_eq!(https.ca_file.as_deref(), Some("/etc/tribune/ca.pem"));
        assert_eq!(
            https.key_file.as_deref(),
            Some("/etc/tribune/agent-key.pem")
        );
        assert_eq!(https.verify_incoming, Some(false));
        assert_eq!(https.tls_min_version.as_deref(), Some("TLSv1_3"));
        // Consul's pre-1.12 top-level keys land in defaults.
        let mut legacy = AgentConfig::default();
        legacy
            .merge_file(
                "cert_file = \"a.pem\"\nkey_file = \"a-key.pem\"\nverify_incoming_https = true",
            )
            .unwrap();
        assert_eq!(legacy.tls.for_https().cert_file.as_deref(), Some("a.pem"));
        assert_eq!(legacy.tls.for_https().verify_incoming, Some(true));
        for (bad, names) in [
            (
                "tls { defaults { tls_min_version = \"TLSv1_0\" } }",
                "tls.defaults.tls_min_version",
            ),
            (
                "tls { https { cert = \"x\" } }",
                "tls.https: unknown key \"cert\"",
            ),
            ("tls { web { } }", "tls: unknown block \"web\""),
            ("ports { https = 70000 }", "ports.https: invalid port"),
            (
                "ports { https = \"x\" }",
                "ports.https: expected a port number",
            ),
        ] {
            let e = AgentConfig::default().merge_file(bad).unwrap_err();
            assert!(e.contains(names), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_the_etcd_block() {
        let mut c = AgentConfig::default();
        c.merge_file(
            r#"etcd {
  endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
  prefix = "/prod/"
  ca_file = "ca.pem"
}"#,
        )
        .unwrap();
        assert_eq!(
            c.etcd.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(c.etcd.prefix.as_deref(), Some("/prod/"));
        assert_eq!(c.etcd.ca_file.as_deref(), Some("ca.pem"));
        let e = AgentConfig::default()
            .merge_file("etcd { endpoint = \"x\" }")
            .unwrap_err();
        assert!(e.contains("etcd: unknown key \"endpoint\""), "{e}");
    }
}
