//! Process-level: the real binary with `-data-dir`; acknowledged writes survive
//! `kill -9` with their indexes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["agent", "-data-dir"])
        .arg(dir)
        .args(["-http-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.trim().strip_prefix("HTTP addr:") {
            addr = Some(a.trim().to_string());
        }
        if line.contains("agent running") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, addr.expect("agent printed its address"))
}

fn cli(addr: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("TRIBUNE_HTTP_ADDR", addr)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, addr) = start(dir.path());
    let mut written = Vec::new();
    for i in 0..20 {
        let f = dir.path().join(format!("p{i}.json"));
        std::fs::write(
            &f,
            format!(r#"{{"Kind":"jwt-provider","Name":"p{i}","Issuer":"iss-{i}","JSONWebKeySet":{{"Local":{{"Filename":"/k{i}"}}}}}}"#),
        )
        .unwrap();
        let (code, out, err) = cli(&addr, &["config", "write", f.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("Config entry written: jwt-provider/p{i}\n"));
        let (_, json, _) = cli(
            &addr,
            &[
                "config",
                "read",
                "-kind",
                "jwt-provider",
                "-name",
                &format!("p{i}"),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        written.push((format!("p{i}"), v["ModifyIndex"].as_u64().unwrap()));
    }
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();

    let (mut agent, addr) = start(dir.path());
    for (name, index) in &written {
        let (code, json, err) = cli(
            &addr,
            &["config", "read", "-kind", "jwt-provider", "-name", name],
        );
        assert_eq!(code, 0, "{name} lost after kill -9: {err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["ModifyIndex"].as_u64(), Some(*index), "{name}");
    }
    // The index sequence continues after the restart.
    let f = dir.path().join("after.json");
    std::fs::write(
        &f,
        r#"{"Kind":"jwt-provider","Name":"after","JSONWebKeySet":{"Local":{"Filename":"/k"}}}"#,
    )
    .unwrap();
    assert_eq!(cli(&addr, &["config", "write", f.to_str().unwrap()]).0, 0);
    let (_, json, _) = cli(
        &addr,
        &["config", "read", "-kind", "jwt-provider", "-name", "after"],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["CreateIndex"].as_u64(),
        Some(written.last().unwrap().1 + 1)
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
}
