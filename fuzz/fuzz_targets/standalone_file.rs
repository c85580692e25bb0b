//! The standalone-file loader on arbitrary text: parse, judge and compile must never panic,
//! and whatever compiles must answer lookups.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_config::{Candidate, ObjectKey, RouteTable, file::parse_router_configs, resolve_fleet};

fuzz_target!(|text: &str| {
    let Ok(objects) = parse_router_configs("fuzz.yaml", text) else { return };
    let keys: Vec<ObjectKey> = objects.iter().map(ObjectKey::of).collect();
    let candidates =
        objects.iter().zip(&keys).map(|(rc, key)| Candidate { key, created: None, spec: &rc.spec }).collect();
    let resolution = resolve_fleet(candidates);
    let table = RouteTable::compile(resolution.accepted.iter().map(|c| (c.key, c.spec)));
    for route in table.routes() {
        let _ = table.lookup(&route.host, &route.path);
    }
});
