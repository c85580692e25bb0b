//! A request body read by the connection that carries it: the request path polls
//! [`Http1Body`] like any `http_body::Body`, and the connection's driver reads and decodes
//! bytes only when the body asks for them (so a request answered without its body never
//! has its body read, and a client cannot push more than one frame ahead of the upstream).

use std::{
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Why a request body ended before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The chunked coding was broken (a lying chunk size, a bad size line or trailers).
    #[error("malformed chunked request body: {0}")]
    Chunked(#[from] lockstep_core::http1::ChunkError),
    /// The client closed the connection before the whole body.
    #[error("the client closed the connection before the end of the request body")]
    Incomplete,
    /// Reading from the client failed.
    #[error("reading the request body failed")]
    Io,
}

/// Where the body is, as the driver and the body both see it.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// The body is waiting for a frame.
    pub want: bool,
    /// A frame read and not yet taken.
    pub frame: Option<Frame<Bytes>>,
    /// Set once the last frame is in `frame` (or taken), or the body failed.
    pub end: Option<Result<(), BodyError>>,
    /// The body was dropped: nobody will read the rest.
    pub dropped: bool,
    body_waker: Option<Waker>,
    conn_waker: Option<Waker>,
}

impl Channel {
    /// The driver has put a frame or an end in: wake the body's reader.
    pub(crate) fn wake_body(&mut self) {
        if let Some(waker) = self.body_waker.take() {
            waker.wake();
        }
    }

    /// The driver will look again when the body wants more.
    pub(crate) fn park_conn(&mut self, cx: &Context<'_>) {
        match &self.conn_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.conn_waker = Some(cx.waker().clone()),
        }
    }

    /// Whether the body was read to its end.
    pub(crate) fn finished(&self) -> bool {
        matches!(self.end, Some(Ok(()))) && self.frame.is_none()
    }
}

/// The shared half of a request body.
pub(crate) type Shared = Arc<Mutex<Channel>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, Channel> {
    // A panic elsewhere leaves no invariant broken here.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The body of a request received over HTTP/1.
#[derive(Debug)]
pub struct Http1Body {
    /// None for a request without a body.
    shared: Option<Shared>,
    hint: SizeHint,
    done: bool,
}

impl Http1Body {
    /// No body.
    pub(crate) fn empty() -> Self {
        Self {
            shared: None,
            hint: SizeHint::with_exact(0),
            done: true,
        }
    }

    /// A body of `length` bytes when known (else chunked), read through `shared`.
    pub(crate) fn new(shared: Shared, length: Option<u64>) -> Self {
        Self {
            shared: Some(shared),
            hint: length.map_or_else(SizeHint::default, SizeHint::with_exact),
            done: false,
        }
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(shared) = &this.shared else {
            return Poll::Ready(None);
        };
        if this.done {
            return Poll::Ready(None);
        }
        let mut chan = lock(shared);
        if let Some(frame) = chan.frame.take() {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                if let Some(exact) = this.hint.exact() {
                    this.hint = SizeHint::with_exact(exact.saturating_sub(len));
                }
            }
            if matches!(chan.end, Some(Ok(()))) {
                this.done = true;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        match chan.end {
            Some(Ok(())) => {
                this.done = true;
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                this.done = true;
                Poll::Ready(Some(Err(error)))
            }
            None => {
                chan.want = true;
                match &chan.body_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => chan.body_waker = Some(cx.waker().clone()),
                }
                if let Some(waker) = chan.conn_waker.take() {
                    waker.wake();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || self.shared.as_ref().is_some_and(|shared| {
                let chan = lock(shared);
                chan.frame.is_none() && matches!(chan.end, Some(Ok(())))
            })
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

impl Drop for Http1Body {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            let mut chan = lock(shared);
            chan.dropped = true;
            if let Some(waker) = chan.conn_waker.take() {
                waker.wake();
            }
        }
    }
}
