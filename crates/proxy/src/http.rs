//! The request path, in named phases:
//!
//! 1. **accept**: a listener hands over a connection and the caller's identity (the
//!    SPIFFE service of its client certificate on the mesh listener, none on the edge
//!    listener); with no snapshot yet the connection is closed (fail closed);
//!    `tcp` destinations get an L4 decision and a byte-for-byte copy instead.
//! 2. **snapshot**: the request takes the current snapshot and keeps it to the end.
//! 3. **normalize**: the path is normalized (decisions.md #15) for matching and
//!    forwarding.
//! 4. **extract + verify**: for each provider the destination's intentions reference,
//!    the tokens addressed to it are verified (cache first).
//! 5. **decide**: the intentions table decides from caller, method, path, headers and
//!    token outcomes.
//! 6. **respond or rewrite**: a denial becomes its response (decisions.md #12);
//!    otherwise client-supplied copies of forwarded-payload headers are removed,
//!    verified tokens are stripped unless `Forward = true`, and the `Forwarding`
//!    headers are added.
//! 7. **forward** to the local service over a pooled connection; upstream failures
//!    become 502/503/504 with short Envoy-style bodies.
//! 8. **log**: one access record per request.

use crate::conns::{Conn, Slot};
use crate::metrics::UpstreamResult;
use crate::snapshot::Snapshot;
use crate::Proxy;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tribune_authz::{
    deny_response, normalize_request_path, Caller, Decision, PathVerdict, RequestFacts,
    TokenOutcome, Tokens,
};
use tribune_jwt::locate::{
    conclude, extract, forwards_token, from_header, holds_token, percent_decode, Outcome,
    RequestParts,
};
use tribune_jwt::JwtError;
use tribune_model::mesh::Underscores;

pub use crate::upstream::ProxyBody;

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// Snapshot version that decided (0 when there was none).
    pub version: u64,
    pub caller: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `allow`, `deny`, or `error` (allowed but the upstream failed).
    pub decision: &'static str,
    /// [`Decision::code`], or the upstream failure.
    pub reason: &'static str,
    /// The deciding (or closest) intention, `source -> destination`.
    pub intention: Option<String>,
    pub latency: Duration,
}

struct View<'a> {
    headers: &'a HeaderMap,
    query: Option<&'a str>,
}

impl RequestParts for View<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        // The default token location, without parsing its name on every request.
        let values = if name.eq_ignore_ascii_case("authorization") {
            self.headers.get_all(hyper::header::AUTHORIZATION)
        } else {
            self.headers.get_all(name)
        };
        values.iter().filter_map(|v| v.to_str().ok()).collect()
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
}

impl tribune_authz::Headers for View<'_> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        let mut out = String::from_utf8_lossy(first.as_bytes());
        for v in values {
            let joined = out.to_mut();
            joined.push(',');
            joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        Some(out)
    }
}

fn short(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    r
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), not forwarded; `te: trailers` is kept (gRPC
/// needs it).
const HOPS: usize = 8;
static HOP_BY_HOP: [HeaderName; HOPS] = [
    hyper::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    hyper::header::PROXY_AUTHENTICATE,
    hyper::header::PROXY_AUTHORIZATION,
    hyper::header::TRAILER,
    hyper::header::TRANSFER_ENCODING,
    hyper::header::UPGRADE,
];

/// The index in [`HOP_BY_HOP`] of a hop-by-hop header name, `HOPS` for `te` (a string
/// match: cheaper than comparing against each `HeaderName`; a test keeps the two lists
/// in step).
fn hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        "te" => HOPS,
        _ => return None,
    })
}

/// Removes hop-by-hop headers and those the `Connection` header lists. Most messages
/// have none or only `Connection: keep-alive`, so one pass over the (few) names finds
/// the work, and only `Connection` options that name other headers are parsed.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOPS + 1];
    let mut any = false;
    for k in headers.keys() {
        if let Some(i) = hop_index(k) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    if present[0] {
        let listed: Vec<HeaderName> = headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| {
                !n.eq_ignore_ascii_case("close")
                    && !HOP_BY_HOP
                        .iter()
                        .any(|h| n.eq_ignore_ascii_case(h.as_str()))
            })
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    if present[HOPS]
        && headers
            .get(hyper::header::TE)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(hyper::header::TE);
    }
}

