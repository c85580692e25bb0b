//! Traffic features of a path through the real `lockstep-proxy` binary in standalone mode,
//! with real backends on loopback: weighted splits, match precedence, redirects, rewrites,
//! header filters, timeouts and retries.
//!
//! (Over 600 lines: one test per feature, sharing one proxy harness.)

mod common;

use std::{
    collections::HashMap,
    convert::Infallible,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Body, client, empty, full, streamed};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::Value;
use tokio::net::TcpListener;

/// The proxy binary in standalone mode, killed by pid when dropped; its temp dir goes too.
struct Proxy {
    child: Child,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-proxy"))
            .args(["--config", file.to_str().expect("utf-8 path")])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lockstep-proxy");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("lockstep-proxy listening http=").nth(1)
                    && let Ok(addr) = rest
                        .split(|c: char| c.is_whitespace() || c == '"')
                        .next()
                        .unwrap_or("")
                        .parse::<SocketAddr>()
                {
                    let _ = tx.send(Some(addr));
                }
                if line.contains("route table swapped") {
                    let _ = tx.send(None);
                }
                sink.lock().expect("log").push(line);
            }
        });
        // Serving once it listens and has swapped in the file's table.
        let (mut http, mut swapped) = (None, false);
        while http.is_none() || !swapped {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Some(addr)) => http = Some(addr),
                Ok(None) => swapped = true,
                Err(_) => {
                    // Stopped by pid before failing, so a failed start leaves no process.
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("not serving; log: {:#?}", log.lock().expect("log"))
                }
            }
        }
        let http = http.expect("listen address");
        Self {
            child,
            http,
            _dir: dir,
        }
    }
}

/// A backend that answers with JSON describing the request (every header with all its
/// values), and on request:
/// - `?status=N`: answers N;
/// - `?delay=MS`: answers after MS milliseconds;
/// - `?fail=N&key=K`: the first N requests with key K get 503, later ones 200;
/// - `x-respond-twice: NAME`: the response carries header NAME twice (a, b).
struct Echo {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(name: &'static str) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let failures: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let failures = failures.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(name, failures.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Echo { addr, task }
}

async fn answer(
    name: &'static str,
    failures: Arc<Mutex<HashMap<String, u32>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut headers = serde_json::Map::new();
    for key in req.headers().keys() {
        let values: Vec<Value> = req
            .headers()
            .get_all(key)
            .iter()
            .map(|v| Value::from(v.to_str().unwrap_or("?")))
            .collect();
        headers.insert(key.as_str().to_owned(), Value::Array(values));
    }
    let twice = req
        .headers()
        .get("x-respond-twice")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(ms) = query.get("drip") {
        // The head at once, then a chunk every 100 ms for MS milliseconds.
        let chunks = ms.parse::<u64>().unwrap_or(0) / 100;
        let stream = futures::stream::unfold(0u64, move |i| async move {
            if i >= chunks {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
                    Bytes::from_static(b"drip\n"),
                )),
                i + 1,
            ))
        });
        return Ok(Response::new(http_body_util::StreamBody::new(stream).boxed()));
    }
    if let Some(ms) = query.get("delay") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    let mut status = query.get("status").and_then(|s| s.parse().ok()).unwrap_or(200u16);
    if let (Some(n), Some(key)) = (query.get("fail"), query.get("key")) {
        let mut seen = failures.lock().expect("failures");
        let count = seen.entry(key.clone()).or_default();
        *count += 1;
        if *count <= n.parse().unwrap_or(0) {
            status = 503;
        }
    }
    let description = serde_json::json!({
        "backend": name, "method": method, "path": path, "query": raw_query,
        "headers": headers, "bodyLen": body.len(), "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(full(description.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response
        .headers_mut()
        .insert("x-backend", name.parse().expect("value"));
    if let Some(header) = twice {
        let name = http::HeaderName::from_bytes(header.as_bytes()).expect("name");
        response
            .headers_mut()
            .append(name.clone(), "a".parse().expect("v"));
        response.headers_mut().append(name, "b".parse().expect("v"));
    }
    Ok(response)
}

fn config(paths: &str) -> String {
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: web\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n{paths}"
    )
}

fn url(e: &Echo) -> String {
    format!("http://{}", e.addr)
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
}

