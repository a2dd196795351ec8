//! The control plane at scale (issue #40; run by `bench/scale.sh`): N simulated
//! sidecars, each holding the sidecar's blocking policy query
//! (`/v1/tribune/proxy-snapshot/<service>`) with its own ACL token on its own
//! connection, against an agent with T tokens and E service-intentions.
//!
//! ```text
//! cargo run --release -p tribune --example scale -- \
//!     --agent ADDR[,ADDR...] --token ROOT --agent-pid PID[,PID...] \
//!     --watchers 10000 --tokens 50000 --entries 10000
//! ```
//!
//! It reports: API latency with a token, config write latency, the propagation of a
//! one-service change (its watcher's wake-up; any other watcher woken is counted) and
//! of a `*` change (every watcher's), the agents' CPU seconds per propagation, and
//! their memory per held watcher. `--watch health` holds the sidecars' other
//! blocking query instead, `/v1/health/connect/<service>` (the instances an upstream
//! dials), over E registered services with sidecars; a one-service change is then a
//! re-registration of that service's sidecar (there is no `*` change).
//!
//! `--queries 3` makes each simulated sidecar hold what a real one holds at once: its
//! policy query, its leaf certificate's and one upstream's endpoints
//! (`/v1/agent/connect/ca/leaf/<service>`, `/v1/health/connect/<service>`), and
//! `--h2` makes it speak as the sidecar does (`Client::multiplexed`: HTTP/2, the
//! queries streams of one connection). Memory is then reported per sidecar and per
//! held query. Every loop is bounded; nothing leaves 127.0.0.1 but what the
//! addresses given name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tribune_client::{Client, Target};

/// First queries in flight at once while the watchers arrive.
const RAMP: usize = 64;

