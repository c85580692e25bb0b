//! Prints the RouterConfig CRD as YAML: `cargo run -p lockstep-crds --features crdgen --bin crdgen > crds/routerconfig.yaml`.

fn main() {
    print!("{}", lockstep_crds::crd_yaml());
}
