//! Staged policies end to end, in process: a candidate that adds a JWT requirement to
//! `api` is staged on a real agent; the sidecar (policy from the agent's snapshot
//! endpoint, requests through `serve_stream`) keeps enforcing the live policy, counts
//! exactly the requests the candidate would refuse (metric, access log, `/shadow`,
//! the agent's `staged` view), and enforces the candidate once promoted; a promote
//! after the live entry changed fails unless forced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::Es256;
use tribune_client::{Client, Target};
use tribune_proxy::{AccessRecord, Proxy, ProxyConfig, SnapshotDoc};

async fn call(client: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let r = client
        .request(method, path, body.map(|b| b.to_string().into_bytes()))
        .await
        .unwrap();
    (r.status, r.body)
}

async fn install(proxy: &Proxy, client: &Client) -> Value {
    let (status, body) = call(client, "GET", "/v1/tribune/proxy-snapshot/api", None).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    proxy
        .install(SnapshotDoc::from_json(&v).unwrap(), 1)
        .await
        .unwrap();
    v
}

/// One request from `web` through the sidecar's request path: status.
async fn send(proxy: &Arc<Proxy>, path: &str, token: Option<&str>) -> u16 {
    let mut req = hyper::Request::builder().uri(path).header("host", "api");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    support::through_stream(proxy, Some("web"), req.body(Empty::<Bytes>::new()).unwrap()).await
}

