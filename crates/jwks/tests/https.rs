//! Remote JWKS over https: TrustedCA (inline string, file, environment variable),
//! the system roots otherwise, and UseSNI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tribune_jwks::{FetchPolicy, RemoteKeys};
use tribune_model::jwt_provider::TrustedCa;

/// An https JWKS server for `localhost` with a self-signed certificate; records the
/// SNI each client sent.
async fn serve() -> (String, String, Arc<Mutex<Vec<Option<String>>>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = snis.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                seen.lock()
                    .unwrap()
                    .push(tls.get_ref().1.server_name().map(str::to_string));
                let svc = hyper::service::service_fn(|_req| async {
                    let body = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "k": B64.encode([7u8; 32])}]});
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body.to_string(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://localhost:{port}/keys"), cert_pem, snis)
}

fn policy(uri: &str, ca: Option<TrustedCa>, sni: bool) -> FetchPolicy {
    FetchPolicy {
        uri: uri.to_string(),
        trusted_ca: ca,
        tls_unsupported: None,
        use_sni: sni,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(2),
        cache_duration: Duration::from_secs(60),
        retries: 0,
        base_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(40),
        issuer: String::new(),
    }
}

#[tokio::test]
async fn https_key_sets_trust_the_configured_ca_and_send_sni_only_when_asked() {
    let (uri, pem, snis) = serve().await;
    // Inline PEM, with SNI.
    let keys = RemoteKeys::new(policy(
        &uri,
        Some(TrustedCa::InlineString(pem.clone())),
        true,
    ))
    .unwrap();
    assert!(keys.refresh().await.unwrap().has_kid("k1"));
    // From a file, without SNI.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, &pem).unwrap();
    let keys = RemoteKeys::new(policy(
        &uri,
        Some(TrustedCa::Filename(file.to_str().unwrap().into())),
        false,
    ))
    .unwrap();
    assert!(keys.refresh().await.is_ok());
    assert_eq!(
        *snis.lock().unwrap(),
        vec![Some("localhost".to_string()), None]
    );
    // From an environment variable.
    std::env::set_var("TRIBUNE_TEST_JWKS_CA", &pem);
    let keys = RemoteKeys::new(policy(
        &uri,
        Some(TrustedCa::EnvironmentVariable(
            "TRIBUNE_TEST_JWKS_CA".into(),
        )),
        false,
    ))
    .unwrap();
    assert!(keys.refresh().await.is_ok());

    // The system roots do not include this self-signed certificate: fail closed.
    let keys = RemoteKeys::new(policy(&uri, None, true)).unwrap();
    let err = keys.refresh().await.unwrap_err();
    assert!(err.contains("request failed"), "{err}");
    assert!(keys.keys_for(Some("k1")).await.is_err());

    // Unusable TrustedCA sources are errors that name the source.
    let e = RemoteKeys::new(policy(
        &uri,
        Some(TrustedCa::Filename("/nonexistent/ca.pem".into())),
        false,
    ))
    .err()
    .unwrap();
    assert!(e.contains("TrustedCA.Filename /nonexistent/ca.pem"), "{e}");
    let e = RemoteKeys::new(policy(
        &uri,
        Some(TrustedCa::InlineString("not pem".into())),
        false,
    ))
    .err()
    .unwrap();
    assert!(e.contains("TrustedCA"), "{e}");
}
