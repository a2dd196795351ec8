//! The web UI at `/ui/`: static files embedded in the binary (no Node at build time;
//! `ui/build.sh` copies the one npm library, the graph layout, from `ui/package-lock.json`
//! into `crates/server/ui/vendor/`, and CI checks the committed copy is current). The
//! pages call the agent's own HTTP API with the user's token.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// `(path under /ui/, content type, bytes)`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/style.css"),
    ),
    (
        "vendor/dagre.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/vendor/dagre.min.js"),
    ),
    (
        "vendor/diff.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/vendor/diff.min.js"),
    ),
];

/// Everything from this origin only; no inline scripts; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn serve(path: &str) -> Response {
    // The provider sends a browser back to `/ui/oidc/callback?code=..&state=..`: the
    // page that finishes an OIDC sign-in is the app.
    let path = if path.is_empty() || path == "oidc/callback" {
        "index.html"
    } else {
        path
    };
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        None => (StatusCode::NOT_FOUND, "Not found").into_response(),
        Some((_, kind, bytes)) => {
            let mut res = (*bytes).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // A sign-in's code is in the callback URL: never sent on as a referrer.
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            res
        }
    }
}

pub(crate) async fn index() -> Response {
    serve("")
}

pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

pub(crate) async fn to_ui() -> Redirect {
    Redirect::temporary("/ui/")
}
