//! `tribune-sidecar`: `tribune connect proxy` alone. `tribune connect proxy` hands
//! over to it (the same process) when it sits beside `tribune`, and runs the proxy
//! itself when it does not; both take the same flags.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

mod common;
use common::*;

const SIDECAR: &str = env!("CARGO_BIN_EXE_tribune-sidecar");

/// The binary a process runs.
fn exe_of(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// The `-flag` names a help text lists.
fn flags_in(help: &str) -> Vec<String> {
    let mut flags: Vec<String> = help
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix('-').map(|f| {
                f.split([' ', ',', '=', '<'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .filter(|f| !f.is_empty())
        .collect();
    flags.sort();
    flags
}

#[test]
fn connect_proxy_hands_over_to_the_sidecar_binary_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, OPEN_API_SNAPSHOT).unwrap();
    let app = upstream();
    let (proxy, f) = proxy_from_snapshot(&snapshot, app);
    assert_eq!(
        exe_of(proxy.pid()).file_name().unwrap(),
        "tribune-sidecar",
        "the same process now runs the sidecar binary"
    );
    assert_eq!(
        get(field(&f, "Edge listener"), "/hello"),
        (200, "hello from api".into())
    );
}

#[test]
fn connect_proxy_runs_in_process_without_the_sidecar_binary_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("tribune");
    std::fs::copy(BIN, &alone).unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, OPEN_API_SNAPSHOT).unwrap();
    let app = upstream();
    let (proxy, f) = proxy_from_snapshot_by(alone.to_str().unwrap(), &snapshot, app);
    assert_eq!(exe_of(proxy.pid()), alone);
    assert_eq!(
        get(field(&f, "Edge listener"), "/hello"),
        (200, "hello from api".into())
    );
}

#[test]
fn the_sidecar_binary_takes_the_flags_of_connect_proxy() {
    let help = |binary: &str, args: &[&str]| {
        let out = Command::new(binary).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{binary} {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let proxy = flags_in(&help(BIN, &["connect", "proxy", "-h"]));
    let sidecar = flags_in(&help(SIDECAR, &["-h"]));
    assert!(proxy.contains(&"sidecar-for".to_string()), "{proxy:?}");
    let without_version: Vec<&String> = sidecar.iter().filter(|f| *f != "V").collect();
    assert_eq!(without_version, proxy.iter().collect::<Vec<_>>());
    // A bad flag value is refused the same way, naming the flag.
    let out = Command::new(SIDECAR)
        .args(["-workers", "0", "-config", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-workers"));
}
