//! CLI commands against an in-process agent on 127.0.0.1:0: output text and exit codes.

use crate::cli::tests::run_args;
use std::sync::Arc;
use tribune_server::{router, AgentConfig, AppState};
use tribune_store::RedbStore;

/// Starts an agent on its own thread and runtime; returns its address.
pub(crate) fn start_agent(config: AgentConfig) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let state = AppState::new(Arc::new(RedbStore::in_memory().unwrap()), config)
                .await
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            axum::serve(listener, router(state)).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// What `config write` prints on stderr for the seed's provider file: its write-time
/// warnings (a name as Issuer with remote keys, no Audiences), and the agent's failed
/// fetch of its placeholder key URI.
fn okta_warnings() -> String {
    let text = std::fs::read_to_string(example("okta-provider.hcl")).unwrap();
    let Ok(tribune_model::ConfigEntry::JwtProvider(p)) = tribune_model::parse_entry(&text) else {
        panic!("the seed's provider parses")
    };
    let warnings = tribune_authz::provider_warnings(&p);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let mut out: String = warnings.iter().map(|w| format!("WARNING: {w}\n")).collect();
    out.push_str("WARNING: jwt-provider \"okta\": the agent could not fetch its keys (https://<org>.okta.com/oauth2/default/v1/keys: invalid URI: invalid uri character); requests that carry a token for it fail until the keys can be fetched (`tribune jwt-provider check okta` shows each step)\n");
    out
}

