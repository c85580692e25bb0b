//! Upstream connections, kept per upstream address for reuse. HTTP/1.1 goes over the
//! proxy's own client ([`crate::http1::client`]): a request's future drives its
//! connection, and its response body puts the connection back as it ends; no task per
//! connection or per request. HTTP/2 goes over hyper's connection-level client.
//!
//! - HTTP/1.1: idle connections are reused last-in first-out, so the warmest ones are used
//!   and the coldest age out; at most [`MAX_IDLE_PER_UPSTREAM`] wait per upstream (nginx's
//!   `keepalive 128`), idle ones close after the upstream idle timeout. A connection goes
//!   back only after an exchange that ended exactly (see the client), never after a
//!   protocol switch or a `Connection: close`.
//! - h2c (and h2 over TLS): one multiplexed connection per upstream, replaced when it closes.
//! - TLS ([`super::tls`]): connections are kept per upstream address *and* TLS setting, so
//!   one verified for one backend's names and CAs never carries another backend's request.
//! - A connect failure drops that upstream's idle connections: they most likely point at a
//!   process that is gone, and each would cost a failed request to find out.
//!
//! An idle connection is looked at before it is used (one read that must find nothing): one
//! the upstream closed, or sent bytes on, is dropped. An idempotent request whose reused
//! connection ended before any byte of a response, with nothing of its body sent, goes
//! again on another connection: the upstream closed it as idle just as the request left.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, Weak},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::{Body, Frame, SizeHint};
use hyper::{body::Incoming, client::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lockstep_core::FastMap;
use lockstep_core::http1::upstream::PassedFields;
use tokio::net::TcpStream;

use crate::{
    clock::CoarseInstant,
    http1::client::{self, Connection, Failure, UpstreamIo},
};

use super::{
    peer::{Peer, PeerAuthority},
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
    /// The connection failed after the request was (or may have been) sent, or the
    /// response was malformed.
    Upstream(request_body::BoxError),
}

/// A request the pool did not get an answer to: why, and the request itself when none of it
/// reached an upstream because no connection could be made. The caller may then send it to
/// another endpoint without having copied it beforehand (a copy of every idempotent request's
/// head, for the rare connect failure, was a header map cloned and dropped per request).
pub(crate) struct SendFailure {
    pub(crate) error: SendError,
    /// Set for a connect failure (`SendError::Connect`) only.
    pub(crate) unsent: Option<(Box<Parts>, RequestBody)>,
}

impl From<SendError> for SendFailure {
    fn from(error: SendError) -> Self {
        Self { error, unsent: None }
    }
}

impl SendFailure {
    /// `error`, with the request handed back when the error is a connect failure.
    fn unsent(error: SendError, head: Box<Parts>, body: RequestBody) -> Self {
        let unsent = matches!(error, SendError::Connect(_)).then_some((head, body));
        Self { error, unsent }
    }
}

/// Where pooled connections go: an address, and the TLS setting they were made with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    authority: PeerAuthority,
    tls: Option<Arc<UpstreamTls>>,
}

struct Idle {
    conn: Connection,
    /// When it went idle, by the coarse clock: only compared against the idle timeout.
    since: CoarseInstant,
}

#[derive(Default)]
struct Conns {
    /// HTTP/1 idle connections per upstream, most recently used last.
    idle: FastMap<PoolKey, VecDeque<Idle>>,
    h2: FastMap<PoolKey, http2::SendRequest<RequestBody>>,
    reaper: bool,
}

