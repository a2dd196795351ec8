//! `connect authz` in TLS (issue #44): with `-tls-client-ca` only a proxy presenting
//! a certificate of that CA gets an answer; the others fail the handshake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::json;
use std::process::Command;

#[test]
fn only_a_proxy_with_a_client_certificate_of_the_ca_may_ask() {
    let (_agent, addr) = dev_agent(&[]);
    for body in [
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/public/"}}]}]}),
    ] {
        let (status, text) = request(&addr, "PUT", "/v1/config", &[], &body.to_string());
        assert_eq!(status, 200, "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = tribune_test_support::pki::Pki::generate(dir.path(), "localhost");
    let listen = format!("127.0.0.1:{}", free_port());
    let (_authz, f) = spawn(
        &[
            "connect",
            "authz",
            "-service",
            "api",
            "-http-listener",
            &listen,
            "-tls-cert",
            pki.server_cert.to_str().unwrap(),
            "-tls-key",
            pki.server_key.to_str().unwrap(),
            "-tls-client-ca",
            pki.ca.to_str().unwrap(),
            "-http-addr",
            &addr,
        ],
        "authz running!",
    );
    assert!(field(&f, "HTTP listener").contains("(https:"), "{f:?}");
    let curl = |uri: &str, client_cert: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&pki.ca)
            .args(["-H", "X-Forwarded-Method: GET", "-H"])
            .arg(format!("X-Forwarded-Uri: {uri}"));
        if client_cert {
            cmd.arg("--cert")
                .arg(&pki.client_cert)
                .arg("--key")
                .arg(&pki.client_key);
        }
        cmd.arg(format!("https://{listen}/forward-auth"));
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let mut got = (None, String::new());
    for _ in 0..50 {
        got = curl("/public/doc", true);
        if got.1 == "200" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got.1, "200", "{got:?}");
    assert_eq!(curl("/private", true).1, "403");
    let (code, status) = curl("/public/doc", false);
    assert_ne!(code, Some(0), "no client certificate: no answer ({status})");
    assert_eq!(status, "000");
}
