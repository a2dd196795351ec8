//! The proxy's HTTP request path fed raw bytes in process: whatever a client sends
//! (HTTP/1.1 or HTTP/2, any framing, tokens, paths), the proxy answers or closes and
//! never panics. The local service is a minimal in-process server on loopback.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    proxy: Arc<tribune_proxy::Proxy>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let proxy = rt.block_on(async {
            let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = upstream.local_addr().expect("addr");
            tokio::spawn(async move {
                while let Ok((mut s, _)) = upstream.accept().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                    });
                }
            });
            let mut config = tribune_proxy::ProxyConfig::new(addr);
            config.first_request_timeout = Duration::from_millis(500);
            config.upstream_timeout = Duration::from_millis(500);
            config.clock = Arc::new(|| 1_700_000_000);
            let proxy = tribune_proxy::Proxy::new(config);
            let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh4"}]});
            let doc = serde_json::json!({
                "Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny",
                "Entries": [
                    {"Kind": "jwt-provider", "Name": "idp", "Issuer": "idp",
                     "JSONWebKeySet": {"Local": {"JWKS": base64_std(&jwks.to_string())}},
                     "Forwarding": {"HeaderName": "x-jwt-payload"}},
                    {"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*",
                      "Permissions": [
                        {"Action": "allow", "HTTP": {"PathPrefix": "/public/"}},
                        {"Action": "allow", "HTTP": {"PathPrefix": "/api/", "Header": [{"Name": "x-a", "Present": true}]},
                         "JWT": {"Providers": [{"Name": "idp", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]}},
                      ]}]},
                ],
            });
            let doc = tribune_proxy::SnapshotDoc::from_json(&doc).expect("snapshot");
            proxy.install(doc, 1).await.expect("install");
            proxy
        });
        World { rt, proxy }
    })
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    w.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let served = tokio::spawn(tribune_proxy::serve::serve_stream(
            w.proxy.clone(),
            server,
            None,
        ));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(2), served).await;
    });
});
