//! The real `lockstep-proxy` binary in standalone mode: listen-line format, admin endpoints,
//! file reloads, invalid files, and a SIGTERM drain with requests in flight.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use http::StatusCode;

/// The binary, killed by pid when dropped.
struct Proxy {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(config: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-proxy"))
            .args(["--config", config.to_str().expect("utf-8 path")])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(if extra.contains(&"--reload-interval") {
                &[][..]
            } else {
                &["--reload-interval", "50ms"][..]
            })
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lockstep-proxy");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("lockstep-proxy listening ").nth(1)
                    && let Some((kind, addr)) = rest.split_once('=')
                    && let Ok(addr) = addr
                        .split(|c: char| c.is_whitespace() || c == '"')
                        .next()
                        .unwrap_or("")
                        .parse::<SocketAddr>()
                {
                    let _ = tx.send((kind.to_owned(), addr));
                }
                sink.lock().expect("log").push(line);
            }
        });
        let mut addrs = HashMap::new();
        while addrs.len() < 2 {
            let (kind, addr) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("listen lines on stderr");
            addrs.insert(kind, addr);
        }
        Self { child, addrs, log }
    }

    fn http(&self) -> SocketAddr {
        self.addrs["http"]
    }

    fn admin(&self) -> SocketAddr {
        self.addrs["admin"]
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().expect("log").iter().any(|l| l.contains(needle))
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

async fn admin_get(proxy: &Proxy, path: &str) -> (StatusCode, String) {
    let r = get(&client(), proxy.admin(), "admin", path).await;
    (r.status(), text(&r))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A proxy started with `extra` on a file with one route (app.test, to a backend of its own),
/// once it is ready. The file's folder and the backend last as long as the values returned.
async fn ready_with_one_route(extra: &[&str]) -> (Proxy, tempfile::TempDir, Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.yaml");
    let backend = backend("a").await;
    std::fs::write(
        &file,
        router_config("web", &[rule("app.test", "/", &url(backend.addr))]),
    )
    .expect("write");
    let proxy = Proxy::start(&file, extra);
    eventually("ready", || async {
        admin_get(&proxy, "/readyz").await.0 == StatusCode::OK
    })
    .await;
    (proxy, dir, backend)
}

/// The threads of process `pid` (Linux: its /proc entries).
#[cfg(target_os = "linux")]
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

fn with_generation(yaml: &str, generation: i64) -> String {
    yaml.replace(
        "  namespace: default\n",
        &format!("  namespace: default\n  generation: {generation}\n"),
    )
}

#[tokio::test]
async fn standalone_serves_reloads_and_keeps_the_old_table_on_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.yaml");
    let (a, b) = (backend("a").await, backend("b").await);
    std::fs::write(
        &file,
        router_config("web", &[rule("app.test", "/", &url(a.addr))]),
    )
    .expect("write");
    let proxy = Proxy::start(&file, &[]);
    let client = client();

    eventually("ready", || async {
        admin_get(&proxy, "/readyz").await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(admin_get(&proxy, "/healthz").await.0, StatusCode::OK);
    let response = get(&client, proxy.http(), "app.test", "/").await;
    assert_eq!(response.headers()["x-backend"], "a");

    let (_, config) = admin_get(&proxy, "/config").await;
    let config: serde_json::Value = serde_json::from_str(&config).expect("json");
    assert_eq!(config["replica"], "standalone");
    assert_eq!(config["routerConfigs"][0]["namespace"], "default");
    assert_eq!(config["routerConfigs"][0]["name"], "web");
    assert_eq!(config["routerConfigs"][0]["generation"], 1);
    assert!(
        config["routerConfigs"][0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert_eq!(config["swaps"], 1);

    // Reload: a new generation routes to b.
    std::fs::write(
        &file,
        with_generation(&router_config("web", &[rule("app.test", "/", &url(b.addr))]), 2),
    )
    .expect("write");
    eventually("reload to b", || async {
        get(&client, proxy.http(), "app.test", "/").await.headers()["x-backend"] == "b"
    })
    .await;

    // An invalid spec is rejected with the field named, and b keeps serving.
    std::fs::write(
        &file,
        with_generation(&router_config("web", &[rule("Bad_Host!", "/", &url(a.addr))]), 3),
    )
    .expect("write");
    eventually("rejection logged", || async {
        proxy.logged("spec.rules[0].host")
    })
    .await;
    // Unparseable YAML changes nothing either.
    std::fs::write(
        &file,
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nspec: [oops\n",
    )
    .expect("write");
    eventually("parse error logged", || async {
        proxy.logged("configuration file not applied")
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            get(&client, proxy.http(), "app.test", "/").await.headers()["x-backend"],
            "b"
        );
    }
    let (_, config) = admin_get(&proxy, "/config").await;
    assert!(config.contains("\"generation\":2"), "{config}");
    assert_eq!(admin_get(&proxy, "/readyz").await.0, StatusCode::OK);

    let (status, metrics) = admin_get(&proxy, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "lockstep_proxy_requests_total{route=\"default/web app.test/\",class=\"2xx\"}",
        "lockstep_proxy_request_duration_seconds_bucket",
        "lockstep_proxy_config_swaps_total 2",
        "lockstep_proxy_served_generation{namespace=\"default\",name=\"web\"} 2",
        "lockstep_proxy_requests_in_flight",
        "lockstep_proxy_ready 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    // The spec's backend address is not exposed by the admin endpoints beyond route labels.
    assert!(!metrics.contains(&b.addr.to_string()));
}

/// With one worker the proxy is a single thread between the file polls (each on a blocking
/// thread): a single-threaded process's socket calls skip the kernel's file-table reference
/// counting. With tokio's default 10 s keep-alive for blocking threads, the poll every 500 ms
/// kept a second thread alive for good.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn one_worker_is_one_thread_between_file_polls() {
    let (proxy, _dir, _backend) =
        ready_with_one_route(&["--worker-threads", "1", "--reload-interval", "500ms"]).await;
    let pid = proxy.child.id();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let now = threads(pid);
        seen.push(now);
        if now == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never a single thread in 3 s; thread counts seen: {seen:?}");
}

#[tokio::test]
async fn a_bad_file_at_start_leaves_the_replica_unready_until_fixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, "not: [yaml").expect("write");
    let proxy = Proxy::start(&file, &["--log-format", "json"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        admin_get(&proxy, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let a = backend("a").await;
    std::fs::write(
        &file,
        router_config("web", &[rule("app.test", "/", &url(a.addr))]),
    )
    .expect("write");
    eventually("ready", || async {
        admin_get(&proxy, "/readyz").await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(
        get(&client(), proxy.http(), "app.test", "/").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight_and_exits_zero() {
    let (mut proxy, _dir, _backend) = ready_with_one_route(&["--drain-timeout", "10s"]).await;
    let p = proxy.http();

    let mut in_flight = Vec::new();
    for i in 0..20 {
        in_flight.push(tokio::spawn(async move {
            // Separate connections, some keep-alive, one request each.
            let response = get(&client(), p, "app.test", &format!("/slow/{}", 800 + i * 10)).await;
            (response.status(), text(&response))
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    eventually("unready while draining", || async {
        matches!(
            tokio::time::timeout(Duration::from_millis(200), admin_get(&proxy, "/readyz")).await,
            Ok((StatusCode::SERVICE_UNAVAILABLE, _))
        )
    })
    .await;
    for task in in_flight {
        let (status, body) = task.await.expect("request task");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "slow done");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = proxy.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "proxy did not exit after draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        tokio::net::TcpStream::connect(p).await.is_err(),
        "still accepting after exit"
    );
}

/// The distinct `route` labels of the per-route request series in a `/metrics` text.
fn route_series(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("lockstep_proxy_request"))
        .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn series_of_removed_routes_are_dropped_after_the_next_scrape() {
    // A file rewritten many times, one path renamed each time (preview environments come
    // and go like this): the request series must follow the live routes, not pile up.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.yaml");
    let a = backend("a").await;
    let version = |n: i64| {
        with_generation(
            &router_config(
                "web",
                &[
                    rule("app.test", "/", &url(a.addr)),
                    rule("app.test", &format!("/pr-{n}"), &url(a.addr)),
                ],
            ),
            n,
        )
    };
    std::fs::write(&file, version(1)).expect("write");
    let proxy = Proxy::start(&file, &[]);
    let client = client();
    eventually("ready", || async {
        admin_get(&proxy, "/readyz").await.0 == StatusCode::OK
    })
    .await;
    let versions = 40;
    for n in 1..=versions {
        if n > 1 {
            std::fs::write(&file, version(n)).expect("write");
        }
        eventually(&format!("generation {n} served"), || async {
            admin_get(&proxy, "/config")
                .await
                .1
                .contains(&format!("\"generation\":{n}"))
        })
        .await;
        let response = get(&client, proxy.http(), "app.test", &format!("/pr-{n}/x")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (_, metrics) = admin_get(&proxy, "/metrics").await;
        let routes = route_series(&metrics);
        // The live routes, unrouted requests, and at most the route removed since the last
        // scrape, shown once more with its final counts.
        assert!(
            routes.len() <= 4,
            "version {n}: {} routes have series: {routes:?}",
            routes.len()
        );
        let line =
            format!("lockstep_proxy_requests_total{{route=\"default/web app.test/pr-{n}\",class=\"2xx\"}} 1");
        assert!(
            metrics.contains(&line),
            "version {n}: {line} missing from\n{metrics}"
        );
        if n > 1 {
            // The previous version's route appears one last time with its final count.
            let last = format!(
                "lockstep_proxy_requests_total{{route=\"default/web app.test/pr-{}\",class=\"2xx\"}} 1",
                n - 1
            );
            assert!(
                metrics.contains(&last),
                "version {n}: {last} missing from\n{metrics}"
            );
        }
    }
    let (_, metrics) = admin_get(&proxy, "/metrics").await;
    let expected: std::collections::BTreeSet<String> = [
        String::new(),
        "default/web app.test/".to_owned(),
        format!("default/web app.test/pr-{versions}"),
    ]
    .into();
    assert_eq!(route_series(&metrics), expected, "{metrics}");
}
