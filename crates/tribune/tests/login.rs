//! `tribune login` and `tribune logout` against the real agent binary (issue #43): a
//! CI job exchanges its JWT for an expiring token written to a 0600 file, uses it,
//! and ends it; the JWT is never logged or stored by the agent, even at trace level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::json;
use std::process::Command;
use tribune_test_support::tokens::Rs256;

const ROOT: &str = "root-secret-login";

fn tribune(agent: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("TRIBUNE_HTTP_ADDR", agent)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("TRIBUNE_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_SSL")
        .env_remove("TRIBUNE_HTTP_SSL");
    if let Some(t) = token {
        cmd.env("TRIBUNE_HTTP_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_ci_job_logs_in_with_its_jwt_uses_the_token_and_logs_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("agent.log");
    let config = dir.path().join("acl.hcl");
    std::fs::write(
        &config,
        format!("acl {{\n  enabled = true\n  default_policy = \"deny\"\n  tokens {{ initial_management = \"{ROOT}\" }}\n}}\n"),
    )
    .unwrap();
    let (mut agent, f) = spawn(
        &[
            "agent",
            "-data-dir",
            data.to_str().unwrap(),
            "-http-port",
            "0",
            "-config-file",
            config.to_str().unwrap(),
            "-log-level",
            "trace",
            "-log-file",
            log.to_str().unwrap(),
        ],
        "agent running",
    );
    let addr = field(&f, "HTTP addr").to_string();
    let root = Some(ROOT);

    // The operator's side: a method trusting the CI's key, one rule.
    let key = Rs256::new("ci-1");
    let method_config = dir.path().join("ci.json");
    std::fs::write(
        &method_config,
        json!({"JWTValidationPubKeys": [key.public_key_pem()],
            "BoundIssuer": "https://ci.example", "BoundAudiences": ["tribune"],
            "ClaimMappings": {"project": "project"}})
        .to_string(),
    )
    .unwrap();
    let (code, out, err) = tribune(
        &addr,
        root,
        &[
            "acl",
            "auth-method",
            "create",
            "-type",
            "jwt",
            "-name",
            "ci",
            "-max-token-ttl",
            "10m",
            "-config",
            &format!("@{}", method_config.display()),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = tribune(
        &addr,
        root,
        &[
            "acl",
            "binding-rule",
            "create",
            "-method",
            "ci",
            "-bind-type",
            "service",
            "-bind-name",
            "${value.project}",
            "-selector",
            "value.project != admin",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("BindType:     service"), "{out}");
    let rule_id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .unwrap()
        .trim()
        .to_string();
    let (code, out, _) = tribune(
        &addr,
        root,
        &["acl", "binding-rule", "list", "-method", "ci"],
    );
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("{rule_id}:")), "{out}");

    // The job's side.
    let bearer = key.sign(&json!({"iss": "https://ci.example", "aud": "tribune",
        "project": "billing", "iat": now(), "exp": now() + 300}));
    let jwt_file = dir.path().join("jwt");
    std::fs::write(&jwt_file, format!("{bearer}\n")).unwrap();
    let sink = dir.path().join("token");
    let (code, out, err) = tribune(
        &addr,
        None,
        &[
            "login",
            "-method",
            "ci",
            "-bearer-token-file",
            jwt_file.to_str().unwrap(),
            "-token-sink-file",
            sink.to_str().unwrap(),
            "-meta",
            "job=1234",
        ],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sink).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is its owner's only");
    }
    let secret = std::fs::read_to_string(&sink).unwrap();
    let (code, out, err) = tribune(
        &addr,
        Some(&secret),
        &["acl", "token", "read", "-self", "-format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let me: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(me["AuthMethod"], "ci");
    assert_eq!(me["ServiceIdentities"], json!([{"ServiceName": "billing"}]));
    assert_eq!(
        me["Description"],
        "token created via login: {\"job\":\"1234\"}"
    );
    let (status, body) = request(
        &addr,
        "PUT",
        "/v1/agent/service/register",
        &[("x-consul-token", secret.as_str())],
        r#"{"Name": "billing", "Port": 9000}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = request(
        &addr,
        "PUT",
        "/v1/agent/service/register",
        &[("x-consul-token", secret.as_str())],
        r#"{"Name": "payments", "Port": 9001}"#,
    );
    assert_eq!(status, 403, "only its own service");

    // Refusals the job sees, worded as Consul words them.
    let admin = key.sign(&json!({"iss": "https://ci.example", "aud": "tribune",
        "project": "admin", "iat": now(), "exp": now() + 300}));
    std::fs::write(&jwt_file, &admin).unwrap();
    let other_sink = dir.path().join("never");
    let (code, _, err) = tribune(
        &addr,
        None,
        &[
            "login",
            "-method",
            "ci",
            "-bearer-token-file",
            jwt_file.to_str().unwrap(),
            "-token-sink-file",
            other_sink.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        "Error logging in: Unexpected response code: 403 (Permission denied)"
    );
    assert!(!other_sink.exists(), "no file without a token");
    let (code, _, err) = tribune(&addr, None, &["login", "-method", "ci"]);
    assert_eq!(
        (code, err.trim_end()),
        (1, "Missing required '-token-sink-file' flag")
    );

    // Logout ends the token; the root token cannot be logged out.
    let (code, _, err) = tribune(&addr, root, &["logout"]);
    assert_eq!(code, 1);
    assert!(err.contains("403 (Permission denied)"), "{err}");
    let (code, out, err) = tribune(&addr, Some(&secret), &["logout"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, _, err) = tribune(&addr, Some(&secret), &["acl", "token", "read", "-self"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ACL not found"), "{err}");

    // The JWT never reached the log (trace level) nor the store.
    agent.kill();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("ACL login"),
        "the login is logged: {logged}"
    );
    assert!(logged.contains("ACL login refused"), "{logged}");
    let signature = bearer.rsplit('.').next().unwrap();
    for (what, text) in [("log", logged.as_bytes().to_vec())].into_iter().chain(
        std::fs::read_dir(&data).unwrap().map(|e| {
            let p = e.unwrap().path();
            ("data dir", std::fs::read(&p).unwrap_or_default())
        }),
    ) {
        let hay = String::from_utf8_lossy(&text);
        assert!(
            !hay.contains(signature) && !hay.contains(&bearer[..40]),
            "the bearer token is in the {what}"
        );
    }
}
