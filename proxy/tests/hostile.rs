//! Hostile clients and backends over real sockets: heads trickled to dodge the head
//! timeout, bodies left unsent to poison the upstream pool, h2c upgrades smuggled past the
//! proxy, retries of requests a backend may already have acted on, and headers by which a
//! client claims what only a proxy should say.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use lockstep_proxy::ProxyOptions;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A backend on raw sockets that answers each head with what `answer` returns, writes it,
/// and then, if `answer` said so, stops reading and writing on that connection for good
/// (it holds the socket open). Request bodies are not read.
struct RawBackend {
    addr: SocketAddr,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answer = fn(&str) -> (Vec<u8>, bool);

async fn raw_backend(answer: Answer) -> RawBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = heads.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_head(&mut stream, &mut buf).await {
                    log.lock().expect("log").push(head.clone());
                    let (bytes, go_silent) = answer(&head);
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                    if go_silent {
                        // Holds the connection open, reading nothing more.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                }
            });
        }
    });
    RawBackend { addr, heads, task }
}

async fn single_route(backend: SocketAddr, options: ProxyOptions) -> lockstep_proxy::Server {
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(backend))]));
    proxy(state, options).await
}

/// Whether the proxy closes `stream` while the client trickles `bytes` to it, one every
/// `every`; gives the time it took.
async fn trickle_until_closed(stream: &mut TcpStream, bytes: &[u8], every: Duration) -> Option<Duration> {
    let started = Instant::now();
    for byte in bytes {
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(every).await;
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            return Some(started.elapsed());
        }
    }
    None
}

