//! `tribune demo`: the seed workflow in one process. An in-memory agent with the UI,
//! a small OpenID-style token issuer (discovery document, JWKS and `/token` minting
//! RS256 tokens for demo users), two demo services (`web` and `api`) each behind its
//! own sidecar, and the seed's entries (`examples/seed-workflow/`) with the issuer's
//! address filled in. Everything is the real code: the sidecars are
//! [`tribune_proxy::run::start`], the agent is [`tribune_server::router`]; only the
//! services and the issuer are toys.

use super::Io;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use clap::Args;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tribune_client::{Client, Target};
use tribune_model::api::paths;
use tribune_server::{router, AgentConfig, AppState};
use tribune_store::{RedbStore, Store};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the agent's HTTP API and UI (0 picks a free port).
    #[arg(long = "http-port", default_value_t = 8500)]
    pub http_port: u16,
    /// Port of the demo token issuer (JWKS, discovery, /token).
    #[arg(long = "issuer-port", default_value_t = 9000)]
    pub issuer_port: u16,
    /// Port where web's sidecar takes web's calls to api (its upstream listener).
    #[arg(long = "upstream-port", default_value_t = 9191)]
    pub upstream_port: u16,
    /// Port of api's edge listener (callers outside the mesh; 0 picks a free port).
    #[arg(long = "edge-port", default_value_t = 8443)]
    pub edge_port: u16,
    #[command(flatten)]
    pub log: super::logging::LogArgs,
}

/// The seed's entries, in the order they are written (a provider before the
/// intentions that name it).
const SEED: &[(&str, &str)] = &[
    (
        "okta-provider.hcl",
        include_str!("../../../../examples/seed-workflow/okta-provider.hcl"),
    ),
    (
        "api-defaults.hcl",
        include_str!("../../../../examples/seed-workflow/api-defaults.hcl"),
    ),
    (
        "api-intentions.hcl",
        include_str!("../../../../examples/seed-workflow/api-intentions.hcl"),
    ),
    (
        "all-intentions.hcl",
        include_str!("../../../../examples/seed-workflow/all-intentions.hcl"),
    ),
];

/// The address the seed's provider names, replaced by the demo issuer's.
const SEED_ISSUER: &str = "http://127.0.0.1:9000";

/// The demo users and the claims of their tokens.
const USERS: &[(&str, &str)] = &[("alice", "admin"), ("bob", "user")];

/// Binds a port the user chose, with an error that names the flag.
async fn bind(port: u16, flag: &str) -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        format!("port {port} (-{flag}) can't be used on 127.0.0.1: {e}; pick another with -{flag}")
    })
}

/// A free port for a listener the sidecar binds itself (checked now, so that a port
/// in use is reported with its flag rather than as a sidecar error).
async fn free_port(port: u16, flag: &str) -> Result<u16, String> {
    let l = bind(port, flag).await?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

// ---------- the token issuer ----------

struct Issuer {
    base: String,
    key: RsaKeyPair,
    jwks: Value,
}

impl Issuer {
    fn new(base: String) -> Result<Issuer, String> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| "could not generate the issuer's RSA key".to_string())?;
        let pk = key.public_key();
        let jwks = json!({"keys": [{
            "kty": "RSA",
            "kid": "demo-1",
            "alg": "RS256",
            "use": "sig",
            "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(pk.exponent().big_endian_without_leading_zero()),
        }]});
        Ok(Issuer { base, key, jwks })
    }

    fn mint(&self, user: &str, role: &str) -> Result<String, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "demo-1"});
        let claims = json!({
            "iss": self.base,
            "sub": user,
            "name": user,
            "iat": now,
            "exp": now + 3600,
            "perms": {"role": role},
        });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing failed".to_string())?;
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    Json(json!({
        "issuer": issuer.base,
        "jwks_uri": format!("{}/jwks", issuer.base),
        "token_endpoint": format!("{}/token", issuer.base),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    Json(issuer.jwks.clone())
}

/// `GET|POST /token?user=NAME`: a token for a demo user, as text.
async fn token(
    State(issuer): State<Arc<Issuer>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let names = USERS.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ");
    let Some(user) = q.get("user") else {
        return (
            StatusCode::BAD_REQUEST,
            format!("name a demo user: /token?user=NAME ({names})\n"),
        )
            .into_response();
    };
    match USERS.iter().find(|(u, _)| u == user) {
        None => (
            StatusCode::NOT_FOUND,
            format!("no demo user {user:?}; the users are {names}\n"),
        )
            .into_response(),
        Some((u, role)) => match issuer.mint(u, role) {
            Ok(t) => format!("{t}\n").into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        },
    }
}

fn issuer_router(issuer: Arc<Issuer>) -> axum::Router {
    axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", get(token).post(token))
        .with_state(issuer)
        .layer(axum::middleware::from_fn(loopback_hosts_only))
}

/// The issuer mints admin tokens for anyone who asks: on loopback, and only for
/// `Host` values that name loopback (a rebinding page cannot ask).
async fn loopback_hosts_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .map(|h| h.as_bytes());
    if let Some(body) = tribune_model::host::refused(host, &[]) {
        return (StatusCode::MISDIRECTED_REQUEST, body).into_response();
    }
    next.run(req).await
}

// ---------- the demo services ----------

/// A demo service: answers every request with what it received (what the sidecar
/// let through, and the token it forwarded).
fn app_router(name: &'static str) -> axum::Router {
    axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: axum::http::HeaderMap| async move {
            let forwarded = headers
                .get("user-token")
                .and_then(|v| v.to_str().ok())
                .and_then(claims_of);
            let user = forwarded
                .as_ref()
                .and_then(|c| c["sub"].as_str().map(str::to_string));
            Json(json!({
                "service": name,
                "method": method.as_str(),
                "path": uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                "user": user,
            }))
        },
    )
}

