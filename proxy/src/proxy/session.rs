//! The client connection a request arrived on (Pingora calls it the session): where the
//! client is, how it reached us, and the activity that the request path records and the
//! server's watchdog reads (header-read and idle timeouts, HTTP/1 framing seen on the wire).

use std::{
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Instant,
};

use super::framing::FramingScanner;

/// The client connection a request arrived on, as the request path and the connection's
/// watchdog both see it.
#[derive(Debug)]
pub(crate) struct Session {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client's IP as a header value (X-Forwarded-For), formatted once per connection.
    pub forwarded_for: http::HeaderValue,
    /// "http" or "https": how the client reached us (X-Forwarded-Proto, redirects).
    pub scheme: &'static str,
    /// What the watchdog reads.
    pub activity: ConnActivity,
}

impl Session {
    /// The session of a connection accepted from `remote`, reached by `scheme`.
    pub(crate) fn new(remote: SocketAddr, scheme: &'static str) -> Self {
        let forwarded_for = http::HeaderValue::try_from(remote.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            remote,
            forwarded_for,
            scheme,
            activity: ConnActivity::new(),
        }
    }
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

pub(crate) enum Check {
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

    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    pub(crate) fn on_read(&self, bytes: &[u8]) {
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

    pub(crate) fn check(&self, header_timeout: u64, idle_timeout: u64) -> Check {
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
