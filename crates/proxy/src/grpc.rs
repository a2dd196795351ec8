//! gRPC over hyper's HTTP/2, the little Tribune's two gRPC services (the SPIFFE
//! Workload API, Envoy's external authorization) need: one request message, unary or
//! server-streamed answers, status in trailers. Messages are encoded by hand
//! ([`pb`]): the services' messages are few and flat, and a code generator would
//! bring protoc-time dependencies for a dozen fields.

use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::Response;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest request message read.
pub const MAX_REQUEST: usize = 64 << 10;

/// gRPC status codes the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 3,
    PermissionDenied = 7,
    Unimplemented = 12,
    Unavailable = 14,
}

/// A refused call: its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status(pub Code, pub String);

/// Protocol buffers, the little the Workload API needs.
pub mod pb {
    /// Appends a varint.
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Field `n`, length-delimited.
    pub fn bytes(out: &mut Vec<u8>, n: u32, data: &[u8]) {
        varint(out, (u64::from(n) << 3) | 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }

    /// Field `n`, a varint.
    pub fn uint(out: &mut Vec<u8>, n: u32, v: u64) {
        varint(out, u64::from(n) << 3);
        varint(out, v);
    }

    /// Field `n`, a double (fixed 64).
    pub fn double(out: &mut Vec<u8>, n: u32, v: f64) {
        varint(out, (u64::from(n) << 3) | 1);
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// A `map<string, bytes>` entry as field `n`.
    pub fn map_entry(out: &mut Vec<u8>, n: u32, key: &str, value: &[u8]) {
        let mut e = Vec::with_capacity(key.len() + value.len() + 8);
        bytes(&mut e, 1, key.as_bytes());
        bytes(&mut e, 2, value);
        bytes(out, n, &e);
    }

    fn read_varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *buf.get(*at).ok_or("truncated varint")?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    /// The length-delimited fields of a message as (field number, bytes); other wire
    /// types are skipped. Errs on a malformed message.
    pub fn fields(buf: &[u8]) -> Result<Vec<(u32, &[u8])>, String> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let key = read_varint(buf, &mut at)?;
            let (n, wire) = ((key >> 3) as u32, key & 7);
            match wire {
                0 => {
                    read_varint(buf, &mut at)?;
                }
                1 => {
                    at = at
                        .checked_add(8)
                        .filter(|a| *a <= buf.len())
                        .ok_or("truncated")?
                }
                5 => {
                    at = at
                        .checked_add(4)
                        .filter(|a| *a <= buf.len())
                        .ok_or("truncated")?
                }
                2 => {
                    let len = usize::try_from(read_varint(buf, &mut at)?).map_err(|_| "length")?;
                    let end = at
                        .checked_add(len)
                        .filter(|e| *e <= buf.len())
                        .ok_or("truncated field")?;
                    out.push((n, &buf[at..end]));
                    at = end;
                }
                other => return Err(format!("unsupported wire type {other}")),
            }
        }
        Ok(out)
    }

    /// `google.protobuf.Value` of a JSON value (`Struct` for objects), nested at most
    /// `depth` levels (deeper values become null).
    pub fn value(v: &serde_json::Value, depth: usize) -> Vec<u8> {
        use serde_json::Value as J;
        let mut out = Vec::new();
        match v {
            _ if depth == 0 => uint(&mut out, 1, 0),
            J::Null => uint(&mut out, 1, 0),
            J::Bool(b) => uint(&mut out, 4, u64::from(*b)),
            J::Number(n) => double(&mut out, 2, n.as_f64().unwrap_or(0.0)),
            J::String(s) => bytes(&mut out, 3, s.as_bytes()),
            J::Array(a) => {
                let mut list = Vec::new();
                for item in a {
                    bytes(&mut list, 1, &value(item, depth - 1));
                }
                bytes(&mut out, 6, &list);
            }
            J::Object(m) => bytes(&mut out, 5, &structure(m, depth - 1)),
        }
        out
    }

    /// `google.protobuf.Struct` of a JSON object.
    pub fn structure(m: &serde_json::Map<String, serde_json::Value>, depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in m {
            let mut e = Vec::new();
            bytes(&mut e, 1, k.as_bytes());
            bytes(&mut e, 2, &value(v, depth));
            bytes(&mut out, 1, &e);
        }
        out
    }
}

/// gRPC framing of one message.
pub mod bytes_frames {
    use hyper::body::{Bytes, Frame};
    use hyper::header::{HeaderMap, HeaderValue};

    pub fn data_frame(msg: &[u8]) -> Frame<Bytes> {
        let mut out = Vec::with_capacity(msg.len() + 5);
        out.push(0);
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        Frame::data(Bytes::from(out))
    }

    pub fn trailers(code: u8, message: &str) -> Frame<Bytes> {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from(u16::from(code)));
        if !message.is_empty() {
            let encoded: String =
                percent_encoding::utf8_percent_encode(message, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            if let Ok(v) = HeaderValue::from_str(&encoded) {
                h.insert("grpc-message", v);
            }
        }
        Frame::trailers(h)
    }
}

/// A response body fed by a channel: gRPC messages, then trailers.
pub struct Stream(pub tokio::sync::mpsc::Receiver<Frame<Bytes>>);

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

pub fn response(body: Stream) -> Response<Stream> {
    let mut res = Response::new(body);
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    res
}

/// A call answered with `status` alone.
pub fn refused(status: Status) -> Response<Stream> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.try_send(trailers(status.0 as u8, &status.1));
    response(Stream(rx))
}

/// A unary answer.
pub fn unary(msg: Vec<u8>) -> Response<Stream> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let _ = tx.try_send(data_frame(&msg));
    let _ = tx.try_send(trailers(Code::Ok as u8, ""));
    response(Stream(rx))
}

/// The request's one message (bounded; none is an empty message).
pub async fn read_message(body: Incoming) -> Result<Vec<u8>, Status> {
    use http_body_util::BodyExt;
    let invalid = |m: &str| Status(Code::InvalidArgument, m.to_string());
    let bytes = http_body_util::Limited::new(body, MAX_REQUEST + 5)
        .collect()
        .await
        .map_err(|_| invalid("request too large or cut off"))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() < 5 || bytes[0] != 0 {
        return Err(invalid("malformed or compressed gRPC message"));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    bytes
        .get(5..5 + len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| invalid("truncated gRPC message"))
}

pub use bytes_frames::{data_frame, trailers};
