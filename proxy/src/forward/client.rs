//! The client connection a request arrived on (one per connection, shared by its requests): where the
//! client is, how it reached us, and the activity that the request path records and the
//! server's watchdog reads (header-read, idle, body and send timeouts).

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use crate::{clock::CoarseInstant, server::drain::Drain};

/// The client connection a request arrived on, as the request path and the connection's
/// watchdog both see it.
#[derive(Debug)]
pub(crate) struct ClientConnection {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client's IP as a header value (X-Forwarded-For), formatted once per connection.
    pub forwarded_for: http::HeaderValue,
    /// "http" or "https": how the client reached us (X-Forwarded-Proto, redirects).
    pub scheme: &'static str,
    /// Whether the proxy terminated TLS on it, and the SNI name the client sent.
    pub transport: Transport,
    /// What the watchdog reads.
    pub activity: ConnActivity,
    /// The server asked the connection to close once the response in flight (if any) is
    /// sent: it idled too long, or its drain woke it while it waited for a request.
    closing: AtomicBool,
    /// The drain of the listener it came from, which a connection with a request in flight
    /// reads when that request is done.
    drain: Arc<Drain>,
    /// A watchdog serves the connection ([`crate::server::conn`]): it wakes the connection's
    /// task for the earliest of its deadlines, an upstream response's included.
    watched: bool,
}

impl ClientConnection {
    /// The connection accepted from `remote` over `transport` by a listener that `drain`
    /// drains.
    pub(crate) fn new(remote: SocketAddr, transport: Transport, drain: Arc<Drain>) -> Self {
        let forwarded_for = ip_header_value(remote.ip());
        Self {
            remote,
            forwarded_for,
            scheme: transport.scheme(),
            transport,
            activity: ConnActivity::new(),
            closing: AtomicBool::new(false),
            drain,
            watched: false,
        }
    }

    /// The same connection, served by a watchdog that keeps its upstream response deadlines
    /// too (see [`ClientConnection::within`]).
    pub(crate) fn watched(self) -> Self {
        Self {
            watched: true,
            ..self
        }
    }

    /// Awaits `exchange` (an upstream exchange, up to its response head) for at most
    /// `timeout`; `None` when it took longer.
    ///
    /// On a watched HTTP/1 connection the deadline is the watchdog's to keep: the request
    /// runs in the connection's own task, which the watchdog's timer wakes at the earliest of
    /// the connection's deadlines, and the exchange reads the coarse clock each time it is
    /// polled. A timer of its own (tokio's `timeout`, registered in tokio's timer wheel and
    /// removed again, the response coming long before it) cost each keep-alive request about
    /// 400 instructions more (`e2e/bench/instructions.sh`). An HTTP/2 stream runs in a task
    /// of its own (hyper spawns one per stream), which the watchdog cannot wake: it keeps a
    /// timer, as does a connection no watchdog serves.
    pub(crate) fn within<F: Future>(&self, timeout: Duration, exchange: F) -> Within<'_, F> {
        if !self.watched || self.activity.http2.load(Ordering::Relaxed) {
            return Within::Timed {
                timeout: tokio::time::timeout(timeout, exchange),
            };
        }
        let due = self.activity.now().saturating_add(millis(timeout));
        Within::Watched {
            exchange,
            due: ResponseDue::publish(&self.activity, due),
        }
    }

    /// Asks the connection to close once the response in flight (if any) is sent.
    pub(crate) fn close_after_response(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Whether the connection is to close after the response in flight: it was asked to, or
    /// its listener drains.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed) || self.drain.started()
    }

    /// The drain of the listener the connection came from.
    pub(crate) fn drain(&self) -> &Drain {
        &self.drain
    }
}

