//! The client's request body on its way upstream. It streams frame by frame like the
//! response, and it survives an attempt that never sent it, so a retry can send it again.
//! It comes from hyper's HTTP/2 server or from the proxy's own HTTP/1 server
//! ([`ClientBody`]); the request path is the same for both.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::client::ClientConnection;
use crate::http1::body::Http1Body;

/// Errors of a request body, whichever server read it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body: from hyper's HTTP/2 server or the proxy's own HTTP/1 server.
#[derive(Debug)]
pub(crate) enum ClientBody {
    /// A stream of an HTTP/2 connection.
    Http2(Incoming),
    /// The body of an HTTP/1 request.
    Http1(Http1Body),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http2(body) => body.is_end_stream(),
            ClientBody::Http1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http2(body) => body.size_hint(),
            ClientBody::Http1(body) => body.size_hint(),
        }
    }
}

/// A client's request body on its way upstream, in a form that survives a failed attempt:
/// the body sits in a shared slot until the first poll takes it, so an attempt that never
/// sent anything (a connect failure, a response timeout before the upstream read it) leaves
/// it for the next one.
pub(crate) struct RequestBody {
    slot: Slot,
    end_stream: bool,
    hint: SizeHint,
    /// The client connection, told while the body waits for the client's bytes.
    client: Option<Arc<ClientConnection>>,
    /// Held while the last poll found no bytes from the client.
    waiting: Option<BodyWait>,
}

/// The proxy waits for a client's body bytes while this lives: the connection's watchdog
/// then applies the request-body timeout.
struct BodyWait(Arc<ClientConnection>);

impl BodyWait {
    fn start(client: Arc<ClientConnection>) -> Self {
        client.activity.body_wait_started();
        Self(client)
    }
}

impl Drop for BodyWait {
    fn drop(&mut self) {
        self.0.activity.body_wait_ended();
    }
}

enum Slot {
    Shared(Arc<Mutex<Option<ClientBody>>>),
    Owned(ClientBody),
    Buffered(Option<Bytes>),
    Gone,
}

/// Hands out [`RequestBody`]s for one request's body.
pub(crate) struct BodySlot {
    /// None when the body was read whole (or is empty): no attempt takes anything from it.
    shared: Option<Arc<Mutex<Option<ClientBody>>>>,
    /// The whole body, read before the first attempt so that retries can resend it.
    buffered: Option<Bytes>,
    end_stream: bool,
    hint: SizeHint,
    /// The client connection, for a body still to come (None when there is none).
    client: Option<Arc<ClientConnection>>,
}

/// Largest request body kept in memory so that a request can be retried.
pub(crate) const MAX_BUFFERED_BODY: u64 = 64 * 1024;

impl BodySlot {
    /// Holds a client's body, sent by the client of `client`.
    pub(crate) fn new(body: ClientBody, client: &Arc<ClientConnection>) -> Self {
        let end_stream = body.is_end_stream();
        let hint = body.size_hint();
        if end_stream {
            // Most requests have no body: nothing to share between attempts.
            return Self {
                shared: None,
                buffered: Some(Bytes::new()),
                end_stream,
                hint,
                client: None,
            };
        }
        Self {
            shared: Some(Arc::new(Mutex::new(Some(body)))),
            buffered: None,
            end_stream,
            hint,
            client: Some(client.clone()),
        }
    }

    /// Holds a client's body, read whole first when it is small and its length known (a
    /// Content-Length of at most [`MAX_BUFFERED_BODY`]), so that every attempt can send it.
    /// A body without a known length is streamed, and its request never retried.
    /// The body is read under the request-body timeout, like a streamed one.
    pub(crate) async fn buffer_small(
        body: ClientBody,
        client: &Arc<ClientConnection>,
    ) -> Result<Self, BoxError> {
        use http_body_util::BodyExt;
        match body.size_hint().exact() {
            Some(n) if n <= MAX_BUFFERED_BODY && !body.is_end_stream() => {
                let wait = BodyWait::start(client.clone());
                let bytes = body.collect().await?.to_bytes();
                drop(wait);
                Ok(Self {
                    shared: None,
                    end_stream: bytes.is_empty(),
                    hint: SizeHint::with_exact(bytes.len() as u64),
                    buffered: Some(bytes),
                    client: None,
                })
            }
            _ => Ok(Self::new(body, client)),
        }
    }

    /// A body for one attempt.
    pub(crate) fn attempt(&self) -> RequestBody {
        if let Some(bytes) = &self.buffered {
            return RequestBody {
                slot: Slot::Buffered((!bytes.is_empty()).then(|| bytes.clone())),
                end_stream: bytes.is_empty(),
                hint: self.hint,
                client: None,
                waiting: None,
            };
        }
        RequestBody {
            slot: self.shared.clone().map_or(Slot::Gone, Slot::Shared),
            end_stream: self.end_stream,
            hint: self.hint,
            client: self.client.clone(),
            waiting: None,
        }
    }

    /// Every attempt sends the same bytes: the request has no body, or it was read whole.
    pub(crate) fn is_replayable(&self) -> bool {
        self.end_stream || self.buffered.is_some()
    }

    /// Still unread, so another attempt sends the same bytes.
    pub(crate) fn is_untouched(&self) -> bool {
        match &self.shared {
            Some(shared) => shared.lock().map(|b| b.is_some()).unwrap_or(false),
            None => self.buffered.is_some(),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Slot::Shared(shared) = &this.slot {
            let taken = shared.lock().ok().and_then(|mut b| b.take());
            this.slot = taken.map_or(Slot::Gone, Slot::Owned);
        }
        match &mut this.slot {
            Slot::Owned(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                if polled.is_pending() {
                    if this.waiting.is_none() {
                        this.waiting = this.client.clone().map(BodyWait::start);
                    }
                } else {
                    this.waiting = None;
                }
                polled
            }
            Slot::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            _ => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.slot {
            Slot::Owned(body) => body.is_end_stream(),
            Slot::Shared(_) => self.end_stream,
            Slot::Buffered(bytes) => bytes.is_none(),
            Slot::Gone => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.slot {
            Slot::Owned(body) => body.size_hint(),
            Slot::Shared(_) => self.hint,
            Slot::Buffered(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Slot::Gone => SizeHint::with_exact(0),
        }
    }
}
