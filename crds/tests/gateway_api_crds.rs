//! The checked-in Gateway API CRDs (`deploy/gateway-api/standard/`) must be the files of the
//! `sigs.k8s.io/gateway-api` module at the version lockstep follows, unmodified; refresh
//! them with `deploy/gateway-api/fetch.sh`.

mod common;

use lockstep_crds::gateway::{BUNDLE_VERSION, BUNDLE_VERSION_ANNOTATION};

/// The kinds lockstep serves, by file name.
const FILES: [&str; 7] = [
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_httproutes.yaml",
    "gateway.networking.k8s.io_grpcroutes.yaml",
    "gateway.networking.k8s.io_referencegrants.yaml",
    "gateway.networking.k8s.io_backendtlspolicies.yaml",
    "gateway.networking.k8s.io_listenersets.yaml",
];

fn checked_in(file: &str) -> Vec<u8> {
    let path = format!(
        "{}/../deploy/gateway-api/standard/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn checked_in_crds_equal_the_modules_files() {
    let module = common::go_module_dir("sigs.k8s.io/gateway-api", BUNDLE_VERSION);
    for file in FILES {
        let upstream = std::fs::read(module.join("config/crd/standard").join(file))
            .unwrap_or_else(|e| panic!("read the module's {file}: {e}"));
        assert!(
            checked_in(file) == upstream,
            "deploy/gateway-api/standard/{file} differs from gateway-api {BUNDLE_VERSION}; \
             run deploy/gateway-api/fetch.sh"
        );
    }
    // Only these files, so nothing else is installed by accident.
    let dir = format!("{}/../deploy/gateway-api/standard", env!("CARGO_MANIFEST_DIR"));
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("read deploy/gateway-api/standard")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut expected: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(present, expected);
}

#[test]
fn checked_in_crds_are_the_standard_channel_of_the_bundle_version() {
    for file in FILES {
        let text = String::from_utf8(checked_in(file)).expect("UTF-8");
        let crd: serde_json::Value = serde_saphyr::from_str(&text).expect("a CRD parses");
        let annotations = &crd["metadata"]["annotations"];
        assert_eq!(
            annotations[BUNDLE_VERSION_ANNOTATION].as_str(),
            Some(BUNDLE_VERSION),
            "{file}: bundle version"
        );
        assert_eq!(
            annotations["gateway.networking.k8s.io/channel"].as_str(),
            Some("standard"),
            "{file}: channel"
        );
        assert_eq!(crd["spec"]["group"].as_str(), Some(lockstep_crds::gateway::GROUP));
    }
}
