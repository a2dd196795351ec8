//! Coarse deadlines for waits on the local service (issue #46: the upstream timeout
//! was a timer armed per request).
//!
//! A tokio timer per forwarded request costs a clock read, a wheel insert and a
//! wheel removal under the driver's lock (about 1,000 instructions, a tenth of what
//! Tribune adds to a request above the floor of its stack). Waits on the local
//! service are instead entered in one table per proxy; a ticker that runs while
//! waits are open advances an epoch every `tick` (a sixteenth of the timeout, at
//! most a second) and wakes the waits that have been open for more than the
//! timeout's number of ticks. A wait then costs two short critical sections (enter
//! after its first `Pending`, leave when done) and no clock read.
//!
//! A wait entered in epoch `e` expires at the first tick `m > e + ticks`; ticks are
//! at least `tick` apart and tick `e + 1` comes after the entry, so a wait is never
//! cut before the timeout, and is cut at most about one tick after it (the 504
//! comes between the timeout and a sixteenth of it later). The ticker stops after
//! two ticks with nothing open and is started again by the next wait.

use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A wait outlived its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// Ticks with nothing open after which the ticker stops.
const IDLE_TICKS: u32 = 2;

/// The deadline table of one proxy.
pub struct Deadlines {
    shared: Arc<Shared>,
}

struct Shared {
    /// Time between ticks.
    tick: Duration,
    /// Ticks a wait may stay open: `ceil(timeout / tick)`.
    ticks: u64,
    table: Mutex<Table>,
    /// A ticker task is alive (set by whoever spawns it, cleared when it ends).
    ticking: AtomicBool,
}

#[derive(Default)]
struct Table {
    epoch: u64,
    waits: Slab<Wait>,
}

struct Wait {
    /// The epoch the wait was entered in.
    entered: u64,
    waker: Waker,
    expired: bool,
}

/// The tick for a timeout: a sixteenth of it, between 1 ms and 1 s.
pub fn tick_for(timeout: Duration) -> Duration {
    (timeout / 16).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

impl Deadlines {
    pub fn new(timeout: Duration) -> Deadlines {
        let tick = tick_for(timeout);
        let ticks = timeout.as_nanos().div_ceil(tick.as_nanos()).max(1) as u64;
        Deadlines {
            shared: Arc::new(Shared {
                tick,
                ticks,
                table: Mutex::new(Table::default()),
                ticking: AtomicBool::new(false),
            }),
        }
    }

    /// `fut`, or [`TimedOut`] once it has been pending for longer than the timeout.
    pub fn bound<F: Future>(&self, fut: F) -> Bounded<'_, F> {
        Bounded {
            fut,
            entry: Entry {
                deadlines: self,
                key: None,
            },
        }
    }

    /// Waits open now.
    pub fn open(&self) -> usize {
        self.shared.lock().waits.len()
    }

    fn enter(&self, waker: &Waker) -> usize {
        let key = {
            let mut table = self.shared.lock();
            let entered = table.epoch;
            table.waits.insert(Wait {
                entered,
                waker: waker.clone(),
                expired: false,
            })
        };
        if !self.shared.ticking.load(Ordering::Acquire)
            && !self.shared.ticking.swap(true, Ordering::AcqRel)
        {
            tokio::spawn(tick(Arc::downgrade(&self.shared)));
        }
        key
    }

    /// Whether the wait expired; otherwise its waker is brought up to date.
    fn expired(&self, key: usize, waker: &Waker) -> bool {
        let mut table = self.shared.lock();
        match table.waits.get_mut(key) {
            Some(w) if w.expired => true,
            Some(w) => {
                if !w.waker.will_wake(waker) {
                    w.waker = waker.clone();
                }
                false
            }
            None => false,
        }
    }

    fn leave(&self, key: usize) {
        let _ = self.shared.lock().waits.try_remove(key);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table holds no invariant a panicking holder could break half-way.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Clears `ticking` when the ticker ends, also when its runtime drops it.
struct Ticking(Weak<Shared>);

impl Drop for Ticking {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.ticking.store(false, Ordering::Release);
        }
    }
}

/// The ticker: advances the epoch and wakes expired waits until the proxy is gone
/// or nothing has been open for [`IDLE_TICKS`].
async fn tick(shared: Weak<Shared>) {
    let mut guard = Ticking(shared.clone());
    let Some(period) = shared.upgrade().map(|s| s.tick) else {
        return;
    };
    let mut idle = 0;
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut expired = Vec::new();
        {
            let mut table = shared.lock();
            table.epoch += 1;
            let epoch = table.epoch;
            if table.waits.is_empty() {
                idle += 1;
                if idle >= IDLE_TICKS {
                    // Under the lock: a wait entered after this sees `ticking`
                    // false and starts a new ticker, which the guard must then not
                    // clear.
                    shared.ticking.store(false, Ordering::Release);
                    guard.0 = Weak::new();
                    return;
                }
                continue;
            }
            idle = 0;
            for (_, w) in table.waits.iter_mut() {
                if !w.expired && epoch - w.entered > shared.ticks {
                    w.expired = true;
                    expired.push(w.waker.clone());
                }
            }
        }
        for waker in expired {
            waker.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// A future bounded by its [`Deadlines`]: entered in the table only once it is
    /// pending, left when it completes or is dropped.
    pub struct Bounded<'a, F> {
        #[pin]
        fut: F,
        entry: Entry<'a>,
    }
}

