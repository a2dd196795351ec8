//! WebSockets through the sidecar with a real client and server (`websockets` from
//! PyPI, `interop/ws_peer.py`): the handshake goes through tokens (here in
//! `?access_token=`, as browsers send them) and intentions; only an allowed one
//! reaches the service; open connections outlive a policy change; other upgrades are
//! refused unless the service's defaults name them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tribune_proxy::metrics::ConnEvent;

const NOW: i64 = 1_700_000_000;

/// A `ws_peer.py` process and its stdout lines.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/ws_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with websockets (scripts/test.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines,
        }
    }

    /// The next line (blocking the calling thread up to 20 s).
    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from ws_peer.py")
    }

    fn send_line(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The WebSocket echo service (`ws_peer.py server`) and its port.
async fn ws_server() -> (Peer, u16) {
    tokio::task::spawn_blocking(|| {
        let p = Peer::start(&["server"]);
        let port = p
            .next()
            .strip_prefix("LISTENING ")
            .unwrap()
            .parse()
            .unwrap();
        (p, port)
    })
    .await
    .unwrap()
}

/// Runs a client to the end (its exit, after the closing handshake); its one
/// result line.
async fn ws_client(url: String, n: usize) -> String {
    tokio::task::spawn_blocking(move || {
        let mut p = Peer::start(&["client", &url, &n.to_string()]);
        let line = p.next();
        let _ = p.child.wait();
        line
    })
    .await
    .unwrap()
}

fn provider(key: &Es256) -> Value {
    json!({
        "Kind": "jwt-provider", "Name": "okta", "Issuer": "https://okta.example",
        "JSONWebKeySet": {"Local": {"JWKS": inline_jwks(&[key])}},
        "Locations": [{"QueryParam": {"Name": "access_token"}}],
    })
}

/// Edge callers may open `/chat` with an okta token whose role is `member`.
fn chat(role: &str) -> Value {
    json!({
        "Kind": "service-intentions", "Name": "chat",
        "Sources": [{
            "Name": "*",
            "Permissions": [{
                "Action": "allow",
                "HTTP": {"PathPrefix": "/chat"},
                "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": ["role"], "Value": role}]}]},
            }],
        }],
    })
}

