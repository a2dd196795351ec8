//! `intention create|get|list|delete|match` against an in-process agent: Consul's
//! output, messages and exit codes, and the config entries they write.

use crate::cli::agent_tests::start_agent;
use crate::cli::intention_crud::columnize;
use crate::cli::tests::run_args;
use tribune_server::AgentConfig;

fn run(addr: &str, args: &[&str]) -> (u8, String, String) {
    let mut all = Vec::new();
    all.extend_from_slice(args);
    all.extend_from_slice(&["-http-addr", addr]);
    run_args(&all)
}

#[test]
fn columns_pad_all_but_the_last() {
    let rows = vec![
        vec!["ID".to_string(), "Source".into(), "Action".into()],
        vec!["".to_string(), "web".into(), "allow".into()],
    ];
    assert_eq!(columnize(&rows), "ID  Source  Action\n    web     allow\n");
}

#[test]
fn create_get_list_match_delete_like_consul() {
    let addr = start_agent(AgentConfig::default());
    assert_eq!(
        run(&addr, &["intention", "list"]),
        (2, String::new(), "There are no intentions.\n".into())
    );
    assert_eq!(
        run(&addr, &["intention", "create", "web", "db"]),
        (0, "Created: web => db (allow)\n".into(), String::new())
    );
    assert_eq!(
        run(
            &addr,
            &[
                "intention",
                "create",
                "-deny",
                "-meta",
                "team=pay",
                "batch",
                "db"
            ]
        ),
        (0, "Created: batch => db (deny)\n".into(), String::new())
    );
    // A second create of the same pair is refused, as Consul refuses a duplicate.
    let (code, out, err) = run(&addr, &["intention", "create", "-deny", "web", "db"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "Error creating intention \"web => db (deny)\": Unexpected response code: 500 (duplicate intention found: web => db (allow))\n"
    );
    assert_eq!(
        run(
            &addr,
            &["intention", "create", "-replace", "-deny", "web", "db"]
        ),
        (0, "Created: web => db (deny)\n".into(), String::new())
    );
    assert_eq!(
        run(&addr, &["intention", "create", "-allow", "-deny", "a", "b"]).2,
        "Only one of -allow or -deny may be specified.\n"
    );
    assert_eq!(
        run(&addr, &["intention", "create", "web"]).2,
        "Error: Must specify two arguments: source and destination\n"
    );

    // Both are sources of one service-intentions entry, with the meta on the entry.
    let (_, entry, _) = run(
        &addr,
        &[
            "config",
            "read",
            "-kind",
            "service-intentions",
            "-name",
            "db",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&entry).unwrap();
    assert_eq!(v["Sources"].as_array().unwrap().len(), 2, "{entry}");
    assert_eq!(v["Meta"]["team"], "pay");

    assert_eq!(
        run(&addr, &["intention", "get", "batch", "db"]),
        (
            0,
            "Source:       batch\nDestination:  db\nAction:       deny\nMeta[team]:   pay\nPrecedence:   9\n"
                .to_string(),
            String::new()
        )
    );
    assert_eq!(
        run(&addr, &["intention", "get", "nope", "db"]),
        (
            1,
            String::new(),
            "Intention not found with source \"nope\" and destination \"db\"\n".into()
        )
    );
    let (code, out, _) = run(&addr, &["intention", "list"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "ID  Source  Action  Destination  Precedence\n    batch   deny    db           9\n    web     deny    db           9\n"
    );
    let (code, out, _) = run(&addr, &["intention", "match", "db"]);
    assert_eq!(code, 0);
    assert_eq!(out, "batch => db (deny)\nweb => db (deny)\n");
    let (_, out, _) = run(&addr, &["intention", "match", "-source", "web"]);
    assert_eq!(out, "web => db (deny)\n");
    assert_eq!(
        run(
            &addr,
            &["intention", "match", "-source", "-destination", "web"]
        )
        .2,
        "Error: only one of -source or -destination may be specified\n"
    );

    assert_eq!(
        run(&addr, &["intention", "delete", "web", "db"]),
        (0, "Intention deleted.\n".into(), String::new())
    );
    assert_eq!(
        run(&addr, &["intention", "match", "db"]).1,
        "batch => db (deny)\n"
    );
    assert_eq!(run(&addr, &["intention", "delete", "batch", "db"]).0, 0);
    // The last source gone, the entry is gone.
    assert_eq!(
        run(&addr, &["config", "list", "-kind", "service-intentions"]).1,
        ""
    );
}

#[test]
fn create_from_files_keeps_permissions_and_names_a_bad_file() {
    let addr = start_agent(AgentConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("one.json");
    std::fs::write(
        &good,
        r#"{"SourceName": "web", "DestinationName": "api", "Description": "web reads",
            "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/v1/"}}]}"#,
    )
    .unwrap();
    // api needs an HTTP protocol for L7 permissions.
    let defaults = dir.path().join("defaults.json");
    std::fs::write(
        &defaults,
        r#"{"Kind": "service-defaults", "Name": "api", "Protocol": "http"}"#,
    )
    .unwrap();
    assert_eq!(
        run(&addr, &["config", "write", defaults.to_str().unwrap()]).0,
        0
    );
    let (code, out, err) = run(
        &addr,
        &["intention", "create", "-file", good.to_str().unwrap()],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "Created: web => api ()\n"),
        "{err}"
    );
    let (code, out, _) = run(&addr, &["intention", "get", "web", "api"]);
    assert_eq!(code, 0);
    assert!(out.contains("Description:  web reads\n"), "{out}");
    assert!(out.contains("Permissions:\n[\n  {\n"), "{out}");
    assert!(out.contains("\"PathPrefix\": \"/v1/\""), "{out}");

    let missing = dir.path().join("missing.json");
    let (code, _, err) = run(
        &addr,
        &["intention", "create", "-file", missing.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "Error: Failed to read file {:?}: ",
            missing.to_str().unwrap()
        )),
        "{err}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"SourceName": "web", "DestinationNme": "api"}"#).unwrap();
    let (code, _, err) = run(
        &addr,
        &["intention", "create", "-file", bad.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.json") && err.contains("DestinationNme"),
        "{err}"
    );
}
