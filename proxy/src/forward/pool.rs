//! Upstream connections, kept per upstream address for reuse, on hyper's connection-level
//! client (`hyper::client::conn`) rather than hyper-util's pooled client. A request goes
//! straight to its connection's dispatcher: no per-request channel to a pool task, no task
//! spawned per request to put the connection back (the response body puts it back as it
//! ends), no pool checkout future.
//!
//! - HTTP/1.1: idle connections are reused last-in first-out, so the warmest ones are used
//!   and the coldest age out; at most [`MAX_IDLE_PER_UPSTREAM`] wait per upstream (nginx's
//!   `keepalive 128`), idle ones close after the upstream idle timeout. A connection goes
//!   back only after its response body was read to the end, and never after a protocol
//!   switch or a `Connection: close`.
//! - h2c (and h2 over TLS): one multiplexed connection per upstream, replaced when it closes.
//! - TLS ([`super::tls`]): connections are kept per upstream address *and* TLS setting, so
//!   one verified for one backend's names and CAs never carries another backend's request.
//! - A connect failure drops that upstream's idle connections: they most likely point at a
//!   process that is gone, and each would cost a failed request to find out.
//!
//! A request that a pooled connection could not even start to send (the upstream closed it
//! while it sat idle) is sent again on another connection; hyper hands such requests back
//! unsent, so this never repeats anything the upstream saw.

use std::{
    collections::{HashMap, VecDeque},
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, Weak, atomic::AtomicBool},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use lockstep_crds::BackendTls;

use crate::certs::ClientCert;

use super::{
    peer::PeerAuthority,
    request_body::{self, RequestBody},
    tls::{TlsCache, UpstreamTls},
};
use crate::options::ProxyOptions;

/// Idle HTTP/1 connections kept per upstream; a burst opens as many as it needs, but keeping
/// all of them afterwards costs memory for nothing.
pub(crate) const MAX_IDLE_PER_UPSTREAM: usize = 128;

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (`TimedOut` when the connect timeout passed).
    Connect(io::Error),
    /// The TLS handshake with the upstream failed (its certificate not verified, most
    /// likely), or the backend's TLS setting is unusable.
    Tls(String),
    /// The connection failed after the request was (or may have been) sent.
    Upstream(hyper::Error),
}

/// Where pooled connections go: an address, and the TLS setting they were made with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    authority: PeerAuthority,
    tls: Option<Arc<UpstreamTls>>,
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

#[derive(Default)]
struct Conns {
    /// HTTP/1 idle connections per upstream, most recently used last.
    idle: HashMap<PoolKey, VecDeque<Idle>>,
    h2: HashMap<PoolKey, http2::SendRequest<RequestBody>>,
    reaper: bool,
}

