//! Route table tests: matching semantics, and a property test against a linear reference
//! matcher.

use lockstep_crds::{PathType, RouterConfigSpec};
use proptest::prelude::*;

use super::*;
use crate::testutil::*;

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name)
}

fn table(specs: &[(ObjectKey, RouterConfigSpec)]) -> RouteTable {
    RouteTable::compile(specs.iter().map(|(k, s)| (k, s)))
}

fn one(rules: Vec<HostRule>) -> RouteTable {
    table(&[(key("web"), mk_spec(rules))])
}

/// "host Type path" of the route a request hits, or None.
fn hit(table: &RouteTable, host: &str, path: &str) -> Option<String> {
    table
        .lookup(host, path)
        .map(|r| format!("{} {:?} {}", r.host, r.path_type, r.path))
}

use lockstep_crds::HostRule;

#[test]
fn exact_host_beats_wildcard() {
    let t = one(vec![
        mk_rule("*.example.com", vec![mk_prefix("/")]),
        mk_rule("app.example.com", vec![mk_prefix("/")]),
    ]);
    assert_eq!(
        hit(&t, "app.example.com", "/x").as_deref(),
        Some("app.example.com Prefix /")
    );
    assert_eq!(
        hit(&t, "web.example.com", "/x").as_deref(),
        Some("*.example.com Prefix /")
    );
}

#[test]
fn exact_host_without_matching_path_does_not_fall_back_to_wildcard() {
    let t = one(vec![
        mk_rule("*.example.com", vec![mk_prefix("/")]),
        mk_rule("app.example.com", vec![mk_prefix("/api")]),
    ]);
    assert_eq!(
        hit(&t, "app.example.com", "/api/v1").as_deref(),
        Some("app.example.com Prefix /api")
    );
    assert_eq!(hit(&t, "app.example.com", "/other"), None);
}

#[test]
fn wildcard_matches_exactly_one_label() {
    let t = one(vec![mk_rule("*.example.com", vec![mk_prefix("/")])]);
    assert!(hit(&t, "a.example.com", "/").is_some());
    assert!(hit(&t, "a-b-1.example.com", "/").is_some());
    assert_eq!(hit(&t, "a.b.example.com", "/"), None, "two labels");
    assert_eq!(hit(&t, "example.com", "/"), None, "zero labels");
    assert_eq!(hit(&t, ".example.com", "/"), None, "an empty label");
    assert_eq!(hit(&t, "aexample.com", "/"), None);
    assert_eq!(hit(&t, "a.example.org", "/"), None);
}

#[test]
fn a_suffix_wildcard_matches_one_or_more_labels_and_the_most_specific_wins() {
    // Gateway API hostnames: "a match for `*.example.com` would match both
    // `test.example.com`, and `foo.test.example.com`, but not `example.com`".
    let suffix = |host: &str, paths| {
        let mut rule = mk_rule(host, paths);
        rule.wildcard_match = Some(lockstep_crds::WildcardMatch::Suffix);
        rule
    };
    let t = one(vec![
        suffix("*.example.com", vec![mk_prefix("/")]),
        mk_rule("*.b.example.com", vec![mk_prefix("/b")]),
        mk_rule("*.one.example.org", vec![mk_prefix("/")]),
        suffix("*.example.org", vec![mk_prefix("/org")]),
    ]);
    let rows = [
        ("a.example.com", "/x", Some("*.example.com Prefix /")),
        ("a.b.c.example.com", "/x", Some("*.example.com Prefix /")),
        ("example.com", "/x", None),
        ("a..example.com", "/x", None),
        // The most specific wildcard covering the host takes it, and its paths alone apply.
        ("a.b.example.com", "/b", Some("*.b.example.com Prefix /b")),
        ("a.b.example.com", "/x", None),
        // A one-label wildcard does not cover two labels: the Suffix one further up does.
        ("x.y.one.example.org", "/org", Some("*.example.org Prefix /org")),
        ("y.one.example.org", "/org", Some("*.one.example.org Prefix /")),
    ];
    for (host, path, want) in rows {
        assert_eq!(hit(&t, host, path).as_deref(), want, "{host}{path}");
    }
}