/// The claims the sidecar forwarded (the verified token's payload, base64url, as
/// Consul's `Forwarding.HeaderName` sends it; a whole token is read too).
fn claims_of(value: &str) -> Option<Value> {
    let payload = match value.split('.').nth(1) {
        Some(p) => p,
        None => value,
    };
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

async fn serve(listener: TcpListener, app: axum::Router) {
    let _ = axum::serve(listener, app).await;
}

// ---------- assembling it ----------

struct Running {
    agent: SocketAddr,
    issuer: SocketAddr,
    upstream: u16,
    edge: SocketAddr,
    state: tribune_server::Shared,
}

async fn agent_put(client: &Client, path: &str, body: Value) -> Result<(), String> {
    let r = client
        .request("PUT", path, Some(body.to_string().into_bytes()))
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    if r.status != 200 {
        return Err(format!("{path}: HTTP {}: {}", r.status, r.body.trim()));
    }
    Ok(())
}

async fn start(args: &DemoArgs, state_dir: &std::path::Path) -> Result<Running, String> {
    let agent_l = bind(args.http_port, "http-port").await?;
    let issuer_l = bind(args.issuer_port, "issuer-port").await?;
    let upstream = free_port(args.upstream_port, "upstream-port").await?;
    let edge = SocketAddr::from((
        [127, 0, 0, 1],
        free_port(args.edge_port, "edge-port").await?,
    ));
    let agent = agent_l.local_addr().map_err(|e| e.to_string())?;
    let issuer_addr = issuer_l.local_addr().map_err(|e| e.to_string())?;

    // The agent: in memory, the UI on, ACLs off (as `tribune agent -dev`).
    let store: Arc<dyn Store> = Arc::new(RedbStore::in_memory().map_err(|e| e.to_string())?);
    let config = AgentConfig {
        http_port: Some(agent.port()),
        ..AgentConfig::default()
    };
    let state = AppState::new(store, config)
        .await
        .map_err(|e| e.to_string())?;
    state.set_advertise(agent);
    tokio::spawn(serve(agent_l, router(state.clone())));

    let base = format!("http://{issuer_addr}");
    let issuer = Arc::new(Issuer::new(base.clone())?);
    tokio::spawn(serve(issuer_l, issuer_router(issuer)));

    // The seed's entries, through the API as `tribune config write` sends them.
    let target = Target {
        addr: agent.to_string(),
        token: None,
        ..Default::default()
    };
    let client = Client::new(&target).map_err(|e| e.to_string())?;
    for (file, text) in SEED {
        let text = text.replace(SEED_ISSUER, &base);
        let entry = tribune_model::parse_entry(&text).map_err(|e| format!("{file}: {e}"))?;
        agent_put(&client, paths::CONFIG, entry.to_json()).await?;
    }

    // The two services and their sidecars; web calls api through its upstream.
    let mut registrations = Vec::new();
    for name in ["web", "api"] {
        let app = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| e.to_string())?;
        let app_port = app.local_addr().map_err(|e| e.to_string())?.port();
        tokio::spawn(serve(app, app_router(name)));
        // The sidecar's mesh port goes in the registration before the sidecar binds it.
        let mesh = TcpListener::bind(("127.0.0.1", 0))
            .await
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let upstreams = if name == "web" {
            json!([{"DestinationName": "api", "LocalBindPort": upstream}])
        } else {
            json!([])
        };
        let registration = move |mesh: u16| {
            json!({
                "Name": name,
                "Port": app_port,
                "Connect": {"SidecarService": {"Port": mesh, "Proxy": {"Upstreams": upstreams.clone()}}},
            })
        };
        agent_put(
            &client,
            tribune_model::api::paths::AGENT_SERVICE_REGISTER,
            registration(mesh),
        )
        .await?;
        registrations.push((name, registration));
    }
    // batch is registered with no service behind it: the topology shows its deny.
    agent_put(
        &client,
        tribune_model::api::paths::AGENT_SERVICE_REGISTER,
        json!({"Name": "batch", "Port": 1}),
    )
    .await?;
    for name in ["api", "web"] {
        let mut s = tribune_proxy::run::Settings::new(target.clone());
        s.sidecar_for = Some(name.into());
        s.admin_bind = SocketAddr::from(([127, 0, 0, 1], 0));
        s.state_dir = Some(state_dir.to_path_buf());
        if name == "api" {
            s.edge_listener = Some(edge);
        }
        // The mesh port was free when registered; an outgoing connection may have
        // taken it since (ephemeral ports come from the same range): then the
        // service is registered again with another free port.
        let mut attempts = 0;
        loop {
            match tribune_proxy::run::start(s.clone()).await {
                Ok(_) => break,
                Err(e) if e.contains("Error binding mesh listener") && attempts < 5 => {
                    attempts += 1;
                    let mesh = TcpListener::bind(("127.0.0.1", 0))
                        .await
                        .and_then(|l| l.local_addr())
                        .map_err(|e| e.to_string())?
                        .port();
                    if let Some((_, register)) = registrations.iter().find(|(n, _)| *n == name) {
                        agent_put(
                            &client,
                            tribune_model::api::paths::AGENT_SERVICE_REGISTER,
                            register(mesh),
                        )
                        .await?;
                    }
                }
                Err(e) => return Err(format!("{name}'s sidecar: {e}")),
            }
        }
    }
    wait_ready(upstream).await;
    Ok(Running {
        agent,
        issuer: issuer_addr,
        upstream,
        edge,
        state,
    })
}

