//! High availability through the real binary: several `tribune agent -etcd-endpoints`
//! processes over one real 3-member etcd cluster (Debian's etcd, started by the test
//! in a temp dir on loopback ports), and sidecars that list several agents.

#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tribune_test_support::etcd::Cluster;

mod common;
use common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn agent_on(cluster: &Cluster, extra: &[&str]) -> (Proc, String) {
    let endpoints = cluster.endpoints_flag();
    let mut args = vec![
        "agent",
        "-etcd-endpoints",
        &endpoints,
        "-etcd-prefix",
        "/ha-test/",
        "-http-port",
        "0",
    ];
    args.extend_from_slice(extra);
    let (p, f) = spawn(&args, "agent running");
    let addr = field(&f, "HTTP addr").to_string();
    (p, addr)
}

fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn header(agent: &str, path: &str, name: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(agent).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| {
            l.split_once(": ")
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v.trim().to_string())
}

#[test]
fn two_agents_on_one_etcd_are_one_control_plane() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let (_a, a) = agent_on(&cluster, &[]);
    let (_b, b) = agent_on(&cluster, &[]);
    let defaults = write_file(
        dir.path(),
        "api.hcl",
        "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n",
    );
    cli(&a, &["config", "write", &defaults]);
    let (status, body) = get(&b, "/v1/config/service-defaults/api");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"Protocol\":\"http\""), "{body}");
    // Indexes come from etcd's revisions: the same through both agents.
    let ia = header(&a, "/v1/config/service-defaults", "x-consul-index").unwrap();
    let ib = header(&b, "/v1/config/service-defaults", "x-consul-index").unwrap();
    assert_eq!(ia, ib);

    // A blocking query on B wakes on a write through A.
    let b2 = b.clone();
    let index = ia.clone();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let (status, body) = get(
            &b2,
            &format!("/v1/config/service-defaults?index={index}&wait=30s"),
        );
        (status, body, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let web = write_file(
        dir.path(),
        "web.hcl",
        "Kind = \"service-defaults\"\nName = \"web\"\nProtocol = \"http\"\n",
    );
    let wrote = Instant::now();
    cli(&a, &["config", "write", &web]);
    let (status, body, _) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("\"web\""),
        "B's blocking query returned the new entry: {body}"
    );
    assert!(
        wrote.elapsed() < Duration::from_secs(5),
        "woke {:?} after the write",
        wrote.elapsed()
    );

    // CAS through B against the index read through A.
    let (_, entry) = get(&a, "/v1/config/service-defaults/web");
    let modify: u64 = serde_json::from_str::<serde_json::Value>(&entry).unwrap()["ModifyIndex"]
        .as_u64()
        .unwrap();
    let body = r#"{"Kind":"service-defaults","Name":"web","Protocol":"grpc"}"#;
    let stale = request(
        &b,
        "PUT",
        &format!("/v1/config?cas={}", modify - 1),
        &[],
        body,
    );
    assert_eq!(stale, (200, "false".into()));
    let fresh = request(&b, "PUT", &format!("/v1/config?cas={modify}"), &[], body);
    assert_eq!(fresh, (200, "true".into()));

    // Status answers with etcd's members.
    let (_, leader) = get(&a, "/v1/status/leader");
    let (_, peers) = get(&b, "/v1/status/peers");
    let peers: Vec<String> = serde_json::from_str(&peers).unwrap();
    assert_eq!(peers.len(), 3, "{peers:?}");
    let leader: String = serde_json::from_str(&leader).unwrap();
    assert!(peers.contains(&leader), "leader {leader} among {peers:?}");
}