#[test]
fn any_host_takes_what_no_exact_or_wildcard_host_covers() {
    // Listener hostname: "When unspecified, all hostnames are matched"; an exact host
    // beats a wildcard, which beats any host, and the host chosen keeps its paths to itself.
    let t = one(vec![
        mk_rule("*", vec![mk_prefix("/")]),
        mk_rule("*.example.com", vec![mk_prefix("/wild")]),
        mk_rule("app.example.com", vec![mk_prefix("/app")]),
    ]);
    let rows = [
        ("app.example.com", "/app", Some("app.example.com Prefix /app")),
        ("app.example.com", "/x", None),
        ("a.example.com", "/wild", Some("*.example.com Prefix /wild")),
        ("a.example.com", "/x", None),
        ("a.b.example.com", "/x", Some("* Prefix /")),
        ("example.org:8080", "/x", Some("* Prefix /")),
        ("10.0.0.1", "/x", Some("* Prefix /")),
        ("[::1]:80", "/x", Some("* Prefix /")),
    ];
    for (host, path, want) in rows {
        assert_eq!(hit(&t, host, path).as_deref(), want, "{host}{path}");
    }
}

/// A Gateway's HTTP listener and HTTPS listener may name the same host names: the rules of a
/// generated RouterConfig answer plain HTTP (without tls) or TLS (with tls) connections
/// only, while a RouterConfig's own TLS host is reachable both ways.
#[test]
fn generated_rules_answer_only_their_listeners_connections() {
    let http = mk_spec(vec![
        mk_rule("*", vec![mk_prefix("/")]),
        mk_rule("secure.test", vec![mk_prefix("/plain")]),
    ]);
    let https = mk_spec(vec![mk_tls_rule("secure.test", "cert", vec![mk_prefix("/")])]);
    let own = mk_spec(vec![mk_tls_rule("own.test", "own", vec![mk_prefix("/")])]);
    let (kh, ks, ko) = (key("gw-http"), key("gw-https"), key("own"));
    let t = RouteTable::compile_served([(&kh, &http, true), (&ks, &https, true), (&ko, &own, false)]);
    let on = |tls: bool, host: &str, path: &str| {
        t.lookup_with(tls, host, path, |_| true)
            .map(|f| format!("{}:{} {}", f.route.source.name, f.route.host, f.route.path))
    };
    assert_eq!(
        on(false, "secure.test", "/plain").as_deref(),
        Some("gw-http:secure.test /plain")
    );
    assert_eq!(
        on(false, "secure.test", "/x"),
        None,
        "the HTTP listener's host keeps its paths"
    );
    assert_eq!(
        on(true, "secure.test", "/x").as_deref(),
        Some("gw-https:secure.test /")
    );
    assert_eq!(
        on(true, "secure.test", "/plain").as_deref(),
        Some("gw-https:secure.test /")
    );
    assert_eq!(on(false, "other.test", "/").as_deref(), Some("gw-http:* /"));
    assert_eq!(
        on(true, "other.test", "/"),
        None,
        "no HTTPS listener for any host"
    );
    assert_eq!(on(false, "own.test", "/").as_deref(), Some("own:own.test /"));
    assert_eq!(on(true, "own.test", "/").as_deref(), Some("own:own.test /"));
    // Without generated rules there is one index, and both kinds see it.
    let t = RouteTable::compile([(&ko, &own)]);
    assert!(t.tls.is_none());
    assert!(t.lookup_with(true, "own.test", "/", |_| true).is_some());
}

#[test]
fn exact_path_beats_prefix_of_same_and_longer_paths() {
    let t = one(vec![mk_rule(
        "h.example.com",
        vec![
            mk_prefix("/foo/bar"),
            mk_prefix("/foo"),
            mk_exact("/foo"),
            mk_prefix("/"),
        ],
    )]);
    assert_eq!(
        hit(&t, "h.example.com", "/foo").as_deref(),
        Some("h.example.com Exact /foo")
    );
    assert_eq!(
        hit(&t, "h.example.com", "/foo/").as_deref(),
        Some("h.example.com Prefix /foo")
    );
    assert_eq!(
        hit(&t, "h.example.com", "/foo/bar/x").as_deref(),
        Some("h.example.com Prefix /foo/bar")
    );
}

#[test]
fn exact_path_is_exact_and_case_sensitive() {
    let t = one(vec![mk_rule("h.example.com", vec![mk_exact("/login")])]);
    assert!(hit(&t, "h.example.com", "/login").is_some());
    assert_eq!(hit(&t, "h.example.com", "/login/"), None);
    assert_eq!(hit(&t, "h.example.com", "/Login"), None);
    assert_eq!(hit(&t, "h.example.com", "/login/x"), None);
    assert_eq!(hit(&t, "h.example.com", "/"), None);
}