/// A wait's place in the table (left on drop).
struct Entry<'a> {
    deadlines: &'a Deadlines,
    key: Option<usize>,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.deadlines.leave(k);
        }
    }
}

impl<F: Future> Future for Bounded<'_, F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entry = this.entry;
        if let Poll::Ready(out) = this.fut.poll(cx) {
            if let Some(k) = entry.key.take() {
                entry.deadlines.leave(k);
            }
            return Poll::Ready(Ok(out));
        }
        match entry.key {
            None => entry.key = Some(entry.deadlines.enter(cx.waker())),
            Some(k) => {
                if entry.deadlines.expired(k, cx.waker()) {
                    entry.key = None;
                    entry.deadlines.leave(k);
                    return Poll::Ready(Err(TimedOut));
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{sleep, Instant};

    const TIMEOUT: Duration = Duration::from_millis(160);

    #[test]
    fn the_tick_is_a_sixteenth_of_the_timeout_within_bounds() {
        assert_eq!(tick_for(TIMEOUT), Duration::from_millis(10));
        assert_eq!(
            tick_for(Duration::from_secs(15)),
            Duration::from_micros(937_500)
        );
        assert_eq!(tick_for(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(tick_for(Duration::from_millis(5)), Duration::from_millis(1));
        let d = Deadlines::new(Duration::from_millis(165));
        assert_eq!(d.shared.ticks, 16, "rounded up: ceil(165 / 10)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_cut_between_the_timeout_and_a_tick_later() {
        let d = Deadlines::new(TIMEOUT);
        // Entered at different points between two ticks.
        for offset in [0, 3, 9] {
            sleep(Duration::from_millis(offset)).await;
            let started = Instant::now();
            let r = d.bound(std::future::pending::<()>()).await;
            let waited = started.elapsed();
            assert_eq!(r, Err(TimedOut));
            assert!(waited >= TIMEOUT, "cut early after {waited:?}");
            assert!(
                waited <= TIMEOUT + tick_for(TIMEOUT) + Duration::from_millis(1),
                "cut late after {waited:?}"
            );
            assert_eq!(d.open(), 0, "an expired wait leaves the table");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_within_the_timeout_is_kept_and_leaves_the_table() {
        let d = Deadlines::new(TIMEOUT);
        assert_eq!(d.bound(async { 7 }).await, Ok(7), "ready at once");
        assert_eq!(d.open(), 0, "never entered");
        assert!(
            !d.shared.ticking.load(Ordering::Acquire),
            "no ticker for it"
        );
        let r = d.bound(async {
            sleep(TIMEOUT - Duration::from_millis(1)).await;
            "late but in time"
        });
        assert_eq!(r.await, Ok("late but in time"));
        assert_eq!(d.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_leaves_the_table() {
        let d = Deadlines::new(TIMEOUT);
        let r = tokio::time::timeout(
            Duration::from_millis(20),
            d.bound(std::future::pending::<()>()),
        )
        .await;
        assert!(r.is_err(), "the outer timeout dropped it");
        assert_eq!(d.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn only_waits_past_the_timeout_are_woken() {
        let d = Deadlines::new(TIMEOUT);
        let slow = d.bound(std::future::pending::<()>());
        let quick = d.bound(async {
            sleep(TIMEOUT * 3 / 4).await;
            "answered"
        });
        let started = Instant::now();
        let (slow, quick) = tokio::join!(slow, async {
            // Entered half a timeout after the slow one: still running when it expires.
            sleep(TIMEOUT / 2).await;
            quick.await
        });
        assert_eq!(slow, Err(TimedOut));
        assert_eq!(quick, Ok("answered"));
        assert!(started.elapsed() >= TIMEOUT * 5 / 4);
        assert_eq!(d.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticker_stops_when_idle_and_a_new_wait_starts_it() {
        let d = Deadlines::new(TIMEOUT);
        let _ = d.bound(sleep(Duration::from_millis(5))).await;
        assert!(d.shared.ticking.load(Ordering::Acquire));
        sleep(tick_for(TIMEOUT) * (IDLE_TICKS + 2)).await;
        assert!(
            !d.shared.ticking.load(Ordering::Acquire),
            "stopped when idle"
        );
        let started = Instant::now();
        assert_eq!(d.bound(std::future::pending::<()>()).await, Err(TimedOut));
        assert!(started.elapsed() >= TIMEOUT, "a new ticker keeps the bound");
    }

    #[test]
    fn a_ticker_dropped_with_its_runtime_is_started_again_on_the_next() {
        let d = Deadlines::new(TIMEOUT);
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        first.block_on(async {
            let _ = d.bound(sleep(Duration::from_millis(5))).await;
        });
        assert!(d.shared.ticking.load(Ordering::Acquire));
        drop(first);
        assert!(!d.shared.ticking.load(Ordering::Acquire), "cleared on drop");
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let r = second.block_on(d.bound(std::future::pending::<()>()));
        assert_eq!(r, Err(TimedOut));
    }
}
