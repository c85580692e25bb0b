//! Tunables of the data plane. The defaults are safe for an internet-facing ingress; the
//! binary exposes each as a flag.

use std::time::Duration;

/// How a Service backend's endpoint is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LoadBalancing {
    /// Power of two choices: of two random endpoints, the one with fewer requests in flight.
    #[default]
    P2c,
    /// Each endpoint in turn.
    RoundRobin,
}

/// Limits, timeouts and behaviour of one proxy listener and its upstream client.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Longest time a client may take to send a complete HTTP/1 request head once it has
    /// started one (slowloris protection).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// A connection whose request body the proxy is waiting for, and that has sent nothing
    /// for this long, is closed (nginx's `client_body_timeout`).
    pub request_body_timeout: Duration,
    /// A connection the proxy has been unable to write anything to for this long (the
    /// client reads nothing) is closed (nginx's `send_timeout`).
    pub send_timeout: Duration,
    /// An upgraded connection (WebSocket) that carried no byte either way for this long is
    /// closed (HAProxy's `timeout tunnel`).
    pub tunnel_idle_timeout: Duration,
    /// Most client connections open at once on one listener; connections accepted above it
    /// are closed at once. 0: no limit.
    pub max_client_connections: usize,
    /// Largest HTTP/1 request head, and largest HTTP/2 header list, in bytes (431 above).
    /// HTTP/1 values below 8192 are raised to 8192, hyper's smallest read buffer.
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request (431 above).
    pub max_header_count: usize,
    /// Longest wait for a TCP connection to an upstream (504 after).
    pub connect_timeout: Duration,
    /// Longest wait for an upstream's response head once the request is sent (504 after).
    pub response_timeout: Duration,
    /// Idle pooled upstream connections are closed after this long; keep it below the
    /// backends' own keep-alive timeout so the proxy never reuses a connection they close.
    pub upstream_idle_timeout: Duration,
    /// Endpoint choice for Service backends.
    pub load_balancing: LoadBalancing,
    /// Log one line per request (target `access`).
    pub access_log: bool,
    /// Value of X-Forwarded-Proto: "http", or "https" on a TLS listener.
    pub scheme: &'static str,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(3600),
            max_client_connections: 50_000,
            max_header_bytes: 32 * 1024,
            max_header_count: 100,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(30),
            load_balancing: LoadBalancing::P2c,
            access_log: false,
            scheme: "http",
        }
    }
}