#[test]
fn longest_prefix_wins_regardless_of_declaration_order() {
    for paths in [
        vec![
            mk_prefix("/"),
            mk_prefix("/a"),
            mk_prefix("/a/b"),
            mk_prefix("/a/b/c"),
        ],
        vec![
            mk_prefix("/a/b/c"),
            mk_prefix("/a/b"),
            mk_prefix("/a"),
            mk_prefix("/"),
        ],
    ] {
        let t = one(vec![mk_rule("h", paths)]);
        assert_eq!(hit(&t, "h", "/a/b/c/d").as_deref(), Some("h Prefix /a/b/c"));
        assert_eq!(hit(&t, "h", "/a/b/x").as_deref(), Some("h Prefix /a/b"));
        assert_eq!(hit(&t, "h", "/a/bc").as_deref(), Some("h Prefix /a"));
        assert_eq!(hit(&t, "h", "/b").as_deref(), Some("h Prefix /"));
    }
}

#[test]
fn prefix_matches_whole_segments_only() {
    let t = one(vec![mk_rule("h", vec![mk_prefix("/foo")])]);
    for path in ["/foo", "/foo/", "/foo/bar", "/foo/bar/", "/foo//bar"] {
        assert_eq!(hit(&t, "h", path).as_deref(), Some("h Prefix /foo"), "{path}");
    }
    for path in ["/foobar", "/fo", "/", "/bar/foo", "/Foo"] {
        assert_eq!(hit(&t, "h", path), None, "{path}");
    }
}

#[test]
fn prefix_with_trailing_slash_equals_without() {
    let a = one(vec![mk_rule("h", vec![mk_prefix("/foo/")])]);
    for path in ["/foo", "/foo/", "/foo/bar"] {
        assert_eq!(hit(&a, "h", path).as_deref(), Some("h Prefix /foo/"), "{path}");
    }
    assert_eq!(hit(&a, "h", "/foobar"), None);
    assert_eq!(
        match_key(PathType::Prefix, "/foo/"),
        match_key(PathType::Prefix, "/foo")
    );
    assert_ne!(
        match_key(PathType::Exact, "/foo/"),
        match_key(PathType::Exact, "/foo")
    );
    // The second claim of the same prefix is skipped: first one wins.
    let b = one(vec![mk_rule("h", vec![mk_prefix("/foo"), mk_prefix("/foo/")])]);
    assert_eq!(b.len(), 1);
    assert_eq!(hit(&b, "h", "/foo/x").as_deref(), Some("h Prefix /foo"));
}

#[test]
fn root_prefix_matches_everything() {
    let t = one(vec![mk_rule("h", vec![mk_prefix("/")])]);
    for path in ["/", "/a", "/a/b/c", "//", "/a/"] {
        assert!(hit(&t, "h", path).is_some(), "{path}");
    }
}

#[test]
fn hosts_are_case_insensitive_and_ports_and_trailing_dots_ignored() {
    let t = one(vec![
        mk_rule("app.example.com", vec![mk_prefix("/")]),
        mk_rule("*.example.org", vec![mk_prefix("/")]),
    ]);
    for host in [
        "app.example.com",
        "APP.Example.COM",
        "app.example.com:8080",
        "app.example.com.",
        "App.Example.Com.:443",
    ] {
        assert_eq!(
            hit(&t, host, "/").as_deref(),
            Some("app.example.com Prefix /"),
            "{host}"
        );
    }
    for host in ["WWW.example.ORG", "www.example.org:80"] {
        assert_eq!(
            hit(&t, host, "/").as_deref(),
            Some("*.example.org Prefix /"),
            "{host}"
        );
    }
    assert_eq!(hit(&t, "app.example.com:x", "/"), None, "not a port");
}

