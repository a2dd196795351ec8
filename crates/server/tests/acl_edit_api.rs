//! Changing ACL tokens and policies after they exist, cloning tokens, and roles
//! (`/v1/acl/token/:id`, `/v1/acl/token/:id/clone`, `/v1/acl/policy/:id`,
//! `/v1/acl/role*`), in Consul's shapes and with Consul's rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::{token_with, Api};

const ROOT: Option<&str> = Some("root-secret");
const WEB_WRITE: &str = "service \"web\" { policy = \"write\" }";

async fn ok(api: &Api, method: &str, uri: &str, body: Value) -> Value {
    let r = api.call(method, uri, ROOT, &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{method} {uri}: {}", r.body);
    r.json()
}

async fn policy(api: &Api, name: &str, rules: &str) -> String {
    let p = ok(
        api,
        "PUT",
        "/v1/acl/policy",
        json!({"Name": name, "Rules": rules}),
    )
    .await;
    p["ID"].as_str().unwrap().to_string()
}

fn link_names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| l["Name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn updating_a_token_replaces_its_links_and_keeps_its_secret() {
    let api = Api::with_acls().await;
    policy(&api, "a", "mesh = \"read\"").await;
    policy(&api, "b", WEB_WRITE).await;
    let t = ok(
        &api,
        "PUT",
        "/v1/acl/token",
        json!({"Description": "first", "Policies": [{"Name": "a"}]}),
    )
    .await;
    let id = t["AccessorID"].as_str().unwrap();
    let secret = t["SecretID"].as_str().unwrap();

    let u = ok(
        &api,
        "PUT",
        &format!("/v1/acl/token/{id}"),
        json!({"Description": "second", "Policies": [{"Name": "b"}]}),
    )
    .await;
    assert_eq!(u["Description"], "second");
    assert_eq!(u["SecretID"], secret, "the secret never changes");
    assert_eq!(link_names(&u, "Policies"), ["b"]);
    assert!(u["ModifyIndex"].as_u64() > t["ModifyIndex"].as_u64());

    // The new policy is what the token holds now.
    let r = api
        .call(
            "PUT",
            "/v1/config",
            Some(secret),
            r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/token/{id}"),
            ROOT,
            r#"{"SecretID": "something-else"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r
        .body
        .contains("Changing a token's SecretID is not permitted"));
    let r = api
        .call("PUT", "/v1/acl/token/no-such-id", ROOT, "{}")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Cannot find token"), "{}", r.body);
    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/token/{id}"),
            ROOT,
            r#"{"Policies": [{"Name": "missing"}]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("No such ACL policy with name \"missing\""));
}

#[tokio::test]
async fn only_acl_write_may_update_and_readers_see_no_secret() {
    let api = Api::with_acls().await;
    let reader = token_with(&api, "reader", "acl = \"read\"").await;
    let t = ok(&api, "PUT", "/v1/acl/token", json!({"Description": "x"})).await;
    let id = t["AccessorID"].as_str().unwrap();
    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/token/{id}"),
            Some(&reader),
            r#"{"Description":"y"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .call("GET", &format!("/v1/acl/token/{id}"), Some(&reader), "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["SecretID"], "<hidden>");
    assert_eq!(r.json()["Description"], "x", "the update was refused");
}

#[tokio::test]
async fn cloning_a_token_gives_new_ids_and_the_same_links() {
    let api = Api::with_acls().await;
    policy(&api, "a", "mesh = \"read\"").await;
    let t = ok(
        &api,
        "PUT",
        "/v1/acl/token",
        json!({"Description": "orig", "Policies": [{"Name": "a"}]}),
    )
    .await;
    let id = t["AccessorID"].as_str().unwrap();
    let c = ok(
        &api,
        "PUT",
        &format!("/v1/acl/token/{id}/clone"),
        json!({"Description": "copy"}),
    )
    .await;
    assert_ne!(c["AccessorID"], t["AccessorID"]);
    assert_ne!(c["SecretID"], t["SecretID"]);
    assert_eq!(c["Description"], "copy");
    assert_eq!(link_names(&c, "Policies"), ["a"]);
    // Without a description the clone keeps the original's.
    let r = api
        .call("PUT", &format!("/v1/acl/token/{id}/clone"), ROOT, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["Description"], "orig");
    let tokens = ok(&api, "GET", "/v1/acl/tokens", Value::Null).await;
    assert_eq!(tokens.as_array().unwrap().len(), 4, "{tokens}");
}

#[tokio::test]
async fn updating_a_policy_changes_what_its_tokens_may_do() {
    let api = Api::with_acls().await;
    let pid = policy(&api, "p", "mesh = \"read\"").await;
    let t = ok(
        &api,
        "PUT",
        "/v1/acl/token",
        json!({"Policies": [{"ID": pid}]}),
    )
    .await;
    let secret = t["SecretID"].as_str().unwrap().to_string();
    let entry = r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#;
    let r = api.call("PUT", "/v1/config", Some(&secret), entry).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let p = ok(
        &api,
        "PUT",
        &format!("/v1/acl/policy/{pid}"),
        json!({"Name": "p-renamed", "Rules": WEB_WRITE}),
    )
    .await;
    assert_eq!(p["Name"], "p-renamed");
    let r = api.call("PUT", "/v1/config", Some(&secret), entry).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A token shows the link under the policy's current name.
    let t = ok(
        &api,
        "GET",
        &format!("/v1/acl/token/{}", t["AccessorID"].as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert_eq!(link_names(&t, "Policies"), ["p-renamed"]);

    let r = api
        .call(
            "PUT",
            &format!("/v1/acl/policy/{pid}"),
            ROOT,
            r#"{"Name":"p","Rules":"mesh = "}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Failed to parse ACL rules"), "{}", r.body);
    let r = api
        .call(
            "PUT",
            "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
            ROOT,
            r#"{"Name":"global-management","Rules":"mesh = \"read\""}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("builtin global-management"), "{}", r.body);
}

#[tokio::test]
async fn a_role_grants_its_policies_to_linked_tokens() {
    let api = Api::with_acls().await;
    policy(&api, "writer", WEB_WRITE).await;
    let role = ok(
        &api,
        "PUT",
        "/v1/acl/role",
        json!({"Name": "ops", "Description": "operators", "Policies": [{"Name": "writer"}]}),
    )
    .await;
    let rid = role["ID"].as_str().unwrap().to_string();
    assert_eq!(link_names(&role, "Policies"), ["writer"]);
    let t = ok(
        &api,
        "PUT",
        "/v1/acl/token",
        json!({"Roles": [{"Name": "ops"}]}),
    )
    .await;
    assert_eq!(link_names(&t, "Roles"), ["ops"]);
    let secret = t["SecretID"].as_str().unwrap().to_string();
    let entry = r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#;
    let r = api.call("PUT", "/v1/config", Some(&secret), entry).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Read by ID and by name, list (with ?policy= and ?filter=).
    let by_id = ok(&api, "GET", &format!("/v1/acl/role/{rid}"), Value::Null).await;
    assert_eq!(by_id["Name"], "ops");
    let by_name = ok(&api, "GET", "/v1/acl/role/name/ops", Value::Null).await;
    assert_eq!(by_name["ID"], rid.as_str());
    let roles = api.call("GET", "/v1/acl/roles", ROOT, "").await;
    assert_eq!(roles.names(), ["ops"]);
    let roles = api
        .call(
            "GET",
            "/v1/acl/roles?filter=Description%20%3D%3D%20%22nobody%22",
            ROOT,
            "",
        )
        .await;
    assert_eq!(roles.status, StatusCode::OK, "{}", roles.body);
    assert!(roles.names().is_empty());

    // A second role with the same name is refused; updates keep the ID.
    let r = api
        .call("PUT", "/v1/acl/role", ROOT, r#"{"Name":"ops"}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("already exists"), "{}", r.body);
    let u = ok(
        &api,
        "PUT",
        &format!("/v1/acl/role/{rid}"),
        json!({"Name": "ops", "Policies": []}),
    )
    .await;
    assert_eq!(u["ID"], rid.as_str());
    let r = api.call("PUT", "/v1/config", Some(&secret), entry).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the role lost its policy");

    // Deleting the role removes the link from every token read.
    let r = api
        .call("DELETE", &format!("/v1/acl/role/{rid}"), ROOT, "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = ok(
        &api,
        "GET",
        &format!("/v1/acl/token/{}", t["AccessorID"].as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert!(link_names(&t, "Roles").is_empty(), "{t}");
    let r = api
        .call("GET", &format!("/v1/acl/role/{rid}"), ROOT, "")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .call("PUT", "/v1/acl/role/no-such-role", ROOT, r#"{"Name":"x"}"#)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no update creates a role");
}

#[tokio::test]
async fn a_deleted_policy_disappears_from_token_links() {
    let api = Api::with_acls().await;
    let pid = policy(&api, "gone", "mesh = \"read\"").await;
    let t = ok(
        &api,
        "PUT",
        "/v1/acl/token",
        json!({"Policies": [{"ID": pid}]}),
    )
    .await;
    // Consul's `?policy=<id>`: the tokens linking it.
    let linking = ok(
        &api,
        "GET",
        &format!("/v1/acl/tokens?policy={pid}"),
        Value::Null,
    )
    .await;
    let ids: Vec<&Value> = linking
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["AccessorID"])
        .collect();
    assert_eq!(ids, [&t["AccessorID"]]);
    let r = api
        .call("DELETE", &format!("/v1/acl/policy/{pid}"), ROOT, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let linking = ok(
        &api,
        "GET",
        &format!("/v1/acl/tokens?policy={pid}"),
        Value::Null,
    )
    .await;
    assert_eq!(linking, json!([]), "no token links a deleted policy");
    let list = ok(&api, "GET", "/v1/acl/tokens", Value::Null).await;
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["AccessorID"] == t["AccessorID"])
        .unwrap();
    assert!(link_names(mine, "Policies").is_empty(), "{mine}");
}

/// Consul decodes ACL bodies as Go's `encoding/json` does: keys in any case (what
/// py-consul sends: `{"name": ..., "rules": ...}`), an exact name winning.
#[tokio::test]
async fn acl_bodies_take_keys_in_any_case_like_consuls_decoder() {
    let api = Api::with_acls().await;
    let p = ok(
        &api,
        "PUT",
        "/v1/acl/policy",
        json!({"name": "lower", "rules": WEB_WRITE, "DESCRIPTION": "shouted"}),
    )
    .await;
    assert_eq!(p["Name"], "lower");
    assert_eq!(p["Rules"], WEB_WRITE);
    assert_eq!(p["Description"], "shouted");
    let r = ok(
        &api,
        "PUT",
        "/v1/acl/role",
        json!({"name": "r", "policies": [{"name": "lower"}]}),
    )
    .await;
    assert_eq!(link_names(&r, "Policies"), ["lower"]);
    let t = ok(
        &api,
        "PUT",
        "/v1/acl/token",
        json!({"description": "t", "roles": [{"id": r["ID"]}], "Description": "exact wins"}),
    )
    .await;
    assert_eq!(t["Description"], "exact wins");
    assert_eq!(link_names(&t, "Roles"), ["r"]);
}