async fn call(
    client: &Client<HttpConnector, Body>,
    proxy: &Proxy,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{}{target}", proxy.http))
        .header("host", "app.test");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = client
        .request(builder.body(body).expect("request"))
        .await
        .expect("request through the proxy");
    let (parts, body) = response.into_parts();
    let bytes: Bytes = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn get(
    client: &Client<HttpConnector, Body>,
    proxy: &Proxy,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    call(client, proxy, "GET", target, headers, empty()).await
}

#[tokio::test]
async fn weighted_split_is_within_three_percent_and_zero_weights_drain() {
    let (a, b, c, d) = (echo("a").await, echo("b").await, echo("c").await, echo("d").await);
    let proxy = Proxy::start(&config(&format!(
        "    - path: /split\n      backends:\n      - {{url: \"{}\", weight: 70}}\n      - {{url: \"{}\", weight: 20}}\n      - {{url: \"{}\", weight: 10}}\n      - {{url: \"{}\", weight: 0}}\n    - path: /drained\n      backends:\n      - {{url: \"{}\", weight: 0}}\n      - {{url: \"{}\", weight: 0}}\n",
        url(&a),
        url(&b),
        url(&c),
        url(&d),
        url(&a),
        url(&b)
    )));
    let client = client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let total = 3000;
    // Eight concurrent clients, as a load balancer in front would send.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        let http = proxy.http;
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..total / 8 {
                let response = client
                    .request(
                        Request::get(format!("http://{http}/split"))
                            .header("host", "app.test")
                            .body(empty())
                            .expect("req"),
                    )
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200);
                seen.push(response.headers()["x-backend"].to_str().expect("name").to_owned());
                let _ = response.into_body().collect().await;
            }
            seen
        }));
    }
    for task in tasks {
        for name in task.await.expect("task") {
            *counts.entry(name).or_default() += 1;
        }
    }
    let n: usize = counts.values().sum();
    assert_eq!(n, total / 8 * 8);
    for (name, weight) in [("a", 0.70), ("b", 0.20), ("c", 0.10)] {
        let share = counts.get(name).copied().unwrap_or(0) as f64 / n as f64;
        assert!(
            (share - weight).abs() <= 0.03,
            "{name}: {share} vs {weight}: {counts:?}"
        );
    }
    assert_eq!(
        counts.get("d"),
        None,
        "a weight-0 backend got requests: {counts:?}"
    );
    let drained = get(&client, &proxy, "/drained", &[]).await;
    assert_eq!(drained.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_status_backend_answers_its_share_of_requests_itself() {
    // What a generated RouterConfig says for an unresolved Gateway API backendRef: "the
    // proportion of requests that would otherwise have been routed to an invalid backend
    // MUST receive a 500 status code" (HTTPRoute backendRefs).
    let a = echo("a").await;
    let proxy = Proxy::start(&config(&format!(
        "    - path: /split\n      backends:\n      - {{url: \"{}\", weight: 3}}\n      - {{status: 500, weight: 1}}\n    - path: /gone\n      backend: {{status: 503}}\n",
        url(&a)
    )));
    let client = client();
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for _ in 0..400 {
        let reply = get(&client, &proxy, "/split", &[]).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.json["backend"], "a");
        }
        *counts.entry(reply.status.as_u16()).or_default() += 1;
    }
    // Smooth weighted round robin: exactly weight/total of every 4 consecutive requests.
    assert_eq!(counts, HashMap::from([(200, 300), (500, 100)]));
    let gone = get(&client, &proxy, "/gone", &[]).await;
    assert_eq!(gone.status, StatusCode::SERVICE_UNAVAILABLE);
    // A request with a body on a kept-alive connection: answered, and the connection closed
    // rather than its unread body taken for the next request.
    let posted = call(&client, &proxy, "POST", "/gone", &[], full("body")).await;
    assert_eq!(posted.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(posted.headers["connection"], "close");
    // A gRPC client reads the answer from grpc-status: 503 is UNAVAILABLE (14).
    let grpc = call(
        &client,
        &proxy,
        "POST",
        "/gone",
        &[("content-type", "application/grpc")],
        empty(),
    )
    .await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(grpc.headers["grpc-status"], "14");
}

