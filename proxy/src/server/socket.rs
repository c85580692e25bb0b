//! A client's TCP socket, kept out of tokio's reactor until it has to wait.
//!
//! The listener defers each connection until its client has sent (listen.rs), so a new
//! connection's request is nearly always in its socket when it is accepted. A connection that
//! is answered once and closed (every one of a client without keep-alive) then never has to
//! wait on its own socket: the request is read at once, the answer waits on the upstream's
//! socket, and the response fits the socket's send buffer. Registered with the reactor on
//! accept, as tokio's listener does, such a connection cost an `epoll_ctl` to add it and one
//! to remove it on close, the two most expensive of its eight or nine system calls.
//!
//! So an accepted socket starts unregistered: reads and writes go straight to the kernel, and
//! only a call that would block (or a read after one that emptied the socket, which would
//! find nothing) registers it with tokio, which then waits for epoll's report as any stream
//! does (epoll reports what is already there as the socket is added, so nothing is missed).
//! Closing an unregistered socket needs no `epoll_ctl`. A keep-alive connection registers at
//! its second request's read, as it would have at the accept.
//!
//! The accept itself is mio's (`accept4`), through the listener's `AsyncFd`: tokio's listener
//! registers every stream it accepts.

use std::{
    io::{self, Read, Write},
    mem,
    net::{Shutdown, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf, unix::AsyncFd},
    net::TcpListener,
};

/// A listening socket whose connections are accepted unregistered.
pub(crate) struct Listener(AsyncFd<mio::net::TcpListener>);

impl Listener {
    /// Takes over tokio's listener (which is taken out of the reactor once).
    pub(crate) fn new(listener: TcpListener) -> io::Result<Self> {
        let listener = mio::net::TcpListener::from_std(listener.into_std()?);
        // `with_interest` is deprecated because an `AsRawFd` need not own its descriptor,
        // which could then be closed and reused while registered; mio's listener owns its
        // descriptor, closed only when the `AsyncFd` drops it after taking it out of the
        // reactor. The replacement, `register_with_interest`, is `unsafe` for that reason.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(listener, Interest::READABLE)?;
        Ok(Self(fd))
    }

    /// The next connection, not registered with the reactor.
    pub(crate) async fn accept(&self) -> io::Result<(ClientTcp, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(accepted) = ready.try_io(|listener| listener.get_ref().accept()) {
                let (stream, remote) = accepted?;
                let socket = std::net::TcpStream::from(stream);
                return Ok((
                    ClientTcp::Direct {
                        socket,
                        drained: false,
                    },
                    remote,
                ));
            }
        }
    }
}

/// An accepted client socket (see the module doc). mio's `accept4` made it non-blocking.
#[derive(Debug)]
pub(crate) enum ClientTcp {
    /// Not registered: each call goes to the kernel.
    Direct {
        socket: std::net::TcpStream,
        /// The last read took less than it asked for, so the socket was empty then: the next
        /// read waits for epoll rather than try (as tokio's streams decide).
        drained: bool,
    },
    /// Registered with the reactor, since a call would have blocked.
    Registered(tokio::net::TcpStream),
    /// Registering failed; the socket is closed.
    Failed,
}

impl ClientTcp {
    /// Registers the socket with the reactor, once.
    fn registered(&mut self) -> io::Result<&mut tokio::net::TcpStream> {
        if let ClientTcp::Direct { .. } = self {
            let ClientTcp::Direct { socket, .. } = mem::replace(self, ClientTcp::Failed) else {
                unreachable!("matched above");
            };
            *self = ClientTcp::Registered(tokio::net::TcpStream::from_std(socket)?);
        }
        match self {
            ClientTcp::Registered(stream) => Ok(stream),
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Turns Nagle's algorithm off.
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            ClientTcp::Direct { socket, .. } => socket.set_nodelay(true),
            ClientTcp::Registered(stream) => stream.set_nodelay(true),
            ClientTcp::Failed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Whether the client has sent bytes not read yet (they are read and dropped): looks
    /// without waiting, and without registering a socket that is about to close.
    pub(crate) fn has_unread(&mut self) -> bool {
        match self {
            ClientTcp::Direct { socket, .. } => matches!(socket.read(&mut [0; 64]), Ok(n) if n > 0),
            ClientTcp::Registered(stream) => crate::http1::has_unread(stream),
            ClientTcp::Failed => false,
        }
    }
}

/// The result of a direct call: `None` when it would have blocked.
fn unless_blocked<T>(result: io::Result<T>) -> Option<io::Result<T>> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
        result => Some(result),
    }
}

