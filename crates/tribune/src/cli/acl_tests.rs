//! `acl policy|token|role ...` against an in-process agent: Consul's output,
//! messages, partial IDs and exit codes.

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

fn run(addr: &str, token: &str, args: &[&str]) -> (u8, String, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-http-addr", addr, "-token", token]);
    run_args(&all)
}

/// Runs a command that must succeed; its stdout.
fn ok(addr: &str, args: &[&str]) -> String {
    let (code, out, err) = run(addr, "root", args);
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
fn policies_list_read_update_delete_like_consul() {
    let addr = agent();
    let out = ok(
        &addr,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "web-read",
            "-description",
            "reads web",
            "-rules",
            "service \"web\" { policy = \"read\" }",
        ],
    );
    let id = field(&out, "ID");
    assert_eq!(
        out,
        format!("ID:           {id}\nName:         web-read\nDescription:  reads web\nDatacenters:  \nRules:\nservice \"web\" {{ policy = \"read\" }}\n")
    );
    let list = ok(&addr, &["acl", "policy", "list"]);
    assert!(
        list.contains(&format!(
            "web-read:\n   ID:           {id}\n   Description:  reads web\n   Datacenters:  \n"
        )),
        "{list}"
    );
    assert!(
        list.contains(
            "global-management:\n   ID:           00000000-0000-0000-0000-000000000001\n"
        ),
        "{list}"
    );
    assert_eq!(
        ok(&addr, &["acl", "policy", "read", "-name", "web-read"]),
        out
    );
    assert_eq!(ok(&addr, &["acl", "policy", "read", "-id", &id[..8]]), out);
    let json = ok(
        &addr,
        &["acl", "policy", "read", "-id", &id, "-format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["Name"], "web-read");
    assert!(json.contains("\n    \"ID\""), "four-space indent: {json}");

    let updated = ok(
        &addr,
        &[
            "acl",
            "policy",
            "update",
            "-id",
            &id,
            "-name",
            "web-write",
            "-rules",
            "service \"web\" { policy = \"write\" }",
        ],
    );
    assert!(updated.contains("Name:         web-write\n"), "{updated}");
    assert!(
        updated.contains("Description:  reads web\n"),
        "kept: {updated}"
    );
    assert!(updated.ends_with("Rules:\nservice \"web\" { policy = \"write\" }\n"));

    assert_eq!(
        run(&addr, "root", &["acl", "policy", "read"]),
        (
            1,
            String::new(),
            "Must specify either the -id or -name parameters\n".into()
        )
    );
    let (code, _, err) = run(&addr, "root", &["acl", "policy", "read", "-id", "zz"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Error determining policy ID: No such policy ID with prefix: zz\n"
        )
    );
    assert_eq!(
        ok(&addr, &["acl", "policy", "delete", "-name", "web-write"]),
        format!("Policy \"{id}\" deleted successfully\n")
    );
    let (code, _, err) = run(
        &addr,
        "root",
        &["acl", "policy", "read", "-name", "web-write"],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "Error reading policy \"web-write\": Unexpected response code: 403 (ACL not found)"
        ),
        "{err}"
    );
}

#[test]
fn tokens_and_roles_like_consul() {
    let addr = agent();
    let p = field(
        &ok(
            &addr,
            &[
                "acl",
                "policy",
                "create",
                "-name",
                "a",
                "-rules",
                "mesh = \"read\"",
            ],
        ),
        "ID",
    );
    ok(
        &addr,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "b",
            "-rules",
            "acl = \"read\"",
        ],
    );
    let role_out = ok(
        &addr,
        &[
            "acl",
            "role",
            "create",
            "-name",
            "ops",
            "-description",
            "operators",
            "-policy-name",
            "a",
        ],
    );
    let rid = field(&role_out, "ID");
    assert_eq!(
        role_out,
        format!("ID:           {rid}\nName:         ops\nDescription:  operators\nPolicies:\n   {p} - a\n")
    );
    assert_eq!(
        ok(&addr, &["acl", "role", "read", "-name", "ops"]),
        role_out
    );
    assert_eq!(
        ok(&addr, &["acl", "role", "list"]),
        format!("ops:\n   ID:           {rid}\n   Description:  operators\n   Policies:\n      {p} - a\n")
    );

    let t = ok(
        &addr,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "ci",
            "-role-name",
            "ops",
        ],
    );
    let accessor = field(&t, "AccessorID");
    let secret = field(&t, "SecretID");
    assert!(
        t.contains("Description:      ci\nLocal:            false\n"),
        "{t}"
    );
    assert!(t.ends_with(&format!("Roles:\n   {rid} - ops\n")), "{t}");
    assert!(!t.contains("Policies:"), "no policies, no heading: {t}");
    assert_eq!(
        ok(&addr, &["acl", "token", "read", "-id", &accessor[..6]]),
        t
    );

    let u = ok(
        &addr,
        &[
            "acl",
            "token",
            "update",
            "-id",
            &accessor,
            "-policy-name",
            "b",
            "-merge-policies",
            "-description",
            "ci runner",
        ],
    );
    assert!(u.starts_with("Token updated successfully.\n"), "{u}");
    assert_eq!(field(&u, "SecretID"), secret);
    assert!(u.contains("Description:      ci runner\n"), "{u}");
    assert!(u.contains("Policies:\n   "), "{u}");
    assert!(u.contains(" - b\n"), "{u}");
    assert!(
        u.contains(&format!("Roles:\n   {rid} - ops\n")),
        "roles kept: {u}"
    );

    // The token's own secret reads itself; its policy b grants acl:read, so it
    // lists tokens but sees no secrets.
    let (code, me, _) = run(&addr, &secret, &["acl", "token", "read", "-self"]);
    assert_eq!(code, 0);
    assert_eq!(field(&me, "SecretID"), secret);
    let (code, list, _) = run(&addr, &secret, &["acl", "token", "list"]);
    assert_eq!(code, 0);
    assert!(list.contains("SecretID:         <hidden>\n"), "{list}");
    assert!(!list.contains(&secret), "{list}");

    let c = ok(
        &addr,
        &[
            "acl",
            "token",
            "clone",
            "-id",
            &accessor,
            "-description",
            "copy",
        ],
    );
    assert!(c.starts_with("Token cloned successfully.\n"), "{c}");
    assert_ne!(field(&c, "AccessorID"), accessor);
    assert_ne!(field(&c, "SecretID"), secret);
    assert!(c.contains(&format!("Roles:\n   {rid} - ops\n")), "{c}");

    assert_eq!(
        run(&addr, "root", &["acl", "token", "read"]),
        (1, String::new(), "Must specify the -id parameter\n".into())
    );
    assert_eq!(
        run(&addr, "root", &["acl", "token", "update"]),
        (
            1,
            String::new(),
            "Cannot update a token without specifying the -id parameter\n".into()
        )
    );
    let (code, _, err) = run(&addr, "root", &["acl", "token", "read", "-id", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error determining token ID: No such token ID with prefix: nope\n"
    );
    let (code, _, err) = run(&addr, "root", &["acl", "token", "read", "-id", ""]);
    assert_eq!(
        (code, err.as_str()),
        (1, "Must specify the -id parameter\n")
    );

    assert_eq!(
        ok(&addr, &["acl", "token", "delete", "-id", &accessor]),
        format!("Token \"{accessor}\" deleted successfully\n")
    );
    assert_eq!(
        ok(&addr, &["acl", "role", "delete", "-id", &rid]),
        format!("Role \"{rid}\" deleted successfully\n")
    );
    assert_eq!(ok(&addr, &["acl", "role", "list"]), "");
    assert_eq!(
        run(&addr, "root", &["acl", "role", "create", "-name", "x"]),
        (
            1,
            String::new(),
            "Cannot create a role without specifying -policy-name or -policy-id at least once\n"
                .into()
        )
    );
    let (code, _, err) = run(&addr, "root", &["acl", "token", "list", "-format", "yaml"]);
    assert_eq!((code, err.as_str()), (1, "Invalid format: yaml\n"));
}

