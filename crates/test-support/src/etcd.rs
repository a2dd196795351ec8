//! A real etcd cluster for tests: `n` members on 127.0.0.1, each with its own data
//! directory in one temp dir, started from Debian's `etcd` binary (`.ci/run` installs
//! `etcd-server`). No Docker. Members can be killed with SIGKILL and restarted on the
//! same data directory.
//!
//! etcd must know every member's peer address before it starts, so ports are found
//! by binding 127.0.0.1:0 and releasing the port just before etcd takes it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    tls: bool,
}

/// Certificates for a cluster whose client port requires TLS and a client
/// certificate (PEM files in the cluster's temp dir).
pub type Tls = crate::pki::Pki;

impl Member {
    pub fn client_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    /// Set by [`Cluster::start_tls`].
    pub tls: Option<Tls>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The etcd binary: `$ETCD_BIN`, else `etcd` on PATH.
fn etcd_bin() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into())
}

impl Cluster {
    /// Starts `n` members and waits until the cluster has a leader.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, false)
    }

    /// [`Cluster::start`] with TLS on the client port and client certificates
    /// required (`tls` holds the CA and a client certificate for the agent).
    pub fn start_tls(n: usize) -> Cluster {
        Cluster::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> Cluster {
        // Ports are picked free and then bound by etcd (peers must know each other's
        // URLs, so port 0 cannot be used): another test may take one in between. Such
        // a start is retried with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cluster = Cluster::configure(n, tls);
            for i in 0..n {
                cluster.spawn(i);
            }
            match cluster.try_wait_healthy(Duration::from_secs(30)) {
                Ok(()) => return cluster,
                Err(e) if e.contains("address already in use") && attempt < 5 => {
                    drop(cluster);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn configure(n: usize, tls: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = tls.then(|| crate::pki::Pki::generate(dir.path(), "etcd"));
        let token = format!("tribune-test-{}", std::process::id());
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
                tls,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            members,
            tls: certs,
            initial_cluster,
            token,
            _dir: dir,
        }
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("member log");
        let mut cmd = Command::new(etcd_bin());
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(m.client_url())
            .arg("--advertise-client-urls")
            .arg(m.client_url())
            .arg("--listen-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} failed: {e} (install etcd: apt-get install etcd-server etcd-client)",
                    etcd_bin()
                )
            });
        self.members[i].child = Some(child);
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// `-etcd-endpoints` for the agent: every member, comma-separated.
    pub fn endpoints_flag(&self) -> String {
        self.endpoints().join(",")
    }

    /// SIGKILL, no clean shutdown.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed member again on its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }

    /// Whether member `i` reports itself healthy (has a leader, serves reads).
    pub fn member_healthy(&self, i: usize) -> bool {
        match &self.tls {
            None => health(self.members[i].client_port),
            Some(t) => Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg("--endpoints")
                .arg(self.members[i].client_url())
                .arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key)
                .args(["--command-timeout", "1s", "endpoint", "health"])
                .output()
                .is_ok_and(|o| o.status.success()),
        }
    }

    /// Waits until every running member is healthy.
    pub fn wait_healthy(&self, within: Duration) {
        if let Err(e) = self.try_wait_healthy(within) {
            panic!("{e}");
        }
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                format!("{}: {}", m.name, tail.join(" | "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// [`Cluster::wait_healthy`], failing at once when a member could not bind its
    /// ports.
    fn try_wait_healthy(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let all = (0..self.members.len())
                .filter(|&i| self.members[i].child.is_some())
                .all(|i| self.member_healthy(i));
            if all {
                return Ok(());
            }
            let port_taken = self.members.iter().any(|m| {
                std::fs::read_to_string(&m.log)
                    .is_ok_and(|t| t.contains("bind: address already in use"))
            });
            if port_taken || Instant::now() > deadline {
                return Err(format!(
                    "etcd cluster not healthy within {within:?}: {}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcdctl compact REV` against a running member.
    pub fn compact(&self, revision: u64) {
        let m = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a running member");
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(m.client_url())
            .arg("compact")
            .arg(revision.to_string())
            .output()
            .expect("etcdctl (apt-get install etcd-client)");
        assert!(
            out.status.success(),
            "etcdctl compact {revision}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// `GET /health` on a member's client port: `{"health":"true"}` once it has a leader.
fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
