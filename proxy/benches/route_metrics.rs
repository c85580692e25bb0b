//! Per-route metrics while a large route table is swapped under load: after each swap,
//! requests finishing on the old table and requests on the new one run side by side, and
//! each must find its routes' metric handles without rebuilding them.
//!
//! ```sh
//! cargo bench -p lockstep-proxy --bench route_metrics               # 100,000 routes, 20 s
//! cargo bench -p lockstep-proxy --bench route_metrics -- 100000 20 500 32
//! #                                       routes, seconds, ms between swaps, connections
//! ```
//!
//! Everything runs in this process on 127.0.0.1: a trivial backend (one request in eight
//! waits 5 ms there, so some requests are always in flight across a swap), the proxy, and
//! closed-loop clients on keep-alive connections. Prints one line of figures.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use lockstep_core::{ObjectKey, RouteTable};
use lockstep_crds::RouterConfigSpec;
use lockstep_proxy::{
    ProxyOptions,
    state::{ProxyState, ServedConfig},
};
use tokio::net::TcpListener;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path().ends_with("/slow") {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `routes` Prefix paths /r0 … on one host, plus one path that differs per `tag`.
fn spec(routes: u64, backend: SocketAddr, tag: &str) -> RouterConfigSpec {
    let path = |p: String| serde_json::json!({"path": p, "pathType": "Prefix", "backend": {"url": format!("http://{backend}")}});
    let mut paths: Vec<serde_json::Value> = (0..routes).map(|i| path(format!("/r{i}"))).collect();
    paths.push(path(format!("/{tag}")));
    serde_json::from_value(serde_json::json!({"rules": [{"host": "bench.test", "paths": paths}]}))
        .expect("spec")
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let routes = arg(1, 100_000);
    let seconds = arg(2, 20);
    let swap_ms = arg(3, 500);
    let conns = arg(4, 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(routes, seconds, swap_ms, conns));
}

async fn run(routes: u64, seconds: u64, swap_ms: u64, conns: u64) {
    let backend = backend().await;
    let key = ObjectKey {
        namespace: "default".into(),
        name: "bench".into(),
    };
    let specs = [spec(routes, backend, "a"), spec(routes, backend, "b")];
    let state = ProxyState::new("bench");
    state.swap(ServedConfig {
        table: RouteTable::compile([(&key, &specs[0])]),
        objects: BTreeMap::new(),
    });
    state.set_ready(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let server = lockstep_proxy::serve(state.clone(), listener, ProxyOptions::default()).expect("serve");
    let proxy = server.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..conns {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http::<Empty<Bytes>>();
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            let mut i = c * 7919;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let route = (i * 2_654_435_761) % routes.max(1);
                let slow = if i % 8 == 0 { "/slow" } else { "" };
                let request = Request::get(format!("http://{proxy}/r{route}{slow}"))
                    .header("host", "bench.test")
                    .body(Empty::new())
                    .expect("request");
                let start = Instant::now();
                match client.request(request).await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.into_body().collect().await;
                        latencies.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }

    let started = Instant::now();
    let builds_before = state.metrics.route_set_builds();
    let mut swap_times = Vec::new();
    let mut next = 1;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(swap_ms)).await;
        let spec = &specs[next % 2];
        let state = state.clone();
        let key = key.clone();
        let spec = spec.clone();
        let took = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            state.swap(ServedConfig {
                table: RouteTable::compile([(&key, &spec)]),
                objects: BTreeMap::new(),
            });
            start.elapsed()
        })
        .await
        .expect("swap");
        swap_times.push(took.as_secs_f64() * 1000.0);
        next += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let builds = state.metrics.route_set_builds() - builds_before;
    let mut latencies = Vec::new();
    let mut failures = 0;
    for c in clients {
        let (l, f) = c.await.expect("client");
        latencies.extend(l);
        failures += f;
    }
    latencies.sort_unstable();
    let swaps = swap_times.len();
    let swap_mean = swap_times.iter().sum::<f64>() / swaps.max(1) as f64;
    println!(
        "routes {routes}  seconds {elapsed:.1}  connections {conns}  swaps {swaps} (mean {swap_mean:.0} ms each, compile + swap)  \
         requests {}  failed {failures}  req/s {:.0}  p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms  route-set builds {builds}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}