/// The query string without the token parameters (`names`, compared after decoding,
/// as token lookup compares them) whose value is not in `keep`; `None` when nothing
/// is removed.
fn strip_params(query: &str, names: &[String], keep: &[String]) -> Option<String> {
    let mut removed = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let token_param = names.iter().any(|n| component_is(k, n));
            let strip = token_param && !keep.iter().any(|t| *t == percent_decode(v));
            removed |= strip;
            !strip
        })
        .collect();
    removed.then(|| kept.join("&"))
}

/// Whether a raw query component decodes to `want` (no allocation unless escaped).
fn component_is(raw: &str, want: &str) -> bool {
    if raw.bytes().any(|b| b == b'%' || b == b'+') {
        percent_decode(raw) == want
    } else {
        raw == want
    }
}

/// Removes the values of a token header that hold a token (the header's prefix, as
/// token lookup reads it) unless that token is in `keep`.
fn strip_token_values(headers: &mut HeaderMap, name: &HeaderName, prefix: &str, keep: &[String]) {
    if !headers.contains_key(name) {
        return;
    }
    let is_stripped = |v: &HeaderValue| {
        let Ok(v) = v.to_str() else {
            return false;
        };
        if keep.is_empty() {
            // The usual case (no provider forwards): no token copied to decide.
            holds_token(v, prefix)
        } else {
            from_header(v, prefix).is_some_and(|t| !keep.contains(&t))
        }
    };
    if !headers.get_all(name).iter().any(is_stripped) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(name)
        .iter()
        .filter(|v| !is_stripped(v))
        .cloned()
        .collect();
    headers.remove(name);
    for v in kept {
        headers.append(name.clone(), v);
    }
}

fn has_underscore_name(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| k.as_str().contains('_'))
}

