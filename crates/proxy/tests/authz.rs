//! `connect authz`'s forms (issue #44) in process: forward auth (Traefik, Caddy) and
//! Envoy's HTTP ext_authz, the caller's identity from a trusted hop's XFCC only, the
//! destination named or refused, malformed checks answered with an error, and the
//! decisions the same as the sidecar's (access records name the intention).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tribune_proxy::authz::{Authz, Cidr};

fn raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{head}connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_and_envoy_checks_decide_like_the_sidecar() {
    let store: Arc<dyn tribune_store::Store> =
        Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (_agent, agent) = start_agent(store, "127.0.0.1:0".parse().unwrap());
    let c = agent_client(agent);
    put(
        &c,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    put(
        &c,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [
        {"Name": "web", "Action": "allow"},
        {"Name": "*", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/public/"}}]}]}),
    )
    .await;
    let roots: serde_json::Value = serde_json::from_str(
        &c.request("GET", "/v1/connect/ca/roots", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let td = roots["TrustDomain"].as_str().unwrap().to_string();

    let records: Records = Default::default();
    let r = records.clone();
    let mut config = tribune_proxy::ProxyConfig::new("127.0.0.1:9".parse().unwrap());
    config.access_sink = Some(Arc::new(move |rec: &tribune_proxy::AccessRecord<'_>| {
        r.lock().unwrap().push(rec.clone().into_owned())
    }));
    let proxy = tribune_proxy::Proxy::new(config);
    tokio::spawn(tribune_proxy::watch::watch_agent(
        proxy.clone(),
        agent_client(agent),
        "api".into(),
    ));
    until("api's policy", Duration::from_secs(5), || proxy.ready()).await;
    let serve = |trusted: Vec<Cidr>| {
        let (td, proxy) = (td.clone(), proxy.clone());
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let authz = Arc::new(Authz::new(
                BTreeMap::from([("api".to_string(), proxy)]),
                trusted,
                td,
                false,
            ));
            tokio::spawn(tribune_proxy::authz::serve(authz, listener, None));
            addr
        }
    };
    let trusting = serve(vec![Cidr::parse("127.0.0.1/32").unwrap()]).await;
    let wary = serve(vec![]).await;
    let xfcc = format!("x-forwarded-client-cert: By=spiffe://{td}/ns/default/dc/dc1/svc/api;URI=spiffe://{td}/ns/default/dc/dc1/svc/web\r\n");
    let check = |addr: SocketAddr, form: &str, uri: &str, extra: &str| {
        let head = match form {
            "forward" => format!("GET /forward-auth HTTP/1.1\r\nhost: authz\r\nx-forwarded-method: GET\r\nx-forwarded-uri: {uri}\r\nx-forwarded-host: api.example\r\n{extra}"),
            _ => format!("GET /envoy{uri} HTTP/1.1\r\nhost: api.example\r\n{extra}"),
        };
        tokio::task::spawn_blocking(move || raw(addr, &head))
    };

    for form in ["forward", "envoy"] {
        // Outside the mesh: `*` permissions only.
        assert_eq!(
            check(wary, form, "/public/x", "").await.unwrap().0,
            200,
            "{form}"
        );
        assert_eq!(
            check(wary, form, "/private", "").await.unwrap().0,
            403,
            "{form}"
        );
        // web, through a trusted hop's XFCC.
        assert_eq!(
            check(trusting, form, "/private", &xfcc).await.unwrap().0,
            200,
            "{form}"
        );
        // The same header from a hop that is not trusted gains nothing.
        assert_eq!(
            check(wary, form, "/private", &xfcc).await.unwrap().0,
            403,
            "{form}"
        );
        // Another mesh's identity is no identity here.
        let foreign =
            "x-forwarded-client-cert: URI=spiffe://evil.example/ns/default/dc/dc1/svc/web\r\n";
        assert_eq!(
            check(trusting, form, "/private", foreign).await.unwrap().0,
            403,
            "{form}"
        );
        // A path the engine would decide in another form than the proxy forwards.
        let (status, body) = check(wary, form, "/public/../private", "").await.unwrap();
        assert!(status == 400 || status == 403, "{form}: {status} {body}");
    }
    {
        let recs = records.lock().unwrap();
        let web = recs
            .iter()
            .find(|r| r.caller.as_deref() == Some("web"))
            .unwrap();
        assert_eq!(web.intention.as_deref(), Some("web -> api (precedence 9)"));
    }
    // Malformed or misdirected checks: a clear error, never a guess or a crash.
    for (head, want, says) in [
        ("GET /forward-auth HTTP/1.1\r\nhost: a\r\nx-forwarded-method: GET\r\n", 400, "X-Forwarded-Uri is missing"),
        ("GET /forward-auth HTTP/1.1\r\nhost: a\r\nx-forwarded-method: G@T\r\nx-forwarded-uri: /x\r\n", 400, "is not an HTTP method"),
        ("GET /forward-auth HTTP/1.1\r\nhost: a\r\nx-forwarded-method: GET\r\nx-forwarded-uri: http://evil/x\r\n", 400, "origin-form"),
        ("GET /envoy/x HTTP/1.1\r\nhost: a\r\nx-tribune-destination: billing\r\n", 400, "is not served here"),
        // The destination in the check's path (Traefik's forwardAuth address) wins
        // over a header, which a client may have sent itself.
        ("GET /forward-auth/billing HTTP/1.1\r\nhost: a\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /public/x\r\nx-tribune-destination: api\r\n", 400, "\"billing\" is not served here"),
        ("GET /forward-auth/api HTTP/1.1\r\nhost: a\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /public/x\r\nx-tribune-destination: billing\r\n", 200, ""),
        ("GET /nginx/api HTTP/1.1\r\nhost: a\r\nx-original-method: GET\r\nx-original-uri: /private\r\n", 403, ""),
        ("GET /nginx HTTP/1.1\r\nhost: a\r\n", 403, ""),
        ("GET /other HTTP/1.1\r\nhost: a\r\n", 404, "no such check"),
    ] {
        let (status, out) = tokio::task::spawn_blocking({
            let head = head.to_string();
            move || raw(wary, &head)
        })
        .await
        .unwrap();
        assert_eq!(status, want, "{head}: {out}");
        assert!(out.contains(says), "{head}: {out}");
    }
    // Every check is counted by how it ended: the four malformed checks for api (not
    // the one for a destination not served here), decisions by their reason.
    let metrics = tribune_proxy::metrics::render(&proxy.metrics);
    let count = |labels: &str| {
        let line = format!("tribune_authz_checks_total{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("{line} in {metrics}"))
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(count("result=\"error\",reason=\"bad_check\""), 4);
    assert_eq!(count("result=\"error\",reason=\"no_policy\""), 0);
    assert_eq!(
        count("result=\"allow\",reason=\"intention\""),
        2,
        "web, by its intention"
    );
    assert!(
        count("result=\"deny\",reason=\"no_permission_matched\"") >= 6,
        "{metrics}"
    );
    // The sidecar's own family counts the same decisions.
    assert!(metrics.contains("tribune_proxy_requests_total{decision=\"allow\""));
}
