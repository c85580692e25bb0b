//! A closed-loop HTTP/1.1 keep-alive load generator for the traffic benchmark: `concurrency`
//! connections each send `GET path` with the given Host and extra headers back to back for
//! `seconds`, and count answers by their `x-backend` header.
//!
//! `lockstep-e2e-http-load --connect 127.0.0.1:18901 --host bench.local --path /plain
//! --header x-canary:true --header x-env:prod --seconds 10 --concurrency 16` prints one JSON
//! object: requests, failures (non-2xx or errors), rps, and the count per x-backend.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A closed-loop HTTP/1.1 keep-alive load generator.
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-http-load")]
struct Args {
    /// The address to send to.
    #[arg(long)]
    connect: SocketAddr,
    /// The Host header.
    #[arg(long, default_value = "bench.local")]
    host: String,
    /// The request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// An extra header `NAME:VALUE`; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    failures: u64,
    by_backend: BTreeMap<String, u64>,
}

async fn connection(
    addr: SocketAddr,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    until: Instant,
) -> Result<Tally> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut tally = Tally::default();
    while Instant::now() < until {
        let mut req = Request::get(path.as_str()).header("host", host.as_str());
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        send.ready().await?;
        let response = send.send_request(req.body(Empty::<Bytes>::new())?).await?;
        let backend = response
            .headers()
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        tally.requests += 1;
        if !ok {
            tally.failures += 1;
        }
        *tally.by_backend.entry(backend).or_default() += 1;
    }
    Ok(tally)
}

#[tokio::main]
async fn main() -> Result<()> {
    let Args {
        connect: addr,
        host,
        path,
        headers,
        seconds,
        concurrency,
    } = Args::parse();
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(connection(
                addr,
                host.clone(),
                path.clone(),
                headers.clone(),
                until,
            ))
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        match task.await? {
            Ok(t) => {
                total.requests += t.requests;
                total.failures += t.failures;
                for (k, v) in t.by_backend {
                    *total.by_backend.entry(k).or_default() += v;
                }
            }
            Err(e) => {
                eprintln!("connection failed: {e}");
                total.failures += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "requests": total.requests,
            "failures": total.failures,
            "rps": (total.requests as f64 / elapsed).round(),
            "byBackend": total.by_backend,
        })
    );
    Ok(())
}
