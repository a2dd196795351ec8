//! `config write -stage`, `read -stage`, `staged`, `promote`, `unstage` against an
//! in-process agent: output and exit codes.

use crate::cli::agent_tests::start_agent;
use crate::cli::tests::run_args;
use tribune_server::AgentConfig;

#[test]
fn staging_commands_print_what_happened() {
    let addr = start_agent(AgentConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        f.to_str().unwrap().to_string()
    };
    let live = file("live.hcl", "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"allow\" } ]\n");
    let candidate = file("candidate.hcl", "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"deny\" } ]\n");
    let defaults = file(
        "d.hcl",
        "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n",
    );
    let a = ["-http-addr", addr.as_str()];
    let run = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend_from_slice(&a);
        run_args(&v)
    };
    assert_eq!(run(&["config", "write", &live]).0, 0);
    assert_eq!(
        run(&["config", "write", "-stage", &candidate]),
        (
            0,
            "Config entry staged: service-intentions/api\n".into(),
            String::new()
        )
    );
    let (code, out, _) = run(&[
        "config",
        "read",
        "-stage",
        "-kind",
        "service-intentions",
        "-name",
        "api",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("\"Action\": \"deny\""), "{out}");
    let (_, out, _) = run(&[
        "config",
        "read",
        "-kind",
        "service-intentions",
        "-name",
        "api",
    ]);
    assert!(
        out.contains("\"Action\": \"allow\""),
        "the live entry is unchanged: {out}"
    );
    let (code, out, _) = run(&["config", "staged"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("service-intentions/api (staged at index "),
        "{out}"
    );
    assert!(
        out.ends_with("  requests seen: 0, would change: 0 (0 sidecars)\n"),
        "{out}"
    );
    let (code, out, _) = run(&[
        "config",
        "staged",
        "-kind",
        "service-intentions",
        "-name",
        "api",
        "-format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["LiveChanged"], false);
    // Only kinds sidecars evaluate can be staged.
    let (code, _, err) = run(&["config", "write", "-stage", &defaults]);
    assert_eq!(code, 1);
    assert_eq!(err, "Error writing config entry service-defaults/api: Unexpected response code: 400 (only service-intentions, jwt-provider and mesh entries can be staged, not service-defaults)\n");
    // A live change makes promote refuse, and says what to do.
    let (code, _, _) = run(&["config", "write", &file("live2.hcl", "Kind = \"service-intentions\"\nName = \"api\"\nSources = [ { Name = \"web\" Action = \"allow\" Description = \"edited\" } ]\n")]);
    assert_eq!(code, 0);
    let (_, out, _) = run(&["config", "staged"]);
    assert!(
        out.contains("the live entry changed since staging"),
        "{out}"
    );
    let (code, _, err) = run(&[
        "config",
        "promote",
        "-kind",
        "service-intentions",
        "-name",
        "api",
    ]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error promoting config entry service-intentions/api: the live entry service-intentions/api changed since the candidate was staged"), "{err}");
    assert_eq!(
        run(&[
            "config",
            "promote",
            "-kind",
            "service-intentions",
            "-name",
            "api",
            "-force"
        ]),
        (
            0,
            "Config entry promoted: service-intentions/api\n".into(),
            String::new()
        )
    );
    let (_, out, _) = run(&[
        "config",
        "read",
        "-kind",
        "service-intentions",
        "-name",
        "api",
    ]);
    assert!(out.contains("\"Action\": \"deny\""), "promoted: {out}");
    assert_eq!(
        run(&["config", "promote", "-kind", "service-intentions", "-name", "api"]),
        (1, String::new(), "Error promoting config entry service-intentions/api: No staged candidate for \"service-intentions\" / \"api\"\n".into())
    );
    assert_eq!(run(&["config", "write", "-stage", &live]).0, 0);
    assert_eq!(
        run(&[
            "config",
            "unstage",
            "-kind",
            "service-intentions",
            "-name",
            "api"
        ]),
        (
            0,
            "Config entry unstaged: service-intentions/api\n".into(),
            String::new()
        )
    );
    assert_eq!(
        run(&["config", "staged"]),
        (0, "No staged candidates\n".into(), String::new())
    );
}
