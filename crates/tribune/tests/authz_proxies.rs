//! nginx's `auth_request` and Caddy's `forward_auth` asking `tribune connect authz`
//! (issue #44), with the recipes docs/guide.md gives, in front of a real service: the
//! seed's answers (200 with the forwarded claims, 401 without a token, 403 with the
//! wrong role), path tricks that fail closed, an identity that cannot be claimed in a
//! header, and checks while the agent is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::json;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use tribune_test_support::tokens::Rs256;

/// A service that answers 200 with the request head it received.
fn echo_app() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                // The whole head, however it arrives.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                    head.len()
                );
            });
        }
    });
    addr
}

/// The guide's nginx recipe, with this test's ports.
fn nginx_conf(
    dir: &std::path::Path,
    listen: u16,
    app: std::net::SocketAddr,
    authz: &str,
) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{listen};
    location / {{
      auth_request /_tribune;
      auth_request_set $tribune_payload $upstream_http_x_jwt_payload;
      proxy_set_header X-Jwt-Payload $tribune_payload;
      proxy_set_header Authorization "";
      proxy_pass http://{app};
    }}
    location = /_tribune {{
      internal;
      proxy_pass http://{authz}/nginx;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Tribune-Destination api;
    }}
  }}
}}
"#
    )
}

/// A raw request through nginx (paths sent as written): status and body.
fn raw(addr: &str, path: &str, token: Option<&str>, extra: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, "not listening yet".into());
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: api\r\n{auth}{extra}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The agent with the seed's entries, the service, and `connect authz` for api.
struct Setup {
    agent: Proc,
    /// How `connect authz` was started (to start it again).
    authz_args: Vec<String>,
    /// The admin listener of api's engine.
    admin: String,
    idp: Rs256,
    app: std::net::SocketAddr,
    authz_addr: String,
    authz: Proc,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let (agent, addr) = dev_agent(&[]);
    let idp = Rs256::new("idp-1");
    for body in [
        json!({"Kind": "jwt-provider", "Name": "okta", "Issuer": "https://idp.example",
            "JSONWebKeySet": {"Local": {"JWKS": idp.inline_jwks()}},
            "Forwarding": {"HeaderName": "X-Jwt-Payload"}}),
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "api",
            "JWT": {"Providers": [{"Name": "okta"}]},
            "Sources": [{"Name": "*", "Permissions": [{"Action": "allow",
                "HTTP": {"PathPrefix": "/v1/"},
                "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]}}]}]}),
    ] {
        let (status, text) = request(&addr, "PUT", "/v1/config", &[], &body.to_string());
        assert_eq!(status, 200, "{text}");
    }
    let app = echo_app();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let authz_addr = format!("127.0.0.1:{}", free_port());
    let state = dir.path().join("state");
    let authz_args: Vec<String> = [
        "connect",
        "authz",
        "-service",
        "api",
        "-http-listener",
        authz_addr.as_str(),
        "-state-dir",
        state.to_str().unwrap(),
        "-http-addr",
        addr.as_str(),
    ]
    .map(String::from)
    .to_vec();
    let argv: Vec<&str> = authz_args.iter().map(String::as_str).collect();
    let (authz, f) = spawn(&argv, "authz running!");
    assert!(field(&f, "HTTP listener").starts_with(&authz_addr), "{f:?}");
    let admin = field(&f, "Admin (api)").to_string();
    Setup {
        authz_args,
        admin,
        agent,
        idp,
        app,
        authz_addr,
        authz,
        dir,
    }
}

/// The seed's answers through the proxy at `front`, the path tricks, a spoofed
/// identity, and checks with the agent gone.
fn seed_answers(mut s: Setup, front: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |role: &str| {
        s.idp.sign(
            &json!({"iss": "https://idp.example", "sub": "alice", "role": role,
            "iat": now, "exp": now + 600}),
        )
    };
    let admin = token("admin");
    // The proxy and the authz policy come up: wait for the first 200.
    let mut first = (0, String::new());
    for _ in 0..100 {
        first = raw(front, "/v1/items", Some(&admin), "");
        if first.0 == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(first.0, 200, "{}", first.1);
    // The service got the verified claims, not the token.
    let head = first.1.to_ascii_lowercase();
    assert!(head.contains("x-jwt-payload: ey"), "{head}");
    assert!(!head.contains("authorization"), "{head}");

    assert_eq!(raw(front, "/v1/items", None, "").0, 401, "no token");
    assert_eq!(
        raw(front, "/v1/items", Some(&token("user")), "").0,
        403,
        "wrong role"
    );
    assert_eq!(
        raw(front, "/admin", Some(&admin), "").0,
        403,
        "no permission"
    );

    // Path tricks: what the proxy would forward is not what would be decided, so
    // they are refused, never let through.
    for trick in [
        "/v1/../admin",
        "/v1/%2e%2e/admin",
        "/v1/..%2Fadmin",
        "/v1//items",
        "/v1/%2F../admin",
        "/v1\\..\\admin",
    ] {
        let (status, _) = raw(front, trick, Some(&admin), "");
        assert!(
            status == 403 || status == 400,
            "{trick}: {status} (must fail closed)"
        );
    }
    // Envoy's HTTP form, asked directly: the headers to set, and the token for Envoy
    // to remove (`x-envoy-auth-headers-to-remove`, which Envoy applies).
    {
        let mut c = std::net::TcpStream::connect(&s.authz_addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        write!(
            c,
            "GET /envoy/v1/items HTTP/1.1\r\nhost: api\r\nauthorization: Bearer {admin}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        let out = out.to_ascii_lowercase();
        assert!(out.starts_with("http/1.1 200"), "{out}");
        assert!(out.contains("x-jwt-payload: ey"), "{out}");
        assert!(
            out.contains("x-envoy-auth-headers-to-remove: authorization"),
            "{out}"
        );
    }
    // An identity claimed in a header is not believed (no trusted hop configured):
    // with it, a caller is still outside the mesh and `*` rules apply unchanged.
    let (status, _) = raw(
        front,
        "/v1/items",
        None,
        "x-forwarded-client-cert: URI=spiffe://x/ns/default/dc/dc1/svc/web\r\n",
    );
    assert_eq!(status, 401, "a spoofed identity gains nothing");

    // Counted and recorded like a sidecar's requests, on api's admin listener.
    let (status, metrics) = get(&s.admin, "/stats/prometheus");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tribune_proxy_requests_total{decision=\"allow\"")
            && metrics.contains("tribune_proxy_requests_total{decision=\"deny\""),
        "{metrics}"
    );
    // And as checks, by how they ended: allowed by the permission, denied for a
    // missing token, and the path tricks the proxy would forward in another form.
    for (labels, at_least) in [
        ("result=\"allow\",reason=\"permission\"", 2),
        ("result=\"deny\",reason=\"jwt_missing\"", 1),
        ("result=\"error\",reason=\"path_not_normalized\"", 1),
    ] {
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("tribune_authz_checks_total{{{labels}}} ")))
            .unwrap_or_else(|| panic!("{labels} in {metrics}"))
            .parse()
            .unwrap();
        assert!(n >= at_least, "{labels}: {n}");
    }

    // The agent goes away: checks go on with the policy held.
    s.agent.kill();
    assert_eq!(raw(front, "/v1/items", Some(&admin), "").0, 200);
    assert_eq!(raw(front, "/v1/items", None, "").0, 401);
    // And `connect authz` restarted while it is away starts from its saved policy.
    s.authz.kill();
    let argv: Vec<&str> = s.authz_args.iter().map(String::as_str).collect();
    let (_again, f) = spawn(&argv, "authz running!");
    assert!(
        field(&f, "State").contains("started from the saved policy of api"),
        "{f:?}"
    );
    assert_eq!(raw(front, "/v1/items", Some(&admin), "").0, 200);
    assert_eq!(raw(front, "/v1/items", None, "").0, 401);
    assert_eq!(raw(front, "/v1/items", Some(&token("user")), "").0, 403);
}

#[test]
fn nginx_auth_request_enforces_the_intentions_through_tribune() {
    let s = setup();
    let nginx_port = free_port();
    let conf = s.dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        nginx_conf(s.dir.path(), nginx_port, s.app, &s.authz_addr),
    )
    .unwrap();
    let mut nginx = Command::new("nginx")
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            s.dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    seed_answers(s, &format!("127.0.0.1:{nginx_port}"));
    let _ = nginx.kill();
    let _ = nginx.wait();
}

/// The guide's Caddy recipe (`forward_auth`), with this test's ports.
fn caddyfile(listen: u16, app: std::net::SocketAddr, authz: &str) -> String {
    format!(
        r#"{{
  admin off
  auto_https off
}}
http://:{listen} {{
  bind 127.0.0.1
  route {{
    forward_auth {authz} {{
      uri /forward-auth
      header_up X-Tribune-Destination api
      copy_headers X-Jwt-Payload
    }}
    request_header -Authorization
    reverse_proxy {app}
  }}
}}
"#
    )
}

#[test]
fn caddy_forward_auth_enforces_the_intentions_through_tribune() {
    let s = setup();
    let port = free_port();
    let conf = s.dir.path().join("Caddyfile");
    std::fs::write(&conf, caddyfile(port, s.app, &s.authz_addr)).unwrap();
    let mut caddy = Command::new("caddy")
        .args([
            "run",
            "--config",
            conf.to_str().unwrap(),
            "--adapter",
            "caddyfile",
        ])
        .env("HOME", s.dir.path())
        .env("XDG_DATA_HOME", s.dir.path())
        .env("XDG_CONFIG_HOME", s.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    seed_answers(s, &format!("127.0.0.1:{port}"));
    let _ = caddy.kill();
    let _ = caddy.wait();
}
