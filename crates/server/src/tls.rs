//! The HTTPS listener's TLS: Consul's `tls { defaults { ... } https { ... } }` turned
//! into a rustls server configuration. With `verify_incoming`, a client must show a
//! certificate that chains to `ca_file`/`ca_path`, or the handshake fails: the
//! request never reaches the API.

use crate::agent_config::TlsBlock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the HTTPS listener cannot start; names the setting and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn err(s: impl Into<String>) -> TlsError {
    TlsError(s.into())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(format!("tls.{key} {}: {e}", path.display())))
}

fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            err(format!(
                "tls.{key} {}: not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(err(format!(
            "tls.{key} {}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// The CA certificates of `ca_file` and every file in `ca_path`.
fn client_roots(block: &TlsBlock) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut files: Vec<(&str, PathBuf)> = Vec::new();
    if let Some(f) = &block.ca_file {
        files.push(("ca_file", f.into()));
    }
    if let Some(dir) = &block.ca_path {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| err(format!("tls.ca_path {dir}: {e}")))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found.into_iter().map(|p| ("ca_path", p)));
    }
    for (key, path) in files {
        for c in certificates(key, &path)? {
            roots.add(c).map_err(|e| {
                err(format!(
                    "tls.{key} {}: unusable CA certificate: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(roots)
}

/// The rustls configuration of the HTTPS listener (HTTP/1.1 only, like the plain
/// listener).
pub fn server_config(block: &TlsBlock) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_file = block.cert_file.as_ref().ok_or_else(|| {
        err("the HTTPS port is set but tls.defaults.cert_file (or tls.https.cert_file) is not")
    })?;
    let key_file = block.key_file.as_ref().ok_or_else(|| {
        err("the HTTPS port is set but tls.defaults.key_file (or tls.https.key_file) is not")
    })?;
    let chain = certificates("cert_file", Path::new(cert_file))?;
    let key =
        PrivateKeyDer::from_pem_slice(&read("key_file", Path::new(key_file))?).map_err(|e| {
            err(format!(
                "tls.key_file {key_file}: not a PEM private key: {e}"
            ))
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] =
        match block.tls_min_version.as_deref() {
            Some("TLSv1_3") => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| err(format!("tls: {e}")))?;
    let builder = if block.verify_incoming == Some(true) {
        if block.ca_file.is_none() && block.ca_path.is_none() {
            return Err(err(
                "tls verify_incoming is set but neither ca_file nor ca_path names the CA that client certificates must chain to",
            ));
        }
        let roots = client_roots(block)?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| err(format!("tls.ca_file: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        err(format!(
            "tls.cert_file {cert_file} and tls.key_file {key_file}: {e}"
        ))
    })?;
    // HTTP/2 carries a sidecar's watches as streams of one connection (listener.rs).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_settings_and_files_are_named() {
        let e = server_config(&TlsBlock::default()).unwrap_err();
        assert!(e.0.contains("tls.defaults.cert_file"), "{e}");
        let block = TlsBlock {
            cert_file: Some("/nonexistent/agent.pem".into()),
            key_file: Some("/nonexistent/agent-key.pem".into()),
            ..TlsBlock::default()
        };
        let e = server_config(&block).unwrap_err();
        assert!(
            e.0.starts_with("tls.cert_file /nonexistent/agent.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("agent.pem");
        std::fs::write(&bogus, "not a certificate").unwrap();
        let block = TlsBlock {
            cert_file: Some(bogus.display().to_string()),
            key_file: Some(bogus.display().to_string()),
            ..TlsBlock::default()
        };
        let e = server_config(&block).unwrap_err();
        assert!(e.0.contains("no certificate found"), "{e}");
    }
}
