//! Protocol switches (WebSocket upgrades): once the upstream answered 101 and both
//! connections were handed over (the client's by the proxy's HTTP/1 server once it wrote
//! the 101, with any bytes the client sent after its head; the upstream's by the proxy's
//! HTTP/1 client, with any bytes the upstream sent after its 101), bytes are copied both ways until either side closes, or until neither side
//! sent a byte for the tunnel idle timeout (a silent peer holds a connection and a task; a
//! WebSocket that wants to stay open sends pings).
//!
//! No overall cap on a tunnel's life: a WebSocket that carries traffic is doing its job
//! however long it lives, and a drain bounds every tunnel anyway (`--drain-timeout`).

use std::{
    io,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::task::TaskTracker;

/// Joins the client's and the upstream's upgraded connections in the background. The task
/// is tracked, so a draining shutdown waits for tunnels too (up to the drain timeout).
pub(crate) fn tunnel(
    tasks: &TaskTracker,
    client: crate::http1::upgrade::OnUpgrade,
    upstream: crate::http1::upgrade::Upgraded,
    idle_timeout: Duration,
    state: std::sync::Arc<crate::state::ProxyState>,
) {
    tasks.spawn(async move {
        let client = match client.wait().await {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, "client upgrade did not complete");
                return;
            }
        };
        let started = tokio::time::Instant::now();
        let last = AtomicU64::new(0);
        let mut client = Active::new(client, &last, started);
        let mut upstream = Active::new(upstream, &last, started);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        loop {
            let quiet_since = started + Duration::from_millis(last.load(Ordering::Relaxed));
            tokio::select! {
                result = &mut copy => {
                    match result {
                        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
                        Err(error) => tracing::debug!(%error, "tunnel failed"),
                    }
                    return;
                }
                () = tokio::time::sleep_until(quiet_since + idle_timeout) => {
                    let now_quiet_since = started + Duration::from_millis(last.load(Ordering::Relaxed));
                    if now_quiet_since + idle_timeout <= tokio::time::Instant::now() {
                        tracing::debug!(?idle_timeout, "tunnel idle; closing");
                        state.metrics.client_timeout("tunnel_idle");
                        return;
                    }
                }
            }
        }
    });
}

/// One side of a tunnel, noting when it last carried bytes (milliseconds since the tunnel
/// opened, shared by both sides).
struct Active<'a, S> {
    inner: S,
    last: &'a AtomicU64,
    started: tokio::time::Instant,
}

impl<'a, S> Active<'a, S> {
    fn new(inner: S, last: &'a AtomicU64, started: tokio::time::Instant) -> Self {
        Self { inner, last, started }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX / 4);
        self.last.store(millis, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<'_, S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<'_, S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
