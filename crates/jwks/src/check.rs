//! `tribune jwt-provider check`: fetch a provider's keys the way a sidecar does, one
//! step at a time, and say what each step found (the most common JWT failure in every
//! peer's tracker is "Jwks remote fetch is failed" with no clue which part failed).
//!
//! For a remote key set the steps are those of one fetch attempt ([`crate::RemoteKeys`]):
//! the URI, DNS, TCP connect (bounded by `JWKSCluster.ConnectTimeout`), TLS (the same
//! roots, SNI rule and verifier as a fetch; the certificate presented is recorded even
//! when it is refused), HTTP (status, body bounded like a fetch), the discovery
//! document when the URI is one (its `issuer` and `jwks_uri`, then the same steps for
//! the `jwks_uri`), and the key set (parsed by the sidecar's parser; every key listed,
//! usable or why not). The whole attempt shares one deadline, `RequestTimeoutMs`, as a
//! fetch does. Retries are not made: the check reports the first attempt.
//!
//! With a token: its header, the sidecar's verification result, its claims, and each
//! registered-claim check on its own.

use crate::{discovered_jwks_uri, FetchPolicy, DISCOVERY_SUFFIX, MAX_JWKS_BYTES};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tribune_jwt::{check_claims, Jwks, Jws, JwtError, Verifier, DEFAULT_MAX_TOKEN_BYTES};
use tribune_model::jwt_provider::{JsonWebKeySet, LocalJwks};
use tribune_model::JwtProvider;

/// The steps of a check, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Where the keys come from: the URI parsed, the file read, the inline set decoded.
    Source,
    Dns,
    Tcp,
    Tls,
    Http,
    /// The OpenID Connect discovery document: its issuer and `jwks_uri`.
    Discovery,
    /// The key set parsed by the sidecar's parser.
    Keys,
}

impl StepKind {
    pub const ALL: [StepKind; 7] = [
        StepKind::Source,
        StepKind::Dns,
        StepKind::Tcp,
        StepKind::Tls,
        StepKind::Http,
        StepKind::Discovery,
        StepKind::Keys,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Source => "source",
            StepKind::Dns => "dns",
            StepKind::Tcp => "tcp",
            StepKind::Tls => "tls",
            StepKind::Http => "http",
            StepKind::Discovery => "discovery",
            StepKind::Keys => "keys",
        }
    }
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Step {
    pub step: StepKind,
    /// What the step worked on: a URI, a host, an address, a file.
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

/// One key of the fetched set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyReport {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// The key's declared `alg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The algorithms a token signed with this key may use.
    #[serde(default)]
    pub algorithms: Vec<String>,
    pub usable: bool,
    /// Why the key is not usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The registered-claim checks reported for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimCheckKind {
    Signature,
    Issuer,
    Audiences,
    Expiry,
    NotBefore,
}

impl ClaimCheckKind {
    pub const ALL: [ClaimCheckKind; 5] = [
        ClaimCheckKind::Signature,
        ClaimCheckKind::Issuer,
        ClaimCheckKind::Audiences,
        ClaimCheckKind::Expiry,
        ClaimCheckKind::NotBefore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClaimCheckKind::Signature => "signature",
            ClaimCheckKind::Issuer => "issuer",
            ClaimCheckKind::Audiences => "audiences",
            ClaimCheckKind::Expiry => "expiry",
            ClaimCheckKind::NotBefore => "notbefore",
        }
    }
}

/// One check of a token: passed, failed, or not checked (`Ok` absent) with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClaimCheck {
    pub check: ClaimCheckKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    pub detail: String,
}

/// What the check found about a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenReport {
    /// The token's JOSE header (absent when it does not parse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Map<String, Value>>,
    /// Whether the sidecar would accept the token (its verification, exactly).
    pub verified: bool,
    /// The sidecar's reason when it would not (the text a caller would get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The token's claims (verified only when `Verified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Map<String, Value>>,
    pub checks: Vec<ClaimCheck>,
}

