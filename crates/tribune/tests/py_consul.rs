//! py-consul, the Python client Consul users' scripts import, against the real
//! agent binary with ACLs on: `interop/py_consul_client.py` bootstraps, registers
//! services, and walks the agent, status, catalog, health and ACL calls, checking
//! each answer's shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn py_consul_walks_the_agent_catalog_health_and_acl_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("acl.hcl");
    std::fs::write(
        &config,
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n}\n",
    )
    .unwrap();
    let (_agent, f) = spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-config-file",
            config.to_str().unwrap(),
        ],
        "agent running",
    );
    let agent = field(&f, "HTTP addr").to_string();
    let (host, port) = agent.rsplit_once(':').unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/py_consul_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args([host, port])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("PASS"),
        "py-consul failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
