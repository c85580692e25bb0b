//! Hostile HTTP/1 input over raw sockets: request smuggling attempts (conflicting or
//! obfuscated framing, obs-fold, invalid bytes, absolute-form targets, requests hidden in
//! bodies) and oversized heads. Each is either refused (400, 414, 431, 501) with nothing
//! forwarded, or normalised so that the backend receives exactly one well-formed request
//! with a single framing header. The backend is a strict recorder written here, not hyper,
//! so that it does not share the proxy's parser and its leniencies: it logs every request it
//! parses and flags any framing a compliant server would have to guess about.
//!
//! (Over 600 lines: one table of attack cases and the strict recording backend they share.)

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{find, proxy, router_config, rule, state_with, url};
use lockstep_proxy::{ProxyOptions, Server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How long a test waits for any single read; only reached when something is wrong.
const WAIT: Duration = Duration::from_secs(5);

/// One request as the recording backend parsed it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Anything a strict HTTP/1.1 server would reject or have to guess about.
    problems: Vec<String>,
}

impl Seen {
    fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// A backend that parses requests itself, strictly, and records each one.
struct Recorder {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record_connection(stream, sink.clone()));
            }
        });
        Self { addr, log, task }
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

/// Reads more bytes into `buf`; false on EOF or error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    matches!(stream.read_buf(buf).await, Ok(n) if n > 0)
}

/// Takes `n` bytes off the front of `buf`, reading as needed.
async fn take_exact(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<Vec<u8>> {
    while buf.len() < n {
        if !fill(stream, buf).await {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

/// Takes one CRLF-terminated line off the front of `buf` (without the CRLF).
async fn take_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            return Some(line[..i].to_vec());
        }
        if buf.len() > 64 * 1024 || !fill(stream, buf).await {
            return None;
        }
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

async fn record_connection(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > 1024 * 1024 || !fill(&mut stream, &mut buf).await {
                if !buf.is_empty() {
                    log.lock().expect("log").push(Seen {
                        method: String::new(),
                        target: String::new(),
                        headers: Vec::new(),
                        body: std::mem::take(&mut buf),
                        problems: vec!["bytes that are not a complete request head".into()],
                    });
                }
                return;
            }
        };
        let head: Vec<u8> = buf.drain(..head_end + 4).collect();
        let head = String::from_utf8_lossy(&head[..head_end]).into_owned();
        let mut problems = Vec::new();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let parts: Vec<&str> = request_line.split(' ').collect();
        if parts.len() != 3 || parts[2] != "HTTP/1.1" || !parts[1].starts_with('/') {
            problems.push(format!("request line {request_line:?}"));
        }
        let mut headers = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                problems.push(format!("obs-fold {line:?}"));
                continue;
            }
            if line.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                problems.push(format!("control byte in {line:?}"));
            }
            match line.split_once(':') {
                Some((name, value)) if is_token(name) => {
                    headers.push((
                        name.to_ascii_lowercase(),
                        value.trim_matches([' ', '\t']).to_owned(),
                    ));
                }
                _ => problems.push(format!("header line {line:?}")),
            }
        }
        let mut seen = Seen {
            method: parts.first().copied().unwrap_or("").to_owned(),
            target: parts.get(1).copied().unwrap_or("").to_owned(),
            headers,
            body: Vec::new(),
            problems,
        };
        let lengths: Vec<String> = seen
            .headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.clone())
            .collect();
        let codings: Vec<String> = seen
            .headers
            .iter()
            .filter(|(n, _)| n == "transfer-encoding")
            .map(|(_, v)| v.clone())
            .collect();
        if !lengths.is_empty() && !codings.is_empty() {
            seen.problems
                .push("both Content-Length and Transfer-Encoding".into());
        }
        if lengths.len() > 1 {
            seen.problems.push(format!("Content-Length {lengths:?}"));
        }
        if codings.len() > 1 || codings.first().is_some_and(|c| c != "chunked") {
            seen.problems.push(format!("Transfer-Encoding {codings:?}"));
        }
        if seen.header_count("host") != 1 {
            seen.problems.push("not exactly one Host".into());
        }
        let complete = if !codings.is_empty() {
            read_chunked(&mut stream, &mut buf, &mut seen).await
        } else if let Some(length) = lengths.first() {
            match length.parse::<usize>() {
                Ok(n) if length.bytes().all(|b| b.is_ascii_digit()) => {
                    match take_exact(&mut stream, &mut buf, n).await {
                        Some(body) => {
                            seen.body = body;
                            true
                        }
                        None => false,
                    }
                }
                _ => {
                    seen.problems.push(format!("Content-Length {length:?}"));
                    false
                }
            }
        } else {
            true
        };
        if !complete {
            seen.problems.push("incomplete body".into());
        }
        let keep_going = seen.problems.is_empty();
        log.lock().expect("log").push(seen);
        if !keep_going {
            return;
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, seen: &mut Seen) -> bool {
    // Bounded: a body of more than this many chunks is not something these tests send.
    for _ in 0..100_000 {
        let Some(line) = take_line(stream, buf).await else {
            return false;
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let size = line.split(';').next().unwrap_or("");
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            seen.problems.push(format!("chunk size line {line:?}"));
            return false;
        }
        let Ok(size) = usize::from_str_radix(size, 16) else {
            seen.problems.push(format!("chunk size {size:?}"));
            return false;
        };
        if size == 0 {
            // Trailer section, up to an empty line.
            loop {
                match take_line(stream, buf).await {
                    Some(l) if l.is_empty() => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
        }
        let Some(data) = take_exact(stream, buf, size + 2).await else {
            return false;
        };
        if !data.ends_with(b"\r\n") {
            seen.problems.push("chunk data not followed by CRLF".into());
            return false;
        }
        seen.body.extend_from_slice(&data[..size]);
    }
    false
}

/// What a client got back on one connection.
#[derive(Debug)]
struct Reply {
    /// Status code, body and head of each complete response, in order.
    responses: Vec<(u16, String, String)>,
    /// The proxy closed the connection (EOF or reset) after those responses.
    closed: bool,
}

impl Reply {
    fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|(s, ..)| *s).collect()
    }
}

