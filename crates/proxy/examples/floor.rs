//! The floor of a JWT-checking proxy on Tribune's stack, for bench/run.sh and
//! bench/instructions.sh (issue #22): the least a proxy built on hyper 1's HTTP/1
//! server and client, tokio's current-thread runtime and aws-lc-rs can do per
//! request, with nothing of Tribune's (no policy, no header rewriting, no metrics,
//! logs or replay window).
//!
//!   cargo run --release -p tribune-proxy --example floor -- LISTEN UPSTREAM PUBKEY_PEM
//!
//! Per request, the checks bench/run.sh's HAProxy configuration makes, no more:
//! - no `Authorization: Bearer` header: answered 401 with a `WWW-Authenticate`
//!   challenge and a short body, as Tribune answers (the 401-flood floor);
//! - the same token as the previous request (a one-entry cache, compared in full):
//!   its `exp` checked against the clock (the repeated-token floor);
//! - another token: `alg` read from its header (must be RS256), its RS256 signature
//!   checked with the key (parsed once), then `iss`, `aud`, `exp` and the `role`
//!   claim read from its payload into a borrowed struct (no map) and checked (the
//!   rotating-token floor);
//! - a path outside `/api/` is answered 403; anything else is forwarded.
//!
//! Forwarding: one upstream connection per downstream connection (hyper's client,
//! its connection task spawned as hyper documents), requests and responses passed
//! through unchanged.
//!
//! `FLOOR_OPTS` (comma-separated `name=value`) changes one stack option at a time for
//! a floor-against-floor A/B run (issue #46, item 2; `bench/floor-ab.sh`), each
//! left at hyper's default when not named:
//! `writev=0|1` (server: queue buffers for `writev`, or flatten into one),
//! `client_writev=0|1` (the same for the upstream connection), `date=0|1` (the
//! server's automatic `Date` header), `max_buf=N` (server read buffer limit),
//! `client_read_exact=N` (a fixed upstream read buffer instead of the adaptive one),
//! `pipeline_flush=0|1`, `nodelay=0|1` (`TCP_NODELAY` on both sockets, default 1),
//! `auto=1` (serve through hyper-util's HTTP/1+2 `auto` builder, as Tribune's
//! edge does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = Either<Incoming, Full<Bytes>>;

/// What bench/gen_tokens.py's tokens must say (HAProxy checks the same).
const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "api";
const ROLE: &str = "admin";

/// The stack options of one A/B variant (`FLOOR_OPTS`); `None`: hyper's default.
#[derive(Default)]
struct Opts {
    writev: Option<bool>,
    client_writev: Option<bool>,
    date: Option<bool>,
    max_buf: Option<usize>,
    client_read_exact: Option<usize>,
    pipeline_flush: Option<bool>,
    nodelay: Option<bool>,
    auto: bool,
}

impl Opts {
    fn parse(text: &str) -> Result<Opts, String> {
        let mut o = Opts::default();
        for item in text.split(',').filter(|i| !i.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("FLOOR_OPTS: {item:?} is not name=value"))?;
            let flag = || match value {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(format!("FLOOR_OPTS: {name} takes 0 or 1, not {value:?}")),
            };
            let size = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("FLOOR_OPTS: {name} takes a size in bytes, not {value:?}"))
            };
            match name {
                "writev" => o.writev = Some(flag()?),
                "client_writev" => o.client_writev = Some(flag()?),
                "date" => o.date = Some(flag()?),
                "max_buf" => o.max_buf = Some(size()?.max(8192)),
                "client_read_exact" => o.client_read_exact = Some(size()?),
                "pipeline_flush" => o.pipeline_flush = Some(flag()?),
                "nodelay" => o.nodelay = Some(flag()?),
                "auto" => o.auto = flag()?,
                _ => return Err(format!("FLOOR_OPTS: unknown option {name:?}")),
            }
        }
        Ok(o)
    }
}

/// Applies an [`Opts`] to either HTTP/1 server builder (hyper's, or hyper-util's
/// `auto` one: the same methods, two types).
macro_rules! http1_opts {
    ($b:expr, $o:expr) => {{
        let (b, o) = ($b, $o);
        b.keep_alive(true);
        if let Some(v) = o.writev {
            b.writev(v);
        }
        if let Some(v) = o.date {
            b.auto_date_header(v);
        }
        if let Some(v) = o.max_buf {
            b.max_buf_size(v);
        }
        if let Some(v) = o.pipeline_flush {
            b.pipeline_flush(v);
        }
    }};
}

struct Floor {
    opts: Opts,
    upstream: SocketAddr,
    key: ParsedPublicKey,
    /// The last valid token and its `exp`.
    last: Mutex<(String, i64)>,
}

