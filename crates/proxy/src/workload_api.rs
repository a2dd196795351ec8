//! The SPIFFE Workload API (issue #45), served by the sidecar on a Unix socket: the
//! standard clients (go-spiffe, java-spiffe, py-spiffe) get the service's X.509-SVID
//! (streamed again on every leaf renewal), the trust bundle, JWT-SVIDs from the
//! agent's CA, the JWT bundle, and JWT-SVID validation.
//!
//! ```text
//!  client ──gRPC over HTTP/2 (h2c) on the socket, `workload.spiffe.io: true`──▶
//!    /SpiffeWorkloadAPI/FetchX509SVID     stream  X509SVIDResponse  (leaf, key, bundle)
//!    /SpiffeWorkloadAPI/FetchX509Bundles  stream  X509BundlesResponse
//!    /SpiffeWorkloadAPI/FetchJWTSVID      unary   JWTSVIDResponse   (agent: jwt-svid)
//!    /SpiffeWorkloadAPI/FetchJWTBundles   stream  JWTBundlesResponse (agent: jwks)
//!    /SpiffeWorkloadAPI/ValidateJWTSVID   unary   ValidateJWTSVIDResponse
//! ```
//!
//! A sidecar serves its own service's identity only: a request naming another SPIFFE
//! ID is refused. Who may connect is the socket's file mode (0600 unless widened).
//! The messages are few and flat, so they are encoded here (`pb`) rather than with a
//! protobuf code generator; decoding reads only the fields a request has and bounds
//! the body.

use crate::grpc::{data_frame, pb, read_message, refused, response, trailers, unary};
use crate::grpc::{Code, Status, Stream};
use crate::mesh::MeshTls;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::sync::Arc;
use tribune_model::api::{paths, JwtSvid, JwtSvidRequest};

/// How deep a validated token's claims may nest in the answer's `Struct`.
const MAX_CLAIM_DEPTH: usize = 16;

/// What the API serves from: the sidecar's identity and the agent.
pub struct WorkloadApi {
    pub tls: Arc<MeshTls>,
    pub agent: tribune_client::Client,
}

impl WorkloadApi {
    fn x509_svid_response(&self) -> Vec<u8> {
        let id = self.tls.identity();
        let chain: Vec<u8> = id
            .chain()
            .iter()
            .flat_map(|c| c.as_ref().to_vec())
            .collect();
        let bundle: Vec<u8> = id.roots.iter().flat_map(|c| c.as_ref().to_vec()).collect();
        let mut svid = Vec::new();
        pb::bytes(&mut svid, 1, id.spiffe_id.as_bytes());
        pb::bytes(&mut svid, 2, &chain);
        pb::bytes(&mut svid, 3, id.key_der());
        pb::bytes(&mut svid, 4, &bundle);
        let mut out = Vec::new();
        pb::bytes(&mut out, 1, &svid);
        out
    }

    fn x509_bundles_response(&self) -> Vec<u8> {
        let id = self.tls.identity();
        let bundle: Vec<u8> = id.roots.iter().flat_map(|c| c.as_ref().to_vec()).collect();
        let mut out = Vec::new();
        pb::map_entry(
            &mut out,
            2,
            &format!("spiffe://{}", id.trust_domain),
            &bundle,
        );
        out
    }

    async fn jwks(&self) -> Result<Vec<u8>, Status> {
        let r = self
            .agent
            .request("GET", paths::CA_JWKS, None)
            .await
            .map_err(|e| Status(Code::Unavailable, format!("agent unreachable: {e}")))?;
        if r.status != 200 {
            return Err(Status(
                Code::Unavailable,
                format!("the agent answered {} for the JWT bundle", r.status),
            ));
        }
        Ok(r.body.into_bytes())
    }

    async fn jwt_bundles_response(&self) -> Result<Vec<u8>, Status> {
        let jwks = self.jwks().await?;
        let mut out = Vec::new();
        let td = self.tls.identity().trust_domain.clone();
        pb::map_entry(&mut out, 1, &format!("spiffe://{td}"), &jwks);
        Ok(out)
    }