/// The upstream connections of one [`super::Proxy`].
pub(crate) struct Pool {
    conns: Mutex<Conns>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    tls: TlsCache,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(options: &ProxyOptions) -> Arc<Self> {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        Arc::new(Self {
            conns: Mutex::default(),
            connect_timeout: options.connect_timeout,
            idle_timeout: options.upstream_idle_timeout,
            h1: http1::Builder::new(),
            h2,
            tls: TlsCache::default(),
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        // Every step under the lock leaves the maps consistent.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` to `peer` over a pooled or new connection, in HTTP/2 when `h2` (h2c, or
    /// h2 by ALPN over TLS), over TLS verified as `tls` says when it is set, presenting
    /// `client` when the upstream asks for a certificate. The response body puts an HTTP/1
    /// connection back when it ends.
    pub(crate) async fn send(
        self: &Arc<Self>,
        peer: &PeerAuthority,
        h2c: bool,
        tls: Option<&BackendTls>,
        client: Option<&ClientCert>,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let tls = match tls {
            Some(tls) => Some(self.tls.get(tls, h2c, client).map_err(SendError::Tls)?),
            None => None,
        };
        let key = PoolKey {
            authority: peer.clone(),
            tls,
        };
        let peer = &key;
        // The rarer paths (an h2c upstream, a new connection) are boxed: inline, every
        // request's future would carry room for their state (about 2 KB), and moving and
        // allocating it is part of each request's cost.
        if h2c {
            return Box::pin(self.send_h2(peer, req)).await;
        }
        let mut req = req;
        // Pooled connections first; each may turn out closed, and then the request, handed
        // back unsent, goes to the next one, or at last to a new connection.
        loop {
            let (mut sender, fresh) = match self.checkout(peer) {
                Some(sender) => (sender, false),
                None => (Box::pin(self.connect_h1(peer)).await?, true),
            };
            if !sender.is_ready()
                && let Err(error) = sender.ready().await
            {
                if fresh {
                    return Err(SendError::Upstream(error));
                }
                continue;
            }
            let sent = req.body().sent_flag();
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(self.checkin_on_end(peer, sender, response, sent)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(SendError::Upstream(error.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection to `peer` that is still open and not too old.
    fn checkout(&self, peer: &PoolKey) -> Option<http1::SendRequest<RequestBody>> {
        let mut conns = self.conns();
        let idle = conns.idle.get_mut(peer)?;
        while let Some(conn) = idle.pop_back() {
            if !conn.sender.is_closed() && conn.since.elapsed() < self.idle_timeout {
                return Some(conn.sender);
            }
        }
        None
    }

    fn checkin_on_end(
        self: &Arc<Self>,
        peer: &PoolKey,
        sender: http1::SendRequest<RequestBody>,
        response: Response<Incoming>,
        request_sent: Option<Arc<AtomicBool>>,
    ) -> Response<UpstreamBody> {
        let reusable = response.status() != http::StatusCode::SWITCHING_PROTOCOLS
            && !response
                .headers()
                .get_all(header::CONNECTION)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let conn = reusable.then(|| Checkin {
            pool: self.clone(),
            peer: peer.clone(),
            sender,
            request_sent,
        });
        response.map(|body| UpstreamBody::new(body, conn))
    }

    fn checkin(self: &Arc<Self>, peer: PoolKey, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut conns = self.conns();
        let idle = conns.idle.entry(peer).or_default();
        if idle.len() >= MAX_IDLE_PER_UPSTREAM {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
        if !conns.reaper {
            conns.reaper = true;
            tokio::spawn(reap(Arc::downgrade(self), self.idle_timeout));
        }
    }

    async fn connect(&self, key: &PoolKey) -> Result<TcpStream, SendError> {
        let peer = &key.authority;
        let connect = async {
            match peer {
                PeerAuthority::Endpoint(addr) => TcpStream::connect(addr).await,
                PeerAuthority::Static(authority) => {
                    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                    for addr in tokio::net::lookup_host(&**authority).await? {
                        match TcpStream::connect(addr).await {
                            Ok(stream) => return Ok(stream),
                            Err(error) => last = error,
                        }
                    }
                    Err(last)
                }
            }
        };
        let result = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        };
        match result {
            Ok(stream) => {
                // Small requests must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Err(error) => {
                self.conns().idle.remove(key);
                Err(SendError::Connect(error))
            }
        }
    }

    async fn connect_h1(&self, peer: &PoolKey) -> Result<http1::SendRequest<RequestBody>, SendError> {
        let stream = self.connect(peer).await?;
        match &peer.tls {
            None => self.start_h1(stream).await,
            Some(tls) => self.start_h1(self.handshake_tls(tls, stream).await?).await,
        }
    }

    /// An HTTP/1 connection over `stream` (TCP, or TLS over it). One task per connection,
    /// not per request: it drives the connection's IO.
    async fn start_h1<S>(&self, stream: S) -> Result<http1::SendRequest<RequestBody>, SendError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = self
            .h1
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Upstream)?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// An HTTP/2 connection over `stream`, likewise.
    async fn start_h2<S>(&self, stream: S) -> Result<http2::SendRequest<RequestBody>, SendError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = self
            .h2
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Upstream)?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream h2 connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The TLS handshake, within the connect timeout too: a backend that accepts the TCP
    /// connection and never answers the handshake must not hold the request longer.
    async fn handshake_tls(
        &self,
        tls: &UpstreamTls,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SendError> {
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        match tokio::time::timeout(
            self.connect_timeout,
            connector.connect(tls.server_name.clone(), stream),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(SendError::Tls(error.to_string())),
            Err(_) => Err(SendError::Connect(io::ErrorKind::TimedOut.into())),
        }
    }

    async fn send_h2(
        &self,
        peer: &PoolKey,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let pooled = self.conns().h2.get(peer).filter(|s| !s.is_closed()).cloned();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => {
                let stream = self.connect(peer).await?;
                let sender = match &peer.tls {
                    None => self.start_h2(stream).await?,
                    Some(tls) => self.start_h2(self.handshake_tls(tls, stream).await?).await?,
                };
                self.conns().h2.insert(peer.clone(), sender.clone());
                sender
            }
        };
        sender.ready().await.map_err(SendError::Upstream)?;
        let response = sender.send_request(req).await.map_err(SendError::Upstream)?;
        Ok(response.map(|body| UpstreamBody::new(body, None)))
    }
}

/// Closes idle connections that passed the idle timeout, so an upstream sees them closed by
/// us rather than reusing ones it is about to close; ends with the pool.
async fn reap(pool: Weak<Pool>, idle_timeout: Duration) {
    let every = (idle_timeout / 2).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let mut conns = pool.conns();
        for idle in conns.idle.values_mut() {
            idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < idle_timeout);
        }
        conns.idle.retain(|_, idle| !idle.is_empty());
        conns.h2.retain(|_, sender| !sender.is_closed());
    }
}

/// An HTTP/1 connection to give back to the pool once its response is read.
struct Checkin {
    pool: Arc<Pool>,
    peer: PoolKey,
    sender: http1::SendRequest<RequestBody>,
    /// Whether the request's body went out whole (None: it had none).
    request_sent: Option<Arc<AtomicBool>>,
}

impl Checkin {
    /// The response was read to its end. The connection is idle only if the request was
    /// sent whole too: an upstream may answer early (401, 413) while a client still owes
    /// most of its body, and the next request must not wait behind it (it would wait in
    /// `ready()` for as long as that client stalls). Such a connection is let go, and
    /// hyper closes it once the request ends.
    fn done(self) {
        if request_body::was_sent(self.request_sent.as_ref()) {
            self.pool.checkin(self.peer, self.sender);
        }
    }
}

/// An upstream response body; reading it to the end puts its connection back in the pool.
/// Dropped before its end, it takes the connection with it (hyper closes it).
pub(crate) struct UpstreamBody {
    body: Incoming,
    conn: Option<Checkin>,
}

impl UpstreamBody {
    fn new(body: Incoming, conn: Option<Checkin>) -> Self {
        let mut this = Self { body, conn };
        if this.body.is_end_stream() {
            this.release();
        }
        this
    }

    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.done();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => drop(this.conn.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
