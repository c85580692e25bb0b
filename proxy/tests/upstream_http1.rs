//! The proxy's own HTTP/1 upstream client against backends on raw sockets that answer in
//! every way HTTP/1 allows and several it does not: responses whose length reads two
//! ways, bytes beyond a response (a response desync), informational answers, bodies that
//! end with the connection or before their length, and pooled connections the backend
//! closes just as a request goes out.

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
use http_body_util::BodyExt;
use lockstep_proxy::ProxyOptions;
use tokio::{io::AsyncWriteExt, net::TcpListener};

/// What the backend does with a request: the bytes it writes, and then whether it closes
/// the connection.
enum Reply {
    Keep(Vec<u8>),
    Close(Vec<u8>),
}

/// `answer` is given the request head and how many requests the connection carried
/// before it.
type Script = fn(&str, usize) -> Reply;

struct RawBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_backend(answer: Script) -> RawBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                while let Some(head) = read_head(&mut stream, &mut buf).await {
                    let reply = answer(&head, served);
                    served += 1;
                    let (bytes, close) = match reply {
                        Reply::Keep(bytes) => (bytes, false),
                        Reply::Close(bytes) => (bytes, true),
                    };
                    if stream.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    RawBackend {
        addr,
        connections,
        task,
    }
}

async fn single_route(backend: SocketAddr) -> lockstep_proxy::Server {
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(backend))]));
    proxy(state, ProxyOptions::default()).await
}

fn path(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn responses_whose_length_reads_two_ways_or_that_are_malformed_are_502() {
    let be = raw_backend(|head, _| {
        let bytes: &[u8] = match path(head) {
            "/cl-te" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            }
            "/two-cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "/cl-list" => b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
            "/te-gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
            "/te-10" => b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "/fold" => b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
            "/status" => b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            "/not-http" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "/nul" => b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        Reply::Close(bytes.to_vec())
    })
    .await;
    let server = single_route(be.addr).await;
    let client = client();
    for bad in [
        "/cl-te",
        "/two-cl",
        "/cl-list",
        "/te-gzip",
        "/te-10",
        "/fold",
        "/status",
        "/not-http",
        "/nul",
    ] {
        let response = get(&client, server.local_addr(), "app.test", bad).await;
        assert_eq!(response.status(), 502, "{bad}: {}", text(&response));
    }
    let response = get(&client, server.local_addr(), "app.test", "/good").await;
    assert_eq!(
        (response.status().as_u16(), text(&response).as_str()),
        (200, "ok")
    );
}

#[tokio::test]
async fn a_response_head_over_the_limit_is_502() {
    let be = raw_backend(|_, _| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Big: ".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', 70 * 1024));
        bytes.extend_from_slice(b"\r\n\r\n");
        Reply::Close(bytes)
    })
    .await;
    let server = single_route(be.addr).await;
    let response = get(&client(), server.local_addr(), "app.test", "/").await;
    assert_eq!(response.status(), 502);
}

/// A backend that sends more than its response frames (here a whole second response)
/// must not have the extra bytes read as the answer to the next request: the connection
/// is dropped, and the next request gets its own.
#[tokio::test]
async fn bytes_beyond_a_response_never_answer_the_next_request() {
    let be = raw_backend(|head, _| {
        if path(head) == "/one" {
            Reply::Keep(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
                    .to_vec(),
            )
        } else {
            Reply::Keep(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh".to_vec())
        }
    })
    .await;
    let server = single_route(be.addr).await;
    let client = client();
    let first = get(&client, server.local_addr(), "app.test", "/one").await;
    assert_eq!(text(&first), "ok");
    for i in 0..3 {
        let next = get(&client, server.local_addr(), "app.test", "/two").await;
        assert_eq!(text(&next), "fresh", "request {i}");
    }
    // The tainted connection was dropped; the second one carried the rest.
    assert_eq!(be.connections.load(Ordering::SeqCst), 2);
}

/// The same, with the extra bytes sent a moment after the response, while the connection
/// waits in the pool.
#[tokio::test]
async fn bytes_sent_on_an_idle_connection_never_answer_the_next_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let backend = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_head(&mut stream, &mut buf).await {
                    let first = path(&head) == "/one";
                    let answer: &[u8] = if first { b"ok" } else { b"fresh" };
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", answer.len());
                    let _ = stream.write_all(&[head.as_bytes(), answer].concat()).await;
                    if first {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
                            .await;
                    }
                }
            });
        }
    });
    let server = single_route(addr).await;
    let client = client();
    assert_eq!(
        text(&get(&client, server.local_addr(), "app.test", "/one").await),
        "ok"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = get(&client, server.local_addr(), "app.test", "/two").await;
    assert_eq!(text(&next), "fresh");
    backend.abort();
}

