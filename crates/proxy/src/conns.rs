//! Downstream connections and their lifetimes (issue: connections that never close).
//!
//! - A connection must send its first request within `first_request_timeout` of
//!   being accepted (a silent connection, a partial HTTP/2 preface, an HTTP/2
//!   connection that never opens a stream), or it is dropped.
//! - On HTTP/1.1, a later request's head must also arrive whole within
//!   `first_request_timeout` of its first byte (a slow head is dropped); the
//!   connection's own loop checks it, so no timer is armed per request.
//! - A connection with no request in flight for `idle_timeout` is shut down
//!   gracefully (HTTP/1.1: closed; HTTP/2: GOAWAY, open streams finish). A request
//!   is in flight until its response body has been sent (a long event stream is
//!   not idle).
//! - At the connection cap, or when `accept` fails for lack of file descriptors, the
//!   longest-idle connection is shed (gracefully) so that a new caller is served.
//!
//! Each open connection has a [`Conn`] in the [`Conns`] table; it records when its
//! last request started and how many are in flight, and when a later head began
//! (a few relaxed atomics per request, no timer).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// File descriptors kept back from downstream connections (listeners, the agent
/// watch, key set fetches, files, logs).
const RESERVED_FDS: usize = 32;

/// How many downstream connections the process's file limit leaves room for: each
/// may need a second descriptor for its connection to the local service, so half of
/// what is left after [`RESERVED_FDS`]. `None` when the limit cannot be read (then
/// only the configured cap applies, and running out at `accept` sheds instead).
pub fn fd_budget() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    soft_open_files(&limits).map(|n| n.saturating_sub(RESERVED_FDS).max(2) / 2)
}