impl AsyncRead for ClientTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let ClientTcp::Direct { socket, drained } = this
            && !*drained
        {
            // A safe read needs initialised memory: the first head read's 2 KiB stack buffer
            // is zeroed for it. Only reads before the socket first runs dry come here.
            let unfilled = buf.initialize_unfilled();
            let asked = unfilled.len();
            loop {
                match unless_blocked(socket.read(unfilled)) {
                    Some(Err(error)) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Some(Err(error)) => return Poll::Ready(Err(error)),
                    Some(Ok(n)) => {
                        *drained = n < asked;
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    None => break,
                }
            }
        }
        match this.registered() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl ClientTcp {
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        direct: impl Fn(&mut std::net::TcpStream) -> io::Result<usize>,
        registered: impl FnOnce(Pin<&mut tokio::net::TcpStream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let ClientTcp::Direct { socket, .. } = self {
            loop {
                match unless_blocked(direct(socket)) {
                    Some(Err(error)) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Some(result) => return Poll::Ready(result),
                    None => break,
                }
            }
        }
        match self.registered() {
            Ok(stream) => registered(Pin::new(stream), cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for ClientTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(
            cx,
            |socket| socket.write(buf),
            |stream, cx| stream.poll_write(cx, buf),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(
            cx,
            |socket| socket.write_vectored(bufs),
            |stream, cx| stream.poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TCP socket buffers nothing of its own.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientTcp::Direct { socket, .. } => Poll::Ready(socket.shutdown(Shutdown::Write)),
            ClientTcp::Registered(stream) => Pin::new(stream).poll_shutdown(cx),
            ClientTcp::Failed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, time::Duration};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A client connected to a new listener, having sent `sent` (when not empty) before its
    /// connection is accepted, and the accepted socket.
    async fn accepted(sent: &[u8]) -> (std::net::TcpStream, ClientTcp) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listener = Listener::new(listener).expect("listener");
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        if !sent.is_empty() {
            client.write_all(sent).expect("send");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (socket, _) = listener.accept().await.expect("accept");
        (client, socket)
    }

    /// What the socket's next read gets, within five seconds.
    async fn next_read(socket: &mut ClientTcp) -> Vec<u8> {
        let mut buf = [0; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("woken by the bytes")
            .expect("read");
        buf[..n].to_vec()
    }

    fn is_direct(socket: &ClientTcp) -> bool {
        matches!(socket, ClientTcp::Direct { .. })
    }

    /// A connection whose request is in its socket when accepted is read, answered, looked
    /// at for more bytes and closed without ever being registered with the reactor.
    #[tokio::test]
    async fn a_request_already_in_is_answered_without_registering() {
        let (mut client, mut socket) = accepted(b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(next_read(&mut socket).await, b"GET / HTTP/1.1\r\n\r\n");
        socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("write");
        assert!(!socket.has_unread(), "nothing more was sent");
        assert!(is_direct(&socket), "registered: {socket:?}");
        socket.shutdown().await.expect("shutdown");
        drop(socket);
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut answer).expect("client read");
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    /// A read that finds nothing registers the socket, and the task is woken when the bytes
    /// come: nothing is lost between the failed read and the registration.
    #[tokio::test]
    async fn a_read_that_finds_nothing_waits_for_the_bytes() {
        let (mut client, mut socket) = accepted(b"").await;
        let mut buf = [0; 16];
        let early = tokio::time::timeout(Duration::from_millis(50), socket.read(&mut buf)).await;
        assert!(early.is_err(), "read before anything was sent: {early:?}");
        assert!(
            !is_direct(&socket),
            "still unregistered after a read that would block"
        );
        client.write_all(b"late").expect("send");
        assert_eq!(next_read(&mut socket).await, b"late");
    }

    /// A read that took less than it asked for emptied the socket: the next read waits for
    /// epoll (registering) instead of trying, and still gets what comes later.
    #[tokio::test]
    async fn a_read_after_the_socket_ran_dry_waits_for_epoll() {
        let (mut client, mut socket) = accepted(b"first").await;
        let mut buf = [0; 16];
        assert_eq!(socket.read(&mut buf).await.expect("read"), 5);
        assert!(
            matches!(socket, ClientTcp::Direct { drained: true, .. }),
            "{socket:?}"
        );
        client.write_all(b"second").expect("send");
        assert_eq!(next_read(&mut socket).await, b"second");
        assert!(!is_direct(&socket), "the second read registered");
    }

    /// Bytes waiting are seen without registering (and dropped, as a lingering close would).
    #[tokio::test]
    async fn waiting_bytes_are_seen_without_registering() {
        let (mut client, mut socket) = accepted(b"").await;
        assert!(!socket.has_unread());
        client.write_all(b"more").expect("send");
        std::thread::sleep(Duration::from_millis(20));
        assert!(socket.has_unread());
        assert!(is_direct(&socket));
    }

    /// A write the socket cannot take whole waits for the client to read, registered.
    #[tokio::test]
    async fn a_write_that_would_block_waits_for_the_client_to_read() {
        let (client, mut socket) = accepted(b"").await;
        let body = vec![7u8; 8 * 1024 * 1024];
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut &client, &mut got).expect("client read");
            got.len()
        });
        tokio::time::timeout(Duration::from_secs(10), socket.write_all(&body))
            .await
            .expect("written once the client reads")
            .expect("write");
        assert!(!is_direct(&socket), "8 MiB fit the socket without blocking");
        socket.shutdown().await.expect("shutdown");
        drop(socket);
        assert_eq!(reader.join().expect("reader"), body.len());
    }
}