#[test]
fn normalize_host_handles_ports_and_ipv6_literals() {
    assert_eq!(normalize_host("app.example.com:8080"), "app.example.com");
    assert_eq!(normalize_host("[::1]:80"), "[::1]");
    assert_eq!(normalize_host("[::1]"), "[::1]");
    assert_eq!(normalize_host("[2001:DB8::1]:8443"), "[2001:db8::1]");
    assert_eq!(normalize_host("Example.COM."), "example.com");
    assert_eq!(normalize_host("127.0.0.1:18080"), "127.0.0.1");
    // The port is the digits after the last colon, however many (none included).
    assert_eq!(normalize_host("app.example.com:"), "app.example.com");
    assert_eq!(normalize_host("example.com.:443"), "example.com");
    assert_eq!(normalize_host("a:1:2"), "a:1");
    assert_eq!(normalize_host("a:b"), "a:b");
    assert_eq!(normalize_host("8080"), "8080");
    assert_eq!(normalize_host(":80"), "");
    assert_eq!(normalize_host(""), "");
    assert_eq!(normalize_host("[::1"), "[::1");
    assert!(matches!(
        normalize_host("app.example.com"),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn ip_literal_hosts_route_like_names() {
    let t = one(vec![mk_rule("127.0.0.1", vec![mk_prefix("/")])]);
    assert!(hit(&t, "127.0.0.1:18080", "/x").is_some());
    assert_eq!(hit(&t, "[::1]:80", "/x"), None);
}

#[test]
fn no_match_is_none() {
    let t = one(vec![mk_rule("h.example.com", vec![mk_prefix("/api")])]);
    assert_eq!(hit(&t, "other.example.com", "/api"), None);
    assert_eq!(hit(&t, "h.example.com", "/"), None);
    assert_eq!(hit(&t, "", "/api"), None);
    assert_eq!(hit(&RouteTable::default(), "h.example.com", "/api"), None);
    assert!(RouteTable::default().is_empty());
}

#[test]
fn older_spec_keeps_a_contested_match_and_routes_carry_their_source() {
    let older = (key("a-older"), mk_spec(vec![mk_rule("h", vec![mk_prefix("/x")])]));
    let newer = (
        key("b-newer"),
        mk_spec(vec![
            mk_rule("h", vec![mk_prefix("/x/"), mk_prefix("/y")]),
            mk_rule("g", vec![mk_prefix("/")]),
        ]),
    );
    let t = table(&[older, newer]);
    assert_eq!(t.len(), 3);
    assert_eq!(t.lookup("h", "/x/1").unwrap().source, key("a-older"));
    assert_eq!(t.lookup("h", "/y").unwrap().source, key("b-newer"));
    assert_eq!(t.lookup("g", "/").unwrap().source, key("b-newer"));
}

#[test]
fn backends_are_resolved_with_namespace_and_default_ports() {
    let spec = mk_spec(vec![mk_tls_rule(
        "h",
        "h-tls",
        vec![
            mk_path_to("/svc", PathType::Prefix, mk_svc("api", 8080)),
            mk_path_to("/plain", PathType::Prefix, mk_url("http://10.0.0.1")),
            mk_path_to("/tls", PathType::Prefix, mk_url("https://up.example.com/")),
            mk_path_to("/port", PathType::Prefix, mk_url("http://127.0.0.1:18090")),
            mk_path_to("/v6", PathType::Prefix, mk_url("http://[::1]")),
            mk_path_to("/v6port", PathType::Prefix, mk_url("http://[::1]:9000")),
        ],
    )]);
    let k = ObjectKey::new("shop", "web");
    let t = RouteTable::compile([(&k, &spec)]);
    let backend = |p: &str| t.lookup("h", p).unwrap().backends[0].0.to_string();
    assert_eq!(backend("/svc"), "service shop/api:8080");
    assert_eq!(backend("/plain"), "http://10.0.0.1:80");
    assert_eq!(backend("/tls"), "https://up.example.com:443");
    assert_eq!(backend("/port"), "http://127.0.0.1:18090");
    assert_eq!(backend("/v6"), "http://[::1]:80");
    assert_eq!(backend("/v6port"), "http://[::1]:9000");
    let route = t.lookup("h", "/svc").unwrap();
    assert_eq!(route.tls_secret.as_deref(), Some("h-tls"));
    assert_eq!(route.label(), "shop/web h/svc");
}

#[test]
fn invalid_backends_are_skipped_not_panicked_on() {
    let spec = mk_spec(vec![mk_rule(
        "h",
        vec![
            mk_path_to(
                "/neither",
                PathType::Prefix,
                lockstep_crds::Backend {
                    service: None,
                    url: None,
                    status: None,
                },
            ),
            mk_path_to("/port", PathType::Prefix, mk_svc("api", 70000)),
            mk_prefix("/ok"),
        ],
    )]);
    let t = one(spec.rules);
    assert_eq!(t.len(), 1);
    assert_eq!(hit(&t, "h", "/neither"), None);
    assert_eq!(hit(&t, "h", "/port"), None);
}

// ---------------------------------------------------------------------------------------------
// Property test: the compiled table agrees with a linear reference matcher.

/// What the table should answer, computed the slow and obvious way over the declared routes
/// in precedence order. Returns the index of the winning (spec, rule, path) in declaration
/// order, as "host Type path" plus source.
fn reference(specs: &[(ObjectKey, RouterConfigSpec)], host: &str, path: &str) -> Option<(String, String)> {
    // Every declared route in precedence order, without later duplicates of a match.
    let mut routes: Vec<(&ObjectKey, String, PathType, &str, bool)> = Vec::new();
    for (k, spec) in specs {
        for rule in &spec.rules {
            let h = rule.host.to_ascii_lowercase();
            for p in &rule.paths {
                let dup = routes.iter().any(|(_, h0, t0, p0, _)| {
                    *h0 == h && match_key(*t0, p0) == match_key(p.path_type, &p.path)
                });
                if !dup {
                    routes.push((k, h.clone(), p.path_type, &p.path, rule.wildcard_suffix()));
                }
            }
        }
    }
    // Host: strip the port, a trailing dot, lower case.
    let mut host = host.to_ascii_lowercase();
    if !host.starts_with('[')
        && let Some(i) = host.rfind(':')
        && host[i + 1..].chars().all(|c| c.is_ascii_digit())
    {
        host.truncate(i);
    }
    if host.ends_with('.') {
        host.pop();
    }
    // How specific a pattern is when it covers the host: an exact host most, then wildcards
    // by the labels of their suffix.
    let covers = |pattern: &str, suffix_match: bool| -> Option<usize> {
        if pattern == "*" {
            return Some(0);
        }
        match pattern.strip_prefix("*.") {
            None => (pattern == host).then_some(usize::MAX),
            Some(suffix) => {
                let labels: Vec<&str> = host.split('.').collect();
                let suffix_labels: Vec<&str> = suffix.split('.').collect();
                let head = labels.len().checked_sub(suffix_labels.len())?;
                let depth_ok = head == 1 || (suffix_match && head > 1);
                (depth_ok
                    && labels[..head].iter().all(|l| !l.is_empty())
                    && labels[head..] == suffix_labels[..])
                    .then_some(suffix_labels.len())
            }
        }
    };
    let best = routes.iter().filter_map(|r| covers(&r.1, r.4)).max();
    let candidates: Vec<_> = routes
        .iter()
        .filter(|r| best.is_some() && covers(&r.1, r.4) == best)
        .collect();
    let segs = |p: &str| {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let req = segs(path);
    let winner = candidates
        .iter()
        .find(|r| r.2 == PathType::Exact && r.3 == path)
        .or_else(|| {
            candidates
                .iter()
                .filter(|r| r.2 == PathType::Prefix && req.starts_with(&segs(r.3)))
                // max_by_key returns the last maximum; reverse so the first declared wins ties.
                .rev()
                .max_by_key(|r| segs(r.3).len())
        })?;
    Some((
        format!("{} {:?} {}", winner.1, winner.2, winner.3),
        winner.0.to_string(),
    ))
}

const LABELS: &[&str] = &["a", "b", "c"];
const SEGMENTS: &[&str] = &["x", "y", "xy"];

fn arb_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LABELS), 1..=3).prop_map(|l| l.join("."))
}

/// A rule host and, for a wildcard, whether it matches one or more labels.
fn arb_rule_host() -> impl Strategy<Value = (String, bool)> {
    (any::<bool>(), any::<bool>(), 0..8u8, arb_name()).prop_map(|(wild, suffix, one_in_8, name)| {
        if one_in_8 == 0 {
            ("*".to_owned(), false)
        } else if wild {
            (format!("*.{name}"), suffix)
        } else {
            (name, false)
        }
    })
}

fn arb_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(SEGMENTS), 0..=3),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash && !segs.is_empty() {
                p.push('/');
            }
            p
        })
}

