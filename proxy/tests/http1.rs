//! The proxy's own HTTP/1.1 server over raw sockets: pipelined requests with bodies of
//! every framing answered in order, responses framed for what the client can read
//! (Content-Length, chunked, close-delimited for HTTP/1.0, nothing after HEAD), HTTP/1.0
//! keep-alive, `Expect: 100-continue`, and the bytes a client sends right after an
//! upgrade head.

mod common;

use std::time::Duration;

use common::{backend, find, proxy, router_config, rule, state_with, url};
use lockstep_proxy::ProxyOptions;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const WAIT: Duration = Duration::from_secs(5);

/// One response as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    matches!(tokio::time::timeout(WAIT, stream.read_buf(buf)).await, Ok(Ok(n)) if n > 0)
}

/// Reads one response, framed as its head says (`head_request`: no body follows).
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Answer {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        assert!(more(stream, buf).await, "connection ended before a head: {buf:?}");
    };
    let head = String::from_utf8(buf.drain(..end + 4).collect()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line")[9..12].parse().expect("status");
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 || status / 100 == 1 {
        return answer;
    }
    if let Some(length) = answer.header("content-length") {
        let length: usize = length.parse().expect("length");
        while buf.len() < length {
            assert!(more(stream, buf).await, "body cut short");
        }
        answer.body = buf.drain(..length).collect();
    } else if answer.header("transfer-encoding") == Some("chunked") {
        loop {
            let line = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                assert!(more(stream, buf).await, "chunk size cut short");
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line]).expect("size"), 16).expect("hex");
            buf.drain(..line + 2);
            if size == 0 {
                while find(buf, b"\r\n").is_none() {
                    assert!(more(stream, buf).await, "trailers cut short");
                }
                let end = find(buf, b"\r\n").expect("end");
                buf.drain(..end + 2);
                break;
            }
            while buf.len() < size + 2 {
                assert!(more(stream, buf).await, "chunk cut short");
            }
            answer.body.extend(buf.drain(..size));
            assert_eq!(buf.drain(..2).collect::<Vec<u8>>(), b"\r\n");
        }
    } else {
        // Close-delimited.
        while more(stream, buf).await {}
        answer.body = std::mem::take(buf);
    }
    answer
}

async fn setup() -> (common::Backend, lockstep_proxy::Server) {
    let be = backend("one").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(be.addr))]));
    let server = proxy(state, ProxyOptions::default()).await;
    (be, server)
}

#[tokio::test]
async fn pipelined_requests_with_bodies_are_answered_in_order() {
    let (_be, server) = setup().await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    // Four requests in one write: a Content-Length body, a chunked body with an extension
    // and trailers, a HEAD, and a plain GET.
    stream
        .write_all(
            b"POST /echo/1 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nfirst\
              POST /echo/2 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nsec\r\n3\r\nond\r\n0\r\nX-Trailer: t\r\n\r\n\
              HEAD /bytes/7 HTTP/1.1\r\nHost: app.test\r\n\r\n\
              GET /third HTTP/1.1\r\nHost: app.test\r\n\r\n",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let first = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, &b"first"[..]),
        "{first:?}"
    );
    let second = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(
        (second.status, second.body.as_slice()),
        (200, &b"second"[..]),
        "{second:?}"
    );
    let head = read_answer(&mut stream, &mut buf, true).await;
    assert_eq!(head.status, 200, "{head:?}");
    let third = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(third.status, 200, "{third:?}");
    assert!(
        String::from_utf8_lossy(&third.body).starts_with("GET /third HTTP/1.1"),
        "the HEAD answer carried no body bytes: {third:?}"
    );
    assert!(buf.is_empty(), "nothing after the fourth answer: {buf:?}");
}

#[tokio::test]
async fn http10_clients_get_close_delimited_bodies_or_keep_alive_when_asked() {
    let (_be, server) = setup().await;
    // A streamed body of unknown length cannot be chunked for HTTP/1.0: it ends with the
    // connection.
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream
        .write_all(b"GET /bytes/100000 HTTP/1.0\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let streamed = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(
        streamed.header("transfer-encoding"),
        None,
        "{:?}",
        streamed.headers
    );
    assert_eq!(streamed.header("connection"), Some("close"));
    assert_eq!(streamed.body, common::pattern(0, 100_000));

    // Keep-alive when the client asks for it, and said so in the answer.
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    let mut buf = Vec::new();
    for path in ["/a", "/b"] {
        let request = format!("GET {path} HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("connection"), Some("keep-alive"), "{answer:?}");
        assert!(answer.header("content-length").is_some(), "{answer:?}");
    }
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (_be, server) = setup().await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream
        .write_all(
            b"PUT /echo HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let interim = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(interim.status, 100, "{interim:?}");
    stream.write_all(b"hello").await.expect("write body");
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, &b"hello"[..]),
        "{answer:?}"
    );
}

#[tokio::test]
async fn bytes_sent_right_after_an_upgrade_head_reach_the_tunnel() {
    let (_be, server) = setup().await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    // The client does not wait for the 101: its first bytes of the new protocol come in the
    // same write as the head, so they sit in the server's buffer when it switches.
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly bytes",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let switched = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(switched.status, 101, "{switched:?}");
    while buf.len() < b"early bytes".len() {
        assert!(more(&mut stream, &mut buf).await, "the tunnel ended: {buf:?}");
    }
    assert_eq!(buf, b"early bytes");
    stream.write_all(b" and later ones").await.expect("write");
    buf.clear();
    while buf.len() < b" and later ones".len() {
        assert!(more(&mut stream, &mut buf).await, "the tunnel ended: {buf:?}");
    }
    assert_eq!(buf, b" and later ones");
}