/// The whole answer of `jwt-provider check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub provider: String,
    /// The keys are usable (and the token, when given, verifies).
    pub ok: bool,
    pub steps: Vec<Step>,
    pub keys: Vec<KeyReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenReport>,
}

/// Runs the check for `provider` (and `token`, verified at `now`, seconds since the
/// Unix epoch).
pub async fn check(provider: &JwtProvider, token: Option<&str>, now: i64) -> Report {
    let mut steps = Vec::new();
    let body = match &provider.json_web_key_set {
        JsonWebKeySet::Local(l @ LocalJwks::Inline(_)) => {
            let json = l.inline_json();
            let ok = json.is_some();
            steps.push(Step {
                step: StepKind::Source,
                target: "JSONWebKeySet.Local.JWKS".into(),
                ok,
                detail: if ok {
                    "inline key set (base64 decoded)".into()
                } else {
                    "inline key set is not standard base64".into()
                },
            });
            json
        }
        JsonWebKeySet::Local(LocalJwks::Filename(path)) => match std::fs::read(path) {
            Ok(b) => {
                steps.push(Step {
                    step: StepKind::Source,
                    target: path.clone(),
                    ok: true,
                    detail: format!("read {} bytes", b.len()),
                });
                Some(b)
            }
            Err(e) => {
                steps.push(Step {
                    step: StepKind::Source,
                    target: path.clone(),
                    ok: false,
                    detail: format!("cannot read the file: {e}"),
                });
                None
            }
        },
        JsonWebKeySet::Remote(r) => {
            let mut policy = FetchPolicy::from_remote(r);
            policy.issuer = provider.issuer.clone();
            remote(&policy, &mut steps).await
        }
    };
    let mut keys = Vec::new();
    let mut jwks = None;
    if let Some(body) = body {
        let (step, found, parsed) = key_set(&body);
        steps.push(step);
        keys = found;
        jwks = parsed;
    }
    let token = token.map(|t| token_report(provider, jwks.clone(), t, now));
    let ok = jwks.is_some() && token.as_ref().is_none_or(|t| t.verified);
    Report {
        provider: provider.name.clone(),
        ok,
        steps,
        keys,
        token,
    }
}

