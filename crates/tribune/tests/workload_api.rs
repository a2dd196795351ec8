//! The SPIFFE Workload API on a sidecar's Unix socket (issue #45), driven by py-spiffe
//! (the standard Python client): X.509 and JWT SVIDs, bundles, validation, the
//! security header, only the sidecar's own identity, the socket's mode, and the
//! X.509-SVID streamed again after a CA rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn a_standard_spiffe_client_gets_this_services_identities_from_the_socket() {
    let (_agent, addr) = dev_agent(&[]);
    let (status, body) = request(
        &addr,
        "PUT",
        "/v1/agent/service/register",
        &[],
        r#"{"Name": "web", "Port": 8080, "Connect": {"SidecarService": {}}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("workload.sock");
    let (_sidecar, f) = spawn(
        &[
            "connect",
            "proxy",
            "-sidecar-for",
            "web",
            "-http-addr",
            &addr,
            "-admin-bind",
            "127.0.0.1:0",
            "-state-dir",
            dir.path().to_str().unwrap(),
            "-workload-api-socket",
            socket.to_str().unwrap(),
        ],
        "proxy running!",
    );
    assert!(field(&f, "Workload API").ends_with("(mode 600)"), "{f:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Another user cannot connect (mode 0600; the tests run as root, so the
        // check is made as `nobody`).
        let denied = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "python3",
                "-c",
            ])
            .arg(format!(
                "import socket; s = socket.socket(socket.AF_UNIX); s.connect({:?})",
                socket.to_str().unwrap()
            ))
            .output()
            .unwrap();
        assert!(!denied.status.success(), "nobody connected");
        assert!(
            String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&denied.stderr)
        );
    }
    let (_, roots) = get(&addr, "/v1/connect/ca/roots");
    let td: serde_json::Value = serde_json::from_str(&roots).unwrap();
    let want = format!(
        "spiffe://{}/ns/default/dc/dc1/svc/web",
        td["TrustDomain"].as_str().unwrap()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/spiffe_client.py");
    let mut py = Command::new("python3")
        .arg(script)
        .args([socket.to_str().unwrap(), &want])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.trim() == "waiting" {
            let (status, body) = request(&addr, "PUT", "/v1/connect/ca/rotate", &[], "");
            assert_eq!(status, 200, "{body}");
            py.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        }
    }
    let status = py.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut py.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success() && seen.trim_end().ends_with("PASS"),
        "py-spiffe failed:\n{seen}\n{err}"
    );
}
