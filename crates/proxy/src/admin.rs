//! The admin listener (default `127.0.0.1:19000`): `/ready`, `/stats/prometheus`,
//! `/config_dump` (key material redacted), `/shadow` (a staged candidate's
//! differences), `POST /replay` (a candidate entry, HCL or JSON, evaluated on the
//! recent requests: [`crate::replay`]).

use crate::Proxy;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Answers one admin request.
pub fn answer(proxy: &Proxy, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/ready" => {
            if let Some(why) = proxy.token_refused() {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("TOKEN_REFUSED: the agent refused this sidecar's ACL token ({why}); enforcing the last policy, the leaf certificate is not renewed\n"),
                )
            } else if proxy.ready() {
                let sync = match proxy.since_sync() {
                    Some(s) => format!("last sync with the agent {s} s ago"),
                    None => {
                        "no answer from an agent since start (enforcing the saved or file policy)"
                            .into()
                    }
                };
                let stale = proxy
                    .install_failure()
                    .map(|why| format!("POLICY_NOT_INSTALLED: the agent's latest policy document could not be installed ({why}); enforcing the last one, with its providers' new key sets\n"))
                    .unwrap_or_default();
                reply(
                    StatusCode::OK,
                    "text/plain",
                    format!("LIVE\n{sync}\n{stale}"),
                )
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "PRE_INITIALIZING: no policy snapshot yet\n".into(),
                )
            }
        }
        // OpenMetrics text (what `prometheus-client` writes: `_total` counters, `# EOF`)
        // under its own content type, so a scraper parses it as OpenMetrics and types
        // every family (the classic `text/plain; version=0.0.4` read them as untyped).
        "/stats/prometheus" => reply(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(&proxy.metrics),
        ),
        "/shadow" => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&proxy.shadow.counters()).unwrap_or_default(),
        ),
        "/config_dump" => {
            let body = match proxy.current() {
                None => serde_json::json!({"Version": 0, "Snapshot": null}),
                Some(s) => serde_json::json!({
                    "Version": s.version,
                    "Index": s.index,
                    "ReferencedProviders": s.runtimes.iter().map(|p| serde_json::json!({
                        "Name": p.provider.name,
                        "HasKeys": p.has_keys(),
                    })).collect::<Vec<_>>(),
                    "Intentions": s.table.intentions().enumerate().map(|(i, _)| s.table.describe(i)).collect::<Vec<_>>(),
                    "Snapshot": s.doc.redacted(),
                }),
            };
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&body).unwrap_or_default(),
            )
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /ready, /stats/prometheus, /config_dump\n".into(),
        ),
    }
}

/// Serves the admin endpoints until the task is dropped.
/// Largest candidate entry `POST /replay` reads.
const MAX_REPLAY_BODY: usize = 1 << 20;

/// `POST /replay`: the candidate entry in the body, evaluated on the replay window.
pub fn replay(proxy: &Proxy, body: &[u8]) -> Response<Full<Bytes>> {
    let bad = |msg: String| reply(StatusCode::BAD_REQUEST, "text/plain", format!("{msg}\n"));
    let Some(snap) = proxy.current() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "no policy snapshot yet\n".into(),
        );
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return bad("the candidate entry is not UTF-8".into());
    };
    // One entry (HCL or JSON), or a JSON list of entries: the candidate and the
    // providers it references that this sidecar does not carry.
    let values: Vec<serde_json::Value> = match tribune_model::decode::parse_json(text.as_bytes()) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => match tribune_model::decode::parse_raw(text) {
            Ok(m) => vec![serde_json::Value::Object(m)],
            Err(e) => return bad(format!("Failed to decode config entry input: {e}")),
        },
    };
    let mut entries = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match tribune_model::entry_from_json(v) {
            Ok(e) => entries.push(e),
            Err(e) => return bad(format!("entry {i}: {e}")),
        }
    }
    let doc = crate::replay::with_candidate(&snap.doc, entries);
    let candidate = match tribune_enforce::Policy::compile(&doc) {
        Ok(p) => p,
        Err(e) => return bad(format!("the candidate does not compile: {e}")),
    };
    let out = crate::replay::replay(&proxy.replay, &candidate);
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::to_string_pretty(&out).unwrap_or_default(),
    )
}

/// Replays running (at most one).
static REPLAYING: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(1)));

/// An admin POST that a page on another origin could have sent: refused. A
/// cross-origin page can POST without a preflight only as `text/plain`, a form or
/// multipart, so `application/json` is required; an `Origin` that is not a loopback
/// one is refused outright.
fn foreign_post(req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let json = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
            "admin POSTs take Content-Type: application/json\n".into(),
        ));
    }
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN) {
        let host = origin
            .as_bytes()
            .strip_prefix(b"http://")
            .or_else(|| origin.as_bytes().strip_prefix(b"https://"));
        if !host.is_some_and(|h| tribune_model::host::loopback_host_allowed(Some(h), &[])) {
            return Some(reply(
                StatusCode::FORBIDDEN,
                "text/plain",
                format!(
                    "admin POSTs from another origin ({}) are refused\n",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            ));
        }
    }
    None
}

pub async fn serve_admin(proxy: Arc<Proxy>, listener: TcpListener) {
    // On loopback (the default), the DNS-rebinding defence: `/config_dump`, `/shadow`
    // and `/replay` are not for a page on another name resolved to 127.0.0.1.
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let proxy = proxy.clone();
                async move {
                    let host = req.headers().get(hyper::header::HOST).map(|h| h.as_bytes());
                    if let Some(body) = loopback
                        .then(|| tribune_model::host::refused(host, &[]))
                        .flatten()
                    {
                        return Ok::<_, Infallible>(reply(
                            StatusCode::MISDIRECTED_REQUEST,
                            "text/plain",
                            body,
                        ));
                    }
                    if req.method() == hyper::Method::POST && req.uri().path() == "/replay" {
                        use http_body_util::BodyExt;
                        if let Some(refused) = foreign_post(&req) {
                            return Ok::<_, Infallible>(refused);
                        }
                        // One replay at a time, on the blocking pool: the serving
                        // workers (and `/ready`) are never held by one.
                        let Ok(permit) = REPLAYING.clone().try_acquire_owned() else {
                            return Ok::<_, Infallible>(reply(
                                StatusCode::TOO_MANY_REQUESTS,
                                "text/plain",
                                "a replay is already running; try again when it ends\n".into(),
                            ));
                        };
                        let limited =
                            http_body_util::Limited::new(req.into_body(), MAX_REPLAY_BODY);
                        let r = match limited.collect().await {
                            Ok(b) => {
                                let proxy = proxy.clone();
                                let body = b.to_bytes();
                                tokio::task::spawn_blocking(move || {
                                    let _permit = permit;
                                    replay(&proxy, &body)
                                })
                                .await
                                .unwrap_or_else(|_| {
                                    reply(
                                        StatusCode::INTERNAL_SERVER_ERROR,
                                        "text/plain",
                                        "the replay failed\n".into(),
                                    )
                                })
                            }
                            Err(_) => reply(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "text/plain",
                                "the candidate entry is larger than 1 MiB\n".into(),
                            ),
                        };
                        return Ok::<_, Infallible>(r);
                    }
                    Ok::<_, Infallible>(answer(&proxy, req.uri().path()))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