#[test]
fn role_update_merges_policies_unless_no_merge() {
    let addr = agent();
    let mut ids = Vec::new();
    for (name, rules) in [("a", "mesh = \"read\""), ("b", "acl = \"read\"")] {
        let out = ok(
            &addr,
            &["acl", "policy", "create", "-name", name, "-rules", rules],
        );
        ids.push(field(&out, "ID"));
    }
    let (pa, pb) = (&ids[0], &ids[1]);
    let created = ok(
        &addr,
        &["acl", "role", "create", "-name", "ops", "-policy-name", "a"],
    );
    let rid = field(&created, "ID");
    // A unique prefix of the ID is enough; policies given are added.
    let merged = ok(
        &addr,
        &[
            "acl",
            "role",
            "update",
            "-id",
            &rid[..8],
            "-description",
            "operators",
            "-policy-name",
            "b",
        ],
    );
    assert_eq!(
        merged,
        format!("ID:           {rid}\nName:         ops\nDescription:  operators\nPolicies:\n   {pa} - a\n   {pb} - b\n")
    );
    let replaced = ok(
        &addr,
        &[
            "acl",
            "role",
            "update",
            "-id",
            &rid,
            "-name",
            "admins",
            "-no-merge",
            "-policy-id",
            pb,
        ],
    );
    assert_eq!(
        replaced,
        format!("ID:           {rid}\nName:         admins\nDescription:  operators\nPolicies:\n   {pb} - b\n")
    );
    assert_eq!(
        ok(&addr, &["acl", "role", "read", "-name", "admins"]),
        replaced
    );
    assert_eq!(
        run(&addr, "root", &["acl", "role", "update", "-name", "x"]),
        (
            1,
            String::new(),
            "Cannot update a role without specifying the -id parameter\n".into()
        )
    );
    let (code, _, err) = run(
        &addr,
        "root",
        &["acl", "role", "update", "-id", &rid, "-policy-name", "nope"],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("Error updating role \"{rid}\"")),
        "{err}"
    );
}