    async fn fetch_jwt_svid(&self, req: &[u8]) -> Result<Vec<u8>, Status> {
        let invalid = |m: String| Status(Code::InvalidArgument, m);
        let mut audience = Vec::new();
        let mut wanted = String::new();
        for (n, v) in pb::fields(req).map_err(invalid)? {
            let s = String::from_utf8(v.to_vec()).map_err(|_| invalid("not UTF-8".into()))?;
            match n {
                1 => audience.push(s),
                2 => wanted = s,
                _ => {}
            }
        }
        if audience.iter().all(String::is_empty) {
            return Err(invalid("audience must be specified".into()));
        }
        let id = self.tls.identity();
        if !wanted.is_empty() && wanted != id.spiffe_id {
            return Err(Status(
                Code::PermissionDenied,
                format!(
                    "no identity issued for {wanted}: this socket serves {}",
                    id.spiffe_id
                ),
            ));
        }
        let body = serde_json::to_vec(&JwtSvidRequest {
            service: id.service.clone(),
            audience,
            ttl: String::new(),
        })
        .map_err(|e| Status(Code::Unavailable, e.to_string()))?;
        let r = self
            .agent
            .request("POST", paths::JWT_SVID, Some(body))
            .await
            .map_err(|e| Status(Code::Unavailable, format!("agent unreachable: {e}")))?;
        if r.status != 200 {
            return Err(Status(
                Code::Unavailable,
                format!("the agent answered {}: {}", r.status, r.body.trim()),
            ));
        }
        let svid: JwtSvid = serde_json::from_str(&r.body)
            .map_err(|e| Status(Code::Unavailable, format!("unexpected answer: {e}")))?;
        let mut one = Vec::new();
        pb::bytes(&mut one, 1, svid.spiffe_id.as_bytes());
        pb::bytes(&mut one, 2, svid.token.as_bytes());
        let mut out = Vec::new();
        pb::bytes(&mut out, 1, &one);
        Ok(out)
    }

    async fn validate_jwt_svid(&self, req: &[u8]) -> Result<Vec<u8>, Status> {
        let invalid = |m: String| Status(Code::InvalidArgument, m);
        let (mut audience, mut token) = (String::new(), String::new());
        for (n, v) in pb::fields(req).map_err(invalid)? {
            let s = String::from_utf8(v.to_vec()).map_err(|_| invalid("not UTF-8".into()))?;
            match n {
                1 => audience = s,
                2 => token = s,
                _ => {}
            }
        }
        if audience.is_empty() {
            return Err(invalid("audience must be specified".into()));
        }
        if token.is_empty() {
            return Err(invalid("svid must be specified".into()));
        }
        let jwks = self.jwks().await?;
        let keys = tribune_jwt::Jwks::parse(&jwks)
            .map_err(|e| Status(Code::Unavailable, format!("JWT bundle: {e}")))?;
        let provider = tribune_model::JwtProvider {
            name: "workload-api".into(),
            json_web_key_set: tribune_model::jwt_provider::JsonWebKeySet::Local(
                tribune_model::jwt_provider::LocalJwks::Inline(String::new()),
            ),
            issuer: String::new(),
            audiences: vec![audience],
            locations: Vec::new(),
            forwarding: None,
            claim_to_headers: Vec::new(),
            clock_skew_seconds: 0,
            cache_config: None,
            meta: Default::default(),
        };
        let claims = tribune_jwt::Verifier::new(&provider, Arc::new(keys))
            .verify(&token, now())
            .map_err(|e| invalid(format!("invalid JWT-SVID: {}", e.text())))?
            .to_value();
        let td = self.tls.identity().trust_domain.clone();
        let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("");
        if tribune_ca::ServiceId::parse(sub).is_none_or(|id| id.trust_domain != td) {
            return Err(invalid(format!(
                "invalid JWT-SVID: sub {sub:?} is not a SPIFFE ID of spiffe://{td}"
            )));
        }
        let mut out = Vec::new();
        pb::bytes(&mut out, 1, sub.as_bytes());
        if let serde_json::Value::Object(m) = &claims {
            pb::bytes(&mut out, 2, &pb::structure(m, MAX_CLAIM_DEPTH));
        }
        Ok(out)
    }

