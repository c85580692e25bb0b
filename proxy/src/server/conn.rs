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
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::{
    options::ProxyOptions,
    proxy::{
        Proxy,
        session::{Check, Session},
    },
};

/// A client stream that reports reads to the connection's activity record.
struct TrackedStream<S> {
    inner: S,
    info: Arc<Session>,
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

/// The hyper connection builders of a listener: HTTP/1.1 or HTTP/2 told apart by the
/// connection's first bytes, and HTTP/2 alone for TLS connections that chose h2 by ALPN (which
/// then get HTTP/2's own answer to a bad preface rather than an HTTP/1 400).
pub(crate) struct Builders {
    any: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    pub(crate) fn new(options: &ProxyOptions) -> Self {
        Self {
            any: builder(options),
            h2: builder(options).http2_only(),
        }
    }
}

/// The hyper connection builder for a listener's options.
fn builder(options: &ProxyOptions) -> auto::Builder<TokioExecutor> {
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
    builders: Arc<Builders>,
    h2_only: bool,
    stream: S,
    remote: SocketAddr,
    scheme: &'static str,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(Session::new(remote, scheme));
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
    // hyper-util ignores `http2_only` when serving with upgrades (HTTP/2 has none to serve).
    let conn = if h2_only {
        Served::H2 {
            conn: builders.h2.serve_connection(io, service),
        }
    } else {
        Served::Any {
            conn: builders.any.serve_connection_with_upgrades(io, service),
        }
    };
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

pin_project_lite::pin_project! {
    /// A connection served by either builder.
    #[project = ServedProj]
    enum Served<A, B> {
        Any { #[pin] conn: A },
        H2 { #[pin] conn: B },
    }
}

impl<'a, I, S>
    Served<auto::UpgradeableConnection<'a, I, S, TokioExecutor>, auto::Connection<'a, I, S, TokioExecutor>>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <S::ResBody as hyper::body::Body>::Data: Send,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ServedProj::Any { conn } => conn.graceful_shutdown(),
            ServedProj::H2 { conn } => conn.graceful_shutdown(),
        }
    }
}

impl<A, B, T> std::future::Future for Served<A, B>
where
    A: std::future::Future<Output = T>,
    B: std::future::Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            ServedProj::Any { conn } => conn.poll(cx),
            ServedProj::H2 { conn } => conn.poll(cx),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4).max(1)
}
