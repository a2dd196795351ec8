//! `intention check` (explain) and `intention test` through the CLI: output and exit
//! codes, against in-process agents on 127.0.0.1:0 or offline entry files.

use crate::cli::agent_tests::{hs256, now, start_agent, SECRET};
use crate::cli::tests::run_args;
use base64::Engine;
use tribune_server::AgentConfig;

fn example(path: &str) -> String {
    format!("{}/../../examples/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// A plain HTTP server on 127.0.0.1:0 answering every request with `body` (JSON when
/// `json`); its address.
pub(crate) fn serve(body: &'static str, json: bool) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(move || async move {
                let kind = if json {
                    "application/json"
                } else {
                    "text/plain"
                };
                ([(axum::http::header::CONTENT_TYPE, kind)], body)
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

pub(crate) fn write_entries(addr: &str, files: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        let (code, _, err) =
            run_args(&["config", "write", "-http-addr", addr, f.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {err}");
    }
}

#[test]
fn the_example_policy_tests_pass_offline_and_failures_are_reported() {
    let files = [
        example("okta-provider.hcl"),
        example("api-defaults.hcl"),
        example("api-intentions.hcl"),
        example("seed-workflow/all-intentions.hcl"),
    ];
    let cases = example("api.test.hcl");
    let with_entries = |rest: &[&str]| {
        let mut v = vec!["intention", "test"];
        for f in &files {
            v.extend_from_slice(&["-entries", f.as_str()]);
        }
        v.extend_from_slice(rest);
        run_args(&v)
    };
    assert_eq!(
        with_entries(&[&cases]),
        (0, "10 passed, 0 failed\n".into(), String::new())
    );

    let tmp = tempfile::tempdir().unwrap();
    let wrong = tmp.path().join("wrong.test.hcl");
    std::fs::write(
        &wrong,
        "Test \"expects too much\" {\n  Source = \"web\"\n  Destination = \"api\"\n  Path = \"/v1/items\"\n  Expect = \"allow\"\n}\n",
    )
    .unwrap();
    let json = tmp.path().join("ok.test.json");
    std::fs::write(
        &json,
        r#"{"Test": {"json admin": {"Source": "web", "Destination": "api", "Path": "/v1/items",
            "JWT": {"Provider": "okta", "Claims": {"perms": {"role": "admin"}}}, "Expect": "allow"}}}"#,
    )
    .unwrap();
    let (w, j) = (wrong.to_str().unwrap(), json.to_str().unwrap());
    let (code, out, err) = with_entries(&[w, j]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        out,
        format!(
            "FAIL {w}: Test \"expects too much\": expected allow, got deny (HTTP 401): Denied: intention web -> api (precedence 9) matches the caller but does not apply (permission 0 matches but its JWT requirement is not met: no token for provider \"okta\"); the default policy is deny [jwt_missing]\n1 passed, 1 failed\n"
        )
    );
    let (code, out, _) = with_entries(&["-format", "junit", w, j]);
    assert_eq!(code, 1);
    assert!(out.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"tribune intention test\" tests=\"2\" failures=\"1\">"), "{out}");
    assert!(out.contains("<testcase name=\"expects too much\""), "{out}");
    assert!(out.contains("<failure message=\"expected allow, got deny (HTTP 401): Denied: intention web -&gt; api"), "{out}");
    assert!(out.contains("<testcase name=\"json admin\""), "{out}");

    // Errors exit 2 and name the file and the field.
    let bad = tmp.path().join("bad.test.hcl");
    std::fs::write(
        &bad,
        "Test \"typo\" { Destnation = \"api\" Expect = \"allow\" }\n",
    )
    .unwrap();
    let b = bad.to_str().unwrap();
    let (code, out, err) = with_entries(&[b, "missing.test.hcl"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        format!(
            "Error: {b}: Test \"typo\": invalid config key \"Test.typo.Destnation\" (did you mean \"Destination\"?)\nError: Failed to read file \"missing.test.hcl\": No such file or directory\n"
        )
    );
    std::fs::write(
        &bad,
        "Test \"x\" { Destination = \"api\" Expect = \"maybe\" }\n",
    )
    .unwrap();
    let (code, _, err) = with_entries(&[b]);
    assert_eq!(code, 2);
    assert!(
        err.contains("Expect: must be \"allow\", \"deny\" or an HTTP status, got \"maybe\""),
        "{err}"
    );
    // An entry directory with a broken file is an error, not an empty policy.
    let entries = tempfile::tempdir().unwrap();
    std::fs::write(
        entries.path().join("i.hcl"),
        "Kind = \"service-intentions\"\nName = \"api\"\nJWT { Providers = [ { Name = \"nobody\" } ] }\nSources = [ { Name = \"web\" Action = \"allow\" } ]\n",
    )
    .unwrap();
    let (code, _, err) = run_args(&[
        "intention",
        "test",
        "-entries",
        entries.path().to_str().unwrap(),
        j,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "service-intentions/api: Referenced JWT Provider does not exist. Provider Name: nobody"
        ),
        "{err}"
    );
}

#[test]
fn policy_tests_run_against_the_agents_live_entries_with_real_tokens_too() {
    let addr = start_agent(AgentConfig::default());
    let read = |f: &str| std::fs::read_to_string(example(f)).unwrap();
    write_entries(
        &addr,
        &[
            ("p.hcl", read("okta-provider.hcl")),
            ("d.hcl", read("api-defaults.hcl")),
            ("i.hcl", read("api-intentions.hcl")),
            ("a.hcl", read("seed-workflow/all-intentions.hcl")),
        ],
    );
    let cases = example("api.test.hcl");
    assert_eq!(
        run_args(&["intention", "test", "-http-addr", &addr, &cases]),
        (0, "10 passed, 0 failed\n".into(), String::new())
    );

    // A provider with local keys: cases with a real Token are verified for real.
    let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET)}]});
    write_entries(
        &addr,
        &[
            (
                "p.hcl",
                format!(
                    "Kind = \"jwt-provider\"\nName = \"local\"\nIssuer = \"local\"\nJSONWebKeySet {{ Local {{ JWKS = \"{}\" }} }}\n",
                    base64::engine::general_purpose::STANDARD.encode(jwks.to_string())
                ),
            ),
            ("d.hcl", "Kind = \"service-defaults\"\nName = \"db\"\nProtocol = \"http\"\n".into()),
            (
                "i.hcl",
                "Kind = \"service-intentions\"\nName = \"db\"\nJWT { Providers = [ { Name = \"local\" } ] }\nSources = [ { Name = \"web\" Action = \"allow\" } ]\n".into(),
            ),
        ],
    );
    let good = hs256(serde_json::json!({"iss": "local", "exp": now() + 600}));
    let expired = hs256(serde_json::json!({"iss": "local", "exp": now() - 600}));
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("db.test.hcl");
    std::fs::write(
        &f,
        format!(
            "Test \"valid\" {{ Source = \"web\" Destination = \"db\" Token = \"{good}\" Expect = \"allow\" }}\nTest \"expired\" {{ Source = \"web\" Destination = \"db\" Token = \"{expired}\" Expect = 401 }}\n"
        ),
    )
    .unwrap();
    assert_eq!(
        run_args(&[
            "intention",
            "test",
            "-http-addr",
            &addr,
            f.to_str().unwrap()
        ]),
        (0, "2 passed, 0 failed\n".into(), String::new())
    );
}