#[test]
fn acl_bootstrap_and_the_ca_root_happen_once_per_cluster() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let acl = write_file(
        dir.path(),
        "acl.hcl",
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n}\n",
    );
    let (_a, a) = agent_on(&cluster, &["-config-file", &acl]);
    let (_b, b) = agent_on(&cluster, &["-config-file", &acl]);
    let threads: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|agent| {
            std::thread::spawn(move || request(&agent, "PUT", "/v1/acl/bootstrap", &[], ""))
        })
        .collect();
    let results: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<&(u16, String)> = results.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (s, body) in &results {
        if *s != 200 {
            assert_eq!(*s, 403);
            assert!(body.contains("ACL bootstrap no longer allowed"), "{body}");
        }
    }
    let secret = serde_json::from_str::<serde_json::Value>(&winners[0].1).unwrap()["SecretID"]
        .as_str()
        .unwrap()
        .to_string();
    // The winner's token works through the other agent too.
    let (s, _) = request(
        &b,
        "GET",
        "/v1/acl/token/self",
        &[("x-consul-token", &secret)],
        "",
    );
    assert_eq!(s, 200);

    // First leaves issued at the same instant through both agents: one CA.
    let threads: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, agent)| {
            let secret = secret.clone();
            std::thread::spawn(move || {
                request(
                    &agent,
                    "GET",
                    &format!("/v1/agent/connect/ca/leaf/svc{i}"),
                    &[("x-consul-token", &secret)],
                    "",
                )
            })
        })
        .collect();
    let mut root_ids = std::collections::HashSet::new();
    for t in threads {
        let (s, body) = t.join().unwrap();
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        root_ids.insert(v["RootID"].as_str().unwrap().to_string());
    }
    assert_eq!(
        root_ids.len(),
        1,
        "every leaf is signed by the one root: {root_ids:?}"
    );
    let (_, roots) = request(&a, "GET", "/v1/connect/ca/roots", &[], "");
    let roots: serde_json::Value = serde_json::from_str(&roots).unwrap();
    assert_eq!(roots["Roots"].as_array().unwrap().len(), 1, "{roots}");
}