    /// One call.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Stream>, Infallible> {
        // The spec's guard against browsers and SSRF: the header a browser cannot set.
        let guarded = req
            .headers()
            .get("workload.spiffe.io")
            .and_then(|v| v.to_str().ok())
            == Some("true");
        if !guarded {
            return Ok(refused(Status(
                Code::InvalidArgument,
                "security header missing from request".into(),
            )));
        }
        let method = req
            .uri()
            .path()
            .strip_prefix("/SpiffeWorkloadAPI/")
            .unwrap_or("")
            .to_string();
        let message = match read_message(req.into_body()).await {
            Ok(m) => m,
            Err(s) => return Ok(refused(s)),
        };
        let reply = match method.as_str() {
            "FetchX509SVID" => {
                return Ok(self.stream(|api| async move { Ok(api.x509_svid_response()) }))
            }
            "FetchX509Bundles" => {
                return Ok(self.stream(|api| async move { Ok(api.x509_bundles_response()) }))
            }
            "FetchJWTBundles" => {
                return Ok(self.stream(|api| async move { api.jwt_bundles_response().await }))
            }
            "FetchJWTSVID" => self.fetch_jwt_svid(&message).await,
            "ValidateJWTSVID" => self.validate_jwt_svid(&message).await,
            other => Err(Status(
                Code::Unimplemented,
                format!("unknown method {other:?}"),
            )),
        };
        Ok(match reply {
            Ok(msg) => unary(msg),
            Err(s) => refused(s),
        })
    }

    /// A server stream: `make`'s message now, and again after every identity change,
    /// until the client goes away.
    fn stream<F, Fut>(self: Arc<Self>, make: F) -> Response<Stream>
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Vec<u8>, Status>> + Send,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut changes = self.tls.subscribe();
        tokio::spawn(async move {
            loop {
                match make(self.clone()).await {
                    Ok(msg) => {
                        if tx.send(data_frame(&msg)).await.is_err() {
                            return;
                        }
                    }
                    Err(s) => {
                        let _ = tx.send(trailers(s.0 as u8, &s.1)).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        response(Stream(rx))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// gRPC's C core (Python's, Ruby's, C++'s clients) sends a Unix socket's path as the
/// HTTP/2 `:authority` (`tmp%2Fspiffe.sock`), which the `http` crate refuses as a host,
/// so hyper would reset every such call. What the client sends is rewritten before
/// hyper reads it: the value of a literal `:authority` field becomes `l`. The value
/// goes into the server's HPACK table one or more octets shorter than into the
/// client's, so the server's table only ever holds more of the older entries, and
/// every index the client sends still names the same field.
pub mod authority {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const HEADERS: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    /// Largest frame read (HTTP/2's default SETTINGS_MAX_FRAME_SIZE is 16 KB; the
    /// server does not raise it).
    const MAX_FRAME: usize = 1 << 20;

    /// An HPACK integer with an `n`-bit prefix at `at`: its value and the next index.
    fn int(b: &[u8], at: usize, n: u32) -> Option<(usize, usize)> {
        let max = (1usize << n) - 1;
        let mut v = usize::from(*b.get(at)?) & max;
        let mut i = at + 1;
        if v < max {
            return Some((v, i));
        }
        let mut shift = 0u32;
        loop {
            let byte = usize::from(*b.get(i)?);
            i += 1;
            v = v.checked_add((byte & 0x7f).checked_shl(shift)?)?;
            if byte & 0x80 == 0 {
                return Some((v, i));
            }
            shift += 7;
            if shift > 28 {
                return None;
            }
        }
    }

    /// The end of the string literal at `at`, and whether it is `:authority`.
    fn string(b: &[u8], at: usize) -> Option<(usize, bool)> {
        let huffman = b.get(at)? & 0x80 != 0;
        let (len, start) = int(b, at, 7)?;
        let end = start.checked_add(len).filter(|e| *e <= b.len())?;
        Some((end, !huffman && &b[start..end] == b":authority"))
    }

    /// `block` with every literal `:authority` value replaced by `l`; `None` when the
    /// block cannot be read (it is then passed on as it came).
    pub fn rewrite_block(b: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let first = b[i];
            if first & 0x80 != 0 {
                // Indexed field.
                let (_, next) = int(b, i, 7)?;
                out.extend_from_slice(&b[i..next]);
                i = next;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update.
                let (_, next) = int(b, i, 5)?;
                out.extend_from_slice(&b[i..next]);
                i = next;
            } else {
                // A literal: incremental indexing (6-bit name index), or without /
                // never indexed (4-bit).
                let bits = if first & 0x40 != 0 { 6 } else { 4 };
                let (index, mut next) = int(b, i, bits)?;
                let mut is_authority = index == 1;
                if index == 0 {
                    let (end, named) = string(b, next)?;
                    is_authority = named;
                    next = end;
                }
                let (value_end, _) = string(b, next)?;
                out.extend_from_slice(&b[i..next]);
                if is_authority && value_end - next > 1 {
                    out.extend_from_slice(&[0x01, b'l']);
                } else {
                    out.extend_from_slice(&b[next..value_end]);
                }
                i = value_end;
            }
        }
        Some(out)
    }

    /// One HEADERS frame's payload rewritten (its flags say how it is laid out).
    fn rewrite_headers(flags: u8, payload: &[u8]) -> Option<Vec<u8>> {
        if flags & END_HEADERS == 0 {
            // Continued in CONTINUATION frames: left alone.
            return None;
        }
        let mut at = 0;
        let pad = if flags & PADDED != 0 {
            at = 1;
            usize::from(*payload.first()?)
        } else {
            0
        };
        let prio = if flags & PRIORITY != 0 { 5 } else { 0 };
        let block_start = at + prio;
        let block_end = payload.len().checked_sub(pad)?;
        if block_start > block_end {
            return None;
        }
        let block = rewrite_block(&payload[block_start..block_end])?;
        let mut out = payload[..block_start].to_vec();
        out.extend(block);
        out.extend_from_slice(&payload[block_end..]);
        Some(out)
    }

    /// Copies the client's bytes to the server, rewriting HEADERS frames; ends when
    /// either side closes.
    pub async fn relay<R, W>(mut from: R, mut to: W)
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut preface = [0u8; 24];
        if from.read_exact(&mut preface).await.is_err() || to.write_all(&preface).await.is_err() {
            return;
        }
        if preface[..] != PREFACE[..] {
            // Not HTTP/2: the server refuses it.
            let _ = tokio::io::copy(&mut from, &mut to).await;
            return;
        }
        loop {
            let mut head = [0u8; 9];
            if from.read_exact(&mut head).await.is_err() {
                return;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            if len > MAX_FRAME {
                return;
            }
            let mut payload = vec![0u8; len];
            if from.read_exact(&mut payload).await.is_err() {
                return;
            }
            let rewritten = if head[3] == HEADERS {
                rewrite_headers(head[4], &payload)
            } else {
                None
            };
            let (head, payload) = match rewritten {
                Some(p) => {
                    let n = p.len();
                    let mut h = head;
                    h[0] = (n >> 16) as u8;
                    h[1] = (n >> 8) as u8;
                    h[2] = n as u8;
                    (h, p)
                }
                None => (head, payload),
            };
            if to.write_all(&head).await.is_err() || to.write_all(&payload).await.is_err() {
                return;
            }
        }
    }
}

/// Serves the API on a Unix socket at `path` with file mode `mode` (a stale socket
/// file is replaced; any other file is refused).
pub async fn serve(
    api: Arc<WorkloadApi>,
    path: std::path::PathBuf,
    mode: u32,
) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if !m.file_type().is_socket() {
            return Err(format!(
                "-workload-api-socket {}: exists and is not a socket",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(&path);
    }
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| format!("-workload-api-socket {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("-workload-api-socket {}: {e}", path.display()))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let api = api.clone();
            tokio::spawn(async move {
                // Client to server through the `:authority` rewrite; back as it is.
                let (server_side, relay_side) = tokio::io::duplex(64 << 10);
                let (client_read, mut client_write) = stream.into_split();
                let (relay_read, relay_write) = tokio::io::split(relay_side);
                tokio::spawn(authority::relay(client_read, relay_write));
                tokio::spawn(async move {
                    let mut relay_read = relay_read;
                    let _ = tokio::io::copy(&mut relay_read, &mut client_write).await;
                });
                let service = hyper::service::service_fn(move |req| api.clone().handle(req));
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(server_side), service)
                        .await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::authority;
    use crate::grpc::pb;

    /// What gRPC's C core sends on a Unix socket: `:authority` as a literal with
    /// incremental indexing (static name index 1), here not Huffman-coded, among
    /// indexed fields; and a literal with a literal name.
    #[test]
    fn a_socket_path_authority_becomes_a_valid_one_and_nothing_else_changes() {
        let mut block = vec![0x86, 0x83]; // :scheme http, :method POST (indexed)
        block.push(0x41); // literal, incremental indexing, name index 1
        block.push(17);
        block.extend_from_slice(b"tmp%2Fwl%2Fw.sock");
        block.push(0x40); // literal name
        block.push(2);
        block.extend_from_slice(b"te");
        block.push(8);
        block.extend_from_slice(b"trailers");
        let out = authority::rewrite_block(&block).unwrap();
        let mut want = vec![0x86, 0x83, 0x41, 0x01, b'l', 0x40, 2];
        want.extend_from_slice(b"te");
        want.push(8);
        want.extend_from_slice(b"trailers");
        assert_eq!(out, want);
        // A literal-named `:authority` too; an empty value is left alone (its
        // replacement would be longer).
        let mut named = vec![0x00, 10];
        named.extend_from_slice(b":authority");
        named.extend_from_slice(&[5, b'a', b'.', b's', b'o', b'k']);
        let out = authority::rewrite_block(&named).unwrap();
        assert_eq!(&out[12..], &[0x01, b'l']);
        assert_eq!(
            authority::rewrite_block(&[0x41, 0x01, b'x']).unwrap(),
            vec![0x41, 0x01, b'l']
        );
        assert_eq!(
            authority::rewrite_block(&[0x41, 0x00]).unwrap(),
            vec![0x41, 0x00]
        );
        // Truncated blocks are not rewritten (and nothing panics).
        assert!(authority::rewrite_block(&[0x41, 17, b't']).is_none());
        assert!(authority::rewrite_block(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_none());
    }

    #[test]
    fn messages_round_trip_through_the_field_reader() {
        let mut m = Vec::new();
        pb::bytes(&mut m, 1, b"api");
        pb::bytes(&mut m, 1, b"billing");
        pb::bytes(&mut m, 2, b"spiffe://td/ns/default/dc/dc1/svc/web");
        pb::uint(&mut m, 7, 300);
        let f = pb::fields(&m).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!((f[0].0, f[0].1), (1, &b"api"[..]));
        assert_eq!(f[2].1, b"spiffe://td/ns/default/dc/dc1/svc/web");
        // Truncated and over-long inputs are errors, not panics.
        assert!(pb::fields(&m[..m.len() - 4]).is_err());
        assert!(
            pb::fields(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
                .is_err()
        );
        let deep = serde_json::json!({"a": {"b": {"c": [1, true, null, "x"]}}});
        assert!(!pb::structure(deep.as_object().unwrap(), 16).is_empty());
    }
}
