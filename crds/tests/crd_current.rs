//! The checked-in CRD (`crds/routerconfig.yaml`) must be what the types generate; regenerate it
//! with `cargo run -p lockstep-crds --features crdgen --bin crdgen > crds/routerconfig.yaml`.

#[test]
fn checked_in_crd_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/routerconfig.yaml");
    let on_disk = std::fs::read_to_string(path).expect("read crds/routerconfig.yaml");
    let generated = lockstep_crds::crd_yaml();
    if on_disk.trim_end() != generated.trim_end() {
        let line = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "the length".to_owned(),
                |i| {
                    format!(
                        "line {}: file {:?}, generated {:?}",
                        i + 1,
                        on_disk.lines().nth(i),
                        generated.lines().nth(i)
                    )
                },
            );
        panic!(
            "crds/routerconfig.yaml is stale (first difference at {line}); regenerate it with \
             `cargo run -p lockstep-crds --features crdgen --bin crdgen > crds/routerconfig.yaml`"
        );
    }
}

#[test]
fn crd_yaml_has_the_contract_names() {
    let crd = lockstep_crds::crd_yaml();
    for needle in [
        "name: routerconfigs.lockstep.dev",
        "- rcfg",
        "- lockstep",
        "x-kubernetes-list-type: map",
        "status: {}",
    ] {
        assert!(crd.contains(needle), "missing {needle:?}");
    }
}
