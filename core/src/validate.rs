//! Semantic validation: the schema's rules again (for files no apiserver has seen) and the
//! checks a schema cannot express.

use std::collections::HashMap;

use garde::Validate;
use lockstep_crds::RouterConfigSpec;

use crate::table::entry_key;

/// Every problem found in one spec, each line naming its field ("spec.rules[0].host: …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Invalid {
    /// One entry per problem.
    pub problems: Vec<String>,
}

/// garde names fields as in Rust ("tls.secret_name"); the API names them in camelCase
/// ("tls.secretName"). Path components hold no other underscores.
fn camel_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// ", match …" for an entry with request conditions, "" otherwise.
pub(crate) fn match_suffix(path: &lockstep_crds::HttpPath) -> String {
    let m = crate::traffic::request_match_key(path.matches.as_ref());
    if m.is_empty() { m } else { format!(", match {m}") }
}

/// garde names the fields of the API by their Rust names where they differ from the
/// serialised ones ("matches" is "match", a match's "matchType" is "type").
fn api_field_path(path: &str) -> String {
    camel_case_path(path)
        .split('.')
        .map(|c| {
            if c == "matches" {
                "match".to_owned()
            } else if c == "matchType" {
                "type".to_owned()
            } else {
                c.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Validates one spec on its own.
pub fn validate_spec(spec: &RouterConfigSpec) -> Result<(), Invalid> {
    let mut problems = Vec::new();
    if let Err(report) = spec.validate() {
        for (path, error) in report.iter() {
            problems.push(format!("spec.{}: {error}", api_field_path(&path.to_string())));
        }
    }
    let mut seen: HashMap<(String, String), (usize, usize)> = HashMap::new();
    for (r, rule) in spec.rules.iter().enumerate() {
        let host = rule.host.to_ascii_lowercase();
        for (p, path) in rule.paths.iter().enumerate() {
            let key = (host.clone(), entry_key(path));
            if let Some((r0, p0)) = seen.insert(key, (r, p)) {
                problems.push(format!(
                    "spec.rules[{r}].paths[{p}]: duplicate of spec.rules[{r0}].paths[{p0}] (host {host}, {:?} {}{})",
                    path.path_type,
                    path.path,
                    match_suffix(path)
                ));
                // Keep pointing at the first occurrence for later duplicates.
                seen.insert((host.clone(), entry_key(path)), (r0, p0));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid { problems })
    }
}

/// What only RouterConfigs generated from a Gateway may say, refused in any other: host `*`
/// (any host) and a Service of another namespace (`service.namespace`, which the operator
/// writes only where a ReferenceGrant allows it). `generated`: the object carries
/// [`lockstep_crds::GENERATED_FROM_LABEL`]. The admission policy also requires the operator
/// as the writer of such an object; this check stands where no policy ran (standalone files,
/// objects stored before it was installed).
pub fn validate_origin(spec: &RouterConfigSpec, generated: bool) -> Result<(), Invalid> {
    if generated {
        return Ok(());
    }
    let label = lockstep_crds::GENERATED_FROM_LABEL;
    let mut problems = Vec::new();
    for (r, rule) in spec.rules.iter().enumerate() {
        if rule.host == lockstep_crds::ANY_HOST {
            problems.push(format!(
                "spec.rules[{r}].host: \"*\" (any host) is only for RouterConfigs generated from a Gateway (label {label})"
            ));
        }
        for (p, path) in rule.paths.iter().enumerate() {
            for (field, service) in service_backends(path) {
                if service.namespace.is_some() {
                    problems.push(format!(
                        "spec.rules[{r}].paths[{p}].{field}.namespace: a Service of another namespace is only for RouterConfigs generated from a Gateway (label {label}), where a ReferenceGrant allows it"
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid { problems })
    }
}

/// The Services a path names, each with its field below the path: `backend.service`,
/// `backends[i].service` or `filters.mirrors[i].service`.
pub fn service_backends(
    path: &lockstep_crds::HttpPath,
) -> impl Iterator<Item = (String, &lockstep_crds::ServiceBackend)> {
    let mirrors = path
        .filters
        .iter()
        .flat_map(|f| f.mirrors.iter().enumerate())
        .map(|(i, m)| (format!("filters.mirrors[{i}].service"), &m.service));
    let single = path
        .backend
        .iter()
        .filter_map(|b| Some(("backend.service".to_owned(), b.service.as_ref()?)));
    let weighted = path
        .backends
        .iter()
        .enumerate()
        .filter_map(|(i, b)| Some((format!("backends[{i}].service"), b.service.as_ref()?)));
    single.chain(weighted).chain(mirrors)
}

#[cfg(test)]
mod tests {
    use lockstep_crds::PathType;

    use super::*;
    use crate::testutil::*;

    fn problems(spec: &RouterConfigSpec) -> Vec<String> {
        validate_spec(spec).err().map(|e| e.problems).unwrap_or_default()
    }

    #[test]
    fn a_good_spec_passes() {
        let spec = mk_spec(vec![
            mk_tls_rule(
                "app.example.com",
                "app-tls",
                vec![mk_prefix("/"), mk_exact("/"), mk_prefix("/api")],
            ),
            mk_rule(
                "*.example.com",
                vec![mk_path_to("/", PathType::Prefix, mk_svc("api", 8080))],
            ),
        ]);
        assert_eq!(validate_spec(&spec), Ok(()));
    }

    #[test]
    fn messages_name_the_field() {
        let mut spec = mk_spec(vec![mk_rule(
            "app.example.com",
            vec![mk_prefix("/"), mk_prefix("api")],
        )]);
        spec.rules.push(mk_tls_rule(
            "a.*.example.com",
            "Bad_Secret",
            vec![mk_path_to("/", PathType::Prefix, mk_svc("api", 0))],
        ));
        spec.rules.push(mk_rule(
            "b.example.com",
            vec![mk_path_to("/", PathType::Prefix, mk_url("ftp://x"))],
        ));
        spec.rules.push(mk_rule(
            "c.example.com",
            vec![mk_path_to(
                "/",
                PathType::Prefix,
                lockstep_crds::Backend {
                    service: None,
                    url: None,
                    status: None,
                },
            )],
        ));
        spec.fleet = "Not A Fleet".into();
        let p = problems(&spec);
        let has = |prefix: &str| p.iter().any(|m| m.starts_with(prefix));
        assert!(has("spec.rules[0].paths[1].path: "), "{p:#?}");
        assert!(
            has("spec.rules[1].host: a wildcard is allowed only as the whole first label"),
            "{p:#?}"
        );
        assert!(has("spec.rules[1].tls.secretName: "), "{p:#?}");
        assert!(has("spec.rules[1].paths[0].backend.service.port: "), "{p:#?}");
        assert!(has("spec.rules[2].paths[0].backend.url: "), "{p:#?}");
        assert!(
            has(
                "spec.rules[3].paths[0].backend: exactly one of backend.service, backend.url or backend.status"
            ),
            "{p:#?}"
        );
        assert!(has("spec.fleet: "), "{p:#?}");
        assert_eq!(p.len(), 7, "{p:#?}");
        let joined = validate_spec(&spec).unwrap_err().to_string();
        assert!(joined.contains("; "), "{joined}");
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(
            problems(&mk_spec(vec![]))
                .iter()
                .any(|m| m.starts_with("spec.rules: "))
        );
        let rules = (0..=lockstep_crds::MAX_RULES)
            .map(|i| mk_rule(&format!("h{i}.example.com"), vec![mk_prefix("/")]));
        assert!(
            problems(&mk_spec(rules.collect()))
                .iter()
                .any(|m| m.starts_with("spec.rules: "))
        );
        let paths = (0..=lockstep_crds::MAX_PATHS).map(|i| mk_prefix(&format!("/p{i}")));
        assert!(
            problems(&mk_spec(vec![mk_rule("h", paths.collect())]))
                .iter()
                .any(|m| m.starts_with("spec.rules[0].paths: "))
        );
        assert!(
            problems(&mk_spec(vec![mk_rule("h", vec![])]))
                .iter()
                .any(|m| m.starts_with("spec.rules[0].paths: "))
        );
        let long_host = format!("{}.example.com", vec!["a".repeat(60); 5].join("."));
        assert!(
            problems(&mk_spec(vec![mk_rule(&long_host, vec![mk_prefix("/")])]))
                .iter()
                .any(|m| m.starts_with("spec.rules[0].host: "))
        );
        let long_path = format!("/{}", "p".repeat(lockstep_crds::MAX_PATH_LEN));
        assert!(
            problems(&mk_spec(vec![mk_rule("h", vec![mk_prefix(&long_path)])]))
                .iter()
                .any(|m| m.starts_with("spec.rules[0].paths[0].path: "))
        );
    }

    #[test]
    fn host_syntax() {
        for good in ["a", "app.example.com", "*.example.com", "x-1.y2.z", "127.0.0.1"] {
            assert_eq!(
                problems(&mk_spec(vec![mk_rule(good, vec![mk_prefix("/")])])),
                Vec::<String>::new(),
                "{good}"
            );
        }
        for bad in [
            "",
            "App.example.com",
            "a.*.example.com",
            "*.",
            "* ",
            "*.*",
            "**.example.com",
            "-a.example.com",
            "a-.example.com",
            "a..b",
            "a.b.",
            "a_b.example.com",
            "app.example.com:80",
            &"a".repeat(64),
        ] {
            let p = problems(&mk_spec(vec![mk_rule(bad, vec![mk_prefix("/")])]));
            assert!(
                p.iter().any(|m| m.starts_with("spec.rules[0].host: ")),
                "{bad:?}: {p:?}"
            );
        }
        let msg = |host: &str| problems(&mk_spec(vec![mk_rule(host, vec![mk_prefix("/")])])).join("\n");
        assert_eq!(
            msg("App.example.com"),
            "spec.rules[0].host: host must be lower case (hosts are matched case-insensitively)"
        );
        assert!(msg("a_b.example.com").starts_with("spec.rules[0].host: host must be a DNS name (RFC 1123)"));
        assert!(msg("a.*.example.com").starts_with("spec.rules[0].host: a wildcard is allowed only"));
        assert!(msg("*foo.example.com").starts_with("spec.rules[0].host: a wildcard is allowed only"));
    }

    #[test]
    fn any_host_is_only_for_generated_router_configs() {
        let spec = mk_spec(vec![
            mk_rule("app.example.com", vec![mk_prefix("/")]),
            mk_rule("*", vec![mk_prefix("/")]),
        ]);
        assert_eq!(validate_spec(&spec), Ok(()), "the schema's syntax allows it");
        assert_eq!(validate_origin(&spec, true), Ok(()));
        assert_eq!(
            validate_origin(&spec, false).unwrap_err().problems,
            [
                "spec.rules[1].host: \"*\" (any host) is only for RouterConfigs generated from a Gateway (label lockstep.dev/generated-from)"
            ]
        );
        // With tls: the certificate for any SNI name (a Gateway's HTTPS listener without
        // host name), still only in a generated RouterConfig.
        let tls = mk_spec(vec![mk_tls_rule("*", "any-tls", vec![mk_prefix("/")])]);
        assert_eq!(validate_spec(&tls), Ok(()));
        assert_eq!(validate_origin(&tls, true), Ok(()));
        assert!(validate_origin(&tls, false).is_err());
    }

    #[test]
    fn url_syntax() {
        for good in [
            "http://127.0.0.1:18090",
            "https://up.example.com",
            "http://[::1]:80",
            "http://up/",
        ] {
            assert_eq!(
                problems(&mk_spec(vec![mk_rule(
                    "h",
                    vec![mk_path_to("/", PathType::Prefix, mk_url(good))]
                )])),
                Vec::<String>::new(),
                "{good}"
            );
        }
        for bad in [
            "ftp://x",
            "http://x/path",
            "http://",
            "127.0.0.1:80",
            "http://x:80?q",
            "http://user@x",
        ] {
            let p = problems(&mk_spec(vec![mk_rule(
                "h",
                vec![mk_path_to("/", PathType::Prefix, mk_url(bad))],
            )]));
            assert!(
                p.iter()
                    .any(|m| m.starts_with("spec.rules[0].paths[0].backend.url: ")),
                "{bad:?}: {p:?}"
            );
        }
    }

    #[test]
    fn duplicate_host_and_path_within_one_object() {
        let spec = mk_spec(vec![
            mk_rule("app.example.com", vec![mk_prefix("/api"), mk_exact("/api")]),
            mk_rule("other.example.com", vec![mk_prefix("/api")]),
            mk_rule("app.example.com", vec![mk_prefix("/x"), mk_prefix("/api/")]),
            mk_rule("app.example.com", vec![mk_prefix("/api")]),
        ]);
        assert_eq!(
            problems(&spec),
            vec![
                "spec.rules[2].paths[1]: duplicate of spec.rules[0].paths[0] (host app.example.com, Prefix /api/)".to_owned(),
                "spec.rules[3].paths[0]: duplicate of spec.rules[0].paths[0] (host app.example.com, Prefix /api)".to_owned(),
            ]
        );
        let exact = mk_spec(vec![mk_rule(
            "h",
            vec![mk_exact("/a"), mk_exact("/a/"), mk_exact("/a")],
        )]);
        assert_eq!(
            problems(&exact),
            vec!["spec.rules[0].paths[2]: duplicate of spec.rules[0].paths[0] (host h, Exact /a)".to_owned()]
        );
    }
}

#[cfg(test)]
mod traffic_tests {
    use super::*;

    fn spec_with_path(path: serde_json::Value) -> RouterConfigSpec {
        serde_json::from_value(serde_json::json!({"rules": [{"host": "h", "paths": [path]}]}))
            .expect("spec parses")
    }

    fn problems(path: serde_json::Value) -> Vec<String> {
        validate_spec(&spec_with_path(path))
            .err()
            .map(|e| e.problems)
            .unwrap_or_default()
    }

    #[test]
    fn a_full_featured_path_passes() {
        let p = problems(serde_json::json!({
            "path": "/api", "pathType": "Prefix",
            "match": {"method": "GET", "headers": [{"name": "x-canary", "value": "true"},
                {"name": "x-v", "type": "RegularExpression", "value": "^v[0-9]+$"}],
                "queryParams": [{"name": "debug", "value": "1"}]},
            "backends": [{"url": "http://127.0.0.1:1", "weight": 90}, {"service": {"name": "b", "port": 80}, "weight": 10}],
            "filters": {"requestHeaders": {"set": [{"name": "x-env", "value": "prod"}], "add": [{"name": "x-a", "value": "1"}], "remove": ["x-debug"]},
                "responseHeaders": {"remove": ["server"]},
                "rewrite": {"hostname": "internal.example.com", "path": {"replacePrefixMatch": "/"}}},
            "timeouts": {"request": "10s", "backendRequest": "3s"},
            "retry": {"attempts": 2, "codes": [502, 503], "backoff": "100ms"},
            "upgrades": ["websocket", "x-tunnel/2"]
        }));
        assert_eq!(p, Vec::<String>::new());
        let redirect = problems(serde_json::json!({
            "path": "/old", "filters": {"redirect": {"scheme": "https", "hostname": "new.example.com", "port": 443,
                "path": {"replaceFullPath": "/new"}, "statusCode": 301}}}));
        assert_eq!(redirect, Vec::<String>::new());
    }

    #[test]
    fn every_invalid_traffic_value_names_its_field() {
        let url = serde_json::json!({"url": "http://127.0.0.1:1"});
        #[rustfmt::skip]
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"path": "/", "backends": [{"url": "http://127.0.0.1:1", "weight": -1}]}), "spec.rules[0].paths[0].backends[0].weight: "),
            (serde_json::json!({"path": "/", "backends": [{"url": "http://127.0.0.1:1", "weight": 1_000_001}]}), "spec.rules[0].paths[0].backends[0].weight: "),
            (serde_json::json!({"path": "/", "backend": url, "backends": [{"url": "http://127.0.0.1:1"}]}), "spec.rules[0].paths[0]: backends: backend and backends are exclusive"),
            (serde_json::json!({"path": "/"}), "spec.rules[0].paths[0]: backend: one of backend or backends"),
            (serde_json::json!({"path": "/", "backends": [{"url": "http://127.0.0.1:1"}], "filters": {"redirect": {}}}), "spec.rules[0].paths[0]: filters.redirect: filters.redirect and backends are exclusive"),
            (serde_json::json!({"path": "/", "filters": {"redirect": {}, "rewrite": {}}}), "spec.rules[0].paths[0].filters: redirect and rewrite are exclusive"),
            (serde_json::json!({"path": "/", "filters": {"redirect": {"statusCode": 305}}}), "spec.rules[0].paths[0].filters.redirect.statusCode: "),
            (serde_json::json!({"path": "/", "pathType": "Exact", "filters": {"redirect": {"path": {"replacePrefixMatch": "/x"}}}}), "spec.rules[0].paths[0]: filters.redirect.path.replacePrefixMatch: replacePrefixMatch needs a Prefix path"),
            (serde_json::json!({"path": "/", "pathType": "Exact", "backend": url, "filters": {"rewrite": {"path": {"replacePrefixMatch": "/x"}}}}), "spec.rules[0].paths[0]: filters.rewrite.path.replacePrefixMatch: "),
            (serde_json::json!({"path": "/", "backend": url, "match": {"headers": [{"name": "x", "type": "RegularExpression", "value": "a(b"}]}}), "spec.rules[0].paths[0].match.headers[0]: value: invalid regular expression"),
            (serde_json::json!({"path": "/", "backend": url, "match": {"queryParams": [{"name": "q", "type": "RegularExpression", "value": "a".repeat(1025)}]}}), "spec.rules[0].paths[0].match.queryParams[0]: value: a regular expression is at most 1024"),
            (serde_json::json!({"path": "/", "backend": url, "match": {"headers": [{"name": "x canary", "value": "1"}]}}), "spec.rules[0].paths[0].match.headers[0].name: "),
            (serde_json::json!({"path": "/", "backend": url, "filters": {"requestHeaders": {"set": [{"name": "a:b", "value": "1"}]}}}), "spec.rules[0].paths[0].filters.requestHeaders.set[0].name: "),
            (serde_json::json!({"path": "/", "backend": url, "filters": {"responseHeaders": {"remove": ["bad name"]}}}), "spec.rules[0].paths[0].filters.responseHeaders.remove[0]: "),
            (serde_json::json!({"path": "/", "backend": url, "timeouts": {"request": "10"}}), "spec.rules[0].paths[0].timeouts.request: must be a duration"),
            (serde_json::json!({"path": "/", "backend": url, "timeouts": {"request": "1s", "backendRequest": "2s"}}), "spec.rules[0].paths[0].timeouts: backendRequest: backendRequest must not be longer than request"),
            (serde_json::json!({"path": "/", "backend": url, "retry": {"attempts": 11}}), "spec.rules[0].paths[0].retry.attempts: "),
            (serde_json::json!({"path": "/", "backend": url, "retry": {"attempts": 1, "codes": [404]}}), "spec.rules[0].paths[0].retry.codes[0]: "),
            (serde_json::json!({"path": "/", "backend": url, "retry": {"attempts": 1, "backoff": "fast"}}), "spec.rules[0].paths[0].retry.backoff: must be a duration"),
            (serde_json::json!({"path": "/", "backend": url, "upgrades": ["websocket", "H2C"]}), "spec.rules[0].paths[0].upgrades[1]: H2C: h2c may not be tunnelled"),
            (serde_json::json!({"path": "/", "backend": url, "upgrades": ["h2c/1"]}), "spec.rules[0].paths[0].upgrades[0]: h2c/1: h2c may not be tunnelled"),
            (serde_json::json!({"path": "/", "backend": url, "upgrades": ["web socket"]}), "spec.rules[0].paths[0].upgrades[0]: \"web socket\": an upgrade protocol is a token"),
            (serde_json::json!({"path": "/", "backend": url, "upgrades": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}), "spec.rules[0].paths[0].upgrades: "),
            (serde_json::json!({"path": "/", "backend": {"status": 200}}), "spec.rules[0].paths[0].backend.status: "),
            (serde_json::json!({"path": "/", "backends": [{"status": 600}]}), "spec.rules[0].paths[0].backends[0].status: "),
            (serde_json::json!({"path": "/", "backend": {"status": 500, "url": "http://127.0.0.1:1"}}), "spec.rules[0].paths[0].backend: exactly one of backend.service, backend.url or backend.status"),
            (serde_json::json!({"path": "/", "backends": [{"status": 500, "service": {"name": "a", "port": 1}}]}), "spec.rules[0].paths[0].backends[0]: exactly one of service, url or status"),
        ];
        for (path, expected) in cases {
            let p = problems(path.clone());
            assert!(
                p.iter().any(|m| m.starts_with(expected)),
                "{path}: expected {expected:?} in {p:#?}"
            );
        }
    }

    #[test]
    fn filters_may_not_name_framing_hop_by_hop_or_host_headers() {
        let url = serde_json::json!({"url": "http://127.0.0.1:1"});
        for name in lockstep_crds::PROXY_MANAGED_HEADERS {
            let shouted = name.to_ascii_uppercase();
            for side in ["requestHeaders", "responseHeaders"] {
                for (filter, field) in [
                    (
                        serde_json::json!({"set": [{"name": "x-ok", "value": "1"}, {"name": name, "value": "0"}]}),
                        "set[1].name",
                    ),
                    (
                        serde_json::json!({"add": [{"name": shouted, "value": "0"}]}),
                        "add[0].name",
                    ),
                    (serde_json::json!({"remove": ["x-ok", name]}), "remove[1]"),
                ] {
                    let p =
                        problems(serde_json::json!({"path": "/", "backend": url, "filters": {side: filter}}));
                    let expected = format!("spec.rules[0].paths[0].filters.{side}.{field}: ");
                    assert!(
                        p.iter()
                            .any(|m| m.starts_with(&expected) && m.contains("the proxy's own")),
                        "{name} in {side}: expected {expected:?} in {p:#?}"
                    );
                }
            }
        }
        // Names that merely contain one are fine.
        let p = problems(
            serde_json::json!({"path": "/", "backend": url, "filters": {"requestHeaders":
            {"set": [{"name": "x-content-length", "value": "1"}, {"name": "hosting", "value": "1"}], "remove": ["upgrade-insecure-requests"]}}}),
        );
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn same_path_with_different_matches_is_no_duplicate_but_the_same_match_is() {
        let spec: RouterConfigSpec = serde_json::from_value(serde_json::json!({"rules": [{"host": "h", "paths": [
            {"path": "/", "backend": {"url": "http://127.0.0.1:1"}},
            {"path": "/", "backend": {"url": "http://127.0.0.1:2"}, "match": {"headers": [{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "2"}]}},
            {"path": "/", "backend": {"url": "http://127.0.0.1:3"}, "match": {"headers": [{"name": "X-B", "value": "2"}, {"name": "x-a", "value": "1"}]}},
        ]}]}))
        .unwrap();
        let p = validate_spec(&spec).unwrap_err().problems;
        assert_eq!(
            p,
            vec!["spec.rules[0].paths[2]: duplicate of spec.rules[0].paths[1] (host h, Prefix /, match header x-a=1, header x-b=2)".to_owned()]
        );
    }
}
