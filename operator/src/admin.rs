//! The admin endpoint: `/healthz`, `/readyz` (caches synced; true on the standby too, so a
//! rolling update of the operator never waits for leadership), `/metrics`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("static response parts")
}

/// Serves the admin endpoint on `listener` forever.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, ready) = (metrics.clone(), ready.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = match req.uri().path() {
                    "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
                    "/readyz" if ready.load(Ordering::SeqCst) => {
                        respond(StatusCode::OK, "text/plain", "ready\n")
                    }
                    "/readyz" => respond(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "caches not synced\n",
                    ),
                    "/metrics" => respond(
                        StatusCode::OK,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.encode(),
                    ),
                    _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
                };
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds the admin address (port 0 allowed) and returns the listener and bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}
