//! One client connection: HTTP/1.1 or HTTP/2 (prior knowledge) on the same port, with a
//! watchdog that enforces the header-read and idle timeouts.
//!
//! The timeouts are the proxy's, not hyper's: hyper's HTTP/1 header timer also runs while a
//! keep-alive connection waits for its next request, which would make the idle timeout
//! unreachable, and it has no idle timeout at all for HTTP/2.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::framing::FramingScanner;
use crate::{options::ProxyOptions, proxy::Proxy};

/// The client connection a request arrived on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// "http" or "https": how the client reached us (X-Forwarded-Proto, redirects).
    pub scheme: &'static str,
    /// What the watchdog reads.
    pub activity: ConnActivity,
}

/// Timestamps (milliseconds since the connection was accepted, plus one so that zero can
/// mean "none") and counters written by the IO wrapper and the request path.
#[derive(Debug)]
pub(crate) struct ConnActivity {
    origin: Instant,
    in_flight: AtomicU32,
    last_read: AtomicU64,
    /// When the client started a request head that has not been dispatched yet.
    head_since: AtomicU64,
    first_read_seen: AtomicBool,
    http2: AtomicBool,
    /// Requests handed to the proxy so far (HTTP/1: the index of the next head).
    dispatched: AtomicU64,
    /// Follows HTTP/1 framing to see what hyper's parser hides.
    framing: Mutex<FramingScanner>,
}

/// The HTTP/2 connection preface starts like this; nothing that is HTTP/1 does.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

enum Check {
    /// Look again at this many milliseconds.
    Until(u64),
    HeaderTimeout,
    Idle,
}

impl ConnActivity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_read: AtomicU64::new(1),
            // A new connection owes a request head from the start: a client that connects
            // and sends nothing is a slowloris too.
            head_since: AtomicU64::new(1),
            first_read_seen: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            dispatched: AtomicU64::new(0),
            framing: Mutex::new(FramingScanner::default()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn on_read(&self, bytes: &[u8]) {
        let now = self.now();
        self.last_read.store(now, Ordering::Relaxed);
        if !self.first_read_seen.swap(true, Ordering::Relaxed) {
            let n = bytes.len().min(H2_PREFACE_START.len());
            if bytes[..n] == H2_PREFACE_START[..n] {
                // HTTP/2 sends heads as frames of a long-lived connection; hyper and h2
                // bound those, only the idle timeout applies.
                self.http2.store(true, Ordering::Relaxed);
                self.head_since.store(0, Ordering::Relaxed);
                self.framing().stop();
                return;
            }
        }
        if !self.http2.load(Ordering::Relaxed) {
            self.framing().feed(bytes);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    fn framing(&self) -> std::sync::MutexGuard<'_, FramingScanner> {
        // The scanner holds no invariant a panic elsewhere could break.
        self.framing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request head was parsed and handed to the proxy; returns its index on the
    /// connection (0 for the first).
    pub(crate) fn request_started(&self) -> u64 {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        self.dispatched.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the HTTP/1 head of request `index` had both Content-Length and
    /// Transfer-Encoding (hyper hands such a request over with the Content-Length removed).
    pub(crate) fn had_both_lengths(&self, index: u64) -> bool {
        !self.http2.load(Ordering::Relaxed) && self.framing().had_both_lengths(index)
    }

    /// A response was sent in full (or abandoned).
    pub(crate) fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        // Idle time starts now, not at the last byte the client sent.
        self.last_read.store(self.now(), Ordering::Relaxed);
    }

    fn check(&self, header_timeout: u64, idle_timeout: u64) -> Check {
        let now = self.now();
        let short = header_timeout.min(idle_timeout);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Check::Until(now + short);
        }
        let http2 = self.http2.load(Ordering::Relaxed);
        let head = self.head_since.load(Ordering::Relaxed);
        if !http2 && head != 0 && now >= head + header_timeout {
            return Check::HeaderTimeout;
        }
        let last = self.last_read.load(Ordering::Relaxed);
        if now >= last + idle_timeout {
            return Check::Idle;
        }
        let mut next = last + idle_timeout;
        if !http2 {
            // A head may start at any moment; look again soon enough to catch it timing out.
            next = next.min(if head != 0 {
                head + header_timeout
            } else {
                now + header_timeout
            });
        }
        Check::Until(next)
    }
}

/// A client stream that reports reads to the connection's [`ConnActivity`].
struct TrackedStream<S> {
    inner: S,
    info: Arc<ConnInfo>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && buf.filled().len() > before
        {
            this.info.activity.on_read(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The hyper connection builder for a listener's options.
pub(crate) fn builder(options: &ProxyOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        // hyper refuses read buffers below 8 KiB; a head must fit the buffer, so this is
        // the header size limit, answered with 431.
        .max_buf_size(options.max_header_bytes.max(8192))
        .max_headers(options.max_header_count);
    builder
        .http2()
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
        .timer(hyper_util::rt::TokioTimer::new());
    builder
}

/// Serves one accepted connection until it closes, times out, or `shutdown` fires (then it
/// finishes in-flight requests and closes).
pub(crate) async fn serve<S>(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: S,
    remote: SocketAddr,
    scheme: &'static str,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(ConnInfo {
        remote,
        scheme,
        activity: ConnActivity::new(),
    });
    let header_timeout = millis(proxy.options().header_read_timeout);
    let idle_timeout = millis(proxy.options().idle_timeout);
    let io = TokioIo::new(TrackedStream {
        inner: stream,
        info: info.clone(),
    });
    let service_info = info.clone();
    let service_proxy = proxy.clone();
    let service = service_fn(move |req| {
        let proxy = service_proxy.clone();
        let info = service_info.clone();
        async move { Ok::<_, Infallible>(proxy.handle(info, req).await) }
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    // Once closing for idleness, a peer that does not finish closing in another idle period
    // is cut off.
    let mut give_up_at: Option<u64> = None;
    loop {
        let now = info.activity.now();
        let wake = match info.activity.check(header_timeout, idle_timeout) {
            Check::Until(at) => at,
            Check::HeaderTimeout => {
                tracing::debug!(client = %remote, "request head not received in time; closing");
                return;
            }
            Check::Idle => match give_up_at {
                Some(at) if now >= at => return,
                Some(at) => at,
                None => {
                    tracing::debug!(client = %remote, "idle; closing");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    give_up_at = Some(now + idle_timeout);
                    now + idle_timeout
                }
            },
        };
        let sleep = tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now).min(3_600_000)));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(client = %remote, %error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep => {}
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_that_never_completes_times_out_but_a_request_in_flight_does_not() {
        let a = ConnActivity::new();
        assert!(matches!(a.check(0, 1_000_000), Check::HeaderTimeout));
        a.request_started();
        assert!(matches!(a.check(0, 0), Check::Until(_)));
        a.request_finished();
        // Idle keep-alive: no head pending, the header clock is not running.
        assert!(matches!(a.check(0, 1_000_000), Check::Until(_)));
        a.on_read(b"GET / HTTP/1.1\r\n");
        assert!(matches!(a.check(0, 1_000_000), Check::HeaderTimeout));
    }

    #[test]
    fn http2_connections_only_have_the_idle_timeout() {
        let a = ConnActivity::new();
        a.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(matches!(a.check(0, 1_000_000), Check::Until(_)));
        assert!(matches!(a.check(1_000_000, 0), Check::Idle));
    }
}
