//! One client connection: HTTP/1.1 (the proxy's own server, [`crate::http1`]) or HTTP/2
//! with prior knowledge (hyper's) on the same port, with a watchdog that enforces the
//! header-read, idle, request-body and send timeouts, and wakes an HTTP/1 request whose
//! upstream response is due ([`ClientConnection::within`]).
//!
//! The timeouts are the proxy's, for both protocols: hyper has no idle timeout for HTTP/2,
//! and one watchdog per connection is cheaper than timers per read.
//!
//! Memory per connection is kept small because 10,000 idle keep-alive clients are normal for
//! an ingress: the protocol is told apart by the first bytes the HTTP/1 server reads (not by
//! hyper-util's auto builder, whose connection holds both protocols' state), which hands the
//! connection over when they are HTTP/2's preface; HTTP/2's connection is boxed, and between
//! requests an HTTP/1 connection holds no buffer and a pointer, not the request path's
//! state.

use std::{
    convert::Infallible,
    future::{Future, poll_fn},
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll, Waker, ready},
    time::Duration,
};

use bytes::{Buf, Bytes};
use hyper::{body::Incoming, server::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    forward::{
        Proxy,
        body::ProxyBody,
        client::{Check, ClientConnection, ConnActivity, Limits, Transport, millis},
        request_body::ClientBody,
    },
    http1,
    options::ProxyOptions,
    server::{
        drain::Drain,
        socket::ClientTcp,
        watchlist::{self, Watchlist},
    },
};

/// [`watchlist::PUT_OFF_UNDER`] in the watchdog's milliseconds.
const PUT_OFF_UNDER_MILLIS: u64 = watchlist::PUT_OFF_UNDER.as_millis() as u64;

/// A client socket: a TCP stream, or TLS over one.
pub(crate) trait ClientSocket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Turns Nagle's algorithm off: small responses must not wait for an acknowledgement.
    fn set_nodelay(&self);

    /// Whether the client has sent bytes not read yet (they are read and dropped): looks
    /// without waiting, and without arranging to be woken.
    fn has_unread(&mut self) -> bool
    where
        Self: Sized,
    {
        http1::has_unread(self)
    }
}

impl ClientSocket for ClientTcp {
    fn set_nodelay(&self) {
        let _ = ClientTcp::set_nodelay(self);
    }

    fn has_unread(&mut self) -> bool {
        ClientTcp::has_unread(self)
    }
}

impl ClientSocket for tokio_rustls::server::TlsStream<ClientTcp> {
    fn set_nodelay(&self) {
        let _ = self.get_ref().0.set_nodelay();
    }
}

/// When a connection turns Nagle's algorithm off: before its second write. Nagle holds back
/// a small write only while earlier bytes are unacknowledged, so a connection's first write
/// never waits; a connection that answers once and closes (every one of a client without
/// keep-alive) saves the system call, as nginx's `tcp_nodelay` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nagle {
    /// Nothing written yet.
    Unwritten,
    /// Bytes were written with Nagle's algorithm on.
    Written,
    /// Turned off.
    Off,
}

/// A client stream that reports reads to the connection's activity record, turns Nagle's
/// algorithm off before its second write, and gives back first the bytes the HTTP/1 server
/// read before they showed HTTP/2's preface.
struct TrackedStream<S> {
    inner: S,
    client: Arc<ClientConnection>,
    /// Bytes already read (and reported) that hyper has not read yet.
    replay: Option<Bytes>,
    nagle: Nagle,
}

impl<S: AsyncRead + Unpin> TrackedStream<S> {
    fn new(inner: S, client: Arc<ClientConnection>) -> Self {
        // A TLS socket turned Nagle's algorithm off before its handshake.
        let nagle = match client.transport {
            Transport::Plain { .. } => Nagle::Unwritten,
            Transport::Tls { .. } => Nagle::Off,
        };
        Self {
            inner,
            client,
            replay: None,
            nagle,
        }
    }

    fn poll_read_tracked(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && buf.filled().len() > before
        {
            self.client.activity.on_read();
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(bytes) = &mut this.replay {
            let n = buf.remaining().min(bytes.len());
            buf.put_slice(&bytes[..n]);
            bytes.advance(n);
            if bytes.is_empty() {
                this.replay = None;
            }
            return Poll::Ready(Ok(()));
        }
        this.poll_read_tracked(cx, buf)
    }
}

impl<S: ClientSocket> TrackedStream<S> {
    /// Before a write: Nagle's algorithm goes off once something was written.
    fn before_write(&mut self) {
        if self.nagle == Nagle::Written {
            self.inner.set_nodelay();
            self.nagle = Nagle::Off;
        }
    }