fn drop_underscore_names(headers: &mut HeaderMap) {
    if !has_underscore_name(headers) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Removes client headers that are the proxy's own up to case and `_`/`-` (`owned`
/// holds folded names). Only names with `_` can be look-alikes: header names arrive
/// in lower case, and exact copies are removed by name.
fn remove_lookalikes(headers: &mut HeaderMap, owned: &[String]) {
    if !has_underscore_name(headers) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_') && owned.contains(&crate::snapshot::fold(k.as_str())))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

impl Proxy {
    fn log(&self, record: impl FnOnce() -> AccessRecord) {
        if !self.logging() {
            return;
        }
        let record = record();
        match &self.config.access_sink {
            Some(sink) => sink(&record),
            None => tracing::info!(
                target: "tribune::access",
                version = record.version,
                caller = record.caller.as_deref().unwrap_or("-"),
                method = %record.method,
                path = %record.path,
                status = record.status,
                decision = record.decision,
                reason = record.reason,
                intention = record.intention.as_deref().unwrap_or("-"),
                latency_us = record.latency.as_micros() as u64,
            ),
        }
    }

    fn count_jwt(rt: &crate::keys::ProviderRuntime, outcome: &Outcome) {
        let failure = match outcome {
            Outcome::Missing => Some(tribune_jwt::JwtCode::Missing),
            Outcome::Valid { .. } => None,
            Outcome::Invalid(e) => Some(e.code()),
        };
        rt.outcomes[crate::metrics::token_slot(failure)]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn count_decision(&self, decision: &Decision) {
        let d = usize::from(!decision.allowed());
        self.metrics.counters.decisions[d][decision.code() as usize]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether access records are wanted (a sink, or the access log target enabled).
    fn logging(&self) -> bool {
        self.config.access_sink.is_some()
            || tracing::enabled!(target: "tribune::access", tracing::Level::INFO)
    }
}

/// Requests answered before any policy is consulted: `CONNECT` (an HTTP destination
/// is not a tunnel; WebSocket-style extended CONNECT comes with upgrades) and a
/// request with two `Host` headers (RFC 9112 §3.2: 400), which two parsers could read
/// differently.
fn malformed(parts: &hyper::http::request::Parts) -> Option<(StatusCode, &'static str)> {
    if parts.method == hyper::Method::CONNECT {
        return Some((StatusCode::METHOD_NOT_ALLOWED, "connect_method"));
    }
    let mut hosts = parts.headers.get_all(hyper::header::HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return Some((StatusCode::BAD_REQUEST, "duplicate_host"));
    }
    None
}

/// The access record of a request answered before any decision (bad path, bad
/// framing): `decision` is `error` and `reason` names what was wrong.
fn rejected(
    snap: &Snapshot,
    caller: &Option<Arc<str>>,
    parts: &hyper::http::request::Parts,
    status: u16,
    reason: &'static str,
    start: Instant,
) -> AccessRecord {
    AccessRecord {
        version: snap.version,
        caller: caller.as_deref().map(str::to_string),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        status,
        decision: "error",
        reason,
        intention: None,
        latency: start.elapsed(),
    }
}

/// Phases 2-8 for one HTTP request.
pub async fn handle(
    proxy: Arc<Proxy>,
    caller: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let Some(snap) = proxy.current() else {
        return Ok(short(
            StatusCode::SERVICE_UNAVAILABLE,
            "no policy snapshot yet",
        ));
    };
    let (mut parts, body) = req.into_parts();
    if let Some((status, reason)) = malformed(&parts) {
        proxy.log(|| rejected(&snap, &caller, &parts, status.as_u16(), reason, start));
        return Ok(short(
            status,
            status.canonical_reason().unwrap_or("Bad Request"),
        ));
    }
    let mut rules = snap.normalization;
    rules.merge_slashes |= proxy.config.merge_slashes;
    let path = match normalize_request_path(parts.uri.path(), &rules) {
        PathVerdict::Forward(p) => p,
        PathVerdict::Reject => {
            proxy.log(|| rejected(&snap, &caller, &parts, 400, "escaped_separator", start));
            return Ok(short(StatusCode::BAD_REQUEST, "Bad Request"));
        }
        PathVerdict::Redirect(p) => {
            let location = match parts.uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p,
            };
            let mut resp = short(StatusCode::TEMPORARY_REDIRECT, "");
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(hyper::header::LOCATION, v);
            }
            proxy.log(|| rejected(&snap, &caller, &parts, 307, "path_redirect", start));
            return Ok(resp);
        }
    };
    let now = (proxy.config.clock)();

    match rules.headers_with_underscores_action {
        Underscores::Allow => {}
        Underscores::RejectRequest if has_underscore_name(&parts.headers) => {
            proxy.log(|| {
                rejected(
                    &snap,
                    &caller,
                    &parts,
                    400,
                    "header_with_underscores",
                    start,
                )
            });
            return Ok(short(StatusCode::BAD_REQUEST, "Bad Request"));
        }
        Underscores::RejectRequest => {}
        Underscores::DropHeader => drop_underscore_names(&mut parts.headers),
    }

    let mut outcomes: Vec<Outcome> = Vec::with_capacity(snap.providers.len());
    // Tokens that a provider with `Forward = true` verified: the only values in token
    // locations that may reach the upstream (decisions.md #18).
    let mut forwarded_tokens: Vec<String> = Vec::new();
    {
        let view = View {
            headers: &parts.headers,
            query: parts.uri.query(),
        };
        for rt in &snap.providers {
            let mut mine = Vec::new();
            let mut results = Vec::new();
            for found in extract(&rt.provider.locations, &view) {
                if let Some(result) = rt.check(&found.token, now).await {
                    mine.push(found);
                    results.push(result);
                }
            }
            let mut results = results.into_iter();
            let outcome = conclude(&rt.provider, &mine, |_| {
                results.next().unwrap_or(Err(JwtError::Missing))
            });
            if matches!(outcome, Outcome::Valid { .. }) && forwards_token(&rt.provider) {
                forwarded_tokens.extend(mine.into_iter().map(|f| f.token));
            }
            Proxy::count_jwt(rt, &outcome);
            outcomes.push(outcome);
        }
    }

    let decision = {
        let token_facts: Vec<(&str, TokenOutcome<'_>)> = snap
            .providers
            .iter()
            .zip(&outcomes)
            .map(|(rt, o)| {
                (
                    rt.provider.name.as_str(),
                    match o {
                        Outcome::Missing => TokenOutcome::Missing,
                        Outcome::Invalid(e) => TokenOutcome::Invalid(e.text()),
                        Outcome::Valid { payload, .. } => TokenOutcome::Valid(payload),
                    },
                )
            })
            .collect();
        let view = View {
            headers: &parts.headers,
            query: None,
        };
        snap.table.evaluate(&RequestFacts {
            caller: caller.as_deref().map(Caller::local),
            method: parts.method.as_str(),
            path: &path,
            headers: &view,
            tokens: Tokens::new(&token_facts),
        })
    };
    proxy.count_decision(&decision);

    let method = parts.method.clone();
    let record = |status: u16, verdict: &'static str, reason: &'static str| AccessRecord {
        version: snap.version,
        caller: caller.as_deref().map(str::to_string),
        method: method.to_string(),
        path: path.clone(),
        status,
        decision: verdict,
        reason,
        intention: decision.intention().map(|i| snap.table.describe(i)),
        latency: start.elapsed(),
    };

    if let Some(deny) = deny_response(&decision, &snap.service) {
        let status = StatusCode::from_u16(deny.status).unwrap_or(StatusCode::FORBIDDEN);
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from(deny.body))));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        if let Some(v) = deny
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            resp.headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, v);
        }
        proxy.log(|| record(status.as_u16(), "deny", decision.code().as_str()));
        return Ok(resp);
    }

    // Rewrite: first what the client sent that it may not (hop-by-hop headers and the
    // headers `Connection` names, so it can never remove what the proxy adds below;
    // copies and look-alikes of the proxy's own headers; every token value no
    // forwarding provider verified), then the proxy's own headers.
    remove_hop_by_hop(&mut parts.headers);
    for name in &snap.forward_headers {
        parts.headers.remove(name);
    }
    remove_lookalikes(&mut parts.headers, &snap.owned_headers);
    for (name, prefix) in &snap.token_headers {
        strip_token_values(&mut parts.headers, name, prefix, &forwarded_tokens);
    }
    for outcome in &outcomes {
        if let Outcome::Valid {
            forward_header: Some((name, value)),
            ..
        } = outcome
        {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                parts.headers.insert(n, v);
            }
        }
    }
    let stripped_query = parts
        .uri
        .query()
        .filter(|_| !snap.token_params.is_empty())
        .and_then(|q| strip_params(q, &snap.token_params, &forwarded_tokens));
    let query = match &stripped_query {
        Some(q) => Some(Cow::Borrowed(q.as_str())),
        None => parts.uri.query().map(Cow::Borrowed),
    };
    let h2 = matches!(snap.protocol.as_str(), "http2" | "grpc");
    let unchanged = stripped_query.is_none() && path == parts.uri.path();
    let uri = if unchanged && !h2 {
        // Origin form as received: nothing to rebuild.
        match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        }
    } else {
        let path_and_query = match query {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.clone(),
        };
        let built = if h2 {
            Uri::builder()
                .scheme("http")
                .authority(proxy.upstream.authority().clone())
                .path_and_query(path_and_query)
                .build()
        } else {
            Uri::builder().path_and_query(path_and_query).build()
        };
        let Ok(uri) = built else {
            proxy.log(|| record(400, "error", "bad_request_uri"));
            return Ok(short(StatusCode::BAD_REQUEST, "Bad Request"));
        };
        uri
    };
    // An HTTP/2 caller names the host in `:authority`; an HTTP/1.1 upstream reads it
    // from `Host`.
    let caller_authority = parts.uri.authority().cloned();
    parts.uri = uri;
    if h2 {
        parts.version = Version::HTTP_2;
    } else {
        parts.version = Version::HTTP_11;
        if !parts.headers.contains_key(hyper::header::HOST) {
            let authority = caller_authority
                .as_ref()
                .unwrap_or_else(|| proxy.upstream.authority());
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(hyper::header::HOST, host);
            }
        }
    }
    let sent = Instant::now();
    let req = Request::from_parts(parts, body);
    let result = if h2 {
        tokio::time::timeout(proxy.config.upstream_timeout, proxy.upstream.send_h2(req)).await
    } else {
        tokio::time::timeout(proxy.config.upstream_timeout, proxy.upstream.send_h1(req)).await
    };
    let (resp, result) = match result {
        Ok(Ok(resp)) => {
            proxy
                .metrics
                .upstream_latency
                .observe(sent.elapsed().as_secs_f64());
            let (mut rp, rb) = resp.into_parts();
            remove_hop_by_hop(&mut rp.headers);
            (Response::from_parts(rp, Either::Left(rb)), UpstreamResult::Ok)
        }
        Ok(Err(e)) if e.is_client_body() => (
            short(StatusCode::BAD_REQUEST, "Bad Request"),
            UpstreamResult::ClientBody,
        ),
        Ok(Err(e)) if e.is_connect() => (
            short(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            UpstreamResult::Connect,
        ),
        Ok(Err(_)) => (
            short(
                StatusCode::BAD_GATEWAY,
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            ),
            UpstreamResult::Reset,
        ),
        Err(_) => (
            short(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
            UpstreamResult::Timeout,
        ),
    };
    proxy.metrics.counters.upstream[result as usize]
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (verdict, reason) = match result {
        UpstreamResult::Ok => ("allow", decision.code().as_str()),
        failed => ("error", failed.label()),
    };
    proxy.log(|| record(resp.status().as_u16(), verdict, reason));
    Ok(resp)
}

/// Serves HTTP/1.1 and HTTP/2 on one accepted connection, within its lifetime rules
/// ([`crate::conns`]): first request within `first_request_timeout`, graceful
/// shutdown after `idle_timeout` without a request or when shed for a new caller.
pub async fn serve_connection<IO>(
    proxy: Arc<Proxy>,
    io: IO,
    caller: Option<Arc<str>>,
    conn: Arc<Conn>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_header = proxy.config.max_header_bytes.max(8192);
    let (first, idle) = (
        proxy.config.first_request_timeout,
        proxy.config.idle_timeout,
    );
    let p = proxy.clone();
    let c = conn.clone();
    let svc = service_fn(move |req| {
        let in_flight = c.begin();
        let answer = handle(p.clone(), caller.clone(), req);
        async move {
            let r = answer.await;
            drop(in_flight);
            r
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .max_buf_size(max_header)
        .timer(TokioTimer::new())
        .header_read_timeout(first);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_header as u32);
    let connection = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = if closing {
            // Streams still open after a graceful shutdown get one more idle period.
            Instant::now() + idle
        } else if conn.seen_request() {
            Instant::now() + idle.saturating_sub(conn.idle_for())
        } else {
            // Wakes by the idle timeout too, so a first request that does arrive
            // starts the idle clock on time.
            conn.accepted() + first.min(idle)
        };
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "downstream connection ended with an error");
                }
                return;
            }
            _ = conn.shed.notified(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if closing {
                    // Still not done an idle period after its shutdown: dropped.
                    return;
                }
                if !conn.seen_request() {
                    if conn.accepted().elapsed() >= first {
                        // Silent since accept (nothing, a partial preface, no stream).
                        return;
                    }
                } else if conn.idle_for() >= idle {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// L4 enforcement for non-HTTP destinations: decide on connect (identity only), then
/// copy bytes both ways.
pub async fn serve_tcp<IO>(proxy: &Proxy, snap: &Snapshot, mut stream: IO, caller: Option<&str>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let decision = snap
        .table
        .evaluate(&RequestFacts::l4(caller.map(Caller::local)));
    proxy.count_decision(&decision);
    let record = |status: u16, verdict: &'static str, reason: &'static str| AccessRecord {
        version: snap.version,
        caller: caller.map(str::to_string),
        method: "TCP".into(),
        path: String::new(),
        status,
        decision: verdict,
        reason,
        intention: decision.intention().map(|i| snap.table.describe(i)),
        latency: start.elapsed(),
    };
    if !decision.allowed() {
        proxy.log(|| record(0, "deny", decision.code().as_str()));
        return;
    }
    match TcpStream::connect(proxy.config.upstream).await {
        Ok(mut up) => {
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
            proxy.log(|| record(0, "allow", decision.code().as_str()));
        }
        Err(_) => proxy.log(|| record(0, "error", UpstreamResult::Connect.label())),
    }
}

/// Phase 1 for one accepted TCP connection.
pub async fn serve_downstream<IO>(
    proxy: Arc<Proxy>,
    stream: IO,
    caller: Option<Arc<str>>,
    conn: Arc<Conn>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(snap) = proxy.current() else {
        // Fail closed: nothing is served before the first snapshot.
        return;
    };
    if snap.http {
        drop(snap);
        serve_connection(proxy, stream, caller, conn).await;
    } else {
        serve_tcp(&proxy, &snap, stream, caller.as_deref()).await;
    }
}

/// Serves one already-accepted stream (any transport: a socket, a TLS stream, an
/// in-memory pipe in tests and the fuzz target) with the given caller, within the
/// connection cap; `false` when the cap left no place for it.
pub async fn serve_stream<IO>(proxy: Arc<Proxy>, stream: IO, caller: Option<Arc<str>>) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(slot) = proxy.conns.admit(Duration::ZERO).await else {
        return false;
    };
    serve_downstream(proxy, stream, caller, slot.conn.clone()).await;
    true
}

/// The edge listener: plain connections from outside the mesh (no caller identity).
pub async fn serve_edge(proxy: Arc<Proxy>, listener: TcpListener) {
    serve_edge_with(proxy, listener, None).await
}

/// The edge listener with server-side TLS (HTTP/1.1 and HTTP/2 by ALPN).
pub async fn serve_edge_tls(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    serve_edge_with(proxy, listener, Some(tokio_rustls::TlsAcceptor::from(tls))).await
}

/// A TLS server config for the edge listener from PEM files.
pub fn edge_tls_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let chain = tribune_ca::certs_from_pem(cert_pem).map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("no certificate in the edge TLS certificate file".into());
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("edge TLS key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("edge TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The next accepted connection within the connection limit (over the limit,
/// connections are closed at once), with TCP_NODELAY set.
pub(crate) async fn accept(
    proxy: &Proxy,
    listener: &TcpListener,
) -> (TcpStream, std::net::SocketAddr, Slot) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                proxy
                    .metrics
                    .counters
                    .connection(crate::metrics::ConnEvent::Accepted);
                x
            }
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE): make room by shedding the
                // longest-idle connection, so the next caller can be served.
                if matches!(e.raw_os_error(), Some(23 | 24)) && proxy.conns.shed_idlest() {
                    tracing::warn!(error = %e, "out of file descriptors; shed an idle connection");
                } else {
                    tracing::warn!(error = %e, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(slot) = proxy.conns.admit(SHED_WAIT).await else {
            tracing::warn!(%peer, "connection limit reached and nothing idle to shed; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        return (stream, peer, slot);
    }
}

/// How long a new connection at the cap waits for a shed connection's place.
const SHED_WAIT: Duration = Duration::from_secs(1);

async fn serve_edge_with(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, _, slot) = accept(&proxy, &listener).await;
        let proxy = proxy.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            proxy.metrics.connections.inc();
            let conn = slot.conn.clone();
            match tls {
                None => serve_downstream(proxy.clone(), stream, None, conn).await,
                Some(acceptor) => {
                    match tokio::time::timeout(
                        crate::mesh::HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => serve_downstream(proxy.clone(), s, None, conn).await,
                        _ => tracing::debug!("edge TLS handshake failed"),
                    }
                }
            }
            proxy.metrics.connections.dec();
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    fn names(m: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = m.keys().map(|k| k.as_str().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn hop_index_matches_the_hop_by_hop_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_index(&hyper::header::TE), Some(HOPS));
        assert_eq!(hop_index(&hyper::header::HOST), None);
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
        let cases: [Case<'_>; 6] = [
            (
                "none",
                vec![("host", "a"), ("x-y", "1")],
                vec!["host", "x-y"],
            ),
            (
                "connection keep-alive",
                vec![
                    ("connection", "keep-alive"),
                    ("keep-alive", "timeout=5"),
                    ("host", "a"),
                ],
                vec!["host"],
            ),
            (
                "connection lists other headers",
                vec![
                    ("connection", "close, X-Secret"),
                    ("x-secret", "s"),
                    ("x-ok", "1"),
                ],
                vec!["x-ok"],
            ),
            (
                "every static name",
                vec![
                    ("proxy-connection", "x"),
                    ("proxy-authenticate", "x"),
                    ("proxy-authorization", "x"),
                    ("trailer", "x"),
                    ("transfer-encoding", "chunked"),
                    ("upgrade", "h2c"),
                    ("x-ok", "1"),
                ],
                vec!["x-ok"],
            ),
            ("te trailers kept", vec![("te", "trailers")], vec!["te"]),
            (
                "te other removed",
                vec![("te", "gzip"), ("x-ok", "1")],
                vec!["x-ok"],
            ),
        ];
        for (name, input, want) in cases {
            let mut m = map(&input);
            remove_hop_by_hop(&mut m);
            assert_eq!(names(&m), want, "{name}");
        }
    }
}
