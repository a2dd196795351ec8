//! The deployment files (issue #41): the systemd units pass `systemd-analyze verify`
//! and their command lines run the real binary; the Kubernetes manifests validate
//! against the Kubernetes schemas (`kubernetes-validate`, from PyPI, strict).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(repo().join("deploy/systemd").join(name)).unwrap()
}

/// The unit's `ExecStart=` command line.
fn exec_start(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart")
        .to_string()
}

#[test]
fn systemd_units_verify_and_their_command_lines_run() {
    let dir = tempfile::tempdir().unwrap();
    // Verified with the binary where the units expect it.
    let units = dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    for name in [
        "tribune-agent.service",
        "tribune-sidecar@.service",
        "tribune-snapshot.service",
        "tribune-snapshot.timer",
    ] {
        std::fs::write(
            units.join(name),
            unit(name).replace("/usr/local/bin/tribune", BIN),
        )
        .unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(
            [
                "tribune-agent.service",
                "tribune-sidecar@web.service",
                "tribune-snapshot.service",
                "tribune-snapshot.timer",
            ]
            .map(|u| units.join(u)),
        )
        .output()
        .expect("systemd-analyze (Debian: apt-get install systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "warnings: {err}");

    // The agent's command line, with the unit's directories moved into the temp dir.
    let config_dir = dir.path().join("agent.d");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(config_dir.join("ports.hcl"), "ports { http = 0 }\n").unwrap();
    let data_dir = dir.path().join("state");
    let line = exec_start(&unit("tribune-agent.service"))
        .replace("/etc/tribune/agent.d", config_dir.to_str().unwrap())
        .replace("/var/lib/tribune", data_dir.to_str().unwrap());
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    let (mut agent, f) = spawn(&args, "agent running");
    let addr = field(&f, "HTTP addr").to_string();
    let web = dir.path().join("web.hcl");
    std::fs::write(
        &web,
        "service {\n  name = \"web\"\n  port = 9\n  connect { sidecar_service { port = 0 } }\n}\n",
    )
    .unwrap();
    cli(&addr, &["services", "register", web.to_str().unwrap()]);

    // The sidecar's, for instance `web`: its token is the credential `token` (%d).
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("token"), "anonymous\n").unwrap();
    let sidecar_state = dir.path().join("sidecar");
    let line = exec_start(&unit("tribune-sidecar@.service"))
        .replace("%d", creds.to_str().unwrap())
        .replace(
            "/var/lib/tribune-sidecar/%i",
            sidecar_state.to_str().unwrap(),
        )
        .replace("%i", "web");
    let mut args: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    args.extend(["-http-addr".to_string(), addr.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut sidecar, f) = spawn(&args, "proxy running");
    assert!(
        f.iter().any(|(k, v)| k == "Policy" && v.contains("(live)")),
        "{f:?}"
    );
    assert!(sidecar_state.is_dir(), "the sidecar keeps its state there");
    sidecar.kill();

    // The snapshot unit's shell line, with systemd's variables set as it sets them.
    let line = exec_start(&unit("tribune-snapshot.service"));
    let script = line
        .strip_prefix("/bin/sh -c '")
        .and_then(|s| s.strip_suffix('\''))
        .expect("a /bin/sh -c line")
        .replace("%%", "%")
        .replace("$$", "$")
        .replace("/usr/local/bin/tribune", BIN);
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env("STATE_DIRECTORY", &backups)
        .env("CONSUL_HTTP_ADDR", &addr)
        .env_remove("TRIBUNE_HTTP_ADDR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: Vec<_> = std::fs::read_dir(&backups).unwrap().collect();
    assert_eq!(saved.len(), 1, "one archive, named by the date");
    agent.kill();
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let manifests: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(manifests.len() >= 2);
    // 1.30: the oldest release whose schema has native sidecars (restartPolicy on an
    // init container) enabled by default.
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", "1.30.0"])
        .args(&manifests)
        .output()
        .expect("kubernetes-validate (pip install kubernetes-validate)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
