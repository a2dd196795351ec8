//! The request path, in named phases, each one function that [`handle`] calls top
//! to bottom (ARCHITECTURE.md's chart names them):
//!
//! 1. **accept** ([`crate::serve`]): a listener hands over a connection and the caller's identity (the
//!    SPIFFE service of its client certificate on the mesh listener, none on the edge
//!    listener); with no snapshot yet the connection is closed (fail closed);
//!    `tcp` destinations get an L4 decision and a byte-for-byte copy instead.
//! 2. **snapshot**: the request takes the current snapshot and keeps it to the end.
//! 3. **evaluate** (`evaluate`: `tribune_enforce::Policy::evaluate`, the function
//!    the agent's explain also calls): screen (`CONNECT`, two `Host`s), normalize the
//!    path (decisions.md #15), authenticate (for each provider the destination's
//!    intentions reference, the tokens addressed to it are verified, cache first, by
//!    its key runtime), decide (the intentions table); a staged candidate beside it.
//! 4. **respond or rewrite**: a refusal (`refuse`) or denial (`deny`) becomes its
//!    response (decisions.md #12); an upgrade is screened (`screen_upgrade`);
//!    otherwise (`rewrite`) hop-by-hop headers go, then the policy's rewrite: client
//!    copies of forwarded-payload headers are removed, token values stripped unless
//!    `Forward = true` verified them, and the `Forwarding` headers are added.
//! 5. **forward** (`forward`, `forward_upgrade`) to the local service over a pooled
//!    connection, or an upgrade on its own; upstream failures become 502/503/504
//!    with short Envoy-style bodies.
//! 6. **log** (`Logged::record`): one access record per request.
//!
//! Connections (accept, the connection cap, HTTP/1.1 and HTTP/2 serving, the L4 copy
//! for `tcp` destinations) are [`crate::serve`]'s; it calls [`handle`] per request.

use crate::conns::Conn;
use crate::metrics::UpstreamResult;
use crate::snapshot::Snapshot;
use crate::Proxy;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tribune_authz::{Caller, Decision};
use tribune_enforce::{Evaluation, Request as EnforcedRequest, Verdict};
use tribune_jwks::runtime::count_outcome;

pub use crate::upstream::ProxyBody;

/// One line of the access log, borrowing the request's strings (a sink that keeps
/// records makes them [`AccessRecord::into_owned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    /// Snapshot version that decided (0 when there was none).
    pub version: u64,
    pub caller: Option<Cow<'a, str>>,
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub status: u16,
    /// `allow`, `deny`, or `error` (allowed but the upstream failed).
    pub decision: &'static str,
    /// [`Decision::code`], or the upstream failure.
    pub reason: &'static str,
    /// The deciding (or closest) intention, `source -> destination`.
    pub intention: Option<String>,
    pub latency: Duration,
    /// Set when a staged candidate would answer differently: its decision
    /// (`allow`/`deny`) and reason code (`shadow_decision`, `shadow_reason`).
    pub shadow: Option<(&'static str, &'static str)>,
}

impl AccessRecord<'_> {
    /// The record with its own copies of the request's strings.
    pub fn into_owned(self) -> AccessRecord<'static> {
        AccessRecord {
            caller: self.caller.map(|c| Cow::Owned(c.into_owned())),
            method: Cow::Owned(self.method.into_owned()),
            path: Cow::Owned(self.path.into_owned()),
            version: self.version,
            status: self.status,
            decision: self.decision,
            reason: self.reason,
            intention: self.intention,
            latency: self.latency,
            shadow: self.shadow,
        }
    }
}

/// The headers of every answer the sidecar makes itself: `Content-Type: text/plain`,
/// made once and cloned per answer (a clone copies two small arrays; building the
/// map hashes and grows it per answer, about twice the instructions).
static PLAIN: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(|| {
    let mut h = HeaderMap::with_capacity(2);
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    h
});

/// [`PLAIN`] and one more header (`WWW-Authenticate` of a 401, `Location` of a
/// redirect): the headers an answer with that header has.
pub(crate) fn plain_with(name: HeaderName, value: HeaderValue) -> HeaderMap {
    let mut h = PLAIN.clone();
    h.insert(name, value);
    h
}

