//! Requests through a real proxy reach the backend the route table says, over HTTP/1.1 and
//! h2c, for URL and Service backends.

mod common;

use std::collections::BTreeMap;

use common::*;
use http::{Request, StatusCode};
use lockstep_proxy::{LoadBalancing, ProxyOptions, endpoints::ServiceKey};

#[tokio::test]
async fn hosts_wildcards_exact_and_prefix_paths_route_as_the_table_says() {
    let (a, b, c, d, e) = (
        backend("a").await,
        backend("b").await,
        backend("c").await,
        backend("d").await,
        backend("e").await,
    );
    let yaml = format!(
        "{}---\n{}",
        router_config(
            "web",
            &[
                rule("app.test", "/", &url(a.addr)),
                rule("app.test", "/api", &url(b.addr)),
                rule("*.wild.test", "/", &url(c.addr)),
                rule("exact.wild.test", "/only", &url(d.addr)),
            ]
        ),
        router_config("other", &[rule("other.test", "/v1/deep", &url(e.addr))]),
    )
    .replace(
        "    - path: /only\n      pathType: Prefix",
        "    - path: /only\n      pathType: Exact",
    );
    let state = state_with(&yaml);
    let server = proxy(state, ProxyOptions::default()).await;
    let p = server.local_addr();
    let client = client();

    let cases: &[(&str, &str, Option<&str>)] = &[
        ("app.test", "/", Some("a")),
        ("app.test", "/index.html", Some("a")),
        ("app.test", "/api", Some("b")),
        ("app.test", "/api/users?x=1", Some("b")),
        // Prefix matches whole segments only.
        ("app.test", "/apiary", Some("a")),
        ("APP.test:8080", "/api/x", Some("b")),
        ("app.test.", "/api", Some("b")),
        ("x.wild.test", "/anything", Some("c")),
        // A wildcard covers exactly one label.
        ("a.b.wild.test", "/", None),
        ("wild.test", "/", None),
        // The exact host wins, and its paths are the only ones considered.
        ("exact.wild.test", "/only", Some("d")),
        ("exact.wild.test", "/only/more", None),
        ("exact.wild.test", "/", None),
        ("other.test", "/v1/deep/er", Some("e")),
        ("other.test", "/v1", None),
        ("unknown.test", "/", None),
    ];
    for (host, path, want) in cases {
        let response = get(&client, p, host, path).await;
        match want {
            Some(name) => {
                assert_eq!(response.status(), StatusCode::OK, "{host}{path}");
                assert_eq!(response.headers()["x-backend"], *name, "{host}{path}");
                let backend_path = path.split('?').next().unwrap_or(path);
                assert_eq!(
                    response.headers()["x-path"],
                    backend_path,
                    "{host}{path}: path must be preserved"
                );
            }
            None => assert_eq!(response.status(), StatusCode::NOT_FOUND, "{host}{path}"),
        }
    }
    server.shutdown(std::time::Duration::from_secs(1)).await;
}

/// The host rules of a RouterConfig generated from a Gateway, through the proxy: Gateway API
/// host names, each case quoting the rule it checks.
#[tokio::test]
async fn gateway_api_host_names_route_as_the_spec_says() {
    let (a, b, c, d) = (
        backend("a").await,
        backend("b").await,
        backend("c").await,
        backend("d").await,
    );
    let suffix = |host: &str, path: &str, to: &str| {
        rule(host, path, to).replacen("    paths:", "    wildcardMatch: Suffix\n    paths:", 1)
    };
    let yaml = router_config(
        "gw-http",
        &[
            rule("app.example.com", "/", &url(a.addr)),
            suffix("*.example.com", "/", &url(b.addr)),
            rule("*.one.example.com", "/", &url(c.addr)),
            rule("*", "/", &url(d.addr)),
        ],
    );
    // Host "*" is for generated RouterConfigs only: without the label the file is refused.
    let refused = lockstep_proxy::standalone::apply(
        &lockstep_proxy::state::ProxyState::new("test"),
        &mut Default::default(),
        "test.yaml",
        &yaml,
        "default",
    )
    .expect("parses");
    assert!(
        refused.rejected.values().any(|why| why.starts_with(
            "spec.rules[3].host: \"*\" (any host) is only for RouterConfigs generated from a Gateway"
        )),
        "{:?}",
        refused.rejected
    );
    let yaml = yaml.replacen(
        "  namespace: default\n",
        "  namespace: default\n  labels: {lockstep.dev/generated-from: Gateway}\n",
        1,
    );
    let state = state_with(&yaml);
    let server = proxy(state, ProxyOptions::default()).await;
    let p = server.local_addr();
    let client = client();
    let cases: &[(&str, Option<&str>)] = &[
        // "a match for `*.example.com` would match both `test.example.com`, and
        // `foo.test.example.com`, but not `example.com`" (HTTPRoute hostnames).
        ("test.example.com", Some("b")),
        ("foo.test.example.com", Some("b")),
        // "precedence must be given to rules from the HTTPRoute with the largest number of
        // characters in a matching non-wildcard hostname", then "in a matching hostname".
        ("app.example.com", Some("a")),
        ("x.one.example.com", Some("c")),
        // A one-label wildcard covers one label: the Suffix one further up takes two.
        ("x.y.one.example.com", Some("b")),
        // Listener hostname: "When unspecified, all hostnames are matched": host "*" takes
        // what no exact or wildcard host covers.
        ("example.com", Some("d")),
        ("other.test", Some("d")),
        ("10.0.0.1:8080", Some("d")),
    ];
    for (host, want) in cases {
        let response = get(&client, p, host, "/x").await;
        match want {
            Some(name) => {
                assert_eq!(response.status(), StatusCode::OK, "{host}");
                assert_eq!(response.headers()["x-backend"], *name, "{host}");
            }
            None => assert_eq!(response.status(), StatusCode::NOT_FOUND, "{host}"),
        }
    }
    server.shutdown(std::time::Duration::from_secs(1)).await;
}

