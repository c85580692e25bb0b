//! Route table benchmarks: lookup at 10, 1k, 10k and 100k routes (first, last and a missing
//! route, and a route chosen by two header matches among entries sharing its path) and
//! compiling 10k and 100k routes. Lookup must not grow with the number of routes.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use lockstep_core::{ObjectKey, RouteTable};
use lockstep_crds::{Backend, HostRule, HttpPath, PathType, RequestMatch, RouterConfigSpec, ValueMatch};

/// `routes` routes spread over RouterConfigs of at most 256 rules × 8 paths (the schema allows
/// 128 paths per rule; 8 is the more common shape). Host i/8, paths "/svc-j/api" (Prefix)
/// and every fourth one Exact; paths 4-7 repeat the paths of 0-3 with two header matches
/// (x-canary: true, x-env: prod), so half the routes are chosen by their request matches.
fn specs(routes: usize) -> Vec<(ObjectKey, RouterConfigSpec)> {
    const PATHS: usize = 8;
    const RULES: usize = 256;
    let hosts = routes.div_ceil(PATHS);
    let mut out = Vec::new();
    let mut made = 0;
    for chunk in 0..hosts.div_ceil(RULES) {
        let mut rules = Vec::new();
        for h in chunk * RULES..((chunk + 1) * RULES).min(hosts) {
            let paths = (0..PATHS)
                .take(routes - made)
                .map(|p| HttpPath {
                    path: format!("/svc-{}/api", p % 4),
                    path_type: if p % 4 == 3 {
                        PathType::Exact
                    } else {
                        PathType::Prefix
                    },
                    matches: (p >= 4).then(canary_match),
                    backend: Some(Backend {
                        service: None,
                        url: Some(format!("http://10.0.{}.{}:8080", h % 256, p)),
                        status: None,
                    }),
                    ..Default::default()
                })
                .collect::<Vec<_>>();
            made += paths.len();
            rules.push(HostRule {
                host: format!("host-{h}.example.com"),
                tls: None,
                wildcard_match: None,
                paths,
            });
        }
        out.push((
            ObjectKey::new("default", format!("rc-{chunk}")),
            RouterConfigSpec {
                fleet: "default".into(),
                rules,
            },
        ));
    }
    assert_eq!(made, routes);
    out
}

fn canary_match() -> RequestMatch {
    let header = |name: &str, value: &str| ValueMatch {
        match_type: Default::default(),
        name: name.into(),
        value: value.into(),
    };
    RequestMatch {
        headers: vec![header("x-canary", "true"), header("x-env", "prod")],
        ..Default::default()
    }
}

fn compile(specs: &[(ObjectKey, RouterConfigSpec)]) -> RouteTable {
    RouteTable::compile(specs.iter().map(|(k, s)| (k, s)))
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for n in [10usize, 1_000, 10_000, 100_000] {
        let table = compile(&specs(n));
        assert_eq!(table.len(), n);
        let first = ("host-0.example.com", "/svc-0/api/users/42");
        let last_route = table.routes().last().unwrap();
        let last_host = last_route.host.to_string();
        let last_path = format!("{}/x", last_route.path);
        let missing = ("host-0.example.com", "/nothing/here");
        assert!(table.lookup(first.0, first.1).is_some());
        assert!(table.lookup(&last_host, &last_path).is_some() || last_route.path_type == PathType::Exact);
        assert!(table.lookup(missing.0, missing.1).is_none());
        group.bench_with_input(BenchmarkId::new("first", n), &table, |b, t| {
            b.iter(|| t.lookup(black_box(first.0), black_box(first.1)).is_some())
        });
        let (lh, lp) = if last_route.path_type == PathType::Exact {
            (last_host.clone(), last_route.path.to_string())
        } else {
            (last_host.clone(), last_path.clone())
        };
        group.bench_with_input(BenchmarkId::new("last", n), &table, |b, t| {
            b.iter(|| t.lookup(black_box(&lh), black_box(&lp)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("missing", n), &table, |b, t| {
            b.iter(|| t.lookup(black_box(missing.0), black_box(missing.1)).is_none())
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-canary", HeaderValue::from_static("true"));
        headers.insert("x-env", HeaderValue::from_static("prod"));
        headers.insert("user-agent", HeaderValue::from_static("bench"));
        let hit = table
            .lookup_request(false, first.0, first.1, &Method::GET, &headers, Some("a=1"))
            .expect("the header-matched route")
            .route;
        assert!(!hit.matches.is_empty());
        group.bench_with_input(BenchmarkId::new("header-matched", n), &table, |b, t| {
            b.iter(|| {
                t.lookup_request(
                    false,
                    black_box(first.0),
                    black_box(first.1),
                    &Method::GET,
                    &headers,
                    Some("a=1"),
                )
                .is_some()
            })
        });
    }
    group.finish();
}

fn compile_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let s = specs(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| {
            b.iter(|| compile(black_box(s)).len())
        });
    }
    group.finish();
}

/// The benchmark group (the macro's function carries no docs of its own).
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::lookup, super::compile_bench);
}
criterion_main!(group::benches);
