//! The upstream connection pool, seen from a backend that counts its connections: requests
//! one after another share one warm connection, a `Connection: close` answer is not reused,
//! and idle connections are closed after the upstream idle timeout.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use lockstep_proxy::ProxyOptions;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Connections accepted and connections the peer (the proxy) closed.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    closed_by_peer: AtomicUsize,
}

/// An HTTP/1.1 backend answering every request head `200 ok`, with `Connection: close` (and
/// closing) when `close` is set.
async fn counting_backend(close: bool) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            c.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer: &[u8] = if close {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if stream.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, counts)
}

fn config(backend: SocketAddr) -> String {
    router_config("pool", &[rule("pool.test", "/", &url(backend))])
}

#[tokio::test]
async fn requests_one_after_another_share_one_upstream_connection() {
    let (backend, counts) = counting_backend(false).await;
    let server = proxy(state_with(&config(backend)), ProxyOptions::default()).await;
    let client = client();
    for _ in 0..20 {
        let response = get(&client, server.local_addr(), "pool.test", "/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(text(&response), "ok");
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closes_is_not_reused() {
    let (backend, counts) = counting_backend(true).await;
    let server = proxy(state_with(&config(backend)), ProxyOptions::default()).await;
    let client = client();
    for _ in 0..5 {
        let response = get(&client, server.local_addr(), "pool.test", "/").await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_idle_timeout() {
    let (backend, counts) = counting_backend(false).await;
    let options = ProxyOptions {
        upstream_idle_timeout: Duration::from_millis(200),
        ..ProxyOptions::default()
    };
    let server = proxy(state_with(&config(backend)), options).await;
    let response = get(&client(), server.local_addr(), "pool.test", "/").await;
    assert_eq!(response.status(), 200);
    for _ in 0..200 {
        if counts.closed_by_peer.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counts.closed_by_peer.load(Ordering::SeqCst),
        1,
        "the idle upstream connection was never closed"
    );
    // The next request opens a new connection and succeeds.
    let response = get(&client(), server.local_addr(), "pool.test", "/").await;
    assert_eq!(response.status(), 200);
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
}
