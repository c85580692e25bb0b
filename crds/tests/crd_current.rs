//! The checked-in CRDs must be what the types generate. They exist once, in the Helm chart's
//! `crds/` (`deploy/helm/lockstep/crds/routerconfig.yaml`, `routerreplica.yaml`,
//! `gatewayparameters.yaml`), which Helm
//! installs as they are and `deploy/kustomization.yaml` lists; regenerate them with
//! `cargo run -p lockstep-crds --features crdgen --bin crdgen NAME > deploy/helm/lockstep/crds/NAME.yaml`.

/// Where the generated CRDs live, relative to the repository root.
const DIR: &str = "deploy/helm/lockstep/crds";

fn assert_current(file: &str, generated: &str) {
    let path = format!("{}/../{DIR}/{file}", env!("CARGO_MANIFEST_DIR"));
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
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
        let kind = file.trim_end_matches(".yaml");
        panic!(
            "{DIR}/{file} is stale (first difference at {line}); regenerate it with \
             `cargo run -p lockstep-crds --features crdgen --bin crdgen {kind} > {DIR}/{file}`"
        );
    }
}

#[test]
fn checked_in_crds_are_current() {
    assert_current("routerconfig.yaml", &lockstep_crds::crd_yaml());
    assert_current("routerreplica.yaml", &lockstep_crds::replica_crd_yaml());
    assert_current("gatewayparameters.yaml", &lockstep_crds::parameters_crd_yaml());
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
    let crd = lockstep_crds::replica_crd_yaml();
    for needle in [
        "name: routerreplicas.lockstep.dev",
        "- rrep",
        "- lockstep",
        "x-kubernetes-list-type: map",
        "- namespace",
        "status: {}",
    ] {
        assert!(crd.contains(needle), "missing {needle:?}");
    }
    let crd = lockstep_crds::parameters_crd_yaml();
    for needle in [
        "name: gatewayparameters.lockstep.dev",
        "scope: Cluster",
        "- gwparams",
        "- ClusterIP",
        "maximum: 100",
    ] {
        assert!(crd.contains(needle), "missing {needle:?}");
    }
}
