//! Snapshots (issue #41): `tribune snapshot save|restore|inspect` against real agents.
//! A snapshot taken while writes go on restores into a fresh agent whole; a damaged
//! archive is refused with nothing changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const ROOT: &str = "root-secret-snapshot";

fn acl_agent(dir: &std::path::Path) -> (Proc, String) {
    let config = dir.join("acl.hcl");
    std::fs::write(
        &config,
        format!("acl {{\n  enabled = true\n  default_policy = \"deny\"\n  tokens {{ initial_management = \"{ROOT}\" }}\n}}\n"),
    )
    .unwrap();
    dev_agent(&["-config-file", config.to_str().unwrap()])
}

/// The CLI with the management token: (exit code, stdout, stderr).
fn snapshot(agent: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("snapshot")
        .args(args)
        .env("TRIBUNE_HTTP_ADDR", agent)
        .env("TRIBUNE_HTTP_TOKEN", ROOT)
        .env_remove("CONSUL_HTTP_SSL")
        .env_remove("TRIBUNE_HTTP_SSL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn api(agent: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    request(agent, method, path, &[("x-consul-token", ROOT)], body)
}

#[test]
fn a_snapshot_taken_under_writes_restores_into_a_fresh_agent_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, a_addr) = acl_agent(dir.path());

    // State of every kind: a policy and a token, config entries, a registration, the
    // CA root (made at start).
    let (s, _) = api(
        &a_addr,
        "PUT",
        "/v1/acl/policy",
        r#"{"Name":"web-write","Rules":"service \"web\" { policy = \"write\" }"}"#,
    );
    assert_eq!(s, 200);
    let (s, token) = api(
        &a_addr,
        "PUT",
        "/v1/acl/token",
        r#"{"Description":"web","Policies":[{"Name":"web-write"}]}"#,
    );
    assert_eq!(s, 200, "{token}");
    let token: Value = serde_json::from_str(&token).unwrap();
    let web_secret = token["SecretID"].as_str().unwrap().to_string();
    for name in ["api", "web", "billing"] {
        let (s, b) = api(
            &a_addr,
            "PUT",
            "/v1/config",
            &format!(r#"{{"Kind":"service-defaults","Name":"{name}","Protocol":"http"}}"#),
        );
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = api(
        &a_addr,
        "PUT",
        "/v1/agent/service/register",
        r#"{"Name":"web","Port":8080,"Connect":{"SidecarService":{}}}"#,
    );
    assert_eq!(s, 200, "{b}");
    let (_, roots_a) = api(&a_addr, "GET", "/v1/connect/ca/roots", "");

    // A token without management may not take one.
    let (s, b) = request(
        &a_addr,
        "GET",
        "/v1/snapshot",
        &[("x-consul-token", web_secret.as_str())],
        "",
    );
    assert_eq!(s, 403, "{b}");
    assert!(b.contains("lacks permission 'management'"), "{b}");

    // Save while a writer changes config entries (bounded: 300 writes).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let addr = a_addr.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while n < 300 && !stop.load(Ordering::Relaxed) {
                let protocol = if n % 2 == 0 { "http" } else { "tcp" };
                let body = format!(
                    r#"{{"Kind":"service-defaults","Name":"load-{}","Protocol":"{protocol}"}}"#,
                    n % 20
                );
                api(&addr, "PUT", "/v1/config", &body);
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let file = dir.path().join("backup.snap");
    let (code, out, err) = snapshot(&a_addr, &["save", file.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let index: u64 = out
        .trim()
        .strip_prefix("Saved and verified snapshot to index ")
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(writes > 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the archive holds every secret");
    }
    // One point in time: nothing in it is newer than its index, and each table's
    // index is its newest record's (nothing was deleted).
    let saved = read_json(&file);
    assert_eq!(saved["Index"], index);
    for (name, t) in saved["Tables"].as_object().unwrap() {
        let newest = t["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ModifyIndex"].as_u64().unwrap())
            .max()
            .unwrap_or(0);
        let table_index = t["Index"].as_u64().unwrap();
        assert!(table_index <= index, "{name}");
        assert_eq!(newest, table_index, "{name}");
    }

    // inspect names what is inside.
    let (code, out, err) = snapshot(&a_addr, &["inspect", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!(" Index         {index}\n")), "{out}");
    assert!(out.contains(" Format        tribune-snapshot 1\n"), "{out}");
    assert!(out.contains(" Store format  1\n"), "{out}");
    assert!(out.contains(" Checksum      sha256:"), "{out}");
    let tokens_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("acl-tokens "))
        .unwrap_or_else(|| panic!("{out}"));
    let counted: usize = tokens_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        counted,
        saved["Tables"]["acl-tokens"]["Records"]
            .as_array()
            .unwrap()
            .len()
    );

    // Restore into a fresh agent (its own CA root and management token until then).
    let dir_b = tempfile::tempdir().unwrap();
    let (mut b, b_addr) = acl_agent(dir_b.path());
    let (_, roots_b_before) = api(&b_addr, "GET", "/v1/connect/ca/roots", "");
    assert_ne!(roots_b_before, roots_a);
    let (code, out, err) = snapshot(&b_addr, &["restore", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("Restored snapshot of index {index} (")),
        "{out}"
    );
    let again = dir_b.path().join("after.snap");
    let (code, _, err) = snapshot(&b_addr, &["save", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        snapshot_contents(&read_json(&again)),
        snapshot_contents(&saved)
    );
    // Through the API: the same CA root, the token, the entries, the registration.
    let (_, roots_b) = api(&b_addr, "GET", "/v1/connect/ca/roots", "");
    let active = |r: &str| serde_json::from_str::<Value>(r).unwrap()["ActiveRootID"].clone();
    assert_eq!(active(&roots_b), active(&roots_a));
    let (s, b_self) = request(
        &b_addr,
        "GET",
        "/v1/acl/token/self",
        &[("x-consul-token", web_secret.as_str())],
        "",
    );
    assert_eq!(s, 200, "{b_self}");
    let (s, _) = api(&b_addr, "GET", "/v1/config/service-defaults/billing", "");
    assert_eq!(s, 200);
    let (_, services) = api(&b_addr, "GET", "/v1/agent/services", "");
    assert!(services.contains("\"web\""), "{services}");

    // A damaged archive is refused and changes nothing: truncated, then altered.
    let bytes = std::fs::read(&file).unwrap();
    let truncated = dir.path().join("truncated.snap");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (code, _, err) = snapshot(&b_addr, &["restore", truncated.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a Tribune snapshot"), "{err}");
    let text = String::from_utf8(bytes).unwrap();
    let at = text.find("\"Value\":\"").unwrap() + "\"Value\":\"".len();
    let mut altered = text.clone().into_bytes();
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let altered_file = dir.path().join("altered.snap");
    std::fs::write(&altered_file, &altered).unwrap();
    let (code, _, err) = snapshot(&b_addr, &["restore", altered_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("checksum mismatch"), "{err}");
    // The agent checks too (a client that skips the CLI's check).
    let (s, body) = api(&b_addr, "PUT", "/v1/snapshot", &altered);
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("checksum mismatch"), "{body}");
    let unchanged = dir_b.path().join("unchanged.snap");
    let (code, _, err) = snapshot(&b_addr, &["save", unchanged.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        snapshot_contents(&read_json(&unchanged)),
        snapshot_contents(&saved)
    );
    a.kill();
    b.kill();
}

/// A restore is authorized from its head: a caller without a management token is
/// refused at once, before the agent reads (and holds) a body of up to 512 MiB.
#[test]
fn a_restore_without_a_management_token_is_refused_before_its_body_is_read() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, addr) = acl_agent(dir.path());
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // The head announces 500 MB; no byte of it follows.
    write!(
        s,
        "PUT /v1/snapshot HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 500000000\r\n\r\n"
    )
    .unwrap();
    let mut answer = [0u8; 64];
    let n = s.read(&mut answer).expect("an answer without the body");
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    agent.kill();
}
