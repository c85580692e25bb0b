//! A client connection switched to another protocol (after a 101): what the request path
//! tunnels. Apart from the server ([`super::server`]) so the request path, which the server
//! calls, can name it without importing the server back.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::oneshot,
};

/// An upgraded client connection (after a 101): the bytes the client sent after its
/// request head, then the connection itself.
pub(crate) struct Upgraded {
    io: Box<dyn Io>,
    prefix: Bytes,
}

impl Upgraded {
    /// The connection `io`, of which the client already sent `prefix`.
    pub(super) fn new(io: Box<dyn Io>, prefix: Bytes) -> Self {
        Self { io, prefix }
    }
}

pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl AsyncRead for Upgraded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = buf.remaining().min(this.prefix.len());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The client connection of a request that asked to switch protocols, once the switch is
/// answered (a request extension; the request path takes it out when it tunnels).
#[derive(Clone)]
pub(crate) struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// The sender the server hands the connection to once the 101 is written, and the
    /// extension the request carries to the request path.
    pub(super) fn channel() -> (oneshot::Sender<Upgraded>, Self) {
        let (sender, receiver) = oneshot::channel();
        (sender, Self(Arc::new(Mutex::new(Some(receiver)))))
    }

    /// Waits for the 101 to be written; fails if the connection ended first.
    pub(crate) async fn wait(self) -> io::Result<Upgraded> {
        let receiver = self.0.lock().ok().and_then(|mut r| r.take());
        match receiver {
            Some(receiver) => receiver.await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "connection ended before the switch",
                )
            }),
            None => Err(io::Error::other("upgrade already taken")),
        }
    }
}
