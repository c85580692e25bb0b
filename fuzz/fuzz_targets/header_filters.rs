//! Header filter validation on arbitrary names: no panic, and no spec whose filters name a
//! framing, hop-by-hop or Host header (in any case) is ever valid.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lockstep_crds::{
    Backend, Filters, HeaderModifier, HeaderValue, HostRule, HttpPath, PROXY_MANAGED_HEADERS,
    RouterConfigSpec,
};

#[derive(Debug, Arbitrary)]
struct Input {
    set: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    response: bool,
}

fuzz_target!(|input: Input| {
    let value = |name: String| HeaderValue { name, value: "1".into() };
    let names: Vec<String> = input
        .set
        .iter()
        .chain(&input.add)
        .chain(&input.remove)
        .cloned()
        .collect();
    let modifier = HeaderModifier {
        set: input.set.into_iter().take(16).map(value).collect(),
        add: input.add.into_iter().take(16).map(value).collect(),
        remove: input.remove.into_iter().take(16).collect(),
    };
    let filters = if input.response {
        Filters { response_headers: Some(modifier), ..Default::default() }
    } else {
        Filters { request_headers: Some(modifier), ..Default::default() }
    };
    let spec = RouterConfigSpec {
        fleet: "default".into(),
        rules: vec![HostRule {
            host: "a.example.com".into(),
            tls: None,
            wildcard_match: None,
            paths: vec![HttpPath {
                path: "/".into(),
                backend: Some(Backend { service: None, url: Some("http://127.0.0.1:9".into()), status: None }),
                filters: Some(filters),
                ..Default::default()
            }],
        }],
    };
    let valid = lockstep_core::validate_spec(&spec).is_ok();
    let managed = names.iter().take(48).any(|n| {
        PROXY_MANAGED_HEADERS
            .iter()
            .any(|m| m.eq_ignore_ascii_case(n))
    });
    assert!(!(valid && managed), "a filter naming a proxy-managed header was valid: {names:?}");
});
