//! The RouterConfig API against a real apiserver, through real kubectl: the examples apply,
//! invalid objects are rejected at admission with messages naming the field, `kubectl get`
//! shows the printer columns and `kubectl explain` shows the field docs.

use std::time::Duration;

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::{ControlPlane, eventually, repo_root};
use serde_json::{Value, json};

/// `kubectl apply -f -` of one object into `ns`, with extra flags: Ok(stdout) or Err(stderr).
fn apply(cp: &ControlPlane, ns: &str, object: &Value, flags: &[&str]) -> Result<String, String> {
    let args = [&["apply", "-n", ns, "-f", "-"], flags].concat();
    let out = cp
        .kubectl_output(&args, Some(&object.to_string()))
        .expect("kubectl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn router_config(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig", "metadata": {"name": name}, "spec": spec})
}

fn path(p: &str) -> Value {
    json!({"path": p, "pathType": "Prefix", "backend": {"url": "http://127.0.0.1:18090"}})
}

fn rule(host: &str) -> Value {
    json!({"host": host, "paths": [path("/")]})
}

/// A valid spec; each invalid case changes one thing.
fn valid_spec() -> Value {
    json!({"fleet": "default", "rules": [
        {"host": "app.example.com", "tls": {"secretName": "app-tls"}, "paths": [
            {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": 8080}}},
            {"path": "/", "pathType": "Exact", "backend": {"url": "http://127.0.0.1:18090"}}]}]})
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut spec = valid_spec();
    edit(&mut spec);
    spec
}

#[tokio::test]
async fn every_example_applies_with_kubectl() {
    let cp = ControlPlane::shared();
    let dir = repo_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        // The Gateway API example needs the Gateway API CRDs: e2e/tests/gateway.rs applies it.
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap()
                .contains("gateway.networking.k8s.io/")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "examples/ holds RouterConfig YAML");
    for file in &files {
        let file = file.to_str().unwrap();
        let out = cp
            .kubectl_ok(&["apply", "-f", file])
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(out.contains("routerconfig.lockstep.dev/"), "{file}: {out}");
        // Applying again changes nothing: the file is already in the apiserver's normal form.
        let again = cp.kubectl_ok(&["apply", "-f", file]).unwrap();
        assert!(again.contains("unchanged"), "{file}: {again}");
        // And every object is also valid for the standalone proxy, which has no apiserver.
        let text = std::fs::read_to_string(file).unwrap();
        for rc in lockstep_core::file::parse_router_configs(file, &text).unwrap() {
            lockstep_core::validate_spec(&rc.spec).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
    let web = cp
        .kubectl_ok(&["get", "rcfg", "web", "-n", "default", "-o", "json"])
        .unwrap();
    let web: Value = serde_json::from_str(&web).unwrap();
    assert_eq!(web["spec"]["fleet"], "default");
    assert_eq!(web["metadata"]["generation"], 1);
}

#[tokio::test]
async fn invalid_objects_are_rejected_at_admission_naming_the_field() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "invalid").await.unwrap();
    let many_rules: Vec<Value> = (0..257).map(|i| rule(&format!("h{i}.example.com"))).collect();
    let many_paths: Vec<Value> = (0..129).map(|i| path(&format!("/p{i}"))).collect();
    let long_host = format!("{}.example.com", vec!["a".repeat(60); 4].join("."));
    assert!(long_host.len() > 253);
    let p0 = "spec.rules[0].paths[0]";
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, String, &str)> = vec![
        ("host-syntax", with(|s| s["rules"][0]["host"] = json!("app_example.com")), "spec.rules[0].host".into(), "must be a DNS name"),
        ("host-label-dash", with(|s| s["rules"][0]["host"] = json!("-app.example.com")), "spec.rules[0].host".into(), "must be a DNS name"),
        ("host-wildcard-middle", with(|s| s["rules"][0]["host"] = json!("a.*.example.com")), "spec.rules[0].host".into(), "wildcard is allowed only as the whole first label"),
        ("host-wildcard-partial", with(|s| s["rules"][0]["host"] = json!("*app.example.com")), "spec.rules[0].host".into(), "wildcard is allowed only as the whole first label"),
        ("host-uppercase", with(|s| s["rules"][0]["host"] = json!("App.Example.com")), "spec.rules[0].host".into(), "must be lower case"),
        ("host-port", with(|s| s["rules"][0]["host"] = json!("app.example.com:80")), "spec.rules[0].host".into(), "must be a DNS name"),
        ("host-too-long", with(|s| s["rules"][0]["host"] = json!(long_host)), "spec.rules[0].host".into(), "Too long"),
        ("host-empty", with(|s| s["rules"][0]["host"] = json!("")), "spec.rules[0].host".into(), "at least 1 chars long"),
        ("path-relative", with(|s| s["rules"][0]["paths"][1]["path"] = json!("api")), "spec.rules[0].paths[1].path".into(), "should match"),
        ("path-query", with(|s| s["rules"][0]["paths"][0]["path"] = json!("/a?b=c")), format!("{p0}.path"), "should match"),
        ("path-type", with(|s| s["rules"][0]["paths"][0]["pathType"] = json!("Regex")), format!("{p0}.pathType"), "Unsupported value: \"Regex\""),
        ("backend-both", with(|s| s["rules"][0]["paths"][0]["backend"]["url"] = json!("http://127.0.0.1:18090")), format!("{p0}.backend"), "exactly one of backend.service, backend.url or backend.status"),
        ("backend-neither", with(|s| s["rules"][0]["paths"][0]["backend"] = json!({})), format!("{p0}.backend"), "exactly one of backend.service, backend.url or backend.status"),
        ("backend-status-and-url", with(|s| s["rules"][0]["paths"][1]["backend"]["status"] = json!(500)), "spec.rules[0].paths[1].backend".into(), "exactly one of backend.service, backend.url or backend.status"),
        ("backend-status-200", with(|s| s["rules"][0]["paths"][1]["backend"] = json!({"status": 200})), "spec.rules[0].paths[1].backend.status".into(), "greater than or equal to 400"),
        ("port-0", with(|s| s["rules"][0]["paths"][0]["backend"]["service"]["port"] = json!(0)), format!("{p0}.backend.service.port"), "greater than or equal to 1"),
        ("port-70000", with(|s| s["rules"][0]["paths"][0]["backend"]["service"]["port"] = json!(70000)), format!("{p0}.backend.service.port"), "less than or equal to 65535"),
        ("service-name", with(|s| s["rules"][0]["paths"][0]["backend"]["service"]["name"] = json!("Api_Svc")), format!("{p0}.backend.service.name"), "should match"),
        ("url-ftp", with(|s| s["rules"][0]["paths"][1]["backend"]["url"] = json!("ftp://127.0.0.1:21")), "spec.rules[0].paths[1].backend.url".into(), "should match"),
        ("url-path", with(|s| s["rules"][0]["paths"][1]["backend"]["url"] = json!("http://127.0.0.1:18090/v1")), "spec.rules[0].paths[1].backend.url".into(), "should match"),
        ("too-many-rules", with(|s| s["rules"] = json!(many_rules)), "spec.rules".into(), "must have at most 256 items"),
        ("too-many-paths", with(|s| s["rules"][0]["paths"] = json!(many_paths)), "spec.rules[0].paths".into(), "must have at most 128 items"),
        ("no-paths", with(|s| s["rules"][0]["paths"] = json!([])), "spec.rules[0].paths".into(), "at least 1 items"),
        ("empty-rules", with(|s| s["rules"] = json!([])), "spec.rules".into(), "at least 1 items"),
        ("missing-rules", json!({"fleet": "default"}), "spec.rules".into(), "Required value"),
        ("fleet", with(|s| s["fleet"] = json!("Blue_Fleet")), "spec.fleet".into(), "should match"),
        ("secret-name", with(|s| s["rules"][0]["tls"]["secretName"] = json!("App_TLS")), "spec.rules[0].tls.secretName".into(), "should match"),
        ("duplicate-path", with(|s| { let dup = s["rules"][0]["paths"][0].clone(); s["rules"][0]["paths"].as_array_mut().unwrap().push(dup) }), "spec.rules".into(), "two paths of one host have the same path, pathType and match"),
        ("duplicate-prefix-slash", with(|s| { let mut dup = s["rules"][0]["paths"][0].clone(); dup["path"] = json!("/api/"); s["rules"][0]["paths"].as_array_mut().unwrap().push(dup) }), "spec.rules".into(), "two paths of one host have the same path, pathType and match"),
        ("duplicate-match", with(|s| { for _ in 0..2 { let mut dup = s["rules"][0]["paths"][0].clone(); dup["match"] = json!({"method": "GET"}); s["rules"][0]["paths"].as_array_mut().unwrap().push(dup) } }), "spec.rules".into(), "two paths of one host have the same path, pathType and match"),
        ("duplicate-across-rules", with(|s| { let mut second = s["rules"][0].clone(); second.as_object_mut().unwrap().remove("tls"); s["rules"].as_array_mut().unwrap().push(second) }), "spec.rules".into(), "two paths of one host have the same path, pathType and match"),
        ("wildcard-match-exact-host", with(|s| s["rules"][0]["wildcardMatch"] = json!("Suffix")), "spec.rules[0].wildcardMatch".into(), "wildcardMatch applies to a wildcard host"),
        ("wildcard-match-value", with(|s| { s["rules"][0]["host"] = json!("*.example.com"); s["rules"][0]["wildcardMatch"] = json!("Deep") }), "spec.rules[0].wildcardMatch".into(), "Unsupported value: \"Deep\""),
        ("second-rule", with(|s| s["rules"].as_array_mut().unwrap().push(rule("*.*.example.com"))), "spec.rules[1].host".into(), "wildcard is allowed only"),
    ];
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for (name, spec, field, reason) in &cases {
        match apply(cp, &ns, &router_config(name, spec.clone()), &[]) {
            Ok(out) => failures.push(format!("{name}: accepted: {out}")),
            Err(err) => {
                let names_field =
                    err.contains(&format!("{field}: ")) || err.contains(&format!("{field} in body"));
                if !(names_field && err.contains(reason)) {
                    failures.push(format!("{name}: expected {field:?} and {reason:?} in:\n{err}"));
                }
            }
        }
    }
    // One mistake gives one message, not a regex next to the readable rule.
    let err = apply(
        cp,
        &ns,
        &router_config("one", with(|s| s["rules"][0]["host"] = json!("App.example.com"))),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.matches("spec.rules[0].host").count(), 1, "{err}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Nothing reached etcd.
    let list = cp.kubectl_ok(&["get", "rcfg", "-n", &ns, "-o", "name"]).unwrap();
    assert_eq!(list.trim(), "", "{list}");
    // The valid base is accepted, so each case failed for its one change.
    apply(cp, &ns, &router_config("base", valid_spec()), &[]).unwrap();
    // The same path under another match, or as Exact next to a Prefix, is no duplicate.
    let distinct = with(|s| {
        let mut get = s["rules"][0]["paths"][0].clone();
        get["match"] = json!({"method": "GET"});
        let mut exact = s["rules"][0]["paths"][0].clone();
        exact["pathType"] = json!("Exact");
        s["rules"][0]["paths"]
            .as_array_mut()
            .unwrap()
            .extend([get, exact]);
    });
    apply(cp, &ns, &router_config("distinct", distinct), &[]).unwrap();
    // A wildcard host may cover one or more labels, as Gateway API's do.
    let suffix = with(|s| {
        s["rules"][0]["host"] = json!("*.suffix.example.com");
        s["rules"][0]["wildcardMatch"] = json!("Suffix");
    });
    apply(cp, &ns, &router_config("suffix", suffix), &[]).unwrap();
}