fn arb_request_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(&["x", "y", "xy", "", "z"][..]), 0..=4),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash {
                p.push('/');
            }
            p
        })
}

fn arb_request_host() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(&["a", "b", "c", "A", "B", ""][..]), 1..=4),
        prop::sample::select(&["", ":8080", ".", ".:80"][..]),
    )
        .prop_map(|(labels, tail)| format!("{}{tail}", labels.join(".")))
}

fn arb_specs() -> impl Strategy<Value = Vec<(ObjectKey, RouterConfigSpec)>> {
    let path =
        (arb_path(), any::<bool>()).prop_map(|(p, exact)| if exact { mk_exact(&p) } else { mk_prefix(&p) });
    let rule = (arb_rule_host(), prop::collection::vec(path, 1..=5)).prop_map(|((h, suffix), ps)| {
        let mut rule = mk_rule(&h, ps);
        rule.wildcard_match = suffix.then_some(lockstep_crds::WildcardMatch::Suffix);
        rule
    });
    let spec = prop::collection::vec(rule, 1..=4).prop_map(mk_spec);
    prop::collection::vec(spec, 1..=3).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| (key(&format!("rc-{i}")), s))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_table_agrees_with_linear_reference(
        specs in arb_specs(),
        requests in prop::collection::vec((arb_request_host(), arb_request_path()), 1..=20),
    ) {
        let t = table(&specs);
        for (host, path) in &requests {
            let got = t.lookup(host, path).map(|r| (format!("{} {:?} {}", r.host, r.path_type, r.path), r.source.to_string()));
            prop_assert_eq!(got, reference(&specs, host, path), "host {:?} path {:?}", host, path);
        }
        // Every declared route is reachable by its own path, from some request.
        for r in t.routes() {
            let host = match r.host.strip_prefix("*.") {
                _ if &*r.host == "*" => "nowhere.test".to_owned(),
                Some(s) => format!("q.{s}"),
                None => r.host.to_string(),
            };
            let got = t.lookup(&host, &r.path).expect("a route is reachable by its own path");
            prop_assert!(got.path_type == PathType::Exact || r.path_type == PathType::Prefix);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request matches: Gateway API's precedence among entries that share a host.

fn spec_json(paths: serde_json::Value) -> RouterConfigSpec {
    serde_json::from_value(serde_json::json!({"rules": [{"host": "h", "paths": paths}]})).expect("spec")
}

fn to(port: u16) -> serde_json::Value {
    serde_json::json!({"url": format!("http://127.0.0.1:{port}")})
}

/// The port of the backend a request goes to.
fn routed(
    t: &RouteTable,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    query: Option<&str>,
) -> Option<u16> {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    let route = t.lookup_request(false, "h", path, &method, &map, query)?.route;
    match &route.backends[0].0 {
        BackendRef::Url { authority, .. } => authority.rsplit(':').next()?.parse().ok(),
        BackendRef::Service { .. } | BackendRef::Status(_) => None,
    }
}

#[test]
fn precedence_follows_gateway_api() {
    let t = table(&[(
        key("web"),
        spec_json(serde_json::json!([
            {"path": "/", "backend": to(1)},
            {"path": "/api", "backend": to(2)},
            {"path": "/api", "backend": to(3), "match": {"queryParams": [{"name": "a", "value": "1"}, {"name": "b", "value": "1"}]}},
            {"path": "/api", "backend": to(4), "match": {"headers": [{"name": "x-a", "value": "1"}]}},
            {"path": "/api", "backend": to(5), "match": {"headers": [{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "1"}]}},
            {"path": "/api", "backend": to(6), "match": {"method": "POST"}},
            {"path": "/api/exact", "pathType": "Exact", "backend": to(7), "match": {"headers": [{"name": "x-e", "value": "1"}]}},
            {"path": "/api/v1", "backend": to(8), "match": {"headers": [{"name": "x-v", "type": "RegularExpression", "value": "^v1$"}]}},
        ])),
    )]);
    // Longest Prefix without matches.
    assert_eq!(routed(&t, "GET", "/api/x", &[], None), Some(2));
    assert_eq!(routed(&t, "GET", "/other", &[], None), Some(1));
    // More query matches beat fewer (none).
    assert_eq!(routed(&t, "GET", "/api", &[], Some("a=1&b=1")), Some(3));
    assert_eq!(routed(&t, "GET", "/api", &[], Some("a=1")), Some(2));
    // Header matches beat query matches; more header matches beat fewer.
    assert_eq!(
        routed(&t, "GET", "/api", &[("x-a", "1")], Some("a=1&b=1")),
        Some(4)
    );
    assert_eq!(
        routed(&t, "GET", "/api", &[("x-a", "1"), ("x-b", "1")], None),
        Some(5)
    );
    // A method match beats header matches.
    assert_eq!(
        routed(&t, "POST", "/api", &[("x-a", "1"), ("x-b", "1")], None),
        Some(6)
    );
    // Exact beats Prefix, but only when its matches hold; else the longest Prefix that does.
    assert_eq!(routed(&t, "GET", "/api/exact", &[("x-e", "1")], None), Some(7));
    assert_eq!(routed(&t, "GET", "/api/exact", &[], None), Some(2));
    // A longer Prefix whose match fails falls back to a shorter one.
    assert_eq!(routed(&t, "GET", "/api/v1/x", &[("x-v", "v1")], None), Some(8));
    assert_eq!(routed(&t, "GET", "/api/v1/x", &[("x-v", "v10")], None), Some(2));
}

#[test]
fn equal_specificity_goes_to_the_older_config_then_list_order() {
    let older = spec_json(serde_json::json!([
        {"path": "/", "backend": to(1), "match": {"headers": [{"name": "x-a", "value": "1"}]}},
        {"path": "/", "backend": to(2), "match": {"headers": [{"name": "x-b", "value": "1"}]}},
    ]));
    let newer = spec_json(serde_json::json!([
        {"path": "/", "backend": to(3), "match": {"headers": [{"name": "x-c", "value": "1"}]}},
    ]));
    let t = table(&[(key("a-older"), older), (key("b-newer"), newer)]);
    assert_eq!(
        routed(&t, "GET", "/", &[("x-c", "1"), ("x-b", "1")], None),
        Some(2)
    );
    assert_eq!(
        routed(&t, "GET", "/", &[("x-c", "1"), ("x-b", "1"), ("x-a", "1")], None),
        Some(1)
    );
    assert_eq!(routed(&t, "GET", "/", &[("x-c", "1")], None), Some(3));
    assert_eq!(routed(&t, "GET", "/", &[], None), None);
}

#[test]
fn weighted_backends_and_redirects_compile() {
    let t = table(&[(
        key("web"),
        spec_json(serde_json::json!([
            {"path": "/w", "backends": [{"url": "http://127.0.0.1:1", "weight": 3}, {"url": "http://127.0.0.1:2", "weight": 1}, {"url": "http://127.0.0.1:3", "weight": 0}]},
            {"path": "/drained", "backends": [{"url": "http://127.0.0.1:1", "weight": 0}]},
            {"path": "/r", "filters": {"redirect": {"scheme": "https"}}},
        ])),
    )]);
    let w = t.lookup("h", "/w").unwrap();
    let picks: Vec<String> = (0..8).map(|_| w.pick_backend().unwrap().to_string()).collect();
    assert_eq!(picks.iter().filter(|p| p.ends_with(":1")).count(), 6);
    assert_eq!(picks.iter().filter(|p| p.ends_with(":2")).count(), 2);
    assert!(t.lookup("h", "/drained").unwrap().pick_backend().is_none());
    let r = t.lookup("h", "/r").unwrap();
    assert!(r.backends.is_empty() && r.filters.redirect.is_some());
}

#[test]
fn status_backends_keep_their_weight() {
    // What a generated RouterConfig says for an unresolved Gateway API backendRef (HTTPRoute
    // backendRefs: "the proportion of requests that would otherwise have been routed to an
    // invalid backend MUST receive a 500 status code").
    let t = table(&[(
        key("web"),
        spec_json(serde_json::json!([
            {"path": "/split", "backends": [{"url": "http://127.0.0.1:1", "weight": 1}, {"status": 500, "weight": 1}]},
            {"path": "/gone", "backend": {"status": 503}},
            {"path": "/both", "backend": {"status": 500, "url": "http://127.0.0.1:1"}},
        ])),
    )]);
    let split = t.lookup("h", "/split").unwrap();
    let picks: Vec<String> = (0..10)
        .map(|_| split.pick_backend().unwrap().to_string())
        .collect();
    assert_eq!(
        picks.iter().filter(|p| *p == "status 500").count(),
        5,
        "{picks:?}"
    );
    assert_eq!(
        t.lookup("h", "/gone").unwrap().pick_backend(),
        Some(&BackendRef::Status(503))
    );
    assert_eq!(hit(&t, "h", "/both"), None, "an invalid backend is skipped");
}
