//! Envoy's external authorization gRPC API (issue #44) against `tribune connect authz
//! -grpc-listener`, from a client generated from Envoy's own protos (PyPI
//! `xds-protos`): the seed's answers as `CheckResponse`s, the caller from
//! `source.principal` (trusted hops, this trust domain), path tricks refused, and
//! malformed checks answered with an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use tribune_test_support::tokens::Rs256;

#[test]
fn envoys_grpc_check_gets_the_sidecars_answers() {
    let (_agent, addr) = dev_agent(&[]);
    let idp = Rs256::new("idp-1");
    for body in [
        json!({"Kind": "jwt-provider", "Name": "okta", "Issuer": "https://idp.example",
            "JSONWebKeySet": {"Local": {"JWKS": idp.inline_jwks()}},
            "Forwarding": {"HeaderName": "X-Jwt-Payload"}}),
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "api",
            "JWT": {"Providers": [{"Name": "okta"}]},
            "Sources": [
                {"Name": "web", "Action": "allow"},
                {"Name": "*", "Permissions": [{"Action": "allow",
                    "HTTP": {"PathPrefix": "/v1/"},
                    "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]}}]}]}),
        // A second destination that allows everyone: a client must not be able to
        // pick it.
        json!({"Kind": "service-defaults", "Name": "open", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "open",
            "Sources": [{"Name": "*", "Action": "allow"}]}),
    ] {
        let (status, text) = request(&addr, "PUT", "/v1/config", &[], &body.to_string());
        assert_eq!(status, 200, "{text}");
    }
    let (_, roots) = get(&addr, "/v1/connect/ca/roots");
    let td = serde_json::from_str::<serde_json::Value>(&roots).unwrap()["TrustDomain"]
        .as_str()
        .unwrap()
        .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |role: &str| {
        idp.sign(
            &json!({"iss": "https://idp.example", "sub": "alice", "role": role,
            "iat": now, "exp": now + 600}),
        )
    };
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/envoy_ext_authz_client.py");
    for trusted in [true, false] {
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "connect".to_string(),
            "authz".into(),
            "-service".into(),
            "api".into(),
            "-service".into(),
            "open".into(),
            "-http-listener".into(),
            "127.0.0.1:0".into(),
            "-grpc-listener".into(),
            grpc.clone(),
            "-http-addr".into(),
            addr.clone(),
        ];
        if trusted {
            args.extend(["-trust-forwarded-from".into(), "127.0.0.1/32".into()]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_authz, f) = spawn(&argv, "authz running!");
        assert!(field(&f, "gRPC listener").starts_with(&grpc), "{f:?}");
        // The policy arrives from the agent: the first check may find none yet.
        let mut last = String::new();
        let mut passed = false;
        for _ in 0..30 {
            let out = Command::new("python3")
                .arg(&script)
                .args([
                    grpc.as_str(),
                    td.as_str(),
                    token("admin").as_str(),
                    token("user").as_str(),
                    if trusted { "yes" } else { "no" },
                ])
                .output()
                .unwrap();
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() && last.contains("PASS") {
                passed = true;
                break;
            }
            if !last.contains("no policy snapshot yet") && !last.contains("UNAVAILABLE") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert!(passed, "trusted={trusted}:\n{last}");
    }
}