#[tokio::test]
async fn unknown_fields_are_rejected_by_strict_validation_and_pruned_otherwise() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "unknown").await.unwrap();
    let spec = with(|s| s["rules"][0]["paths"][0]["weight"] = json!(5));
    // kubectl's default --validate=strict asks the server to reject unknown fields.
    let err = apply(cp, &ns, &router_config("strict", spec.clone()), &[]).unwrap_err();
    assert!(
        err.contains("unknown field \"spec.rules[0].paths[0].weight\""),
        "{err}"
    );
    // With validation off the apiserver prunes the field (structural schema) and stores the rest.
    apply(cp, &ns, &router_config("pruned", spec), &["--validate=false"]).unwrap();
    let stored = cp
        .kubectl_ok(&["get", "rcfg", "pruned", "-n", &ns, "-o", "json"])
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored["spec"]["rules"][0]["paths"][0].get("weight"),
        None,
        "{stored}"
    );
    assert_eq!(stored["spec"]["rules"][0]["paths"][0]["path"], "/api");
}

#[tokio::test]
async fn defaults_are_filled_in_by_the_apiserver() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "defaults").await.unwrap();
    let spec = json!({"rules": [{"host": "*.example.com", "paths": [{"path": "/", "backend": {"url": "https://[::1]:8443"}}]}]});
    apply(cp, &ns, &router_config("d", spec), &[]).unwrap();
    let api: Api<RouterConfig> = Api::namespaced(client, &ns);
    let rc = api.get("d").await.unwrap();
    assert_eq!(rc.spec.fleet, "default");
    assert_eq!(
        rc.spec.rules[0].paths[0].path_type,
        lockstep_crds::PathType::Prefix
    );
}

