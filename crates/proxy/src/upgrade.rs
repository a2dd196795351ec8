//! Upgraded connections (WebSocket, over HTTP/1.1 or RFC 8441's HTTP/2 extended
//! CONNECT): the handshake is an ordinary request through the
//! whole request path (normalization, tokens, intentions, access log); only an allowed
//! one reaches the local service, on a connection of its own (never pooled). After
//! the service answers `101 Switching Protocols`, bytes are copied both ways until
//! both sides have closed, the connection has been idle for the idle timeout, or it
//! has lasted the maximum duration.
//!
//! Only `websocket` is passed by default (as Envoy and Istio do); other protocols are
//! passed when the destination's `service-defaults` names them in
//! `Meta["tribune.upgrades"]` (comma-separated), else refused with 403. `h2c` is never
//! passed: the sidecar speaks HTTP/2 to the service itself when the protocol says so.

use crate::metrics::{ConnEvent, Counters};
use base64::Engine;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// RFC 6455's GUID, appended to `Sec-WebSocket-Key` for `Sec-WebSocket-Accept`.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// RFC 8441: an HTTP/2 extended `CONNECT` with `:protocol = websocket` is, to the
/// policy and the service, the HTTP/1.1 handshake it stands for (as Envoy converts
/// it): a `GET` with `Upgrade: websocket`, `Connection: upgrade` and a
/// `Sec-WebSocket-Key` the sidecar makes. Returns that key (the service's
/// `Sec-WebSocket-Accept` must answer it); `None` for any other request.
pub(crate) fn from_extended_connect(parts: &mut hyper::http::request::Parts) -> Option<String> {
    if parts.version != hyper::Version::HTTP_2 || parts.method != hyper::Method::CONNECT {
        return None;
    }
    let protocol = parts.extensions.get::<hyper::ext::Protocol>()?;
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return None;
    }
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).ok()?;
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    parts.method = hyper::Method::GET;
    parts
        .headers
        .insert("sec-websocket-key", HeaderValue::from_str(&key).ok()?);
    restore(&mut parts.headers, HeaderValue::from_static("websocket"));
    Some(key)
}

/// The `Sec-WebSocket-Accept` that answers `key` (RFC 6455 §4.2.2).
pub(crate) fn accept_for(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{WEBSOCKET_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Bytes read from one side before they are written to the other.
const CHUNK: usize = 16 * 1024;

/// The protocol an HTTP/1.1 request asks to switch to: an `Upgrade` header, and
/// `upgrade` among the `Connection` options (RFC 9110 §7.8). `None` for anything
/// else, whose `Upgrade` header is then dropped as hop-by-hop.
pub(crate) fn requested(version: hyper::Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != hyper::Version::HTTP_11 {
        return None;
    }
    let listed = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|o| o.trim().eq_ignore_ascii_case("upgrade"));
    listed.then(|| headers.get(UPGRADE).cloned()).flatten()
}

/// The first protocol an `Upgrade` value names, lowercased, without its version
/// (`WebSocket` -> `websocket`, `foo/2` -> `foo`).
pub(crate) fn protocol(value: &HeaderValue) -> String {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .next()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The first protocol an `Upgrade` list offers, as sent (version kept, spaces
/// trimmed): what is forwarded, alone.
pub(crate) fn first_offer(value: &HeaderValue) -> Option<HeaderValue> {
    let first = value.to_str().ok()?.split(',').next()?.trim();
    if first.is_empty() {
        return None;
    }
    HeaderValue::from_str(first).ok()
}

/// Whether the service's `101` switches to `protocol` and nothing else: its
/// `Upgrade` names exactly that protocol, and for WebSocket its
/// `Sec-WebSocket-Accept` answers `key` (RFC 6455 §4.2.2; a WebSocket request with no
/// key cannot be switched). An HTTP/2 caller's handshake was made by the sidecar, so
/// only the accept is checked there. `Err` says what was wrong (the 502's body).
pub(crate) fn check_switch(
    answer: &HeaderMap,
    protocol: &str,
    key: Option<&str>,
    h2: bool,
) -> Result<(), &'static str> {
    if !h2 {
        let named = answer.get_all(UPGRADE).iter().collect::<Vec<_>>();
        let one = match named.as_slice() {
            [v] => v.to_str().is_ok_and(|t| !t.contains(',')) && self::protocol(v) == protocol,
            _ => false,
        };
        if !one {
            return Err("upstream switched to a protocol other than the one permitted");
        }
    }
    if protocol == "websocket" {
        let accept = answer
            .get("sec-websocket-accept")
            .and_then(|a| a.to_str().ok());
        match (key, accept) {
            (Some(k), Some(a)) if a.trim() == accept_for(k) => {}
            _ => return Err("upstream WebSocket handshake did not answer the key"),
        }
    }
    Ok(())
}

/// Whether an upgrade to `protocol` may be passed to the service: `websocket`, or
/// one the destination's `service-defaults` names.
pub(crate) fn permitted(protocol: &str, named: &[String]) -> bool {
    protocol != "h2c"
        && !protocol.is_empty()
        && (protocol == "websocket" || named.iter().any(|n| n == protocol))
}

/// Puts back the two headers hop-by-hop removal took, for the upgrade being passed.
pub(crate) fn restore(headers: &mut HeaderMap, value: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, value);
}

/// How long an upgraded connection may stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Closed after this long with no byte either way.
    pub idle: Duration,
    /// Closed after this long in any case (`None`: no limit).
    pub max: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(300),
            max: None,
        }
    }
}