/// Every answer the sidecar makes itself (refusals, denials, upstream failures, the
/// checks' answers): a plain-text body and its headers ([`PLAIN`], [`plain_with`],
/// or a snapshot's 401 headers).
fn answer(status: StatusCode, body: Bytes, headers: HeaderMap) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(body)));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// [`answer`] with a fixed body and no other header.
fn short(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    answer(status, Bytes::from_static(body.as_bytes()), PLAIN.clone())
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

/// Removes hop-by-hop headers and those the `Connection` header lists, and says
/// whether a `Host` header is there: one pass over the values finds the work (most
/// messages have none or only `Connection: keep-alive`, which names no other
/// header), and only `Connection` options that name other headers are parsed.
fn remove_hop_by_hop(headers: &mut HeaderMap) -> bool {
    let mut present = [false; HOPS + 1];
    let (mut any, mut host, mut names_others) = (false, false, false);
    // The first `TE` value decides (only `trailers` is kept).
    let mut te_trailers: Option<bool> = None;
    for (k, v) in headers.iter() {
        match hop_index(k) {
            Some(i) => {
                present[i] = true;
                any = true;
                let v = v.as_bytes();
                if i == 0 {
                    names_others |= !(v.eq_ignore_ascii_case(b"keep-alive")
                        || v.eq_ignore_ascii_case(b"close"));
                } else if i == HOPS && te_trailers.is_none() {
                    te_trailers = Some(v.eq_ignore_ascii_case(b"trailers"));
                }
            }
            None => host |= *k == hyper::header::HOST,
        }
    }
    if !any {
        return host;
    }
    if names_others {
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
            // `Connection: host` takes the `Host` header too.
            host &= name != hyper::header::HOST;
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    if te_trailers == Some(false) {
        headers.remove(hyper::header::TE);
    }
    host
}

impl Proxy {
    pub(crate) fn log<'a>(&self, record: impl FnOnce() -> AccessRecord<'a>) {
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
                shadow_decision = record.shadow.map_or("-", |s| s.0),
                shadow_reason = record.shadow.map_or("-", |s| s.1),
            ),
        }
    }

    /// Shadow evaluation (staged policies): counts the candidate's verdict beside the
    /// live one; the candidate's `(decision, reason)` when they differ.
    fn record_shadow(
        &self,
        caller: Option<&str>,
        method: &str,
        path: &str,
        live: Verdict,
        candidate: Verdict,
    ) -> Option<(&'static str, &'static str)> {
        let (l, c) = (usize::from(!live.allowed), usize::from(!candidate.allowed));
        self.metrics.counters.shadow[l][c][candidate.why.slot()]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shadow
            .record(caller, method, path, live, candidate)
            .then_some((
                crate::shadow::label(candidate.allowed),
                candidate.why.as_str(),
            ))
    }

    pub(crate) fn count_decision(&self, decision: &Decision) {
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

/// The access record of a request answered before any decision (bad path, bad
/// framing): `decision` is `error` and `reason` names what was wrong.
fn rejected<'a>(
    snap: &Snapshot,
    caller: &'a Option<Arc<str>>,
    parts: &'a hyper::http::request::Parts,
    uri: &'a Uri,
    status: u16,
    reason: &'static str,
    start: Started,
) -> AccessRecord<'a> {
    AccessRecord {
        version: snap.version,
        caller: caller.as_deref().map(Cow::Borrowed),
        method: Cow::Borrowed(parts.method.as_str()),
        path: Cow::Borrowed(uri.path()),
        status,
        decision: "error",
        reason,
        intention: None,
        latency: start.elapsed(),
        shadow: None,
    }
}

/// When a request started, read from the clock only when access records are kept
/// (the latency is theirs alone).
#[derive(Clone, Copy)]
struct Started(Option<Instant>);

impl Started {
    fn now(proxy: &Proxy) -> Started {
        Started(proxy.logging().then(Instant::now))
    }

    fn elapsed(self) -> Duration {
        self.0.map(|s| s.elapsed()).unwrap_or_default()
    }
}

/// A staged candidate's `(decision, reason)` where it differs from the live policy.
type Shadowed = Option<(&'static str, &'static str)>;

