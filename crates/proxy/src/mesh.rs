//! Mesh identity for a sidecar: its leaf certificate, the trusted roots, the mTLS mesh
//! listener (callers identified by the SPIFFE service of their client certificate)
//! and upstream listeners (plain on localhost for the app, mTLS to the destination's
//! sidecars, whose certificate must name the destination).
//!
//! Leaves and roots are swapped atomically: new connections use the new ones, open
//! connections are never dropped. TLS 1.3 only, rustls with aws-lc-rs.

use crate::Proxy;
use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tribune_ca::{certs_from_pem, identity_of, verify_leaf, Usage};

/// Time allowed for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new upstream connection waits for a first endpoint list.
pub const ENDPOINTS_WAIT: Duration = Duration::from_secs(3);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A leaf certificate with its key, as PEM.
#[derive(Clone)]
pub struct LeafPem {
    pub cert_pem: String,
    pub key_pem: String,
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
    pub roots: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    server: Arc<ServerConfig>,
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
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("leaf certificate: {e}"))?;
        Ok(Identity {
            trust_domain: trust_domain.to_ascii_lowercase(),
            service: id.service,
            roots,
            chain,
            key,
            server: Arc::new(server),
        })
    }

    /// A client config that presents this leaf and accepts only a server certificate
    /// chained to the roots and naming `destination`.
    pub fn client_config(&self, destination: &str) -> Result<Arc<ClientConfig>, String> {
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
}

impl MeshTls {
    pub fn new(identity: Identity) -> Arc<Self> {
        Arc::new(MeshTls {
            current: ArcSwap::from_pointee(identity),
        })
    }

    pub fn identity(&self) -> Arc<Identity> {
        self.current.load_full()
    }

    pub fn replace(&self, identity: Identity) {
        self.current.store(Arc::new(identity));
    }
}

/// The mesh listener: mTLS; the caller is the service named by its client
/// certificate (same trust domain only), then the usual request path.
pub async fn serve_mesh(proxy: Arc<Proxy>, tls: Arc<MeshTls>, listener: TcpListener) {
    loop {
        let (stream, peer, permit) = crate::http::accept(&proxy, &listener).await;
        let (proxy, tls) = (proxy.clone(), tls.clone());
        tokio::spawn(async move {
            let identity = tls.identity();
            let acceptor = TlsAcceptor::from(identity.server.clone());
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "mesh handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
            let caller = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(identity_of)
                .filter(|id| id.trust_domain == identity.trust_domain);
            let Some(caller) = caller else {
                tracing::info!(%peer, "mesh client certificate has no service identity in this trust domain");
                return;
            };
            proxy.metrics.connections.inc();
            crate::http::serve_downstream(
                proxy.clone(),
                stream,
                Some(Arc::from(caller.service.as_str())),
            )
            .await;
            proxy.metrics.connections.dec();
            drop(permit);
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
        let name =
            ServerName::try_from(format!("{destination}.sidecar")).map_err(|e| e.to_string())?;
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
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("handshake with {addr} timed out"),
        }
    }
    Err(last)
}

/// An upstream listener: plain connections from the local app, carried over mTLS to
/// `destination`'s sidecars byte for byte.
pub async fn serve_upstream(
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
        tokio::spawn(async move {
            match dial(&tls, &destination, &endpoints).await {
                Ok(mut remote) => {
                    let _ = tokio::io::copy_bidirectional(&mut app, &mut remote).await;
                }
                Err(e) => {
                    tracing::warn!(upstream = %destination, error = %e, "upstream unavailable")
                }
            }
        });
    }
}
