//! Route table swaps under load: no request fails, and a request finishes on the table it
//! started with.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use http::StatusCode;
use lockstep_proxy::{ProxyOptions, standalone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_swaps_under_load_fail_no_request() {
    let (a, b) = (backend("a").await, backend("b").await);
    let configs = [
        router_config("web", &[rule("app.test", "/", &url(a.addr))]),
        router_config(
            "web",
            &[
                rule("app.test", "/", &url(b.addr)),
                rule("app.test", "/extra", &url(a.addr)),
            ],
        ),
    ];
    let state = state_with(&configs[0]);
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    let p = server.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok) = (stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = client
                    .request(
                        http::Request::get(format!("http://{p}/x"))
                            .header("host", "app.test")
                            .body(empty())
                            .expect("req"),
                    )
                    .await;
                match response {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let backend = r.headers()["x-backend"].to_str().expect("name").to_owned();
                        assert!(backend == "a" || backend == "b");
                        let _ = http_body_util::BodyExt::collect(r.into_body())
                            .await
                            .expect("body");
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            failures
        }));
    }

    for i in 0..1000u32 {
        // Each swap is a new generation, like a real rollout.
        let yaml = configs[(i % 2) as usize].replace(
            "  namespace: default\n",
            &format!("  namespace: default\n  generation: {}\n", i + 2),
        );
        let applied = standalone::apply(&state, "swap.yaml", &yaml, "default").expect("applies");
        assert!(applied.swapped);
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.expect("client task"));
    }
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(state.swap_count() >= 1000);
    let served = ok.load(Ordering::Relaxed);
    assert!(served > 1000, "only {served} requests during the swaps");
    assert_eq!(
        state.served().objects.values().next().map(|o| o.generation),
        Some(1001)
    );
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_table_they_started_with() {
    let a = backend("a").await;
    let state = state_with(&router_config("web", &[rule("app.test", "/", &url(a.addr))]));
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    let p = server.local_addr();
    let slow = tokio::spawn(async move { get(&client(), p, "app.test", "/slow/500").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The host disappears while the request is in flight.
    standalone::apply(
        &state,
        "x.yaml",
        &router_config("web", &[rule("other.test", "/", &url(a.addr))]),
        "default",
    )
    .expect("applies");
    assert_eq!(
        get(&client(), p, "app.test", "/").await.status(),
        StatusCode::NOT_FOUND
    );
    let response = slow.await.expect("task");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(&response), "slow done");
}
