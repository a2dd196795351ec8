//! Issue #44 (connect authz): a gRPC check took its destination from the checked
//! request's own headers when Envoy's configuration named none. Envoy passes the
//! client's headers in the `CheckRequest`, so a client could send
//! `X-Tribune-Destination: open` and be checked by the most permissive policy the
//! service decides for. Now only Envoy's configuration names it (the context
//! extension, or the call's metadata), and in the HTTP forms the check's path wins
//! over a header.

use super::support::doc;
use serde_json::json;
use std::collections::BTreeMap;
use tribune_proxy::authz::Authz;
use tribune_proxy::grpc::pb;

/// A `CheckRequest` for `GET path` with the client's `headers`.
fn check_request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut http = Vec::new();
    pb::bytes(&mut http, 2, b"GET");
    for (k, v) in headers {
        pb::map_entry(&mut http, 3, k, v.as_bytes());
    }
    pb::bytes(&mut http, 4, path.as_bytes());
    pb::bytes(&mut http, 5, b"api.example");
    let mut request = Vec::new();
    pb::bytes(&mut request, 2, &http);
    let mut attributes = Vec::new();
    pb::bytes(&mut attributes, 4, &request);
    let mut msg = Vec::new();
    pb::bytes(&mut msg, 1, &attributes);
    msg
}

/// Whether a `CheckResponse` allows: `ok_response` (3) rather than
/// `denied_response` (2).
fn allowed(resp: &[u8]) -> bool {
    let fields = pb::fields(resp).unwrap();
    let has = |n: u32| fields.iter().any(|(f, _)| *f == n);
    assert!(has(2) != has(3), "one of ok_response, denied_response");
    has(3)
}

#[tokio::test]
async fn a_client_cannot_choose_the_policy_its_request_is_checked_by() {
    let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (api, _, _) = super::support::proxy(upstream, super::NOW).await;
    let (open, _, _) = super::support::proxy(upstream, super::NOW).await;
    // api: only web may call; open: everyone.
    api.install(
        doc(
            "api",
            "http",
            "deny",
            vec![json!({"Kind": "service-intentions", "Name": "api",
            "Sources": [{"Name": "web", "Action": "allow"}]})],
        ),
        1,
    )
    .await
    .unwrap();
    open.install(
        doc(
            "open",
            "http",
            "deny",
            vec![json!({"Kind": "service-intentions", "Name": "open",
            "Sources": [{"Name": "*", "Action": "allow"}]})],
        ),
        1,
    )
    .await
    .unwrap();
    let authz = Authz::new(
        BTreeMap::from([("api".to_string(), api), ("open".to_string(), open)]),
        vec![],
        "11111111-2222-3333-4444-555555555555.consul".into(),
        false,
    );
    let peer = "127.0.0.1".parse().unwrap();
    let spoofed = check_request("/x", &[("x-tribune-destination", "open")]);
    // Envoy named no destination: the client's header does not name one either.
    let err = authz.grpc_check(peer, None, &spoofed).await.unwrap_err();
    assert!(err.1.contains("no destination"), "{}", err.1);
    // Envoy's configuration names api: the client's header changes nothing.
    let resp = authz
        .grpc_check(peer, Some("api".into()), &spoofed)
        .await
        .unwrap();
    assert!(!allowed(&resp), "denied by api's policy");
    // The same request for open, named by Envoy, is allowed (the policies differ).
    let resp = authz
        .grpc_check(peer, Some("open".into()), &check_request("/x", &[]))
        .await
        .unwrap();
    assert!(allowed(&resp));
}