#[test]
fn explain_finds_tokens_where_the_sidecar_finds_them_and_fetches_remote_keys() {
    let addr = start_agent(AgentConfig::default());
    let keys: &'static str = Box::leak(
        serde_json::json!({"keys": [{"kty": "oct", "kid": "k1",
            "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET)}]})
        .to_string()
        .into_boxed_str(),
    );
    let jwks = serve(keys, true);
    write_entries(
        &addr,
        &[
            (
                "remote.hcl",
                format!(
                    "Kind = \"jwt-provider\"\nName = \"remote\"\nIssuer = \"remote\"\nJSONWebKeySet {{ Remote {{ URI = \"http://{jwks}/keys\" }} }}\nLocations = [ {{ Header {{ Name = \"x-jwt\" }} }} ]\n"
                ),
            ),
            (
                "cookie.hcl",
                format!(
                    "Kind = \"jwt-provider\"\nName = \"session\"\nIssuer = \"session\"\nJSONWebKeySet {{ Remote {{ URI = \"http://{jwks}/keys\" }} }}\nLocations = [ {{ Cookie {{ Name = \"sid\" }} }} ]\n"
                ),
            ),
            ("d.hcl", "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n".into()),
            (
                "i.hcl",
                "Kind = \"service-intentions\"\nName = \"api\"\nJWT { Providers = [ { Name = \"remote\" } ] }\nSources = [\n  { Name = \"web\" Permissions = [ { Action = \"allow\" HTTP { PathPrefix = \"/\" } JWT { Providers = [ { Name = \"session\" } ] } } ] },\n  { Name = \"*\" Action = \"deny\" }\n]\n".into(),
            ),
        ],
    );
    let remote = hs256(serde_json::json!({"iss": "remote", "exp": now() + 600}));
    let session = hs256(serde_json::json!({"iss": "session", "exp": now() + 600}));
    let header = format!("x-jwt: {remote}");
    let cookie = format!("sid={session}");
    let base = ["intention", "check", "web", "api", "-path", "/items?x=1"];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        v.extend_from_slice(&["-http-addr", &addr]);
        run_args(&v)
    };
    // Both requirements (top level: remote; the permission's: session) met by one
    // token per provider, each in its own location, both from remote key sets.
    assert_eq!(
        with(&["-header", &header, "-cookie", &cookie]),
        (0, "Allowed\n".into(), String::new())
    );
    let (code, out, _) = with(&["-header", &header, "-explain"]);
    assert_eq!(code, 1);
    assert!(out.contains("no token for provider \"session\""), "{out}");
    assert!(
        out.ends_with("The caller would get HTTP 401 (Jwt is missing)\n"),
        "{out}"
    );
    // A token in the default location is not where these providers look: missing
    // for the caller, and named where it was.
    let (code, out, _) = with(&[
        "-jwt", &remote, "-cookie", &cookie, "-format", "json", "-explain",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ReasonCode"], "jwt_wrong_location", "{out}");
    assert_eq!(v["Status"], 401);
    assert_eq!(v["Body"], "Jwt is missing");
    assert_eq!(v["Tokens"][0]["Outcome"], "wrong_location");
    assert!(
        v["Reason"]
            .as_str()
            .unwrap()
            .contains("was sent in header Authorization"),
        "{out}"
    );
    assert_eq!(v["Tokens"][1]["Outcome"], "valid");
    // A caller outside the mesh matches only `*` sources.
    let (code, out, _) = run_args(&[
        "intention",
        "check",
        "-edge",
        "api",
        "-path",
        "/",
        "-explain",
        "-http-addr",
        &addr,
    ]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("Denied\nDenied: intention * -> api"),
        "{out}"
    );
    // An answer that is not an explanation is an error, not "Denied".
    let other = serve("hello", false);
    let (code, out, err) = run_args(&[
        "intention",
        "check",
        "web",
        "api",
        "-path",
        "/",
        "-http-addr",
        &other,
    ]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "Error checking the connection: the agent's answer is not an explanation: hello\n"
    );
    let (code, _, err) = run_args(&["intention", "check", "web", "api", "-http-addr", &other]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "Error checking the connection: the agent's answer is not a check result: hello\n"
    );
}