#[tokio::test]
async fn kubectl_get_shows_ready_synced_generation_age() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "columns").await.unwrap();
    apply(cp, &ns, &router_config("web", valid_spec()), &[]).unwrap();
    let header = |out: &str| {
        out.lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let out = cp.kubectl_ok(&["get", "rcfg", "-n", &ns]).unwrap();
    assert_eq!(
        header(&out),
        ["NAME", "READY", "SYNCED", "GENERATION", "AGE"],
        "{out}"
    );

    let api: Api<RouterConfig> = Api::namespaced(client, &ns);
    api.patch_status(
        "web",
        &PatchParams::apply("api-test"),
        &Patch::Apply(
            json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig", "status": {
            "observedGeneration": 1, "synced": "2/3", "syncedReplicas": 2, "replicas": 3,
            "conditions": [{"type": "Ready", "status": "False", "reason": "RolloutInProgress",
                "message": "2/3 replicas serve generation 1", "observedGeneration": 1,
                "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}),
        ),
    )
    .await
    .unwrap();
    let out = cp
        .kubectl_ok(&["get", "rcfg", "web", "-n", &ns, "--no-headers"])
        .unwrap();
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(&cols[..4], ["web", "False", "2/3", "1"], "{out}");
    let wide = cp
        .kubectl_ok(&["get", "rcfg", "web", "-n", &ns, "-o", "wide"])
        .unwrap();
    assert_eq!(
        header(&wide),
        ["NAME", "READY", "SYNCED", "GENERATION", "AGE", "REASON"],
        "{wide}"
    );
    assert!(wide.contains("RolloutInProgress"), "{wide}");
    // The category and the full name list it too.
    let by_category = cp
        .kubectl_ok(&["get", "lockstep", "-n", &ns, "-o", "name"])
        .unwrap();
    assert_eq!(by_category.trim(), "routerconfig.lockstep.dev/web");
    // A spec change bumps GENERATION.
    apply(
        cp,
        &ns,
        &router_config("web", with(|s| s["rules"][0]["paths"][0]["path"] = json!("/v2"))),
        &[],
    )
    .unwrap();
    let out = cp
        .kubectl_ok(&[
            "get",
            "routerconfigs.lockstep.dev",
            "web",
            "-n",
            &ns,
            "--no-headers",
        ])
        .unwrap();
    assert_eq!(out.split_whitespace().nth(3), Some("2"), "{out}");
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let cp = ControlPlane::shared();
    // The OpenAPI document is published shortly after the CRD is Established.
    let rules = eventually(
        "kubectl explain rcfg.spec.rules",
        Duration::from_secs(30),
        || async { cp.kubectl_ok(&["explain", "rcfg.spec.rules"]).ok() },
    )
    .await
    .unwrap();
    for needle in [
        "RouterConfig",
        "Host rules.",
        "An exact host beats a wildcard host",
        "host",
        "paths",
        "tls",
        "<[]Object>",
    ] {
        assert!(rules.contains(needle), "missing {needle:?} in:\n{rules}");
    }
    let host = cp.kubectl_ok(&["explain", "rcfg.spec.rules.host"]).unwrap();
    assert!(
        host.contains("\"*.example.com\"") && host.contains("exactly one further label"),
        "{host}"
    );
    let wildcard = cp
        .kubectl_ok(&["explain", "rcfg.spec.rules.wildcardMatch"])
        .unwrap();
    assert!(
        wildcard.contains("Suffix covers one") && wildcard.contains("SingleLabel (the default)"),
        "{wildcard}"
    );
    let backend = cp
        .kubectl_ok(&["explain", "rcfg.spec.rules.paths.backend", "--recursive"])
        .unwrap();
    for needle in ["service", "url", "status", "name", "port"] {
        assert!(backend.contains(needle), "missing {needle:?} in:\n{backend}");
    }
    let top = cp.kubectl_ok(&["explain", "routerconfig"]).unwrap();
    assert!(
        top.contains("lockstep.dev") && top.contains("Ready condition is True only when"),
        "{top}"
    );
}

/// The valid base spec with path 0 changed by `edit` (its `backend` removed first when
/// `drop_backend`).
fn with_path0(drop_backend: bool, edit: impl FnOnce(&mut Value)) -> Value {
    with(|s| {
        let p = &mut s["rules"][0]["paths"][0];
        if drop_backend {
            p.as_object_mut().unwrap().remove("backend");
        }
        edit(p);
    })
}

/// A full-featured path, valid.
fn traffic_path() -> Value {
    json!({
        "path": "/api", "pathType": "Prefix",
        "match": {"method": "GET", "headers": [{"name": "x-canary", "value": "true"},
            {"name": "x-v", "type": "RegularExpression", "value": "^v[0-9]+$"}],
            "queryParams": [{"name": "debug", "value": "1"}]},
        "backends": [{"service": {"name": "api-v1", "port": 8080}, "weight": 90},
            {"url": "http://127.0.0.1:18090", "weight": 10}, {"status": 503, "weight": 0}],
        "filters": {"requestHeaders": {"set": [{"name": "x-env", "value": "prod"}], "add": [{"name": "x-a", "value": "1"}], "remove": ["x-debug"]},
            "responseHeaders": {"remove": ["server"]},
            "rewrite": {"hostname": "internal.example.com", "path": {"replacePrefixMatch": "/"}}},
        "timeouts": {"request": "10s", "backendRequest": "3s"},
        "retry": {"attempts": 2, "codes": [502, 503, 504], "backoff": "100ms"}
    })
}

#[tokio::test]
async fn invalid_traffic_features_are_rejected_at_admission_naming_the_field() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "traffic").await.unwrap();
    let p0 = "spec.rules[0].paths[0]";
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, String, &str)> = vec![
        ("weight-negative", with_path0(true, |p| p["backends"] = json!([{"url": "http://127.0.0.1:1", "weight": -1}])), format!("{p0}.backends[0].weight"), "greater than or equal to 0"),
        ("weight-too-big", with_path0(true, |p| p["backends"] = json!([{"url": "http://127.0.0.1:1", "weight": 1_000_001}])), format!("{p0}.backends[0].weight"), "less than or equal to 1000000"),
        ("weighted-neither", with_path0(true, |p| p["backends"] = json!([{"weight": 1}])), format!("{p0}.backends[0]"), "exactly one of service, url or status"),
        ("weighted-status-600", with_path0(true, |p| p["backends"] = json!([{"status": 600}])), format!("{p0}.backends[0].status"), "less than or equal to 599"),
        ("backends-empty", with_path0(true, |p| p["backends"] = json!([])), format!("{p0}.backends"), "at least 1 items"),
        ("backend-and-backends", with_path0(false, |p| p["backends"] = json!([{"url": "http://127.0.0.1:1"}])), format!("{p0}.backends"), "backend and backends are exclusive"),
        ("no-backend", with_path0(true, |_| {}), p0.to_owned(), "one of backend or backends must be set"),
        ("redirect-with-backends", with_path0(true, |p| { p["backends"] = json!([{"url": "http://127.0.0.1:1"}]); p["filters"] = json!({"redirect": {"scheme": "https"}}) }), format!("{p0}.filters.redirect"), "filters.redirect and backends are exclusive"),
        ("redirect-with-backend", with_path0(false, |p| p["filters"] = json!({"redirect": {"scheme": "https"}})), format!("{p0}.filters.redirect"), "filters.redirect and backends are exclusive"),
        ("redirect-with-rewrite", with_path0(true, |p| p["filters"] = json!({"redirect": {"scheme": "https"}, "rewrite": {"hostname": "a.example.com"}})), format!("{p0}.filters.rewrite"), "redirect and rewrite are exclusive"),
        ("redirect-status", with_path0(true, |p| p["filters"] = json!({"redirect": {"statusCode": 305}})), format!("{p0}.filters.redirect.statusCode"), "statusCode must be one of 301, 302, 303, 307, 308"),
        ("redirect-scheme", with_path0(true, |p| p["filters"] = json!({"redirect": {"scheme": "ftp"}})), format!("{p0}.filters.redirect.scheme"), "Unsupported value: \"ftp\""),
        ("redirect-port", with_path0(true, |p| p["filters"] = json!({"redirect": {"port": 0}})), format!("{p0}.filters.redirect.port"), "greater than or equal to 1"),
        ("redirect-hostname", with_path0(true, |p| p["filters"] = json!({"redirect": {"hostname": "*.example.com"}})), format!("{p0}.filters.redirect.hostname"), "should match"),
        ("redirect-prefix-on-exact", with(|s| { s["rules"][0]["paths"][1].as_object_mut().unwrap().remove("backend"); s["rules"][0]["paths"][1]["filters"] = json!({"redirect": {"path": {"replacePrefixMatch": "/x"}}}) }), "spec.rules[0].paths[1].filters".into(), "replacePrefixMatch needs a Prefix path"),
        ("rewrite-prefix-on-exact", with(|s| s["rules"][0]["paths"][1]["filters"] = json!({"rewrite": {"path": {"replacePrefixMatch": "/x"}}})), "spec.rules[0].paths[1].filters".into(), "replacePrefixMatch needs a Prefix path"),
        ("path-modifier-both", with_path0(false, |p| p["filters"] = json!({"rewrite": {"path": {"replacePrefixMatch": "/x", "replaceFullPath": "/y"}}})), format!("{p0}.filters.rewrite.path"), "exactly one of replaceFullPath or replacePrefixMatch"),
        ("rewrite-path-relative", with_path0(false, |p| p["filters"] = json!({"rewrite": {"path": {"replaceFullPath": "x"}}})), format!("{p0}.filters.rewrite.path.replaceFullPath"), "should match"),
        ("regex-too-long", with_path0(false, |p| p["match"] = json!({"headers": [{"name": "x", "type": "RegularExpression", "value": "a".repeat(1025)}]})), format!("{p0}.match.headers[0].value"), "a regular expression is at most 1024 characters"),
        ("match-type", with_path0(false, |p| p["match"] = json!({"headers": [{"name": "x", "type": "Prefix", "value": "a"}]})), format!("{p0}.match.headers[0].type"), "Unsupported value: \"Prefix\""),
        ("match-method", with_path0(false, |p| p["match"] = json!({"method": "FETCH"})), format!("{p0}.match.method"), "Unsupported value: \"FETCH\""),
        ("match-header-name", with_path0(false, |p| p["match"] = json!({"headers": [{"name": "x canary", "value": "1"}]})), format!("{p0}.match.headers[0].name"), "should match"),
        ("match-header-twice", with_path0(false, |p| p["match"] = json!({"headers": [{"name": "x-a", "value": "1"}, {"name": "x-a", "value": "2"}]})), format!("{p0}.match.headers[1]"), "Duplicate value"),
        ("match-query-twice", with_path0(false, |p| p["match"] = json!({"queryParams": [{"name": "q", "value": "1"}, {"name": "q", "value": "2"}]})), format!("{p0}.match.queryParams[1]"), "Duplicate value"),
        ("filter-set-name", with_path0(false, |p| p["filters"] = json!({"requestHeaders": {"set": [{"name": "a:b", "value": "1"}]}})), format!("{p0}.filters.requestHeaders.set[0].name"), "should match"),
        ("filter-add-name", with_path0(false, |p| p["filters"] = json!({"responseHeaders": {"add": [{"name": "a b", "value": "1"}]}})), format!("{p0}.filters.responseHeaders.add[0].name"), "should match"),
        ("filter-remove-name", with_path0(false, |p| p["filters"] = json!({"responseHeaders": {"remove": ["bad name"]}})), format!("{p0}.filters.responseHeaders.remove[0]"), "should match"),
        ("filter-value-newline", with_path0(false, |p| p["filters"] = json!({"requestHeaders": {"set": [{"name": "x", "value": "a\r\nb: c"}]}})), format!("{p0}.filters.requestHeaders.set[0].value"), "should match"),
        ("timeout-unparsable", with_path0(false, |p| p["timeouts"] = json!({"request": "10"})), format!("{p0}.timeouts.request"), "should match"),
        ("timeout-unit", with_path0(false, |p| p["timeouts"] = json!({"backendRequest": "1d"})), format!("{p0}.timeouts.backendRequest"), "should match"),
        ("timeout-order", with_path0(false, |p| p["timeouts"] = json!({"request": "1s", "backendRequest": "2s"})), format!("{p0}.timeouts.backendRequest"), "backendRequest must not be longer than request"),
        ("retry-attempts", with_path0(false, |p| p["retry"] = json!({"attempts": 11})), format!("{p0}.retry.attempts"), "less than or equal to 10"),
        ("retry-codes", with_path0(false, |p| p["retry"] = json!({"attempts": 1, "codes": [404]})), format!("{p0}.retry.codes[0]"), "greater than or equal to 500"),
        ("retry-backoff", with_path0(false, |p| p["retry"] = json!({"attempts": 1, "backoff": "fast"})), format!("{p0}.retry.backoff"), "should match"),
        ("url-scheme", with_path0(true, |p| p["backends"] = json!([{"url": "ftp://127.0.0.1:1"}])), format!("{p0}.backends[0].url"), "should match"),
    ];
    let mut failures = Vec::new();
    for (name, spec, field, reason) in &cases {
        match apply(cp, &ns, &router_config(name, spec.clone()), &[]) {
            Ok(out) => failures.push(format!("{name}: accepted: {out}")),
            Err(err) => {
                let names_field =
                    err.contains(&format!("{field}: ")) || err.contains(&format!("{field} in body"));
                if !(names_field && err.contains(reason)) {
                    failures.push(format!("{name}: expected {field:?} and {reason:?} in:\n{err}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let list = cp.kubectl_ok(&["get", "rcfg", "-n", &ns, "-o", "name"]).unwrap();
    assert_eq!(list.trim(), "", "{list}");
    // Every feature at once is accepted, and what was stored is valid for a standalone proxy.
    let spec = with(|s| s["rules"][0]["paths"][0] = traffic_path());
    apply(cp, &ns, &router_config("full", spec), &[]).unwrap();
    let api: Api<RouterConfig> = Api::namespaced(client, &ns);
    let stored = api.get("full").await.unwrap();
    lockstep_core::validate_spec(&stored.spec).unwrap();
    assert_eq!(stored.spec.rules[0].paths[0].backends[1].weight, 10);
    // The defaults are filled in: weight 1, match type Exact, redirect status 302.
    let spec = with(|s| {
        s["rules"][0]["paths"][0] = json!({"path": "/d", "backends": [{"url": "http://127.0.0.1:1"}],
            "match": {"headers": [{"name": "x", "value": "1"}]}});
        s["rules"][0]["paths"][1] = json!({"path": "/r", "filters": {"redirect": {"scheme": "https"}}});
    });
    apply(cp, &ns, &router_config("defaults", spec), &[]).unwrap();
    let stored = api.get("defaults").await.unwrap();
    let paths = &stored.spec.rules[0].paths;
    assert_eq!(paths[0].backends[0].weight, 1);
    assert_eq!(
        paths[0].matches.as_ref().unwrap().headers[0].match_type,
        lockstep_crds::MatchType::Exact
    );
    assert_eq!(
        paths[1]
            .filters
            .as_ref()
            .unwrap()
            .redirect
            .as_ref()
            .unwrap()
            .status_code,
        302
    );
    // A weight change is a new generation.
    let before = stored.metadata.generation;
    let spec = with(|s| {
        s["rules"][0]["paths"][0] = json!({"path": "/d", "backends": [{"url": "http://127.0.0.1:1", "weight": 2}],
            "match": {"headers": [{"name": "x", "value": "1"}]}});
        s["rules"][0]["paths"][1] = json!({"path": "/r", "filters": {"redirect": {"scheme": "https"}}});
    });
    apply(cp, &ns, &router_config("defaults", spec), &[]).unwrap();
    let after = api.get("defaults").await.unwrap().metadata.generation;
    assert_eq!(after, before.map(|g| g + 1));
}

#[tokio::test]
async fn header_filters_naming_the_proxys_own_headers_are_refused_at_admission() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "managed").await.unwrap();
    let mut failures = Vec::new();
    // Every managed name is refused in each list of each direction, whatever its case; the
    // policy compiles asynchronously, so the first case waits for it.
    let cases = lockstep_crds::PROXY_MANAGED_HEADERS
        .iter()
        .enumerate()
        .flat_map(|(i, name)| {
            let direction = ["requestHeaders", "responseHeaders"][i % 2];
            let list = ["set", "add", "remove"][i % 3];
            let name = if i % 4 == 0 {
                name.to_uppercase()
            } else {
                name.to_string()
            };
            let entry = if list == "remove" {
                json!(name)
            } else {
                json!({"name": name, "value": "0"})
            };
            [(
                format!("managed-{i}"),
                direction,
                json!({direction: {list: [entry]}}),
            )]
        });
    // A backend's own request headers likewise.
    let backend_cases = ["set", "add", "remove"].into_iter().enumerate().map(|(i, list)| {
        let entry = if list == "remove" {
            json!("Transfer-Encoding")
        } else {
            json!({"name": "host", "value": "0"})
        };
        (
            format!("managed-backend-{i}"),
            "backends[].requestHeaders",
            json!({list: [entry]}),
        )
    });
    for (object, field, edit) in cases
        .map(|(o, direction, f)| (o, direction, json!({"filters": f})))
        .chain(backend_cases.map(|(o, field, own)| (o, field, json!({"backendRequestHeaders": own}))))
    {
        let spec = with_path0(false, |p| {
            if let Some(filters) = edit.get("filters") {
                p["filters"] = filters.clone();
            } else {
                let mut weighted = p["backend"].take();
                weighted["requestHeaders"] = edit["backendRequestHeaders"].clone();
                p.as_object_mut().expect("path").remove("backend");
                p["backends"] = json!([weighted]);
            }
        });
        let named = if edit.get("filters").is_some() {
            format!("spec.rules[].paths[].filters.{field}: set, add and remove")
        } else {
            format!("spec.rules[].paths[].{field}: set, add and remove")
        };
        let refused = lockstep_e2e::eventually("the policy refuses", Duration::from_secs(30), || async {
            match apply(cp, &ns, &router_config(&object, spec.clone()), &[]) {
                Ok(_) => {
                    let _ = cp.kubectl_ok(&["delete", "rcfg", &object, "-n", &ns]);
                    None
                }
                Err(err) => Some(err),
            }
        })
        .await;
        match refused {
            Err(e) => failures.push(format!("{object} ({edit}): accepted: {e}")),
            Ok(err) if !err.contains(&named) => {
                failures.push(format!("{object}: the message does not name the field:\n{err}"))
            }
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // A header the proxy does not own still passes.
    let spec = with_path0(
        false,
        |p| p["filters"] = json!({"requestHeaders": {"set": [{"name": "x-content-length", "value": "1"}], "remove": ["x-te"]}}),
    );
    apply(cp, &ns, &router_config("unmanaged", spec), &[]).expect("an ordinary header is accepted");
}

#[tokio::test]
async fn kubectl_explain_documents_the_traffic_fields() {
    let cp = ControlPlane::shared();
    let paths = eventually(
        "kubectl explain rcfg.spec.rules.paths",
        Duration::from_secs(30),
        || async { cp.kubectl_ok(&["explain", "rcfg.spec.rules.paths"]).ok() },
    )
    .await
    .unwrap();
    for needle in [
        "match",
        "backends",
        "filters",
        "timeouts",
        "retry",
        "weighted split",
    ] {
        assert!(paths.contains(needle), "missing {needle:?} in:\n{paths}");
    }
    for (field, needles) in [
        (
            "rcfg.spec.rules.paths.backends.weight",
            &["0 drains the backend", "1,000,000"][..],
        ),
        ("rcfg.spec.rules.paths.match", &["specific", "RouterConfig"][..]),
        (
            "rcfg.spec.rules.paths.filters.redirect",
            &["Location", "port"][..],
        ),
        ("rcfg.spec.rules.paths.timeouts.backendRequest", &["attempt"][..]),
        ("rcfg.spec.rules.paths.retry.codes", &["500-599"][..]),
    ] {
        let text = cp.kubectl_ok(&["explain", field]).unwrap();
        for needle in needles {
            assert!(text.contains(needle), "{field}: missing {needle:?} in:\n{text}");
        }
    }
}

/// What the apiserver does with metadata.uid and metadata.resourceVersion in a write to the
/// status subresource, server-side apply (what the operator sends) and merge patch alike: a
/// uid is ignored (the write lands on whatever object has the name now), a resourceVersion is
/// a precondition (a mismatch is refused with 409 Conflict and nothing is written). So the
/// operator fences its status write with the resourceVersion it judged: a status computed for
/// a RouterConfig that was deleted and re-created under the same name meanwhile must not land
/// on the new object.
#[tokio::test]
async fn a_status_write_is_fenced_by_its_resource_version_not_by_a_uid() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "precondition").await.unwrap();
    apply(cp, &ns, &router_config("web", valid_spec()), &[]).unwrap();
    let api: Api<RouterConfig> = Api::namespaced(client, &ns);
    let old = api.get("web").await.unwrap();
    let old_rv = old.metadata.resource_version.clone().unwrap();
    let status = |generation: i64, metadata: Value| {
        json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig", "metadata": metadata,
               "status": {"observedGeneration": generation}})
    };
    let ssa = PatchParams::apply("api-test").force();
    let merge = PatchParams::default();
    let observed = |rc: &RouterConfig| rc.status.as_ref().and_then(|s| s.observed_generation);
    let refused = |result: Result<RouterConfig, kube::Error>, what: &str| match result {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{what}: {s:?}"),
        other => panic!("{what} was not refused: {other:?}"),
    };

    // Deleted and re-created under the same name.
    api.delete("web", &Default::default()).await.unwrap();
    apply(cp, &ns, &router_config("web", valid_spec()), &[]).unwrap();
    let new = api.get("web").await.unwrap();
    assert_ne!(new.uid(), old.uid());

    // The old object's resourceVersion is refused, apply and merge alike; nothing is written.
    refused(
        api.patch_status(
            "web",
            &ssa,
            &Patch::Apply(status(1, json!({"resourceVersion": old_rv}))),
        )
        .await,
        "server-side apply with the old object's resourceVersion",
    );
    refused(
        api.patch_status(
            "web",
            &merge,
            &Patch::Merge(status(1, json!({"resourceVersion": old_rv}))),
        )
        .await,
        "merge patch with the old object's resourceVersion",
    );
    assert_eq!(observed(&api.get("web").await.unwrap()), None, "nothing written");

    // The old object's uid is no precondition: both writes land on the new object.
    let landed = api
        .patch_status("web", &ssa, &Patch::Apply(status(2, json!({"uid": old.uid()}))))
        .await
        .unwrap();
    assert_eq!((landed.uid(), observed(&landed)), (new.uid(), Some(2)));
    let landed = api
        .patch_status("web", &merge, &Patch::Merge(status(3, json!({"uid": old.uid()}))))
        .await
        .unwrap();
    assert_eq!((landed.uid(), observed(&landed)), (new.uid(), Some(3)));

    // The current resourceVersion is written; the same one again, now stale, is refused.
    let rv = landed.metadata.resource_version.clone().unwrap();
    api.patch_status(
        "web",
        &ssa,
        &Patch::Apply(status(4, json!({"resourceVersion": rv}))),
    )
    .await
    .unwrap();
    refused(
        api.patch_status(
            "web",
            &ssa,
            &Patch::Apply(status(5, json!({"resourceVersion": rv}))),
        )
        .await,
        "server-side apply with a resourceVersion the object has moved past",
    );
    assert_eq!(observed(&api.get("web").await.unwrap()), Some(4));
}

/// A path may allow other Upgrade protocols than WebSocket, but never h2c, in any case or
/// version: the admission policy refuses it naming the field, and a malformed protocol
/// name is refused by the schema.
#[tokio::test]
async fn a_path_that_allows_h2c_upgrades_is_refused_at_admission() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "upgrades").await.unwrap();
    for (object, upgrades) in [
        ("h2c", json!(["h2c"])),
        ("h2c-upper", json!(["websocket", "H2C"])),
        ("h2c-version", json!(["h2c/1"])),
    ] {
        let spec = with_path0(false, |p| p["upgrades"] = upgrades.clone());
        let refused = lockstep_e2e::eventually("the policy refuses", Duration::from_secs(30), || async {
            match apply(cp, &ns, &router_config(object, spec.clone()), &[]) {
                Ok(_) => {
                    let _ = cp.kubectl_ok(&["delete", "rcfg", object, "-n", &ns]);
                    None
                }
                Err(err) => Some(err),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{object} ({upgrades}) accepted: {e}"));
        assert!(
            refused.contains("spec.rules[].paths[].upgrades: h2c may not be tunnelled"),
            "{object}: {refused}"
        );
    }
    let spec = with_path0(false, |p| p["upgrades"] = json!(["web socket"]));
    let err = apply(cp, &ns, &router_config("malformed", spec), &[]).expect_err("a space is no token");
    assert!(err.contains("upgrades[0]"), "{err}");
    let spec = with_path0(false, |p| p["upgrades"] = json!(["websocket", "x-tunnel/2"]));
    apply(cp, &ns, &router_config("allowed", spec), &[]).expect("other protocols are accepted");
}

/// Host "*" (any host) and a Service of another namespace (`service.namespace`) are for
/// RouterConfigs the operator generates from a Gateway: the admission policy refuses them from
/// anyone else, with or without the label, naming the field (tls on "*" included); the schema
/// refuses a namespace that is not a DNS label. (The operator's own writes are admitted:
/// e2e/tests/gateway.rs serves a listener without host name and a backend of another
/// namespace.)
#[tokio::test]
async fn what_only_generated_router_configs_may_say_is_refused_at_admission() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "anyhost").await.unwrap();
    let any = with(|s| {
        s["rules"][0]["host"] = json!("*");
        s["rules"][0].as_object_mut().unwrap().remove("tls");
    });
    let other_ns = with(|s| s["rules"][0]["paths"][0]["backend"]["service"]["namespace"] = json!("apps"));
    let weighted_other_ns = with(|s| {
        s["rules"][0]["paths"][0]
            .as_object_mut()
            .unwrap()
            .remove("backend");
        s["rules"][0]["paths"][0]["backends"] = json!([
            {"service": {"name": "api", "port": 8080}, "weight": 1},
            {"service": {"name": "api", "namespace": "apps", "port": 8080}, "weight": 1}]);
    });
    let mirror_other_ns = with(|s| {
        s["rules"][0]["paths"][0]["filters"] =
            json!({"mirrors": [{"service": {"name": "copy", "namespace": "apps", "port": 8080}}]});
    });
    let any_host_refused =
        "spec.rules[].host: \"*\" (any host) is only for RouterConfigs the operator generates";
    let namespace_refused = "spec.rules[].paths[]: service.namespace (a Service of another namespace) is only for RouterConfigs the operator generates";
    let labelled = |name: &str, spec: &Value| {
        let mut rc = router_config(name, spec.clone());
        rc["metadata"]["labels"] = json!({"lockstep.dev/generated-from": "Gateway"});
        rc
    };
    for (object, rc, message) in [
        ("plain", router_config("plain", any.clone()), any_host_refused),
        ("labelled", labelled("labelled", &any), any_host_refused),
        (
            "other-ns",
            router_config("other-ns", other_ns.clone()),
            namespace_refused,
        ),
        (
            "other-ns-labelled",
            labelled("other-ns-labelled", &other_ns),
            namespace_refused,
        ),
        (
            "weighted-other-ns",
            router_config("weighted-other-ns", weighted_other_ns),
            namespace_refused,
        ),
        (
            "mirror-other-ns",
            router_config("mirror-other-ns", mirror_other_ns),
            namespace_refused,
        ),
    ] {
        let refused = eventually("the policy refuses", Duration::from_secs(30), || async {
            match apply(cp, &ns, &rc, &[]) {
                Ok(_) => {
                    let _ = cp.kubectl_ok(&["delete", "rcfg", object, "-n", &ns]);
                    None
                }
                Err(err) => Some(err),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{object} accepted: {e}"));
        assert!(refused.contains(message), "{object}: {refused}");
    }
    // Any host with tls (a certificate for any SNI name) is a Gateway listener's too.
    let tls = with(|s| s["rules"][0]["host"] = json!("*"));
    let err = apply(cp, &ns, &router_config("tls", tls), &[]).expect_err("tls on any host");
    assert!(err.contains(any_host_refused), "{err}");
    for host in ["**", "*.*"] {
        let bad = with(|s| s["rules"][0]["host"] = json!(host));
        let err = apply(cp, &ns, &router_config("bad", bad), &[]).expect_err(host);
        assert!(
            err.contains("spec.rules[0].host") && err.contains("a wildcard is allowed only"),
            "{host}: {err}"
        );
    }
    let bad_ns = with(|s| s["rules"][0]["paths"][0]["backend"]["service"]["namespace"] = json!("Apps_1"));
    let err = apply(cp, &ns, &router_config("bad-ns", bad_ns), &[]).expect_err("namespace syntax");
    assert!(
        err.contains("spec.rules[0].paths[0].backend.service.namespace"),
        "{err}"
    );
}
