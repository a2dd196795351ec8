//! Helpers for tests that drive the real binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tribune");

pub struct Proc(Child, Option<tempfile::TempDir>);

impl Proc {
    pub fn new(child: Child) -> Proc {
        Proc(child, None)
    }

    /// The child's stdout, once.
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.0.stdout.take()
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits for the exit code; `None` if the process still runs after `within`.
    pub fn wait_within(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL now (no clean shutdown).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and collects `key: value` lines until `ready` appears.
/// Each process gets its own temp dir (a sidecar's default state dir lives there), so
/// tests never share saved state unless they pass `-state-dir`.
pub fn spawn(args: &[&str], ready: &str) -> (Proc, Vec<(String, String)>) {
    spawn_binary(BIN, args, ready)
}

/// [`spawn`] for the binary at `binary`.
pub fn spawn_binary(binary: &str, args: &[&str], ready: &str) -> (Proc, Vec<(String, String)>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args(args)
        .env("TMPDIR", tmp.path())
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
    (Proc(child, Some(tmp)), fields)
}

/// `tribune agent -dev -http-port 0` with `extra` flags: the agent and its HTTP address.
pub fn dev_agent(extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["agent", "-dev", "-http-port", "0"];
    args.extend_from_slice(extra);
    let (agent, f) = spawn(&args, "agent running");
    let addr = field(&f, "HTTP addr").to_string();
    (agent, addr)
}

pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    &fields.iter().find(|(k, _)| k == key).expect(key).1
}

/// A local service: answers every request with 200 "hello from api".
pub fn upstream() -> std::net::SocketAddr {
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

pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A proxy with no policy yet closes connections at once (fail closed): the write
    // can then fail with a broken pipe, which is "no answer" (status 0), not an error.
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .is_err()
    {
        return (0, String::new());
    }
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

pub fn cli(agent: &str, args: &[&str]) {
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

pub fn eventually(addr: &str, want: u16) -> Duration {
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

/// One HTTP/1.1 request on a new connection: (status, body); status 0 when no
/// response came back.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or(("", ""));
    // Undo chunked transfer coding if the server used it.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// The body of a chunked HTTP/1.1 answer.
pub fn dechunk(mut rest: &str) -> String {
    let mut joined = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        joined.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    joined
}

/// Runs the CLI and returns (exit code, stdout, stderr).
pub fn run_cli(agent: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("TRIBUNE_HTTP_ADDR", agent)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `f` returns true, or panics after `within`.
pub fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// A snapshot document (`connect proxy -config`) letting every caller use `api`.
pub const OPEN_API_SNAPSHOT: &str = r#"{"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny",
    "Entries": [{"Kind": "service-intentions", "Name": "api",
                 "Sources": [{"Name": "*", "Action": "allow"}]}]}"#;

/// The sidecar binary enforcing the snapshot file `snapshot` (no agent) in front of
/// `service`, edge and admin listeners on port 0.
pub fn proxy_from_snapshot(
    snapshot: &std::path::Path,
    service: std::net::SocketAddr,
) -> (Proc, Vec<(String, String)>) {
    proxy_from_snapshot_by(BIN, snapshot, service)
}

/// [`proxy_from_snapshot`] run by the binary at `binary`.
pub fn proxy_from_snapshot_by(
    binary: &str,
    snapshot: &std::path::Path,
    service: std::net::SocketAddr,
) -> (Proc, Vec<(String, String)>) {
    spawn_binary(
        binary,
        &[
            "connect",
            "proxy",
            "-config",
            snapshot.to_str().unwrap(),
            "-local-service-address",
            &service.to_string(),
            "-edge-listener",
            "127.0.0.1:0",
            "-admin-bind",
            "127.0.0.1:0",
        ],
        "proxy running",
    )
}

/// Every table's records as (key, value) pairs: what must survive a restore
/// (indexes are the store's own).
pub fn snapshot_contents(archive: &serde_json::Value) -> Vec<(String, Vec<(String, String)>)> {
    archive["Tables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let records = t["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["Key"].as_str().unwrap().to_string(),
                        r["Value"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (name.clone(), records)
        })
        .filter(|(_, r): &(String, Vec<_>)| !r.is_empty())
        .collect()
}

/// A JSON file.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
