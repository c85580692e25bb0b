//! The admin listener: `/healthz`, `/readyz`, `/metrics` (Prometheus text) and `/config`
//! (what the replica serves, by RouterConfig). It never shows specs or TLS material, only
//! names, generations and digests.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::state::ProxyState;

/// A running admin listener; dropping it leaves it running, [`AdminServer::stop`] ends it.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting admin connections.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Serves the admin endpoints on `listener`.
pub fn serve(state: Arc<ProxyState>, listener: TcpListener) -> std::io::Result<AdminServer> {
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, &req)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(AdminServer { local_addr, task })
}

fn answer(state: &ProxyState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" if state.is_draining() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not synced\n"),
        "/metrics" => with_type(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        "/config" => with_type(StatusCode::OK, "application/json", config_json(state).to_string()),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The `/config` document.
pub fn config_json(state: &ProxyState) -> serde_json::Value {
    let served = state.served();
    let objects: Vec<serde_json::Value> = served
        .objects
        .values()
        .map(|o| {
            serde_json::json!({
                "namespace": o.key.namespace,
                "name": o.key.name,
                "generation": o.generation,
                "digest": o.digest,
            })
        })
        .collect();
    serde_json::json!({
        "replica": state.replica,
        "routerConfigs": objects,
        "swaps": state.swap_count(),
        "ready": state.is_ready(),
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body.to_owned())
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