#[cfg(test)]
impl ClientConnection {
    /// A plain HTTP client at 127.0.0.1:1, of a listener that never drains: what the
    /// request path's and the servers' unit tests run their requests for.
    pub(crate) fn plain_for_tests() -> Self {
        Self::new(
            ([127, 0, 0, 1], 1).into(),
            Transport::Plain { scheme: "http" },
            Arc::default(),
        )
    }
}

/// A timeout in the watchdog's milliseconds: padded by the most a coarse reading lags, so
/// that it never passes before its time (`clock.rs`), and so never zero ("none": the lag
/// counts at least the millisecond a reading drops).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX / 4)
        .saturating_add(crate::clock::max_lag_millis())
}

pin_project_lite::pin_project! {
    /// An upstream exchange bounded by a response timeout ([`ClientConnection::within`]).
    #[project = WithinProjection]
    pub(crate) enum Within<'a, F> {
        /// Its deadline kept by the connection's watchdog.
        Watched {
            #[pin]
            exchange: F,
            due: ResponseDue<'a>,
        },
        /// Its deadline kept by a timer of its own.
        Timed {
            #[pin]
            timeout: tokio::time::Timeout<F>,
        },
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WithinProjection::Watched { exchange, due } => match exchange.poll(cx) {
                Poll::Ready(output) => Poll::Ready(Some(output)),
                Poll::Pending if due.passed() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            WithinProjection::Timed { timeout } => timeout.poll(cx).map(Result::ok),
        }
    }
}

/// An upstream response deadline, published for the connection's watchdog while it lives.
pub(crate) struct ResponseDue<'a> {
    activity: &'a ConnActivity,
    due: u64,
}

impl<'a> ResponseDue<'a> {
    fn publish(activity: &'a ConnActivity, due: u64) -> Self {
        activity.response_due.store(due, Ordering::Relaxed);
        Self { activity, due }
    }

    fn passed(&self) -> bool {
        self.activity.now() >= self.due
    }
}

impl Drop for ResponseDue<'_> {
    fn drop(&mut self) {
        self.activity.response_due.store(0, Ordering::Relaxed);
    }
}

/// An IP address as a header value, as `Display` writes it. An IPv4 address is written
/// digit by digit: through `fmt` it cost about 1,400 instructions, a tenth of what the rest
/// of a new connection's setup costs.
fn ip_header_value(ip: IpAddr) -> http::HeaderValue {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            http::HeaderValue::from_bytes(&buf[..n]).expect("digits and dots are a valid header value")
        }
        IpAddr::V6(v6) => {
            http::HeaderValue::try_from(v6.to_string()).expect("an IP address is a valid header value")
        }
    }
}

/// How a client connection reached the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plain TCP; `scheme` is what the client used ("https" behind a TLS-terminating load
    /// balancer, `--scheme`).
    Plain {
        /// "http" or "https".
        scheme: &'static str,
    },
    /// TLS terminated by the proxy.
    Tls {
        /// The SNI name of the handshake, which chose the certificate (None: the client sent
        /// none).
        server_name: Option<Box<str>>,
    },
}

impl Transport {
    /// The scheme the client used.
    pub(crate) fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain { scheme } => scheme,
            Transport::Tls { .. } => "https",
        }
    }
}

/// Timestamps (milliseconds since the connection was accepted, plus one so that zero can
/// mean "none") and counters written by the IO wrapper and the request path. The clock is the
/// coarse one: the timestamps are only compared against the timeouts.
#[derive(Debug)]
pub(crate) struct ConnActivity {
    origin: CoarseInstant,
    in_flight: AtomicU32,
    last_read: AtomicU64,
    /// When the client started a request head that has not been dispatched yet.
    head_since: AtomicU64,
    http2: AtomicBool,
    /// Since when a write to the client has been waiting for the client to read (0: none).
    write_blocked_since: AtomicU64,
    /// Request bodies the proxy is waiting for bytes of.
    bodies_waiting: AtomicU32,
    /// When the upstream response the connection's request waits for is due (0: none), on
    /// a watched HTTP/1 connection ([`ClientConnection::within`]).
    response_due: AtomicU64,
}

