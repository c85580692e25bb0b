//! Prints a CRD as YAML: `crdgen > deploy/helm/lockstep/crds/routerconfig.yaml` (the default)
//! or `crdgen routerreplica > deploy/helm/lockstep/crds/routerreplica.yaml` (likewise
//! `gatewayparameters`). Those files are the only copy: the Helm chart installs them and
//! `deploy/kustomization.yaml` lists them.

fn main() {
    match std::env::args().nth(1).as_deref() {
        None | Some("routerconfig") => print!("{}", lockstep_crds::crd_yaml()),
        Some("routerreplica") => print!("{}", lockstep_crds::replica_crd_yaml()),
        Some("gatewayparameters") => print!("{}", lockstep_crds::parameters_crd_yaml()),
        Some(other) => {
            eprintln!(
                "crdgen: unknown CRD {other:?}; expected routerconfig, routerreplica or gatewayparameters"
            );
            std::process::exit(2);
        }
    }
}
