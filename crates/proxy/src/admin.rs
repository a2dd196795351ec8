//! The admin listener (default `127.0.0.1:19000`): `/ready`, `/stats/prometheus`,
//! `/config_dump` (key material redacted), `/shadow` (a staged candidate's
//! differences).

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
            if proxy.ready() {
                let sync = match proxy.since_sync() {
                    Some(s) => format!("last sync with the agent {s} s ago"),
                    None => {
                        "no answer from an agent since start (enforcing the saved or file policy)"
                            .into()
                    }
                };
                reply(StatusCode::OK, "text/plain", format!("LIVE\n{sync}\n"))
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "PRE_INITIALIZING: no policy snapshot yet\n".into(),
                )
            }
        }
        "/stats/prometheus" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::metrics::render(&proxy.metrics),
        ),
        "/shadow" => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&proxy.shadow.to_json()).unwrap_or_default(),
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
pub async fn serve_admin(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let r = answer(&proxy, req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