#[tokio::test]
async fn h2c_requests_route_on_authority() {
    let (a, b) = (backend("a").await, backend("b").await);
    let state = state_with(&router_config(
        "web",
        &[
            rule("one.test", "/", &url(a.addr)),
            rule("two.test", "/", &url(b.addr)),
        ],
    ));
    let server = proxy(state, ProxyOptions::default()).await;
    let mut h2 = h2_connect(server.local_addr()).await;
    for (host, name) in [("one.test", "a"), ("two.test", "b"), ("one.test", "a")] {
        let req = Request::get(format!("http://{host}/hello"))
            .body(empty())
            .expect("req");
        let response = h2.send_request(req).await.expect("h2 response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.headers()["x-backend"], name);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        let body = String::from_utf8_lossy(&body);
        // The upstream hop is HTTP/1.1 with the authority as Host.
        assert!(body.contains("HTTP/1.1"), "{body}");
        assert!(body.contains(&format!("host: {host}")), "{body}");
    }
    let req = Request::get("http://nowhere.test/").body(empty()).expect("req");
    assert_eq!(
        h2.send_request(req).await.expect("h2").status(),
        StatusCode::NOT_FOUND
    );
}

fn service_config(name: &str, host: &str, service: &str, port: u16) -> String {
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  rules:\n  - host: {host}\n    paths:\n    - path: /\n      pathType: Prefix\n      backend:\n        service:\n          name: {service}\n          port: {port}\n"
    )
}

async fn spread(mode: LoadBalancing) -> BTreeMap<String, usize> {
    let backends = [backend("s0").await, backend("s1").await, backend("s2").await];
    let state = state_with(&service_config("svc", "svc.test", "api", 8080));
    state.endpoints.set(
        ServiceKey {
            namespace: "shop".into(),
            name: "api".into(),
            port: 8080,
        },
        backends.iter().map(|b| b.addr).collect(),
    );
    let server = proxy(
        state,
        ProxyOptions {
            load_balancing: mode,
            ..ProxyOptions::default()
        },
    )
    .await;
    let client = client();
    let mut seen = BTreeMap::new();
    for _ in 0..90 {
        let response = get(&client, server.local_addr(), "svc.test", "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        *seen
            .entry(response.headers()["x-backend"].to_str().expect("name").to_owned())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn service_backends_balance_over_ready_endpoints() {
    let rr = spread(LoadBalancing::RoundRobin).await;
    assert_eq!(
        rr.values().copied().collect::<Vec<_>>(),
        vec![30, 30, 30],
        "round robin: {rr:?}"
    );
    // Sequential requests all see zero in flight, so p2c picks at random: each endpoint gets
    // some, none gets all.
    let p2c = spread(LoadBalancing::P2c).await;
    assert_eq!(p2c.len(), 3, "p2c: {p2c:?}");
}

#[tokio::test]
async fn service_without_ready_endpoints_is_503_and_recovers_when_endpoints_appear() {
    let be = backend("late").await;
    let state = state_with(&service_config("svc", "svc.test", "api", 80));
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    let client = client();
    let key = ServiceKey {
        namespace: "shop".into(),
        name: "api".into(),
        port: 80,
    };
    assert_eq!(
        get(&client, server.local_addr(), "svc.test", "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    state.endpoints.set(key.clone(), vec![]);
    assert_eq!(
        get(&client, server.local_addr(), "svc.test", "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    state.endpoints.set(key, vec![be.addr]);
    let response = get(&client, server.local_addr(), "svc.test", "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-backend"], "late");
}

#[tokio::test]
async fn failed_connect_retries_another_endpoint_for_idempotent_methods_only() {
    failed_connect_retries(false).await;
}

/// The same over HTTP/2 to the upstream (a Service whose port says h2c): its connections are
/// made on another path of the pool, which hands an unsent request back likewise.
#[tokio::test]
async fn failed_h2c_connect_retries_another_endpoint_for_idempotent_methods_only() {
    failed_connect_retries(true).await;
}

async fn failed_connect_retries(h2c: bool) {
    let live = backend("live").await;
    // A port nothing listens on, held (bound, never listening) for the whole test: a port
    // that was closed again could be taken by a parallel test's listener, which would answer.
    let dead_socket = tokio::net::TcpSocket::new_v4().expect("socket");
    dead_socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let dead = dead_socket.local_addr().expect("addr");
    let state = state_with(&service_config("svc", "svc.test", "api", 80));
    let key = ServiceKey {
        namespace: "shop".into(),
        name: "api".into(),
        port: 80,
    };
    state.endpoints.set(key.clone(), vec![dead, live.addr]);
    state.endpoints.set_h2c(&key, h2c);
    let server = proxy(
        state,
        ProxyOptions {
            load_balancing: LoadBalancing::RoundRobin,
            ..ProxyOptions::default()
        },
    )
    .await;
    let client = client();
    let p = server.local_addr();
    for _ in 0..10 {
        let response = get(&client, p, "svc.test", "/").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "GET must be retried on the live endpoint"
        );
    }
    let mut statuses = BTreeMap::new();
    for _ in 0..10 {
        let req = Request::post(format!("http://{p}/"))
            .header("host", "svc.test")
            .body(full("x"))
            .expect("req");
        *statuses
            .entry(send(&client, req).await.status().as_u16())
            .or_insert(0) += 1;
    }
    // Round robin alternates: half the POSTs hit the dead endpoint and are not retried.
    assert_eq!(statuses, BTreeMap::from([(200, 5), (502, 5)]), "{statuses:?}");
}