fn intentions(jwt: bool) -> Value {
    let mut e = json!({"Kind": "service-intentions", "Name": "api",
        "Sources": [{"Name": "web", "Action": "allow"}]});
    if jwt {
        e["JWT"] = json!({"Providers": [{"Name": "idp"}]});
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_jwt_requirement_is_counted_not_enforced_until_promoted() {
    let echo = support::echo().await;
    let store = Arc::new(tribune_store::RedbStore::in_memory().unwrap());
    let (_agent, addr) = support::start_agent(store, "127.0.0.1:0".parse().unwrap());
    let client = Client::new(&Target {
        addr: addr.to_string(),
        token: None,
        ..Default::default()
    })
    .unwrap();
    let key = Es256::new("k1");
    let provider = json!({"Kind": "jwt-provider", "Name": "idp",
        "Issuer": "idp", "JSONWebKeySet": {"Local": {"JWKS": support::inline_jwks(&[&key])}}});
    support::put(&client, "/v1/config", provider.clone()).await;
    support::put(
        &client,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    support::put(&client, "/v1/config", intentions(false)).await;
    // The candidate: every request needs an idp token.
    support::put(&client, "/v1/config?stage=true", intentions(true)).await;
    let (status, staged) = call(
        &client,
        "GET",
        "/v1/config/service-intentions/api?stage=true",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(staged.contains("\"JWT\""), "{staged}");
    let (_, live) = call(&client, "GET", "/v1/config/service-intentions/api", None).await;
    assert!(
        !live.contains("\"JWT\""),
        "the live entry is unchanged: {live}"
    );

    let records: Arc<Mutex<Vec<AccessRecord<'static>>>> = Arc::new(Mutex::new(Vec::new()));
    let r = records.clone();
    let mut config = ProxyConfig::new(echo.addr);
    config.access_sink = Some(Arc::new(move |rec: &AccessRecord<'_>| {
        r.lock().unwrap().push(rec.clone().into_owned())
    }));
    let proxy = Proxy::new(config);
    let doc = install(&proxy, &client).await;
    assert_eq!(
        doc["Candidate"]["Staged"].as_array().map(Vec::len),
        Some(1),
        "{doc}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = key.sign(&json!({"iss": "idp", "exp": now + 600}));
    let (with, without) = (7u64, 5u64);
    for i in 0..with {
        assert_eq!(
            send(&proxy, &format!("/v1/items/{i}"), Some(&token)).await,
            200
        );
    }
    for i in 0..without {
        let path = if i % 2 == 0 { "/v1/items" } else { "/health" };
        // Nothing is enforced early: the live policy allows.
        assert_eq!(send(&proxy, path, None).await, 200);
    }
    let shadow = serde_json::to_value(proxy.shadow.counters()).unwrap();
    assert_eq!(shadow["Seen"], with + without, "{shadow}");
    assert_eq!(shadow["Changed"], without, "{shadow}");
    let groups = shadow["Groups"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| g["Count"].as_u64().unwrap())
            .sum::<u64>(),
        without
    );
    assert!(
        groups.iter().all(|g| g["Reason"] == "jwt_missing"
            && g["Candidate"] == "deny"
            && g["CandidateStatus"] == 401),
        "{shadow}"
    );
    let metrics = tribune_proxy::metrics::render(&proxy.metrics);
    assert!(metrics.contains(&format!("tribune_proxy_shadow_decisions_total{{live=\"allow\",candidate=\"deny\",reason=\"jwt_missing\"}} {without}")), "{metrics}");
    assert!(metrics.contains(&format!("tribune_proxy_shadow_decisions_total{{live=\"allow\",candidate=\"allow\",reason=\"intention\"}} {with}")), "{metrics}");
    {
        let recs = records.lock().unwrap();
        assert_eq!(
            recs.iter()
                .filter(|r| r.shadow == Some(("deny", "jwt_missing")))
                .count() as u64,
            without
        );
        assert_eq!(
            recs.iter().filter(|r| r.shadow.is_none()).count() as u64,
            with
        );
    }
    // Replaying the candidate on the sidecar's window gives the same count (and the
    // window holds no token). The live policy references no provider, so the sidecar
    // never verified idp tokens: the candidate comes with its provider, and tokens
    // that name idp at its locations count as present (Assumed).
    let replayed = tribune_proxy::admin::replay(
        &proxy,
        json!([intentions(true), provider]).to_string().as_bytes(),
    );
    let status = replayed.status();
    let body = replayed.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["Requests"].as_u64(), v["Changed"].as_u64()),
        (Some(with + without), Some(without)),
        "{v}"
    );
    assert_eq!(v["Assumed"].as_u64(), Some(with), "{v}");
    assert!(!String::from_utf8_lossy(&body).contains(&token));
    let (facts, bytes) = proxy.replay.usage();
    assert_eq!(facts as u64, with + without);
    assert!(bytes > 0 && bytes < tribune_proxy::replay::MAX_REPLAY_BYTES);
    let bad =
        tribune_proxy::admin::replay(&proxy, b"Kind = \"service-intentions\"\nName = \"api\"\n");
    assert_eq!(bad.status(), 400);
    // The agent collects the sidecar's counters.
    tribune_proxy::shadow::report_once(&proxy, &client, "api", "api-1")
        .await
        .unwrap();
    let (status, body) = call(
        &client,
        "GET",
        "/v1/tribune/staged/service-intentions/api",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["Seen"].as_u64(), v["Changed"].as_u64()),
        (Some(with + without), Some(without)),
        "{v}"
    );
    // Where: the sidecar's groups reach the agent, their counts adding up.
    let grouped: u64 = v["Groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["Count"].as_u64().unwrap())
        .sum();
    assert_eq!(grouped, without, "{v}");
    assert_eq!(v["LiveChanged"], false);

    // Promote: the candidate is enforced, the candidate is gone.
    let (status, body) = call(
        &client,
        "PUT",
        "/v1/tribune/staged/service-intentions/api/promote",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &client,
        "GET",
        "/v1/config/service-intentions/api?stage=true",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = call(&client, "GET", "/v1/tribune/staged", None).await;
    assert_eq!(list, "[]", "no candidate, and its reports are gone");
    let doc = install(&proxy, &client).await;
    assert!(doc.get("Candidate").is_none(), "{doc}");
    assert_eq!(send(&proxy, "/v1/items", None).await, 401);
    assert_eq!(send(&proxy, "/v1/items", Some(&token)).await, 200);

    // A candidate staged against a live entry that then changes cannot be promoted...
    support::put(&client, "/v1/config?stage=true", intentions(false)).await;
    let mut changed = intentions(true);
    changed["Sources"][0]["Description"] = json!("changed by someone else");
    support::put(&client, "/v1/config", changed).await;
    let (status, body) = call(
        &client,
        "PUT",
        "/v1/tribune/staged/service-intentions/api/promote",
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("changed since the candidate was staged"),
        "{body}"
    );
    let (_, live) = call(&client, "GET", "/v1/config/service-intentions/api", None).await;
    assert!(
        live.contains("changed by someone else"),
        "nothing promoted: {live}"
    );
    // ...unless forced.
    let (status, _) = call(
        &client,
        "PUT",
        "/v1/tribune/staged/service-intentions/api/promote?force=true",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, live) = call(&client, "GET", "/v1/config/service-intentions/api", None).await;
    assert!(!live.contains("JWT"), "{live}");

    // Candidates are checked like live writes, and only stageable kinds are staged.
    let r = client
        .request("PUT", "/v1/config?stage=true", Some(json!({"Kind": "service-intentions", "Name": "api",
            "JWT": {"Providers": [{"Name": "nobody"}]}, "Sources": [{"Name": "web", "Action": "allow"}]}).to_string().into_bytes()))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "Referenced JWT Provider does not exist. Provider Name: nobody"
        )
    );
    let r = client
        .request(
            "PUT",
            "/v1/config?stage=true",
            Some(
                json!({"Kind": "service-defaults", "Name": "api", "Protocol": "tcp"})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("only service-intentions, jwt-provider and mesh entries can be staged"),
        "{}",
        r.body
    );
}