/// Phases 2-6 for one HTTP request, top to bottom; each phase is one function below
/// (ARCHITECTURE.md's chart names them).
pub async fn handle(
    proxy: Arc<Proxy>,
    caller: Option<Arc<str>>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Started::now(&proxy);
    // 2. snapshot: kept to the end of the request.
    let Some(snap) = proxy.current() else {
        return Ok(short(
            StatusCode::SERVICE_UNAVAILABLE,
            "no policy snapshot yet",
        ));
    };
    let (mut parts, body) = req.into_parts();
    // An HTTP/2 WebSocket (RFC 8441) is decided and forwarded as its HTTP/1.1 handshake.
    let h2_websocket = crate::upgrade::from_extended_connect(&mut parts);
    // Held apart from `parts`: the decision borrows its path (an already normal path
    // is not copied), and the rewrite sets the URI the upstream gets.
    let uri = std::mem::take(&mut parts.uri);
    // 3. evaluate: screen, normalize, authenticate, decide (+ shadow, replay).
    let (evaluation, shadow) = evaluate(&proxy, &snap, &caller, &parts, &uri).await;
    let decided = match evaluation {
        Evaluation::Decided(d) => d,
        Evaluation::Refused(r) => {
            return Ok(refuse(
                &proxy, &snap, &caller, &parts, &uri, r, shadow, start,
            ));
        }
    };
    count(&proxy, &snap, &decided);
    let log = Logged {
        proxy: &proxy,
        snap: &snap,
        caller: &caller,
        method: parts.method.clone(),
        path: &decided.path,
        decision: &decided.decision,
        shadow,
        start,
    };
    // 4. respond: a denial is answered here.
    if let Some(resp) = deny(&snap, &decided, &log) {
        return Ok(resp);
    }
    // Read only for an allowed request (a denial does not look at it).
    let upgrade = match &h2_websocket {
        Some(_) => Some(HeaderValue::from_static("websocket")),
        None => crate::upgrade::requested(parts.version, &parts.headers),
    };
    let upgrade = match screen_upgrade(&snap, upgrade) {
        Ok(u) => u,
        Err(NotPermitted) => {
            log.record(403, "deny", "upgrade_not_allowed");
            return Ok(short(
                StatusCode::FORBIDDEN,
                "upgrade to this protocol is not allowed",
            ));
        }
    };
    // 4. rewrite: hop-by-hop headers, then the policy's rewrite and the URI.
    if rewrite(&proxy, &snap, &decided, &mut parts, &uri, upgrade.as_ref()).is_err() {
        log.record(400, "error", "bad_request_uri");
        return Ok(short(StatusCode::BAD_REQUEST, "Bad Request"));
    }
    // 5. forward.
    let (resp, result) = match upgrade {
        Some((_, protocol)) => {
            // The key the service's `Sec-WebSocket-Accept` must answer: the one the
            // sidecar made (HTTP/2) or the caller's (HTTP/1.1).
            let h2 = h2_websocket.is_some();
            let key = h2_websocket.or_else(|| {
                (protocol == "websocket")
                    .then(|| parts.headers.get("sec-websocket-key"))
                    .flatten()
                    .and_then(|k| k.to_str().ok())
                    .map(str::to_string)
            });
            let opened = crate::upgrade::Opened {
                caller: caller.clone(),
                path: decided.path.to_string(),
                protocol,
            };
            // Boxed: upgrades are rare, and their state would otherwise be part of
            // every request's future.
            Box::pin(forward_upgrade(
                &proxy,
                &conn,
                opened,
                HandshakeCheck { key, h2 },
                parts,
                body,
            ))
            .await
        }
        None => forward(&proxy, snap.h2(), parts, body).await,
    };
    // 6. log.
    proxy.metrics.counters.upstream[result as usize]
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (verdict, reason) = match result {
        UpstreamResult::Ok => ("allow", decided.decision.code().as_str()),
        failed => ("error", failed.label()),
    };
    log.record(resp.status().as_u16(), verdict, reason);
    Ok(resp)
}

