//! Mesh TLS handshake cost (issue #9, part 2): full and resumed mTLS handshakes
//! between two identities of one CA, client and server on this one thread, so the
//! wall time of a handshake is the CPU both sidecars spend on it.
//!
//!   cargo run --release -p tribune-proxy --example handshake -- [HANDSHAKES] [full|resumed]
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tribune_proxy::mesh::{Identity, MeshTls};

fn identity(root: &mut tribune_ca::Root, svc: &str, now: i64) -> Identity {
    Identity::issued_by(root, "dc1", svc, now, Duration::from_secs(3600)).unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let td = "11111111-2222-3333-4444-555555555555.consul";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut root = tribune_ca::Root::generate(td, now).unwrap();
    let api = MeshTls::new(identity(&mut root, "api", now));
    let web = MeshTls::new(identity(&mut root, "web", now));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(api.identity().server_config());
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut s = acceptor.accept(s).await.unwrap();
                // One byte after the handshake: the client reads it, and with it the
                // session tickets sent before it.
                s.write_all(b"!").await.unwrap();
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await;
            });
        }
    });
    // Full handshakes: a fresh client config each time (no tickets to offer).
    // Resumed: one client config, so each connection offers a ticket from the last.
    let only = std::env::args().nth(2);
    for resumed in [false, true] {
        if only
            .as_deref()
            .is_some_and(|m| m != if resumed { "resumed" } else { "full" })
        {
            continue;
        }
        let shared = web.identity().client_config("api").unwrap();
        let mut times = Vec::with_capacity(n);
        let mut kinds = std::collections::BTreeMap::new();
        for _ in 0..n {
            let config = if resumed {
                shared.clone()
            } else {
                identity(&mut root, "web", now)
                    .client_config("api")
                    .unwrap()
            };
            let t = Instant::now();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let name = rustls::pki_types::ServerName::try_from("api.sidecar").unwrap();
            let mut c = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.unwrap();
            times.push(t.elapsed());
            *kinds
                .entry(format!("{:?}", c.get_ref().1.handshake_kind()))
                .or_insert(0) += 1;
        }
        times.sort();
        let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        println!(
            "{}: {n} handshakes {kinds:?}: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs",
            if resumed { "resumed" } else { "full" },
            p(0.5),
            p(0.9),
            p(0.99)
        );
    }
}
