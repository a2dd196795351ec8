//! The floor of a JWT-checking proxy on Tribune's stack, for bench/run.sh and
//! bench/instructions.sh (issue #22): the least a proxy built on hyper 1's HTTP/1
//! server and client, tokio's current-thread runtime and aws-lc-rs can do per
//! request, with nothing of Tribune's (no policy, no header rewriting, no metrics,
//! logs or replay window).
//!
//!   cargo run --release -p tribune-proxy --example floor -- LISTEN UPSTREAM PUBKEY_PEM
//!
//! Per request:
//! - no `Authorization: Bearer` header: answered 401 with a `WWW-Authenticate`
//!   challenge and a short body, as Tribune answers (the 401-flood floor);
//! - the same token as the previous request (a one-entry cache, compared in full):
//!   forwarded (the repeated-token floor);
//! - another token: its RS256 signature checked with the key (parsed once) and then
//!   forwarded (the rotating-token floor: the RSA public operation is all it adds).
//!
//! Forwarding: one upstream connection per downstream connection (hyper's client,
//! its connection task spawned as hyper documents), requests and responses passed
//! through unchanged.
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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = Either<Incoming, Full<Bytes>>;

struct Floor {
    upstream: SocketAddr,
    key: ParsedPublicKey,
    last: Mutex<String>,
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
        if *self.last.lock().unwrap() == token {
            return Some(true);
        }
        let Some((signed, sig)) = token.rsplit_once('.') else {
            return Some(false);
        };
        let Ok(sig) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
            return Some(false);
        };
        let ok = self.key.verify_sig(signed.as_bytes(), &sig).is_ok();
        if ok {
            *self.last.lock().unwrap() = token.to_string();
        }
        Some(ok)
    }
}

fn short(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
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
    let _ = stream.set_nodelay(true);
    let Ok(up) = TcpStream::connect(floor.upstream).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await else {
        return;
    };
    tokio::spawn(conn);
    let slot = Arc::new(Mutex::new(Some(sender)));
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
                Some(true) => forward(&slot, req).await,
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, pem] = args.as_slice() else {
        eprintln!("usage: floor LISTEN UPSTREAM PUBKEY_PEM");
        std::process::exit(2);
    };
    let der = SubjectPublicKeyInfoDer::from_pem_file(pem).expect("a PEM public key");
    let floor = Arc::new(Floor {
        upstream: upstream.parse().expect("UPSTREAM host:port"),
        key: ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).expect("an RSA key"),
        last: Mutex::new(String::new()),
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