#[tokio::test]
async fn informational_answers_are_passed_over_and_endless_ones_are_502() {
    let be = raw_backend(|head, _| {
        if path(head) == "/endless" {
            Reply::Close(b"HTTP/1.1 102 Processing\r\n\r\n".repeat(100))
        } else {
            Reply::Keep(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
            )
        }
    })
    .await;
    let server = single_route(be.addr).await;
    let client = client();
    let response = get(&client, server.local_addr(), "app.test", "/hints").await;
    assert_eq!(
        (response.status().as_u16(), text(&response).as_str()),
        (200, "ok")
    );
    let response = get(&client, server.local_addr(), "app.test", "/endless").await;
    assert_eq!(response.status(), 502);
}

/// A body framed by the connection's end reaches the client whole; its connection is not
/// reused (the next request makes another).
#[tokio::test]
async fn a_body_that_ends_with_the_connection_is_passed_whole() {
    let be = raw_backend(|_, _| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 100_000));
        Reply::Close(bytes)
    })
    .await;
    let server = single_route(be.addr).await;
    let client = client();
    for _ in 0..2 {
        let response = get(&client, server.local_addr(), "app.test", "/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().len(), 100_000);
    }
    assert_eq!(be.connections.load(Ordering::SeqCst), 2);
}

/// A body the upstream cuts short of its Content-Length (or its chunked end) is not passed
/// on as if whole: the client's response fails (before its head when the cut comes before
/// the proxy wrote it, else in its body).
#[tokio::test]
async fn a_body_cut_short_fails_at_the_client() {
    let be = raw_backend(|head, _| {
        Reply::Close(match path(head) {
            "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n".to_vec(),
        })
    })
    .await;
    let server = single_route(be.addr).await;
    let client = client();
    for cut in ["/length", "/chunked"] {
        let response = client
            .request(
                http::Request::get(format!("http://{}{cut}", server.local_addr()))
                    .header("host", "app.test")
                    .body(empty())
                    .expect("request"),
            )
            .await;
        if let Ok(response) = response {
            let body = response.into_body().collect().await;
            assert!(
                body.is_err(),
                "{cut}: a cut body was passed on as whole: {body:?}"
            );
        }
    }
}

