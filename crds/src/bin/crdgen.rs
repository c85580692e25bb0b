//! Prints a CRD as YAML: `crdgen > crds/routerconfig.yaml` (the default) or
//! `crdgen routerreplica > crds/routerreplica.yaml`.

fn main() {
    match std::env::args().nth(1).as_deref() {
        None | Some("routerconfig") => print!("{}", lockstep_crds::crd_yaml()),
        Some("routerreplica") => print!("{}", lockstep_crds::replica_crd_yaml()),
        Some(other) => {
            eprintln!("crdgen: unknown CRD {other:?}; expected routerconfig or routerreplica");
            std::process::exit(2);
        }
    }
}