/// The key-set step: the sidecar's parser, and every key described.
fn key_set(body: &[u8]) -> (Step, Vec<KeyReport>, Option<Arc<Jwks>>) {
    let described = Jwks::inspect(body);
    let keys: Vec<KeyReport> = described
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|k| KeyReport {
                    index: k.index,
                    kid: k.kid.clone(),
                    kty: k.kty.clone(),
                    alg: k.alg.clone(),
                    algorithms: k.algs.iter().map(|a| a.to_string()).collect(),
                    usable: k.problem.is_none(),
                    problem: k.problem.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let (ok, detail, jwks) = match Jwks::parse(body) {
        Ok(j) => {
            let skipped = keys.len().saturating_sub(j.len());
            (
                true,
                format!(
                    "{} usable key{}{}",
                    j.len(),
                    if j.len() == 1 { "" } else { "s" },
                    if skipped > 0 {
                        format!(", {skipped} skipped")
                    } else {
                        String::new()
                    }
                ),
                Some(Arc::new(j)),
            )
        }
        Err(e) => (false, e.to_string(), None),
    };
    (
        Step {
            step: StepKind::Keys,
            target: "JWKS".into(),
            ok,
            detail,
        },
        keys,
        jwks,
    )
}

/// The steps of one remote fetch attempt; the key set's bytes when they were fetched.
async fn remote(policy: &FetchPolicy, steps: &mut Vec<Step>) -> Option<Vec<u8>> {
    let deadline = Instant::now() + policy.timeout;
    let tls = match tls_setup(policy) {
        Ok(t) => t,
        Err(e) => {
            steps.push(Step {
                step: StepKind::Source,
                target: policy.uri.clone(),
                ok: false,
                detail: e,
            });
            return None;
        }
    };
    let first = get(policy, &tls, &policy.uri, deadline, steps).await?;
    if !policy.uri.ends_with(DISCOVERY_SUFFIX) {
        return Some(first);
    }
    let discovered = match discovered_jwks_uri(&first, &policy.issuer, &policy.uri) {
        Ok(jwks_uri) => crate::discovered_target_allowed(&jwks_uri, &policy.uri)
            .await
            .map(|()| jwks_uri),
        Err(e) => Err(e),
    };
    match discovered {
        Ok(jwks_uri) => {
            steps.push(Step {
                step: StepKind::Discovery,
                target: policy.uri.clone(),
                ok: true,
                detail: if policy.issuer.is_empty() {
                    format!("jwks_uri {jwks_uri} (the provider has no Issuer to compare)")
                } else {
                    format!("issuer matches the provider's Issuer; jwks_uri {jwks_uri}")
                },
            });
            get(policy, &tls, &jwks_uri, deadline, steps).await
        }
        Err(e) => {
            steps.push(Step {
                step: StepKind::Discovery,
                target: policy.uri.clone(),
                ok: false,
                detail: e,
            });
            None
        }
    }
}

/// The TLS settings of a fetch, with a verifier that records the certificate offered.
struct Tls {
    config: Arc<rustls::ClientConfig>,
    roots: String,
    seen: Arc<Recorder>,
}

fn tls_setup(policy: &FetchPolicy) -> Result<Option<Tls>, String> {
    let https = policy.uri.starts_with("https://");
    if !https && !policy.uri.starts_with("http://") {
        return Err("must be http:// or https://".into());
    }
    if !https {
        return Ok(None);
    }
    if let Some(e) = &policy.tls_unsupported {
        return Err(e.clone());
    }
    let (config, source, seen) = crate::tls_config_with(policy, |inner| {
        Arc::new(Recorder {
            inner,
            presented: Mutex::new(None),
        })
    })?;
    Ok(Some(Tls {
        config: Arc::new(config),
        roots: source,
        seen,
    }))
}

/// The standard verifier, recording the end-entity certificate it was shown.
#[derive(Debug)]
struct Recorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    presented: Mutex<Option<CertificateDer<'static>>>,
}

impl Recorder {
    /// The DNS names of the last certificate presented.
    fn names(&self) -> Option<Vec<String>> {
        let g = self.presented.lock().ok()?;
        let der = g.as_ref()?;
        let cert = webpki::EndEntityCert::try_from(der).ok()?;
        Some(cert.valid_dns_names().map(str::to_string).collect())
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut g) = self.presented.lock() {
            *g = Some(end_entity.clone().into_owned());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `f` until `deadline` (the attempt's) or `limit` (the step's), whichever is first.
async fn until<T>(
    deadline: Instant,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let started = Instant::now();
    match tokio::time::timeout_at(deadline.min(started + limit), f).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}", ms(started.elapsed()))),
    }
}

fn fail(steps: &mut Vec<Step>, step: StepKind, target: &str, detail: String) {
    steps.push(Step {
        step,
        target: target.to_string(),
        ok: false,
        detail,
    });
}

