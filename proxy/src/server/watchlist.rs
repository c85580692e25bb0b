//! Connections whose watchdog put off setting its timer, and the one task that wakes them.
//!
//! A connection's watchdog ([`super::conn`]) keeps its timeouts with a tokio timer, set when
//! the connection first waits. Most connections of an ingress end before any timeout could
//! pass: a new connection's request is there when it is accepted (`listen.rs`), its
//! response comes in a millisecond, and the connection closes. Its timer was still set,
//! registered in tokio's wheel, looked at by the driver and taken out again: about 700
//! instructions of a new connection's 26,000 (callgrind, `instructions.sh` MODE=new), a
//! third of what lockstep spent per connection beyond nginx.
//!
//! So a watchdog whose first wait has nothing due within [`PUT_OFF_UNDER`] leaves its waker
//! here instead (a push under a lock), and this list's task wakes every such connection
//! [`TICK`] later. A connection still waiting then sets its timer, for deadlines at least
//! [`PUT_OFF_UNDER`] away, so none passes unseen; one that has ended ignores the wake (its
//! task's memory is freed with the entry). A later wait of the same
//! connection sets the timer at once, as before: only a connection's first wait is put off.
//!
//! The task sleeps on a [`Notify`] while the list is empty: an idle proxy does not tick.

use std::{
    sync::{Arc, Mutex, Weak},
    task::Waker,
    time::Duration,
};

use tokio::sync::Notify;

/// How long after a connection's first wait it is woken to set its timer.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// A first wait with anything due sooner than this sets its timer at once.
pub(crate) const PUT_OFF_UNDER: Duration = Duration::from_millis(1_000);

/// The wakers of connections that put off setting their timer.
#[derive(Debug, Default)]
pub(crate) struct Watchlist {
    wakers: Mutex<Vec<Waker>>,
    /// Told when the list gets its first entry, and when it is dropped.
    listed: Arc<Notify>,
}

impl Watchlist {
    /// A list and its task, which ends when the list is dropped.
    pub(crate) fn start() -> Arc<Self> {
        let list = Arc::new(Self::default());
        tokio::spawn(wake_listed(Arc::downgrade(&list), list.listed.clone()));
        list
    }

    /// `waker` is woken about a [`TICK`] from now.
    pub(crate) fn wake_later(&self, waker: &Waker) {
        let first = {
            let mut wakers = self
                .wakers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            wakers.push(waker.clone());
            wakers.len() == 1
        };
        if first {
            self.listed.notify_one();
        }
    }

    /// Takes every listed waker, leaving an empty list of the same room.
    fn take(&self) -> Vec<Waker> {
        let mut wakers = self
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = wakers.capacity();
        std::mem::replace(&mut *wakers, Vec::with_capacity(room))
    }
}

impl Drop for Watchlist {
    fn drop(&mut self) {
        self.listed.notify_one();
    }
}

/// Waits for a first listed waker, lets a [`TICK`] pass, wakes everything listed by then;
/// again, until the list is gone. Holds the list only while waking: a strong reference
/// across the waits would keep it (and this task) alive for ever.
async fn wake_listed(list: Weak<Watchlist>, listed: Arc<Notify>) {
    loop {
        listed.notified().await;
        if list.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(TICK).await;
        let Some(list) = list.upgrade() else { return };
        for waker in list.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_listed_waker_is_woken_a_tick_later_and_only_once() {
        let list = Watchlist::start();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        list.wake_later(&waker);
        list.wake_later(&waker);
        tokio::time::sleep(TICK - Duration::from_millis(10)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "not before the tick");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "both entries, at the tick");
        tokio::time::sleep(TICK * 4).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "the list was emptied");
        // Listed again after a quiet spell: the task waits for entries, then ticks again.
        list.wake_later(&waker);
        tokio::time::sleep(TICK + Duration::from_millis(10)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_ends_with_its_list() {
        let alive = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let list = Watchlist::start();
        tokio::task::yield_now().await;
        assert_eq!(alive(), 1, "the list's task waits for entries");
        drop(list);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(alive(), 0, "and returns once the list is gone");
    }
}
