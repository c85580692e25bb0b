//! The route table compiler and lookup on arbitrary specs and requests: no panic, and in a
//! valid spec every Exact route is found again at its own host and path.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lockstep_core::{ObjectKey, RouteTable};
use lockstep_crds::{Backend, HostRule, HttpPath, PathType, RouterConfigSpec};

#[derive(Debug, Arbitrary)]
struct Input {
    rules: Vec<(String, Vec<(String, bool)>)>,
    requests: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let spec = RouterConfigSpec {
        fleet: "default".into(),
        rules: input
            .rules
            .into_iter()
            .take(64)
            .map(|(host, paths)| HostRule {
                host,
                tls: None,
                wildcard_match: None,
                paths: paths
                    .into_iter()
                    .take(32)
                    .map(|(path, exact)| HttpPath {
                        path,
                        path_type: if exact { PathType::Exact } else { PathType::Prefix },
                        backend: Some(Backend { service: None, url: Some("http://127.0.0.1:9".into()), status: None }),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
    };
    let valid = lockstep_core::validate_spec(&spec).is_ok();
    let key = ObjectKey::new("ns", "fuzz");
    let table = RouteTable::compile([(&key, &spec)]);
    for (host, path) in input.requests.iter().take(64) {
        let _ = table.lookup(host, path);
    }
    // In a valid spec every Exact route of an exact host is reachable at its own path.
    for route in table.routes().iter().filter(|_| valid) {
        if route.path_type == PathType::Exact && !route.host.starts_with("*.") {
            let found = table.lookup(&route.host, &route.path);
            assert_eq!(found, Some(route), "exact route not found at its own host and path");
        }
    }
});