#[tokio::test]
async fn every_precedence_rule_holds_through_the_proxy() {
    let backends: Vec<Echo> = futures::future::join_all(
        (0..9).map(|i| echo(["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8"][i])),
    )
    .await;
    let u = |i: usize| url(&backends[i]);
    let older = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: older\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - {{path: /, backend: {{url: \"{}\"}}}}\n    - {{path: /api, backend: {{url: \"{}\"}}}}\n    - {{path: /api/exact, pathType: Exact, backend: {{url: \"{}\"}}}}\n    - {{path: /api, backend: {{url: \"{}\"}}, match: {{queryParams: [{{name: a, value: \"1\"}}]}}}}\n    - {{path: /api, backend: {{url: \"{}\"}}, match: {{headers: [{{name: x-a, value: \"1\"}}]}}}}\n    - {{path: /api, backend: {{url: \"{}\"}}, match: {{headers: [{{name: x-a, value: \"1\"}}, {{name: x-b, type: RegularExpression, value: \"^[0-9]+$\"}}]}}}}\n    - {{path: /api, backend: {{url: \"{}\"}}, match: {{method: POST}}}}\n    - {{path: /list, backend: {{url: \"{}\"}}, match: {{headers: [{{name: x-l, value: \"1\"}}]}}}}\n",
        u(0),
        u(1),
        u(2),
        u(3),
        u(4),
        u(5),
        u(6),
        u(7)
    );
    let newer = format!(
        "---\napiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: newer\n  namespace: default\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - {{path: /list, backend: {{url: \"{}\"}}, match: {{headers: [{{name: x-m, value: \"1\"}}]}}}}\n    - {{path: /list, backend: {{url: \"{}\"}}, match: {{headers: [{{name: x-n, value: \"1\"}}]}}}}\n",
        u(8),
        u(0)
    );
    // A file's documents are as old as the proxy first saw them, in file order (the first is
    // the oldest; a written creationTimestamp is replaced, as the apiserver would): "older"
    // comes first.
    let proxy = Proxy::start(&format!("{older}{newer}"));
    let client = client();
    let to = |r: &Reply| {
        r.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap_or("").to_owned())
    };
    /// Method, target, headers, the backend expected, the rule.
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("GET", "/api/exact", vec![], "b2", "Exact beats every Prefix"),
        ("GET", "/api/exact/x", vec![], "b1", "the longest Prefix"),
        ("GET", "/other", vec![], "b0", "a shorter Prefix"),
        (
            "POST",
            "/api",
            vec![("x-a", "1"), ("x-b", "2")],
            "b6",
            "a method match beats header matches",
        ),
        (
            "GET",
            "/api",
            vec![("x-a", "1"), ("x-b", "2")],
            "b5",
            "two header matches beat one",
        ),
        (
            "GET",
            "/api?a=1",
            vec![("x-a", "1")],
            "b4",
            "a header match beats a query match",
        ),
        (
            "GET",
            "/api?a=1",
            vec![("x-b", "2")],
            "b3",
            "a query match beats none",
        ),
        (
            "GET",
            "/api",
            vec![("x-a", "1"), ("x-b", "two")],
            "b4",
            "a regex that fails does not count",
        ),
        (
            "GET",
            "/list",
            vec![("x-l", "1"), ("x-m", "1")],
            "b7",
            "the older RouterConfig wins a tie",
        ),
        (
            "GET",
            "/list",
            vec![("x-m", "1"), ("x-n", "1")],
            "b8",
            "list order breaks a tie within one",
        ),
    ];
    for (method, target, headers, expected, rule) in cases {
        let reply = call(&client, &proxy, method, target, &headers, empty()).await;
        assert_eq!(reply.status, 200, "{rule}");
        assert_eq!(
            to(&reply).as_deref(),
            Some(expected),
            "{rule}: {method} {target} {headers:?}"
        );
    }
    // A path whose every entry has a failing match falls back to the shorter Prefix; none: 404.
    let reply = get(&client, &proxy, "/list/x", &[]).await;
    assert_eq!(to(&reply).as_deref(), Some("b0"));
}

#[tokio::test]
async fn redirects_build_location_from_the_request() {
    let e = echo("e").await;
    let proxy = Proxy::start(&config(&format!(
        "    - {{path: /scheme, filters: {{redirect: {{scheme: https}}}}}}\n    - {{path: /host, filters: {{redirect: {{hostname: new.test, statusCode: 301}}}}}}\n    - {{path: /port, filters: {{redirect: {{port: 8443, statusCode: 307}}}}}}\n    - {{path: /full, filters: {{redirect: {{path: {{replaceFullPath: /elsewhere}}, statusCode: 308}}}}}}\n    - {{path: /old, filters: {{redirect: {{scheme: https, hostname: new.test, port: 9443, path: {{replacePrefixMatch: /new}}, statusCode: 303}}}}}}\n    - {{path: /strip, filters: {{redirect: {{path: {{replacePrefixMatch: /}}}}}}}}\n    - {{path: /, backend: {{url: \"{}\"}}}}\n",
        url(&e)
    )));
    let client = client();
    let port = proxy.http.port();
    let cases = [
        ("/scheme/a?q=1", 302, "https://app.test/scheme/a?q=1".to_owned()),
        ("/host/a", 301, format!("http://new.test:{port}/host/a")),
        ("/port/a", 307, "http://app.test:8443/port/a".to_owned()),
        (
            "/full/a/b?x=y",
            308,
            "http://app.test:PORT/elsewhere?x=y".replace("PORT", &port.to_string()),
        ),
        ("/old/a/b", 303, "https://new.test:9443/new/a/b".to_owned()),
        ("/old", 303, "https://new.test:9443/new".to_owned()),
        ("/strip/a", 302, format!("http://app.test:{port}/a")),
    ];
    for (target, status, location) in cases {
        let mut builder = Request::get(format!("http://{}{target}", proxy.http));
        builder = builder.header("host", format!("app.test:{port}"));
        let response = client
            .request(builder.body(empty()).expect("req"))
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), status, "{target}");
        assert_eq!(response.headers()["location"], location.as_str(), "{target}");
        assert!(
            response.headers().get("x-backend").is_none(),
            "{target} reached a backend"
        );
    }
    // Host without a port: the client used the scheme's default, which is left out.
    let reply = get(&client, &proxy, "/host/a", &[]).await;
    assert_eq!(reply.headers["location"], "http://new.test/host/a");
}