/// Why an upgraded connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one failed).
    Closed,
    Idle,
    MaxDuration,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Idle => "idle_timeout",
            End::MaxDuration => "max_duration",
        }
    }
}

/// What one upgraded connection carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub to_service: u64,
    pub to_client: u64,
    pub end: End,
}

/// Copies bytes both ways between `client` and `service` until both have closed
/// (each close is passed on as a write shutdown, so half-closes work), or `limits`
/// end it. Every chunk is counted in `counters` as it passes.
pub async fn pump<C, S>(
    mut client: C,
    mut service: S,
    limits: Limits,
    counters: &Counters,
) -> Carried
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let max_at = limits.max.map(|m| start + m);
    let mut last = start;
    let (mut from_client, mut from_service) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut client_open, mut service_open) = (true, true);
    let mut carried = Carried {
        to_service: 0,
        to_client: 0,
        end: End::Closed,
    };
    while client_open || service_open {
        let idle_at = last + limits.idle;
        tokio::select! {
            r = client.read(&mut from_client), if client_open => match r {
                Ok(n) if n > 0 => {
                    if service.write_all(&from_client[..n]).await.is_err() {
                        break;
                    }
                    carried.to_service += n as u64;
                    counters.upgraded_bytes[0].fetch_add(n as u64, Ordering::Relaxed);
                    last = Instant::now();
                }
                _ => {
                    client_open = false;
                    let _ = service.shutdown().await;
                }
            },
            r = service.read(&mut from_service), if service_open => match r {
                Ok(n) if n > 0 => {
                    if client.write_all(&from_service[..n]).await.is_err() {
                        break;
                    }
                    carried.to_client += n as u64;
                    counters.upgraded_bytes[1].fetch_add(n as u64, Ordering::Relaxed);
                    last = Instant::now();
                }
                _ => {
                    service_open = false;
                    let _ = client.shutdown().await;
                }
            },
            _ = tokio::time::sleep_until(idle_at.into()) => {
                carried.end = End::Idle;
                break;
            }
            _ = tokio::time::sleep_until(max_at.unwrap_or(idle_at).into()), if max_at.is_some() => {
                carried.end = End::MaxDuration;
                break;
            }
        }
    }
    carried
}

/// Who an upgraded connection is for, for its closing log line.
pub(crate) struct Opened {
    pub caller: Option<Arc<str>>,
    pub path: String,
    pub protocol: String,
}

