//! Shared pieces of the integration tests: real hyper backends on loopback, a proxy in the
//! same process, and clients.

#![allow(dead_code)]

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use lockstep_proxy::{ProxyOptions, Server, serve, standalone, state::ProxyState};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A body of `total` bytes sent in `chunk`-sized frames with no length known up front, so it
/// goes out chunked (HTTP/1) or as DATA frames (HTTP/2).
pub fn streamed(total: usize, chunk: usize) -> Body {
    let frames = (0..total.div_ceil(chunk)).map(move |i| {
        let len = chunk.min(total - i * chunk);
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(pattern(i * chunk, len)))
    });
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

/// Deterministic bytes, so a body that arrives reordered or truncated is noticed.
pub fn pattern(offset: usize, len: usize) -> Bytes {
    (offset..offset + len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A test backend. Every response carries `x-backend: NAME` and echoes what it saw:
/// - `/echo...`: streams the request body back;
/// - `/bytes/N`: streams N pattern bytes;
/// - `/slow/MS`: answers after MS milliseconds;
/// - `/ws`: accepts an Upgrade and echoes bytes on the upgraded connection;
/// - anything else: 200 with the request line and headers as text.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: &'static str,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(name, req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend { addr, name, task }
}

async fn answer(name: &'static str, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut response = if path.starts_with("/echo") {
        let (_, body) = req.into_parts();
        Response::new(
            body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed(),
        )
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        Response::new(streamed(n.parse().unwrap_or(0), 64 * 1024))
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full("slow done"))
    } else if path == "/ws" {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("connection", "upgrade".parse().expect("value"));
        response
            .headers_mut()
            .insert("upgrade", "websocket".parse().expect("value"));
        response
    } else {
        let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
        for (k, v) in req.headers() {
            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        let mut response = Response::new(full(text));
        // A hop-by-hop header the proxy must not pass on to the client.
        response
            .headers_mut()
            .insert("keep-alive", "timeout=5".parse().expect("value"));
        response
            .headers_mut()
            .insert("x-path", path.parse().expect("value"));
        response
    };
    response
        .headers_mut()
        .insert("x-backend", name.parse().expect("value"));
    Ok(response)
}

/// A state serving the RouterConfigs of `yaml`, judged like standalone mode does.
pub fn state_with(yaml: &str) -> Arc<ProxyState> {
    let state = ProxyState::new("test");
    let applied = standalone::apply(&state, &mut Default::default(), "test.yaml", yaml, "default")
        .expect("test config applies");
    assert!(
        applied.rejected.is_empty(),
        "test config rejected: {:?}",
        applied.rejected
    );
    state.set_ready(true);
    state
}

pub async fn proxy(state: Arc<ProxyState>, options: ProxyOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    serve(state, listener, options).expect("serve")
}

/// One RouterConfig routing `host` + Prefix `path` to `url`.
pub fn rule(host: &str, path: &str, url: &str) -> String {
    format!(
        "  - host: \"{host}\"\n    paths:\n    - path: {path}\n      pathType: Prefix\n      backend:\n        url: {url}\n"
    )
}

pub fn router_config(name: &str, rules: &[String]) -> String {
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  rules:\n{}",
        rules.concat()
    )
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge (h2c) connection to the proxy; requests carry the routed host
/// in their URI, which becomes :authority.
pub async fn h2_connect(proxy: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// GET http://{proxy}{path} with Host: host.
pub async fn get(
    client: &Client<HttpConnector, Body>,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> Response<Bytes> {
    send(
        client,
        Request::get(format!("http://{proxy}{path}"))
            .header("host", host)
            .body(empty())
            .expect("req"),
    )
    .await
}

pub async fn send(client: &Client<HttpConnector, Body>, req: Request<Body>) -> Response<Bytes> {
    let response = client.request(req).await.expect("request through the proxy");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Response::from_parts(parts, body)
}

/// Writes raw bytes and reads the whole answer until the proxy closes or `wait` passes.
pub async fn raw(proxy: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn text(response: &Response<Bytes>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request head (up to its empty line) from `stream`, keeping what follows it in
/// `buf`; None when the stream ends first.
pub async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
