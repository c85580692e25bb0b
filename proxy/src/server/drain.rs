//! A listener's drain: a flag read without a lock, and a wakeup for its accept loop and for
//! the connections that wait between requests.
//!
//! Only an idle connection needs waking when a drain starts: one with a request in flight
//! reads the flag when that request's response decides whether to keep the connection
//! ([`crate::forward::client::ClientConnection::is_closing`]), and closes after it. So a
//! connection registers for the wakeup only while it waits for its next request, and one
//! that answers a single request and closes (every connection of a client without
//! keep-alive) never takes the lock the registration needs. tokio-util's
//! `CancellationToken`, used for this before, took its node's lock to be cloned, dropped and
//! asked, and registered every connection: replacing it (here and in the accept loop) took
//! about 450 instructions off each new connection's request (`e2e/bench/instructions.sh`).

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::atomic::{AtomicBool, Ordering},
    task::Poll,
};

use tokio::sync::Notify;

/// The drain of one listener's connections.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    started: AtomicBool,
    idle: Notify,
}

impl Drain {
    /// Starts the drain: the listener stops accepting, every connection closes once it has
    /// no request in flight, and those waiting for one are woken to close now.
    pub(crate) fn start(&self) {
        self.started.store(true, Ordering::Release);
        self.idle.notify_waiters();
    }

    /// Whether the drain has started.
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Completes once the drain started. Registers to be woken only while `idle()` says so
    /// when polled: a busy connection learns of the drain by the flag when its request is
    /// done. One such future may be polled across many turns (the accept loop's is).
    pub(crate) async fn until_started(&self, idle: impl Fn() -> bool) {
        // Made before the flag is first read: a drain that starts between that read and
        // the registration still ends the wait (a `Notified` counts the wakeups sent after
        // it was made).
        let mut wait = pin!(self.idle.notified());
        poll_fn(|cx| {
            if self.started() {
                return Poll::Ready(());
            }
            if !idle() {
                return Poll::Pending;
            }
            wait.as_mut().poll(cx)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, atomic::AtomicBool},
        task::{Context, Waker},
        time::Duration,
    };

    use super::*;

    /// An idle connection's wait ends when the drain starts.
    #[tokio::test]
    async fn an_idle_connection_is_woken_when_the_drain_starts() {
        let drain = Arc::new(Drain::default());
        let waiting = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.until_started(|| true).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drain.start();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
    }

    /// What `until_started` relies on between its flag and its registration: a wakeup sent
    /// after a `Notified` was made, before it was first polled, still ends it.
    #[test]
    fn a_wakeup_before_the_first_poll_is_not_missed() {
        let drain = Drain::default();
        let mut wait = pin!(drain.idle.notified());
        drain.idle.notify_waiters();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }

    /// A busy connection is not registered, and sees the drain by the flag once it is idle
    /// or polled again; the same future serves both states.
    #[test]
    fn a_busy_connection_reads_the_flag() {
        let drain = Drain::default();
        let idle = AtomicBool::new(false);
        let mut cx = Context::from_waker(Waker::noop());
        let mut waiting = pin!(drain.until_started(|| idle.load(Ordering::Relaxed)));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        idle.store(true, Ordering::Relaxed);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        drain.start();
        assert!(drain.started());
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
    }
}
