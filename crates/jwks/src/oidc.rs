//! The two requests of an OpenID Connect authorization code flow an agent makes for
//! an `oidc` auth method (issue #43): the discovery document (its authorization and
//! token endpoints), and the code exchange at the token endpoint. Same TLS rules as
//! key fetches (the method's CA, else the system's roots), bounded in time and size.

use crate::{tls_config, FetchPolicy, MAX_JWKS_BYTES};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What a login needs of a discovery document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
}

/// An HTTP client for one provider's endpoints.
pub struct OidcClient {
    policy: FetchPolicy,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl OidcClient {
    /// A client trusting `policy`'s CA (its `uri` is the discovery document).
    pub fn new(policy: FetchPolicy) -> Result<Self, String> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(policy.connect_timeout.min(policy.timeout)));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&policy)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(OidcClient {
            policy,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn send(&self, req: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
        let attempt = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = res.status().as_u16();
            let body = Limited::new(res.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading body: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.policy.timeout, attempt)
            .await
            .map_err(|_| format!("timed out after {:?}", self.policy.timeout))?
    }

    /// The discovery document at the policy's URI; its `issuer` must be `issuer`
    /// (OpenID Connect Discovery 1.0, section 4.3), its endpoints `https` when the
    /// document is.
    pub async fn discover(&self, issuer: &str) -> Result<Discovery, String> {
        let uri: hyper::Uri = self
            .policy
            .uri
            .parse()
            .map_err(|e| format!("invalid URI: {e}"))?;
        let req = hyper::Request::get(uri)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.send(req).await?;
        if !(200..300).contains(&status) {
            return Err(format!("discovery document: HTTP {status}"));
        }
        let v = tribune_model::decode::parse_json(&body)
            .map_err(|e| format!("discovery document is not JSON: {e}"))?;
        let d: Discovery =
            serde_json::from_value(v).map_err(|e| format!("discovery document: {e}"))?;
        if d.issuer != issuer {
            return Err(format!(
                "discovery document issuer {:?} is not {issuer:?}",
                d.issuer
            ));
        }
        let https = self.policy.uri.starts_with("https://");
        for (what, u) in [
            ("authorization_endpoint", &d.authorization_endpoint),
            ("token_endpoint", &d.token_endpoint),
        ] {
            let ok = u.starts_with("https://") || (!https && u.starts_with("http://"));
            if !ok {
                return Err(format!(
                    "discovery document's {what} {u:?} must be https://"
                ));
            }
        }
        Ok(d)
    }

    /// Exchanges an authorization code (with its PKCE verifier) at `token_endpoint`,
    /// authenticating as the client with HTTP Basic (`client_secret_basic`, the
    /// default of RFC 6749 and OpenID Connect). Returns the `id_token`.
    pub async fn exchange_code(
        &self,
        token_endpoint: &str,
        client_id: &str,
        client_secret: &str,
        form: &[(&str, &str)],
    ) -> Result<String, String> {
        use base64::Engine;
        let uri: hyper::Uri = token_endpoint
            .parse()
            .map_err(|e| format!("invalid token_endpoint: {e}"))?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        // RFC 6749 2.3.1: the id and secret are form-encoded before Basic.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(client_id),
            enc(client_secret)
        ));
        let req = hyper::Request::post(uri)
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.send(req).await?;
        let v = tribune_model::decode::parse_json(&body).ok();
        if !(200..300).contains(&status) {
            // The provider's error code (RFC 6749 5.2), never the body whole.
            let code = v
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(|e| e.as_str())
                .unwrap_or("no error code");
            return Err(format!("token endpoint answered HTTP {status} ({code})"));
        }
        v.as_ref()
            .and_then(|v| v.get("id_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| "the token endpoint's answer has no id_token".to_string())
    }
}
