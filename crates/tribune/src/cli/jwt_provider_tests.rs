//! `tribune jwt-provider check` against an in-process agent: output and exit codes for
//! a good provider, a token that verifies and one that does not, a non-JSON key
//! server, an unknown provider, and the JSON form (the API's report).

use crate::cli::agent_tests::{hs256, now, start_agent, SECRET};
use crate::cli::intention_tests::{serve, write_entries};
use crate::cli::tests::run_args;
use base64::Engine;
use tribune_server::AgentConfig;

fn provider(name: &str, uri: &str) -> String {
    format!(
        "Kind = \"jwt-provider\"\nName = \"{name}\"\nIssuer = \"okta\"\nAudiences = [\"api\"]\nJSONWebKeySet {{ Remote {{ URI = \"{uri}\" }} }}\n"
    )
}

fn key_set() -> &'static str {
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    let doc = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": k}]});
    Box::leak(doc.to_string().into_boxed_str())
}

#[test]
fn jwt_provider_check_reports_the_steps_and_exits_by_the_result() {
    let agent = start_agent(AgentConfig::default());
    let keys = serve(key_set(), true);
    let page = serve("<html>sign in</html>", false);
    write_entries(
        &agent,
        &[
            ("okta.hcl", provider("okta", &format!("http://{keys}/keys"))),
            ("html.hcl", provider("html", &format!("http://{page}/keys"))),
        ],
    );
    let check = |rest: &[&str]| {
        let mut v = vec!["jwt-provider", "check", "-http-addr", &agent];
        v.extend_from_slice(rest);
        run_args(&v)
    };

    let (code, out, err) = check(&["okta"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Provider \"okta\"");
    for (line, want) in lines[1..6]
        .iter()
        .zip(["source", "dns", "tcp", "http", "keys"])
    {
        assert!(line.starts_with(&format!("  ok   {want}")), "{out}");
    }
    assert!(
        out.contains("  ok   key 0: kid \"k1\", kty oct, alg HS256: usable for HS256"),
        "{out}"
    );
    assert!(out.ends_with("Result: OK\n"), "{out}");

    let good = hs256(serde_json::json!({"iss": "okta", "aud": "api", "exp": now() + 600}));
    let (code, out, _) = check(&["-jwt", &good, "okta"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("verified: a sidecar accepts this token"),
        "{out}"
    );

    let wrong = hs256(serde_json::json!({"iss": "someone", "aud": "api", "exp": now() + 600}));
    let (code, out, _) = check(&["-jwt", &wrong, "okta"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL issuer    iss \"someone\" is not the provider's Issuer \"okta\""),
        "{out}"
    );
    assert!(
        out.contains("not verified: Jwt issuer is not configured"),
        "{out}"
    );

    // The JSON form is the API's report.
    let (code, out, _) = check(&["-format", "json", "html"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Ok"], false);
    let last = v["Steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Step"], "keys");
    assert!(
        last["Detail"]
            .as_str()
            .unwrap()
            .starts_with("JWKS is not valid JSON"),
        "{last}"
    );

    let (code, _, err) = check(&["nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Config entry not found for \"jwt-provider\" / \"nope\""),
        "{err}"
    );
    let (code, _, err) = check(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("exactly one argument"), "{err}");
}

#[test]
fn config_write_notes_the_tribune_extensions_on_stderr() {
    let agent = start_agent(AgentConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("claims.hcl");
    std::fs::write(
        &f,
        "Kind = \"jwt-provider\"\nName = \"okta\"\nJSONWebKeySet { Local { Filename = \"/k\" } }\nClaimToHeaders = [ { Path = [\"perms\", \"role\"] HeaderName = \"x-role\" } ]\n",
    )
    .unwrap();
    let (code, out, err) =
        run_args(&["config", "write", "-http-addr", &agent, f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Config entry written: jwt-provider/okta\n");
    assert_eq!(
        err,
        "WARNING: jwt-provider \"okta\" has no Audiences: a token its issuer made for any other service or client is accepted; list the audiences meant for the services it guards\nnote: uses Tribune extensions: ClaimToHeaders (Consul would refuse this file)\n"
    );
    // A Consul file without mistakes prints nothing more.
    std::fs::write(
        &f,
        provider("okta", "http://127.0.0.1:1/keys")
            .replace("Issuer = \"okta\"", "Issuer = \"https://idp.example/\""),
    )
    .unwrap();
    let (code, _, err) = run_args(&["config", "write", "-http-addr", &agent, f.to_str().unwrap()]);
    // Only what the agent found fetching its keys (nothing answers on port 1).
    assert_eq!(code, 0);
    assert!(
        err.starts_with("WARNING: jwt-provider \"okta\": the agent could not fetch its keys (")
            && err.contains("Connection refused")
            && err.lines().count() == 1,
        "{err}"
    );
}
