//! End to end, the way a user meets Tribune: a real OpenID Connect provider
//! (`oidc-provider` from npm) issuing JWT access tokens, the agent with ACLs and
//! default deny, config written with the CLI from `examples/seed-workflow/` (ports
//! and the provider's address substituted), services and sidecars started like the
//! example's README says, and `web`'s app calling `api` through the mesh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use base64::Engine;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The OIDC provider process; prints `READY <issuer>`.
fn start_idp(port: u16, keys: &Path, rotate: bool) -> Proc {
    let mut cmd = Command::new("node");
    cmd.arg("oidc.mjs")
        .args([
            "--port",
            &port.to_string(),
            "--keys",
            keys.to_str().unwrap(),
        ])
        .current_dir(repo().join("interop"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if rotate {
        cmd.arg("--rotate");
    }
    let mut child = cmd
        .spawn()
        .expect("node is needed (./scripts/test.sh installs the interop tools)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        ready.starts_with("READY http://127.0.0.1:"),
        "provider did not start: {ready:?}"
    );
    std::thread::spawn(move || for _ in lines {});
    Proc::new(child)
}

fn token(idp: &str, client: &str, resource: &str) -> String {
    let body = format!(
        "grant_type=client_credentials&client_id={client}&client_secret=secret&resource={resource}&scope=api:read"
    );
    let (status, reply) = request(
        idp,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    );
    assert_eq!(status, 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

fn secret_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .expect("SecretID")
        .trim()
        .to_string()
}

/// Copies the example's files with the ports of this run.
fn example_files(dir: &Path, ports: &[(&str, String)]) {
    for entry in std::fs::read_dir(repo().join("examples/seed-workflow")).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in ports {
            text = text.replace(from, to);
        }
        std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
    }
}

/// A token for the provider's issuer signed by a key it never published.
fn foreign_token(issuer: &str) -> String {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let input = format!(
        "{}.{}",
        b64.encode(r#"{"alg":"ES256","kid":"never-published"}"#),
        b64.encode(
            serde_json::json!({"iss": issuer, "exp": now + 600, "perms": {"role": "admin"}})
                .to_string()
        )
    );
    let sig = kp.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", b64.encode(sig.as_ref()))
}

#[test]
fn the_seed_workflow_with_a_real_oidc_provider() {
    let dir = tempfile::tempdir().unwrap();
    let (idp_port, api_port) = (free_port(), free_port());
    let (api_mesh, web_mesh, batch_mesh) = (free_port(), free_port(), free_port());
    let (web_up, batch_up) = (free_port(), free_port());
    let idp = format!("127.0.0.1:{idp_port}");
    example_files(
        dir.path(),
        &[
            ("127.0.0.1:9000", idp.clone()),
            ("port = 9090", format!("port = {api_port}")),
            ("port = 21000", format!("port = {api_mesh}")),
            ("port = 21001", format!("port = {web_mesh}")),
            ("port = 21002", format!("port = {batch_mesh}")),
            (
                "local_bind_port = 9191",
                format!("local_bind_port = {web_up}"),
            ),
            (
                "local_bind_port = 9192",
                format!("local_bind_port = {batch_up}"),
            ),
        ],
    );
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let keys = dir.path().join("idp-keys.json");

    // 1. The identity provider and the agent (ACLs on, default deny).
    let mut provider = Some(start_idp(idp_port, &keys, false));
    let issuer = format!("http://{idp}");
    let (_agent, f) = spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-config-file",
            &file("acl.hcl"),
        ],
        "agent running",
    );
    let agent = field(&f, "HTTP addr").to_string();
    let (code, out, err) = run_cli(&agent, &["acl", "bootstrap"]);
    assert_eq!(code, 0, "{err}");
    let root = secret_of(&out);
    let token_for = |name: &str, rules: &str| {
        let (c, _, e) = run_cli(
            &agent,
            &[
                "acl", "policy", "create", "-name", name, "-rules", rules, "-token", &root,
            ],
        );
        assert_eq!(c, 0, "{e}");
        let (c, out, e) = run_cli(
            &agent,
            &[
                "acl",
                "token",
                "create",
                "-policy-name",
                name,
                "-token",
                &root,
            ],
        );
        assert_eq!(c, 0, "{e}");
        secret_of(&out)
    };
    let writer = token_for("mesh-writer", "mesh = \"write\"");
    let reader = token_for("reader", "service_prefix \"\" { policy = \"read\" }");
    let sidecars = token_for("sidecars", "service_prefix \"\" { policy = \"write\" }");

    // 2. Config entries: a token without mesh:write is refused; the writer succeeds.
    let (c, _, e) = run_cli(
        &agent,
        &[
            "config",
            "write",
            "-token",
            &reader,
            &file("okta-provider.hcl"),
        ],
    );
    assert_ne!(c, 0);
    assert!(
        e.contains("Permission denied") && e.contains("mesh:write"),
        "{e}"
    );
    for (token, f) in [
        (&sidecars, "api-defaults.hcl"),
        (&writer, "okta-provider.hcl"),
        (&writer, "api-intentions.hcl"),
        (&writer, "all-intentions.hcl"),
    ] {
        let (c, out, e) = run_cli(&agent, &["config", "write", "-token", token, &file(f)]);
        assert_eq!(c, 0, "{f}: {e}");
        assert!(out.starts_with("Config entry written"), "{out}");
    }

    // 3. Services, the api app, and the sidecars.
    for svc in ["api.hcl", "web.hcl", "batch.hcl"] {
        let (c, _, e) = run_cli(
            &agent,
            &["services", "register", "-token", &sidecars, &file(svc)],
        );
        assert_eq!(c, 0, "{svc}: {e}");
    }
    let _app = Proc::new(
        Command::new("python3")
            .arg(file("api-app.py"))
            .arg(api_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut proxies = Vec::new();
    for id in ["api", "web", "batch"] {
        let (p, _) = spawn(
            &[
                "connect",
                "proxy",
                "-sidecar-for",
                id,
                "-http-addr",
                &agent,
                "-token",
                &sidecars,
                "-admin-bind",
                "127.0.0.1:0",
            ],
            "proxy running",
        );
        proxies.push(p);
    }
    let web = format!("127.0.0.1:{web_up}");
    let batch = format!("127.0.0.1:{batch_up}");

    // Tokens from the provider: RS256 and ES256 admins, a user, a 1-second token.
    let admin = token(&idp, "admin-client", "https://api.example");
    let admin_es = token(&idp, "admin-client", "https://api-es.example");
    let user = token(&idp, "user-client", "https://api.example");
    let short = token(&idp, "admin-client", "https://short.example");
    let bearer = |t: &str| format!("Bearer {t}");
    let call = |addr: &str, path: &str, t: Option<&str>| {
        let auth = t.map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        request(addr, "GET", path, &headers, "")
    };
    wait_for("the mesh path to api", Duration::from_secs(10), || {
        call(&web, "/v1/items", Some(&admin)).0 == 200
    });

    // 4. The decisions.
    let (status, body) = call(&web, "/v1/items", Some(&admin));
    assert_eq!(status, 200);
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    let headers = seen["headers"].as_object().unwrap();
    let forwarded = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("user-token"))
        .map(|(_, v)| v.as_str().unwrap());
    assert_eq!(
        forwarded,
        admin.split('.').nth(1),
        "api got the verified payload"
    );
    assert!(
        !headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization")),
        "the raw token was stripped"
    );
    assert_eq!(
        call(&web, "/v1/items", Some(&admin_es)).0,
        200,
        "ES256 token"
    );
    assert_eq!(call(&web, "/v1/items", None).0, 401, "no token");
    let mut tampered = admin.clone();
    tampered.insert(admin.find('.').unwrap() + 5, 'x');
    assert_eq!(
        call(&web, "/v1/items", Some(&tampered)).0,
        401,
        "tampered token"
    );
    assert_eq!(call(&web, "/v1/items", Some(&user)).0, 403, "wrong claim");
    assert_eq!(
        call(&web, "/admin", Some(&admin)).0,
        403,
        "path not allowed"
    );
    assert_eq!(
        call(&batch, "/v1/items", Some(&admin)).0,
        403,
        "source not allowed"
    );

    // 5. A changed intention takes effect within a second.
    let moved = std::fs::read_to_string(file("api-intentions.hcl"))
        .unwrap()
        .replace("/v1/", "/v2/");
    std::fs::write(file("moved.hcl"), moved).unwrap();
    let (c, _, e) = run_cli(
        &agent,
        &["config", "write", "-token", &writer, &file("moved.hcl")],
    );
    assert_eq!(c, 0, "{e}");
    let took = wait_for("the change", Duration::from_secs(5), || {
        call(&web, "/v1/items", Some(&admin)).0 == 403
    });
    assert!(took < Duration::from_secs(1), "change took {took:?}");
    assert_eq!(call(&web, "/v2/items", Some(&admin)).0, 200);
    let (c, _, e) = run_cli(
        &agent,
        &[
            "config",
            "write",
            "-token",
            &writer,
            &file("api-intentions.hcl"),
        ],
    );
    assert_eq!(c, 0, "{e}");
    wait_for("the change back", Duration::from_secs(5), || {
        call(&web, "/v1/items", Some(&admin)).0 == 200
    });

    // 6. Key rotation at the provider: a token signed with the new key works, no restart.
    drop(provider.take());
    provider = Some(start_idp(idp_port, &keys, true));
    let rotated = token(&idp, "admin-client", "https://api.example");
    assert_ne!(
        rotated.split('.').next(),
        admin.split('.').next(),
        "a new kid signs"
    );
    assert_eq!(
        call(&web, "/v1/items", Some(&rotated)).0,
        200,
        "new key picked up"
    );

    // 7. Provider down: cached keys keep working; a key never seen fails closed.
    drop(provider.take());
    assert_eq!(call(&web, "/v1/items", Some(&admin)).0, 200);
    assert_eq!(call(&web, "/v1/items", Some(&rotated)).0, 200);
    assert_eq!(
        call(&web, "/v1/items", Some(&foreign_token(&issuer))).0,
        401
    );

    // 8. Expiry: the 1-second token fails once past exp + ClockSkewSeconds (30 s):
    // wait for the token's own exp (the proxy compares whole seconds, so one more).
    let payload = short.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let expired_at =
        std::time::UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64().unwrap() + 32);
    if let Ok(rest) = expired_at.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(rest);
    }
    let (status, body) = call(&web, "/v1/items", Some(&short));
    assert_eq!((status, body.as_str()), (401, "Jwt is expired"));
    drop(proxies);
}

