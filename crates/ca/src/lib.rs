//! Tribune's built-in CA: ECDSA P-256 roots, short-lived SPIFFE leaf certificates,
//! identity parsing and chain checks. No I/O; the time is passed in.
//!
//! - Trust domain: `<cluster-id>.consul`; root certificates carry the URI SAN
//!   `spiffe://<trust-domain>`.
//! - Leaves carry `spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>` (Consul's
//!   service identity), are valid for client and server authentication, and are
//!   signed by the active root.
//! - Rotation: a new root becomes active; old roots stay trusted until the leaves they
//!   signed expire ([`Root::trusted_at`]).

#![forbid(unsafe_code)]

pub mod jwt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// Default leaf lifetime (Consul's `LeafCertTTL`).
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(72 * 3600);
/// Root lifetime.
pub const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaError(pub String);

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaError {}

fn err(context: &str) -> impl Fn(rcgen::Error) -> CaError + '_ {
    move |e| CaError(format!("{context}: {e}"))
}

/// A service identity, as carried in a SPIFFE URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceId {
    pub trust_domain: String,
    pub namespace: String,
    pub datacenter: String,
    pub service: String,
}

impl ServiceId {
    pub fn new(trust_domain: &str, datacenter: &str, service: &str) -> Self {
        ServiceId {
            trust_domain: trust_domain.into(),
            namespace: "default".into(),
            datacenter: datacenter.into(),
            service: service.into(),
        }
    }

    pub fn uri(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/dc/{}/svc/{}",
            self.trust_domain, self.namespace, self.datacenter, self.service
        )
    }

    /// Parses `spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service>`; anything else is `None`.
    pub fn parse(uri: &str) -> Option<ServiceId> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (td, path) = rest.split_once('/')?;
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["ns", ns, "dc", dc, "svc", svc]
                if !td.is_empty() && !ns.is_empty() && !dc.is_empty() && !svc.is_empty() =>
            {
                Some(ServiceId {
                    trust_domain: td.to_ascii_lowercase(),
                    namespace: (*ns).into(),
                    datacenter: (*dc).into(),
                    service: (*svc).into(),
                })
            }
            _ => None,
        }
    }
}

/// A CA root: certificate (public) and signing key (never leaves the agent).
#[derive(Clone, PartialEq, Eq)]
pub struct Root {
    pub id: String,
    pub name: String,
    pub trust_domain: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// When the last leaf this root signed expires; the root stays trusted until then.
    pub leaves_until: i64,
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("id", &self.id)
            .field("trust_domain", &self.trust_domain)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn at(unix: i64) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| CaError(format!("time {unix}: {e}")))
}

fn root_params(
    name: &str,
    trust_domain: &str,
    nb: i64,
    na: i64,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{trust_domain}")
            .try_into()
            .map_err(err("trust domain URI"))?,
    )];
    p.not_before = at(nb)?;
    p.not_after = at(na)?;
    Ok(p)
}

fn serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError("random serial number".into()))?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A root's ID: colon-separated hex of the first 20 bytes of its certificate's SHA-256.
fn root_id(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    colon_hex(&digest.as_ref()[..20])
}

impl Root {
    /// A new self-signed root for `trust_domain`, valid from `now`.
    pub fn generate(trust_domain: &str, now: i64) -> Result<Root, CaError> {
        let key = KeyPair::generate().map_err(err("root key"))?;
        let name = format!("Tribune CA Root {}", now);
        let params = root_params(
            &name,
            trust_domain,
            now - 60,
            now + ROOT_TTL.as_secs() as i64,
        )?;
        let cert = params.self_signed(&key).map_err(err("root certificate"))?;
        Ok(Root {
            id: root_id(cert.der()),
            name,
            trust_domain: trust_domain.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_before: now - 60,
            not_after: now + ROOT_TTL.as_secs() as i64,
            leaves_until: now,
        })
    }

    /// Whether the root must still be trusted at `now`: it is active, or leaves it
    /// signed may still be valid.
    pub fn trusted_at(&self, now: i64, active: bool) -> bool {
        now < self.not_after && (active || now < self.leaves_until)
    }