/// A lone `P` is also how the HTTP/2 preface starts, but the connection is HTTP/1 as soon
/// as the next byte says so: the head that follows, trickled a byte at a time, is cut at
/// the head timeout like any other (not held for as long as each byte comes within the
/// idle timeout).
#[tokio::test]
async fn a_trickled_head_after_a_lone_first_byte_is_cut_at_the_head_timeout() {
    let be = backend("b").await;
    let server = single_route(
        be.addr,
        ProxyOptions {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream.write_all(b"P").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rest = format!("OST / HTTP/1.1\r\nHost: app.test\r\nX-Slow: {}", "a".repeat(80));
    let closed = trickle_until_closed(&mut stream, rest.as_bytes(), Duration::from_millis(50)).await;
    let Some(after) = closed else {
        panic!("a head trickled for 5 s after a lone `P` was not cut (head timeout 500 ms)");
    };
    assert!(after < Duration::from_millis(2500), "cut after {after:?}");
}

/// A connection's first wait with nothing due within a second sets no timer: the watchdog
/// is woken a tick later to set it (`server/watchlist.rs`). The timeouts still hold there:
/// a head stalled on a new connection is cut at a head timeout of 1.5 s, and a request whose
/// backend does not answer gets its 504 at a route timeout of 1.5 s, each within a tick and
/// a little more.
#[tokio::test]
async fn timeouts_of_a_second_or_more_hold_on_a_connection_s_first_wait() {
    let (slow, _count, task) = counting_backend(Duration::from_secs(30)).await;
    let u = url(slow);
    let yaml = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: web\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - {{path: /, backend: {{url: \"{u}\"}}, timeouts: {{request: 1500ms}}}}\n"
    );
    let server = proxy(
        state_with(&yaml),
        ProxyOptions {
            header_read_timeout: Duration::from_millis(1500),
            idle_timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await;
    let p = server.local_addr();
    let within = Duration::from_millis(1400)..Duration::from_millis(2500);

    let started = Instant::now();
    let mut stream = TcpStream::connect(p).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "a head stalled on a new connection was not cut within 5 s (head timeout 1.5 s): {closed:?}"
    );
    assert!(
        within.contains(&started.elapsed()),
        "cut after {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let answer = raw(
        p,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        within.contains(&started.elapsed()),
        "answered after {:?}",
        started.elapsed()
    );
    task.abort();
}

/// An upstream that answers a POST before reading its body (401 here; 413 and 404 are as
/// common), while the client never sends the rest of its huge body: that upstream
/// connection is still busy sending, so it must not be handed to the next request. Eight
/// ordinary requests that follow are each answered at once.
#[tokio::test]
async fn an_unsent_request_body_does_not_poison_the_upstream_pool() {
    let be = raw_backend(|head| {
        if head.starts_with("POST /upload") {
            (
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec(),
                true,
            )
        } else {
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false)
        }
    })
    .await;
    let server = single_route(be.addr, ProxyOptions::default()).await;
    let p = server.local_addr();

    // A warm pooled connection first, so the poisoned one is not the only one ever made.
    let client = client();
    assert_eq!(get(&client, p, "app.test", "/warm").await.status(), 200);

    let mut attackers = Vec::new();
    for _ in 0..2 {
        let mut attacker = TcpStream::connect(p).await.expect("connect");
        attacker
            .write_all(
                b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000000\r\n\r\nxxxxxxxxxx",
            )
            .await
            .expect("write");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while find(&answer, b"\r\n\r\n").is_none() {
            let n = tokio::time::timeout(Duration::from_secs(5), attacker.read(&mut chunk))
                .await
                .expect("the early answer in time")
                .expect("read");
            assert!(n > 0, "closed before the early answer");
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 401"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        // Keeps the connection (and its unsent body) open.
        attackers.push(attacker);
    }

    for i in 0..8 {
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(1), get(&client, p, "app.test", "/next"))
            .await
            .unwrap_or_else(|_| panic!("ordinary request {i} waited over 1 s behind an unsent body"));
        assert_eq!(response.status(), 200, "request {i}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    drop(attackers);
}

/// A backend that would accept `Upgrade: h2c` (and then speak HTTP/2 straight to the client,
/// past routing, filters and timeouts) never sees the Upgrade: it answers the request
/// itself. WebSocket upgrades keep working (the `/ws` tests elsewhere).
#[tokio::test]
async fn an_h2c_upgrade_is_never_passed_to_a_backend_that_would_accept_it() {
    let be = raw_backend(|head| {
        if head.to_ascii_lowercase().contains("upgrade: h2c") {
            // 101, then the server's HTTP/2 preface (an empty SETTINGS frame).
            let mut bytes =
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
            bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
            (bytes, true)
        } else {
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain".to_vec(),
                false,
            )
        }
    })
    .await;
    let server = single_route(be.addr, ProxyOptions::default()).await;
    for (case, request) in [
        (
            "h2c",
            "GET /admin HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "h2c after websocket",
            "GET /admin HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\nContent-Length: 0\r\n\r\n",
        ),
    ] {
        let answer = raw(
            server.local_addr(),
            format!("{request}GET /after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{case}: {answer}");
        assert!(!answer.contains(" 101 "), "{case}: switched: {answer}");
        assert_eq!(
            answer.matches("plain").count(),
            2,
            "{case}: both requests answered: {answer}"
        );
    }
    let heads = be.heads.lock().expect("log").clone();
    assert_eq!(heads.len(), 4, "{heads:#?}");
    for head in heads {
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("upgrade"),
            "an Upgrade reached the backend: {head}"
        );
        assert!(!lower.contains("http2-settings"), "{head}");
    }
}

/// A backend that answers every request after `delay`, counting the requests.
async fn counting_backend(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                // One request per connection (the answer says close).
                let mut buf = Vec::new();
                if read_head(&mut stream, &mut buf).await.is_some() {
                    seen.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlate")
                        .await;
                }
            });
        }
    });
    (addr, count, task)
}

/// A POST that timed out waiting for its response may have been acted on: it is not sent
/// again unless the route says `nonIdempotent`. A GET is.
#[tokio::test]
async fn a_post_is_not_retried_after_a_response_timeout_unless_the_route_opts_in() {
    let (addr, count, task) = counting_backend(Duration::from_secs(2)).await;
    let u = url(addr);
    let yaml = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: web\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - {{path: /safe, backend: {{url: \"{u}\"}}, timeouts: {{backendRequest: 200ms}}, retry: {{attempts: 2}}}}\n    - {{path: /opted, backend: {{url: \"{u}\"}}, timeouts: {{backendRequest: 200ms}}, retry: {{attempts: 2, nonIdempotent: true}}}}\n"
    );
    let server = proxy(state_with(&yaml), ProxyOptions::default()).await;
    let p = server.local_addr();
    let post = |path: &'static str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
        )
    };
    for (case, request, attempts) in [
        ("POST", post("/safe"), 1),
        ("PATCH", post("/safe").replacen("POST", "PATCH", 1), 1),
        (
            "GET",
            "GET /safe HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n".to_owned(),
            3,
        ),
        ("POST on an opted-in route", post("/opted"), 3),
    ] {
        count.store(0, Ordering::SeqCst);
        let answer = raw(p, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 504"), "{case}: {answer}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            attempts,
            "{case}: attempts upstream"
        );
    }
    task.abort();
}

/// Headers by which a client claims its own address or the path a backend should serve are
/// removed; the proxy's own X-Forwarded-For says where the client is.
#[tokio::test]
async fn client_claims_of_address_and_path_do_not_reach_the_backend() {
    let be = backend("b").await;
    let server = single_route(be.addr, ProxyOptions::default()).await;
    let answer = raw(
        server.local_addr(),
        b"GET /public HTTP/1.1\r\nHost: app.test\r\nForwarded: for=10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    for claim in [
        "\nforwarded:",
        "\nx-real-ip:",
        "\nx-original-url:",
        "\nx-rewrite-url:",
        "10.0.0.1",
    ] {
        assert!(!lower.contains(claim), "{claim} reached the backend: {answer}");
    }
    assert!(lower.contains("\nx-forwarded-for: 127.0.0.1"), "{answer}");
}

fn three_routes(admin: &Backend, public: &Backend, root: &Backend) -> String {
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: web\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - {{path: /admin, pathType: Exact, backend: {{url: \"{}\"}}}}\n    - {{path: /public, backend: {{url: \"{}\"}}}}\n    - {{path: /, backend: {{url: \"{}\"}}}}\n",
        url(admin.addr),
        url(public.addr),
        url(root.addr)
    )
}

/// The value of response header `name` in a raw HTTP/1 answer.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A path is matched, and sent upstream, in its normal form: dot segments removed, encoded
/// unreserved characters decoded, slashes merged; an encoded slash stays data; a `%` that
/// starts no escape is refused.
#[tokio::test]
async fn paths_are_routed_and_forwarded_in_their_normal_form() {
    let (admin, public, root) = (
        backend("admin").await,
        backend("public").await,
        backend("root").await,
    );
    let server = proxy(
        state_with(&three_routes(&admin, &public, &root)),
        ProxyOptions::default(),
    )
    .await;
    for (target, expected, upstream_path) in [
        ("/admin", "admin", "/admin"),
        ("/public/../admin", "admin", "/admin"),
        ("/public/%2e%2e/admin", "admin", "/admin"),
        ("/public/%2E./admin?x=/../y", "admin", "/admin"),
        ("/%61dmin", "admin", "/admin"),
        ("//admin", "admin", "/admin"),
        ("/public/./a//b/", "public", "/public/a/b/"),
        ("/../../public/x", "public", "/public/x"),
        ("/public%2F..%2Fadmin", "root", "/public%2F..%2Fadmin"),
        ("/public/a%2Fb", "public", "/public/a%2Fb"),
    ] {
        let answer = raw(
            server.local_addr(),
            format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{target}: {answer}");
        assert_eq!(header(&answer, "x-backend"), Some(expected), "{target}: {answer}");
        assert_eq!(
            header(&answer, "x-path"),
            Some(upstream_path),
            "{target}: {answer}"
        );
    }
    // The query is kept as it was.
    let answer = raw(
        server.local_addr(),
        b"GET /public/%2e%2e/admin?x=/../y HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.contains("GET /admin?x=/../y HTTP/1.1"), "{answer}");
    for bad in ["/admin%", "/%zz/admin", "/%%32e%%32e/admin"] {
        let answer = raw(
            server.local_addr(),
            format!("GET {bad} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
    }
}

fn metric(server_state: &lockstep_proxy::state::ProxyState, series: &str) -> u64 {
    let text = server_state.metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A client that asks for a large response and reads none of it is cut at the send
/// timeout, not held for as long as the response would take.
#[tokio::test]
async fn a_client_that_reads_nothing_is_cut_at_the_send_timeout() {
    let be = backend("b").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(be.addr))]));
    let server = proxy(
        state.clone(),
        ProxyOptions {
            send_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    const TOTAL: usize = 64 * 1024 * 1024;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream
        .write_all(format!("GET /bytes/{TOTAL} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    // Reads nothing while the proxy fills the socket buffers and then waits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut read = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was not closed");
    assert!(
        read < TOTAL,
        "the whole response was sent ({read} bytes): the client was never cut"
    );
    assert_eq!(
        metric(&state, "lockstep_proxy_client_timeouts_total{kind=\"send\"}"),
        1
    );
}

/// A client that starts a request body and then sends nothing is cut at the request-body
/// timeout, whether its body is streamed upstream or read whole first (a retry route).
#[tokio::test]
async fn a_stalled_request_body_is_cut_at_the_body_timeout() {
    let be = backend("b").await;
    let u = url(be.addr);
    let yaml = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: web\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - {{path: /echo, backend: {{url: \"{u}\"}}}}\n    - {{path: /retried, backend: {{url: \"{u}\"}}, retry: {{attempts: 2}}}}\n"
    );
    let state = state_with(&yaml);
    let server = proxy(
        state.clone(),
        ProxyOptions {
            request_body_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    for path in ["/echo", "/retried"] {
        let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
        stream
            .write_all(
                format!("POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n0123456789")
                    .as_bytes(),
            )
            .await
            .expect("write");
        let started = Instant::now();
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
        assert!(
            closed.is_ok(),
            "{path}: a stalled body held the connection for 5 s"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{path}: cut too early"
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{path}: cut after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        metric(
            &state,
            "lockstep_proxy_client_timeouts_total{kind=\"request_body\"}"
        ),
        2
    );
    // A body that keeps coming, slowly, is not cut.
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    for byte in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stream.write_all(&[*byte]).await.expect("write");
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("abcdef"),
        "{answer}"
    );
}

/// An upgraded connection on which neither side sends anything is closed at the tunnel idle
/// timeout; one that carries bytes stays open.
#[tokio::test]
async fn a_silent_websocket_is_cut_at_the_tunnel_idle_timeout() {
    let be = backend("b").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(be.addr))]));
    let server = proxy(
        state.clone(),
        ProxyOptions {
            tunnel_idle_timeout: Duration::from_millis(600),
            ..Default::default()
        },
    )
    .await;
    let open = || async {
        let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            )
            .await
            .expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while find(&head, b"\r\n\r\n").is_none() {
            stream.read_exact(&mut byte).await.expect("read the 101");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        stream
    };

    // Busy: a ping every 200 ms for 1.8 s, each echoed.
    let mut busy = open().await;
    for _ in 0..9 {
        busy.write_all(b"ping").await.expect("the busy tunnel is open");
        let mut echo = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), busy.read_exact(&mut echo))
            .await
            .expect("echo in time")
            .expect("the busy tunnel is open");
        assert_eq!(&echo, b"ping");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A closed tunnel ends; it is not an idle one.
    drop(busy);
    // Silent: closed after the idle timeout.
    let mut silent = open().await;
    silent.write_all(b"once").await.expect("write");
    let mut echo = [0u8; 4];
    silent.read_exact(&mut echo).await.expect("echo");
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a silent tunnel stayed open for 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "cut after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "cut after {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &state,
            "lockstep_proxy_client_timeouts_total{kind=\"tunnel_idle\"}"
        ),
        1
    );
}

/// Above `max_client_connections` open connections, a new one is closed at once and
/// counted; once one closes, the next is served.
#[tokio::test]
async fn connections_above_the_listener_limit_are_closed_at_accept() {
    let be = backend("b").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(be.addr))]));
    let server = proxy(
        state.clone(),
        ProxyOptions {
            max_client_connections: 2,
            ..Default::default()
        },
    )
    .await;
    let p = server.local_addr();
    // Each held connection sends the start of a head: the listener defers accepting a
    // connection until its client speaks, and a silent one would not count for a second.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(p).await.expect("connect");
        stream.write_all(b"GET / HTTP/1.1\r\n").await.expect("send");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = raw(
        p,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(refused, "", "served above the limit");
    assert_eq!(
        metric(&state, "lockstep_proxy_client_connections_refused_total"),
        1
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = raw(
        p,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

/// A client that connects and says nothing costs the proxy nothing for about a second: the
/// kernel holds the connection (deferred accept) and hands it over when the client speaks, or
/// after that second, when the head timeout takes over as for any other connection.
#[tokio::test]
async fn a_silent_connection_is_taken_only_when_it_speaks_or_after_a_second() {
    let be = backend("b").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(be.addr))]));
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    let p = server.local_addr();
    let mut talker = TcpStream::connect(p).await.expect("connect");
    let _silent = TcpStream::connect(p).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric(&state, "lockstep_proxy_client_connections"), 0);
    talker
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("send");
    let mut head = [0; 12];
    talker.read_exact(&mut head).await.expect("answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(metric(&state, "lockstep_proxy_client_connections"), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(&state, "lockstep_proxy_client_connections") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent connection was never taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket upgrade the backend does not honour (it answers 200) leaves an HTTP/1
/// connection, and the requests that follow on it are checked for smuggling like any
/// other: Content-Length with Transfer-Encoding is still refused.
#[tokio::test]
async fn an_upgrade_the_backend_refused_does_not_stop_the_smuggling_checks() {
    let be = backend("b").await;
    let server = single_route(be.addr, ProxyOptions::default()).await;
    let answer = raw(
        server.local_addr(),
        b"GET /plain HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
          POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{answer}");
}

/// A TLS handshake trickled a byte at a time is cut at the head timeout, like a head.
#[tokio::test]
async fn a_trickled_tls_handshake_is_cut_at_the_head_timeout() {
    let state = state_with(&router_config(
        "web",
        &[rule("app.test", "/", "http://127.0.0.1:9")],
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = lockstep_proxy::tls_acceptor(state.certs.clone()).expect("acceptor");
    let options = ProxyOptions {
        header_read_timeout: Duration::from_millis(500),
        scheme: "https",
        ..Default::default()
    };
    let _server = lockstep_proxy::serve_tls(lockstep_proxy::Proxy::new(state, options), listener, acceptor)
        .expect("serve");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // A handshake record header announcing 512 bytes of ClientHello, then the bytes slowly.
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    hello.extend(std::iter::repeat_n(0u8, 100));
    let closed = trickle_until_closed(&mut stream, &hello, Duration::from_millis(50)).await;
    let Some(after) = closed else {
        panic!("a handshake trickled for 5 s was not cut (head timeout 500 ms)");
    };
    assert!(after < Duration::from_millis(2500), "cut after {after:?}");
}

/// A route decides which protocols a client may switch to: one that lists `x-tunnel`
/// passes that Upgrade to the backend and its 101 (and the tunnel's bytes) to the client;
/// one that lists none passes not even WebSocket; one that lists nothing passes WebSocket
/// only. A refused Upgrade is answered by the backend as a plain request.
#[tokio::test]
async fn a_route_passes_only_the_upgrades_it_allows() {
    let be = raw_backend(|head| {
        let lower = head.to_ascii_lowercase();
        for protocol in ["x-tunnel", "websocket"] {
            if lower.contains(&format!("\r\nupgrade: {protocol}\r\n")) {
                let switched = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n{protocol}-open"
                );
                return (switched.into_bytes(), true);
            }
        }
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain".to_vec(),
            false,
        )
    })
    .await;
    let to = url(be.addr);
    let state = state_with(&format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: web\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - {{path: /tunnel, backend: {{url: \"{to}\"}}, upgrades: [x-tunnel]}}\n    - {{path: /none, backend: {{url: \"{to}\"}}, upgrades: []}}\n    - {{path: /, backend: {{url: \"{to}\"}}}}\n"
    ));
    let server = proxy(state, ProxyOptions::default()).await;
    let ask = |path: &str, protocol: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n")
    };
    for (path, protocol, switches) in [
        ("/tunnel", "x-tunnel", true),
        ("/tunnel", "websocket", false),
        ("/none", "websocket", false),
        ("/", "websocket", true),
        ("/", "x-tunnel", false),
    ] {
        let answer = raw(
            server.local_addr(),
            ask(path, protocol).as_bytes(),
            Duration::from_millis(500),
        )
        .await;
        if switches {
            assert!(answer.starts_with("HTTP/1.1 101"), "{path} {protocol}: {answer}");
            assert!(
                answer.ends_with(&format!("{protocol}-open")),
                "{path} {protocol}: {answer}"
            );
        } else {
            assert!(answer.starts_with("HTTP/1.1 200"), "{path} {protocol}: {answer}");
            assert!(answer.ends_with("plain"), "{path} {protocol}: {answer}");
        }
    }
    let heads = be.heads.lock().expect("log").clone();
    let upgraded: Vec<bool> = heads
        .iter()
        .map(|h| h.to_ascii_lowercase().contains("\r\nupgrade:"))
        .collect();
    assert_eq!(upgraded, [true, false, false, true, false], "{heads:#?}");
}
