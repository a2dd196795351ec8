//! Hardening round 3, item 4 (Consul CVE-2024-10006 class): header deny rules were
//! dodged by repeating the header (`x-user: admin` and `x-user: guest`, either
//! order), listing it (`x-user: guest, admin`), or respelling it (`x_user: admin`,
//! `x_debug: 1` against a `Present` deny), under either default policy. Now a deny
//! criterion matches on any value of the header or of its `_` look-alike, and an
//! allow criterion needs every value to match.

use super::{raw, serving};
use serde_json::json;

fn status(answer: &str) -> &str {
    answer.split_whitespace().nth(1).unwrap_or("")
}

async fn send(addr: std::net::SocketAddr, headers: &str) -> String {
    raw(
        addr,
        &format!("GET /x HTTP/1.1\r\nHost: api\r\n{headers}Connection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn a_header_deny_cannot_be_dodged_by_repeating_listing_or_respelling() {
    let upstream = crate::support::echo().await;
    let deny_admin = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*",
    "Permissions": [
        {"Action": "deny", "HTTP": {"Header": [{"Name": "x-user", "Exact": "admin"}]}},
        {"Action": "deny", "HTTP": {"Header": [{"Name": "x-debug", "Present": true}]}},
        {"Action": "allow", "HTTP": {"PathPrefix": "/"}},
    ]}]});
    let (_, addr, _) = serving(upstream.addr, vec![deny_admin]).await;
    for (headers, want) in [
        ("x-user: guest\r\n", "200"),
        ("x-user: admin\r\n", "403"),
        ("x-user: admin\r\nx-user: guest\r\n", "403"),
        ("x-user: guest\r\nx-user: admin\r\n", "403"),
        ("x-user: guest, admin\r\n", "403"),
        ("x-user: guest,admin\r\n", "403"),
        ("x_user: admin\r\n", "403"),
        ("X_User: admin\r\n", "403"),
        ("x_debug: 1\r\n", "403"),
        ("x-user: guest\r\nx_user: admin\r\n", "403"),
    ] {
        let answer = send(addr, headers).await;
        assert_eq!(status(&answer), want, "{headers:?}: {answer}");
    }
}

#[tokio::test]
async fn a_header_allow_needs_every_value_to_match() {
    let upstream = crate::support::echo().await;
    let allow_admin = json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*",
    "Permissions": [
        {"Action": "allow", "HTTP": {"Header": [{"Name": "x-user", "Exact": "admin"}]}},
    ]}]});
    let (_, addr, _) = serving(upstream.addr, vec![allow_admin]).await;
    for (headers, want) in [
        ("x-user: admin\r\n", "200"),
        ("x-user: admin\r\nx-user: admin\r\n", "200"),
        ("x-user: admin\r\nx-user: guest\r\n", "403"),
        ("x-user: admin\r\nx_user: guest\r\n", "403"),
        ("x-user: admin, guest\r\n", "403"),
        ("", "403"),
    ] {
        let answer = send(addr, headers).await;
        assert_eq!(status(&answer), want, "{headers:?}: {answer}");
    }
}
