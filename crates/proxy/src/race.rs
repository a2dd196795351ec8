//! A busy future raced against a rarely ready one, without polling the second at
//! every wake of the first (issue #46).
//!
//! A connection's task is woken several times per request (bytes in, the upstream's
//! answer, bytes out); `tokio::select!` polls every branch each time, and the
//! connection's timer and shed notification cost about 400 instructions a request
//! just to say "not yet" (a registered `Notified` takes its `Notify`'s lock to
//! refresh its waker). [`race`] polls the side future only when its own waker fired:
//! it gets a [`Lane`] waker that marks it woken and wakes the task.

use atomic_waker::AtomicWaker;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Which future finished first.
#[derive(Debug, PartialEq, Eq)]
pub enum Won<A, B> {
    Main(A),
    Side(B),
}

/// Wakes the side future's task and marks the side as due for a poll.
#[derive(Default)]
struct Lane {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Lane {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The side lane of one task, reused by each [`race`] it runs.
pub struct Side {
    lane: Arc<Lane>,
    waker: Waker,
}

impl Default for Side {
    fn default() -> Self {
        let lane = Arc::new(Lane::default());
        Side {
            waker: Waker::from(lane.clone()),
            lane,
        }
    }
}

/// Polls `main` at every wake and `side_future` at its first poll and then only
/// when it was woken; the first to finish wins (`main` first when both are ready).
pub async fn race<A, B>(
    side: &Side,
    mut main: Pin<&mut A>,
    side_future: B,
) -> Won<A::Output, B::Output>
where
    A: Future + ?Sized,
    B: Future,
{
    let mut other = pin!(side_future);
    side.lane.woken.store(true, Ordering::Release);
    poll_fn(|cx| {
        // Registered before anything is polled: a side wake from now on wakes this
        // task, and one from before has set `woken`, read below.
        side.lane.task.register(cx.waker());
        if let Poll::Ready(v) = main.as_mut().poll(cx) {
            return Poll::Ready(Won::Main(v));
        }
        if side.lane.woken.swap(false, Ordering::AcqRel) {
            let mut side_cx = Context::from_waker(&side.waker);
            if let Poll::Ready(v) = other.as_mut().poll(&mut side_cx) {
                return Poll::Ready(Won::Side(v));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    /// A future that counts its polls and is pending until told otherwise.
    fn counted(polls: Rc<Cell<u32>>, ready_after: u32) -> impl Future<Output = u32> {
        poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            if polls.get() > ready_after {
                Poll::Ready(polls.get())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_side_is_polled_once_while_the_main_future_keeps_waking() {
        let side = Side::default();
        let (main_polls, side_polls) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let main = pin!(counted(main_polls.clone(), 50));
        let sp = side_polls.clone();
        let won = race(
            &side,
            main,
            poll_fn(move |_| {
                sp.set(sp.get() + 1);
                Poll::<()>::Pending
            }),
        )
        .await;
        assert_eq!(won, Won::Main(51));
        assert_eq!(side_polls.get(), 1, "never woken: polled once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_woken_side_wins_over_a_pending_main_future() {
        let side = Side::default();
        let main = pin!(std::future::pending::<()>());
        let won = race(&side, main, tokio::time::sleep(Duration::from_millis(30))).await;
        assert_eq!(won, Won::Side(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_reused_by_the_next_race_is_polled_at_its_start() {
        let side = Side::default();
        let mut main = pin!(std::future::pending::<()>());
        for ms in [10, 20] {
            let won = race(
                &side,
                main.as_mut(),
                tokio::time::sleep(Duration::from_millis(ms)),
            )
            .await;
            assert_eq!(won, Won::Side(()));
        }
        let notify = tokio::sync::Notify::new();
        notify.notify_one();
        let won = race(&side, main.as_mut(), notify.notified()).await;
        assert_eq!(
            won,
            Won::Side(()),
            "a stored permit is seen at the first poll"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_main_future_wins_when_both_are_ready() {
        let side = Side::default();
        let won = race(&side, pin!(async { 1 }), async { 2 }).await;
        assert_eq!(won, Won::Main(1));
    }
}