    /// Notes whether a write waits for the client to read (the send timeout's clock).
    fn track_write(&mut self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &polled {
            Poll::Pending => self.client.activity.write_blocked(),
            // Only bytes taken count as progress: a flush of a TCP socket is always ready.
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.client.activity.write_done();
                if self.nagle == Nagle::Unwritten {
                    self.nagle = Nagle::Written;
                }
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<S: ClientSocket> http1::server::ClientStream for TrackedStream<S> {
    fn has_unread(&mut self) -> bool {
        self.replay.is_some() || self.inner.has_unread()
    }
}

impl<S: ClientSocket> AsyncWrite for TrackedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track_write(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track_write(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        if polled.is_pending() {
            this.client.activity.write_blocked();
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Told by the first bytes: HTTP/2 with prior knowledge when they are its preface,
    /// HTTP/1.1 otherwise (plain connections, and TLS ones that did not choose h2). The
    /// HTTP/1 server reads them and hands the connection over when they are the preface.
    Sniff,
    /// HTTP/2 (a TLS connection that chose h2 by ALPN, which then gets HTTP/2's own answer
    /// to a bad preface rather than an HTTP/1 400).
    Http2,
}

/// How a listener's connections are served: the HTTP/1 head limits and hyper's HTTP/2
/// connection builder.
pub(crate) struct Builders {
    h1: lockstep_core::http1::HeadLimits,
    h2: http2::Builder<TokioExecutor>,
    /// Where a connection's first wait leaves its waker instead of setting a timer.
    watchlist: Arc<Watchlist>,
}

impl Builders {
    pub(crate) fn new(options: &ProxyOptions) -> Self {
        let h1 = lockstep_core::http1::HeadLimits {
            max_bytes: options.max_header_bytes,
            max_headers: options.max_header_count,
        };
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
            .timer(TokioTimer::new());
        Self {
            h1,
            h2,
            watchlist: Watchlist::start(),
        }
    }
}

/// Serves one accepted connection until it closes, times out, or `drain` starts (then it
/// finishes in-flight requests and closes).
pub(crate) async fn serve<S>(
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    protocol: Protocol,
    stream: S,
    remote: SocketAddr,
    transport: Transport,
    drain: Arc<Drain>,
) where
    S: ClientSocket,
{
    let client = Arc::new(ClientConnection::new(remote, transport, drain).watched());
    let options = proxy.options();
    let limits = Limits {
        header: millis(options.header_read_timeout),
        idle: millis(options.idle_timeout),
        body: millis(options.request_body_timeout),
        send: millis(options.send_timeout),
    };
    let idle_timeout = limits.idle;
    let state = proxy.state().clone();
    let stream = TrackedStream::new(stream, client.clone());
    let service = Service {
        proxy,
        client: client.clone(),
    };
    let mut conn = pin!(connection(builders, stream, service, protocol));
    let mut drained = pin!(
        client
            .drain()
            .until_started(|| client.activity.waits_for_request())
    );
    let mut alarm = pin!(Alarm::default());
    let mut first_wait = true;
    let mut closing = false;
    // Once closing for idleness, a peer that does not finish closing in another idle period
    // is cut off.
    let mut give_up_at: Option<u64> = None;
    let ended = poll_fn(|cx| {
        loop {
            // The connection first: it is what wakes the task almost every time.
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if !closing && drained.as_mut().poll(cx).is_ready() {
                conn.as_mut().graceful_shutdown();
                closing = true;
                continue;
            }
            if alarm.is_armed(cx, &client.activity) {
                return Poll::Pending;
            }
            let now = client.activity.now();
            let wake = match client.activity.check(limits) {
                Check::Until(at) => at,
                Check::HeaderTimeout => {
                    tracing::debug!(client = %remote, "request head not received in time; closing");
                    state.metrics.client_timeout("head");
                    return Poll::Ready(Ok(()));
                }
                Check::BodyTimeout => {
                    tracing::debug!(client = %remote, "request body stalled; closing");
                    state.metrics.client_timeout("request_body");
                    return Poll::Ready(Ok(()));
                }
                Check::SendTimeout => {
                    tracing::debug!(client = %remote, "client reads nothing of its response; closing");
                    state.metrics.client_timeout("send");
                    return Poll::Ready(Ok(()));
                }
                Check::Idle => match give_up_at {
                    Some(at) if now >= at => return Poll::Ready(Ok(())),
                    Some(at) => at,
                    None => {
                        tracing::debug!(client = %remote, "idle; closing");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        give_up_at = Some(now + idle_timeout);
                        continue;
                    }
                },
            };
            // Most connections end before anything could time out: the first wait, with
            // nothing due within a second, is woken a tick later to set the timer instead of
            // setting it now (watchlist.rs).
            if std::mem::take(&mut first_wait) && wake.saturating_sub(now) >= PUT_OFF_UNDER_MILLIS {
                conn.as_ref().get_ref().builders.watchlist.wake_later(cx.waker());
                return Poll::Pending;
            }
            if alarm.as_mut().arm(cx, wake, now).is_pending() {
                return Poll::Pending;
            }
        }
    })
    .await;
    if let Err(error) = ended {
        tracing::debug!(client = %remote, %error, "connection ended with an error");
    }
}

pin_project_lite::pin_project! {
    /// The watchdog's timer: armed for the next moment one of the connection's timeouts
    /// could pass, and looked at again only when it fires, when the task's waker changes, or
    /// when the request path publishes an upstream response deadline earlier than it.
    ///
    /// Polling a registered tokio `Sleep` costs about 120 instructions (its task budget and
    /// waker checks), and a keep-alive request's task is woken about twice: reading these
    /// fields instead took about 200 instructions off each request (`instructions.sh`).
    #[derive(Default)]
    struct Alarm {
        // Made when first armed, reset after that (which moves a later deadline without
        // taking the timer wheel's lock).
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        // When it fires, in the watchdog's milliseconds (`ConnActivity::now`).
        at: u64,
        // The waker it was last polled with.
        waker: Option<Waker>,
    }
}

impl Alarm {
    /// Whether the timer is set and will wake this task before anything can time out.
    fn is_armed(&self, cx: &Context<'_>, activity: &ConnActivity) -> bool {
        self.sleep.as_ref().is_some_and(|sleep| !sleep.is_elapsed())
            && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
            && !activity.response_due_before(self.at)
    }

    /// Sets the timer for `at`, `now` being the watchdog's time; ready when it fired at once.
    fn arm(self: Pin<&mut Self>, cx: &mut Context<'_>, at: u64, now: u64) -> Poll<()> {
        let mut this = self.project();
        let after = Duration::from_millis(at.saturating_sub(now).min(3_600_000));
        let deadline = tokio::time::Instant::now() + after;
        match this.sleep.as_mut().as_pin_mut() {
            Some(sleep) => sleep.reset(deadline),
            None => this.sleep.set(Some(tokio::time::sleep_until(deadline))),
        }
        *this.at = at;
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Ready(());
        };
        if sleep.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *this.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The request path as hyper's service, for one HTTP/2 connection.
#[derive(Clone)]
struct Service {
    proxy: Arc<Proxy>,
    client: Arc<ClientConnection>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<hyper::Response<ProxyBody>, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = hyper::Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: hyper::Request<Incoming>) -> ResponseFuture {
        let proxy = self.proxy.clone();
        let client = self.client.clone();
        // Boxed per request: hyper keeps room for one request future in every connection for
        // its whole life, so unboxed, each idle connection would hold the request path's
        // state (about 8 KB) for nothing.
        let (head, body) = req.into_parts();
        Box::pin(futures::FutureExt::map(
            proxy.handle(client, Box::new(head), ClientBody::Http2(body)),
            Ok,
        ))
    }
}

type Io<S> = TokioIo<TrackedStream<S>>;

/// How the HTTP/1 server's future ends.
type Http1Ended<S> = io::Result<http1::server::Ended<TrackedStream<S>>>;

pin_project_lite::pin_project! {
    /// One client connection: HTTP/1 until its first bytes show HTTP/2's preface, or HTTP/2
    /// from the start when TLS chose it. The HTTP/1 server's future is held in place (the
    /// connection's whole future is boxed once, when its task starts); HTTP/2's is boxed, so
    /// an HTTP/1 connection carries only a pointer's room for it. A second box for the HTTP/1
    /// future cost every new connection an allocation and a copy of that future (about 150
    /// instructions, `instructions.sh` MODE=new).
    struct Connection<S, H> {
        builders: Arc<Builders>,
        #[pin]
        state: State<S, H>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<S, H> {
        Http1 {
            #[pin]
            conn: H,
            client: Arc<ClientConnection>,
        },
        Http2 {
            conn: Pin<Box<http2::Connection<Io<S>, Service, TokioExecutor>>>,
        },
    }
}

/// The connection served in `protocol` (told by its first bytes when `Sniff`).
fn connection<S>(
    builders: Arc<Builders>,
    stream: TrackedStream<S>,
    service: Service,
    protocol: Protocol,
) -> Connection<S, impl Future<Output = Http1Ended<S>> + Send>
where
    S: ClientSocket,
{
    let state = match protocol {
        Protocol::Http2 => State::Http2 {
            conn: serve_http2(&builders, stream, service),
        },
        Protocol::Sniff => State::Http1 {
            client: service.client.clone(),
            conn: http1::server::serve(stream, service.proxy, service.client, builders.h1, true),
        },
    };
    Connection { builders, state }
}

fn serve_http2<S>(
    builders: &Builders,
    stream: TrackedStream<S>,
    service: Service,
) -> Pin<Box<http2::Connection<Io<S>, Service, TokioExecutor>>>
where
    S: ClientSocket,
{
    service.client.activity.speaks_http2();
    Box::pin(builders.h2.serve_connection(TokioIo::new(stream), service))
}

impl<S, H> Connection<S, H>
where
    S: ClientSocket,
{
    /// Lets in-flight requests finish and then closes (at once when none has started).
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project().state.project() {
            StateProjection::Http1 { client, .. } => client.close_after_response(),
            StateProjection::Http2 { conn } => conn.as_mut().graceful_shutdown(),
        }
    }
}

impl<S, H> Future for Connection<S, H>
where
    S: ClientSocket,
    H: Future<Output = Http1Ended<S>>,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProjection::Http1 { conn, .. } => match ready!(conn.poll(cx))? {
                    http1::server::Ended::Closed => return Poll::Ready(Ok(())),
                    http1::server::Ended::Http2 {
                        mut io,
                        read,
                        proxy,
                        client,
                    } => {
                        io.replay = Some(read);
                        let conn = serve_http2(this.builders, io, Service { proxy, client });
                        this.state.set(State::Http2 { conn });
                    }
                },
                StateProjection::Http2 { conn } => return conn.as_mut().poll(cx).map_err(Into::into),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    thread_local! {
        /// How often Nagle's algorithm was turned off on this thread's in-memory sockets.
        static NODELAY_CALLS: Cell<usize> = const { Cell::new(0) };
    }

    /// An in-memory socket stands in for a TCP one, counting the calls.
    impl ClientSocket for DuplexStream {
        fn set_nodelay(&self) {
            NODELAY_CALLS.with(|calls| calls.set(calls.get() + 1));
        }
    }

    fn calls() -> usize {
        NODELAY_CALLS.with(Cell::get)
    }

    fn tracked(transport: Transport) -> (TrackedStream<DuplexStream>, DuplexStream) {
        let (io, peer) = tokio::io::duplex(1024);
        let client = Arc::new(ClientConnection::new(
            "127.0.0.1:1".parse().expect("addr"),
            transport,
            Arc::default(),
        ));
        (TrackedStream::new(io, client), peer)
    }

    /// Nagle's algorithm goes off once, before a plain connection's second write: its first
    /// write cannot be held back (nothing is unacknowledged yet), so a connection that answers
    /// once and closes never makes the call.
    #[tokio::test]
    async fn nagle_goes_off_before_a_plain_connection_s_second_write() {
        let (mut stream, mut peer) = tracked(Transport::Plain { scheme: "http" });
        let before = calls();
        stream.flush().await.expect("flush");
        stream.write_all(b"first").await.expect("write");
        assert_eq!(calls() - before, 0, "after the first write");
        stream.write_all(b"second").await.expect("write");
        assert_eq!(calls() - before, 1, "before the second write");
        stream.write_all(b"third").await.expect("write");
        assert_eq!(calls() - before, 1, "turned off once");
        let mut got = [0u8; 16];
        peer.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"firstsecondthird");
    }

    /// A TLS socket turned it off before its handshake: no call of its own.
    #[tokio::test]
    async fn a_tls_connection_does_not_turn_nagle_off_again() {
        let (mut stream, _peer) = tracked(Transport::Tls { server_name: None });
        let before = calls();
        stream.write_all(b"first").await.expect("write");
        stream.write_all(b"second").await.expect("write");
        assert_eq!(calls() - before, 0);
    }

    /// The watchdog's timer is looked at again when it fires, when an upstream response
    /// comes due before it, and when the task's waker is another; otherwise it stands.
    #[tokio::test]
    async fn the_alarm_stands_until_it_fires_or_a_deadline_comes_before_it() {
        let client = ClientConnection::plain_for_tests().watched();
        let activity = &client.activity;
        let mut alarm = std::pin::pin!(Alarm::default());
        poll_fn(|cx| {
            assert!(!alarm.is_armed(cx, activity), "never set");
            let now = activity.now();
            assert!(alarm.as_mut().arm(cx, now + 10_000, now).is_pending());
            assert!(alarm.is_armed(cx, activity));
            let other = futures::task::noop_waker();
            assert!(
                !alarm.is_armed(&Context::from_waker(&other), activity),
                "another waker"
            );
            // An upstream exchange whose response is due in 300 ms.
            activity.request_started();
            let exchange = client.within(Duration::from_millis(300), std::future::pending::<()>());
            assert!(!alarm.is_armed(cx, activity), "a response due first");
            drop(exchange);
            assert!(alarm.is_armed(cx, activity));
            assert!(alarm.as_mut().arm(cx, now + 20, now).is_pending());
            Poll::Ready(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        poll_fn(|cx| {
            assert!(!alarm.is_armed(cx, activity), "fired");
            Poll::Ready(())
        })
        .await;
    }
}