/// Waits (bounded, 5 s) until web's sidecar accepts connections on its upstream port,
/// so the printed commands work when they are shown. (Policies arrive from the
/// in-process agent within milliseconds; until then a sidecar refuses requests.)
async fn wait_ready(upstream: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", upstream))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn banner(r: &Running) -> String {
    let token = |user: &str| format!("$(curl -s 'http://{}/token?user={user}')", r.issuer);
    let up = format!("http://127.0.0.1:{}", r.upstream);
    format!(
        "==> Tribune demo running (Ctrl-C stops it)

    Web UI:         http://{agent}/ui/
    Agent API:      http://{agent}   (for tribune commands: export CONSUL_HTTP_ADDR={agent})
    Token issuer:   http://{issuer}   (users: alice, perms.role \"admin\"; bob, perms.role \"user\")
    Services:       web and api, each behind its sidecar; web reaches api at {up}
    api edge:       http://{edge}   (callers outside the mesh)

Requests from web to api (through web's sidecar, which proves web's identity):

  # 200: alice's token has perms.role = \"admin\"
  curl -s -H \"Authorization: Bearer {alice}\" {up}/v1/items

  # 401: no token (every request to api needs an okta token)
  curl -si {up}/v1/items

  # 403: bob's token has perms.role = \"user\"
  curl -si -H \"Authorization: Bearer {bob}\" {up}/v1/items

  # 403: no permission allows /admin, whoever asks
  curl -si -H \"Authorization: Bearer {alice}\" {up}/admin

  # 403: a caller outside the mesh is not web
  curl -si -H \"Authorization: Bearer {alice}\" http://{edge}/v1/items

Why: the agent answers what api's sidecar decides, with the deciding intention:

  tribune intention check -http-addr {agent} web api -method GET -path /admin -jwt \"{alice}\" -explain
",
        agent = r.agent,
        issuer = r.issuer,
        edge = r.edge,
        alice = token("alice"),
        bob = token("bob"),
    )
}

pub fn run(args: DemoArgs, io: &mut Io<'_>) -> u8 {
    if let Err(e) = super::logging::init(&args.log) {
        let _ = writeln!(io.err, "==> {e}");
        return 1;
    }
    let runtime = match super::agent::server_runtime(io) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let state_dir: PathBuf =
        std::env::temp_dir().join(format!("tribune-demo-{}", std::process::id()));
    let code = runtime.block_on(async {
        let running = match start(&args, &state_dir).await {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(io.err, "==> Error: {e}");
                return 1;
            }
        };
        let _ = write!(io.out, "{}", banner(&running));
        let _ = io.out.flush();
        super::agent::shutdown_signal().await;
        running.state.shut_down();
        let _ = writeln!(io.out, "==> Tribune demo stopped");
        0
    });
    // Open connections and background tasks are dropped, not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&state_dir);
    code
}
