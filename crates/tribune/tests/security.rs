//! The binary's part of the security suite (`cargo test --test security` runs every
//! crate's): attacks on the commands themselves, through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::BIN;
use std::process::Command;

/// Attack: `tribune config validate` on 3 000 nested objects aborted with signal 6
/// (stack overflow). It now fails with exit code 1 and names the limit, in HCL and
/// in JSON.
#[test]
fn config_validate_refuses_deep_input_without_aborting() {
    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("deep.hcl");
    std::fs::write(
        &hcl,
        format!(
            "Kind = \"service-defaults\"\nName = \"api\"\nMeta {}x = 1{}",
            "{ a ".repeat(3_000),
            "}".repeat(3_001)
        ),
    )
    .unwrap();
    let json = dir.path().join("deep.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"Kind":"service-defaults","Name":"api","Meta":{}1{}}}"#,
            "[".repeat(3_000),
            "]".repeat(3_000)
        ),
    )
    .unwrap();
    for file in [&hcl, &json] {
        let out = Command::new(BIN)
            .args(["config", "validate"])
            .arg(file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
        assert!(
            stderr.contains("nesting deeper than 64 levels (the limit)"),
            "{stderr}"
        );
    }
}

/// Attack (availability): SIGTERM with sidecars connected left the agent running
/// until the last blocking query ended (61 s with one proxy). Pending blocking
/// queries now answer at once and the agent exits within 5 s.
#[test]
fn agent_shutdown_answers_blocking_queries_and_exits_promptly() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::{Duration, Instant};
    let mut child = Command::new(BIN)
        .args(["agent", "-dev", "-http-port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.trim().strip_prefix("HTTP addr: ") {
            addr = a.to_string();
        }
        if line.contains("agent running") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    // Two blocking queries that would wait a minute.
    let mut held = Vec::new();
    for path in [
        "/v1/config/service-intentions?index=1&wait=60s",
        "/v1/connect/ca/roots?index=999&wait=60s",
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").unwrap();
        held.push(s);
    }
    // An idle keep-alive connection too.
    held.push(std::net::TcpStream::connect(&addr).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "agent still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // The blocking queries were answered, not cut.
    let mut answer = String::new();
    held[0]
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = held[0].read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Attack (DoS): 1 100 silent connections under a 1 024 file limit locked every new
/// client out. Here the real proxy runs under a limit of 64 files and is sent 100
/// silent connections; out of descriptors, it sheds the longest-idle connections, so
/// a real request is still served.
#[test]
fn a_proxy_out_of_file_descriptors_still_serves_new_callers() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(
        &snapshot,
        r#"{"Service":"api","Protocol":"http","DefaultIntentionPolicy":"deny","Entries":[
            {"Kind":"service-intentions","Name":"api","Sources":[{"Name":"*","Action":"allow"}]}]}"#,
    )
    .unwrap();
    let upstream = common::upstream();
    let script = format!(
        "ulimit -n 64 && exec {BIN} connect proxy -config {} -local-service-address {upstream} -edge-listener 127.0.0.1:0 -admin-bind 127.0.0.1:0 -workers 1",
        snapshot.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = common::Proc::new(child);
    let stdout = child.stdout().unwrap();
    let mut edge = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(a) = line.trim().strip_prefix("Edge listener: ") {
            edge = a.to_string();
        }
        if line.contains("proxy running") {
            break;
        }
    }
    assert!(!edge.is_empty());
    let silent: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(&edge).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, body) = common::get(&edge, "/anything");
    assert_eq!((status, body.as_str()), (200, "hello from api"));
    drop(silent);
}
