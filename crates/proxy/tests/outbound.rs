//! Outbound identity (issue #45): web's sidecar adds a fresh JWT-SVID to each request
//! on an upstream whose registration asks for it; api's intentions require a mesh JWT
//! naming web. A token the app sets itself is replaced, and an upstream that does not
//! ask carries none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// One HTTP/1.1 request on a new connection; its status.
fn call(addr: SocketAddr, extra: &str) -> Result<u16, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /items HTTP/1.1\r\nhost: api\r\n{extra}connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_calls_api_with_a_mesh_jwt_its_sidecar_adds() {
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (_agent, agent) = start_agent(store, "127.0.0.1:0".parse().unwrap());
    let c = agent_client(agent);
    let app = echo().await;
    let (with_id, without) = (free_port(), free_port());
    let discovery: serde_json::Value = serde_json::from_str(
        &c.request("GET", "/.well-known/openid-configuration", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let roots: serde_json::Value = serde_json::from_str(
        &c.request("GET", "/v1/connect/ca/roots", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let web_id = format!(
        "spiffe://{}/ns/default/dc/dc1/svc/web",
        roots["TrustDomain"].as_str().unwrap()
    );
    put(
        &c,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    put(&c, "/v1/config", json!({"Kind": "jwt-provider", "Name": "mesh",
        "Issuer": discovery["issuer"], "Audiences": ["api"],
        "Locations": [{"Header": {"Name": "X-Workload-Token"}}],
        "JSONWebKeySet": {"Remote": {"URI": format!("http://{agent}/.well-known/openid-configuration")}}})).await;
    put(&c, "/v1/config", json!({"Kind": "service-intentions", "Name": "api",
        "JWT": {"Providers": [{"Name": "mesh", "VerifyClaims": [{"Path": ["sub"], "Value": web_id}]}]},
        "Sources": [{"Name": "web", "Action": "allow"}]})).await;
    put(
        &c,
        "/v1/agent/service/register",
        json!({"Name": "api", "Port": app.addr.port(),
        "Connect": {"SidecarService": {"Port": free_port()}}}),
    )
    .await;
    put(
        &c,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [
            {"DestinationName": "api", "LocalBindPort": with_id,
                "Config": {"jwt_svid_header": "X-Workload-Token"}},
            {"DestinationName": "api", "LocalBindPort": without}]}}}}),
    )
    .await;

    let api = sidecar(agent, "api").await;
    let _web = sidecar(agent, "web").await;
    until("api's policy", Duration::from_secs(5), || api.proxy.ready()).await;
    let at = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    let get = |port: u16, extra: &'static str| {
        let addr = at(port);
        tokio::task::spawn_blocking(move || call(addr, extra))
    };

    let first = get(with_id, "").await.unwrap();
    if first != Ok(200) {
        let recs = api.records.lock().unwrap();
        panic!("the sidecar's JWT-SVID: {first:?}: {:?}", recs.last());
    }
    {
        let recs = api.records.lock().unwrap();
        let last = recs.last().unwrap();
        assert_eq!(last.caller.as_deref(), Some("web"));
    }
    let seen = app.last.lock().unwrap().clone().unwrap();
    assert!(
        seen["headers"].get("x-workload-token").is_none(),
        "the token is not forwarded to the app: {seen}"
    );
    // The app cannot choose the identity it presents: its own header is replaced.
    assert_eq!(
        get(with_id, "x-workload-token: forged\r\n").await.unwrap(),
        Ok(200)
    );
    // An upstream that does not ask carries no token: api requires one.
    assert_eq!(get(without, "").await.unwrap(), Ok(401));
    assert_eq!(
        get(without, "x-workload-token: forged\r\n").await.unwrap(),
        Ok(401)
    );
    // Later requests carry the kept token (fetched again a minute before it expires).
    assert_eq!(get(with_id, "").await.unwrap(), Ok(200));

    // A registration naming a header the proxy owns is refused, naming the field.
    let r = c
        .request(
            "PUT",
            "/v1/agent/service/register",
            Some(
                json!({"Name": "batch", "Port": 2, "Connect": {"SidecarService": {"Proxy": {"Upstreams": [
                    {"DestinationName": "api", "LocalBindPort": free_port(),
                        "Config": {"jwt_svid_header": "Host"}}]}}}})
                .to_string()
                .into_bytes(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains(
            "Proxy.Upstreams[0].Config.jwt_svid_header: \"Host\" is a header the proxy owns"
        ),
        "{}",
        r.body
    );
}