#[tokio::test]
async fn rewrites_change_host_and_path_and_forwarded_headers_keep_the_client_view() {
    let e = echo("e").await;
    let proxy = Proxy::start(&config(&format!(
        "    - {{path: /api, backend: {{url: \"{u}\"}}, filters: {{rewrite: {{hostname: internal.test, path: {{replacePrefixMatch: /v2}}}}}}}}\n    - {{path: /strip, backend: {{url: \"{u}\"}}, filters: {{rewrite: {{path: {{replacePrefixMatch: /}}}}}}}}\n    - {{path: /full, pathType: Exact, backend: {{url: \"{u}\"}}, filters: {{rewrite: {{path: {{replaceFullPath: /index.html}}}}}}}}\n    - {{path: /host, backend: {{url: \"{u}\"}}, filters: {{rewrite: {{hostname: other.test}}}}}}\n",
        u = url(&e)
    )));
    let client = client();
    let cases = [
        ("/api/users?id=1", "/v2/users", "internal.test"),
        ("/api", "/v2", "internal.test"),
        ("/strip/a/b?id=1", "/a/b", "app.test"),
        ("/strip", "/", "app.test"),
        ("/full", "/index.html", "app.test"),
        ("/host/x", "/host/x", "other.test"),
    ];
    for (target, path, host) in cases {
        let reply = get(&client, &proxy, target, &[]).await;
        assert_eq!(reply.status, 200, "{target}");
        assert_eq!(reply.json["path"], path, "{target}");
        assert_eq!(reply.json["headers"]["host"][0], host, "{target}");
        assert_eq!(
            reply.json["headers"]["x-forwarded-host"][0], "app.test",
            "{target}"
        );
        assert_eq!(reply.json["headers"]["x-forwarded-proto"][0], "http", "{target}");
        if let Some((_, query)) = target.split_once('?') {
            assert_eq!(reply.json["query"], query, "{target}");
        }
    }
}