/// The DNS, TCP, TLS and HTTP steps of one GET; the body on a 2xx answer.
async fn get(
    policy: &FetchPolicy,
    tls: &Option<Tls>,
    uri: &str,
    deadline: Instant,
    steps: &mut Vec<Step>,
) -> Option<Vec<u8>> {
    let parsed: hyper::Uri = match uri.parse() {
        Ok(u) => u,
        Err(e) => {
            fail(steps, StepKind::Source, uri, format!("invalid URI: {e}"));
            return None;
        }
    };
    let https = parsed.scheme_str() == Some("https");
    if !https && parsed.scheme_str() != Some("http") {
        fail(
            steps,
            StepKind::Source,
            uri,
            "must be http:// or https://".into(),
        );
        return None;
    }
    let Some(host) = parsed
        .host()
        .map(|h| h.trim_matches(['[', ']']).to_string())
    else {
        fail(steps, StepKind::Source, uri, "the URI has no host".into());
        return None;
    };
    let port = parsed.port_u16().unwrap_or(if https { 443 } else { 80 });
    // An https jwks_uri named by an http discovery document gets the provider's TLS
    // settings too.
    let owned;
    let tls = match (https, tls) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => {
            owned = tls_setup(&FetchPolicy {
                uri: uri.to_string(),
                ..policy.clone()
            });
            match &owned {
                Ok(t) => t.as_ref(),
                Err(e) => {
                    fail(steps, StepKind::Source, uri, e.clone());
                    return None;
                }
            }
        }
    };
    steps.push(Step {
        step: StepKind::Source,
        target: uri.to_string(),
        ok: true,
        detail: format!(
            "{} to {host} port {port}",
            if https { "HTTPS" } else { "HTTP" }
        ),
    });

    // DNS (the resolver the fetch uses: getaddrinfo).
    let started = Instant::now();
    let addrs = match until(deadline, policy.timeout, async {
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|a| a.collect::<Vec<_>>())
            .map_err(|e| format!("cannot resolve {host}: {e}"))
    })
    .await
    {
        Ok(a) if a.is_empty() => {
            fail(
                steps,
                StepKind::Dns,
                &host,
                format!("{host} has no address"),
            );
            return None;
        }
        Ok(a) => a,
        Err(e) => {
            fail(steps, StepKind::Dns, &host, e);
            return None;
        }
    };
    steps.push(Step {
        step: StepKind::Dns,
        target: host.clone(),
        ok: true,
        detail: format!(
            "{} in {}",
            addrs
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            ms(started.elapsed())
        ),
    });

    // TCP: each address in turn, as the connector does.
    let connect_limit = policy.connect_timeout.min(policy.timeout);
    let mut stream = None;
    let mut refused = Vec::new();
    for addr in &addrs {
        let started = Instant::now();
        match until(deadline, connect_limit, async {
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        {
            Ok(s) => {
                steps.push(Step {
                    step: StepKind::Tcp,
                    target: addr.to_string(),
                    ok: true,
                    detail: format!("connected in {}", ms(started.elapsed())),
                });
                stream = Some(s);
                break;
            }
            Err(e) => refused.push(format!("{addr}: {e}")),
        }
    }
    let Some(stream) = stream else {
        fail(steps, StepKind::Tcp, &host, refused.join("; "));
        return None;
    };
    let _ = stream.set_nodelay(true);

    match tls {
        None => http(policy, stream, &parsed, uri, deadline, steps).await,
        Some(tls) => {
            let started = Instant::now();
            let name = match ServerName::try_from(host.clone()) {
                Ok(n) => n,
                Err(e) => {
                    fail(
                        steps,
                        StepKind::Tls,
                        &host,
                        format!("not a valid server name: {e}"),
                    );
                    return None;
                }
            };
            let sni = if policy.use_sni {
                format!("server name sent: {host}")
            } else {
                "no server name sent (UseSNI is false)".to_string()
            };
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let result = until(deadline, policy.timeout, async {
                connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
            let names = match tls.seen.names() {
                Some(n) if n.is_empty() => "certificate has no DNS names".to_string(),
                Some(n) => format!("certificate names: {}", n.join(", ")),
                None => "no certificate was presented".to_string(),
            };
            match result {
                Ok(s) => {
                    let version = s
                        .get_ref()
                        .1
                        .protocol_version()
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_default();
                    steps.push(Step {
                        step: StepKind::Tls,
                        target: host.clone(),
                        ok: true,
                        detail: format!(
                            "{version} in {}; {sni}; CA: {}; {names}",
                            ms(started.elapsed()),
                            tls.roots
                        ),
                    });
                    http(policy, s, &parsed, uri, deadline, steps).await
                }
                Err(e) => {
                    fail(
                        steps,
                        StepKind::Tls,
                        &host,
                        format!("{e}; {sni}; CA: {}; {names}", tls.roots),
                    );
                    None
                }
            }
        }
    }
}

/// The HTTP step: one GET over `io`, as a fetch sends it; the body when 2xx.
async fn http<I>(
    policy: &FetchPolicy,
    io: I,
    uri: &hyper::Uri,
    text: &str,
    deadline: Instant,
    steps: &mut Vec<Step>,
) -> Option<Vec<u8>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let result = until(deadline, policy.timeout, async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = hyper::Request::get(path)
            .header("host", host)
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content-type")
            .to_string();
        let body = Limited::new(res.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("HTTP {status}; reading the body: {e}"))?
            .to_bytes();
        Ok((status, content_type, body))
    })
    .await;
    match result {
        Ok((status, content_type, body)) => {
            let ok = status.is_success();
            steps.push(Step {
                step: StepKind::Http,
                target: text.to_string(),
                ok,
                detail: format!(
                    "HTTP {status}, {} bytes, {content_type}, in {}",
                    body.len(),
                    ms(started.elapsed())
                ),
            });
            ok.then(|| body.to_vec())
        }
        Err(e) => {
            steps.push(Step {
                step: StepKind::Http,
                target: text.to_string(),
                ok: false,
                detail: e,
            });
            None
        }
    }
}

/// What the sidecar would make of `token` with `keys`.
fn token_report(
    provider: &JwtProvider,
    keys: Option<Arc<Jwks>>,
    token: &str,
    now: i64,
) -> TokenReport {
    let jws = match Jws::parse(token, DEFAULT_MAX_TOKEN_BYTES) {
        Ok(j) => j,
        Err(e) => {
            return TokenReport {
                header: None,
                verified: false,
                error: Some(e.text().to_string()),
                claims: None,
                checks: Vec::new(),
            }
        }
    };
    let skew = provider.clock_skew_seconds.max(0);
    let mut checks = Vec::new();
    let (verified, error) = match &keys {
        None => {
            checks.push(ClaimCheck {
                check: ClaimCheckKind::Signature,
                ok: Some(false),
                detail: "no usable keys".into(),
            });
            (false, Some(JwtError::KeysUnavailable.text().to_string()))
        }
        Some(keys) => {
            let signature = keys.verify_signature(&jws);
            checks.push(ClaimCheck {
                check: ClaimCheckKind::Signature,
                ok: Some(signature.is_ok()),
                detail: match &signature {
                    Ok(()) => format!(
                        "{} signature verified{}",
                        jws.alg.as_str(),
                        jws.kid
                            .as_deref()
                            .map(|k| format!(" with kid {k:?}"))
                            .unwrap_or_default()
                    ),
                    Err(e) => e.text().to_string(),
                },
            });
            // The sidecar's own verification decides; the checks below only explain.
            match Verifier::new(provider, keys.clone()).verify_parsed(jws.clone(), now) {
                Ok(_) => (true, None),
                Err(e) => (false, Some(e.text().to_string())),
            }
        }
    };
    let payload = match jws.payload.to_value() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    // Each check on its own: the claim alone, through the sidecar's claim checks.
    let alone = |claim: &str| {
        let mut only = Map::new();
        if let Some(v) = payload.get(claim) {
            only.insert(claim.to_string(), v.clone());
        }
        tribune_jwt::Claims::from_object(&only)
    };
    let shown = |claim: &str| {
        payload
            .get(claim)
            .map(Value::to_string)
            .unwrap_or_else(|| "(absent)".into())
    };
    checks.push(if provider.issuer.is_empty() {
        ClaimCheck {
            check: ClaimCheckKind::Issuer,
            ok: None,
            detail: "not checked: the provider has no Issuer".into(),
        }
    } else {
        let r = check_claims(&alone("iss"), &provider.issuer, &[], skew, now);
        ClaimCheck {
            check: ClaimCheckKind::Issuer,
            ok: Some(r.is_ok()),
            detail: format!(
                "iss {} {} the provider's Issuer {:?}",
                shown("iss"),
                if r.is_ok() { "equals" } else { "is not" },
                provider.issuer
            ),
        }
    });
    checks.push(if provider.audiences.is_empty() {
        ClaimCheck {
            check: ClaimCheckKind::Audiences,
            ok: None,
            detail: "not checked: the provider lists no Audiences".into(),
        }
    } else {
        let r = check_claims(&alone("aud"), "", &provider.audiences, skew, now);
        ClaimCheck {
            check: ClaimCheckKind::Audiences,
            ok: Some(r.is_ok()),
            detail: format!(
                "aud {} {} one of {:?}",
                shown("aud"),
                if r.is_ok() {
                    "includes"
                } else {
                    "does not include"
                },
                provider.audiences
            ),
        }
    });
    for (check, claim) in [
        (ClaimCheckKind::Expiry, "exp"),
        (ClaimCheckKind::NotBefore, "nbf"),
    ] {
        let Some(value) = payload.get(claim) else {
            checks.push(ClaimCheck {
                check,
                ok: None,
                detail: format!("the token has no {claim}"),
            });
            continue;
        };
        let r = check_claims(&alone(claim), "", &[], skew, now);
        let relative = match value.as_i64() {
            Some(at) if at >= now => format!(" (in {} s; ClockSkewSeconds {skew})", at - now),
            Some(at) => format!(" ({} s ago; ClockSkewSeconds {skew})", now - at),
            None => String::new(),
        };
        checks.push(ClaimCheck {
            check,
            ok: Some(r.is_ok()),
            detail: match r {
                Ok(()) => format!("{claim} {value}{relative}"),
                Err(e) => format!("{}: {claim} {value}{relative}", e.text()),
            },
        });
    }
    TokenReport {
        header: jws.header(),
        verified,
        error,
        claims: Some(payload.clone()),
        checks,
    }
}

impl Report {
    /// The report as text, one line per step, key and check (what the CLI prints).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        let mut out = String::new();
        let _ = writeln!(out, "Provider {:?}", self.provider);
        for s in &self.steps {
            let _ = writeln!(
                out,
                "  {} {:<9} {}: {}",
                mark(s.ok),
                s.step.as_str(),
                s.target,
                s.detail
            );
        }
        if !self.keys.is_empty() {
            let _ = writeln!(out, "Keys");
            for k in &self.keys {
                let kid = k
                    .kid
                    .as_deref()
                    .map(|k| format!("{k:?}"))
                    .unwrap_or_else(|| "(none)".into());
                let kty = k.kty.as_deref().unwrap_or("(none)");
                let alg = k.alg.as_deref().unwrap_or("(any of its kty)");
                let verdict = match &k.problem {
                    None => format!("usable for {}", k.algorithms.join(", ")),
                    Some(p) => format!("not usable: {p}"),
                };
                let _ = writeln!(
                    out,
                    "  {} key {}: kid {kid}, kty {kty}, alg {alg}: {verdict}",
                    mark(k.usable),
                    k.index
                );
            }
        }
        if let Some(t) = &self.token {
            let _ = writeln!(out, "Token");
            if let Some(h) = &t.header {
                let _ = writeln!(out, "  header    {}", Value::Object(h.clone()));
            }
            for c in &t.checks {
                let m = match c.ok {
                    Some(ok) => mark(ok),
                    None => "--  ",
                };
                let _ = writeln!(out, "  {m} {:<9} {}", c.check.as_str(), c.detail);
            }
            if let Some(claims) = &t.claims {
                let _ = writeln!(
                    out,
                    "  claims{}  {}",
                    if t.verified { "   " } else { " (unverified)" },
                    Value::Object(claims.clone())
                );
            }
            let _ = match &t.error {
                None => writeln!(out, "  verified: a sidecar accepts this token"),
                Some(e) => writeln!(out, "  not verified: {e}"),
            };
        }
        let _ = writeln!(
            out,
            "{}",
            if self.ok {
                "Result: OK"
            } else {
                "Result: FAILED"
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_check_names_match_their_json_form() {
        for s in StepKind::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                Value::String(s.as_str().into())
            );
        }
        for c in ClaimCheckKind::ALL {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                Value::String(c.as_str().into())
            );
        }
    }
}
