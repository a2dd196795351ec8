//! Process-level: the real binary as agent and as sidecar proxy (edge listener),
//! config written with the CLI, changes enforced live; and the `-config FILE` mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and collects `key: value` lines until `ready` appears.
fn spawn(args: &[&str], ready: &str) -> (Proc, Vec<(String, String)>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut fields = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((k, v)) = line.split_once(": ") {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
        if line.contains(ready) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), fields)
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    &fields.iter().find(|(k, _)| k == key).expect(key).1
}

/// A local service: answers every request with 200 "hello from api".
fn upstream() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let body = "hello from api";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn cli(agent: &str, args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .env("TRIBUNE_HTTP_ADDR", agent)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn eventually(addr: &str, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        let (status, _) = get(addr, "/hello");
        if status == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    std::fs::write(
        &snapshot,
        r#"{"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny",
            "Entries": [{"Kind": "service-intentions", "Name": "api",
                         "Sources": [{"Name": "*", "Action": "allow"}]}]}"#,
    )
    .unwrap();
    let (_proxy, f) = spawn(
        &[
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
        ],
        "proxy running",
    );
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
