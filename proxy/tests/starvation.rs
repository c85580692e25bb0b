//! Resource exhaustion from clients that hold connections: thousands of idle connections
//! and a few slowloris clients (a head trickled a byte at a time) must not stop a normal
//! client from being served, and the slowloris clients are cut off by the header timeout.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use lockstep_proxy::ProxyOptions;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Idle connections held open; well inside the 20,000 descriptor limit with both ends of
/// each in this process.
const IDLE: usize = 2_000;
const SLOWLORIS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_do_not_starve_a_normal_client() {
    let be = backend("b").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(be.addr))]));
    let server = proxy(
        state.clone(),
        ProxyOptions {
            // Long enough that every held connection is still open while the normal client
            // is served below; short enough that the slowloris clients are seen cut off.
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            ..Default::default()
        },
    )
    .await;
    let p = server.local_addr();

    // Connections that never send a byte, and connections that finished a request and sit
    // in keep-alive.
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut stream = TcpStream::connect(p).await.expect("connect an idle client");
        if i % 2 == 0 {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
                .await
                .expect("write");
        }
        idle.push(stream);
    }
    // Slowloris: a head started and fed one byte at a time, never finished.
    let mut slow = Vec::new();
    for _ in 0..SLOWLORIS {
        let mut stream = TcpStream::connect(p).await.expect("connect a slowloris");
        slow.push(tokio::spawn(async move {
            let head = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: ";
            stream.write_all(head).await.expect("write");
            // Bounded: at most 10 minutes of trickle, far beyond the header timeout.
            for _ in 0..6_000 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"a").await.is_err() {
                    return true;
                }
                let mut byte = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await
                {
                    return true;
                }
            }
            false
        }));
    }

    // Every connection is accepted and being held by the proxy.
    let gauge = || {
        state
            .metrics
            .render()
            .lines()
            .find_map(|l| {
                l.strip_prefix("lockstep_proxy_client_connections ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    for _ in 0..600 {
        if gauge() >= (IDLE + SLOWLORIS) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        gauge() >= (IDLE + SLOWLORIS) as f64,
        "the proxy holds every connection: {}",
        gauge()
    );

    // A normal client is served, over new connections and over keep-alive, while all of
    // that is held.
    let client = client();
    for i in 0..20 {
        let response = get(&client, p, "app.test", &format!("/normal/{i}")).await;
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert_eq!(response.headers()["x-path"], format!("/normal/{i}").as_str());
    }
    for i in 0..20 {
        let answer = raw(
            p,
            format!("GET /fresh/{i} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "fresh connection {i}: {answer}"
        );
    }

    // The slowloris clients are cut off by the header timeout, whatever they trickle.
    for task in slow {
        assert!(
            task.await.expect("slowloris task"),
            "a slowloris client was never cut off"
        );
    }
    // The idle keep-alive clients got their answers and are still usable: nothing was
    // dropped to make room.
    let mut answered = 0;
    for stream in idle.iter_mut().step_by(2).take(50) {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the held client's answer")
            .expect("read");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        answered += 1;
    }
    assert_eq!(answered, 50);
    // And the normal client is still served after the slowloris clients are gone.
    let response = get(&client, p, "app.test", "/after").await;
    assert_eq!(response.status(), StatusCode::OK);
    drop(idle);
}