/// The soft "Max open files" value of a `/proc/<pid>/limits` text.
fn soft_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One open connection.
#[derive(Debug)]
pub struct Conn {
    /// Milliseconds after `accepted` (plus one) when a request last started or
    /// ended; 0 before the first request.
    last_request_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` (plus one) when bytes first arrived with no
    /// request in flight after an earlier one (the start of the next request's
    /// head); 0 when none are waiting.
    head_since_ms: AtomicU64,
    /// The requests are HTTP/1.x (known from the first one).
    http1: AtomicBool,
    accepted: Instant,
    /// Asks the connection to shut down gracefully.
    pub shed: Notify,
    /// Upgraded (WebSocket) connections made from this one that are still open: the
    /// connection keeps its place under the cap, and is never idle, until they end.
    upgrades: AtomicUsize,
    upgrades_ended: Notify,
}

impl Conn {
    /// Whether a request was ever received.
    pub fn seen_request(&self) -> bool {
        self.last_request_ms.load(Ordering::Relaxed) != 0
    }

    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// Marks a request's start (its head has arrived whole); the guard marks its
    /// end, and is kept until the response body has been sent.
    pub fn begin(self: &Arc<Conn>, http1: bool) -> InFlight {
        // The first request marks the connection as used; later ones need no clock
        // here: while a request is in flight the connection is not idle, and its end
        // marks the time.
        if !self.seen_request() {
            self.touch();
        }
        self.head_since_ms.store(0, Ordering::Relaxed);
        self.http1.store(http1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether the requests are HTTP/1.x (false before the first one).
    pub fn http1(&self) -> bool {
        self.http1.load(Ordering::Relaxed)
    }

    /// Bytes were read from the caller: with no request in flight after an earlier
    /// one, they start the next request's head.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.seen_request()
            && self.head_since_ms.load(Ordering::Relaxed) == 0
        {
            let ms = self.accepted.elapsed().as_millis() as u64 + 1;
            self.head_since_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// How long a later request's head has been arriving (`None` when none is).
    pub fn head_pending_for(&self) -> Option<Duration> {
        let since = self.head_since_ms.load(Ordering::Relaxed);
        if since == 0 || self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.accepted.elapsed().as_millis() as u64 + 1;
        Some(Duration::from_millis(now.saturating_sub(since)))
    }

    /// How long the connection has had no request in flight (zero while one is),
    /// counted from its last request, or from its accept before the first.
    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 || self.upgrades.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_request_ms.load(Ordering::Relaxed);
        let now = self.accepted.elapsed().as_millis() as u64 + 1;
        Duration::from_millis(now.saturating_sub(last))
    }

    /// Marks an upgraded connection made from this one; it is open until the guard
    /// is dropped.
    pub fn hold_upgrade(self: &Arc<Conn>) -> UpgradeHold {
        self.upgrades.fetch_add(1, Ordering::AcqRel);
        UpgradeHold(self.clone())
    }

    /// Waits until every upgraded connection made from this one has ended.
    pub async fn upgrades_closed(&self) {
        while self.upgrades.load(Ordering::Acquire) > 0 {
            self.upgrades_ended.notified().await;
        }
    }

    fn touch(&self) {
        let ms = self.accepted.elapsed().as_millis() as u64 + 1;
        self.last_request_ms.store(ms, Ordering::Relaxed);
    }
}

/// A request in flight on a connection; ends (and marks the time) when dropped.
pub struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A caller's stream, telling its [`Conn`] when bytes arrive between requests
/// ([`Conn::head_pending_for`]).
pub struct Watched<IO> {
    io: IO,
    conn: Arc<Conn>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, conn: Arc<Conn>) -> Watched<IO> {
        Watched { io, conn }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.bytes_arrived();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An open upgraded connection (see [`Conn::hold_upgrade`]).
pub struct UpgradeHold(Arc<Conn>);

impl Drop for UpgradeHold {
    fn drop(&mut self) {
        if self.0.upgrades.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Stored if nobody waits yet: the waiter's next check sees zero.
            self.0.upgrades_ended.notify_one();
        }
    }
}

/// The open connections of one proxy, and the cap on how many there may be.
pub struct Conns {
    permits: Arc<Semaphore>,
    open: Mutex<Vec<Weak<Conn>>>,
}

/// Holds a connection's place in the table (and under the cap) while it is open.
pub struct Slot {
    pub conn: Arc<Conn>,
    _permit: OwnedSemaphorePermit,
}

impl Conns {
    pub fn new(max: usize) -> Conns {
        Conns {
            permits: Arc::new(Semaphore::new(max.max(1))),
            open: Mutex::new(Vec::new()),
        }
    }

    /// A place for a newly accepted connection. At the cap, the longest-idle
    /// connection is asked to close and the new one waits up to `wait` for its
    /// place; `None` if none frees up.
    pub async fn admit(&self, wait: Duration) -> Option<Slot> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.shed_idlest();
                tokio::time::timeout(wait, self.permits.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let conn = Arc::new(Conn {
            last_request_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            head_since_ms: AtomicU64::new(0),
            http1: AtomicBool::new(false),
            accepted: Instant::now(),
            shed: Notify::new(),
            upgrades: AtomicUsize::new(0),
            upgrades_ended: Notify::new(),
        });
        if let Ok(mut open) = self.open.lock() {
            open.retain(|w| w.strong_count() > 0);
            open.push(Arc::downgrade(&conn));
        }
        Some(Slot {
            conn,
            _permit: permit,
        })
    }

    /// Asks the connection idle the longest (none in flight) to close; returns
    /// whether there was one.
    pub fn shed_idlest(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        let idlest = open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| {
                c.in_flight.load(Ordering::Relaxed) == 0 && c.upgrades.load(Ordering::Relaxed) == 0
            })
            .max_by_key(|c| c.idle_for());
        match idlest {
            Some(c) => {
                c.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax open files            1024                 524288               files\n";
        assert_eq!(soft_open_files(text), Some(1024));
        assert_eq!(
            soft_open_files("Max open files unlimited unlimited files"),
            None
        );
        assert!(fd_budget().is_some_and(|n| n >= 1));
    }

    #[tokio::test]
    async fn a_full_table_sheds_the_longest_idle_connection() {
        let conns = Conns::new(2);
        let a = conns.admit(Duration::ZERO).await.expect("a");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = conns.admit(Duration::ZERO).await.expect("b");
        let _busy = b.conn.begin(true);
        // Full: the new one asks `a` (idle, older) to go, and gets its place when it does.
        let shed = a.conn.clone();
        let waiter = tokio::spawn(async move {
            shed.shed.notified().await;
            drop(a);
        });
        let c = conns.admit(Duration::from_secs(1)).await;
        assert!(c.is_some());
        waiter.await.expect("shed");
        // Only busy connections left: nothing to shed, and no place.
        let d = conns.admit(Duration::from_millis(10)).await;
        assert!(d.is_none());
    }

    #[tokio::test]
    async fn idle_time_counts_from_the_last_request_and_not_while_one_is_in_flight() {
        let conns = Conns::new(4);
        let s = conns.admit(Duration::ZERO).await.expect("slot");
        assert!(!s.conn.seen_request());
        let guard = s.conn.begin(true);
        assert!(s.conn.seen_request());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.conn.idle_for(), Duration::ZERO);
        drop(guard);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(s.conn.idle_for() >= Duration::from_millis(15));
    }

    #[tokio::test]
    async fn bytes_between_requests_start_a_pending_head() {
        let conns = Conns::new(1);
        let s = conns.admit(Duration::ZERO).await.expect("slot");
        s.conn.bytes_arrived();
        assert_eq!(
            s.conn.head_pending_for(),
            None,
            "the first request has its own rule"
        );
        let guard = s.conn.begin(true);
        s.conn.bytes_arrived();
        assert_eq!(
            s.conn.head_pending_for(),
            None,
            "body bytes of a request in flight"
        );
        drop(guard);
        assert_eq!(s.conn.head_pending_for(), None, "quiet between requests");
        s.conn.bytes_arrived();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.conn.bytes_arrived();
        assert!(s
            .conn
            .head_pending_for()
            .is_some_and(|t| t >= Duration::from_millis(15)));
        let _next = s.conn.begin(true);
        assert_eq!(s.conn.head_pending_for(), None, "the head arrived whole");
    }
}