/// Reads one response (all the proxy's responses here carry Content-Length): its status,
/// body and head; None when the connection ends first.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, String, String)> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        match tokio::time::timeout(WAIT, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.get(9..12)?.parse().ok()?;
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + 4 + length {
        match tokio::time::timeout(WAIT, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
    let message: Vec<u8> = buf.drain(..head_end + 4 + length).collect();
    Some((
        status,
        String::from_utf8_lossy(&message[head_end + 4..]).into_owned(),
        head,
    ))
}

/// Sends `bytes` on a new connection and reads up to `expected` responses.
async fn exchange(proxy: SocketAddr, bytes: &[u8], expected: usize) -> Reply {
    exchange_then(proxy, bytes, expected, false).await
}

/// Like [`exchange`], then (when `check_close`) waits to see whether the proxy closes the
/// connection.
async fn exchange_then(proxy: SocketAddr, bytes: &[u8], expected: usize, check_close: bool) -> Reply {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to the proxy");
    // The proxy may answer and close before reading everything (a refused head); a failed
    // write is then expected, and what was answered is still read below.
    let _ = stream.write_all(bytes).await;
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    while responses.len() < expected {
        match read_response(&mut stream, &mut buf).await {
            Some(r) => responses.push(r),
            None => {
                return Reply {
                    responses,
                    closed: true,
                };
            }
        }
    }
    let closed = check_close
        && buf.is_empty()
        && matches!(
            tokio::time::timeout(WAIT, stream.read_buf(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        );
    Reply { responses, closed }
}

struct Rig {
    backend: Recorder,
    server: Server,
}

async fn rig(options: ProxyOptions) -> Rig {
    let backend = Recorder::start().await;
    let state = state_with(&router_config(
        "web",
        &[
            rule("app.test", "/", &url(backend.addr)),
            rule("other.test", "/", &url(backend.addr)),
        ],
    ));
    let server = proxy(state, options).await;
    Rig { backend, server }
}

impl Rig {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A well-formed request still goes through, on a new connection, and arrives intact.
    async fn still_serves(&self, case: &str) {
        let reply = exchange(
            self.addr(),
            b"POST /next HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\r\nnext",
            1,
        )
        .await;
        assert_eq!(reply.statuses(), [200], "after {case}: the next client is served");
        let seen = self.backend.take();
        assert_eq!(seen.len(), 1, "after {case}: {seen:#?}");
        assert_eq!(seen[0].method, "POST", "after {case}: {seen:#?}");
        assert_eq!(seen[0].target, "/next", "after {case}: {seen:#?}");
        assert_eq!(seen[0].body, b"next", "after {case}: {seen:#?}");
        assert!(seen[0].problems.is_empty(), "after {case}: {seen:#?}");
    }

    /// `bytes` is refused with `status`, the connection is closed (the rest of what was
    /// sent is never read as a request), nothing reaches the backend, and the proxy serves
    /// the next client.
    async fn refused(&self, case: &str, bytes: &[u8], status: u16) {
        let reply = exchange_then(self.addr(), bytes, 1, true).await;
        assert_eq!(reply.statuses(), [status], "{case}: {reply:?}");
        assert!(reply.closed, "{case}: the connection must be closed: {reply:?}");
        let seen = self.backend.take();
        assert!(seen.is_empty(), "{case}: forwarded to the backend: {seen:#?}");
        self.still_serves(case).await;
    }

    /// Like [`Rig::refused`] for a request whose framing is sound (no body): the connection
    /// may stay open.
    async fn refused_keep_alive(&self, case: &str, bytes: &[u8], status: u16) {
        let reply = exchange(self.addr(), bytes, 1).await;
        assert_eq!(reply.statuses(), [status], "{case}: {reply:?}");
        let seen = self.backend.take();
        assert!(seen.is_empty(), "{case}: forwarded to the backend: {seen:#?}");
        self.still_serves(case).await;
    }

    /// `bytes` is answered 200 and the backend received exactly one well-formed request for
    /// `target` with `body`, framed by a single header, with nothing smuggled after it.
    async fn normalised(
        &self,
        case: &str,
        bytes: &[u8],
        target: &str,
        body: &[u8],
        check_close: bool,
    ) -> Reply {
        let reply = exchange_then(self.addr(), bytes, 1, check_close).await;
        assert_eq!(reply.statuses(), [200], "{case}: {reply:?}");
        assert_eq!(reply.responses[0].1, "ok", "{case}: the backend's answer");
        let seen = self.backend.take();
        assert_eq!(seen.len(), 1, "{case}: exactly one request forwarded: {seen:#?}");
        let one = &seen[0];
        assert!(one.problems.is_empty(), "{case}: {one:#?}");
        assert_eq!(one.target, target, "{case}: {one:#?}");
        assert_eq!(
            String::from_utf8_lossy(&one.body),
            String::from_utf8_lossy(body),
            "{case}"
        );
        assert_eq!(
            one.header_count("content-length") + one.header_count("transfer-encoding"),
            usize::from(!body.is_empty()),
            "{case}: one framing header: {one:#?}"
        );
        self.still_serves(case).await;
        reply
    }
}

const HIDDEN: &str = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";

#[tokio::test]
async fn the_recorder_sees_a_genuinely_pipelined_request() {
    // The control case: the oracle of the other tests can tell two requests from one.
    let rig = rig(ProxyOptions::default()).await;
    let bytes = format!("POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n{HIDDEN}");
    let reply = exchange(rig.addr(), bytes.as_bytes(), 2).await;
    assert_eq!(reply.statuses(), [200, 200], "{reply:?}");
    let seen = rig.backend.take();
    let requests: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.target.as_str()))
        .collect();
    assert_eq!(requests, [("POST", "/first"), ("GET", "/smuggled")], "{seen:#?}");
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together_are_400_and_close() {
    // RFC 9112 §6.1: a message with both is a probable smuggling attempt; a server may
    // refuse it, and nginx does (400, connection closed). Nothing of it reaches the backend,
    // and the bytes after it are never read as a request.
    let rig = rig(ProxyOptions::default()).await;
    for (case, framing) in [
        (
            "CL then TE",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
        ),
        (
            "CL, TE, CL",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n",
        ),
        (
            "lower case, no spaces",
            "content-length:0\r\ntransfer-encoding:chunked\r\n",
        ),
        (
            "CL 0 before a chunked body",
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let bytes = format!(
            "POST /upload HTTP/1.1\r\nHost: app.test\r\n{framing}\r\n5\r\nhello\r\n0\r\n\r\n{HIDDEN}"
        );
        rig.refused(case, bytes.as_bytes(), 400).await;
    }
}

#[tokio::test]
async fn content_length_and_transfer_encoding_after_a_good_request_are_400_and_close() {
    // The second request of a keep-alive connection, pipelined: the first is served, the
    // second refused, and the connection closed after it.
    let rig = rig(ProxyOptions::default()).await;
    let bytes = format!(
        "POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nfirst\
         POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
         POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n{HIDDEN}"
    );
    let reply = exchange_then(rig.addr(), bytes.as_bytes(), 3, true).await;
    assert_eq!(reply.statuses(), [200, 200, 400], "{reply:?}");
    assert!(reply.closed, "the connection must be closed: {reply:?}");
    let seen = rig.backend.take();
    let got: Vec<(&str, &[u8])> = seen
        .iter()
        .map(|s| (s.target.as_str(), s.body.as_slice()))
        .collect();
    assert_eq!(
        got,
        [("/first", &b"first"[..]), ("/chunked", &b"two"[..])],
        "{seen:#?}"
    );
    assert!(seen.iter().all(|s| s.problems.is_empty()), "{seen:#?}");
    rig.still_serves("both framing headers on a kept-alive connection")
        .await;
}

#[tokio::test]
async fn conflicting_or_malformed_content_length_is_400() {
    let rig = rig(ProxyOptions::default()).await;
    for (case, framing) in [
        (
            "two Content-Length values",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ),
        ("a Content-Length list", "Content-Length: 5, 6\r\n"),
        ("a repeated list", "Content-Length: 5, 5\r\n"),
        ("a sign", "Content-Length: +5\r\n"),
        ("hex", "Content-Length: 0x5\r\n"),
        ("negative", "Content-Length: -1\r\n"),
        ("two numbers", "Content-Length: 5 5\r\n"),
        ("overflow", "Content-Length: 99999999999999999999999\r\n"),
    ] {
        let bytes = format!("POST /upload HTTP/1.1\r\nHost: app.test\r\n{framing}\r\nhello{HIDDEN}");
        rig.refused(case, bytes.as_bytes(), 400).await;
    }
}

#[tokio::test]
async fn transfer_codings_other_than_a_single_chunked_are_refused() {
    let rig = rig(ProxyOptions::default()).await;
    let body = format!("5\r\nhello\r\n0\r\n\r\n{HIDDEN}");
    for (case, framing, status) in [
        // chunked not last: the length cannot be known (RFC 9112 §6.3).
        (
            "chunked, identity",
            "Transfer-Encoding: chunked, identity\r\n",
            400,
        ),
        ("xchunked", "Transfer-Encoding: xchunked\r\n", 400),
        ("chunked-false", "Transfer-Encoding: chunked-false\r\n", 400),
        ("a space before the colon", "Transfer-Encoding : chunked\r\n", 400),
        ("a quoted value", "Transfer-Encoding: \"chunked\"\r\n", 400),
        (
            "chunked twice in one field",
            "Transfer-Encoding: chunked, chunked\r\n",
            400,
        ),
        (
            "chunked twice in two fields",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        (
            "an empty coding before chunked",
            "Transfer-Encoding: , chunked\r\n",
            400,
        ),
        // A coding the proxy does not implement (RFC 9112 §6.1: 501). Forwarding it with
        // Transfer-Encoding stripped would hand the backend gzip bytes as content.
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n", 501),
        (
            "gzip and chunked in two fields",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            501,
        ),
        (
            "gzip, chunked with Content-Length",
            "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
            501,
        ),
    ] {
        let bytes = format!("POST /upload HTTP/1.1\r\nHost: app.test\r\n{framing}\r\n{body}");
        rig.refused(case, bytes.as_bytes(), status).await;
    }
    // HTTP/1.0 has no Transfer-Encoding.
    let bytes =
        format!("POST /upload HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    rig.refused("chunked in HTTP/1.0", bytes.as_bytes(), 400).await;
}

#[tokio::test]
async fn whitespace_around_chunked_is_normalised() {
    // Optional whitespace (SP or HTAB) around a field value is not part of it (RFC 9110
    // §5.5), and codings are case-insensitive: these are plain chunked bodies.
    let rig = rig(ProxyOptions::default()).await;
    for (case, framing) in [
        ("a tab before chunked", "Transfer-Encoding:\tchunked\r\n"),
        ("no space", "Transfer-Encoding:chunked\r\n"),
        ("trailing whitespace", "Transfer-Encoding: chunked \t\r\n"),
        ("upper case", "Transfer-Encoding: CHUNKED\r\n"),
    ] {
        let bytes =
            format!("POST /upload HTTP/1.1\r\nHost: app.test\r\n{framing}\r\n5\r\nhello\r\n0\r\n\r\n");
        rig.normalised(case, bytes.as_bytes(), "/upload", b"hello", false)
            .await;
    }
}

#[tokio::test]
async fn obs_fold_and_invalid_header_bytes_are_400() {
    let rig = rig(ProxyOptions::default()).await;
    for (case, head) in [
        (
            "obs-fold continuing Transfer-Encoding",
            &b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: identity\r\n chunked\r\nContent-Length: 5\r\n\r\n"[..],
        ),
        (
            "obs-fold with a tab",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n\tb\r\n\r\n",
        ),
        (
            "a header line starting with a space after the request line",
            b"GET / HTTP/1.1\r\n Host: app.test\r\n\r\n",
        ),
        (
            "obs-fold hiding a second Host",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n Host: other.test\r\n\r\n",
        ),
        (
            "NUL in a value",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "CR alone in a value",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "DEL in a value",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\x7fb\r\n\r\n",
        ),
        (
            "NUL in a name",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX\0A: b\r\n\r\n",
        ),
        (
            "non-ASCII in a name",
            "GET / HTTP/1.1\r\nHost: app.test\r\nX-Ä: b\r\n\r\n".as_bytes(),
        ),
        (
            "a space in a name",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX A: b\r\n\r\n",
        ),
        (
            "an empty name",
            b"GET / HTTP/1.1\r\nHost: app.test\r\n: b\r\n\r\n",
        ),
        (
            "a space in the target",
            b"GET /a b HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
        (
            "NUL in the target",
            b"GET /a\0b HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
        (
            "a bad version",
            b"GET / HTTP/1.1x\r\nHost: app.test\r\n\r\n",
        ),
        (
            "a bad method",
            b"G(T / HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
    ] {
        rig.refused(case, head, 400).await;
    }
}

#[tokio::test]
async fn requests_without_a_usable_host_are_400() {
    let rig = rig(ProxyOptions::default()).await;
    for (case, request) in [
        ("HTTP/1.0 without Host", &b"GET / HTTP/1.0\r\n\r\n"[..]),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("an empty Host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n",
        ),
        (
            "a Host with a path",
            b"GET / HTTP/1.1\r\nHost: app.test/evil\r\n\r\n",
        ),
        (
            "a Host with userinfo",
            b"GET / HTTP/1.1\r\nHost: other.test@app.test\r\n\r\n",
        ),
        (
            "a Host with a bad port",
            b"GET / HTTP/1.1\r\nHost: app.test:80x\r\n\r\n",
        ),
    ] {
        rig.refused_keep_alive(case, request, 400).await;
    }
    // Refused before its body was read: the body must not be read as the next request.
    let bytes = format!(
        "POST /upload HTTP/1.1\r\nContent-Length: {}\r\n\r\n{HIDDEN}",
        HIDDEN.len()
    );
    rig.refused("no Host, with a body", bytes.as_bytes(), 400).await;
    let bytes = format!("POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HIDDEN}");
    rig.refused("no Host, with a chunked body", bytes.as_bytes(), 400)
        .await;
    // HTTP/1.0 with a Host is fine, and the connection closes after it (1.0's default).
    let reply = exchange_then(
        rig.addr(),
        b"GET /ten HTTP/1.0\r\nHost: app.test\r\n\r\n",
        1,
        true,
    )
    .await;
    assert_eq!(reply.statuses(), [200], "{reply:?}");
    assert!(reply.closed, "{reply:?}");
    let seen = rig.backend.take();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].target, "/ten");
    assert!(seen[0].problems.is_empty(), "{seen:#?}");
}

#[tokio::test]
async fn absolute_form_targets_route_by_their_own_authority() {
    // RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host. The backend
    // must see that host, in origin form, with a single Host; a target naming a host the
    // proxy does not serve is 404 whatever Host says.
    let rig = rig(ProxyOptions::default()).await;
    let reply = exchange(
        rig.addr(),
        b"GET http://internal.invalid/admin HTTP/1.1\r\nHost: app.test\r\n\r\n",
        1,
    )
    .await;
    assert_eq!(reply.statuses(), [404], "{reply:?}");
    assert!(rig.backend.take().is_empty());
    for (case, request) in [
        (
            "userinfo naming a served host",
            &b"GET http://app.test@internal.invalid/ HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        ),
        (
            "a non-http scheme",
            b"GET ftp://app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
    ] {
        let reply = exchange(rig.addr(), request, 1).await;
        assert_eq!(reply.statuses(), [400], "{case}: {reply:?}");
        let seen = rig.backend.take();
        assert!(seen.is_empty(), "{case}: forwarded: {seen:#?}");
    }

    let reply = exchange(
        rig.addr(),
        b"GET http://other.test/x?y=1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        1,
    )
    .await;
    assert_eq!(reply.statuses(), [200], "{reply:?}");
    let seen = rig.backend.take();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(seen[0].problems.is_empty(), "{seen:#?}");
    assert_eq!(seen[0].target, "/x?y=1");
    let hosts: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| n == "host")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(hosts, ["other.test"], "{seen:#?}");
    rig.still_serves("absolute form").await;
}

#[tokio::test]
async fn connect_and_asterisk_targets_are_never_tunnelled() {
    let rig = rig(ProxyOptions::default()).await;
    for (case, request, status) in [
        (
            "CONNECT to a served host",
            &b"CONNECT app.test:80 HTTP/1.1\r\nHost: app.test:80\r\n\r\n"[..],
            405,
        ),
        (
            "CONNECT elsewhere",
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: app.test\r\n\r\n",
            405,
        ),
        // No route has the path "*".
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n", 404),
    ] {
        let reply = exchange(rig.addr(), request, 1).await;
        assert_eq!(reply.statuses(), [status], "{case}: {reply:?}");
        let seen = rig.backend.take();
        assert!(seen.is_empty(), "{case}: forwarded: {seen:#?}");
        rig.still_serves(case).await;
    }
}

#[tokio::test]
async fn requests_hidden_in_bodies_stay_bodies() {
    let rig = rig(ProxyOptions::default()).await;
    let bytes = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{HIDDEN}",
        HIDDEN.len()
    );
    rig.normalised(
        "a request inside a Content-Length body",
        bytes.as_bytes(),
        "/upload",
        HIDDEN.as_bytes(),
        false,
    )
    .await;
    let bytes = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{HIDDEN}\r\n0\r\n\r\n",
        HIDDEN.len()
    );
    rig.normalised(
        "a request inside a chunk",
        bytes.as_bytes(),
        "/upload",
        HIDDEN.as_bytes(),
        false,
    )
    .await;
    // A chunk size that lies: the proxy must not hand the rest to the backend as a request.
    let bytes = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello{HIDDEN}\r\n0\r\n\r\n"
    );
    let reply = exchange_then(rig.addr(), bytes.as_bytes(), 1, true).await;
    assert!(
        reply.statuses().iter().all(|s| *s >= 400),
        "a broken body is not a success: {reply:?}"
    );
    assert!(reply.closed, "{reply:?}");
    // The backend saw the start of the upload, then the proxy abandoned it; wait (bounded)
    // until it has recorded that.
    for _ in 0..100 {
        if !rig.backend.log.lock().expect("log").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = rig.backend.take();
    assert!(
        seen.iter()
            .all(|s| s.target == "/upload" && !s.target.contains("smuggled")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .all(|s| !String::from_utf8_lossy(&s.body).contains("smuggled")),
        "{seen:#?}"
    );
    rig.still_serves("a lying chunk size").await;
    // Connection-named framing headers are hop-by-hop; the body must still be framed.
    let bytes = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nConnection: content-length, transfer-encoding\r\nContent-Length: {}\r\n\r\n{HIDDEN}",
        HIDDEN.len()
    );
    rig.normalised(
        "Connection naming Content-Length",
        bytes.as_bytes(),
        "/upload",
        HIDDEN.as_bytes(),
        false,
    )
    .await;
    let bytes = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{HIDDEN}"
    );
    let reply = exchange(rig.addr(), bytes.as_bytes(), 2).await;
    assert_eq!(reply.statuses(), [200, 200], "{reply:?}");
    let seen = rig.backend.take();
    let got: Vec<(&str, &[u8])> = seen
        .iter()
        .map(|s| (s.target.as_str(), s.body.as_slice()))
        .collect();
    // The second request is a real pipelined request as the proxy framed it, forwarded as
    // one; it is not hidden in the first one's body.
    assert_eq!(
        got,
        [("/upload", &b"hello"[..]), ("/smuggled", &b""[..])],
        "{seen:#?}"
    );
    assert!(seen.iter().all(|s| s.problems.is_empty()), "{seen:#?}");
}

#[tokio::test]
async fn oversized_heads_and_targets_are_431_and_answered_cleanly() {
    // The head limit covers the request line: a target that does not fit is 431 like any
    // other oversized head (hyper's own 414 is only reachable with a limit above 64 KiB).
    let rig = rig(ProxyOptions {
        max_header_bytes: 16 * 1024,
        ..Default::default()
    })
    .await;
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    rig.refused("a 20 KiB target", long_target.as_bytes(), 431).await;
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    rig.refused("a 20 KiB header", long_header.as_bytes(), 431).await;
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: app.test\r\n{many}\r\n");
    rig.refused("200 headers", many.as_bytes(), 431).await;
    // Far beyond the limit, still being sent when the proxy answers: the client must get
    // the 431, not a reset that loses it.
    let huge_target = format!(
        "GET /{} HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "a".repeat(4 * 1024 * 1024)
    );
    rig.refused("a 4 MiB target", huge_target.as_bytes(), 431).await;
    let endless_header = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}",
        "a".repeat(4 * 1024 * 1024)
    );
    rig.refused("a 4 MiB header line", endless_header.as_bytes(), 431)
        .await;
}

#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_says_close_and_closes() {
    // A request refused before its body was read (here: no route for the host) is answered
    // with `Connection: close`, and the connection is closed: the unread body must never be
    // read as the next request, and the client is told so rather than left to find out.
    let rig = rig(ProxyOptions::default()).await;
    let bytes = b"POST /x HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 100\r\n\r\n";
    let reply = exchange_then(rig.addr(), bytes, 1, true).await;
    assert_eq!(reply.statuses(), [404], "{reply:?}");
    let head = reply.responses[0].2.to_ascii_lowercase();
    assert_eq!(head.matches("connection:").count(), 1, "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(reply.closed, "the connection must be closed: {reply:?}");
    assert!(rig.backend.take().is_empty());
}
