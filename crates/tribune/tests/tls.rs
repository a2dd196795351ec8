//! TLS to the agent (issue #41): the HTTPS listener with Consul's `tls` block, client
//! certificates required with `verify_incoming`, and the CLI and the sidecar following
//! `https://` addresses with Consul's flags and variables. The PKI is made in the
//! test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;
use tribune_test_support::pki::Pki;

/// Variables a developer's shell may hold that would change what a test runs.
const AGENT_VARS: &[&str] = &[
    "TRIBUNE_HTTP_ADDR",
    "CONSUL_HTTP_ADDR",
    "TRIBUNE_HTTP_SSL",
    "CONSUL_HTTP_SSL",
    "TRIBUNE_CACERT",
    "CONSUL_CACERT",
    "TRIBUNE_CAPATH",
    "CONSUL_CAPATH",
    "TRIBUNE_CLIENT_CERT",
    "CONSUL_CLIENT_CERT",
    "TRIBUNE_CLIENT_KEY",
    "CONSUL_CLIENT_KEY",
    "TRIBUNE_TLS_SERVER_NAME",
    "CONSUL_TLS_SERVER_NAME",
    "TRIBUNE_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN",
];

/// Runs the CLI with `env` only (of the agent variables): (exit code, stdout, stderr).
fn tribune(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for v in AGENT_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// An agent serving HTTPS only (`ports { http = -1 }`) with the PKI's server
/// certificate; `verify_incoming` as asked. Returns it and its HTTPS address.
fn https_agent(dir: &std::path::Path, pki: &Pki, verify_incoming: bool) -> (Proc, String) {
    let config = dir.join("tls.hcl");
    std::fs::write(
        &config,
        format!(
            "ports {{ http = -1 }}\ntls {{\n  defaults {{\n    ca_file = \"{}\"\n    cert_file = \"{}\"\n    key_file = \"{}\"\n    verify_incoming = {verify_incoming}\n  }}\n}}\n",
            path(&pki.ca),
            path(&pki.server_cert),
            path(&pki.server_key)
        ),
    )
    .unwrap();
    let (agent, f) = spawn(
        &[
            "agent",
            "-dev",
            "-https-port",
            "0",
            "-config-file",
            path(&config),
        ],
        "agent running",
    );
    assert_eq!(field(&f, "HTTP addr"), "off");
    let https = field(&f, "HTTPS addr");
    assert_eq!(
        https.ends_with("(client certificates required)"),
        verify_incoming,
        "{https}"
    );
    let addr = https.split(' ').next().unwrap().to_string();
    (agent, addr)
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// The CLI (with flags, and with Consul's variables) and a sidecar (`-sidecar-for`
/// over `https://`) work against an agent that requires client certificates.
#[test]
fn the_cli_and_a_sidecar_reach_an_https_agent_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "tribune-agent");
    let (mut agent, addr) = https_agent(dir.path(), &pki, true);
    let url = format!("https://{addr}");
    let tls_flags = [
        "-ca-file",
        path(&pki.ca),
        "-client-cert",
        path(&pki.client_cert),
        "-client-key",
        path(&pki.client_key),
    ];

    // Flags: register api with a sidecar.
    let api = write(
        dir.path(),
        "api.hcl",
        "service {\n  name = \"api\"\n  port = 9\n  connect { sidecar_service { port = 0 } }\n}\n",
    );
    let mut args = vec!["services", "register", "-http-addr", &url];
    args.extend(tls_flags);
    args.push(&api);
    let (code, out, err) = tribune(&args, &[]);
    assert_eq!(code, 0, "{out}{err}");

    // Consul's variables, the address without a scheme and CONSUL_HTTP_SSL.
    let defaults = write(
        dir.path(),
        "defaults.hcl",
        "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n",
    );
    let env = [
        ("CONSUL_HTTP_ADDR", addr.as_str()),
        ("CONSUL_HTTP_SSL", "true"),
        ("CONSUL_CACERT", path(&pki.ca)),
        ("CONSUL_CLIENT_CERT", path(&pki.client_cert)),
        ("CONSUL_CLIENT_KEY", path(&pki.client_key)),
    ];
    let (code, out, err) = tribune(&["config", "write", &defaults], &env);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = tribune(
        &[
            "config",
            "read",
            "-kind",
            "service-defaults",
            "-name",
            "api",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"Protocol\": \"http\""), "{out}");

    // The sidecar finds its registration and policy over HTTPS.
    let mut args = vec![
        "connect",
        "proxy",
        "-sidecar-for",
        "api",
        "-http-addr",
        &url,
        "-admin-bind",
        "127.0.0.1:0",
    ];
    args.extend(tls_flags);
    let (mut sidecar, f) = spawn(&args, "proxy running");
    assert!(
        sidecar.wait_within(Duration::from_millis(300)).is_none(),
        "the sidecar exited: {f:?}"
    );
    assert!(
        f.iter().any(|(k, v)| k == "Policy" && v.contains("agent")),
        "{f:?}"
    );
    sidecar.kill();
    agent.kill();
}

