//! Running the agent for real (issue #41): its log flags, the Consul agent flags it
//! takes or explains, against the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

/// `-log-json -log-level debug -log-file F`: every line in F is a JSON object; API
/// requests are logged at debug (method, path and status, never the query and so
/// never a `?token=`), a refused request at info with the accessor; F is the owner's
/// alone.
#[test]
fn agent_log_flags_write_json_lines_to_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("acl.hcl");
    std::fs::write(
        &config,
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens { initial_management = \"root-secret-1\" }\n}\n",
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let (mut agent, f) = spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-config-file",
            config.to_str().unwrap(),
            "-log-json",
            "-log-level",
            "debug",
            "-log-file",
            log.to_str().unwrap(),
        ],
        "agent running",
    );
    let addr = field(&f, "HTTP addr").to_string();
    let (status, _) = get(&addr, "/v1/agent/self?token=root-secret-1");
    assert_eq!(status, 200);
    let (status, _) = get(&addr, "/v1/connect/ca/rotate");
    assert_eq!(status, 405, "GET on a PUT route");
    let (status, body) = request(&addr, "PUT", "/v1/connect/ca/rotate", &[], "");
    assert_eq!(status, 403, "{body}");
    let text = wait_for_text(&log, "request denied");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["fields"]["path"] == "/v1/agent/self")
        .unwrap_or_else(|| panic!("no request line: {text}"));
    assert_eq!(request["level"], "DEBUG");
    assert_eq!(request["fields"]["status"], 200);
    let denied = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request denied")
        .unwrap();
    assert_eq!(denied["level"], "INFO");
    let reason = denied["fields"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("anonymous token lacks permission 'operator:write'"),
        "{reason}"
    );
    assert!(
        !text.contains("root-secret-1"),
        "a secret reached the log: {text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    agent.kill();
}

/// Reads `path` until it holds `needle` (the log is written from other threads).
fn wait_for_text(path: &std::path::Path, needle: &str) -> String {
    let mut text = String::new();
    wait_for(needle, Duration::from_secs(5), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle)
    });
    text
}

#[test]
fn a_bad_log_level_is_named() {
    let out = Command::new(BIN)
        .args(["agent", "-dev", "-http-port", "0", "-log-level", "verbose"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-log-level: \"verbose\" is not a level (trace, debug, info, warn, err)"),
        "{err}"
    );
}

/// Consul agent flags typed out of habit: the ones Tribune takes work, the others say
/// what to do instead of a parse error.
#[test]
fn consul_agent_flags_work_or_say_what_to_do_instead() {
    for (flag, says) in [
        ("-server", "-server: Tribune has no server/client agents"),
        (
            "-bootstrap-expect=3",
            "-bootstrap-expect: Tribune agents elect no leader",
        ),
        (
            "-bind=10.0.0.1",
            "-bind: Tribune agents have no cluster (gossip/RPC) address",
        ),
        (
            "-retry-join",
            "-retry-join: Tribune agents do not gossip or join each other",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["agent", "-dev", flag])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("10-policy.hcl"),
        "default_intention_policy = \"allow\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("20-ui.json"), "{\"ui\": false}\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a config file").unwrap();
    let (mut agent, f) = spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-datacenter",
            "east",
            "-config-dir",
            dir.path().to_str().unwrap(),
        ],
        "agent running",
    );
    assert_eq!(field(&f, "Datacenter"), "east");
    assert!(
        field(&f, "Default intent. pol.").starts_with("allow"),
        "{f:?}"
    );
    assert_eq!(field(&f, "UI"), "disabled");
    let (status, body) = get(field(&f, "HTTP addr"), "/v1/catalog/datacenters");
    assert_eq!((status, body.trim()), (200, "[\"east\"]"));
    agent.kill();
}