/// Issue #20: a provider given only its `Issuer` and its OpenID Connect discovery URI
/// works end to end with the real provider (keys found through `jwks_uri`), and
/// `jwt-provider check` reports the discovery and verifies a real token.
#[test]
fn a_provider_with_only_an_issuer_and_a_discovery_uri_works_with_the_real_provider() {
    let dir = tempfile::tempdir().unwrap();
    let idp_port = free_port();
    let idp = format!("127.0.0.1:{idp_port}");
    let _provider = start_idp(idp_port, &dir.path().join("keys.json"), false);
    let (_agent, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let agent = field(&f, "HTTP addr").to_string();
    let files = [
        (
            "idp.hcl",
            format!(
                "Kind = \"jwt-provider\"\nName = \"idp\"\nIssuer = \"http://{idp}\"\nJSONWebKeySet = {{ Remote = {{ URI = \"http://{idp}/.well-known/openid-configuration\" }} }}\n"
            ),
        ),
        (
            "defaults.hcl",
            "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n".to_string(),
        ),
        (
            "intentions.hcl",
            "Kind = \"service-intentions\"\nName = \"api\"\nJWT { Providers = [ { Name = \"idp\" } ] }\nSources = [ { Name = \"*\" Action = \"allow\" } ]\n".to_string(),
        ),
    ];
    for (name, body) in &files {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        cli(&agent, &["config", "write", path.to_str().unwrap()]);
    }
    let app = upstream();
    let (_proxy, f) = spawn(
        &[
            "connect",
            "proxy",
            "-service",
            "api",
            "-http-addr",
            &agent,
            "-local-service-address",
            &app.to_string(),
            "-edge-listener",
            "127.0.0.1:0",
            "-admin-bind",
            "127.0.0.1:0",
        ],
        "proxy running",
    );
    let edge = field(&f, "Edge listener").to_string();
    let user = token(&idp, "user-client", "https://api.example");
    let auth = format!("Bearer {user}");
    wait_for("the policy", Duration::from_secs(10), || {
        request(&edge, "GET", "/hello", &[("authorization", &auth)], "").0 == 200
    });
    assert_eq!(
        request(&edge, "GET", "/hello", &[], ""),
        (401, "Jwt is missing".to_string())
    );
    let foreign = format!("Bearer {}", foreign_token(&format!("http://{idp}")));
    assert_eq!(
        request(&edge, "GET", "/hello", &[("authorization", &foreign)], "").0,
        401
    );

    let (code, out, err) = run_cli(&agent, &["jwt-provider", "check", "-jwt", &user, "idp"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "ok   discovery http://{idp}/.well-known/openid-configuration: issuer matches the provider's Issuer; jwks_uri http://{idp}/jwks"
        )),
        "{out}"
    );
    assert!(
        out.contains("verified: a sidecar accepts this token"),
        "{out}"
    );
}
