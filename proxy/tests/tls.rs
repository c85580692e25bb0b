//! The TLS listener with real sockets and a real rustls client: which requests a TLS
//! connection answers.

mod common;

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use common::{Body, backend, empty, router_config, rule, state_with, url};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lockstep_core::ObjectKey;
use lockstep_proxy::{Proxy, ProxyOptions, Server, certs, serve_tls, state::ProxyState, tls_acceptor};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// A self-signed certificate for `names`, loaded as the proxy loads a Secret's, and its DER
/// for the client to trust.
fn certificate(names: &[&str]) -> (Arc<rustls::sign::CertifiedKey>, CertificateDer<'static>) {
    let params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let loaded = certs::load(
        "default/tls",
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        now,
    )
    .expect("certificate loads");
    (loaded.certified, cert.der().clone())
}

async fn tls_proxy(state: Arc<ProxyState>) -> (Server, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls_acceptor(state.certs.clone()).expect("acceptor");
    let options = ProxyOptions {
        scheme: "https",
        ..ProxyOptions::default()
    };
    let server = serve_tls(Proxy::new(state, options), listener, acceptor).expect("serve");
    (server, addr)
}

/// A TLS connection with SNI `sni` offering `alpn`, trusting `trusted`.
async fn connect(
    addr: SocketAddr,
    sni: &str,
    alpn: &[u8],
    trusted: &CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_owned()).expect("name"), tcp)
        .await
        .expect("handshake")
}

/// Requests for each host in turn on one connection (HTTP/1.1 or HTTP/2 by ALPN).
async fn statuses(
    addr: SocketAddr,
    sni: &str,
    http2: bool,
    trusted: &CertificateDer<'static>,
    hosts: &[&str],
) -> Vec<(StatusCode, String)> {
    let alpn: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
    let io = TokioIo::new(connect(addr, sni, alpn, trusted).await);
    let mut out = Vec::new();
    if http2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        for host in hosts {
            let req = Request::get(format!("https://{host}/"))
                .body(empty())
                .expect("request");
            out.push(answer(send.send_request(req).await.expect("response")).await);
        }
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Body>(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        for host in hosts {
            let req = Request::get("/")
                .header("host", *host)
                .body(empty())
                .expect("request");
            out.push(answer(send.send_request(req).await.expect("response")).await);
        }
    }
    out
}

async fn answer(response: Response<hyper::body::Incoming>) -> (StatusCode, String) {
    let status = response.status();
    let backend = response
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let _: Bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, backend)
}

/// A TLS connection whose SNI name chose a Gateway listener's TLS host is that listener's: a
/// request on it for a host of another listener, or of a RouterConfig's own, is answered
/// 421 Misdirected Request (and the other way round), over HTTP/1.1 and HTTP/2, even when
/// all present one certificate; a host of the same listener and a host without TLS are
/// routed as usual, and between a RouterConfig's own TLS hosts SNI is not compared with
/// Host (docs/design.md).
#[tokio::test]
async fn a_request_for_a_host_of_another_listener_is_misdirected() {
    let (one, two) = (backend("one").await, backend("two").await);
    let (own, plain) = (backend("own").await, backend("plain").await);
    let yaml = [
        router_config(
            "one",
            &[
                rule("a.test", "/", &url(one.addr)),
                rule("also-a.test", "/", &url(one.addr)),
            ],
        ),
        router_config("two", &[rule("b.test", "/", &url(two.addr))]),
        router_config(
            "own",
            &[
                rule("own.test", "/", &url(own.addr)),
                rule("own-too.test", "/", &url(own.addr)),
            ],
        ),
        router_config("three", &[rule("plain.test", "/", &url(plain.addr))]),
    ]
    .join("---\n");
    let state = state_with(&yaml);
    let (cert, der) = certificate(&["a.test", "also-a.test", "b.test", "own.test", "own-too.test"]);
    // The listener of each TLS host, as the fleet's plan records it; "": a RouterConfig's own.
    let host = |listener: &str| certs::HostCert {
        certified: cert.clone(),
        listener: (!listener.is_empty()).then(|| ObjectKey::new("default", listener)),
    };
    state.certs.replace(HashMap::from([
        ("a.test".to_owned(), host("one")),
        ("also-a.test".to_owned(), host("one")),
        ("b.test".to_owned(), host("two")),
        ("own.test".to_owned(), host("")),
        ("own-too.test".to_owned(), host("")),
    ]));
    let (_server, addr) = tls_proxy(state).await;

    let ok = |b: &str| (StatusCode::OK, b.to_owned());
    let misdirected = (StatusCode::MISDIRECTED_REQUEST, String::new());
    for http2 in [false, true] {
        let hosts = ["a.test", "b.test", "also-a.test:443", "plain.test", "own.test"];
        let got = statuses(addr, "a.test", http2, &der, &hosts).await;
        let want = [
            ok("one"),
            misdirected.clone(),
            ok("one"),
            ok("plain"),
            misdirected.clone(),
        ];
        assert_eq!(got, want, "SNI a.test, http2 {http2}");

        let got = statuses(addr, "b.test", http2, &der, &["b.test", "a.test"]).await;
        assert_eq!(got, [ok("two"), misdirected.clone()], "SNI b.test, http2 {http2}");

        let got = statuses(addr, "own.test", http2, &der, &["own-too.test", "a.test"]).await;
        assert_eq!(
            got,
            [ok("own"), misdirected.clone()],
            "SNI own.test, http2 {http2}"
        );
    }
}

/// A TLS connection that closes after its response announces the close (close_notify)
/// before the TCP close: a client reading to the end sees a clean end, not a truncation.
#[tokio::test]
async fn a_tls_connection_closed_after_its_response_sends_close_notify() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let one = backend("one").await;
    let state = state_with(&router_config("one", &[rule("a.test", "/", &url(one.addr))]));
    let (cert, der) = certificate(&["a.test"]);
    state.certs.replace(HashMap::from([(
        "a.test".to_owned(),
        certs::HostCert {
            certified: cert,
            listener: None,
        },
    )]));
    let (_server, addr) = tls_proxy(state).await;

    let mut tls = connect(addr, "a.test", b"http/1.1", &der).await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = Vec::new();
    // tokio-rustls reports a TCP close without close_notify as UnexpectedEof.
    tls.read_to_end(&mut answer).await.expect("a clean TLS close");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close\r\n"),
        "{answer}"
    );
}