/// A check from an external proxy (`tribune connect authz`, issue #44): the
/// request's phases as [`handle`] runs them (evaluate, refuse or deny, rewrite, with
/// the same access records, metrics, shadow decisions and replay facts), answered
/// instead of forwarded. Allowed: 200 with the fields the rewrite added or changed
/// (the forwarded payload, claim headers) and `X-Tribune-Remove-Headers` naming
/// those it removed (tokens not forwarded). The path the engine decided must be the
/// path the proxy forwards: one it would normalize is refused with 400
/// (`path_not_normalized`) unless `normalized` says the proxy normalizes it the
/// same way.
pub async fn check(
    proxy: &Proxy,
    caller: Option<Arc<str>>,
    mut parts: hyper::http::request::Parts,
    normalized: bool,
) -> Response<ProxyBody> {
    use crate::metrics::{CheckEnd, CheckError};
    let start = Started::now(proxy);
    let counters = &proxy.metrics.counters;
    let Some(snap) = proxy.current() else {
        counters.check(CheckEnd::Error(CheckError::NoPolicy));
        return short(StatusCode::SERVICE_UNAVAILABLE, "no policy snapshot yet");
    };
    let uri = std::mem::take(&mut parts.uri);
    let (evaluation, shadow) = evaluate(proxy, &snap, &caller, &parts, &uri).await;
    let decided = match evaluation {
        Evaluation::Decided(d) => d,
        Evaluation::Refused(r) => {
            counters.check(CheckEnd::Refused(r.refusal));
            return refuse(proxy, &snap, &caller, &parts, &uri, r, shadow, start);
        }
    };
    count(proxy, &snap, &decided);
    let decided_end = CheckEnd::Decided {
        allowed: decided.decision.allowed(),
        code: decided.decision.code(),
    };
    let log = Logged {
        proxy,
        snap: &snap,
        caller: &caller,
        method: parts.method.clone(),
        path: &decided.path,
        decision: &decided.decision,
        shadow,
        start,
    };
    if let Some(resp) = deny(&snap, &decided, &log) {
        counters.check(decided_end);
        return resp;
    }
    // `//` too: the service behind the proxy may merge it, and a rule on `/admin`
    // must not be passed by `//admin`.
    if !normalized && (decided.path != uri.path() || decided.path.contains("//")) {
        counters.check(CheckEnd::Error(CheckError::PathNotNormalized));
        log.record(400, "error", CheckError::PathNotNormalized.label());
        return short(
            StatusCode::BAD_REQUEST,
            "the path is not in normal form: the proxy would forward another path than the one decided",
        );
    }
    let before = parts.headers.clone();
    if rewrite(proxy, &snap, &decided, &mut parts, &uri, None).is_err() {
        counters.check(CheckEnd::Error(CheckError::BadRequestUri));
        log.record(400, "error", CheckError::BadRequestUri.label());
        return short(StatusCode::BAD_REQUEST, "Bad Request");
    }
    counters.check(decided_end);
    log.record(200, "allow", decided.decision.code().as_str());
    let mut resp = short(StatusCode::OK, "");
    resp.headers_mut().remove(hyper::header::CONTENT_TYPE);
    for name in parts.headers.keys() {
        if name == hyper::header::HOST {
            continue;
        }
        let now: Vec<&HeaderValue> = parts.headers.get_all(name).iter().collect();
        let was: Vec<&HeaderValue> = before.get_all(name).iter().collect();
        if now != was {
            for v in now {
                resp.headers_mut().append(name.clone(), v.clone());
            }
        }
    }
    let removed: Vec<&str> = before
        .keys()
        .filter(|n| !parts.headers.contains_key(*n) && hop_index(n).is_none())
        .map(HeaderName::as_str)
        .collect();
    if !removed.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&removed.join(", ")) {
            resp.headers_mut()
                .insert(HeaderName::from_static("x-tribune-remove-headers"), v);
        }
    }
    resp
}

/// Phase 3: the enforcement engine, exactly as the agent's explain runs it; a
/// staged candidate is evaluated beside it (never enforced) and the request's facts
/// are kept for replay.
async fn evaluate<'u>(
    proxy: &Proxy,
    snap: &Snapshot,
    caller: &Option<Arc<str>>,
    parts: &hyper::http::request::Parts,
    uri: &'u Uri,
) -> (Evaluation<'u>, Shadowed) {
    let now = (proxy.config.clock)();
    let request = EnforcedRequest {
        caller: caller.as_deref().map(Caller::local),
        method: parts.method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers: &parts.headers,
    };
    let options = proxy.options();
    let evaluation = snap.evaluate(&request, options, now, &snap.keys()).await;
    let live = (snap.shadow.is_some() || proxy.replay.enabled()).then(|| evaluation.verdict(snap));
    let shadow = match (&snap.shadow, live) {
        (Some(sh), Some(live)) => {
            // Boxed: only a snapshot with a staged candidate evaluates it.
            let candidate = Box::pin(sh.policy.shadow(
                &snap.policy,
                &evaluation,
                &request,
                options,
                now,
                &sh.keys(),
            ))
            .await;
            let path = match &evaluation {
                Evaluation::Decided(d) => d.path.as_ref(),
                Evaluation::Refused(_) => request.path,
            };
            proxy.record_shadow(caller.as_deref(), request.method, path, live, candidate)
        }
        _ => None,
    };
    if let (Evaluation::Decided(d), Some(live)) = (&evaluation, live) {
        if proxy.replay.enabled() {
            proxy.replay.push(crate::replay::Fact::new(
                &snap.replay_plan,
                caller.as_ref(),
                &parts.method,
                &d.path,
                request.headers,
                request.query,
                &snap.token_locations,
                d.drop_underscores,
                &d.outcomes,
                live,
            ));
        }
    }
    (evaluation, shadow)
}

