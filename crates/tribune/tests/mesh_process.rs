//! The seed's topology with real processes: an agent, `web` and `api` registered with
//! `tribune services register`, their sidecars started with `-sidecar-for`; web's app
//! calls `localhost:<upstream port>`, the call crosses the mesh over mTLS, and api's
//! sidecar enforces the intentions written with `tribune config write`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The seed's services with the CLI: `api` (an app answering "hello from api") and
/// `web` with `api` as an upstream, sidecars registered; api speaks HTTP. Returns
/// api's mesh port and web's upstream port for api.
fn register_web_and_api(dir: &std::path::Path, agent: &str) -> (u16, u16) {
    let app = upstream();
    let (api_mesh, web_mesh, web_upstream) = (free_port(), free_port(), free_port());
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let api_def = write(
        "api.hcl",
        format!("service {{\n  name = \"api\"\n  port = {}\n  connect {{ sidecar_service {{ port = {api_mesh} }} }}\n}}\n", app.port()),
    );
    let web_def = write(
        "web.hcl",
        format!("service {{\n  name = \"web\"\n  port = 8080\n  connect {{\n    sidecar_service {{\n      port = {web_mesh}\n      proxy {{\n        upstreams = [{{ destination_name = \"api\", local_bind_port = {web_upstream} }}]\n      }}\n    }}\n  }}\n}}\n"),
    );
    cli(agent, &["services", "register", &api_def]);
    cli(agent, &["services", "register", &web_def]);
    let defaults = write(
        "defaults.hcl",
        "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n".into(),
    );
    cli(agent, &["config", "write", &defaults]);
    (api_mesh, web_upstream)
}

#[test]
fn web_reaches_api_through_both_sidecars_only_when_intentions_allow() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let agent = field(&f, "HTTP addr").to_string();
    let (api_mesh, web_upstream) = register_web_and_api(dir.path(), &agent);
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };

    let (_api_proxy, af) = spawn(
        &[
            "connect",
            "proxy",
            "-sidecar-for",
            "api",
            "-http-addr",
            &agent,
            "-admin-bind",
            "127.0.0.1:0",
        ],
        "proxy running",
    );
    assert!(
        field(&af, "Mesh listener").contains("identity api"),
        "{af:?}"
    );
    let (_web_proxy, wf) = spawn(
        &[
            "connect",
            "proxy",
            "-sidecar-for",
            "web",
            "-http-addr",
            &agent,
            "-admin-bind",
            "127.0.0.1:0",
        ],
        "proxy running",
    );
    assert_eq!(
        field(&wf, "Upstream api"),
        format!("127.0.0.1:{web_upstream}")
    );
    let via_mesh = format!("127.0.0.1:{web_upstream}");

    // Default deny: web -> api is refused by api's sidecar.
    eventually(&via_mesh, 403);
    let allow = write(
        "allow.hcl",
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [{ Name = \"web\", Action = \"allow\" }]\n".into(),
    );
    cli(&agent, &["config", "write", &allow]);
    eventually(&via_mesh, 200);
    assert_eq!(get(&via_mesh, "/hello").1, "hello from api");

    // Only web is allowed: an edge caller with no identity is not, even straight at api's mesh port.
    let (status, _) = get(&format!("127.0.0.1:{api_mesh}"), "/hello");
    assert_eq!(
        status, 0,
        "plain connection to the mTLS listener gets no HTTP answer"
    );

    let deny = write(
        "deny.hcl",
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [{ Name = \"web\", Action = \"deny\" }]\n".into(),
    );
    cli(&agent, &["config", "write", &deny]);
    eventually(&via_mesh, 403);

    // Root rotation with the CLI; calls keep working once both sides have the new root.
    cli(&agent, &["config", "write", &allow]);
    eventually(&via_mesh, 200);
    cli(&agent, &["connect", "ca", "rotate"]);
    for _ in 0..40 {
        assert_eq!(get(&via_mesh, "/hello").0, 200);
        std::thread::sleep(std::time::Duration::from_millis(75));
    }
}

/// Fail static across restarts on the mesh: with the agent down, both sidecars are
/// restarted from their state files (registration, mesh identity, policy) and web
/// still reaches api over mTLS, with api's saved intentions enforced.
#[test]
fn sidecars_restarted_while_the_agent_is_down_keep_the_mesh_working() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap().to_string();
    let (mut agent_proc, f) = spawn(&["agent", "-dev", "-http-port", "0"], "agent running");
    let agent = field(&f, "HTTP addr").to_string();
    let (_, web_upstream) = register_web_and_api(dir.path(), &agent);
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let allow = write(
        "allow.hcl",
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [{ Name = \"web\", Permissions = [{ Action = \"allow\", HTTP { PathPrefix = \"/hello\" } }] }]\n".into(),
    );
    cli(&agent, &["config", "write", &allow]);
    let sidecar = |id: &str| {
        spawn(
            &[
                "connect",
                "proxy",
                "-sidecar-for",
                id,
                "-http-addr",
                &agent,
                "-admin-bind",
                "127.0.0.1:0",
                "-state-dir",
                &state,
            ],
            "proxy running",
        )
    };
    let via_mesh = format!("127.0.0.1:{web_upstream}");
    {
        let (_api, _) = sidecar("api");
        let (_web, _) = sidecar("web");
        eventually(&via_mesh, 200);
    }
    agent_proc.kill();
    let (_api, af) = sidecar("api");
    let (_web, wf) = sidecar("web");
    for f in [&af, &wf] {
        let state_line = field(f, "State");
        assert!(
            state_line.contains("registration") && state_line.contains("identity"),
            "{state_line}"
        );
    }
    assert_eq!(get(&via_mesh, "/hello"), (200, "hello from api".into()));
    assert_eq!(
        get(&via_mesh, "/admin").0,
        403,
        "api's saved intentions are enforced"
    );
}
