//! Request mirroring (`filters.mirrors`) through the proxy in this process, with real
//! backends on loopback: the copy reaches the mirror's Service with the filtered head and
//! the body, the client's answer never waits for it nor depends on it, a long body is not
//! copied, and a fraction copies that share of the requests.

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use lockstep_proxy::{ProxyOptions, endpoints::ServiceKey, state::ProxyState};
use tokio::{net::TcpListener, sync::mpsc};

/// What a mirror received.
#[derive(Debug)]
struct Copy {
    target: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// A mirror backend: records every request (once its body is read), then answers 500,
/// after `delay`.
async fn recorder(delay: Duration) -> (SocketAddr, mpsc::UnboundedReceiver<Copy>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let _ = tx.send(Copy {
                            target: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        });
                        tokio::time::sleep(delay).await;
                        let mut response = Response::new(full("mirror answer"));
                        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn config(main: SocketAddr, fraction: &str) -> String {
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: m\n  namespace: shop\nspec:\n  rules:\n  - host: mirror.test\n    paths:\n    - path: /\n      backend: {{url: \"{main}\"}}\n      filters:\n        requestHeaders: {{set: [{{name: x-filtered, value: \"1\"}}]}}\n        mirrors:\n        - service: {{name: copy, port: 80}}\n    - path: /dead\n      backend: {{url: \"{main}\"}}\n      filters:\n        mirrors:\n        - service: {{name: dead, port: 80}}\n        - service: {{name: absent, port: 80}}\n    - path: /share\n      backend: {{url: \"{main}\"}}\n      filters:\n        mirrors:\n        - service: {{name: copy, port: 80}}\n          fraction: {fraction}\n",
        main = url(main),
    )
}

fn key(name: &str) -> ServiceKey {
    ServiceKey {
        namespace: "shop".into(),
        name: name.into(),
        port: 80,
    }
}

async fn setup(
    delay: Duration,
) -> (
    lockstep_proxy::Server,
    std::sync::Arc<ProxyState>,
    mpsc::UnboundedReceiver<Copy>,
    Backend,
) {
    let main = backend("main").await;
    let (copy, rx) = recorder(delay).await;
    let state = state_with(&config(main.addr, "{numerator: 1, denominator: 4}"));
    state.endpoints.set(key("copy"), vec![copy]);
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    (server, state, rx, main)
}

#[tokio::test]
async fn a_copy_reaches_the_mirror_with_the_filtered_head_and_the_body() {
    let (server, _state, mut copies, _main) = setup(Duration::ZERO).await;
    let client = client();
    let response = send(
        &client,
        Request::post(format!("http://{}/echo/x?request-id=7", server.local_addr()))
            .header("host", "mirror.test")
            .header("content-length", "5")
            .body(full("hello"))
            .expect("req"),
    )
    .await;
    // The client's answer is the backend's (which echoes the body), not the mirror's 500.
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "hello");
    let copy = tokio::time::timeout(Duration::from_secs(5), copies.recv())
        .await
        .expect("a copy within 5 s")
        .expect("copy");
    assert_eq!(copy.target, "/echo/x?request-id=7");
    assert_eq!(copy.body, "hello");
    assert_eq!(
        copy.headers["x-filtered"], "1",
        "after the route's request filter"
    );
    assert_eq!(copy.headers["host"], "mirror.test");
    assert_eq!(copy.headers["x-forwarded-for"], "127.0.0.1");
    // One copy per request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(copies.try_recv().is_err());
}

#[tokio::test]
async fn a_slow_or_failing_mirror_never_holds_or_changes_the_answer() {
    let (server, _state, mut copies, _main) = setup(Duration::from_secs(30)).await;
    let client = client();
    for _ in 0..5 {
        let start = Instant::now();
        let response = get(&client, server.local_addr(), "mirror.test", "/slow-mirror").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the answer waited for the mirror: {:?}",
            start.elapsed()
        );
    }
    for _ in 0..5 {
        let copy = tokio::time::timeout(Duration::from_secs(5), copies.recv())
            .await
            .expect("a copy within 5 s")
            .expect("copy");
        assert_eq!(copy.target, "/slow-mirror");
    }
    // A mirror whose only endpoint refuses connections, and one without endpoints.
    let dead = tokio::net::TcpSocket::new_v4().expect("socket");
    dead.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    _state
        .endpoints
        .set(key("dead"), vec![dead.local_addr().expect("addr")]);
    for _ in 0..5 {
        let response = get(&client, server.local_addr(), "mirror.test", "/dead").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-backend"], "main");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_or_streamed_is_proxied_but_not_copied() {
    let (server, _state, mut copies, _main) = setup(Duration::ZERO).await;
    let client = client();
    let long = "x".repeat(64 * 1024 + 1);
    let response = send(
        &client,
        Request::post(format!("http://{}/echo/long", server.local_addr()))
            .header("host", "mirror.test")
            .header("content-length", long.len().to_string())
            .body(full(long.clone()))
            .expect("req"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().len(), long.len(), "the client's request is whole");
    let response = send(
        &client,
        Request::post(format!("http://{}/echo/streamed", server.local_addr()))
            .header("host", "mirror.test")
            .body(streamed(1000, 100))
            .expect("req"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().len(), 1000);
    // Exactly 64 KiB still is.
    let most = "y".repeat(64 * 1024);
    send(
        &client,
        Request::post(format!("http://{}/echo/most", server.local_addr()))
            .header("host", "mirror.test")
            .header("content-length", most.len().to_string())
            .body(full(most.clone()))
            .expect("req"),
    )
    .await;
    let copy = tokio::time::timeout(Duration::from_secs(5), copies.recv())
        .await
        .expect("a copy within 5 s")
        .expect("copy");
    assert_eq!(
        copy.target, "/echo/most",
        "the long and streamed ones were not copied"
    );
    assert_eq!(copy.body.len(), most.len());
}

#[tokio::test]
async fn a_fraction_copies_that_share_of_the_requests() {
    let (server, _state, mut copies, _main) = setup(Duration::ZERO).await;
    let client = client();
    let n = 400;
    for _ in 0..n {
        let response = get(&client, server.local_addr(), "mirror.test", "/share").await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut copied = 0;
    while copies.try_recv().is_ok() {
        copied += 1;
    }
    // Binomial(400, 1/4): mean 100, standard deviation 8.7; four of them either side.
    assert!((65..=135).contains(&copied), "{copied} of {n} copied");
}