/// A request answered before any decision (screen, normalization): its status,
/// body and, for a redirect, `Location`.
#[allow(clippy::too_many_arguments)]
fn refuse(
    proxy: &Proxy,
    snap: &Snapshot,
    caller: &Option<Arc<str>>,
    parts: &hyper::http::request::Parts,
    uri: &Uri,
    r: tribune_enforce::Refused,
    shadow: Shadowed,
    start: Started,
) -> Response<ProxyBody> {
    let refusal = r.refusal;
    proxy.log(|| AccessRecord {
        shadow,
        ..rejected(
            snap,
            caller,
            parts,
            uri,
            refusal.status(),
            refusal.as_str(),
            start,
        )
    });
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = match r.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        Some(v) => plain_with(hyper::header::LOCATION, v),
        None => PLAIN.clone(),
    };
    answer(
        status,
        Bytes::from_static(refusal.body().as_bytes()),
        headers,
    )
}

/// Counts the token outcomes and the decision.
fn count(proxy: &Proxy, snap: &Snapshot, decided: &tribune_enforce::Decided<'_>) {
    for (rt, outcome) in snap.runtimes.iter().zip(&decided.outcomes) {
        count_outcome(rt, outcome);
    }
    proxy.count_decision(&decided.decision);
}

/// What the access record of a decided request is made of.
struct Logged<'a> {
    proxy: &'a Proxy,
    snap: &'a Snapshot,
    caller: &'a Option<Arc<str>>,
    method: hyper::Method,
    path: &'a str,
    decision: &'a Decision,
    shadow: Shadowed,
    start: Started,
}

impl Logged<'_> {
    fn record(&self, status: u16, verdict: &'static str, reason: &'static str) {
        self.proxy.log(|| AccessRecord {
            version: self.snap.version,
            caller: self.caller.as_deref().map(Cow::Borrowed),
            method: Cow::Borrowed(self.method.as_str()),
            path: Cow::Borrowed(self.path),
            status,
            decision: verdict,
            reason,
            intention: self
                .decision
                .intention()
                .map(|i| self.snap.table.describe(i)),
            latency: self.start.elapsed(),
            shadow: self.shadow,
        });
    }
}

/// Phase 4 for a denial (decisions.md #12): 401 with `WWW-Authenticate` or 403.
fn deny(
    snap: &Snapshot,
    decided: &tribune_enforce::Decided<'_>,
    log: &Logged<'_>,
) -> Option<Response<ProxyBody>> {
    let deny = decided.deny_response(snap)?;
    let status = StatusCode::from_u16(deny.status).unwrap_or(StatusCode::FORBIDDEN);
    // The fixed bodies are sent without a copy.
    let body = match tribune_authz::FIXED_DENY_BODIES
        .into_iter()
        .find(|b| *b == deny.body)
    {
        Some(fixed) => Bytes::from_static(fixed.as_bytes()),
        None => Bytes::copy_from_slice(deny.body.as_bytes()),
    };
    let headers = match deny.challenge {
        Some(c) => snap.challenge(c).clone(),
        None => PLAIN.clone(),
    };
    let resp = answer(status, body, headers);
    log.record(status.as_u16(), "deny", decided.decision.code().as_str());
    Some(resp)
}

/// An upgrade the service does not take (answered 403).
struct NotPermitted;

