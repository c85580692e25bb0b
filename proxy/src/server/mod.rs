//! The proxy listener: accepts connections and serves each with the request path of
//! [`crate::proxy`], until a draining shutdown.

pub(crate) mod conn;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{options::ProxyOptions, proxy::Proxy, state::ProxyState};

/// A running proxy listener.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
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
    let local_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    let builder = Arc::new(conn::builder(proxy.options()));
    let accept = tokio::spawn(accept_loop(
        listener,
        proxy.clone(),
        builder,
        shutdown.clone(),
        connections.clone(),
    ));
    Ok(Server {
        local_addr,
        shutdown,
        accept,
        connections,
        proxy,
    })
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    let gauge = proxy.state().metrics.connections().clone();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => return,
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
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let gauge = gauge.clone();
        connections.spawn(async move {
            gauge.inc();
            conn::serve(proxy, builder, stream, remote, shutdown).await;
            gauge.dec();
        });
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
        self.shutdown.cancel();
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
