//! A small PKI made in the test: a CA, a server certificate for 127.0.0.1 and
//! localhost, and a client certificate, as PEM files (keys 0600).

use std::path::PathBuf;

/// The PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// A fresh CA and leaves in `dir`; the server certificate's common name is
    /// `server_cn`.
    pub fn generate(dir: &std::path::Path, server_cn: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        // Each CA its own name (the temp dir's): two test CAs are told apart.
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        ca.distinguished_name
            .push(DnType::CommonName, format!("tribune test CA {name}"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |cn: &str, server: bool| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::default();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            if server {
                p.subject_alt_names = vec![
                    SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
                    SanType::DnsName("localhost".try_into().expect("name")),
                ];
            }
            let cert = p.signed_by(&key, &issuer).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("write PEM");
            // Private keys are the owner's alone (the agent refuses a readable one).
            #[cfg(unix)]
            if name.ends_with("-key.pem") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod key");
            }
            p
        };
        let (server_cert, server_key) = leaf(server_cn, true);
        let (client_cert, client_key) = leaf("tribune-agent", false);
        Pki {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }
}