#[test]
fn a_sidecar_fails_over_to_another_agent_with_no_failed_request() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let (mut agent_a, a) = agent_on(&cluster, &[]);
    let (_b, b) = agent_on(&cluster, &[]);
    let defaults = write_file(
        dir.path(),
        "api.hcl",
        "Kind = \"service-defaults\"\nName = \"api\"\nProtocol = \"http\"\n",
    );
    cli(&a, &["config", "write", &defaults]);
    let allow = write_file(
        dir.path(),
        "allow.hcl",
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [{ Name = \"*\", Permissions = [{ Action = \"allow\", HTTP { PathPrefix = \"/hello\" } }] }]\n",
    );
    cli(&a, &["config", "write", &allow]);
    let app = upstream();
    let agents = format!("{a},{b}");
    let (_proxy, f) = spawn(
        &[
            "connect",
            "proxy",
            "-service",
            "api",
            "-http-addr",
            &agents,
            "-local-service-address",
            &app.to_string(),
            "-edge-listener",
            "127.0.0.1:0",
            "-admin-bind",
            "127.0.0.1:0",
        ],
        "proxy running",
    );
    let edge = field(&f, "Edge listener").to_string();
    eventually(&edge, 200);

    // Load while agent A (the one the sidecar watches) is killed.
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (edge, failed, done, stop) =
                (edge.clone(), failed.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (s, _) = get(&edge, "/hello");
                    if s != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    agent_a.kill();
    // A change through B reaches the sidecar (it now watches B).
    let allow_other = write_file(
        dir.path(),
        "other.hcl",
        "Kind = \"service-intentions\"\nName = \"api\"\nSources = [{ Name = \"*\", Permissions = [{ Action = \"allow\", HTTP { PathPrefix = \"/\" } }] }]\n",
    );
    cli(&b, &["config", "write", &allow_other]);
    let took = wait_for("the change through B", Duration::from_secs(20), || {
        get(&edge, "/other").0 == 200
    });
    // Keep the load on for a while after the failover.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert!(done.load(Ordering::Relaxed) > 100, "load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no failed data-plane request while its agent died"
    );
    eprintln!(
        "{} requests, 0 failed; change via B enforced {took:?} after the write",
        done.load(Ordering::Relaxed)
    );
}

#[test]
fn cross_entry_checks_hold_under_concurrent_writers_on_different_agents() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    let (_a, a) = agent_on(&cluster, &[]);
    let (_b, b) = agent_on(&cluster, &[]);
    let provider = |n: usize| {
        format!(
            r#"{{"Kind":"jwt-provider","Name":"p{n}","Issuer":"https://p{n}","JSONWebKeySet":{{"Local":{{"JWKS":"eyJrZXlzIjpbXX0="}}}}}}"#
        )
    };
    let intention = |n: usize| {
        format!(
            r#"{{"Kind":"service-intentions","Name":"svc{n}","Sources":[{{"Name":"web","Action":"allow","JWT":{{"Providers":[{{"Name":"p{n}"}}]}}}}]}}"#
        )
    };
    // Round n: provider pn exists; A deletes it while B writes an intention that
    // references it. Either may win, never both.
    let mut both_refused = 0;
    for n in 0..12 {
        let (s, body) = request(&a, "PUT", "/v1/config", &[], &provider(n));
        assert_eq!(s, 200, "{body}");
        let (a2, b2) = (a.clone(), b.clone());
        let del = std::thread::spawn(move || {
            request(
                &a2,
                "DELETE",
                &format!("/v1/config/jwt-provider/p{n}"),
                &[],
                "",
            )
        });
        let body = intention(n);
        let put = std::thread::spawn(move || request(&b2, "PUT", "/v1/config", &[], &body));
        let (del, put) = (del.join().unwrap(), put.join().unwrap());
        let provider_gone = get(&a, &format!("/v1/config/jwt-provider/p{n}")).0 == 404;
        let intention_there = get(&b, &format!("/v1/config/service-intentions/svc{n}")).0 == 200;
        assert!(
            !(provider_gone && intention_there),
            "round {n}: an intention references a deleted provider (delete {del:?}, put {put:?})"
        );
        if del.0 != 200 && put.0 != 200 {
            both_refused += 1;
        }
    }
    assert!(both_refused < 12, "some writes went through");

    // Writers of unrelated entries through both agents at once all succeed.
    let threads: Vec<_> = (0..6)
        .map(|w| {
            let agent = if w % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                for i in 0..15 {
                    let body = format!(
                        r#"{{"Kind":"service-defaults","Name":"s{w}-{i}","Protocol":"http"}}"#
                    );
                    let (s, text) = request(&agent, "PUT", "/v1/config", &[], &body);
                    assert_eq!((s, text.as_str()), (200, "true"), "writer {w} entry {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Each agent's decoded-entry cache catches up with the other's writes (changed
    // records only) and with deletes (a full read): both list exactly what etcd holds.
    let count = |agent: &str| {
        let (_, list) = get(agent, "/v1/config/service-defaults");
        serde_json::from_str::<Vec<serde_json::Value>>(&list)
            .unwrap()
            .len()
    };
    assert_eq!((count(&a), count(&b)), (90, 90));
    let (s, _) = request(
        &a,
        "PUT",
        "/v1/config",
        &[],
        r#"{"Kind":"service-defaults","Name":"extra","Protocol":"grpc"}"#,
    );
    assert_eq!(s, 200);
    assert_eq!(count(&b), 91);
    let (_, extra) = get(&b, "/v1/config/service-defaults/extra");
    assert!(extra.contains("grpc"), "{extra}");
    let (s, _) = request(&b, "DELETE", "/v1/config/service-defaults/s0-0", &[], "");
    assert_eq!(s, 200);
    assert_eq!((count(&a), count(&b)), (90, 90));
}

#[test]
fn the_agent_reaches_etcd_over_tls_with_the_flags_given() {
    let _serial = serial();
    let cluster = Cluster::start_tls(1);
    let tls = cluster.tls.clone().unwrap();
    let (ca, cert, key) = (
        tls.ca.to_str().unwrap().to_string(),
        tls.client_cert.to_str().unwrap().to_string(),
        tls.client_key.to_str().unwrap().to_string(),
    );
    let (_a, a) = agent_on(
        &cluster,
        &["-etcd-cacert", &ca, "-etcd-cert", &cert, "-etcd-key", &key],
    );
    let body = r#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#;
    assert_eq!(
        request(&a, "PUT", "/v1/config", &[], body),
        (200, "true".into())
    );
    // The same through the config file's etcd block.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "agent.hcl",
        &format!(
            "etcd {{\n  endpoints = [\"{}\"]\n  prefix = \"/ha-test/\"\n  ca_file = \"{ca}\"\n  cert_file = \"{cert}\"\n  key_file = \"{key}\"\n}}\n",
            cluster.endpoints()[0]
        ),
    );
    let (_b, f) = spawn(
        &["agent", "-config-file", &file, "-http-port", "0"],
        "agent running",
    );
    let b = field(&f, "HTTP addr").to_string();
    let (s, entry) = get(&b, "/v1/config/service-defaults/api");
    assert_eq!(s, 200, "{entry}");
    // A client key every user may read is refused (round 3, item 2), naming it.
    {
        use std::os::unix::fs::PermissionsExt;
        let open_key = dir.path().join("open-key.pem");
        std::fs::copy(&key, &open_key).unwrap();
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["agent", "-etcd-endpoints", &cluster.endpoints_flag()])
            .args(["-etcd-cacert", &ca, "-etcd-cert", &cert, "-etcd-key"])
            .arg(&open_key)
            .args(["-http-port", "0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("readable by every user (mode 0644)"), "{err}");
    }
    // Without the client certificate the agent does not start, and says why.
    let out = std::process::Command::new(BIN)
        .args([
            "agent",
            "-etcd-endpoints",
            &cluster.endpoints_flag(),
            "-etcd-cacert",
            &ca,
            "-http-port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Error connecting to etcd"), "{err}");
}

#[test]
fn without_etcd_quorum_the_api_answers_503_naming_etcd_and_recovers() {
    let _serial = serial();
    let mut cluster = Cluster::start(3);
    let (_a, a) = agent_on(&cluster, &[]);
    let body = r#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#;
    assert_eq!(request(&a, "PUT", "/v1/config", &[], body).0, 200);
    cluster.kill(1);
    cluster.kill(2);
    let start = Instant::now();
    let (s, text) = request(
        &a,
        "PUT",
        "/v1/config",
        &[],
        body.replace("http", "grpc").as_str(),
    );
    assert_eq!(s, 503, "{text}");
    assert!(text.contains("etcd"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let (s, text) = get(&a, "/v1/config/service-defaults/api");
    assert_eq!(s, 503, "no stale read: {text}");
    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_healthy(Duration::from_secs(30));
    wait_for("the agent to recover", Duration::from_secs(20), || {
        get(&a, "/v1/config/service-defaults/api").0 == 200
    });
    assert_eq!(
        request(
            &a,
            "PUT",
            "/v1/config",
            &[],
            body.replace("http", "grpc").as_str()
        ),
        (200, "true".into())
    );
}

/// Snapshots are store-independent: an embedded store's snapshot restores into an
/// agent on etcd (in batches: more records than one etcd transaction takes), and
/// that agent's snapshot restores into an embedded store, every record equal.
#[test]
fn a_snapshot_moves_the_state_from_the_embedded_store_to_etcd_and_back() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mut embedded, embedded_addr) = dev_agent(&[]);
    for i in 0..130 {
        let (s, b) = request(
            &embedded_addr,
            "PUT",
            "/v1/config",
            &[],
            &format!(r#"{{"Kind":"service-defaults","Name":"svc-{i}","Protocol":"http"}}"#),
        );
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = request(
        &embedded_addr,
        "PUT",
        "/v1/agent/service/register",
        &[],
        r#"{"Name":"web","Port":8080}"#,
    );
    assert_eq!(s, 200, "{b}");
    let save = |agent: &str, name: &str| {
        let file = dir.path().join(name);
        let (code, out, err) = run_cli(agent, &["snapshot", "save", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        file
    };
    let restore = |agent: &str, file: &std::path::Path| {
        let (code, out, err) = run_cli(agent, &["snapshot", "restore", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
    };
    let from_embedded = save(&embedded_addr, "embedded.snap");
    let want = snapshot_contents(&read_json(&from_embedded));
    assert_eq!(
        want.iter()
            .find(|(t, _)| t == "config-entries")
            .map(|(_, r)| r.len()),
        Some(130)
    );

    let cluster = Cluster::start(1);
    let (mut on_etcd, etcd_addr) = agent_on(&cluster, &[]);
    restore(&etcd_addr, &from_embedded);
    let from_etcd = save(&etcd_addr, "etcd.snap");
    assert_eq!(snapshot_contents(&read_json(&from_etcd)), want);
    let (s, _) = get(&etcd_addr, "/v1/config/service-defaults/svc-129");
    assert_eq!(s, 200);

    embedded.kill();
    let (mut fresh, fresh_addr) = dev_agent(&[]);
    restore(&fresh_addr, &from_etcd);
    let back = save(&fresh_addr, "back.snap");
    assert_eq!(snapshot_contents(&read_json(&back)), want);
    on_etcd.kill();
    fresh.kill();
}
