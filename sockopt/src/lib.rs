//! `TCP_DEFER_ACCEPT` on a listening socket: the kernel hands a connection over only once its
//! client has sent something, or some seconds after the handshake if it never does.
//!
//! The standard library has the option only behind the unstable `tcp_deferaccept` feature,
//! and none of socket2 (0.6), rustix (1.1) or nix (0.32) offers it on Linux: one
//! `setsockopt` call, through `unsafe`, is this crate. Why the proxy sets it, and what it
//! measured, is in the proxy's `server` module.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, AsRawFd};

/// Asks the kernel to hand over connections accepted on `listener` once their client has
/// sent data, or, for a client that stays silent, about `seconds` after its handshake (when
/// the kernel sends its SYN-ACK again and the client acknowledges it). Zero turns it off.
#[cfg(target_os = "linux")]
pub fn defer_accept(listener: &impl AsFd, seconds: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).expect("an int's size fits socklen_t");
    #[allow(unsafe_code, reason = "setsockopt(2) takes the option's value by raw pointer")]
    // SAFETY: the descriptor is borrowed from a live listener for the length of the call;
    // `optval` points at `value`, a c_int that outlives the call, and `optlen` is its size:
    // setsockopt(2) reads exactly `optlen` bytes there and keeps no pointer.
    let result = unsafe {
        libc::setsockopt(
            listener.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const value).cast(),
            len,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where the option does not exist, connections are handed over on their handshake as
/// before.
#[cfg(not(target_os = "linux"))]
pub fn defer_accept<T>(_listener: &T, _seconds: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    async fn listener_deferring(seconds: u32) -> TcpListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        defer_accept(&listener, seconds).expect("TCP_DEFER_ACCEPT");
        listener
    }

    /// A connection is handed over only once its client sends, with the bytes in it: the
    /// first read finds them.
    #[tokio::test]
    async fn a_connection_is_accepted_once_its_client_speaks() {
        let listener = listener_deferring(1).await;
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(early.is_err(), "accepted before the client sent anything");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("send");
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("accepted once the client spoke")
            .expect("accept");
        let mut buf = [0; 64];
        let n = stream.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    }

    /// A client that never speaks is still handed over, about a second late.
    #[tokio::test]
    async fn a_silent_connection_is_accepted_about_a_second_late() {
        let listener = listener_deferring(1).await;
        let started = Instant::now();
        let _client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("a silent client accepted within 10 s")
            .expect("accept");
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(500)..Duration::from_secs(5)).contains(&waited),
            "accepted after {waited:?}"
        );
    }

    /// Zero turns the option off: a silent connection is handed over at once.
    #[tokio::test]
    async fn zero_seconds_hands_connections_over_on_the_handshake() {
        let listener = listener_deferring(0).await;
        let _client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        tokio::time::timeout(Duration::from_secs(1), listener.accept())
            .await
            .expect("accepted on the handshake")
            .expect("accept");
    }
}