#[test]
fn auth_methods_are_managed_like_consul() {
    let addr = agent();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nomad.json");
    std::fs::write(
        &config,
        r#"{"JWKSURL": "http://127.0.0.1:4646/.well-known/jwks.json", "JWTSupportedAlgs": ["RS256"],
            "BoundAudiences": ["consul.io"], "ClaimMappings": {"nomad_job_id": "nomad_job_id"}}"#,
    )
    .unwrap();
    let at_config = format!("@{}", config.display());
    // Nothing answers at the JWKSURL: written, with a warning saying so.
    let warned = |args: &[&str]| {
        let (code, out, err) = run(&addr, "root", args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            err.starts_with(
                "WARNING: auth method \"nomad-workloads\": the agent could not fetch its keys ("
            ),
            "{err}"
        );
        assert!(
            err.trim_end()
                .ends_with("logins fail until the keys can be fetched"),
            "{err}"
        );
        out
    };
    let out = warned(&[
        "acl",
        "auth-method",
        "create",
        "-type",
        "jwt",
        "-name",
        "nomad-workloads",
        "-display-name",
        "Nomad Workloads",
        "-max-token-ttl",
        "1h",
        "-config",
        &at_config,
    ]);
    assert!(
        out.starts_with("Name:          nomad-workloads\nType:          jwt\nDisplayName:   Nomad Workloads\nDescription:   \nMaxTokenTTL:   1h0m0s\nTokenLocality: local\nConfig:\n{\n"),
        "{out}"
    );
    assert!(
        out.contains("\"BoundAudiences\": [\n    \"consul.io\"\n  ]"),
        "{out}"
    );
    let list = ok(&addr, &["acl", "auth-method", "list"]);
    assert_eq!(
        list,
        "nomad-workloads:\n   Type:         jwt\n   DisplayName:  Nomad Workloads\n   Description:  \n"
    );
    let out = warned(&[
        "acl",
        "auth-method",
        "update",
        "-name",
        "nomad-workloads",
        "-description",
        "Nomad's workloads",
    ]);
    assert_eq!(field(&out, "Description"), "Nomad's workloads");
    assert_eq!(field(&out, "MaxTokenTTL"), "1h0m0s", "kept");
    let json = ok(
        &addr,
        &[
            "acl",
            "auth-method",
            "read",
            "-name",
            "nomad-workloads",
            "-format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["Config"]["ClaimMappings"]["nomad_job_id"], "nomad_job_id");
    // Consul's refusal, through the CLI.
    let (code, _, err) = run(
        &addr,
        "root",
        &[
            "acl",
            "auth-method",
            "create",
            "-type",
            "jwt",
            "-name",
            "bad",
            "-max-token-ttl",
            "30s",
            "-config",
            &at_config,
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("MaxTokenTTL 30s cannot be less than 1m0s"),
        "{err}"
    );
    assert_eq!(
        ok(
            &addr,
            &["acl", "auth-method", "delete", "-name", "nomad-workloads"]
        ),
        "Auth-method \"nomad-workloads\" deleted successfully\n"
    );
    let (code, _, _) = run(
        &addr,
        "root",
        &["acl", "auth-method", "read", "-name", "nomad-workloads"],
    );
    assert_eq!(code, 1);
}