/// With `verify_incoming`, a client without a certificate of the CA is refused at
/// the handshake; a client verifies the agent's certificate and name.
#[test]
fn an_https_agent_refuses_clients_without_a_valid_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "tribune-agent");
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::generate(other_dir.path(), "tribune-agent");
    let (mut agent, addr) = https_agent(dir.path(), &pki, true);
    let url = format!("https://{addr}");
    let members = |extra: &[&str]| {
        let mut args = vec![
            "config",
            "list",
            "-kind",
            "service-defaults",
            "-http-addr",
            &url,
        ];
        args.extend(extra);
        tribune(&args, &[])
    };
    // (CA the agent is checked against, client certificate's PKI, extra flags).
    let with = |ca: &Pki, client: &Pki, extra: &[&str]| {
        let mut args = vec![
            "-ca-file",
            path(&ca.ca),
            "-client-cert",
            path(&client.client_cert),
            "-client-key",
            path(&client.client_key),
        ];
        args.extend(extra);
        members(&args)
    };
    let ok = with(&pki, &pki, &[]);
    assert_eq!(ok.0, 0, "{ok:?}");

    // No client certificate.
    let (code, _, err) = members(&["-ca-file", path(&pki.ca)]);
    assert_ne!(code, 0);
    assert!(err.contains("CertificateRequired"), "{err}");
    assert!(err.contains("pass -client-cert and -client-key"), "{err}");
    // A client certificate of another CA.
    let (code, _, err) = with(&pki, &other, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("received fatal alert"), "{err}");
    // The agent's certificate from a CA the client does not trust.
    let (code, _, err) = with(&other, &pki, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("pass its CA with -ca-file"), "{err}");
    // A name the agent's certificate does not carry, then one it does.
    let (code, _, err) = with(&pki, &pki, &["-tls-server-name", "wrong.example"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("certificate not valid for name \"wrong.example\""),
        "{err}"
    );
    assert_eq!(with(&pki, &pki, &["-tls-server-name", "localhost"]).0, 0);
    // A key without its certificate is named.
    let (code, _, err) = members(&[
        "-ca-file",
        path(&pki.ca),
        "-client-key",
        path(&pki.client_key),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("-client-key needs -client-cert"), "{err}");
    // Plain HTTP to the HTTPS port gets no API answer, and the CLI says why.
    let (status, _) = get(&addr, "/v1/catalog/services");
    assert_ne!(status, 200);
    let list_at = |at: &str| {
        tribune(
            &[
                "config",
                "list",
                "-kind",
                "service-defaults",
                "-http-addr",
                at,
            ],
            &[],
        )
    };
    let (code, _, err) = list_at(&addr);
    assert_ne!(code, 0);
    assert!(err.contains("use an https:// address"), "{err}");
    // Nothing listening: the CLI says what to check.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = list_at(&closed_addr);
    assert_ne!(code, 0);
    assert!(err.contains("Is `tribune agent` running there?"), "{err}");
    agent.kill();
}

/// An HTTPS port without a certificate, or with a key anyone may read, stops the
/// agent before it serves, with the setting named.
#[test]
fn an_https_port_without_a_usable_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = tribune(&["agent", "-dev", "-https-port", "0"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("tls.defaults.cert_file"), "{err}");

    let pki = Pki::generate(dir.path(), "tribune-agent");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pki.server_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = write(
            dir.path(),
            "tls.hcl",
            &format!(
                "tls {{ defaults {{\n  cert_file = \"{}\"\n  key_file = \"{}\"\n}} }}\n",
                path(&pki.server_cert),
                path(&pki.server_key)
            ),
        );
        let (code, _, err) = tribune(
            &["agent", "-dev", "-https-port", "0", "-config-file", &config],
            &[],
        );
        assert_eq!(code, 1);
        assert!(
            err.contains("tls key_file") && err.contains("readable by every user"),
            "{err}"
        );
    }
    let (code, _, err) = tribune(&["agent", "-dev", "-http-port", "-1"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("would serve nothing"), "{err}");
}
