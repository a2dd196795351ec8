//! `tribune demo` as a newcomer runs it: the commands it prints give the statuses
//! their comments promise, the UI and the agent answer, Ctrl-C stops it within 5 s,
//! and a port in use is named with its flag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{request, Proc, BIN};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FREE: &[&str] = &[
    "demo",
    "-http-port",
    "0",
    "-issuer-port",
    "0",
    "-upstream-port",
    "0",
    "-edge-port",
    "0",
];

/// `http://127.0.0.1:N/...   (note)` -> `127.0.0.1:N`.
fn host_port(v: &str) -> String {
    v.trim_start_matches("http://")
        .split(['/', ' '])
        .next()
        .unwrap()
        .to_string()
}

/// The printed `# NNN: ...` comments with the command under each.
fn examples(banner: &str) -> Vec<(u16, String)> {
    let lines: Vec<&str> = banner.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix("# ") else {
            continue;
        };
        let Some(code) = rest.split(':').next().and_then(|c| c.parse().ok()) else {
            continue;
        };
        out.push((code, lines[i + 1].to_string()));
    }
    out
}

/// Starts the demo and reads its banner (up to the explain command, printed last).
fn start_demo(tmp: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(FREE)
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc::new(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("-explain") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (proc, banner)
}

/// The value printed after `label:` in the banner.
fn shown<'a>(banner: &'a str, label: &str) -> &'a str {
    banner
        .lines()
        .find_map(|l| l.trim().strip_prefix(label)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {label} in {banner}"))
        .trim()
}

#[test]
fn demo_prints_commands_that_do_what_they_say_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut proc, banner) = start_demo(tmp.path());
    let agent = host_port(shown(&banner, "Web UI"));
    let issuer = host_port(shown(&banner, "Token issuer"));
    assert_eq!(host_port(shown(&banner, "Agent API")), agent);

    // The UI and the agent's API answer.
    let (status, body) = request(&agent, "GET", "/ui/", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("Tribune"));
    let (status, body) = request(&agent, "GET", "/v1/config/service-intentions", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("\"Name\":\"api\"") && body.contains("\"Name\":\"*\""));
    // The seed's provider points at the demo issuer, whose discovery matches it.
    let (_, provider) = request(&agent, "GET", "/v1/config/jwt-provider/okta", &[], "");
    assert!(provider.contains(&format!("http://{issuer}")), "{provider}");
    let (_, disc) = request(&issuer, "GET", "/.well-known/openid-configuration", &[], "");
    assert!(
        disc.contains(&format!("\"issuer\":\"http://{issuer}\"")),
        "{disc}"
    );
    let (status, _) = request(&issuer, "GET", "/token?user=mallory", &[], "");
    assert_eq!(status, 404);

    // Every printed curl command gives the status its comment says, run as printed
    // (by bash, with curl reporting the status).
    let cases = examples(&banner);
    assert_eq!(
        cases.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [200, 401, 403, 403, 403],
        "{banner}"
    );
    for (want, cmd) in &cases {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{cmd} -o /dev/null -w '%{{http_code}}'"))
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(got.trim(), want.to_string(), "{cmd}");
    }
    // The 200 reaches api with alice's verified claims forwarded.
    let alice = Command::new("bash")
        .arg("-c")
        .arg(&cases[0].1)
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&alice.stdout);
    assert!(
        body.contains("\"service\":\"api\"") && body.contains("\"user\":\"alice\""),
        "{body}"
    );

    // The explain command printed last says why /admin is denied.
    let explain = banner
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("tribune intention check"))
        .unwrap()
        .replacen("tribune", BIN, 1);
    let out = Command::new("bash")
        .arg("-c")
        .arg(&explain)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Denied: intention web -> api") && text.contains("HTTP 403"),
        "{text}"
    );

    // Ctrl-C (SIGINT) stops everything within 5 s, exit code 0.
    let sent = Instant::now();
    assert!(Command::new("kill")
        .args(["-INT", &proc.pid().to_string()])
        .status()
        .unwrap()
        .success());
    let code = proc.wait_within(Duration::from_secs(5));
    assert_eq!(code, Some(0), "after {:?}", sent.elapsed());
}

#[test]
fn a_port_in_use_is_named_with_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for flag in ["-http-port", "-issuer-port", "-upstream-port", "-edge-port"] {
        let mut args: Vec<&str> = FREE.to_vec();
        let i = args.iter().position(|a| *a == flag).unwrap();
        args[i + 1] = &port;
        let out = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {err}");
        assert!(
            err.contains(&format!(
                "==> Error: port {port} ({flag}) can't be used on 127.0.0.1"
            )),
            "{flag}: {err}"
        );
    }
}