/// Chunked answers keep their trailers' place and their data, and the connection is reused.
#[tokio::test]
async fn a_chunked_answer_passes_and_its_connection_is_reused() {
    let be = raw_backend(|_, _| {
        Reply::Keep(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let server = single_route(be.addr).await;
    let client = client();
    for _ in 0..3 {
        let response = get(&client, server.local_addr(), "app.test", "/").await;
        assert_eq!(text(&response), "abcde");
    }
    assert_eq!(be.connections.load(Ordering::SeqCst), 1);
}

/// A pooled connection the backend closes as the next request arrives (it read the request,
/// then closed without a byte of answer): a GET goes again on a new connection; a POST,
/// which the backend may have acted on, is answered 502.
#[tokio::test]
async fn a_pooled_connection_closed_under_a_request_is_retried_only_when_idempotent() {
    let be = raw_backend(|_, served| {
        if served == 0 {
            Reply::Keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
        } else {
            Reply::Close(Vec::new())
        }
    })
    .await;
    let server = single_route(be.addr).await;
    let client = client();
    assert_eq!(
        text(&get(&client, server.local_addr(), "app.test", "/").await),
        "ok"
    );
    let again = get(&client, server.local_addr(), "app.test", "/").await;
    assert_eq!((again.status().as_u16(), text(&again).as_str()), (200, "ok"));
    assert_eq!(be.connections.load(Ordering::SeqCst), 2);

    let post = send(
        &client,
        http::Request::post(format!("http://{}/", server.local_addr()))
            .header("host", "app.test")
            .body(empty())
            .expect("request"),
    )
    .await;
    assert_eq!(post.status(), 502);
}

/// An HTTP/1 client of a route that changes no response field gets the upstream's fields
/// as it sent them (names in its case, in its order), without the hop-by-hop ones and with
/// the proxy's own framing; an HTTP/2 client gets the same fields from a map.
#[tokio::test]
async fn response_fields_reach_clients_as_sent_without_hop_by_hop_ones() {
    let be = raw_backend(|head, _| match path(head) {
        "/fields" => Reply::Keep(
            b"HTTP/1.1 200 OK\r\nServer: raw\r\nX-Mixed-Case: A\r\nKeep-Alive: timeout=5\r\n\
              Connection: keep-alive\r\nProxy-Authenticate: Basic\r\nTrailer: x-t\r\nTE: trailers\r\n\
              Upgrade: h2c\r\nContent-Length: 2\r\nDate: Sat, 05 Dec 2026 04:00:00 GMT\r\n\r\nok"
                .to_vec(),
        ),
        "/named" => Reply::Keep(
            b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        ),
        _ => Reply::Keep(b"HTTP/1.1 200 OK\r\nX-Chunked: yes\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec()),
    })
    .await;
    let server = single_route(be.addr).await;
    let proxy = server.local_addr();
    let wait = Duration::from_secs(5);
    let lowercase_lines = |text: &str| -> Vec<String> {
        let head = &text[..text.find("\r\n\r\n").expect("a whole head")];
        head.lines().skip(1).map(str::to_ascii_lowercase).collect()
    };
    let hop_by_hop = [
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "te",
        "upgrade",
        "x-secret",
    ];

    let text = raw(
        proxy,
        b"GET /fields HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nServer: raw\r\nX-Mixed-Case: A\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nDate: Sat, 05 Dec 2026 04:00:00 GMT\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
    let lines = lowercase_lines(&text);
    for (name, count) in [("date", 1), ("content-length", 1), ("connection", 1)] {
        let seen = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{name}:")))
            .count();
        assert_eq!(seen, count, "{name}: {text}");
    }
    assert!(lines.contains(&"content-length: 2".to_owned()), "{text}");
    assert!(lines.contains(&"connection: close".to_owned()), "{text}");
    for gone in hop_by_hop {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{gone}:"))),
            "{gone}: {text}"
        );
    }

    // A Connection field naming another field takes both away.
    let text = raw(
        proxy,
        b"GET /named HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    let lines = lowercase_lines(&text);
    assert!(lines.contains(&"x-kept: 2".to_owned()), "{text}");
    assert!(!lines.iter().any(|l| l.starts_with("x-secret")), "{text}");
    assert!(!lines.contains(&"connection: x-secret".to_owned()), "{text}");

    // A chunked body is chunked to an HTTP/1.1 client and ends with the connection to an
    // HTTP/1.0 one.
    let text = raw(
        proxy,
        b"GET /chunked HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert!(text.contains("\r\nX-Chunked: yes\r\n"), "{text}");
    assert!(
        lowercase_lines(&text).contains(&"transfer-encoding: chunked".to_owned()),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n2\r\nok\r\n0\r\n\r\n"), "{text}");
    let text = raw(proxy, b"GET /chunked HTTP/1.0\r\nHost: app.test\r\n\r\n", wait).await;
    let lines = lowercase_lines(&text);
    assert!(
        !lines.iter().any(|l| l.starts_with("transfer-encoding")),
        "{text}"
    );
    assert!(lines.contains(&"connection: close".to_owned()), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");

    // HTTP/2: the same fields, from a map.
    let mut h2 = h2_connect(proxy).await;
    let request = http::Request::get("http://app.test/fields")
        .body(empty())
        .expect("req");
    let response = h2.send_request(request).await.expect("h2");
    let fields = response.headers();
    assert_eq!(fields["server"], "raw");
    assert_eq!(fields["x-mixed-case"], "A");
    assert_eq!(fields["date"], "Sat, 05 Dec 2026 04:00:00 GMT");
    for gone in hop_by_hop.iter().chain(&["connection"]) {
        assert!(!fields.contains_key(*gone), "{gone}: {fields:?}");
    }
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"ok");
}
