//! Heap allocations per proxied request, counted by a counting global allocator.
//!
//! ```sh
//! cargo bench -p lockstep-proxy --bench allocs             # 20,000 requests per case
//! cargo bench -p lockstep-proxy --bench allocs -- 100000
//! ```
//!
//! Everything runs in this process on 127.0.0.1: a trivial backend (`200 ok`), the proxy,
//! and one client on one keep-alive connection sending `GET /` one after another. The same
//! client and backend are measured once directly and once through the proxy; the difference
//! is what the proxy allocates per request (both its client and server sides, every thread).
//! Two cases, one line of figures each: a route to a URL (standalone mode's backend) and a
//! route to a Service with one ready endpoint (Kubernetes mode's), the same backend behind
//! both.

use std::{collections::BTreeMap, convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, body::Incoming, client::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use lockstep_core::{ObjectKey, RouteTable};
use lockstep_crds::RouterConfigSpec;
use lockstep_proxy::{
    ProxyOptions,
    endpoints::ServiceKey,
    state::{ProxyState, ServedConfig},
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends `n` requests on one connection to `addr`; returns (allocations, bytes allocated)
/// over the run, after `warmup` requests that are not counted.
async fn measure(addr: SocketAddr, n: u64, warmup: u64) -> (u64, u64) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut one = async || {
        sender.ready().await.expect("ready");
        let request = Request::get("/")
            .header("host", "bench.local")
            .body(Empty::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert!(response.status().is_success(), "{}", response.status());
        response.into_body().collect().await.expect("body");
    };
    for _ in 0..warmup {
        one().await;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        one().await;
    }
    let stats = region.change();
    (stats.allocations as u64, stats.bytes_allocated as u64)
}

fn main() {
    let n: u64 = std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let backend = backend().await;
        let warmup = 1000;
        let (direct, direct_bytes) = measure(backend, n, warmup).await;
        let service = ServiceKey {
            namespace: "default".into(),
            name: "api".into(),
            port: 80,
        };
        let cases = [
            ("a URL", serde_json::json!({"url": format!("http://{backend}")})),
            ("a Service", serde_json::json!({"service": {"name": "api", "port": 80}})),
        ];
        for (case, route_backend) in cases {
            let spec: RouterConfigSpec = serde_json::from_value(serde_json::json!({"rules": [{"host": "bench.local",
                "paths": [{"path": "/", "pathType": "Prefix", "backend": route_backend}]}]}))
            .expect("spec");
            let key = ObjectKey {
                namespace: "default".into(),
                name: "bench".into(),
            };
            let state: Arc<ProxyState> = ProxyState::new("bench");
            state.endpoints.set(service.clone(), vec![backend]);
            state.swap(ServedConfig {
                table: RouteTable::compile([(&key, &spec)]),
                objects: BTreeMap::new(),
            });
            state.set_ready(true);
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
            let server = lockstep_proxy::serve(state, listener, ProxyOptions::default()).expect("serve");
            let (proxied, proxied_bytes) = measure(server.local_addr(), n, warmup).await;
            let per = |a: u64| a as f64 / n as f64;
            println!(
                "requests {n} to {case}  direct {:.1} allocs ({:.0} B) per request  through the proxy {:.1} allocs \
                 ({:.0} B)  the proxy's own: {:.1} allocations, {:.0} bytes per request",
                per(direct),
                per(direct_bytes),
                per(proxied),
                per(proxied_bytes),
                per(proxied) - per(direct),
                per(proxied_bytes) - per(direct_bytes),
            );
        }
    });
}
