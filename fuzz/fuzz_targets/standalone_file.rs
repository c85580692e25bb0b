//! The standalone-file loader on arbitrary text: parse, judge and compile must never panic,
//! and whatever compiles must answer lookups.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_core::{Candidate, RouteTable, file::parse_router_configs, resolve_fleet};

fuzz_target!(|text: &str| {
    let Ok(objects) = parse_router_configs("fuzz.yaml", text) else { return };
    let resolution = resolve_fleet(objects.iter().map(Candidate::of).collect());
    let table = RouteTable::compile(resolution.served.iter().map(|s| (&s.key, s.spec)));
    for route in table.routes() {
        let _ = table.lookup(&route.host, &route.path);
    }
});