/// The upstream connections of one [`super::Proxy`].
pub(crate) struct Pool {
    conns: Mutex<Conns>,
    connect_timeout: Duration,
    idle_timeout: Duration,
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
            h2,
            tls: TlsCache::default(),
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        // Every step under the lock leaves the maps consistent.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` to `peer` over a pooled or new connection, in HTTP/2 when it says h2c (h2c,
    /// or h2 by ALPN over TLS), over TLS verified as its `tls` says when that is set,
    /// presenting its client certificate when the upstream asks for one. The response body
    /// puts an HTTP/1 connection back when it ends. `pass_fields`: an HTTP/1 upstream's
    /// response fields may stay as it sent them (see `client::exchange`).
    ///
    /// A function returning an `async move` block, as the other steps a request awaits
    /// through (see `Proxy::handle`). The head comes boxed: it passes through every future
    /// of the request path below `Proxy::forward`, and each held and moved its 224 bytes.
    pub(crate) fn send(
        self: &Arc<Self>,
        peer: &Peer,
        head: Box<Parts>,
        body: RequestBody,
        pass_fields: bool,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendFailure>> + Send {
        let h2c = peer.h2c;
        let key = peer
            .tls
            .as_deref()
            .map(|tls| self.tls.get(tls, h2c, peer.client_certificate.as_ref()))
            .transpose()
            .map(|tls| PoolKey {
                authority: peer.authority.clone(),
                tls,
            });
        let pool = self.clone();
        async move {
            let key = key.map_err(SendError::Tls)?;
            // The rarer paths (an h2c upstream, a new connection) are boxed: inline, every
            // request's future would carry room for their state (about 2 KB), and moving and
            // allocating it is part of each request's cost.
            if h2c {
                return Box::pin(pool.send_h2(&key, head, body)).await;
            }
            let (mut head, mut body) = (head, body);
            // Pooled connections first; a stale one hands an idempotent request back, and it
            // goes to the next one, or at last to a new connection.
            loop {
                let (conn, reused) = match pool.checkout(&key) {
                    Some(conn) => (conn, true),
                    None => match Box::pin(pool.connect_h1(&key)).await {
                        Ok(conn) => (conn, false),
                        Err(error) => return Err(SendFailure::unsent(error, head, body)),
                    },
                };
                match client::exchange(conn, head, body, reused, pass_fields).await {
                    Ok(response) => {
                        let checkin = Checkin { pool, peer: key };
                        return Ok(response.map(|body| UpstreamBody::http1(body, checkin)));
                    }
                    Err(Failure::Stale(unsent_head, unsent_body, error)) => {
                        tracing::debug!(%error, "pooled upstream connection was closed; sending again");
                        (head, body) = (unsent_head, unsent_body);
                    }
                    Err(Failure::Failed(error)) => return Err(SendError::Upstream(Box::new(error)).into()),
                }
            }
        }
    }

    /// The most recently used idle connection to `peer` that is still open and not too old.
    fn checkout(&self, peer: &PoolKey) -> Option<Connection> {
        let mut conns = self.conns();
        let idle = conns.idle.get_mut(peer)?;
        while let Some(mut idle_conn) = idle.pop_back() {
            if idle_conn.since.elapsed() < self.idle_timeout && idle_conn.conn.is_usable() {
                return Some(idle_conn.conn);
            }
        }
        None
    }

    fn checkin(self: &Arc<Self>, peer: PoolKey, conn: Connection) {
        let mut conns = self.conns();
        let idle = conns.idle.entry(peer).or_default();
        if idle.len() >= MAX_IDLE_PER_UPSTREAM {
            idle.pop_front();
        }
        idle.push_back(Idle {
            conn,
            since: CoarseInstant::now(),
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

    async fn connect_h1(&self, peer: &PoolKey) -> Result<Connection, SendError> {
        let stream = self.connect(peer).await?;
        let io = match &peer.tls {
            None => UpstreamIo::Tcp(stream),
            Some(tls) => UpstreamIo::Tls(Box::new(self.handshake_tls(tls, stream).await?)),
        };
        Ok(Connection::new(io))
    }

    /// A new HTTP/2 connection to `peer`, over TLS if its key says so.
    async fn connect_h2(&self, peer: &PoolKey) -> Result<http2::SendRequest<RequestBody>, SendError> {
        let stream = self.connect(peer).await?;
        match &peer.tls {
            None => self.start_h2(stream).await,
            Some(tls) => self.start_h2(self.handshake_tls(tls, stream).await?).await,
        }
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
            .map_err(|e| SendError::Upstream(Box::new(e)))?;
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
        head: Box<Parts>,
        body: RequestBody,
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        let pooled = self.conns().h2.get(peer).filter(|s| !s.is_closed()).cloned();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => match self.connect_h2(peer).await {
                Ok(sender) => {
                    self.conns().h2.insert(peer.clone(), sender.clone());
                    sender
                }
                Err(error) => return Err(SendFailure::unsent(error, head, body)),
            },
        };
        sender
            .ready()
            .await
            .map_err(|e| SendError::Upstream(Box::new(e)))?;
        let response = sender
            .send_request(Request::from_parts(*head, body))
            .await
            .map_err(|e| SendError::Upstream(Box::new(e)))?;
        Ok(response.map(|body| UpstreamBody(Kind::Http2(body))))
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
            idle.retain_mut(|c| c.since.elapsed() < idle_timeout && c.conn.is_usable());
        }
        conns.idle.retain(|_, idle| !idle.is_empty());
        conns.h2.retain(|_, sender| !sender.is_closed());
    }
}

/// Where an HTTP/1 connection goes back once its response is read.
struct Checkin {
    pool: Arc<Pool>,
    peer: PoolKey,
}

/// An upstream response body. An HTTP/1 one puts its connection back in the pool when the
/// exchange ended exactly; dropped before its end, it closes the connection.
pub(crate) struct UpstreamBody(Kind);

enum Kind {
    /// Boxed: a response moves through several futures and returns on its way to the
    /// client, and inline this variant made every one of them carry and copy 176 bytes
    /// where 40 now do (`Response<ProxyBody>` 320 bytes to 184, release build).
    Http1(Box<Http1Body>),
    Http2(Incoming),
}

struct Http1Body {
    body: client::ResponseBody<RequestBody>,
    /// Where the connection goes back when the exchange ended exactly (taken then).
    checkin: Option<Checkin>,
}

impl UpstreamBody {
    fn http1(body: client::ResponseBody<RequestBody>, checkin: Checkin) -> Self {
        let mut this = Self(Kind::Http1(Box::new(Http1Body {
            body,
            checkin: Some(checkin),
        })));
        this.release();
        this
    }

    /// The response's fields as an HTTP/1 upstream sent them, when they were passed (see
    /// `client::exchange`).
    pub(crate) fn take_passed_fields(&mut self) -> Option<PassedFields> {
        match &mut self.0 {
            Kind::Http1(http1) => http1.body.take_passed_fields(),
            Kind::Http2(_) => None,
        }
    }

    /// The upstream connection after a 101 (HTTP/1 only).
    pub(crate) fn take_upgrade(&mut self) -> Option<crate::http1::upgrade::Upgraded> {
        match &mut self.0 {
            Kind::Http1(http1) => http1.body.take_upgrade(),
            Kind::Http2(_) => None,
        }
    }

    fn release(&mut self) {
        if let Kind::Http1(http1) = &mut self.0
            && let Some(conn) = http1.body.take_idle()
            && let Some(Checkin { pool, peer }) = http1.checkin.take()
        {
            pool.checkin(peer, conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = request_body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match &mut this.0 {
            Kind::Http1(http1) => {
                let polled = Pin::new(&mut http1.body).poll_frame(cx);
                if polled.is_ready() {
                    this.release();
                }
                polled
            }
            Kind::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Http1(http1) => http1.body.is_end_stream(),
            Kind::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Http1(http1) => http1.body.size_hint(),
            Kind::Http2(body) => body.size_hint(),
        }
    }
}