#[tokio::test]
async fn header_filters_set_add_and_remove_repeated_headers() {
    let e = echo("e").await;
    let proxy = Proxy::start(&config(&format!(
        "    - path: /\n      backend: {{url: \"{}\"}}\n      filters:\n        requestHeaders:\n          set: [{{name: x-set, value: new}}]\n          add: [{{name: x-add, value: added}}]\n          remove: [x-remove]\n        responseHeaders:\n          set: [{{name: x-resp-set, value: one}}]\n          add: [{{name: x-resp-add, value: c}}]\n          remove: [x-resp-remove]\n",
        url(&e)
    )));
    let client = client();
    let mut builder = Request::get(format!("http://{}/h", proxy.http)).header("host", "app.test");
    for (k, v) in [
        ("x-set", "old1"),
        ("x-set", "old2"),
        ("x-add", "first"),
        ("x-add", "second"),
        ("x-remove", "1"),
        ("x-remove", "2"),
        ("x-kept", "k"),
        ("x-respond-twice", "x-resp-set"),
    ] {
        builder = builder.header(k, v);
    }
    let response = client
        .request(builder.body(empty()).expect("req"))
        .await
        .expect("request");
    let all = |h: &http::HeaderMap, n: &str| {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all(response.headers(), "x-resp-set"),
        ["one"],
        "set replaces both values"
    );
    assert_eq!(all(response.headers(), "x-resp-add"), ["c"]);
    let (_, body) = response.into_parts();
    let json: Value = serde_json::from_slice(&body.collect().await.expect("body").to_bytes()).expect("json");
    let seen = |n: &str| json["headers"][n].clone();
    assert_eq!(seen("x-set"), serde_json::json!(["new"]));
    assert_eq!(seen("x-add"), serde_json::json!(["first", "second", "added"]));
    assert_eq!(seen("x-remove"), Value::Null);
    assert_eq!(seen("x-kept"), serde_json::json!(["k"]));

    // Response: add appends to repeated values, remove drops all of them.
    let response = client
        .request(
            Request::get(format!("http://{}/h", proxy.http))
                .header("host", "app.test")
                .header("x-respond-twice", "x-resp-add")
                .body(empty())
                .expect("req"),
        )
        .await
        .expect("request");
    assert_eq!(all(response.headers(), "x-resp-add"), ["a", "b", "c"]);
    let response = client
        .request(
            Request::get(format!("http://{}/h", proxy.http))
                .header("host", "app.test")
                .header("x-respond-twice", "x-resp-remove")
                .body(empty())
                .expect("req"),
        )
        .await
        .expect("request");
    assert!(all(response.headers(), "x-resp-remove").is_empty());
}

