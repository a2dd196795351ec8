//! Mesh identity for a sidecar: its leaf certificate, the trusted roots, the mTLS mesh
//! listener (callers identified by the SPIFFE service of their client certificate)
//! and upstream listeners (plain on localhost for the app, mTLS to the destination's
//! sidecars, whose certificate must name the destination).
//!
//! Leaves and roots are swapped atomically: new connections use the new ones, open
//! connections are never dropped. TLS 1.3 only, rustls with aws-lc-rs.

use crate::metrics::ConnEvent;
use crate::Proxy;
use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{StoresServerSessions, WebPkiClientVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tribune_ca::{certs_from_pem, identity_of, verify_leaf, Usage};

/// How long a stored mesh TLS session can be resumed. A resumed handshake skips
/// certificate checks and signatures (the caller's identity is the one the full
/// handshake verified, carried in the session), so this is kept short. A resumption
/// stores a fresh session, but none outlives the server identity it was made under:
/// a new leaf (renewed at least every `sidecar::RENEW_EVERY`, 10 minutes) or new
/// roots build a new server config with an empty cache, so the next handshake after
/// that is full.
pub const SESSION_TTL: Duration = Duration::from_secs(300);
/// Most resumable sessions the mesh listener remembers.
pub const SESSION_CACHE_SIZE: usize = 1024;

/// Time allowed for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new upstream connection waits for a first endpoint list.
pub const ENDPOINTS_WAIT: Duration = Duration::from_secs(3);

/// aws-lc-rs with the TLS 1.3 suites in BoringSSL's (Envoy's) order: AES-128-GCM
/// with SHA-256 first. Its key schedule hashes with SHA-256, which x86 (SHA-NI) and
/// ARMv8 run in hardware; SHA-384 (rustls' first choice) was a quarter of a resumed
/// handshake's CPU.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    })
}

/// A leaf certificate with its key, as PEM.
#[derive(Clone)]
pub struct LeafPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl From<tribune_ca::Leaf> for LeafPem {
    fn from(leaf: tribune_ca::Leaf) -> Self {
        LeafPem {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        }
    }
}

impl std::fmt::Debug for LeafPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeafPem { key: <redacted> }")
    }
}

/// One consistent view: trust domain, roots, leaf, and the server config built from
/// them.
pub struct Identity {
    pub trust_domain: String,
    pub service: String,
    /// The leaf's SPIFFE ID (`spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service>`).
    pub spiffe_id: String,
    pub roots: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    server: Arc<ServerConfig>,
    /// Client configs per destination, built on first use: reusing one keeps its
    /// session tickets, so later connections to that destination resume.
    clients: Mutex<HashMap<String, Arc<ClientConfig>>>,
}

