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

/// The sidecar's metrics page is OpenMetrics under OpenMetrics' content type, so
/// Prometheus's own parser (the Python client's, picked by content type as Prometheus
/// picks its parser) types every family: no `unknown` counters.
#[test]
fn sidecar_metrics_parse_with_prometheus_own_parser() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, OPEN_API_SNAPSHOT).unwrap();
    let (_proxy, f) = proxy_from_snapshot(&snapshot, upstream());
    assert_eq!(get(field(&f, "Edge listener"), "/hello").0, 200);
    let (content_type, body) = get_typed_text(field(&f, "Admin listener"), "/stats/prometheus");
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let families = families(&content_type, &body);
    assert!(
        families
            .lines()
            .any(|l| l == "tribune_proxy_requests counter"),
        "{families}"
    );
    assert!(
        !families.lines().any(|l| l.ends_with(" unknown")),
        "an untyped family: {families}"
    );
}

/// The families Prometheus's own parser (the Python client's, picked by content type
/// as Prometheus picks its parser) reads in `body`: `name type` lines.
fn families(content_type: &str, body: &str) -> String {
    use std::io::Write;
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
content_type, text = sys.argv[1], sys.stdin.read()
parse = openmetrics if content_type.startswith("application/openmetrics-text") else classic
for family in parse(text):
    print(family.name, family.type)
"#;
    let mut py = Command::new("python3")
        .args(["-c", script, content_type])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    let families = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{families}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    families
}

/// `GET path` on `addr`: (content type, body).
fn get_typed_text(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (content_type, body)
}

/// The agent's `/v1/agent/metrics?format=prometheus` parses with Prometheus's own
/// parser, every family typed.
#[test]
fn agent_metrics_parse_with_prometheus_own_parser() {
    let (mut agent, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let addr = field(&f, "HTTP addr");
    assert_eq!(get(addr, "/v1/catalog/services").0, 200);
    let (content_type, body) = get_typed_text(addr, "/v1/agent/metrics?format=prometheus");
    let families = families(&content_type, &body);
    for want in [
        "tribune_agent_http_requests counter",
        "tribune_agent_blocking_queries gauge",
        "tribune_agent_store_seconds counter",
    ] {
        assert!(families.lines().any(|l| l == want), "{want}: {families}");
    }
    assert!(
        !families.lines().any(|l| l.ends_with(" unknown")),
        "an untyped family: {families}"
    );
    agent.kill();
}

/// HTTP/1 answers spell header names as Consul's do: `grep X-Consul-Index` over
/// `curl -i` output finds it, as against Consul.
#[test]
fn answers_spell_headers_as_consul_does() {
    use std::io::{Read, Write};
    let (mut agent, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let mut s = std::net::TcpStream::connect(field(&f, "HTTP addr")).unwrap();
    write!(
        s,
        "GET /v1/catalog/services HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let head = answer.split("\r\n\r\n").next().unwrap();
    for name in [
        "X-Consul-Index: ",
        "X-Consul-Knownleader: ",
        "Content-Type: ",
    ] {
        assert!(
            head.lines().any(|l| l.starts_with(name)),
            "{name:?} not in {head}"
        );
    }
    agent.kill();
}

/// Upgrades (issue #41): a data dir written before store formats were numbered
/// (`tests/fixtures/store-format-0`, made by the build before them: a
/// service-defaults entry, `web` registered with a sidecar, the CA) opens with this
/// build, every record as it was.
#[test]
fn a_store_of_the_previous_format_opens_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let state = data.join("state.redb");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/store-format-0/state.redb"
        ),
        &state,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (mut agent, f) = spawn(
        &[
            "agent",
            "-data-dir",
            data.to_str().unwrap(),
            "-http-port",
            "0",
        ],
        "agent running",
    );
    let addr = field(&f, "HTTP addr");
    let (status, body) = get(addr, "/v1/config/service-defaults/web");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"Protocol\":\"http\""), "{body}");
    let (status, body) = get(addr, "/v1/agent/service/web-sidecar-proxy");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"DestinationServiceName\":\"web\""),
        "{body}"
    );
    let (status, body) = get(addr, "/v1/connect/ca/roots");
    assert_eq!(status, 200);
    assert!(
        body.contains("\"ActiveRootID\":\"af:54:1f:94"),
        "the CA written then is kept: {body}"
    );
    agent.kill();
}

/// `tribune version` names the build's revision and the store formats it opens, and
/// `/v1/agent/self` carries the same revision.
#[test]
fn version_names_the_revision_and_the_store_format() {
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("Tribune v"), "{text}");
    let revision = lines
        .next()
        .and_then(|l| l.strip_prefix("Revision "))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    assert!(!revision.is_empty(), "{text}");
    assert!(
        lines.next().unwrap().starts_with("Store format 1 "),
        "{text}"
    );
    let (mut agent, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let (_, body) = get(field(&f, "HTTP addr"), "/v1/agent/self");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Config"]["Revision"], revision.as_str(), "{body}");
    agent.kill();
}

/// A second sidecar on one host collides on the default admin port: it is told which
/// flag gives it its own (issue #42).
#[test]
fn a_taken_admin_port_names_the_flag_to_pass() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, OPEN_API_SNAPSHOT).unwrap();
    let out = Command::new(BIN)
        .args([
            "connect",
            "proxy",
            "-config",
            snapshot.to_str().unwrap(),
            "-local-service-address",
            "127.0.0.1:9",
            "-edge-listener",
            "127.0.0.1:0",
            "-admin-bind",
            &taken.local_addr().unwrap().to_string(),
        ])
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error binding admin listener")
            && err.contains("give this one its own with -admin-bind 127.0.0.1:PORT"),
        "{err}"
    );
}