/// Waits for both sides of an accepted upgrade, then runs [`pump`] in its own task
/// (the request that asked for it has already been answered `101`). `hold` is kept
/// until the upgraded connection ends (the service connection's sender, the
/// downstream connection's place under the cap).
pub(crate) fn splice<H: Send + 'static>(
    client: OnUpgrade,
    service: OnUpgrade,
    hold: H,
    limits: Limits,
    counters: Arc<Counters>,
    opened: Opened,
) {
    tokio::spawn(async move {
        let (client, service) = match tokio::try_join!(client, service) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        counters.connection(ConnEvent::UpgradeOpened);
        let start = Instant::now();
        let carried = pump(
            TokioIo::new(client),
            TokioIo::new(service),
            limits,
            &counters,
        )
        .await;
        counters.connection(ConnEvent::UpgradeClosed);
        drop(hold);
        tracing::info!(
            target: "tribune::access",
            event = "upgrade_closed",
            caller = opened.caller.as_deref().unwrap_or("-"),
            path = %opened.path,
            protocol = %opened.protocol,
            bytes_to_service = carried.to_service,
            bytes_to_client = carried.to_client,
            duration_ms = start.elapsed().as_millis() as u64,
            ended = carried.end.as_str(),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_upgrade_needs_the_header_and_the_connection_option_over_http_1_1() {
        let v11 = hyper::Version::HTTP_11;
        type Case<'a> = (&'a [(&'a str, &'a str)], hyper::Version, Option<&'a str>);
        let table: &[Case<'_>] = &[
            (
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                v11,
                Some("websocket"),
            ),
            (
                &[
                    ("connection", "keep-alive, upgrade"),
                    ("upgrade", "WebSocket"),
                ],
                v11,
                Some("WebSocket"),
            ),
            (&[("upgrade", "websocket")], v11, None),
            (&[("connection", "upgrade")], v11, None),
            (
                &[("connection", "upgrade"), ("upgrade", "websocket")],
                hyper::Version::HTTP_10,
                None,
            ),
            (
                &[("connection", "close"), ("upgrade", "websocket")],
                v11,
                None,
            ),
        ];
        for (h, version, want) in table {
            let got = requested(*version, &headers(h));
            assert_eq!(got.as_ref().map(|v| v.to_str().unwrap()), *want, "{h:?}");
        }
    }

    /// RFC 6455 §1.3's worked example.
    /// Round 3, item 7: `Upgrade: websocket, h2c` passed the websocket-only check,
    /// the whole list was forwarded, the service switched to h2c and the sidecar
    /// spliced a tunnel past the policy.
    #[test]
    fn only_the_permitted_protocol_is_offered_and_accepted() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(first_offer(&v("websocket, h2c")), Some(v("websocket")));
        assert_eq!(first_offer(&v(" foo/2 ,bar")), Some(v("foo/2")));
        assert_eq!(first_offer(&v(", websocket")), None);
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = [
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert_eq!(
            check_switch(&headers(&ok), "websocket", Some(key), false),
            Ok(())
        );
        for bad in [
            &[
                ("upgrade", "h2c"),
                ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ][..],
            &[
                ("upgrade", "websocket, h2c"),
                ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ][..],
            &[("upgrade", "websocket")][..],
            &[("upgrade", "websocket"), ("sec-websocket-accept", "wrong")][..],
            &[("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")][..],
        ] {
            assert!(
                check_switch(&headers(bad), "websocket", Some(key), false).is_err(),
                "{bad:?}"
            );
        }
        // No key sent: a WebSocket cannot be switched.
        assert!(check_switch(&headers(&ok), "websocket", None, false).is_err());
        // A named protocol: its Upgrade is checked, no accept.
        assert_eq!(
            check_switch(&headers(&[("upgrade", "Foo/2")]), "foo", None, false),
            Ok(())
        );
        assert!(check_switch(&headers(&[("upgrade", "h2c")]), "foo", None, false).is_err());
        // HTTP/2 caller: the sidecar's own key is answered.
        let h2 = [("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")];
        assert_eq!(
            check_switch(&headers(&h2), "websocket", Some(key), true),
            Ok(())
        );
    }

    #[test]
    fn the_accept_answers_the_key_as_rfc_6455_computes_it() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn only_websocket_and_named_protocols_are_permitted() {
        let named = vec!["tcp-tunnel".to_string()];
        for (value, want) in [
            ("websocket", true),
            ("WebSocket", true),
            ("tcp-tunnel/1", true),
            ("h2c", false),
            ("TLS/1.0", false),
            ("", false),
        ] {
            let p = protocol(&HeaderValue::from_str(value).unwrap());
            assert_eq!(permitted(&p, &named), want, "{value}");
        }
        assert!(!permitted("tcp-tunnel", &[]));
    }

    #[tokio::test]
    async fn pump_copies_both_ways_passes_half_closes_and_counts() {
        let counters = Counters::default();
        let (mut client, proxy_client) = tokio::io::duplex(64);
        let (proxy_service, mut service) = tokio::io::duplex(64);
        let run = pump(proxy_client, proxy_service, Limits::default(), &counters);
        let drive = async {
            client.write_all(b"hello").await.unwrap();
            let mut got = [0u8; 5];
            service.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hello");
            service.write_all(b"hi back").await.unwrap();
            let mut got = [0u8; 7];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hi back");
            // The client closes its side; the service still answers, then closes.
            client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            assert_eq!(service.read_to_end(&mut rest).await.unwrap(), 0);
            service.write_all(b"bye").await.unwrap();
            service.shutdown().await.unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"bye");
        };
        let (carried, ()) = tokio::join!(run, drive);
        assert_eq!(
            carried,
            Carried {
                to_service: 5,
                to_client: 10,
                end: End::Closed
            }
        );
        assert_eq!(counters.upgraded_bytes[0].load(Ordering::Relaxed), 5);
        assert_eq!(counters.upgraded_bytes[1].load(Ordering::Relaxed), 10);
    }

    #[tokio::test]
    async fn pump_ends_idle_and_overlong_connections() {
        let counters = Counters::default();
        let (_client, proxy_client) = tokio::io::duplex(64);
        let (proxy_service, _service) = tokio::io::duplex(64);
        let limits = Limits {
            idle: Duration::from_millis(100),
            max: None,
        };
        let carried = pump(proxy_client, proxy_service, limits, &counters).await;
        assert_eq!(carried.end, End::Idle);

        let (mut client, proxy_client) = tokio::io::duplex(64);
        let (proxy_service, mut service) = tokio::io::duplex(64);
        let limits = Limits {
            idle: Duration::from_millis(300),
            max: Some(Duration::from_millis(500)),
        };
        let run = pump(proxy_client, proxy_service, limits, &counters);
        // Busy every 50 ms: never idle, but cut at 500 ms.
        let chatter = async {
            let mut b = [0u8; 1];
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if client.write_all(b"x").await.is_err()
                    || service.read_exact(&mut b).await.is_err()
                {
                    return;
                }
            }
        };
        let (carried, ()) = tokio::join!(run, chatter);
        assert_eq!(carried.end, End::MaxDuration);
        assert!(carried.to_service >= 5, "{carried:?}");
    }
}
