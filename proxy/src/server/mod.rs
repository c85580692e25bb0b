//! The proxy listener: accepts connections and serves each with the request path of
//! [`crate::forward`], until a draining shutdown.

pub(crate) mod conn;
pub(crate) mod drain;
mod listen;
mod socket;
mod watchlist;

use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use self::{
    conn::Protocol,
    drain::Drain,
    socket::{ClientTcp, Listener},
};
use crate::{
    forward::{Proxy, client::Transport},
    options::ProxyOptions,
    state::ProxyState,
};

/// A running proxy listener.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    drain: Arc<Drain>,
    accept: JoinHandle<()>,
    connections: TaskTracker,
    proxy: Arc<Proxy>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished its requests and closed.
    Complete,
    /// The drain timeout passed with connections still open; they are dropped.
    TimedOut {
        /// Connections and tunnels still open.
        remaining: usize,
    },
}

/// Serves `state`'s route table on `listener` with its own request path.
pub fn serve(
    state: Arc<ProxyState>,
    listener: TcpListener,
    options: ProxyOptions,
) -> std::io::Result<Server> {
    serve_proxy(Proxy::new(state, options), listener)
}

/// Serves a request path on `listener`; several listeners may share one [`Proxy`] (and so
/// its upstream pool and load balancer).
pub fn serve_proxy(proxy: Arc<Proxy>, listener: TcpListener) -> std::io::Result<Server> {
    serve_listener(proxy, listener, None)
}

/// Serves a request path on a TLS `listener`: certificates come from `acceptor` (SNI), ALPN
/// picks HTTP/2 or HTTP/1.1, and requests are proxied with `X-Forwarded-Proto: https`.
pub fn serve_tls(proxy: Arc<Proxy>, listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Server> {
    serve_listener(proxy, listener, Some(acceptor))
}

/// A TLS acceptor that picks certificates from `certs` by SNI, speaks TLS 1.2 and 1.3 only
/// and offers h2 and http/1.1 by ALPN.
pub fn tls_acceptor(certs: Arc<crate::certs::CertStore>) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(crate::certs::SniResolver(certs)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn serve_listener(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<Server> {
    let local_addr = listener.local_addr()?;
    if let Err(error) = listen::defer_accept(&listener) {
        // Only a wake-up per connection is lost: each is then accepted on its handshake.
        tracing::warn!(%error, %local_addr, "cannot defer accepting until a client sends");
    }
    let listener = Listener::new(listener)?;
    let drain = Arc::new(Drain::default());
    let connections = TaskTracker::new();
    let builder = Arc::new(conn::Builders::new(proxy.options()));
    let accept = tokio::spawn(accept_loop(
        listener,
        proxy.clone(),
        builder,
        drain.clone(),
        connections.clone(),
        tls,
    ));
    Ok(Server {
        local_addr,
        drain,
        accept,
        connections,
        proxy,
    })
}

async fn accept_loop(
    listener: Listener,
    proxy: Arc<Proxy>,
    builder: Arc<conn::Builders>,
    drain: Arc<Drain>,
    connections: TaskTracker,
    tls: Option<TlsAcceptor>,
) {
    let gauge = proxy.state().metrics.connections().clone();
    // Made once, not for each accept: a wait registers (under a lock) when first polled
    // and unregisters when dropped. Polled only when no connection is waiting (`biased`),
    // and each polled wait takes that lock: under a flood of connections the flag stops
    // the loop instead.
    let mut drained = pin!(drain.until_started(|| true));
    loop {
        if drain.started() {
            return;
        }
        let (stream, remote) = tokio::select! {
            biased;
            // Deferred (listen.rs), the request is there: the stream's first read tries the
            // socket at once, without registering it (socket.rs).
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors or similar: back off instead of spinning; the
                    // condition usually clears as connections close.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut drained => return,
        };
        let limit = proxy.options().max_client_connections;
        if limit != 0 && connections.len() >= limit {
            // Closed at once (dropping the stream): a flood of connections costs a file
            // descriptor each only while it is accepted, not for as long as it stays open.
            tracing::debug!(%remote, limit, "client connection limit reached; closing");
            proxy.state().metrics.connection_refused();
            drop(stream);
            continue;
        }
        let proxy = proxy.clone();
        let builder = builder.clone();
        let drain = drain.clone();
        let gauge = gauge.clone();
        let tls = tls.clone();
        // A plain connection's task is sized for a plain connection: a TLS handshake's
        // state would otherwise be paid by every one of them. Either connection's future is
        // boxed when the task first runs, not spawned whole: spawning moves the future
        // through several frames of tokio's, each a copy of its full size (680 bytes plain,
        // 5.6 KB with TLS; about eight copies per connection by callgrind), where the boxed
        // one is copied once.
        match tls {
            None => {
                let transport = Transport::Plain {
                    scheme: proxy.options().scheme,
                };
                connections.spawn(async move {
                    gauge.inc();
                    Box::pin(conn::serve(
                        proxy,
                        builder,
                        Protocol::Sniff,
                        stream,
                        remote,
                        transport,
                        drain,
                    ))
                    .await;
                    gauge.dec();
                });
            }
            Some(acceptor) => {
                // The handshake's flights must not wait for Nagle's algorithm either.
                let _ = stream.set_nodelay();
                connections.spawn(async move {
                    gauge.inc();
                    Box::pin(serve_tls_connection(
                        proxy, builder, acceptor, stream, remote, drain,
                    ))
                    .await;
                    gauge.dec();
                });
            }
        }
    }
}

async fn serve_tls_connection(
    proxy: Arc<Proxy>,
    builder: Arc<conn::Builders>,
    acceptor: TlsAcceptor,
    stream: ClientTcp,
    remote: SocketAddr,
    drain: Arc<Drain>,
) {
    // The handshake is bounded like a request head: a client that opens a connection and
    // stalls must not hold it.
    let timeout = proxy.options().header_read_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let session = tls_stream.get_ref().1;
            let protocol = if session.alpn_protocol() == Some(b"h2") {
                Protocol::Http2
            } else {
                Protocol::Sniff
            };
            let transport = Transport::Tls {
                server_name: session.server_name().map(Box::from),
            };
            conn::serve(proxy, builder, protocol, tls_stream, remote, transport, drain).await;
        }
        Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
    }
}

impl Server {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting (the listening socket is closed before this returns from its first
    /// await), lets every connection finish its in-flight requests, and waits up to `drain`
    /// for them and for upgraded tunnels to close.
    pub async fn shutdown(self, drain: Duration) -> Drained {
        self.drain.start();
        let _ = self.accept.await;
        self.connections.close();
        let tunnels = self.proxy.tunnels().clone();
        tunnels.close();
        let all = async {
            self.connections.wait().await;
            tunnels.wait().await;
        };
        match tokio::time::timeout(drain, all).await {
            Ok(()) => Drained::Complete,
            Err(_) => Drained::TimedOut {
                remaining: self.connections.len() + tunnels.len(),
            },
        }
    }
}
