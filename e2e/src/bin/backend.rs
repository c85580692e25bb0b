//! A tiny HTTP backend for the demo, tests and benchmarks: answers every request with a JSON
//! description of what it received (its own name, method, path, Host and forwarding
//! headers), so a request through a proxy shows where it landed.
//!
//! `lockstep-e2e-backend --listen 127.0.0.1:18090 --name web`; prints
//! `lockstep-e2e-backend listening http=ADDR` once bound. A query `sleep_ms=N` (at most 60 s)
//! delays the answer, for tests of in-flight requests.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

/// A test backend that answers with a JSON description of each request.
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-backend")]
struct Args {
    /// Address to listen on (port 0: an ephemeral one, printed once bound).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Its name, in every answer and in the `x-backend` header.
    #[arg(long, default_value = "backend")]
    name: String,
}

async fn handle(name: Arc<str>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let description = serde_json::json!({
        "backend": &*name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "host": header("host"),
        "xForwardedFor": header("x-forwarded-for"),
        "xForwardedProto": header("x-forwarded-proto"),
        "xForwardedHost": header("x-forwarded-host"),
    });
    let sleep_ms: u64 = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("sleep_ms=")?.parse().ok())
        .unwrap_or(0);
    // Drain the request body so keep-alive connections stay usable.
    let _ = req.into_body().collect().await;
    if sleep_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(sleep_ms.min(60_000))).await;
    }
    let mut body = description.to_string();
    body.push('\n');
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("x-backend", &*name)
        .body(Full::new(Bytes::from(body)))
        .expect("static response"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let name: Arc<str> = args.name.into();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("lockstep-e2e-backend listening http={}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(name.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
