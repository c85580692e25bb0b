//! The response body on its way to the client: it streams frame by frame (nothing is
//! buffered beyond one frame), ends the request's bookkeeping when it
//! ends, and enforces the route's time limit. The request direction is in
//! [`super::request_body`].

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use lockstep_core::http1::upstream::PassedFields;

use super::{RequestGuard, pool::UpstreamBody};

/// The body of a response the proxy sends to a client.
pub struct ProxyBody {
    kind: Kind,
    /// Dropped with the body: a request is in flight until its response body is sent in
    /// full or abandoned by the client, not just until its head is sent.
    _guard: Option<RequestGuard>,
}

enum Kind {
    Upstream(UpstreamBody),
    /// An upstream body that must be done by a deadline (a route's `timeouts.request`).
    Bounded(UpstreamBody, Pin<Box<tokio::time::Sleep>>),
    Full(Option<Bytes>),
}

/// Why a response body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the route's request timeout passed while the response body was streaming")]
pub struct BodyTimeout;

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Upstream(_) => "ProxyBody::Upstream",
            Kind::Bounded(..) => "ProxyBody::Bounded",
            Kind::Full(_) => "ProxyBody::Full",
        })
    }
}

impl ProxyBody {
    /// An upstream response body, streamed through.
    pub(crate) fn upstream(body: UpstreamBody) -> Self {
        Self {
            kind: Kind::Upstream(body),
            _guard: None,
        }
    }

    /// An upstream response body, streamed through until `deadline`; a body still streaming
    /// then is cut off (the connection or HTTP/2 stream is reset, so the client can tell).
    pub(crate) fn upstream_until(body: UpstreamBody, deadline: tokio::time::Instant) -> Self {
        Self {
            kind: Kind::Bounded(body, Box::pin(tokio::time::sleep_until(deadline))),
            _guard: None,
        }
    }

    /// A body made by the proxy.
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(data.into())),
            _guard: None,
        }
    }

    /// No body.
    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
            _guard: None,
        }
    }

    /// The response's fields as an HTTP/1 upstream sent them, when they were passed (the
    /// response's map then holds none of them): taken once, by the HTTP/1 server, which
    /// writes them into the head.
    pub(crate) fn take_passed_fields(&mut self) -> Option<PassedFields> {
        match &mut self.kind {
            Kind::Upstream(body) | Kind::Bounded(body, _) => body.take_passed_fields(),
            Kind::Full(_) => None,
        }
    }

    /// Keeps `guard` alive until the body is done with. In place, through the response:
    /// `Response::map` would move the whole response twice.
    pub(crate) fn keep(&mut self, guard: RequestGuard) {
        self._guard = Some(guard);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Bounded(body, deadline) => {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Pin::new(body).poll_frame(cx).map_err(Into::into)
            }
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body) | Kind::Bounded(body, _) => body.is_end_stream(),
            Kind::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) | Kind::Bounded(body, _) => body.size_hint(),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
