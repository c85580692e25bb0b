//! A RouterConfig at the schema's size limits (256 rules; 128 paths in a rule) passes
//! admission, including its CEL rules, with real kubectl against a real kube-apiserver, and a
//! real proxy serves it up to its last path; one rule or one path beyond is rejected at
//! admission, naming the field.

use super::operator;
use std::time::Duration;

use lockstep_e2e::{
    check,
    fixture::Fixture,
    fleet::{Backend, Proxy, ProxySpec},
};

/// `maxItems` of spec.rules and of spec.rules[].paths in the generated CRD
/// (deploy/helm/lockstep/crds/routerconfig.yaml).
const MAX_RULES: usize = 256;
const MAX_PATHS: usize = 128;

/// `rules` rules for hosts r0.test…; rule i has `paths(i)` Prefix paths /p0…, all to `url`.
fn router_config(ns: &str, fleet: &str, url: &str, rules: usize, paths: impl Fn(usize) -> usize) -> String {
    let mut text = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: big, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n"
    );
    for rule in 0..rules {
        text.push_str(&format!("  - host: r{rule}.test\n    paths:\n"));
        for path in 0..paths(rule) {
            text.push_str(&format!(
                "    - {{path: /p{path}, backend: {{url: \"{url}\"}}}}\n"
            ));
        }
    }
    text
}

#[tokio::test]
async fn a_router_config_at_the_limits_applies_and_is_served_and_one_beyond_is_rejected() {
    // The CRD must still say what this test assumes.
    let crd = std::fs::read_to_string(
        lockstep_e2e::repo_root().join("deploy/helm/lockstep/crds/routerconfig.yaml"),
    )
    .unwrap();
    assert!(
        crd.contains(&format!("maxItems: {MAX_RULES}")),
        "spec.rules limit"
    );
    assert!(crd.contains(&format!("maxItems: {MAX_PATHS}")), "paths limit");

    let _ = operator();
    let f = Fixture::new("limits").await;
    let (cp, ns, fleet) = (f.cp, &f.ns, &f.fleet);
    let backend = Backend::start(&f.dir, "one").unwrap();
    let proxy = Proxy::start(cp, &f.dir, ProxySpec::new("proxy-0", ns, fleet)).unwrap();

    // 256 rules, and 128 paths in each of the first and the last: every limit reached, while
    // the object stays far below etcd's request size (256 x 128 paths would not fit it).
    let full = |rule: usize| {
        if rule == 0 || rule == MAX_RULES - 1 {
            MAX_PATHS
        } else {
            2
        }
    };
    cp.kubectl_apply(&router_config(ns, fleet, &backend.url(), MAX_RULES, full))
        .unwrap_or_else(|e| panic!("the largest allowed RouterConfig is admitted: {e}"));
    cp.wait_ready(ns, "big", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("Ready at the limits: {e}"));
    let http = &f.http;
    for (host, path) in [
        (format!("r{}.test", MAX_RULES - 1), format!("/p{}", MAX_PATHS - 1)),
        ("r0.test".to_owned(), format!("/p{}", MAX_PATHS - 1)),
        ("r100.test".to_owned(), "/p1/deeper".to_owned()),
    ] {
        let (status, landed) = check::request(http, proxy.http, &host, &path).await.unwrap();
        assert_eq!(
            (status, landed.as_deref()),
            (200, Some("one")),
            "{host}{path} routes"
        );
    }
    let (status, _) = check::request(http, proxy.http, &format!("r{MAX_RULES}.test"), "/p0")
        .await
        .unwrap();
    assert_eq!(status, 404, "no rule beyond the last");

    // One rule too many: rejected at admission, naming the field; the served object is
    // unchanged.
    let generation = cp
        .kubectl_ok(&[
            "get",
            "routerconfig/big",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .unwrap();
    let error = cp
        .kubectl_apply(&router_config(ns, fleet, &backend.url(), MAX_RULES + 1, |_| 1))
        .expect_err("257 rules must be rejected")
        .to_string();
    assert!(
        error.contains("spec.rules") && error.contains(&format!("{MAX_RULES}")),
        "the rejection names spec.rules and its limit: {error}"
    );
    // One path too many in a rule.
    let error = cp
        .kubectl_apply(&router_config(ns, fleet, &backend.url(), 1, |_| MAX_PATHS + 1))
        .expect_err("129 paths must be rejected")
        .to_string();
    assert!(
        error.contains("spec.rules[0].paths") && error.contains(&format!("{MAX_PATHS}")),
        "the rejection names spec.rules[0].paths and its limit: {error}"
    );
    assert_eq!(
        cp.kubectl_ok(&[
            "get",
            "routerconfig/big",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.generation}"
        ])
        .unwrap(),
        generation,
        "rejected applies change nothing"
    );
    let (status, landed) = check::request(http, proxy.http, &format!("r{}.test", MAX_RULES - 1), "/p0")
        .await
        .unwrap();
    assert_eq!((status, landed.as_deref()), (200, Some("one")));
}