impl Identity {
    pub fn new(trust_domain: &str, roots_pem: &[String], leaf: &LeafPem) -> Result<Self, String> {
        let mut roots = Vec::new();
        for pem in roots_pem {
            roots.extend(certs_from_pem(pem).map_err(|e| e.to_string())?);
        }
        if roots.is_empty() {
            return Err("no CA roots".into());
        }
        let chain = certs_from_pem(&leaf.cert_pem).map_err(|e| e.to_string())?;
        let id = chain
            .first()
            .and_then(identity_of)
            .ok_or("leaf certificate has no SPIFFE service identity")?;
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .map_err(|e| format!("leaf key: {e}"))?;
        let mut store = RootCertStore::empty();
        for r in &roots {
            store.add(r.clone()).map_err(|e| format!("CA root: {e}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("leaf certificate: {e}"))?;
        server.session_storage = Arc::new(SessionCache::new(SESSION_TTL, SESSION_CACHE_SIZE));
        Ok(Identity {
            trust_domain: trust_domain.to_ascii_lowercase(),
            spiffe_id: id.uri(),
            service: id.service,
            roots,
            chain,
            key,
            server: Arc::new(server),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// An identity for `service` with a leaf issued here by `root` (valid from `now`
    /// for `ttl`), trusting that root alone: a mesh without an agent (tests,
    /// benchmarks).
    pub fn issued_by(
        root: &mut tribune_ca::Root,
        datacenter: &str,
        service: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<Self, String> {
        let id = tribune_ca::ServiceId::new(&root.trust_domain, datacenter, service);
        let leaf = root.issue_leaf(&id, now, ttl).map_err(|e| e.to_string())?;
        let trust_domain = root.trust_domain.clone();
        Identity::new(
            &trust_domain,
            std::slice::from_ref(&root.cert_pem),
            &leaf.into(),
        )
    }

    /// The leaf certificate chain, DER (the X.509-SVID).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf's private key, PKCS#8 DER (for the Workload API's X.509-SVID only).
    pub fn key_der(&self) -> &[u8] {
        self.key.secret_der()
    }

    /// The mesh listener's server config (client certificates required).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// The client config for connections to `destination`'s sidecars: presents this
    /// leaf, accepts only a server certificate chained to the roots and naming
    /// `destination`. One per destination for the life of this identity, so its
    /// session tickets are reused.
    pub fn client_config(&self, destination: &str) -> Result<Arc<ClientConfig>, String> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| "client config cache poisoned")?;
        if let Some(config) = clients.get(destination) {
            return Ok(config.clone());
        }
        let config = self.new_client_config(destination)?;
        clients.insert(destination.to_string(), config.clone());
        Ok(config)
    }

    fn new_client_config(&self, destination: &str) -> Result<Arc<ClientConfig>, String> {
        let verifier = Arc::new(SpiffeServerVerifier {
            roots: self.roots.clone(),
            trust_domain: self.trust_domain.clone(),
            service: destination.to_string(),
            provider: provider(),
        });
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("leaf certificate: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// The mesh listener's resumable sessions: bounded, and each usable for `ttl` after
/// it was stored (rustls' own cache keeps them for a day).
#[derive(Debug)]
struct SessionCache {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<SessionId, (Instant, SessionValue)>>,
}

/// rustls' opaque session key and encoded session.
type SessionId = Vec<u8>;
type SessionValue = Vec<u8>;

impl SessionCache {
    fn new(ttl: Duration, max: usize) -> Self {
        SessionCache {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn put_at(&self, key: Vec<u8>, value: Vec<u8>, now: Instant) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        if entries.len() >= self.max && !entries.contains_key(&key) {
            entries.retain(|_, (made, _)| now.duration_since(*made) < self.ttl);
            if entries.len() >= self.max {
                // Still full of live sessions: forget the oldest.
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (made, _))| *made)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, (now, value));
        true
    }

    fn lookup_at(&self, key: &[u8], now: Instant, remove: bool) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock().ok()?;
        let (made, value) = if remove {
            entries.remove(key)?
        } else {
            entries.get(key).cloned()?
        };
        if now.duration_since(made) < self.ttl {
            Some(value)
        } else {
            entries.remove(key);
            None
        }
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.put_at(key, value, Instant::now())
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup_at(key, Instant::now(), false)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup_at(key, Instant::now(), true)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Vec<CertificateDer<'static>>,
    trust_domain: String,
    service: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = verify_leaf(
            end_entity,
            &self.roots,
            &self.trust_domain,
            now.as_secs() as i64,
            Usage::Server,
        )
        .map_err(|e| rustls::Error::General(e.0))?;
        if id.service != self.service {
            return Err(rustls::Error::General(format!(
                "server identity {} is not service {}",
                id.uri(),
                self.service
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The sidecar's current identity, swapped atomically on rotation and renewal.
pub struct MeshTls {
    current: ArcSwap<Identity>,
    /// Bumped on every replacement (what the Workload API's streams wait on).
    changes: tokio::sync::watch::Sender<u64>,
}

impl MeshTls {
    pub fn new(identity: Identity) -> Arc<Self> {
        crate::seed_random();
        Arc::new(MeshTls {
            current: ArcSwap::from_pointee(identity),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn identity(&self) -> Arc<Identity> {
        self.current.load_full()
    }

    pub fn replace(&self, identity: Identity) {
        self.current.store(Arc::new(identity));
        self.changes.send_modify(|n| *n += 1);
    }

    /// Wakes on each new identity (a renewed leaf, new roots).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The mesh listener: mTLS; the caller is the service named by its client
/// certificate (same trust domain only), then the usual request path.
pub async fn serve_mesh(proxy: Arc<Proxy>, tls: Arc<MeshTls>, listener: TcpListener) {
    loop {
        let (stream, peer, slot) = crate::serve::accept(&proxy, &listener).await;
        let (proxy, tls) = (proxy.clone(), tls.clone());
        tokio::spawn(async move {
            let identity = tls.identity();
            let acceptor = TlsAcceptor::from(identity.server.clone());
            let counters = &proxy.metrics.counters;
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        counters.connection(ConnEvent::MeshHandshakeFailed);
                        tracing::info!(%peer, error = %e, "mesh handshake refused");
                        return;
                    }
                    Err(_) => {
                        counters.connection(ConnEvent::MeshHandshakeFailed);
                        return;
                    }
                };
            let caller = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(identity_of)
                .filter(|id| id.trust_domain == identity.trust_domain);
            let Some(caller) = caller else {
                counters.connection(ConnEvent::MeshHandshakeFailed);
                tracing::info!(%peer, "mesh client certificate has no service identity in this trust domain");
                return;
            };
            counters.connection(ConnEvent::MeshHandshakeOk);
            if stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
                counters.connection(ConnEvent::MeshHandshakeResumed);
            }
            tracing::debug!(%peer, caller = %caller.service, "mesh connection accepted");
            proxy.metrics.connections.inc();
            crate::serve::serve_downstream(
                proxy.clone(),
                stream,
                Some(Arc::from(caller.service.as_str())),
                slot.conn.clone(),
            )
            .await;
            proxy.metrics.connections.dec();
            drop(slot);
        });
    }
}

/// Healthy sidecar addresses of one destination, round-robin.
#[derive(Default)]
pub struct Endpoints {
    addrs: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Endpoints {
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        self.addrs.store(Arc::new(addrs));
    }

    pub fn get(&self) -> Arc<Vec<SocketAddr>> {
        self.addrs.load_full()
    }

    fn pick(&self) -> Option<SocketAddr> {
        let addrs = self.addrs.load();
        if addrs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
        addrs.get(i).copied()
    }
}

/// The TLS server name for one instance of `destination`: a DNS name that holds its
/// address (`api.i127-0-0-1-21000.sidecar`).
fn instance_name(destination: &str, addr: SocketAddr) -> Result<ServerName<'static>, String> {
    let instance = addr.to_string().replace(['.', ':', '[', ']'], "-");
    ServerName::try_from(format!("{destination}.i{instance}.sidecar")).map_err(|e| e.to_string())
}

/// Dials one instance of `destination`'s sidecar over mTLS, trying the next instance
/// once if the first fails.
pub async fn dial(
    tls: &MeshTls,
    destination: &str,
    endpoints: &Endpoints,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut last = format!("no healthy instance of {destination}");
    // Right after start the endpoint list may still be on its way: wait a little.
    let deadline = tokio::time::Instant::now() + ENDPOINTS_WAIT;
    while endpoints.get().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 0..2 {
        let Some(addr) = endpoints.pick() else { break };
        let identity = tls.identity();
        let config = identity.client_config(destination)?;
        // The server is checked by its SPIFFE identity, not this name; the name keys
        // the client's session tickets, so it names the instance: a ticket from one
        // instance is never offered to (and wasted on) another.
        let name = instance_name(destination, addr)?;
        let attempt = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake with {addr}: {e}"))
        };
        let started = std::time::Instant::now();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
            Ok(Ok(s)) => {
                tracing::debug!(
                    upstream = destination,
                    %addr,
                    micros = started.elapsed().as_micros() as u64,
                    resumed = s.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed),
                    "mesh connection established"
                );
                return Ok(s);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("handshake with {addr} timed out"),
        }
    }
    Err(last)
}

/// An upstream listener: plain connections from the local app, carried over mTLS to
/// `destination`'s sidecars byte for byte.
pub async fn serve_upstream(
    proxy: Arc<Proxy>,
    tls: Arc<MeshTls>,
    destination: String,
    endpoints: Arc<Endpoints>,
    listener: TcpListener,
) {
    loop {
        let Ok((mut app, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = app.set_nodelay(true);
        let (tls, destination, endpoints) = (tls.clone(), destination.clone(), endpoints.clone());
        let counters = proxy.metrics.counters.clone();
        tokio::spawn(async move {
            match dial(&tls, &destination, &endpoints).await {
                Ok(mut remote) => {
                    counters.connection(ConnEvent::UpstreamDialed);
                    let _ = tokio::io::copy_bidirectional(&mut app, &mut remote).await;
                }
                Err(e) => {
                    counters.connection(ConnEvent::UpstreamDialFailed);
                    tracing::warn!(upstream = %destination, error = %e, "upstream unavailable")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_valid_dns_names_per_address() {
        let v4 = instance_name("api", "127.0.0.1:21000".parse().unwrap()).unwrap();
        assert_eq!(v4.to_str(), "api.i127-0-0-1-21000.sidecar");
        let v6 = instance_name("api", "[::1]:21000".parse().unwrap()).unwrap();
        assert_eq!(v6.to_str(), "api.i---1--21000.sidecar");
        let other = instance_name("api", "127.0.0.1:21001".parse().unwrap()).unwrap();
        assert_ne!(v4, other);
    }

    #[test]
    fn sessions_expire_after_the_ttl() {
        let cache = SessionCache::new(Duration::from_secs(300), 8);
        let t0 = Instant::now();
        assert!(cache.put_at(b"a".to_vec(), b"one".to_vec(), t0));
        let later = t0 + Duration::from_secs(299);
        assert_eq!(cache.lookup_at(b"a", later, false), Some(b"one".to_vec()));
        let expired = t0 + Duration::from_secs(300);
        assert_eq!(cache.lookup_at(b"a", expired, false), None);
        // An expired session is forgotten, not only hidden.
        assert_eq!(cache.lookup_at(b"a", t0, false), None);
    }

    #[test]
    fn take_is_single_use() {
        let cache = SessionCache::new(Duration::from_secs(300), 8);
        let t0 = Instant::now();
        cache.put_at(b"k".to_vec(), b"v".to_vec(), t0);
        assert_eq!(cache.lookup_at(b"k", t0, true), Some(b"v".to_vec()));
        assert_eq!(cache.lookup_at(b"k", t0, true), None);
    }

    #[test]
    fn a_full_cache_drops_expired_then_the_oldest() {
        let cache = SessionCache::new(Duration::from_secs(300), 3);
        let t0 = Instant::now();
        for (i, key) in [b"a", b"b", b"c"].into_iter().enumerate() {
            cache.put_at(key.to_vec(), vec![], t0 + Duration::from_secs(i as u64));
        }
        // Full of live sessions: the oldest ("a") goes.
        cache.put_at(b"d".to_vec(), vec![], t0 + Duration::from_secs(10));
        let now = t0 + Duration::from_secs(11);
        assert_eq!(cache.lookup_at(b"a", now, false), None);
        for key in [b"b", b"c", b"d"] {
            assert!(cache.lookup_at(key, now, false).is_some());
        }
        // Later, "b" and "c" have expired: both make room, "d" stays.
        let much_later = t0 + Duration::from_secs(305);
        cache.put_at(b"e".to_vec(), vec![], much_later);
        cache.put_at(b"f".to_vec(), vec![], much_later);
        for key in [b"d", b"e", b"f"] {
            assert!(cache.lookup_at(key, much_later, false).is_some(), "{key:?}");
        }
        assert_eq!(cache.entries.lock().unwrap().len(), 3);
    }
}
