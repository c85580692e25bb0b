//! The proxy's own HTTP/1.1, both sides (HTTP/2 stays with hyper and h2): the upstream
//! client ([`client`]) and the server side: request
//! heads parsed with `httparse` into buffers the connection owns, request bodies framed by
//! Content-Length or the chunked coding and read on demand ([`body`]), responses framed by
//! Content-Length, chunked, or the connection's close, and the connection kept alive,
//! pipelined or switched to another protocol ([`server`]). The codec itself, pure functions
//! on bytes, is `lockstep_core::http1`.
//!
//! Framing is decided once, where the head is parsed, and refused when it could be read two
//! ways (RFC 9112 §6.1, §6.3): a Content-Length that is not one number, a Transfer-Encoding
//! whose last coding is not chunked or that comes with HTTP/1.0, obs-fold, invalid bytes, a
//! broken chunk. Content-Length with Transfer-Encoding is marked on the request for the
//! request path to refuse after its own Transfer-Encoding checks. Each refusal closes the
//! connection after the answer, so no byte after a refused head is read as a request.
//!
//! An idle keep-alive connection holds no buffer: see [`server`].

pub mod body;
pub(crate) mod client;
mod outgoing;
pub(crate) mod server;
pub(crate) mod upgrade;

pub use self::body::{BodyError, Http1Body};

/// Reads what `io` already has into `scratch`, without waiting: `Pending` when nothing has
/// arrived (and nothing will wake the caller's task for it).
pub(crate) fn read_now<R: tokio::io::AsyncRead + Unpin>(
    io: &mut R,
    scratch: &mut [std::mem::MaybeUninit<u8>],
) -> std::task::Poll<std::io::Result<usize>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut buf = tokio::io::ReadBuf::uninit(scratch);
    std::pin::Pin::new(io)
        .poll_read(&mut cx, &mut buf)
        .map_ok(|()| buf.filled().len())
}

/// Whether the peer has sent bytes not read yet (up to 64 of them are read and dropped):
/// looks without waiting, and without arranging to be woken.
pub(crate) fn has_unread<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> bool {
    matches!(
        read_now(io, &mut [std::mem::MaybeUninit::uninit(); 64]),
        std::task::Poll::Ready(Ok(n)) if n > 0
    )
}
