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
        let applied = standalone::apply(&state, &mut Default::default(), "swap.yaml", &yaml, "default")
            .expect("applies");
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
        &mut Default::default(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_two_live_tables_build_no_route_metrics() {
    // After a swap, requests still finishing on the old table and requests on the new one
    // alternate. Each table's per-route metric handles are built once, when it is swapped
    // in; requests on either never build them again (a one-slot cache would rebuild the
    // whole route set each time the table changes between two requests).
    let a = backend("a").await;
    let routes = |extra: &str| {
        let mut rules = vec![rule("app.test", "/", &url(a.addr))];
        rules.extend((0..200).map(|i| rule("app.test", &format!("/{extra}{i}"), &url(a.addr))));
        router_config("web", &rules)
    };
    let state = state_with(&routes("old"));
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    let p = server.local_addr();

    // Requests on the old table that finish one after another, after the swap.
    let mut slow = Vec::new();
    for i in 1..=8u64 {
        slow.push(tokio::spawn(async move {
            get(&client(), p, "app.test", &format!("/slow/{}", 100 + i * 40)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    standalone::apply(
        &state,
        &mut Default::default(),
        "x.yaml",
        &routes("new"),
        "default",
    )
    .expect("applies");
    let builds = state.metrics.route_set_builds();

    // Requests on the new table in between.
    let fast = client();
    let mut fast_ok = 0;
    while !slow.iter().all(|s| s.is_finished()) {
        assert_eq!(get(&fast, p, "app.test", "/new7").await.status(), StatusCode::OK);
        fast_ok += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for s in slow {
        let response = s.await.expect("task");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(fast_ok > 0);
    assert_eq!(
        state.metrics.route_set_builds(),
        builds,
        "route metrics were rebuilt while {fast_ok} requests on the new table alternated with 8 on the old"
    );
    // Both tables' requests were counted, each on its own route.
    let metrics = state.metrics.render();
    let count = |route: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("lockstep_proxy_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains("class=\"2xx\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert_eq!(count("default/web app.test/"), Some(8), "{metrics}");
    assert_eq!(count("default/web app.test/new7"), Some(fast_ok), "{metrics}");
}