    pub fn cert_der(&self) -> Result<CertificateDer<'static>, CaError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| CaError(format!("root certificate PEM: {e}")))
    }

    /// Issues a leaf for `id` with a fresh key pair, valid from `now` for `ttl`.
    pub fn issue_leaf(&mut self, id: &ServiceId, now: i64, ttl: Duration) -> Result<Leaf, CaError> {
        if id.trust_domain != self.trust_domain {
            return Err(CaError(format!(
                "identity {} is not in trust domain {}",
                id.uri(),
                self.trust_domain
            )));
        }
        let key = KeyPair::from_pem(&self.key_pem).map_err(err("root key"))?;
        let issuer = Issuer::new(
            root_params(
                &self.name,
                &self.trust_domain,
                self.not_before,
                self.not_after,
            )?,
            key,
        );
        let leaf_key = KeyPair::generate().map_err(err("leaf key"))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.service.as_str());
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.subject_alt_names = vec![SanType::URI(
            id.uri().try_into().map_err(err("SPIFFE URI"))?,
        )];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(serial()?);
        let valid_after = now - 60;
        let valid_before = now + ttl.as_secs() as i64;
        p.not_before = at(valid_after)?;
        p.not_after = at(valid_before)?;
        let cert = p
            .signed_by(&leaf_key, &issuer)
            .map_err(err("leaf certificate"))?;
        self.leaves_until = self.leaves_until.max(valid_before);
        Ok(Leaf {
            service: id.service.clone(),
            uri: id.uri(),
            serial: p
                .serial_number
                .as_ref()
                .map(|s| colon_hex(&s.to_bytes()))
                .unwrap_or_default(),
            cert_pem: cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            valid_after,
            valid_before,
            root_id: self.id.clone(),
        })
    }
}

/// A leaf certificate and its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    pub service: String,
    pub uri: String,
    pub serial: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub valid_after: i64,
    pub valid_before: i64,
    pub root_id: String,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("uri", &self.uri)
            .field("serial", &self.serial)
            .field("valid_before", &self.valid_before)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The SPIFFE service identity of a certificate (its first URI SAN that parses).
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<ServiceId> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    ee.valid_uri_names().find_map(ServiceId::parse)
}

/// Which side of a connection a certificate authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Client,
    Server,
}

/// Checks that `leaf` chains to one of `roots`, is valid at `now` for `usage`, and
/// carries a service identity in `trust_domain`; returns that identity.
pub fn verify_leaf(
    leaf: &CertificateDer<'_>,
    roots: &[CertificateDer<'static>],
    trust_domain: &str,
    now: i64,
    usage: Usage,
) -> Result<ServiceId, CaError> {
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    if anchors.is_empty() {
        return Err(CaError("no trusted roots".into()));
    }
    let ee =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| CaError(format!("certificate: {e}")))?;
    let usage = match usage {
        Usage::Client => webpki::KeyUsage::client_auth(),
        Usage::Server => webpki::KeyUsage::server_auth(),
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64)),
        usage,
        None,
        None,
    )
    .map_err(|e| CaError(format!("certificate chain: {e}")))?;
    let id = identity_of(leaf)
        .ok_or_else(|| CaError("certificate has no SPIFFE service identity".into()))?;
    if !id.trust_domain.eq_ignore_ascii_case(trust_domain) {
        return Err(CaError(format!(
            "certificate identity {} is not in trust domain {trust_domain}",
            id.uri()
        )));
    }
    Ok(id)
}

/// Parses PEM certificates.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError(format!("certificate PEM: {e}")))
}

/// The DER `SubjectPublicKeyInfo` of a PEM `PUBLIC KEY`, or of the first
/// certificate of a PEM `CERTIFICATE` (what an auth method's `JWTValidationPubKeys`
/// may hold, as in Consul).
pub fn public_key_from_pem(pem: &str) -> Result<Vec<u8>, CaError> {
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()) {
        return Ok(spki.as_ref().to_vec());
    }
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        CaError("data does not contain any valid RSA, ECDSA, or ED25519 public keys".into())
    })?;
    let parsed =
        webpki::EndEntityCert::try_from(&cert).map_err(|e| CaError(format!("certificate: {e}")))?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

pub use rustls_pki_types;