/// An allowed request that asks for an upgrade: passed only to a protocol the
/// service takes (websocket, or one its defaults name), over HTTP/1.1. What is
/// forwarded is that one protocol, never the rest of a list (`websocket, h2c` is
/// passed as `websocket`: the service cannot pick another).
fn screen_upgrade(
    snap: &Snapshot,
    upgrade: Option<HeaderValue>,
) -> Result<Option<(HeaderValue, String)>, NotPermitted> {
    let Some(value) = upgrade else {
        return Ok(None);
    };
    let protocol = crate::upgrade::protocol(&value);
    if snap.h2() || !crate::upgrade::permitted(&protocol, &snap.doc.upgrades) {
        return Err(NotPermitted);
    }
    let first = crate::upgrade::first_offer(&value).ok_or(NotPermitted)?;
    Ok(Some((first, protocol)))
}

/// Phase 4 for an allowed request: hop-by-hop headers and those `Connection` names
/// first (so it can never remove what the proxy adds; an upgrade's two headers are
/// put back), then the policy's rewrite (decisions.md #10, #18), then the URI the
/// upstream gets (origin form as received when nothing changed).
fn rewrite(
    proxy: &Proxy,
    snap: &Snapshot,
    decided: &tribune_enforce::Decided<'_>,
    parts: &mut hyper::http::request::Parts,
    received: &Uri,
    upgrade: Option<&(HeaderValue, String)>,
) -> Result<(), hyper::http::Error> {
    let has_host = remove_hop_by_hop(&mut parts.headers);
    if let Some((value, _)) = upgrade {
        crate::upgrade::restore(&mut parts.headers, value.clone());
    }
    let path = &decided.path;
    let stripped_query = snap.rewrite(decided, &mut parts.headers, received.query());
    let query = match &stripped_query {
        Some(q) => Some(Cow::Borrowed(q.as_str())),
        None => received.query().map(Cow::Borrowed),
    };
    let h2 = snap.h2();
    let unchanged = stripped_query.is_none() && path == received.path();
    let uri = if unchanged && !h2 {
        // Origin form as received: nothing to rebuild.
        match received.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        }
    } else {
        let path_and_query = match query {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.to_string(),
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
        built?
    };
    // An HTTP/2 caller names the host in `:authority`; an HTTP/1.1 upstream reads it
    // from `Host`.
    let caller_authority = received.authority().cloned();
    parts.uri = uri;
    if h2 {
        parts.version = Version::HTTP_2;
    } else {
        parts.version = Version::HTTP_11;
        let has_host = match snap.rewrites_host {
            false => has_host,
            true => parts.headers.contains_key(hyper::header::HOST),
        };
        if !has_host {
            let authority = caller_authority
                .as_ref()
                .unwrap_or_else(|| proxy.upstream.authority());
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(hyper::header::HOST, host);
            }
        }
    }
    Ok(())
}

/// Phase 5: to the local service over a pooled HTTP/1.1 connection or HTTP/2;
/// failures become 502/503/504.
async fn forward(
    proxy: &Proxy,
    h2: bool,
    parts: hyper::http::request::Parts,
    body: Incoming,
) -> (Response<ProxyBody>, UpstreamResult) {
    let sent = Instant::now();
    let req = Request::from_parts(parts, body);
    let result = if h2 {
        proxy.deadlines.bound(proxy.upstream.send_h2(req)).await
    } else {
        proxy.deadlines.bound(proxy.upstream.send_h1(req)).await
    };
    match result {
        Ok(Ok(resp)) => {
            proxy
                .metrics
                .upstream_latency
                .observe(sent.elapsed().as_secs_f64());
            let (mut rp, rb) = resp.into_parts();
            let _ = remove_hop_by_hop(&mut rp.headers);
            (
                Response::from_parts(rp, Either::Left(rb)),
                UpstreamResult::Ok,
            )
        }
        Ok(Err(e)) => upstream_failure(&e),
        Err(_) => timed_out(),
    }
}

/// What the service's `101` must show for an upgrade to be spliced.
struct HandshakeCheck {
    /// The WebSocket key its `Sec-WebSocket-Accept` must answer (RFC 6455 §4.2.2).
    key: Option<String>,
    /// The caller speaks HTTP/2 (RFC 8441): the `101` becomes a `200`.
    h2: bool,
}