#[derive(serde::Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Cow<'a, str>,
    exp: i64,
    #[serde(borrow)]
    role: Cow<'a, str>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Floor {
    /// Whether the request's bearer token is valid (`None`: no token).
    fn check(&self, req: &Request<Incoming>) -> Option<bool> {
        let token = req
            .headers()
            .get(hyper::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        {
            let last = self.last.lock().unwrap();
            if last.0 == token {
                return Some(now() <= last.1);
            }
        }
        let exp = self.verify(token)?;
        *self.last.lock().unwrap() = (token.to_string(), exp);
        Some(true)
    }

    /// A new token's `exp` when it passes every check.
    fn verify(&self, token: &str) -> Option<i64> {
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        let header = b64.decode(h).ok()?;
        if serde_json::from_slice::<Header<'_>>(&header).ok()?.alg != "RS256" {
            return None;
        }
        let sig = b64.decode(s).ok()?;
        let signed = &token[..h.len() + 1 + p.len()];
        self.key.verify_sig(signed.as_bytes(), &sig).ok()?;
        let payload = b64.decode(p).ok()?;
        let claims: Claims<'_> = serde_json::from_slice(&payload).ok()?;
        let ok = claims.iss == ISSUER
            && claims.aud == AUDIENCE
            && claims.role == ROLE
            && now() <= claims.exp;
        ok.then_some(claims.exp)
    }
}

/// A short plain-text answer (with the `Content-Type` Tribune and HAProxy send).
fn short(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}

async fn forward(
    slot: &Mutex<Option<SendRequest<Incoming>>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(mut sender) = slot.lock().unwrap().take() else {
        return short(StatusCode::BAD_GATEWAY, "upstream busy");
    };
    if sender.ready().await.is_err() {
        return short(StatusCode::BAD_GATEWAY, "upstream closed");
    }
    let resp = sender.send_request(req).await;
    *slot.lock().unwrap() = Some(sender);
    match resp {
        Ok(resp) => resp.map(Either::Left),
        Err(_) => short(StatusCode::BAD_GATEWAY, "upstream failed"),
    }
}

async fn serve(floor: Arc<Floor>, stream: TcpStream) {
    let nodelay = floor.opts.nodelay.unwrap_or(true);
    let _ = stream.set_nodelay(nodelay);
    let Ok(up) = TcpStream::connect(floor.upstream).await else {
        return;
    };
    let _ = up.set_nodelay(nodelay);
    let mut client = hyper::client::conn::http1::Builder::new();
    if let Some(v) = floor.opts.client_writev {
        client.writev(v);
    }
    if let Some(v) = floor.opts.client_read_exact {
        client.read_buf_exact_size(Some(v));
    }
    let Ok((sender, conn)) = client.handshake(TokioIo::new(up)).await else {
        return;
    };
    tokio::spawn(conn);
    let slot = Arc::new(Mutex::new(Some(sender)));
    let held = floor.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (floor, slot) = (floor.clone(), slot.clone());
        async move {
            let resp = match floor.check(&req) {
                None => {
                    let mut r = short(StatusCode::UNAUTHORIZED, "Jwt is missing");
                    r.headers_mut().insert(
                        hyper::header::WWW_AUTHENTICATE,
                        hyper::header::HeaderValue::from_static("Bearer realm=\"api\""),
                    );
                    r
                }
                Some(false) => short(StatusCode::UNAUTHORIZED, "Jwt verification fails"),
                Some(true) if !req.uri().path().starts_with("/api/") => {
                    short(StatusCode::FORBIDDEN, "RBAC: access denied")
                }
                Some(true) => forward(&slot, req).await,
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    if held.opts.auto {
        let mut b =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        http1_opts!(&mut b.http1(), &held.opts);
        let _ = b.serve_connection(TokioIo::new(stream), svc).await;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        http1_opts!(&mut b, &held.opts);
        let _ = b.serve_connection(TokioIo::new(stream), svc).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, pem] = args.as_slice() else {
        eprintln!("usage: floor LISTEN UPSTREAM PUBKEY_PEM");
        std::process::exit(2);
    };
    let opts = match Opts::parse(&std::env::var("FLOOR_OPTS").unwrap_or_default()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let der = SubjectPublicKeyInfoDer::from_pem_file(pem).expect("a PEM public key");
    let floor = Arc::new(Floor {
        opts,
        upstream: upstream.parse().expect("UPSTREAM host:port"),
        key: ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).expect("an RSA key"),
        last: Mutex::new((String::new(), 0)),
    });
    let listener = TcpListener::bind(listen.as_str()).await.expect("bind");
    eprintln!("floor listening on {}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve(floor.clone(), stream));
    }
}