struct Args {
    agents: Vec<String>,
    pids: Vec<u32>,
    root: String,
    watchers: usize,
    tokens: usize,
    entries: usize,
    changes: usize,
    /// `health`: watch `/v1/health/connect/<service>` instead of the policy document.
    health: bool,
    /// Speak as the sidecar does (HTTP/2 where the agent does).
    h2: bool,
    /// Blocking queries each simulated sidecar holds (1 to 3).
    queries: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        agents: Vec::new(),
        pids: Vec::new(),
        root: String::new(),
        watchers: 1000,
        tokens: 10,
        entries: 10,
        changes: 20,
        health: false,
        h2: false,
        queries: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--agent" => a.agents = value.split(',').map(str::to_string).collect(),
            "--agent-pid" => {
                a.pids = value
                    .split(',')
                    .map(|p| p.parse().map_err(|e| format!("--agent-pid: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--token" => a.root = value,
            "--watchers" => a.watchers = num()?,
            "--tokens" => a.tokens = num()?,
            "--entries" => a.entries = num()?,
            "--changes" => a.changes = num()?,
            "--queries" => match num()? {
                n @ 1..=3 => a.queries = n,
                n => return Err(format!("--queries {n}: 1 to 3")),
            },
            "--h2" => a.h2 = value == "1" || value == "true",
            "--watch" => match value.as_str() {
                "snapshot" => a.health = false,
                "health" => a.health = true,
                other => return Err(format!("--watch {other:?}: snapshot or health")),
            },
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.agents.is_empty() || a.root.is_empty() {
        return Err("--agent and --token are required".into());
    }
    Ok(a)
}

fn client(addr: &str, token: &str) -> Client {
    Client::new(&target(addr, token)).expect("agent address")
}

fn target(addr: &str, token: &str) -> Target {
    Target {
        addr: addr.to_string(),
        token: Some(token.to_string()),
        ..Default::default()
    }
}

/// How a held query reports: first answers counted in `armed`, failures in
/// `failures`, and (for the measured query) each later answer sent to `woke` with its
/// watcher's number.
#[derive(Clone)]
struct Report {
    ramp: Arc<Semaphore>,
    armed: Arc<AtomicUsize>,
    failures: Arc<AtomicU64>,
    woke: Option<(usize, mpsc::UnboundedSender<Woke>)>,
}

/// Holds the blocking query `path` on `c` (its `?index=` filled in), at most 10 000
/// answers; its first query waits for a place in the ramp.
async fn hold(c: Client, path: String, report: Report) {
    let mut index = 0u64;
    for round in 0..10_000u32 {
        let permit = if round == 0 {
            report.ramp.acquire().await.ok()
        } else {
            None
        };
        let answer = c
            .request("GET", &format!("{path}?index={index}&wait=120s"), None)
            .await;
        drop(permit);
        match answer {
            Ok(r) if r.status == 200 => {
                index = r
                    .header("x-consul-index")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if round == 0 {
                    report.armed.fetch_add(1, Ordering::Relaxed);
                } else if let Some((watcher, tx)) = &report.woke {
                    let woke = Woke {
                        watcher: *watcher,
                        at: Instant::now(),
                    };
                    if tx.send(woke).is_err() {
                        return;
                    }
                }
            }
            _ => {
                report.failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The agents' user+system CPU seconds, and resident memory in KB.
fn usage(pids: &[u32]) -> (f64, u64) {
    let mut cpu = 0.0;
    let mut rss = 0;
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command's closing parenthesis: utime is the 14th.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
                + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            cpu += ticks / 100.0;
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            rss += status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (cpu, rss)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        percentile(&d, 0.5).as_secs_f64() * 1e3,
        percentile(&d, 0.99).as_secs_f64() * 1e3,
        d.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        d.len()
    )
}

async fn must(c: &Client, method: &str, path: &str, body: Option<String>) -> String {
    for attempt in 0..20u64 {
        match c
            .request(method, path, body.clone().map(String::into_bytes))
            .await
        {
            Ok(r) if r.status == 200 => return r.body,
            Ok(r) if r.status == 503 || r.status == 429 => {}
            Ok(r) => panic!("{method} {path}: {} {}", r.status, r.body),
            Err(e) => eprintln!("{method} {path}: {e} (retrying)"),
        }
        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
    }
    panic!("{method} {path}: no answer after 20 attempts")
}

/// Runs `n` jobs, `width` at a time.
async fn bounded<F, Fut>(n: usize, width: usize, job: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(width));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let fut = job(i);
        tasks.push(tokio::spawn(async move {
            fut.await;
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.expect("job");
    }
}

const REGISTER: &str = tribune_model::api::paths::AGENT_SERVICE_REGISTER;

/// Service `svc-i` with a sidecar; `generation` goes in its sidecar's meta, so a new
/// one changes the sidecar's registration (what `health/connect` watchers see).
fn registration(i: usize, generation: usize) -> String {
    serde_json::json!({
        "ID": format!("svc-{i}"),
        "Name": format!("svc-{i}"),
        "Port": 10_000 + (i % 50_000),
        "Connect": {"SidecarService": {
            "Port": 20_000 + (i % 40_000),
            "Meta": {"generation": generation.to_string()}
        }}
    })
    .to_string()
}

fn intentions(service: &str, source: &str) -> String {
    serde_json::json!({
        "Kind": "service-intentions",
        "Name": service,
        "Sources": [{"Name": source, "Action": "allow"}]
    })
    .to_string()
}

/// One woken watcher: which, at what index, when.
struct Woke {
    watcher: usize,
    at: Instant,
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::exit(2);
        }
    };
    let root = Arc::new(client(&a.agents.join(","), &a.root));
    println!(
        "scale: {} watchers, {} tokens, {} service-intentions, {} agent(s)",
        a.watchers,
        a.tokens,
        a.entries,
        a.agents.len()
    );

    // Set-up: one policy that lets a sidecar read its service's document, one token
    // per watcher, filler tokens up to T, E intentions (svc-0 .. svc-E-1).
    must(
        &root,
        "PUT",
        "/v1/acl/policy",
        Some(
            serde_json::json!({"Name": "sidecars", "Rules": "service_prefix \"svc-\" { policy = \"write\" } node_prefix \"\" { policy = \"read\" }"})
                .to_string(),
        ),
    )
    .await;
    let started = Instant::now();
    let secrets: Arc<Vec<String>> = Arc::new(
        (0..a.tokens.max(a.watchers))
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect(),
    );
    {
        let secrets = secrets.clone();
        let root = root.clone();
        bounded(secrets.len(), 16, move |i| {
            let root = root.clone();
            let secret = secrets[i].clone();
            async move {
                let body = serde_json::json!({
                    "SecretID": secret,
                    "Description": format!("scale {i}"),
                    "Policies": [{"Name": "sidecars"}]
                });
                must(&root, "PUT", "/v1/acl/token", Some(body.to_string())).await;
            }
        })
        .await;
    }
    println!(
        "set-up: {} tokens in {:.1} s",
        secrets.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    {
        let root = root.clone();
        bounded(a.entries, 16, move |i| {
            let root = root.clone();
            async move {
                let body = intentions(&format!("svc-{i}"), "client");
                must(&root, "PUT", "/v1/config", Some(body)).await;
            }
        })
        .await;
    }
    must(&root, "PUT", "/v1/config", Some(intentions("*", "ops"))).await;
    println!(
        "set-up: {} entries in {:.1} s",
        a.entries + 1,
        started.elapsed().as_secs_f64()
    );
    if a.health {
        let started = Instant::now();
        let root = root.clone();
        bounded(a.entries, 16, move |i| {
            let root = root.clone();
            async move {
                must(&root, "PUT", REGISTER, Some(registration(i, 0))).await;
            }
        })
        .await;
        println!(
            "set-up: {} services with sidecars registered in {:.1} s",
            a.entries,
            started.elapsed().as_secs_f64()
        );
    }

    // API latency with a token (a watcher's), and config write latency.
    let reader = client(&a.agents[0], &secrets[0]);
    let mut reads = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        must(&reader, "GET", "/v1/config/service-intentions/svc-0", None).await;
        reads.push(t.elapsed());
    }
    println!("API GET with a token: {}", summary(reads));
    let mut writes = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        must(
            &root,
            "PUT",
            "/v1/config",
            Some(intentions("svc-0", &format!("writer-{i}"))),
        )
        .await;
        writes.push(t.elapsed());
    }
    println!("config write: {}", summary(writes));

    // The watchers: each on its own client (its own connection), spread over the
    // agents, watching svc-(i mod E) with its own token.
    let (before_cpu, before_rss) = usage(&a.pids);
    let (tx, mut rx) = mpsc::unbounded_channel::<Woke>();
    let armed = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let services = a.entries.max(1);
    // Watchers arrive at most RAMP first queries at a time (sidecars starting, not
    // all at one instant; a restart's reconnect is spread by their back-off jitter).
    let ramp = Arc::new(Semaphore::new(RAMP));
    let held = Arc::new(AtomicUsize::new(0));
    let arming = Instant::now();
    let health = a.health;
    for w in 0..a.watchers {
        let addr = &a.agents[w % a.agents.len()];
        let c = if a.h2 {
            Client::multiplexed(&target(addr, &secrets[w])).expect("agent address")
        } else {
            client(addr, &secrets[w])
        };
        let service = format!("svc-{}", w % services);
        let policy = format!("/v1/tribune/proxy-snapshot/{service}");
        let endpoints = format!("/v1/health/connect/{service}");
        // The query measured, and the other ones a sidecar holds.
        let (measured, second) = if health {
            (endpoints, policy)
        } else {
            (policy, endpoints)
        };
        let others = [format!("/v1/agent/connect/ca/leaf/{service}"), second];
        let report = Report {
            ramp: ramp.clone(),
            armed: held.clone(),
            failures: failures.clone(),
            woke: None,
        };
        for path in others.into_iter().take(a.queries - 1) {
            tokio::spawn(hold(c.clone(), path, report.clone()));
        }
        let report = Report {
            armed: armed.clone(),
            woke: Some((w, tx.clone())),
            ..report
        };
        tokio::spawn(hold(c, measured, report));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while (armed.load(Ordering::Relaxed) < a.watchers
        || held.load(Ordering::Relaxed) < a.watchers * (a.queries - 1))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the last ones time to send their blocking query.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while rx.try_recv().is_ok() {}
    let (held_cpu, held_rss) = usage(&a.pids);
    println!(
        "watchers armed in {:.1} s ({RAMP} first queries at a time)",
        arming.elapsed().as_secs_f64() - 2.0
    );
    let per_sidecar = (held_rss.saturating_sub(before_rss)) as f64 / a.watchers.max(1) as f64;
    println!(
        "watchers armed: {} of {} ({} failed requests); agents' RSS {} -> {} KB: {:.1} KB per watcher; set-up CPU {:.1} s",
        armed.load(Ordering::Relaxed),
        a.watchers,
        failures.load(Ordering::Relaxed),
        before_rss,
        held_rss,
        per_sidecar,
        held_cpu - before_cpu
    );
    if a.queries > 1 {
        println!(
            "each watcher holds {} queries ({}): {:.1} KB per held query",
            a.queries,
            if a.h2 {
                "HTTP/2 streams of one connection"
            } else {
                "one connection each"
            },
            per_sidecar / a.queries as f64
        );
    }

    // One-service changes: only that service's watchers should wake.
    let mut latencies = Vec::new();
    let mut others = 0usize;
    let watchers_of = |s: usize| {
        (0..a.watchers)
            .filter(|w| w % services == s)
            .collect::<Vec<_>>()
    };
    let (cpu0, _) = usage(&a.pids);
    for k in 0..a.changes {
        let s = (k * 7919) % services.min(a.watchers);
        let mut waiting: HashMap<usize, ()> = watchers_of(s).into_iter().map(|w| (w, ())).collect();
        let t0 = Instant::now();
        if a.health {
            must(&root, "PUT", REGISTER, Some(registration(s, k + 1))).await;
        } else {
            must(
                &root,
                "PUT",
                "/v1/config",
                Some(intentions(&format!("svc-{s}"), &format!("one-{k}"))),
            )
            .await;
        }
        let until = Instant::now() + Duration::from_secs(30);
        while !waiting.is_empty() {
            let Ok(Some(w)) = tokio::time::timeout_at(until.into(), rx.recv()).await else {
                break;
            };
            if waiting.remove(&w.watcher).is_some() {
                latencies.push(w.at - t0);
            } else {
                others += 1;
            }
        }
        // Anything else woken by this change arrives within a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(w) = rx.try_recv() {
            let _ = w;
            others += 1;
        }
    }
    let (cpu1, _) = usage(&a.pids);
    println!(
        "one-service change ({} changes): {}; other watchers woken: {}; agents' CPU {:.3} s per change",
        a.changes,
        summary(latencies),
        others,
        (cpu1 - cpu0) / a.changes.max(1) as f64
    );

    // `*` changes: every watcher wakes (policy documents only).
    let star_changes = if a.health { 0 } else { 3 };
    for k in 0..star_changes {
        let (cpu0, _) = usage(&a.pids);
        let t0 = Instant::now();
        must(
            &root,
            "PUT",
            "/v1/config",
            Some(intentions("*", &format!("star-{k}"))),
        )
        .await;
        let mut seen = vec![false; a.watchers];
        let mut latencies = Vec::with_capacity(a.watchers);
        let until = Instant::now() + Duration::from_secs(120);
        while latencies.len() < a.watchers {
            let Ok(Some(w)) = tokio::time::timeout_at(until.into(), rx.recv()).await else {
                break;
            };
            if !seen[w.watcher] {
                seen[w.watcher] = true;
                latencies.push(w.at - t0);
            }
        }
        let (cpu1, _) = usage(&a.pids);
        println!(
            "`*` change {k}: {} of {} watchers: {}; agents' CPU {:.2} s",
            latencies.len(),
            a.watchers,
            summary(latencies),
            cpu1 - cpu0
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        while rx.try_recv().is_ok() {}
    }
}
