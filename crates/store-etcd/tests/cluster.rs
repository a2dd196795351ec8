//! The etcd store against a real 3-member etcd cluster on loopback (Debian's etcd;
//! `.ci/run` installs it). Each test starts its own cluster; a lock runs them one at
//! a time so that elections are not starved of CPU on a 2-core machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The lock serializes whole tests, across their awaits, on purpose.
#![allow(clippy::await_holding_lock)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tribune_store::{Cas, ErrorKind, Op, Store};
use tribune_store_etcd::{EtcdConfig, EtcdStore};
use tribune_test_support::etcd::Cluster;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(endpoints: Vec<String>, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints,
        prefix: prefix.into(),
        request_timeout: Duration::from_secs(3),
        ..EtcdConfig::default()
    }
}

async fn store(cluster: &Cluster, prefix: &str) -> Arc<EtcdStore> {
    EtcdStore::connect(&config(cluster.endpoints(), prefix))
        .await
        .unwrap()
}

fn put(table: &str, key: &str, value: &str, cas: Cas) -> Op {
    Op::put(table, key, value.as_bytes().to_vec(), cas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_meets_the_store_contract() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    let s = store(&cluster, "/contract/").await;
    tribune_store::conformance::run_all(s.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_agent_is_read_and_wakes_watchers_through_another() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    // Agent A talks to member 0 only, agent B to member 2 only.
    let a = EtcdStore::connect(&config(vec![cluster.members[0].client_url()], "/t/"))
        .await
        .unwrap();
    let b = EtcdStore::connect(&config(vec![cluster.members[2].client_url()], "/t/"))
        .await
        .unwrap();
    let mut rx = b.subscribe();
    rx.borrow_and_update();
    let w = a.apply(&[put("cfg", "x", "1", Cas::Any)]).await.unwrap();
    // Linearizable: visible through B as soon as A's write is acknowledged.
    let r = b.get("cfg", "x").await.unwrap().unwrap();
    assert_eq!(
        (r.value.as_slice(), r.modify_index),
        (b"1".as_slice(), w.index)
    );
    assert_eq!(b.table_index("cfg").await.unwrap(), w.index);
    tokio::time::timeout(Duration::from_secs(5), async {
        while *rx.borrow_and_update() < w.index {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("B's watchers wake on A's write");
    // The prefix separates clusters of agents sharing one etcd.
    let other = store(&cluster, "/other/").await;
    assert!(other.get("cfg", "x").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_through_several_agents_has_exactly_one_winner() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    let agents = [
        store(&cluster, "/t/").await,
        store(&cluster, "/t/").await,
        store(&cluster, "/t/").await,
    ];
    let created = agents[0]
        .apply(&[put("cfg", "x", "0", Cas::Any)])
        .await
        .unwrap();
    for round in 0..5 {
        let current = agents[0].get("cfg", "x").await.unwrap().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, a) in agents.iter().enumerate() {
            for j in 0..4 {
                let a = a.clone();
                let cas = Cas::ModifyIndex(current.modify_index);
                tasks.spawn(async move {
                    let v = format!("{round}-{i}-{j}");
                    let r = a.apply(&[put("cfg", "x", &v, cas)]).await.unwrap();
                    (r.ok, v)
                });
            }
        }
        let mut winners = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (ok, v) = r.unwrap();
            if ok {
                winners.push(v);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let now = agents[1].get("cfg", "x").await.unwrap().unwrap();
        assert_eq!(now.value, winners[0].as_bytes());
        assert_eq!(now.create_index, created.index);
    }
    // cas=0 (create only): one winner among racers too.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, a) in agents.iter().enumerate() {
        let a = a.clone();
        tasks.spawn(async move {
            a.apply(&[put("meta", "bootstrap", &i.to_string(), Cas::Absent)])
                .await
                .unwrap()
                .ok
        });
    }
    let mut wins = 0;
    while let Some(r) = tasks.join_next().await {
        wins += usize::from(r.unwrap());
    }
    assert_eq!(wins, 1, "create-once has exactly one winner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_writes_through_several_agents_never_both_pass_their_check() {
    // Each writer checks "fewer than 3 keys in the table" and adds one, guarded on the
    // table index it read: however they interleave, the table ends with exactly 3.
    let _serial = serial();
    let cluster = Cluster::start(3);
    let agents = [store(&cluster, "/t/").await, store(&cluster, "/t/").await];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let a = agents[i % 2].clone();
        tasks.spawn(async move {
            for _ in 0..200 {
                let index = a.table_index("limited").await.unwrap();
                let n = a.list("limited").await.unwrap().len();
                if n >= 3 {
                    return false;
                }
                let r = a
                    .apply(&[
                        put("limited", &format!("k{i}"), "1", Cas::Any),
                        Op::unchanged("limited", index),
                    ])
                    .await
                    .unwrap();
                if r.ok {
                    return true;
                }
                assert!(r.stale);
            }
            panic!("writer {i} never finished");
        });
    }
    let mut added = 0;
    while let Some(r) = tasks.join_next().await {
        added += usize::from(r.unwrap());
    }
    assert_eq!(added, 3);
    assert_eq!(agents[0].list("limited").await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_under_write_load_loses_no_acknowledged_write() {
    let _serial = serial();
    let mut cluster = Cluster::start(3);
    let a = store(&cluster, "/t/").await;
    let b = store(&cluster, "/t/").await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let s = if w % 2 == 0 { a.clone() } else { b.clone() };
        let acked = acked.clone();
        let failed = failed.clone();
        writers.spawn(async move {
            for i in 0..60 {
                let key = format!("w{w}-{i}");
                match s.apply(&[put("load", &key, "v", Cas::Any)]).await {
                    Ok(r) if r.ok => acked.lock().unwrap().push(key),
                    _ => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Kill the leader's peer... any member: with 2 of 3 up the cluster keeps quorum.
    cluster.kill(0);
    while writers.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "writes went on with one member down: {} acked",
        acked.len()
    );
    cluster.restart(0);
    cluster.wait_healthy(Duration::from_secs(30));
    // Every acknowledged write is there, through every agent and through the
    // restarted member alone.
    let c = EtcdStore::connect(&config(vec![cluster.members[0].client_url()], "/t/"))
        .await
        .unwrap();
    for s in [&a, &b, &c] {
        let keys: std::collections::HashSet<String> = s
            .list("load")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        for k in &acked {
            assert!(keys.contains(k), "acknowledged write {k} lost");
        }
    }
    eprintln!(
        "acked {} writes, {} failed while member 0 was killed",
        acked.len(),
        failed.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_reads_and_writes_fail_fast_and_recover_when_it_returns() {
    let _serial = serial();
    let mut cluster = Cluster::start(3);
    let s = store(&cluster, "/t/").await;
    s.apply(&[put("cfg", "x", "1", Cas::Any)]).await.unwrap();
    cluster.kill(1);
    cluster.kill(2);
    let started = Instant::now();
    let e = s
        .apply(&[put("cfg", "x", "2", Cas::Any)])
        .await
        .expect_err("no quorum: the write must fail");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.to_string().contains("etcd"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let e = s
        .get("cfg", "x")
        .await
        .expect_err("no quorum: no stale read passed off as current");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut rx = s.subscribe();
    rx.borrow_and_update();
    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_healthy(Duration::from_secs(30));
    // The same store (no restart of the agent) works again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let w = loop {
        match s.apply(&[put("cfg", "x", "3", Cas::Any)]).await {
            Ok(w) => break w,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for recovery: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("not recovered: {e}"),
        }
    };
    assert_eq!(s.get("cfg", "x").await.unwrap().unwrap().value, b"3");
    // The watch is back too.
    tokio::time::timeout(Duration::from_secs(10), async {
        while *rx.borrow_and_update() < w.index {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("watchers wake again after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_falls_behind_compaction_resyncs_and_misses_nothing() {
    let _serial = serial();
    let mut cluster = Cluster::start(3);
    // The watching agent reaches etcd only through member 0.
    let watching = EtcdStore::connect(&config(vec![cluster.members[0].client_url()], "/t/"))
        .await
        .unwrap();
    let writer = EtcdStore::connect(&config(
        vec![
            cluster.members[1].client_url(),
            cluster.members[2].client_url(),
        ],
        "/t/",
    ))
    .await
    .unwrap();
    let mut rx = watching.subscribe();
    rx.borrow_and_update();
    cluster.kill(0);
    // While its watch is cut: changes, then compaction of the history it would resume
    // from.
    let mut last = 0;
    for i in 0..20 {
        last = writer
            .apply(&[put("cfg", "x", &i.to_string(), Cas::Any)])
            .await
            .unwrap()
            .index;
    }
    cluster.compact(last);
    cluster.restart(0);
    cluster.wait_healthy(Duration::from_secs(30));
    tokio::time::timeout(Duration::from_secs(20), async {
        while *rx.borrow_and_update() < last {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the watcher is woken at or after the last change");
    assert_eq!(
        watching.get("cfg", "x").await.unwrap().unwrap().value,
        b"19"
    );
    assert!(
        watching.resyncs() >= 1,
        "the resume point was compacted: a resync ran"
    );
    // And it keeps following new changes after the resync.
    let next = writer
        .apply(&[put("cfg", "x", "20", Cas::Any)])
        .await
        .unwrap()
        .index;
    tokio::time::timeout(Duration::from_secs(10), async {
        while *rx.borrow_and_update() < next {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the watch follows changes after the resync");
}

mod linearizability {
    //! A recorded concurrent history of reads, writes and CAS on a few keys through
    //! three agents, with a member killed and restarted in the middle, checked with
    //! a Wing-Gong linearizability tester (`consistency_model`), one key at a time
    //! (linearizability is local).

    use super::*;
    use consistency_model::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

    /// A register with Consul's indexes: a value and the index of its last write.
    /// The index of a write is only known from its answer, so an unanswered write
    /// (in flight at the end, outcome unknown) leaves it unknown and the next read
    /// decides it.
    #[derive(Clone, Debug, Default)]
    struct Register {
        value: Option<String>,
        index: Option<u64>,
    }

    #[derive(Clone, Debug)]
    enum RegOp {
        Read,
        Write(String),
        Cas(u64, String),
    }

    #[derive(Clone, Debug, PartialEq)]
    enum RegRet {
        Read(Option<(String, u64)>),
        Written(u64),
        CasFailed,
    }

    impl SequentialSpec for Register {
        type Op = RegOp;
        type Ret = RegRet;
        fn invoke(&mut self, op: &RegOp) -> RegRet {
            // Only used for operations whose answer never came.
            match op {
                RegOp::Read => RegRet::Read(None),
                RegOp::Write(v) | RegOp::Cas(_, v) => {
                    self.value = Some(v.clone());
                    self.index = None;
                    RegRet::Written(0)
                }
            }
        }
        fn is_valid_step(&mut self, op: &RegOp, ret: &RegRet) -> bool {
            let newer = |me: &Register, i: u64| me.index.is_none_or(|cur| i > cur);
            match (op, ret) {
                (RegOp::Read, RegRet::Read(None)) => self.value.is_none(),
                (RegOp::Read, RegRet::Read(Some((v, i)))) => {
                    if self.value.as_ref() != Some(v) {
                        return false;
                    }
                    match self.index {
                        Some(cur) => cur == *i,
                        None => {
                            self.index = Some(*i);
                            true
                        }
                    }
                }
                (RegOp::Write(v), RegRet::Written(i)) => {
                    if !newer(self, *i) {
                        return false;
                    }
                    self.value = Some(v.clone());
                    self.index = Some(*i);
                    true
                }
                (RegOp::Cas(expected, v), RegRet::Written(i)) => {
                    if self.value.is_none() || self.index != Some(*expected) || !newer(self, *i) {
                        return false;
                    }
                    self.value = Some(v.clone());
                    self.index = Some(*i);
                    true
                }
                (RegOp::Cas(expected, _), RegRet::CasFailed) => {
                    self.value.is_none() || self.index != Some(*expected)
                }
                _ => false,
            }
        }
    }

    enum Event {
        Invoke(u32, RegOp),
        Return(u32, RegRet),
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_concurrent_history_with_a_member_kill_is_linearizable() {
        let _serial = serial();
        let mut cluster = Cluster::start(3);
        let agents = [
            store(&cluster, "/lin/").await,
            store(&cluster, "/lin/").await,
            store(&cluster, "/lin/").await,
        ];
        const KEYS: [&str; 3] = ["a", "b", "c"];
        let logs: Arc<Vec<Mutex<Vec<Event>>>> =
            Arc::new(KEYS.iter().map(|_| Mutex::new(Vec::new())).collect());
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..6u32 {
            let s = agents[w as usize % 3].clone();
            let logs = logs.clone();
            workers.spawn(async move {
                let mut rng = fastrand::Rng::with_seed(u64::from(w) + 7);
                // A worker whose operation fails (unknown outcome) continues as a new
                // thread: its failed operation stays in flight for the checker.
                let mut thread = w * 1000;
                let mut last_index: [u64; 3] = [0; 3];
                for n in 0..20 {
                    tokio::time::sleep(Duration::from_millis(rng.u64(5..40))).await;
                    let k = rng.usize(0..KEYS.len());
                    let op = match rng.u8(0..3) {
                        0 => RegOp::Read,
                        1 => RegOp::Write(format!("{w}.{n}")),
                        _ => RegOp::Cas(last_index[k], format!("{w}.{n}")),
                    };
                    logs[k]
                        .lock()
                        .unwrap()
                        .push(Event::Invoke(thread, op.clone()));
                    let ret = match &op {
                        RegOp::Read => s.get("reg", KEYS[k]).await.map(|r| {
                            RegRet::Read(r.map(|r| {
                                last_index[k] = r.modify_index;
                                (
                                    String::from_utf8_lossy(&r.value).into_owned(),
                                    r.modify_index,
                                )
                            }))
                        }),
                        RegOp::Write(v) => s
                            .apply(&[put("reg", KEYS[k], v, Cas::Any)])
                            .await
                            .map(|a| RegRet::Written(a.index)),
                        RegOp::Cas(i, v) => s
                            .apply(&[put("reg", KEYS[k], v, Cas::ModifyIndex(*i))])
                            .await
                            .map(|a| {
                                if a.ok {
                                    RegRet::Written(a.index)
                                } else {
                                    RegRet::CasFailed
                                }
                            }),
                    };
                    match ret {
                        Ok(ret) => logs[k].lock().unwrap().push(Event::Return(thread, ret)),
                        Err(_) => thread += 1,
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster.kill(1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.restart(1);
        while let Some(r) = workers.join_next().await {
            r.unwrap();
        }
        for (k, log) in KEYS.iter().zip(logs.iter()) {
            let log = log.lock().unwrap();
            if !linearizable(&log) {
                for e in log.iter() {
                    match e {
                        Event::Invoke(t, op) => eprintln!("{t:>5} invoke {op:?}"),
                        Event::Return(t, ret) => eprintln!("{t:>5} return {ret:?}"),
                    }
                }
            }
            assert!(
                linearizable(&log),
                "history of key {k} ({} events) is not linearizable",
                log.len()
            );
        }
    }

    fn linearizable(log: &[Event]) -> bool {
        let mut tester = LinearizabilityTester::new(Register::default());
        for e in log {
            match e {
                Event::Invoke(t, op) => tester.on_invoke(*t, op.clone()).map(|_| ()),
                Event::Return(t, ret) => tester.on_return(*t, ret.clone()).map(|_| ()),
            }
            .unwrap();
        }
        tester.is_consistent()
    }

    /// The checker rejects what it must: a read after an acknowledged write that
    /// misses it (a stale read), and two CAS winners on the same index.
    #[test]
    fn the_checker_rejects_stale_reads_and_double_cas_winners() {
        use Event::{Invoke, Return};
        let ok = [
            Invoke(1, RegOp::Write("a".into())),
            Return(1, RegRet::Written(5)),
            Invoke(2, RegOp::Read),
            Return(2, RegRet::Read(Some(("a".into(), 5)))),
        ];
        assert!(linearizable(&ok));
        let stale = [
            Invoke(1, RegOp::Write("a".into())),
            Return(1, RegRet::Written(5)),
            Invoke(2, RegOp::Read),
            Return(2, RegRet::Read(None)),
        ];
        assert!(!linearizable(&stale));
        let two_winners = [
            Invoke(1, RegOp::Write("a".into())),
            Return(1, RegRet::Written(5)),
            Invoke(2, RegOp::Cas(5, "b".into())),
            Invoke(3, RegOp::Cas(5, "c".into())),
            Return(2, RegRet::Written(6)),
            Return(3, RegRet::Written(7)),
        ];
        assert!(!linearizable(&two_winners));
        // An unanswered write may or may not have happened: both readings pass.
        let unknown = [
            Invoke(1, RegOp::Write("a".into())),
            Invoke(2, RegOp::Read),
            Return(2, RegRet::Read(Some(("a".into(), 9)))),
        ];
        assert!(linearizable(&unknown));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_etcd_uses_the_ca_and_client_certificate_given() {
    let _serial = serial();
    let cluster = Cluster::start_tls(1);
    let tls = cluster.tls.clone().unwrap();
    let mut cfg = config(cluster.endpoints(), "/tls/");
    cfg.ca_file = Some(tls.ca.clone());
    cfg.cert_file = Some(tls.client_cert.clone());
    cfg.key_file = Some(tls.client_key.clone());
    let s = EtcdStore::connect(&cfg).await.unwrap();
    let w = s.apply(&[put("cfg", "x", "1", Cas::Any)]).await.unwrap();
    assert!(w.ok && w.changed);
    assert_eq!(s.get("cfg", "x").await.unwrap().unwrap().value, b"1");

    // Without the client certificate etcd refuses the connection.
    let mut no_cert = cfg.clone();
    no_cert.cert_file = None;
    no_cert.key_file = None;
    let e = EtcdStore::connect(&no_cert)
        .await
        .err()
        .expect("client certificate required");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    // Without the CA the server's certificate is not trusted.
    let mut no_ca = cfg.clone();
    no_ca.ca_file = None;
    assert!(EtcdStore::connect(&no_ca).await.is_err());
    // A missing file is named.
    let mut missing = cfg.clone();
    missing.ca_file = Some("/nonexistent/ca.pem".into());
    let e = EtcdStore::connect(&missing).await.err().unwrap();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}

/// Upgrades (issue #41): the first agent records the store's format under the prefix;
/// a format newer than this build reads is refused at connect, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_format_is_recorded_and_a_newer_one_is_refused() {
    let _serial = serial();
    let cluster = Cluster::start(1);
    let s = store(&cluster, "/fmt/").await;
    drop(s);
    let mut raw = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    let got = raw.get("/fmt/format", None).await.unwrap();
    assert_eq!(
        got.kvs()[0].value(),
        tribune_store::FORMAT_VERSION.to_string().as_bytes()
    );
    raw.put("/fmt/format", "99", None).await.unwrap();
    let e = EtcdStore::connect(&config(cluster.endpoints(), "/fmt/"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("format 99") && e.contains("newer Tribune"),
        "{e}"
    );
}
