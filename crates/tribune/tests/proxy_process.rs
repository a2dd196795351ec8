//! Process-level: the real binary as agent and as sidecar proxy (edge listener),
//! config written with the CLI, changes enforced live; and the `-config FILE` mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

mod common;
use common::*;

#[test]
fn the_proxy_enforces_what_the_cli_writes_live() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let agent = field(&f, "HTTP addr").to_string();
    let app = upstream();
    let defaults = dir.path().join("defaults.hcl");
    std::fs::write(
        &defaults,
        "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n",
    )
    .unwrap();
    cli(&agent, &["config", "write", defaults.to_str().unwrap()]);

    let (_proxy, f) = spawn(
        &[
            "connect",
            "proxy",
            "-service",
            "api",
            "-http-addr",
            &agent,
            "-local-service-address",
            &app.to_string(),
            "-edge-listener",
            "127.0.0.1:0",
            "-admin-bind",
            "127.0.0.1:0",
        ],
        "proxy running",
    );
    let edge = field(&f, "Edge listener").to_string();
    let admin = field(&f, "Admin listener").to_string();
    eventually(&edge, 403); // default deny
    assert_eq!(get(&admin, "/ready").0, 200);

    let allow = dir.path().join("allow.hcl");
    std::fs::write(
        &allow,
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [{ Name = \"*\", Permissions = [{ Action = \"allow\", HTTP { PathPrefix = \"/hello\" } }] }]\n",
    )
    .unwrap();
    cli(&agent, &["config", "write", allow.to_str().unwrap()]);
    let took = eventually(&edge, 200);
    assert!(took < Duration::from_secs(1), "change took {took:?}");
    assert_eq!(get(&edge, "/hello").1, "hello from api");
    assert_eq!(get(&edge, "/other").0, 403);

    cli(
        &agent,
        &[
            "config",
            "delete",
            "-kind",
            "service-intentions",
            "-name",
            "api",
        ],
    );
    eventually(&edge, 403);
    let (_, stats) = get(&admin, "/stats/prometheus");
    assert!(
        stats.contains("tribune_proxy_requests_total{decision=\"allow\",reason=\"permission\"}"),
        "{stats}"
    );
}

#[test]
fn the_proxy_runs_from_a_snapshot_file_without_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let app = upstream();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, OPEN_API_SNAPSHOT).unwrap();
    let (_proxy, f) = proxy_from_snapshot(&snapshot, app);
    assert_eq!(
        get(field(&f, "Edge listener"), "/hello"),
        (200, "hello from api".into())
    );

    // A bad snapshot is refused with the field named.
    std::fs::write(&snapshot, r#"{"Service": "api", "Entries": [{"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "maybe"}]}]}"#).unwrap();
    let out = Command::new(BIN)
        .args([
            "connect",
            "proxy",
            "-config",
            snapshot.to_str().unwrap(),
            "-local-service-address",
            &app.to_string(),
            "-edge-listener",
            "127.0.0.1:0",
            "-admin-bind",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Entries[0]") && err.contains("Action"),
        "{err}"
    );
}

/// Fail static across restarts: a sidecar restarted while its agent is down starts
/// enforcing the policy it saved (and says so), instead of serving nothing.
#[test]
fn a_sidecar_restarted_while_the_agent_is_down_enforces_its_saved_policy() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let (mut agent, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let addr = field(&f, "HTTP addr").to_string();
    let app = upstream();
    let defaults = dir.path().join("defaults.hcl");
    std::fs::write(
        &defaults,
        "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n",
    )
    .unwrap();
    cli(&addr, &["config", "write", defaults.to_str().unwrap()]);
    let allow = dir.path().join("allow.hcl");
    std::fs::write(
        &allow,
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [{ Name = \"*\", Permissions = [{ Action = \"allow\", HTTP { PathPrefix = \"/hello\" } }] }]\n",
    )
    .unwrap();
    cli(&addr, &["config", "write", allow.to_str().unwrap()]);
    let args = |admin: &str| {
        vec![
            "connect".to_string(),
            "proxy".into(),
            "-service".into(),
            "api".into(),
            "-http-addr".into(),
            addr.clone(),
            "-local-service-address".into(),
            app.to_string(),
            "-edge-listener".into(),
            "127.0.0.1:0".into(),
            "-admin-bind".into(),
            admin.into(),
            "-state-dir".into(),
            state.into(),
        ]
    };
    let first = args("127.0.0.1:0");
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let (mut proxy, f) = spawn(&first, "proxy running");
    let edge = field(&f, "Edge listener").to_string();
    eventually(&edge, 200);
    proxy.kill();
    agent.kill();

    // Every agent down: the restarted sidecar enforces the saved policy.
    let again = args("127.0.0.1:0");
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let (_proxy, f) = spawn(&again, "proxy running");
    assert!(
        field(&f, "State").contains("started from the saved policy"),
        "{f:?}"
    );
    let edge = field(&f, "Edge listener").to_string();
    let admin = field(&f, "Admin listener").to_string();
    assert_eq!(get(&edge, "/hello"), (200, "hello from api".into()));
    assert_eq!(
        get(&edge, "/other").0,
        403,
        "the saved policy, not allow-all"
    );
    let (status, ready) = get(&admin, "/ready");
    assert_eq!(status, 200);
    assert!(
        ready.contains("no answer from an agent since start"),
        "{ready}"
    );
}

#[test]
fn a_bad_state_max_age_is_named() {
    let out = Command::new(BIN)
        .args([
            "connect",
            "proxy",
            "-service",
            "api",
            "-state-max-age",
            "soon",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-state-max-age \"soon\""), "{err}");
}