#[test]
fn seed_workflow_through_the_cli() {
    let addr = start_agent(AgentConfig::default());
    let a = ["-http-addr", addr.as_str()];
    let run = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend_from_slice(&a);
        run_args(&v)
    };
    assert_eq!(
        run(&["config", "write", &example("okta-provider.hcl")]),
        (
            0,
            "Config entry written: jwt-provider/okta\n".into(),
            okta_warnings()
        )
    );
    let (code, _, err) = run(&["config", "write", &example("api-intentions.hcl")]);
    assert_eq!(code, 1);
    assert_eq!(err, "Error writing config entry service-intentions/api: Unexpected response code: 400 (service \"api\" has protocol \"tcp\", which is incompatible with L7 intentions permissions)\n");
    assert_eq!(run(&["config", "write", &example("api-defaults.hcl")]).0, 0);
    assert_eq!(
        run(&["config", "write", &example("api-intentions.hcl")]),
        (
            0,
            "Config entry written: service-intentions/api\n".into(),
            String::new()
        )
    );
    let (code, out, _) = run(&["config", "read", "-kind", "jwt-provider", "-name", "okta"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "{\n    \"Kind\": \"jwt-provider\",\n    \"Name\": \"okta\",\n    \"JSONWebKeySet\""
        ),
        "{out}"
    );
    assert!(!out.contains("\"Hash\""));
    assert_eq!(
        run(&["config", "list", "-kind", "service-intentions"]),
        (0, "api\n".into(), String::new())
    );
    assert_eq!(
        run(&["config", "read", "-kind", "jwt-provider"]),
        (
            1,
            String::new(),
            "Must specify the -name parameter\n".into()
        )
    );
    assert_eq!(
        run(&["config", "read", "-kind", "jwt-provider", "-name", "nope"]),
        (1, String::new(), "Error reading config entry jwt-provider/nope: Unexpected response code: 404 (Config entry not found for \"jwt-provider\" / \"nope\")\n".into())
    );
    // The referenced provider cannot be deleted; the intention can.
    let (code, _, err) = run(&["config", "delete", "-kind", "jwt-provider", "-name", "okta"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot delete jwt provider config entry referenced by an intention. Provider name: okta, intention name: api"), "{err}");
    assert_eq!(
        run(&[
            "config",
            "delete",
            "-filename",
            &example("api-intentions.hcl")
        ]),
        (
            0,
            "Config entry deleted: service-intentions/api\n".into(),
            String::new()
        )
    );
    assert_eq!(
        run(&[
            "config",
            "delete",
            "-kind",
            "jwt-provider",
            "-name",
            "okta",
            "-modify-index",
            "3"
        ]),
        (
            1,
            String::new(),
            "Cannot specify -modify-index without -cas\n".into()
        )
    );
}

#[test]
fn config_write_cas_and_argument_errors() {
    let addr = start_agent(AgentConfig::default());
    let okta = example("okta-provider.hcl");
    let cas = |idx: &str| {
        run_args(&[
            "config",
            "write",
            "-cas",
            "-modify-index",
            idx,
            "-http-addr",
            &addr,
            &okta,
        ])
    };
    assert_eq!(cas("0").0, 0);
    assert_eq!(
        cas("0"),
        (
            1,
            String::new(),
            format!(
                "{}Config entry not updated: jwt-provider/okta\n",
                okta_warnings()
            )
        )
    );
    assert_eq!(
        run_args(&["config", "write", "-http-addr", &addr]),
        (
            1,
            String::new(),
            "Must provide exactly one positional argument to specify the config entry to write\n"
                .into()
        )
    );
}

#[test]
fn intention_check_exit_codes() {
    let addr = start_agent(AgentConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("i.hcl");
    std::fs::write(&f, "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"allow\" } ]\n").unwrap();
    assert_eq!(
        run_args(&["config", "write", "-http-addr", &addr, f.to_str().unwrap()]).0,
        0
    );
    assert_eq!(
        run_args(&["intention", "check", "web", "api", "-http-addr", &addr]),
        (0, "Allowed\n".into(), String::new())
    );
    assert_eq!(
        run_args(&["intention", "check", "db", "api", "-http-addr", &addr]),
        (1, "Denied\n".into(), String::new())
    );
    assert_eq!(
        run_args(&["intention", "check", "web", "-http-addr", &addr]),
        (
            2,
            String::new(),
            "Error: command requires exactly two arguments: src and dst\n".into()
        )
    );
    let (code, _, err) = run_args(&[
        "intention",
        "check",
        "web",
        "api",
        "-http-addr",
        "127.0.0.1:1",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("Error connecting to Tribune agent:"),
        "{err}"
    );
}

#[test]
fn acl_workflow_mesh_write_token() {
    let mut config = AgentConfig::default();
    config.acl.enabled = true;
    config.acl.default_policy = "deny".into();
    let addr = start_agent(config);
    let (code, out, _) = run_args(&["acl", "bootstrap", "-http-addr", &addr]);
    assert_eq!(code, 0);
    assert!(
        out.contains("00000000-0000-0000-0000-000000000001 - global-management"),
        "{out}"
    );
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .map(|s| s.trim().to_string())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("mesh.hcl");
    std::fs::write(&rules, "mesh = \"write\"\n").unwrap();
    let rules_arg = format!("@{}", rules.display());
    let (code, out, err) = run_args(&[
        "acl",
        "policy",
        "create",
        "-name",
        "mesh-writer",
        "-rules",
        &rules_arg,
        "-http-addr",
        &addr,
        "-token",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Name:         mesh-writer"), "{out}");
    let (code, out, _) = run_args(&[
        "acl",
        "token",
        "create",
        "-policy-name",
        "mesh-writer",
        "-http-addr",
        &addr,
        "-token",
        &root,
    ]);
    assert_eq!(code, 0);
    let writer = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .map(|s| s.trim().to_string())
        .unwrap();
    let okta = example("okta-provider.hcl");
    let (code, _, err) = run_args(&["config", "write", "-http-addr", &addr, &okta]);
    assert_eq!(code, 1);
    assert_eq!(err, "Error writing config entry jwt-provider/okta: Unexpected response code: 403 (Permission denied: anonymous token lacks permission 'mesh:write'. The anonymous token is used implicitly when a request does not specify a token.)\n");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{writer}\n")).unwrap();
    assert_eq!(
        run_args(&[
            "config",
            "write",
            "-http-addr",
            &addr,
            "-token-file",
            token_file.to_str().unwrap(),
            &okta
        ]),
        (
            0,
            "Config entry written: jwt-provider/okta\n".into(),
            okta_warnings()
        )
    );
}

pub(crate) const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub(crate) fn hs256(payload: serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let input = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        B64.encode(payload.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn intention_check_explains_a_denial_by_naming_the_failing_claim() {
    use base64::Engine;
    let addr = start_agent(AgentConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET)}]});
    let provider = format!(
        "Kind = \"jwt-provider\"\nName = \"okta\"\nIssuer = \"okta\"\nJSONWebKeySet {{ Local {{ JWKS = \"{}\" }} }}\n",
        base64::engine::general_purpose::STANDARD.encode(jwks.to_string())
    );
    let files = [
        ("p.hcl", provider),
        ("d.hcl", "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n".to_string()),
        (
            "i.hcl",
            r#"Kind = "service-intentions"
Name = "api"
JWT { Providers = [ { Name = "okta" } ] }
Sources = [ { Name = "web" Permissions = [
  { Action = "allow" HTTP { PathPrefix = "/admin" }
    JWT { Providers = [ { Name = "okta" VerifyClaims = [ { Path = ["perms", "role"] Value = "admin" } ] } ] } },
  { Action = "allow" HTTP { PathPrefix = "/public" } }
] } ]
"#
            .to_string(),
        ),
    ];
    for (name, body) in &files {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        let (code, _, err) =
            run_args(&["config", "write", "-http-addr", &addr, f.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {err}");
    }
    let user =
        hs256(serde_json::json!({"iss": "okta", "exp": now() + 600, "perms": {"role": "user"}}));
    let (code, out, err) = run_args(&[
        "intention",
        "check",
        "web",
        "api",
        "-method",
        "GET",
        "-path",
        "/admin",
        "-jwt",
        &user,
        "-explain",
        "-http-addr",
        &addr,
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        out,
        "Denied\n\
         Denied: intention web -> api (precedence 9) matches the caller but does not apply (permission 0 matches but its JWT requirement is not met: claim perms.role of provider \"okta\" token: expected \"admin\", got \"user\"); the default policy is deny\n\
         The caller would get HTTP 403 (RBAC: access denied)\n"
    );
    let admin =
        hs256(serde_json::json!({"iss": "okta", "exp": now() + 600, "perms": {"role": "admin"}}));
    let (code, out, _) = run_args(&[
        "intention",
        "check",
        "web",
        "api",
        "-path",
        "/admin/../admin/users",
        "-jwt",
        &admin,
        "-http-addr",
        &addr,
    ]);
    assert_eq!((code, out.as_str()), (0, "Allowed\n"));
    let expired =
        hs256(serde_json::json!({"iss": "okta", "exp": now() - 600, "perms": {"role": "admin"}}));
    let (code, out, _) = run_args(&[
        "intention",
        "check",
        "web",
        "api",
        "-path",
        "/public",
        "-jwt",
        &expired,
        "-explain",
        "-http-addr",
        &addr,
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("token for provider \"okta\" failed: Jwt is expired"),
        "{out}"
    );
    assert!(
        out.ends_with("The caller would get HTTP 401 (Jwt is expired)\n"),
        "{out}"
    );
    let (code, out, _) = run_args(&[
        "intention",
        "check",
        "web",
        "api",
        "-path",
        "/public",
        "-explain",
        "-http-addr",
        &addr,
    ]);
    assert_eq!(code, 1);
    assert!(
        out.ends_with("The caller would get HTTP 401 (Jwt is missing)\n"),
        "{out}"
    );
}