/// What the watchdog found.
pub(crate) enum Check {
    /// Look again at this many milliseconds.
    Until(u64),
    /// A request head was started and not finished within the header-read timeout.
    HeaderTimeout,
    /// The proxy waits for a request body and the client sent nothing for the body timeout.
    BodyTimeout,
    /// A write to the client has waited for the client to read for the send timeout.
    SendTimeout,
    /// Nothing in flight and nothing received for the idle timeout.
    Idle,
}

/// The watchdog's timeouts, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header: u64,
    pub idle: u64,
    pub body: u64,
    pub send: u64,
}

impl ConnActivity {
    fn new() -> Self {
        Self {
            origin: CoarseInstant::now(),
            in_flight: AtomicU32::new(0),
            last_read: AtomicU64::new(1),
            // A new connection owes a request head from the start: a client that connects
            // and sends nothing is a slowloris too.
            head_since: AtomicU64::new(1),
            http2: AtomicBool::new(false),
            write_blocked_since: AtomicU64::new(0),
            bodies_waiting: AtomicU32::new(0),
            response_due: AtomicU64::new(0),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.origin.millis_elapsed().saturating_add(1)
    }

    pub(crate) fn on_read(&self) {
        let now = self.now();
        self.last_read.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    /// The connection speaks HTTP/2, as its whole preface (or TLS ALPN) showed. Only then:
    /// a first read of `P` alone is also the start of an HTTP/1 `POST`, and a head sent a
    /// byte at a time must stay under the head timeout.
    pub(crate) fn speaks_http2(&self) {
        // HTTP/2 sends heads as frames of a long-lived connection; hyper and h2 bound
        // those, only the idle timeout applies.
        self.http2.store(true, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
    }

    /// Whether a drain must wake the connection to close it: it has no HTTP/1 request in
    /// flight (one that has reads the drain when it is done), or it speaks HTTP/2 (whose
    /// streams hyper ends with a GOAWAY when told).
    pub(crate) fn waits_for_request(&self) -> bool {
        self.http2.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// A request head was parsed and handed to the proxy.
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
    }

    /// A response was sent in full (or abandoned).
    pub(crate) fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        // Idle time starts now, not at the last byte the client sent.
        self.last_read.store(self.now(), Ordering::Relaxed);
    }

    /// A write to the client could not go on until the client reads.
    pub(crate) fn write_blocked(&self) {
        if self.write_blocked_since.load(Ordering::Relaxed) == 0 {
            self.write_blocked_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// A write to the client went through.
    pub(crate) fn write_done(&self) {
        if self.write_blocked_since.load(Ordering::Relaxed) != 0 {
            self.write_blocked_since.store(0, Ordering::Relaxed);
        }
    }

    /// The proxy started waiting for bytes of a request body.
    pub(crate) fn body_wait_started(&self) {
        self.bodies_waiting.fetch_add(1, Ordering::Relaxed);
    }

    /// The proxy stopped waiting for bytes of a request body (they came, or it gave up).
    pub(crate) fn body_wait_ended(&self) {
        self.bodies_waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether an upstream response is due before `at` (watchdog milliseconds): a watchdog
    /// armed for `at` must look again sooner.
    pub(crate) fn response_due_before(&self, at: u64) -> bool {
        let due = self.response_due.load(Ordering::Relaxed);
        due != 0 && due < at
    }

    pub(crate) fn check(&self, limits: Limits) -> Check {
        let Limits {
            header: header_timeout,
            idle: idle_timeout,
            body: body_timeout,
            send: send_timeout,
        } = limits;
        let now = self.now();
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 && now >= blocked + send_timeout {
            return Check::SendTimeout;
        }
        let last = self.last_read.load(Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // Looked at often enough to catch any of the timeouts that apply meanwhile.
            let mut next = now
                + header_timeout
                    .min(idle_timeout)
                    .min(body_timeout)
                    .min(send_timeout);
            if self.bodies_waiting.load(Ordering::Relaxed) > 0 {
                if now >= last + body_timeout {
                    return Check::BodyTimeout;
                }
                next = next.min(last + body_timeout);
            }
            if blocked != 0 {
                next = next.min(blocked + send_timeout);
            }
            let due = self.response_due.load(Ordering::Relaxed);
            if due != 0 {
                // The request path ends the exchange itself when it is polled after `due`;
                // the watchdog only wakes it (again a millisecond later, while the coarse
                // clock has not reached `due` yet).
                next = next.min(due.max(now + 1));
            }
            return Check::Until(next);
        }
        let http2 = self.http2.load(Ordering::Relaxed);
        let head = self.head_since.load(Ordering::Relaxed);
        if !http2 && head != 0 && now >= head + header_timeout {
            return Check::HeaderTimeout;
        }
        if now >= last + idle_timeout {
            return Check::Idle;
        }
        // A request may start at any moment, and its body or response stall: look again
        // soon enough to catch those timeouts too.
        let mut next = (last + idle_timeout).min(now + body_timeout.min(send_timeout));
        if blocked != 0 {
            next = next.min(blocked + send_timeout);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_is_written_as_display_writes_it() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "127.0.0.1",
            "192.168.20.199",
            "::1",
            "::ffff:10.1.2.3",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().expect("an IP");
            assert_eq!(ip_header_value(ip), ip.to_string().as_str(), "{ip}");
        }
    }

    const LONG: u64 = 1_000_000;

    fn limits(header: u64, idle: u64) -> Limits {
        Limits {
            header,
            idle,
            body: LONG,
            send: LONG,
        }
    }

    #[test]
    fn a_head_that_never_completes_times_out_but_a_request_in_flight_does_not() {
        let a = ConnActivity::new();
        assert!(matches!(a.check(limits(0, LONG)), Check::HeaderTimeout));
        a.request_started();
        assert!(matches!(a.check(limits(0, 0)), Check::Until(_)));
        a.request_finished();
        // Idle keep-alive: no head pending, the header clock is not running.
        assert!(matches!(a.check(limits(0, LONG)), Check::Until(_)));
        a.on_read();
        assert!(matches!(a.check(limits(0, LONG)), Check::HeaderTimeout));
    }

    #[test]
    fn http2_connections_only_have_the_idle_timeout() {
        let a = ConnActivity::new();
        a.on_read();
        a.speaks_http2();
        assert!(matches!(a.check(limits(0, LONG)), Check::Until(_)));
        assert!(matches!(a.check(limits(LONG, 0)), Check::Idle));
    }

    #[test]
    fn a_request_in_flight_is_cut_only_for_its_body_or_an_unread_response() {
        let a = ConnActivity::new();
        a.request_started();
        let strict = Limits {
            header: LONG,
            idle: LONG,
            body: 0,
            send: 0,
        };
        assert!(matches!(a.check(strict), Check::Until(_)));
        a.body_wait_started();
        assert!(matches!(a.check(strict), Check::BodyTimeout));
        a.body_wait_ended();
        a.write_blocked();
        assert!(matches!(a.check(strict), Check::SendTimeout));
        a.write_done();
        assert!(matches!(a.check(strict), Check::Until(_)));
    }

    /// A configured timeout never passes before its time, though the coarse clock's readings
    /// lag the true time by up to a tick: a backend that answers in 298 ms under a 300 ms
    /// limit gets its answer through. Measured with the precise clock, over several starts
    /// (each lands somewhere else within a tick).
    #[test]
    fn a_watched_exchange_never_ends_before_its_timeout() {
        let client = ClientConnection::plain_for_tests().watched();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let timeout = Duration::from_millis(20);
        for _ in 0..12 {
            let start = std::time::Instant::now();
            let mut exchange = std::pin::pin!(client.within(timeout, std::future::pending::<()>()));
            while exchange.as_mut().poll(&mut cx).is_pending() {
                std::thread::sleep(Duration::from_micros(200));
            }
            let took = start.elapsed();
            assert!(took >= timeout, "ended after {took:?} of {timeout:?}");
        }
    }

    /// The watchdog's own timeouts, in the same milliseconds, do not pass early either.
    #[test]
    fn an_idle_timeout_never_passes_before_its_time() {
        let timeout = Duration::from_millis(20);
        let limit = millis(timeout);
        for _ in 0..12 {
            let start = std::time::Instant::now();
            let a = ConnActivity::new();
            a.request_started();
            a.request_finished();
            while !matches!(a.check(limits(LONG, limit)), Check::Idle) {
                std::thread::sleep(Duration::from_micros(200));
            }
            let took = start.elapsed();
            assert!(took >= timeout, "idle after {took:?} of {timeout:?}");
        }
    }

    /// On a watched HTTP/1 connection an upstream exchange's deadline is the watchdog's: it
    /// looks again by the deadline at the latest while the exchange waits, and no sooner once
    /// the exchange is over.
    #[test]
    fn a_watched_exchange_hands_its_deadline_to_the_watchdog() {
        let client = ClientConnection::plain_for_tests().watched();
        client.activity.request_started();
        let relaxed = Limits {
            header: LONG,
            idle: LONG,
            body: LONG,
            send: LONG,
        };
        let wake = |client: &ClientConnection| match client.activity.check(relaxed) {
            Check::Until(at) => at,
            _ => panic!("nothing times out here"),
        };
        let unbounded = wake(&client);
        let exchange = client.within(Duration::from_millis(300), std::future::pending::<()>());
        assert!(matches!(exchange, Within::Watched { .. }));
        let bounded = wake(&client);
        assert!(bounded < unbounded, "{bounded} not before {unbounded}");
        assert!(
            bounded <= client.activity.now() + millis(Duration::from_millis(300)),
            "{bounded}"
        );
        assert!(client.activity.response_due_before(unbounded));
        drop(exchange);
        assert!(!client.activity.response_due_before(u64::MAX));
        assert!(wake(&client) >= unbounded);
    }

    /// A connection no watchdog serves, and an HTTP/2 one (whose streams run in tasks of their
    /// own), time an exchange out with a timer of its own.
    #[tokio::test]
    async fn an_unwatched_or_http2_exchange_times_out_by_itself() {
        let unwatched = ClientConnection::plain_for_tests();
        let http2 = ClientConnection::plain_for_tests().watched();
        http2.activity.speaks_http2();
        for client in [&unwatched, &http2] {
            let exchange = client.within(Duration::from_millis(20), std::future::pending::<()>());
            assert!(matches!(exchange, Within::Timed { .. }));
            assert!(!client.activity.response_due_before(u64::MAX));
            assert_eq!(exchange.await, None);
        }
        let answered = unwatched.within(Duration::from_secs(60), async { 7 }).await;
        assert_eq!(answered, Some(7));
    }

    /// A watched exchange that answers is not cut short, and one polled after its deadline
    /// ends without waiting for its answer.
    #[tokio::test]
    async fn a_watched_exchange_ends_when_polled_after_its_deadline() {
        let client = ClientConnection::plain_for_tests().watched();
        assert_eq!(client.within(Duration::from_secs(60), async { 7 }).await, Some(7));
        let mut exchange =
            std::pin::pin!(client.within(Duration::from_millis(200), std::future::pending::<()>()));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(exchange.as_mut().poll(&mut cx), Poll::Pending);
        // Past the deadline by more than a tick of the coarse clock (4 ms at HZ=250).
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(exchange.as_mut().poll(&mut cx), Poll::Ready(None));
    }
}
