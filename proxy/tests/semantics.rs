//! Proxy semantics over real sockets: headers, streamed bodies both ways, upgrades, and
//! every status the proxy makes itself.

mod common;

use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use lockstep_proxy::ProxyOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn single_route(options: ProxyOptions) -> (Backend, lockstep_proxy::Server) {
    let be = backend("b").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(be.addr))]));
    (be, proxy(state, options).await)
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_stripped() {
    let (_be, server) = single_route(ProxyOptions::default()).await;
    let p = server.local_addr();
    let req = Request::get(format!("http://{p}/h?q=1"))
        .header("host", "app.test:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9v")
        .header("x-custom", "kept")
        .body(empty())
        .expect("req");
    let response = send(&client(), req).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = text(&response);
    assert!(seen.starts_with("GET /h?q=1 HTTP/1.1\n"), "{seen}");
    assert!(seen.contains("host: app.test:8443\n"), "Host preserved: {seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: app.test:8443\n"), "{seen}");
    assert!(seen.contains("x-custom: kept\n"), "{seen}");
    for gone in ["x-private", "te:", "proxy-authorization", "connection: x-private"] {
        assert!(!seen.contains(gone), "{gone} reached the backend: {seen}");
    }
    // The backend's Keep-Alive header is hop-by-hop on the way back too.
    assert!(!response.headers().contains_key("keep-alive"));
    assert_eq!(response.headers()["x-backend"], "b");
}

#[tokio::test]
async fn large_bodies_stream_both_ways_over_http1() {
    let (_be, server) = single_route(ProxyOptions::default()).await;
    let p = server.local_addr();
    let client = client();
    const SIZE: usize = 8 * 1024 * 1024;

    // Chunked upload (no length known), echoed back.
    let req = Request::post(format!("http://{p}/echo"))
        .header("host", "app.test")
        .body(streamed(SIZE, 100_003))
        .expect("req");
    let response = send(&client, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().len(), SIZE);
    assert_eq!(response.body(), &pattern(0, SIZE));

    // Upload with Content-Length.
    let req = Request::put(format!("http://{p}/echo"))
        .header("host", "app.test")
        .body(full(pattern(0, SIZE)))
        .expect("req");
    let response = send(&client, req).await;
    assert_eq!(response.body(), &pattern(0, SIZE));

    // Streamed download.
    let response = get(&client, p, "app.test", &format!("/bytes/{SIZE}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), &pattern(0, SIZE));
}

#[tokio::test]
async fn large_bodies_stream_both_ways_over_h2c() {
    let (_be, server) = single_route(ProxyOptions::default()).await;
    let mut h2 = h2_connect(server.local_addr()).await;
    const SIZE: usize = 8 * 1024 * 1024;
    let req = Request::post("http://app.test/echo")
        .body(streamed(SIZE, 65_536))
        .expect("req");
    let response = h2.send_request(req).await.expect("h2");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), SIZE);
    assert_eq!(body, pattern(0, SIZE));
}

#[tokio::test]
async fn responses_start_before_the_upstream_finishes() {
    // The first bytes of a large download arrive while the backend is still producing it:
    // the proxy does not buffer whole bodies.
    let (_be, server) = single_route(ProxyOptions::default()).await;
    let response = client()
        .request(
            Request::get(format!(
                "http://{}/bytes/{}",
                server.local_addr(),
                64 * 1024 * 1024
            ))
            .header("host", "app.test")
            .body(empty())
            .expect("req"),
        )
        .await
        .expect("response head");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("ok");
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    drop(body);
}

