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
//! asked, and registered every connection: about 500 instructions per connection
//! (callgrind).

use std::{
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
    task::{Context, Poll},
};

use tokio::sync::{Notify, futures::Notified};

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

    /// A wait for the drain, made before the connection next looks at it (see
    /// [`Drain::poll_started`]).
    pub(crate) fn wait(&self) -> Notified<'_> {
        self.idle.notified()
    }

    /// Ready once the drain started. Registers `wait` (made by [`Drain::wait`] before this is
    /// first polled, so a drain that starts in between is not missed) for the wakeup only
    /// when `idle`: a busy connection learns of the drain when its request is done.
    pub(crate) fn poll_started(
        &self,
        cx: &mut Context<'_>,
        wait: Pin<&mut Notified<'_>>,
        idle: bool,
    ) -> Poll<()> {
        if self.started() {
            return Poll::Ready(());
        }
        if !idle {
            return Poll::Pending;
        }
        wait.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{future::poll_fn, pin::pin, sync::Arc, time::Duration};

    use super::*;

    /// An idle connection's wait ends when the drain starts. The flag and the registration
    /// are two steps: a wakeup that comes between them (here without the flag, to show the
    /// wait alone sees it) still ends a wait made before it.
    #[tokio::test]
    async fn an_idle_connection_is_woken_when_the_drain_starts() {
        let drain = Arc::new(Drain::default());
        let waiting = {
            let drain = drain.clone();
            tokio::spawn(async move {
                let mut wait = pin!(drain.wait());
                poll_fn(|cx| drain.poll_started(cx, wait.as_mut(), true)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drain.start();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");

        let drain = Drain::default();
        let mut wait = pin!(drain.wait());
        drain.idle.notify_waiters();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(drain.poll_started(&mut cx, wait.as_mut(), true).is_ready());
    }

    /// A busy connection is not registered, and sees the drain by the flag.
    #[test]
    fn a_busy_connection_reads_the_flag() {
        let drain = Drain::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut wait = pin!(drain.wait());
        assert!(drain.poll_started(&mut cx, wait.as_mut(), false).is_pending());
        drain.start();
        assert!(drain.started());
        assert!(drain.poll_started(&mut cx, wait.as_mut(), false).is_ready());
    }
}
