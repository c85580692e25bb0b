//! The listening socket's one option beyond what tokio sets: `TCP_DEFER_ACCEPT`, so that a
//! connection reaches the accept loop with its first request already in it.
//!
//! Without it, a client's connection is handed over on the handshake's last ACK and its
//! request follows a moment later: the proxy wakes for the connection, registers it, goes
//! back to epoll and wakes again for the request. Deferred, the kernel holds the connection
//! until its first bytes arrive and one wake-up serves both. With nginx configured alike
//! (`listen ... deferred`), it cut nginx's sleeps per connection-per-request from 0.9 to 0.16
//! and lockstep's from 0.8 to 0.16 (e2e/bench/cputime.sh; e2e/bench/RESULTS.md, "Data plane,
//! 2026-12-06 afternoon"). Every protocol served here (HTTP/1, HTTP/2 with prior knowledge,
//! TLS) has the client speak first, so nothing waits on the proxy to speak.
//!
//! This is the workspace's only `unsafe`: the standard library has the option only behind the
//! unstable `tcp_deferaccept` feature, and neither socket2, rustix nor nix (0.32) offers it
//! on Linux.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, AsRawFd};

/// How long, in seconds, the kernel holds a connection whose client has not spoken before
/// handing it over anyway (on the client's ACK of a SYN-ACK the kernel sends again then):
/// a silent client reaches the proxy about a second late, and from then on the head timeout
/// bounds it as before. HAProxy's `defer-accept` uses the same second; nginx's `deferred`
/// uses its header timeout, which would hold a silent connection twice as long in all.
pub(super) const DEFER_ACCEPT_SECONDS: u32 = 1;

/// Defers accepting on `listener` until a client sends (see the module doc); a no-op where
/// the option does not exist.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(super) fn defer_accept(listener: &impl AsFd, seconds: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).expect("an int's size fits socklen_t");
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

/// Defers accepting on `listener` until a client sends (see the module doc); a no-op where
/// the option does not exist.
#[cfg(not(target_os = "linux"))]
pub(super) fn defer_accept<T>(_listener: &T, _seconds: u32) -> io::Result<()> {
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

    async fn deferred_listener() -> TcpListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        defer_accept(&listener, DEFER_ACCEPT_SECONDS).expect("TCP_DEFER_ACCEPT");
        listener
    }

    /// A connection is handed over only once its client sends, with the bytes in it: the
    /// first read finds them.
    #[tokio::test]
    async fn a_connection_is_accepted_once_its_client_speaks() {
        let listener = deferred_listener().await;
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

    /// A client that never speaks is still handed over, about a second late, so that the
    /// proxy's own head timeout and connection limit see it.
    #[tokio::test]
    async fn a_silent_connection_is_accepted_about_a_second_late() {
        let listener = deferred_listener().await;
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
}