fn token(key: &Es256, role: &str) -> String {
    key.sign(
        &json!({"iss": "https://okta.example", "sub": "alice", "role": role, "exp": NOW + 600}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_enforced_on_the_handshake_and_then_carried_both_ways() {
    let (server, port) = ws_server().await;
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let key = Es256::new("k1");
    let (proxy, addr, records) = proxy(upstream, NOW).await;
    proxy
        .install(
            doc("chat", "http", "deny", vec![provider(&key), chat("member")]),
            1,
        )
        .await
        .unwrap();
    let member = token(&key, "member");
    let url = |path: &str, t: &str| format!("ws://{addr}{path}?access_token={t}");

    // Allowed: messages echo; the service never sees the token.
    assert_eq!(ws_client(url("/chat/a", &member), 3).await, "ECHOED 3");
    assert_eq!(server.next(), "OPEN /chat/a");
    assert_eq!(server.next(), "CLOSED");
    let last = records.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.status, last.decision), (101, "allow"), "{last:?}");

    // Refused on the handshake: no token (401), the wrong role (403), a path no
    // intention allows (403). The service sees none of them.
    let guest = token(&key, "guest");
    let no_token = format!("ws://{addr}/chat/denied");
    assert_eq!(ws_client(no_token, 1).await, "STATUS 401");
    assert_eq!(
        ws_client(url("/chat/denied", &guest), 1).await,
        "STATUS 403"
    );
    assert_eq!(ws_client(url("/admin", &member), 1).await, "STATUS 403");
    assert_eq!(ws_client(url("/chat/b", &member), 1).await, "ECHOED 1");
    assert_eq!(
        server.next(),
        "OPEN /chat/b",
        "no denied handshake reached the service"
    );
    assert_eq!(server.next(), "CLOSED");

    // An open WebSocket outlives a policy change; new handshakes get the new policy.
    let hold_url = url("/chat/held", &member);
    let mut held = tokio::task::spawn_blocking(move || {
        let p = Peer::start(&["hold", &hold_url]);
        assert_eq!(p.next(), "ECHOED 1");
        assert_eq!(p.next(), "READY");
        p
    })
    .await
    .unwrap();
    assert_eq!(server.next(), "OPEN /chat/held");
    proxy
        .install(
            doc("chat", "http", "deny", vec![provider(&key), chat("admin")]),
            2,
        )
        .await
        .unwrap();
    assert_eq!(ws_client(url("/chat/c", &member), 1).await, "STATUS 403");
    let held = tokio::task::spawn_blocking(move || {
        held.send_line();
        held.next()
    })
    .await
    .unwrap();
    assert_eq!(held, "STILL OPEN");

    let counters = &proxy.metrics.counters;
    assert!(counters.connections(ConnEvent::UpgradeOpened) >= 3);
    assert!(counters.upgraded_bytes[0].load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(counters.upgraded_bytes[1].load(std::sync::atomic::Ordering::Relaxed) > 0);
    let text = tribune_proxy::metrics::render(&proxy.metrics);
    for name in [
        "tribune_proxy_connection_events_total{event=\"upgrade_opened\"}",
        "tribune_proxy_upgraded_bytes_total{direction=\"to_service\"}",
        "tribune_proxy_upgraded_connections_open",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
    drop(server);
}

/// Upgrades to anything but WebSocket are refused (403) before the service sees
/// them, unless the service's defaults name the protocol in `Meta["tribune.upgrades"]`.
#[tokio::test]
async fn other_upgrades_are_refused_unless_the_service_names_them() {
    let upstream = echo().await;
    let key = Es256::new("k1");
    let (proxy, addr, records) = proxy(upstream.addr, NOW).await;
    let upgrade_request = |t: &str| {
        hyper::Request::get(format!("http://{addr}/chat/x?access_token={t}"))
            .header("connection", "upgrade")
            .header("upgrade", "tcp-tunnel")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap()
    };
    let member = token(&key, "member");
    proxy
        .install(
            doc("chat", "http", "deny", vec![provider(&key), chat("member")]),
            1,
        )
        .await
        .unwrap();
    let r = client().request(upgrade_request(&member)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        records.lock().unwrap().last().unwrap().reason,
        "upgrade_not_allowed"
    );

    // Named by the service's defaults: passed on (the echo service answers it as a
    // plain request, with the upgrade headers it received).
    let mut d = doc("chat", "http", "deny", vec![provider(&key), chat("member")]);
    d.upgrades = vec!["tcp-tunnel".into()];
    proxy.install(d, 2).await.unwrap();
    let r = client().request(upgrade_request(&member)).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.last.lock().unwrap().clone().unwrap();
    assert_eq!(seen["headers"]["upgrade"], "tcp-tunnel", "{seen}");
    assert_eq!(
        seen["query"],
        Value::Null,
        "the token is not forwarded: {seen}"
    );
}

/// The agent names a service's extra upgrades in its sidecar's document.
#[test]
fn service_defaults_meta_names_the_extra_upgrades() {
    let entries: Vec<tribune_model::ConfigEntry> = [
        json!({"Kind": "service-defaults", "Name": "chat", "Protocol": "http",
               "Meta": {"tribune.upgrades": "tcp-tunnel, Foo"}}),
        json!({"Kind": "service-defaults", "Name": "other", "Protocol": "http",
               "Meta": {"tribune.upgrades": "bar"}}),
    ]
    .iter()
    .map(|v| {
        tribune_model::decode_object(v.as_object().unwrap().clone())
            .unwrap()
            .into_entry()
            .unwrap()
    })
    .collect();
    let all: Vec<&tribune_model::ConfigEntry> = entries.iter().collect();
    let d = tribune_enforce::PolicyDocument::from_entries(
        "chat",
        tribune_model::intentions::Action::Deny,
        &all,
    );
    assert_eq!(d.upgrades, ["tcp-tunnel", "foo"]);
    let back = tribune_enforce::PolicyDocument::from_json(&d.to_json()).unwrap();
    assert_eq!(back.upgrades, d.upgrades);
}

/// Through the mesh: `web`'s app opens a WebSocket on its upstream port; `web`'s
/// sidecar carries it over mTLS; `api`'s mesh listener decides the handshake with
/// `web`'s identity and passes it to `api`'s app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_crosses_the_mesh_with_the_callers_identity_enforced() {
    let (server, app_port) = ws_server().await;
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (_agent, agent) = start_agent(store, "127.0.0.1:0".parse().unwrap());
    let c = agent_client(agent);
    let upstream_port = free_port();
    put(
        &c,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    put(&c, "/v1/config", json!({"Kind": "service-intentions", "Name": "api",
        "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/chat"}}]}]})).await;
    put(
        &c,
        "/v1/agent/service/register",
        json!({"Name": "api", "Port": app_port,
        "Connect": {"SidecarService": {"Port": free_port()}}}),
    )
    .await;
    put(
        &c,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [
            {"DestinationName": "api", "LocalBindPort": upstream_port}]}}}}),
    )
    .await;
    let api = sidecar(agent, "api").await;
    let _web = sidecar(agent, "web").await;
    until("api's policy", Duration::from_secs(5), || api.proxy.ready()).await;

    let via_web = |path: &str| format!("ws://127.0.0.1:{upstream_port}{path}");
    // The upstream listener may take a moment to learn api's endpoints.
    let mut got = String::new();
    for _ in 0..50 {
        got = ws_client(via_web("/chat/mesh"), 2).await;
        if got == "ECHOED 2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, "ECHOED 2");
    assert_eq!(server.next(), "OPEN /chat/mesh");
    {
        let recs = api.records.lock().unwrap();
        let last = recs.iter().rev().find(|r| r.status == 101).unwrap();
        assert_eq!(last.caller.as_deref(), Some("web"), "{last:?}");
        assert_eq!(last.decision, "allow");
    }
    assert_eq!(ws_client(via_web("/admin"), 1).await, "STATUS 403");
}

