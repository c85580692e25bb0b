//! The hand-derived Gateway API types read real v1.6.3 manifests: the module's
//! `examples/standard/` and the conformance suite's own test manifests
//! (`sigs.k8s.io/gateway-api/conformance`, `tests/*.yaml` and `base/manifests.yaml`).
//!
//! Parsing alone would prove little, because every type tolerates unknown fields. So each
//! object is parsed, written back, and every field path of the original `spec` must survive
//! the round trip, except the fields lockstep deliberately does not read (listed below with
//! the reason). A misspelt field name, a wrong nesting or a wrong type fails here.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use lockstep_crds::gateway::{
    BUNDLE_VERSION, BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet,
    ReferenceGrant,
};

/// Spec fields not modelled, by path prefix, and why.
const NOT_READ: &[(&str, &str)] = &[
    (
        "spec.infrastructure",
        "labels/annotations for provisioned objects: not provisioned yet",
    ),
    (
        "spec.tls.backend",
        "the Gateway's client certificate towards backends: not supported",
    ),
    (
        "spec.listeners[].tls.options",
        "implementation-specific TLS options: none defined",
    ),
    (
        "spec.listeners[].tls.frontendValidation",
        "client certificate validation: not supported",
    ),
    (
        "spec.rules[].filters[].externalAuth",
        "external auth: not supported",
    ),
    ("spec.rules[].retry", "retry: experimental channel"),
    (
        "spec.rules[].sessionPersistence",
        "session persistence: experimental channel",
    ),
    (
        "spec.useDefaultGateways",
        "default Gateways: experimental channel",
    ),
];

fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = format!("{prefix}.{k}");
                out.insert(path.clone());
                key_paths(v, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Parses `doc` as `T`, writes it back and returns the spec paths that did not survive and
/// are not in [`NOT_READ`].
fn lost_fields<T>(doc: &serde_json::Value) -> Vec<String>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let parsed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("parse {}: {e}", doc["metadata"]["name"]));
    let back = serde_json::to_value(&parsed).expect("serialise");
    let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&doc["spec"], "spec", &mut before);
    key_paths(&back["spec"], "spec", &mut after);
    before
        .difference(&after)
        .filter(|p| !NOT_READ.iter().any(|(prefix, _)| p.starts_with(prefix)))
        .cloned()
        .collect()
}

fn yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

#[derive(Default, Debug)]
struct Counts {
    classes: usize,
    gateways: usize,
    http_routes: usize,
    grpc_routes: usize,
    grants: usize,
    backend_tls_policies: usize,
    listener_sets: usize,
}

fn check_files(files: &[std::path::PathBuf]) -> (Counts, Vec<String>) {
    let (mut counts, mut lost) = (Counts::default(), Vec::new());
    for file in files {
        let text = std::fs::read_to_string(file).expect("read manifest");
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs {
            let api = doc["apiVersion"].as_str().unwrap_or_default();
            if !api.starts_with("gateway.networking.k8s.io/") {
                continue;
            }
            let found = match doc["kind"].as_str().unwrap_or_default() {
                "GatewayClass" => {
                    counts.classes += 1;
                    lost_fields::<GatewayClass>(&doc)
                }
                "Gateway" => {
                    counts.gateways += 1;
                    lost_fields::<Gateway>(&doc)
                }
                "HTTPRoute" => {
                    counts.http_routes += 1;
                    lost_fields::<HTTPRoute>(&doc)
                }
                "GRPCRoute" => {
                    counts.grpc_routes += 1;
                    lost_fields::<GRPCRoute>(&doc)
                }
                "ReferenceGrant" => {
                    counts.grants += 1;
                    lost_fields::<ReferenceGrant>(&doc)
                }
                "BackendTLSPolicy" => {
                    counts.backend_tls_policies += 1;
                    lost_fields::<BackendTLSPolicy>(&doc)
                }
                "ListenerSet" => {
                    counts.listener_sets += 1;
                    lost_fields::<ListenerSet>(&doc)
                }
                _ => continue,
            };
            lost.extend(
                found
                    .into_iter()
                    .map(|p| format!("{} {}: {p}", file.display(), doc["metadata"]["name"])),
            );
        }
    }
    (counts, lost)
}

#[test]
fn conformance_manifests_parse_without_losing_a_field_lockstep_reads() {
    let module = common::go_module_dir("sigs.k8s.io/gateway-api/conformance", BUNDLE_VERSION);
    let mut files = Vec::new();
    yaml_files(&module.join("tests"), &mut files);
    files.push(module.join("base/manifests.yaml"));
    let (counts, lost) = check_files(&files);
    assert!(
        lost.is_empty(),
        "fields lost in the round trip:\n{}",
        lost.join("\n")
    );
    // The suite's manifests hold many of each kind; a filter that skipped them all would
    // make the round trip above vacuous.
    assert!(counts.gateways >= 20, "{counts:?}");
    assert!(counts.http_routes >= 100, "{counts:?}");
    assert!(counts.grpc_routes >= 3, "{counts:?}");
    assert!(counts.grants >= 3, "{counts:?}");
    assert!(counts.backend_tls_policies >= 20, "{counts:?}");
    assert!(counts.listener_sets >= 10, "{counts:?}");
}

#[test]
fn standard_examples_parse_without_losing_a_field_lockstep_reads() {
    let module = common::go_module_dir("sigs.k8s.io/gateway-api", BUNDLE_VERSION);
    let mut files = Vec::new();
    yaml_files(&module.join("examples/standard"), &mut files);
    let (counts, lost) = check_files(&files);
    assert!(
        lost.is_empty(),
        "fields lost in the round trip:\n{}",
        lost.join("\n")
    );
    assert!(
        counts.classes >= 1
            && counts.gateways >= 10
            && counts.http_routes >= 10
            && counts.backend_tls_policies >= 1,
        "{counts:?}"
    );
}

#[test]
fn a_conformance_route_reads_as_written() {
    // tests/httproute-weight.yaml: three weighted Services on one rule.
    let module = common::go_module_dir("sigs.k8s.io/gateway-api/conformance", BUNDLE_VERSION);
    let text = std::fs::read_to_string(module.join("tests/httproute-weight.yaml"))
        .expect("read httproute-weight.yaml");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
    let route: HTTPRoute = serde_json::from_value(docs[0].clone()).expect("HTTPRoute");
    let refs = &route.spec.rules[0].backend_refs;
    let weights: Vec<_> = refs.iter().map(|b| (b.backend.name.as_str(), b.weight)).collect();
    assert_eq!(
        weights,
        [
            ("infra-backend-v1", Some(70)),
            ("infra-backend-v2", Some(30)),
            ("infra-backend-v3", Some(0))
        ]
    );
    assert_eq!(refs[0].backend.port, Some(8080));
    assert_eq!(route.spec.parent_refs[0].name, "same-namespace");
}