#[tokio::test]
async fn a_backends_own_request_headers_reach_only_that_backend() {
    let one = echo("one").await;
    let two = echo("two").await;
    // Bound, never listening, held for the whole test: the retry below goes elsewhere.
    let dead = tokio::net::TcpSocket::new_v4().expect("socket");
    dead.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    let proxy = Proxy::start(&config(&format!(
        "    - path: /split
      filters: {{requestHeaders: {{set: [{{name: x-route, value: r}}]}}}}
      backends:
      - {{url: \"{one}\", weight: 1, requestHeaders: {{set: [{{name: backend, value: one}}]}}}}
      - {{url: \"{two}\", weight: 1, requestHeaders: {{set: [{{name: backend, value: two}}], add: [{{name: x-route, value: two}}], remove: [x-client]}}}}
    - path: /retry
      retry: {{attempts: 1}}
      backends:
      - {{url: \"http://{dead_addr}\", weight: 1, requestHeaders: {{set: [{{name: x-dead, value: dead}}]}}}}
      - {{url: \"{one}\", weight: 1}}
",
        one = url(&one),
        two = url(&two),
    )));
    let client = client();
    let mut seen = HashMap::new();
    for _ in 0..20 {
        let reply = get(
            &client,
            &proxy,
            "/split",
            &[("x-client", "c"), ("backend", "from-client")],
        )
        .await;
        assert_eq!(reply.status, 200);
        let name = reply.json["backend"].as_str().expect("backend").to_owned();
        let headers = &reply.json["headers"];
        assert_eq!(
            headers["backend"],
            serde_json::json!([name.as_str()]),
            "set replaces the client's value"
        );
        match name.as_str() {
            "one" => {
                assert_eq!(headers["x-route"], serde_json::json!(["r"]));
                assert_eq!(headers["x-client"], serde_json::json!(["c"]));
            }
            _ => {
                // After the route's changes: its header is there to be added to.
                assert_eq!(headers["x-route"], serde_json::json!(["r", "two"]));
                assert_eq!(headers["x-client"], Value::Null);
            }
        }
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.get("one"), Some(&10));
    assert_eq!(seen.get("two"), Some(&10));

    // The first attempt goes to the dead backend (the picker starts there); the retry to
    // `one` carries none of the dead backend's changes.
    for _ in 0..4 {
        let reply = get(&client, &proxy, "/retry", &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json["headers"]["x-dead"], Value::Null);
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_by_the_proxy_and_responses_get_the_origin() {
    let e = echo("e").await;
    let proxy = Proxy::start(&config(&format!(
        "    - path: /\n      backend: {{url: \"{}\"}}\n      filters:\n        cors: {{allowOrigins: [\"https://*.bar.com\"], allowMethods: [GET, PUT], allowHeaders: [x-a], allowCredentials: true, maxAge: 60}}\n",
        url(&e)
    )));
    let client = client();
    let preflight = [
        ("origin", "https://www.bar.com"),
        ("access-control-request-method", "PUT"),
    ];
    let reply = call(&client, &proxy, "OPTIONS", "/x", &preflight, empty()).await;
    // Answered by the proxy: no body from the backend.
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.json, Value::Null);
    let h = |r: &Reply, n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        h(&reply, "access-control-allow-origin").as_deref(),
        Some("https://www.bar.com")
    );
    assert_eq!(
        h(&reply, "access-control-allow-methods").as_deref(),
        Some("GET, PUT")
    );
    assert_eq!(h(&reply, "access-control-allow-headers").as_deref(), Some("x-a"));
    assert_eq!(
        h(&reply, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(h(&reply, "access-control-max-age").as_deref(), Some("60"));
    // Another origin's preflight: no CORS header, still not proxied.
    let reply = call(
        &client,
        &proxy,
        "OPTIONS",
        "/x",
        &[
            ("origin", "https://foobar.com"),
            ("access-control-request-method", "PUT"),
        ],
        empty(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(h(&reply, "access-control-allow-origin"), None);
    // A plain OPTIONS (no Access-Control-Request-Method) is the backend's.
    let reply = call(
        &client,
        &proxy,
        "OPTIONS",
        "/x",
        &[("origin", "https://www.bar.com")],
        empty(),
    )
    .await;
    assert_eq!(reply.json["backend"], "e");
    // Other requests are proxied; the allowed origin's response says so.
    let reply = get(&client, &proxy, "/x", &[("origin", "https://a.b.bar.com")]).await;
    assert_eq!(reply.json["backend"], "e");
    assert_eq!(
        h(&reply, "access-control-allow-origin").as_deref(),
        Some("https://a.b.bar.com")
    );
    assert_eq!(h(&reply, "vary").as_deref(), Some("origin"));
    let reply = get(&client, &proxy, "/x", &[("origin", "https://foobar.com")]).await;
    assert_eq!(reply.json["backend"], "e");
    assert_eq!(h(&reply, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn timeouts_answer_504_within_the_limit() {
    let e = echo("e").await;
    let proxy = Proxy::start(&config(&format!(
        "    - {{path: /backend, backend: {{url: \"{u}\"}}, timeouts: {{backendRequest: 300ms}}}}\n    - {{path: /request, backend: {{url: \"{u}\"}}, timeouts: {{request: 500ms, backendRequest: 400ms}}, retry: {{attempts: 5, codes: [503]}}}}\n    - {{path: /fast, backend: {{url: \"{u}\"}}, timeouts: {{request: 2s}}}}\n",
        u = url(&e)
    )));
    let client = client();
    let limit = |ms: u64| Duration::from_millis(ms + 100);

    let start = Instant::now();
    let reply = get(&client, &proxy, "/backend?delay=3000", &[]).await;
    let took = start.elapsed();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        took >= Duration::from_millis(300) && took <= limit(300),
        "{took:?}"
    );

    // Each attempt times out at 400 ms and is retried; the request gives up at 500 ms.
    let start = Instant::now();
    let reply = get(&client, &proxy, "/request?delay=3000", &[]).await;
    let took = start.elapsed();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        took >= Duration::from_millis(500) && took <= limit(500),
        "{took:?}"
    );

    let reply = get(&client, &proxy, "/fast?delay=100", &[]).await;
    assert_eq!(reply.status, 200);

    // A response that started in time is cut off when the request timeout passes while its
    // body still streams: the client sees the body fail, not a complete short answer.
    let start = Instant::now();
    let response = client
        .request(
            Request::get(format!("http://{}/request?drip=3000", proxy.http))
                .header("host", "app.test")
                .body(empty())
                .expect("req"),
        )
        .await
        .expect("head in time");
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await;
    let took = start.elapsed();
    assert!(body.is_err(), "the body completed: {body:?}");
    assert!(
        took >= Duration::from_millis(500) && took <= limit(500),
        "{took:?}"
    );
}

#[tokio::test]
async fn retries_resend_replayable_requests_and_never_streamed_bodies() {
    let e = echo("e").await;
    // A port nothing listens on, held (bound, never listening) for the whole test so a
    // parallel test cannot take it: connect failures are retried on the other backend.
    let dead = tokio::net::TcpSocket::new_v4().expect("socket");
    dead.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    let proxy = Proxy::start(&config(&format!(
        "    - {{path: /retry, backend: {{url: \"{u}\"}}, retry: {{attempts: 2, codes: [503], backoff: 50ms}}}}\n    - {{path: /once, backend: {{url: \"{u}\"}}, retry: {{attempts: 1, codes: [503]}}}}\n    - {{path: /post-once, backend: {{url: \"{u}\"}}, retry: {{attempts: 1, codes: [503], nonIdempotent: true}}}}\n    - {{path: /none, backend: {{url: \"{u}\"}}}}\n    - path: /connect\n      backends:\n      - {{url: \"http://{dead_addr}\", weight: 1}}\n      - {{url: \"{u}\", weight: 1}}\n      retry: {{attempts: 1}}\n",
        u = url(&e)
    )));
    let client = client();

    // Fails the first attempt, the second answers.
    let start = Instant::now();
    let reply = get(&client, &proxy, "/retry?fail=1&key=get", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(50), "backoff waited");
    // Two retries at most: failing three times is answered with the third 503.
    let reply = get(&client, &proxy, "/retry?fail=3&key=three", &[]).await;
    assert_eq!(reply.status, 503);
    let reply = get(&client, &proxy, "/retry?fail=3&key=three", &[]).await;
    assert_eq!(reply.status, 200, "exactly three attempts were made before");
    // Status codes not listed are not retried; without a policy nothing is.
    let reply = get(&client, &proxy, "/retry?status=500", &[]).await;
    assert_eq!(reply.status, 500);
    let reply = get(&client, &proxy, "/none?fail=1&key=none", &[]).await;
    assert_eq!(reply.status, 503);

    // A POST with a small body of known length is buffered and resent whole, when the
    // route says a POST may be sent twice.
    let body = "x".repeat(1000);
    let reply = call(
        &client,
        &proxy,
        "POST",
        "/post-once?fail=1&key=post",
        &[("content-length", "1000")],
        full(body.clone()),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["body"], body.as_str());
    // Without that, the backend's 503 stands: it may have acted on the POST.
    let reply = call(
        &client,
        &proxy,
        "POST",
        "/once?fail=1&key=post-unsafe",
        &[("content-length", "1000")],
        full(body.clone()),
    )
    .await;
    assert_eq!(reply.status, 503);

    // A POST with a streamed body is not retried: the first answer stands.
    let reply = call(
        &client,
        &proxy,
        "POST",
        "/once?fail=1&key=stream",
        &[],
        streamed(10_000, 1000),
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json["bodyLen"], 10_000);

    // Connect failures are retried: every request is answered although half go to a dead port first.
    for _ in 0..20 {
        let reply = get(&client, &proxy, "/connect", &[]).await;
        assert_eq!(reply.status, 200);
    }
}

#[test]
fn an_invalid_regular_expression_is_rejected_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        config("    - path: /\n      backend: {url: \"http://127.0.0.1:9\"}\n      match:\n        headers: [{name: x-v, type: RegularExpression, value: \"v(1\"}]\n"),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-proxy"))
        .args(["--config", file.to_str().expect("utf-8")])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("invalid regular expression") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a rejection naming the regular expression");
    assert!(
        line.contains(
            "spec.rules[0].paths[0].match.headers[0]: value: invalid regular expression (RE2 syntax)"
        ),
        "{line}"
    );
}
