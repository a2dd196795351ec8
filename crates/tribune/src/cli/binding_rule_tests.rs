//! `acl binding-rule ...` and identity tokens against an in-process agent: Consul's
//! output, messages, partial IDs and exit codes.

use crate::cli::agent_tests::start_agent;
use crate::cli::tests::run_args;
use tribune_server::AgentConfig;

fn agent() -> String {
    let mut config = AgentConfig::default();
    config.acl.enabled = true;
    config.acl.default_policy = "deny".into();
    config.acl.initial_management = Some("root".into());
    start_agent(config)
}

fn run(addr: &str, args: &[&str]) -> (u8, String, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-http-addr", addr, "-token", "root"]);
    run_args(&all)
}

fn ok(addr: &str, args: &[&str]) -> String {
    let (code, out, err) = run(addr, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    assert_eq!(err, "", "{args:?}");
    out
}

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[test]
fn binding_rules_are_managed_like_consul() {
    let addr = agent();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nomad.json");
    std::fs::write(
        &config,
        r#"{"JWKSURL": "http://127.0.0.1:4646/.well-known/jwks.json",
            "BoundAudiences": ["consul.io"], "ClaimMappings": {"nomad_service": "nomad_service"}}"#,
    )
    .unwrap();
    let at_config = format!("@{}", config.display());
    // Nothing answers at the JWKSURL: written with a warning (on stderr).
    let (code, _, err) = run(
        &addr,
        &[
            "acl",
            "auth-method",
            "create",
            "-type",
            "jwt",
            "-name",
            "nomad-workloads",
            "-config",
            &at_config,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out = ok(
        &addr,
        &[
            "acl",
            "binding-rule",
            "create",
            "-method",
            "nomad-workloads",
            "-bind-type",
            "service",
            "-bind-name",
            "${value.nomad_service}",
            "-selector",
            "\"nomad_service\" in value",
            "-description",
            "services",
        ],
    );
    let id = field(&out, "ID");
    assert_eq!(
        out,
        format!("ID:           {id}\nAuthMethod:   nomad-workloads\nDescription:  services\nBindType:     service\nBindName:     ${{value.nomad_service}}\nSelector:     \"nomad_service\" in value\n")
    );
    // A unique prefix names the rule, as in Consul.
    let read = ok(&addr, &["acl", "binding-rule", "read", "-id", &id[..8]]);
    assert_eq!(read, out);
    let updated = ok(
        &addr,
        &[
            "acl",
            "binding-rule",
            "update",
            "-id",
            &id,
            "-description",
            "Nomad services",
        ],
    );
    assert_eq!(field(&updated, "Description"), "Nomad services");
    assert_eq!(
        field(&updated, "BindName"),
        "${value.nomad_service}",
        "kept"
    );
    let list = ok(
        &addr,
        &["acl", "binding-rule", "list", "-method", "nomad-workloads"],
    );
    assert!(
        list.starts_with(&format!("{id}:\n   AuthMethod:   nomad-workloads\n")),
        "{list}"
    );
    let (code, _, err) = run(
        &addr,
        &[
            "acl",
            "binding-rule",
            "create",
            "-method",
            "nomad-workloads",
            "-bind-type",
            "service",
            "-bind-name",
            "${value.nope}",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Failed to create new binding rule: Unexpected response code: 400 (Invalid Binding Rule: invalid BindName or BindVars"),
        "{err}"
    );
    let (code, _, err) = run(&addr, &["acl", "binding-rule", "create", "-method", "x"]);
    assert_eq!(
        (code, err.trim_end()),
        (1, "Missing required '-bind-type' flag")
    );
    let out = ok(&addr, &["acl", "binding-rule", "delete", "-id", &id]);
    assert_eq!(out, format!("Binding rule {id:?} deleted successfully\n"));
    assert_eq!(ok(&addr, &["acl", "binding-rule", "list"]), "");
}

#[test]
fn tokens_are_created_with_identities_and_an_expiry() {
    let addr = agent();
    let out = ok(
        &addr,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "deployer",
            "-service-identity",
            "web",
            "-node-identity",
            "node-1:dc1",
            "-expires-ttl",
            "8h",
        ],
    );
    assert!(
        out.contains("\nService Identities:\n   web (Datacenters: all)\nNode Identities:\n   node-1 (Datacenter: dc1)\n"),
        "{out}"
    );
    let created = field(&out, "Create Time");
    let expires = field(&out, "Expiration Time");
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    assert_eq!(parse(&expires) - parse(&created), 8 * 3600, "{out}");
    let (code, _, err) = run(
        &addr,
        &["acl", "token", "create", "-node-identity", "node-1"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Malformed -node-identity argument"), "{err}");
}