/// RFC 8441: a WebSocket over HTTP/2 (extended CONNECT, `:protocol = websocket`) is
/// decided as its HTTP/1.1 handshake and reaches the (HTTP/1.1) service as one; the
/// caller gets `200` and the stream carries WebSocket frames both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_extended_connect_is_enforced_and_carried() {
    use hyper::body::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, port) = ws_server().await;
    let key = Es256::new("k1");
    let (proxy, addr, records) =
        proxy(std::net::SocketAddr::from(([127, 0, 0, 1], port)), NOW).await;
    proxy
        .install(
            doc("chat", "http", "deny", vec![provider(&key), chat("member")]),
            1,
        )
        .await
        .unwrap();
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let connect = |path: String| {
        hyper::Request::builder()
            .method("CONNECT")
            .uri(format!("http://chat{path}"))
            .header("sec-websocket-version", "13")
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    // Denied on the handshake (wrong role): 403, the service never sees it.
    let guest = token(&key, "guest");
    let denied = sender
        .send_request(connect(format!("/chat/h2?access_token={guest}")))
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);

    let member = token(&key, "member");
    let mut resp = sender
        .send_request(connect(format!("/chat/h2?access_token={member}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.headers());
    assert_eq!(
        server.next(),
        "OPEN /chat/h2",
        "the denied one never reached it"
    );
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut ws = hyper_util::rt::TokioIo::new(upgraded);
    // One masked text frame (a client's frames are masked, RFC 6455 §5.3).
    let payload = b"over h2";
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    ws.write_all(&frame).await.unwrap();
    ws.flush().await.unwrap();
    let mut head = [0u8; 2];
    ws.read_exact(&mut head).await.unwrap();
    assert_eq!(
        head,
        [0x81, payload.len() as u8],
        "an unmasked text frame back"
    );
    let mut echoed = vec![0u8; payload.len()];
    ws.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, payload);
    let statuses: Vec<u16> = records.lock().unwrap().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [403, 200],
        "logged with the status the caller got"
    );
}

/// An open WebSocket keeps its downstream connection's place under the connection
/// cap (it is never idle, never shed): at a cap of one, a new caller is turned away
/// while it is open and served once it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_keeps_its_place_under_the_connection_cap() {
    use std::io::{Read, Write};
    let (server, port) = ws_server().await;
    let key = Es256::new("k1");
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (proxy, addr, _) = proxy_with(upstream, NOW, |c| c.max_connections = 1).await;
    proxy
        .install(
            doc("chat", "http", "deny", vec![provider(&key), chat("member")]),
            1,
        )
        .await
        .unwrap();
    let hold_url = format!(
        "ws://{addr}/chat/held?access_token={}",
        token(&key, "member")
    );
    let mut held = tokio::task::spawn_blocking(move || {
        let p = Peer::start(&["hold", &hold_url]);
        assert_eq!(p.next(), "ECHOED 1");
        assert_eq!(p.next(), "READY");
        p
    })
    .await
    .unwrap();
    assert_eq!(server.next(), "OPEN /chat/held");
    let plain = move || -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = write!(
            s,
            "GET /chat/x HTTP/1.1\r\nhost: chat\r\nconnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let turned_away = tokio::task::spawn_blocking(plain).await.unwrap();
    assert_eq!(turned_away, "", "no place while the WebSocket is open");
    let held = tokio::task::spawn_blocking(move || {
        held.send_line();
        let line = held.next();
        let _ = held.child.wait();
        line
    })
    .await
    .unwrap();
    assert_eq!(held, "STILL OPEN");
    let mut served = String::new();
    for _ in 0..50 {
        served = tokio::task::spawn_blocking(plain).await.unwrap();
        if !served.is_empty() {
            break;
        }
    }
    assert!(
        served.starts_with("HTTP/1.1 401"),
        "served once it closed: {served:?}"
    );
}