/// Phase 5 for an allowed upgrade: the handshake on a connection of its own; on
/// `101` both sides are handed to [`crate::upgrade::splice`], only when the `101`
/// switches to the protocol that was permitted (its `Upgrade` names it; for WebSocket
/// its `Sec-WebSocket-Accept` answers the key): anything else is a 502 and the
/// connection is closed, so no other protocol can be tunnelled past the policy. For
/// an HTTP/2 caller the `101` becomes the `200` RFC 8441 expects.
async fn forward_upgrade(
    proxy: &Proxy,
    conn: &Arc<Conn>,
    opened: crate::upgrade::Opened,
    check: HandshakeCheck,
    mut parts: hyper::http::request::Parts,
    body: Incoming,
) -> (Response<ProxyBody>, UpstreamResult) {
    let client = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let req = Request::from_parts(parts, body);
    let result = tokio::time::timeout(
        proxy.config.upstream_timeout,
        proxy.upstream.send_upgrade(req),
    )
    .await;
    let (mut resp, hold) = match result {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) => return upstream_failure(&e),
        Err(_) => return timed_out(),
    };
    let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switched {
        if let Err(why) = crate::upgrade::check_switch(
            resp.headers(),
            &opened.protocol,
            check.key.as_deref(),
            check.h2,
        ) {
            let close = plain_with(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            let r = answer(
                StatusCode::BAD_GATEWAY,
                Bytes::from_static(why.as_bytes()),
                close,
            );
            return (r, UpstreamResult::Reset);
        }
    }
    if let (true, Some(client)) = (switched, client) {
        let service = hyper::upgrade::on(&mut resp);
        // The downstream connection keeps its place under the cap while this is open.
        crate::upgrade::splice(
            client,
            service,
            (hold, conn.hold_upgrade()),
            proxy.config.upgrade_limits,
            proxy.metrics.counters.clone(),
            opened,
        );
    }
    let (mut rp, rb) = resp.into_parts();
    let value = rp.headers.get(hyper::header::UPGRADE).cloned();
    let _ = remove_hop_by_hop(&mut rp.headers);
    match (switched, check.h2, value) {
        (true, true, _) => {
            rp.status = StatusCode::OK;
            rp.headers.remove("sec-websocket-accept");
        }
        (true, false, Some(v)) => crate::upgrade::restore(&mut rp.headers, v),
        _ => {}
    }
    (
        Response::from_parts(rp, Either::Left(rb)),
        UpstreamResult::Ok,
    )
}

/// The response for a request the local service failed (Envoy-style short bodies).
fn upstream_failure(e: &crate::upstream::UpstreamError) -> (Response<ProxyBody>, UpstreamResult) {
    if e.is_client_body() {
        (
            short(StatusCode::BAD_REQUEST, "Bad Request"),
            UpstreamResult::ClientBody,
        )
    } else if e.is_connect() {
        (
            short(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            UpstreamResult::Connect,
        )
    } else {
        (
            short(
                StatusCode::BAD_GATEWAY,
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            ),
            UpstreamResult::Reset,
        )
    }
}

fn timed_out() -> (Response<ProxyBody>, UpstreamResult) {
    (
        short(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        UpstreamResult::Timeout,
    )
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
        let cases: [Case<'_>; 7] = [
            (
                "keep-alive, then a second Connection naming a header",
                vec![
                    ("connection", "Keep-Alive"),
                    ("connection", "x-secret"),
                    ("x-secret", "s"),
                    ("x-ok", "1"),
                ],
                vec!["x-ok"],
            ),
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
            let host = remove_hop_by_hop(&mut m);
            assert_eq!(names(&m), want, "{name}");
            assert_eq!(host, m.contains_key(hyper::header::HOST), "{name}: Host");
        }
    }

    /// The pass that removes hop-by-hop headers says whether `Host` is left, also
    /// when `Connection` names it, and whatever the order of the headers.
    #[test]
    fn hop_by_hop_pass_reports_host() {
        for (input, want) in [
            (vec![("host", "a")], true),
            (vec![("x", "1")], false),
            (vec![("connection", "keep-alive"), ("host", "a")], true),
            (vec![("host", "a"), ("connection", "close")], true),
            (vec![("host", "a"), ("connection", "Host")], false),
            (vec![("connection", "x-a, host"), ("host", "a")], false),
            (
                vec![("te", "trailers"), ("te", "gzip"), ("host", "a")],
                true,
            ),
        ] {
            let mut m = map(&input);
            assert_eq!(remove_hop_by_hop(&mut m), want, "{input:?}");
            assert_eq!(m.contains_key(hyper::header::HOST), want, "{input:?}");
        }
    }
}