#[tokio::test]
async fn websocket_upgrade_echoes_through_the_proxy() {
    let (_be, server) = single_route(ProxyOptions::default()).await;
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"hello"[..], &[0u8, 1, 2, 255][..], &vec![7u8; 100_000][..]] {
        stream.write_all(message).await.expect("send");
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn unknown_host_is_404_and_missing_host_is_400() {
    let (_be, server) = single_route(ProxyOptions::default()).await;
    let p = server.local_addr();
    assert_eq!(
        get(&client(), p, "nope.test", "/").await.status(),
        StatusCode::NOT_FOUND
    );
    let answer = raw(p, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(
        p,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "two Host headers: {answer}");
    let answer = raw(p, b"GARBAGE\r\n\r\n", Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(
        p,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nbad header\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn oversized_or_too_many_headers_are_431() {
    let (_be, server) = single_route(ProxyOptions {
        max_header_bytes: 16 * 1024,
        max_header_count: 20,
        ..Default::default()
    })
    .await;
    let p = server.local_addr();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let answer = raw(p, big.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: app.test\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(p, many.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Just under the limits passes.
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    let answer = raw(p, ok.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // Bound and never listening for the whole test, so no parallel test's listener takes it.
    let dead_socket = tokio::net::TcpSocket::new_v4().expect("socket");
    dead_socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let dead = dead_socket.local_addr().expect("addr");
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(dead))]));
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    assert_eq!(
        get(&client(), server.local_addr(), "app.test", "/")
            .await
            .status(),
        StatusCode::BAD_GATEWAY
    );
    let metrics = state.metrics.render();
    assert!(
        metrics.contains("lockstep_proxy_upstream_errors_total{kind=\"connect\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn upstream_that_resets_mid_request_is_502() {
    // Accepts, reads the request, closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
        }
    });
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(addr))]));
    let server = proxy(state, ProxyOptions::default()).await;
    assert_eq!(
        get(&client(), server.local_addr(), "app.test", "/")
            .await
            .status(),
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let (_be, server) = single_route(ProxyOptions {
        response_timeout: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let p = server.local_addr();
    let client = client();
    assert_eq!(
        get(&client, p, "app.test", "/slow/2000").await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        get(&client, p, "app.test", "/slow/10").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn redirect_routes_answer_308_to_https() {
    let be = backend("b").await;
    let yaml = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: web\nspec:\n  rules:\n  - host: secure.test\n    tls:\n      secretName: secure-tls\n      redirectHttp: true\n    paths:\n    - path: /\n      pathType: Prefix\n      backend:\n        url: {}\n",
        url(be.addr)
    );
    let server = proxy(state_with(&yaml), ProxyOptions::default()).await;
    let response = get(&client(), server.local_addr(), "Secure.test:80", "/a/b?c=d").await;
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()["location"], "https://secure.test/a/b?c=d");
}

#[tokio::test]
async fn slowloris_heads_are_cut_off_but_slow_bodies_are_not() {
    let (_be, server) = single_route(ProxyOptions {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let p = server.local_addr();
    // A head trickled out byte by byte never completes in time.
    let mut stream = tokio::net::TcpStream::connect(p).await.expect("connect");
    let started = std::time::Instant::now();
    let mut closed = false;
    for byte in b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "slow head was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cut off after {:?}",
        started.elapsed()
    );

    // A connection that sends nothing at all is cut off too.
    let answer = raw(p, b"", Duration::from_secs(3)).await;
    assert_eq!(answer, "");

    // A slow request body is not a slow head.
    let req = Request::post(format!("http://{p}/echo"))
        .header("host", "app.test")
        .body(
            http_body_util::StreamBody::new(futures::stream::unfold(0, |i| async move {
                if i == 4 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some((
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
                        bytes::Bytes::from_static(b"x"),
                    )),
                    i + 1,
                ))
            }))
            .boxed(),
        )
        .expect("req");
    let response = send(&client(), req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().as_ref(), b"xxxx");
}

/// A drain stops accepting and closes a keep-alive connection that waits for its next
/// request at once, and one with a request in flight after its response, which says
/// `Connection: close`; the drain then completes long before its timeout.
#[tokio::test]
async fn a_drain_closes_waiting_connections_at_once_and_busy_ones_after_their_response() {
    let (_be, server) = single_route(ProxyOptions {
        idle_timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    let mut waiting = tokio::net::TcpStream::connect(addr).await.expect("connect");
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    let mut first = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut waiting, &mut first))
        .await
        .expect("answered")
        .expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut busy = tokio::net::TcpStream::connect(addr).await.expect("connect");
    busy.write_all(b"GET /slow/800 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    let drained = tokio::spawn(server.shutdown(Duration::from_secs(10)));
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), waiting.read_to_end(&mut rest))
        .await
        .expect("the waiting connection closed at once")
        .expect("read");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting while draining"
    );
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), busy.read_to_end(&mut answer))
        .await
        .expect("the busy connection closed after its response")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.ends_with("slow done"), "{answer}");
    assert_eq!(drained.await.expect("drain"), lockstep_proxy::Drained::Complete);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed() {
    let (_be, server) = single_route(ProxyOptions {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("closed in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

/// A plain connection's first bytes tell HTTP/2 with prior knowledge from HTTP/1.1, however
/// they are split: a preface that arrives a few bytes at a time is HTTP/2, and an HTTP/1
/// request that starts like the preface ("P") and arrives a byte at a time is HTTP/1.
#[tokio::test]
async fn the_protocol_is_told_by_the_first_bytes_however_they_arrive() {
    let (_be, server) = single_route(ProxyOptions::default()).await;
    let wait = Duration::from_secs(5);

    let mut h2 = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    for piece in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".chunks(5) {
        h2.write_all(piece).await.expect("write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An empty SETTINGS frame; the server's first frame is its own SETTINGS (type 4).
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.expect("write");
    let mut frame_head = [0u8; 9];
    tokio::time::timeout(wait, h2.read_exact(&mut frame_head))
        .await
        .expect("an answer in time")
        .expect("read");
    assert_eq!(
        frame_head[3], 4,
        "an HTTP/2 SETTINGS frame first, got {frame_head:?}"
    );

    let mut h1 = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let request =
        b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    for byte in request {
        h1.write_all(&[*byte]).await.expect("write");
        if byte.is_ascii_uppercase() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut answer = Vec::new();
    tokio::time::timeout(wait, h1.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
}
