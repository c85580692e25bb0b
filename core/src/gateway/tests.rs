//! The whole translation, scenario by scenario. Objects are written as YAML, as a user
//! would; each scenario quotes the Gateway API v1.6.3 rule it checks.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use lockstep_crds::gateway::{
    BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerStatus, ReferenceGrant,
};
use lockstep_crds::{PathType, gateway::RouteParentStatus};

use super::{
    GatewayInputs, Translation,
    lower::{Gap, router_config_spec},
    rules::ServedBackend,
    status::{FleetProgress, condition as ctype, gateway_programmed, reason, route_ready},
    testutil::*,
    translate,
};

mod listener_sets;

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn class() -> GatewayClass {
    yaml("metadata: {name: lockstep, generation: 1}\nspec: {controllerName: lockstep.dev/gateway-controller}")
}

fn gateway(listeners: &str) -> Gateway {
    yaml(&format!(
        "metadata: {{name: gw, namespace: infra, generation: 3}}\nspec:\n  gatewayClassName: lockstep\n  listeners: {listeners}"
    ))
}

const HTTP80: &str = "[{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]";

fn http_route(ns: &str, name: &str, created: &str, spec: &str) -> HTTPRoute {
    yaml(&format!(
        "metadata: {{name: {name}, namespace: {ns}, uid: uid-{name}, generation: 2, creationTimestamp: \"{created}\"}}\nspec: {spec}"
    ))
}

fn services() -> Vec<Service> {
    vec![
        service("infra", "web", &[(8080, None)]),
        service("infra", "web2", &[(8080, None)]),
        service("apps", "api", &[(9000, None)]),
        service("infra", "grpc", &[(9000, Some("kubernetes.io/h2c"))]),
    ]
}

struct World {
    class: GatewayClass,
    gateway: Gateway,
    sets: Vec<lockstep_crds::gateway::ListenerSet>,
    http: Vec<HTTPRoute>,
    grpc: Vec<GRPCRoute>,
    services: Vec<Service>,
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
    grants: Vec<ReferenceGrant>,
    namespaces: Vec<Namespace>,
    policies: Vec<BackendTLSPolicy>,
}

impl World {
    fn new(gateway: Gateway) -> Self {
        World {
            class: class(),
            gateway,
            sets: Vec::new(),
            http: Vec::new(),
            grpc: Vec::new(),
            services: services(),
            secrets: vec![tls_secret("infra", "cert")],
            config_maps: Vec::new(),
            grants: Vec::new(),
            namespaces: Vec::new(),
            policies: Vec::new(),
        }
    }

    fn run(&self) -> Translation {
        self.run_opt().expect("a Gateway of lockstep's class")
    }
}

fn cond<'a>(p: &'a RouteParentStatus, t: &str) -> Option<(&'a str, &'a str)> {
    p.conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

fn parent<'a>(t: &'a Translation, name: &str) -> &'a RouteParentStatus {
    &t.routes
        .iter()
        .find(|r| r.route.key.name == name)
        .expect("route verdict")
        .parents[0]
}

fn listener<'a>(t: &'a Translation, name: &str) -> &'a ListenerStatus {
    t.listeners
        .iter()
        .find(|l| l.name == name)
        .expect("listener status")
}

#[test]
fn class_and_gateway_acceptance() {
    let mut w = World::new(gateway(HTTP80));
    let t = w.run();
    assert_eq!(t.class_conditions[0].status, "True");
    assert_eq!(
        (
            t.gateway_conditions[0].status.as_str(),
            t.gateway_conditions[0].reason.as_str()
        ),
        ("True", reason::ACCEPTED)
    );
    // Programmed before the fleet reports: False Pending, with the Gateway's generation.
    assert_eq!(
        (
            t.gateway_conditions[1].status.as_str(),
            t.gateway_conditions[1].reason.as_str()
        ),
        ("False", reason::PENDING)
    );
    assert!(
        t.gateway_conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );

    // GatewayClass: only "controllerName: lockstep.dev/gateway-controller" is lockstep's;
    // another controller's class and its Gateways get nothing from lockstep.
    w.class.spec.controller_name = "example.com/other".into();
    assert!(w.run_opt().is_none());
    w.class = class();
    // Gateway `spec.addresses`: "UnsupportedAddress ... an address that was provided is a
    // type which is not supported by the implementation."
    w.gateway.spec.addresses = vec![lockstep_crds::gateway::GatewaySpecAddress {
        address_type: Some("test/fake-invalid-type".into()),
        value: "fake address teehee!".into(),
    }];
    let t = w.run();
    assert_eq!(t.gateway_conditions[0].reason, reason::UNSUPPORTED_ADDRESS);
    assert_eq!(t.gateway_conditions[1].reason, reason::INVALID);
    assert!(
        t.config.is_none(),
        "a Gateway that is not accepted serves nothing"
    );
}

/// `spec.addresses` and `spec.infrastructure.parametersRef`: an `IPAddress` entry without a
/// value asks for an address to be assigned ("GatewayAddressEmpty"), which the fleet's Service
/// does, and one with a value for that address (`provision::static_addresses`): both are
/// accepted; another type, or a Gateway-level parametersRef (lockstep reads parameters from
/// the class only) is refused, the message naming the field.
#[test]
fn requested_addresses_and_gateway_parameters() {
    let accepted = |spec_extra: &str| {
        let mut w = World::new(gateway(HTTP80));
        let extra: Gateway = yaml(&format!(
            "metadata: {{name: gw}}\nspec:\n  gatewayClassName: lockstep\n{spec_extra}"
        ));
        w.gateway.spec.addresses = extra.spec.addresses;
        w.gateway.spec.infrastructure = extra.spec.infrastructure;
        let t = w.run();
        let c = &t.gateway_conditions[0];
        (
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            t.config.is_some(),
        )
    };
    let (status, reason_, _, serves) = accepted("  addresses: [{type: IPAddress}]");
    assert_eq!(
        (status.as_str(), reason_.as_str(), serves),
        ("True", reason::ACCEPTED, true)
    );
    let (status, _, _, _) = accepted("  addresses: [{}]");
    assert_eq!(status, "True", "the type defaults to IPAddress");
    let (status, _, _, _) = accepted("  addresses: [{value: 192.0.2.1}, {type: IPAddress, value: 10.0.0.1}]");
    assert_eq!(
        status, "True",
        "static addresses are accepted; whether usable is Programmed's"
    );
    for (extra, field) in [
        (
            "  addresses: [{type: IPAddress}, {type: Hostname, value: gw.example.com}]",
            "spec.addresses[1]",
        ),
        ("  addresses: [{type: Hostname}]", "spec.addresses[0]"),
        (
            "  addresses: [{type: test/fake-invalid-type, value: x}]",
            "spec.addresses[0]",
        ),
    ] {
        let (status, reason_, message, serves) = accepted(extra);
        assert_eq!(
            (status.as_str(), reason_.as_str()),
            ("False", reason::UNSUPPORTED_ADDRESS),
            "{extra}"
        );
        assert!(message.starts_with(field), "{extra}: {message}");
        assert!(!serves, "{extra}: a Gateway that is not accepted serves nothing");
    }
    let (status, reason_, message, serves) = accepted(
        "  infrastructure: {labels: {a: b}, parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}}",
    );
    assert_eq!(
        (status.as_str(), reason_.as_str()),
        ("False", reason::INVALID_PARAMETERS)
    );
    assert!(
        message.starts_with("spec.infrastructure.parametersRef invalid.io/InvalidParameters invalid"),
        "{message}"
    );
    assert!(!serves);
    let (status, _, _, _) = accepted("  infrastructure: {labels: {a: b}, annotations: {c: d}}");
    assert_eq!(status, "True", "labels and annotations alone are accepted");
}

/// A Gateway whose only listener has an unresolved certificate (the conformance suite's
/// `GatewayWithAttachedRoutes`): accepted with `ListenersNotValid`, not programmed, and a route
/// naming that listener attaches to it and counts in its `attachedRoutes`.
#[test]
fn routes_attach_to_a_gateway_whose_every_listener_is_invalid() {
    let mut w = World::new(gateway(
        "[{name: tls, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: does-not-exist}]}}]",
    ));
    w.http.push(http_route(
        "infra",
        "unresolved",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw, sectionName: tls}], rules: [{backendRefs: [{name: does-not-exist, port: 8080}]}]}",
    ));
    let t = w.run();
    let gateway_condition = |i: usize| {
        (
            t.gateway_conditions[i].status.as_str(),
            t.gateway_conditions[i].reason.as_str(),
        )
    };
    assert_eq!(gateway_condition(0), ("True", reason::LISTENERS_NOT_VALID));
    assert_eq!(gateway_condition(1), ("False", reason::INVALID));
    assert_eq!(listener(&t, "tls").attached_routes, 1);
    let p = parent(&t, "unresolved");
    assert_eq!(cond(p, ctype::ACCEPTED), Some(("True", reason::ACCEPTED)));
    assert_eq!(cond(p, ctype::RESOLVED_REFS).map(|c| c.0), Some("False"));
    assert!(
        t.config.as_ref().is_some_and(|c| c.listeners.is_empty()),
        "nothing is served"
    );

    // With no listener accepted at all (only unsupported protocols) the Gateway is not
    // accepted: "Gateway with no accepted listeners should not be accepted".
    w.gateway = gateway("[{name: tcp, port: 9000, protocol: TCP}]");
    let t = w.run();
    assert_eq!(
        (
            t.gateway_conditions[0].status.as_str(),
            t.gateway_conditions[0].reason.as_str()
        ),
        ("False", reason::LISTENERS_NOT_VALID)
    );
}

impl World {
    fn run_opt(&self) -> Option<Translation> {
        translate(
            GatewayInputs {
                class: &self.class,
                gateway: &self.gateway,
                listener_sets: &self.sets,
                http_routes: &self.http,
                grpc_routes: &self.grpc,
                services: &self.services,
                secrets: &self.secrets,
                config_maps: &self.config_maps,
                grants: &self.grants,
                namespaces: &self.namespaces,
                parameters: &[],
                backend_tls_policies: &self.policies,
            },
            now(),
        )
    }
}

#[test]
fn unresolved_backends_are_answered_500_with_their_weight() {
    let mut w = World::new(gateway(HTTP80));
    // HTTPRouteRule backendRefs: "If multiple backends are specified, and some are
    // invalid, the proportion of requests that would otherwise have been routed to an
    // invalid backend MUST receive a 500 status code."
    w.http.push(http_route(
        "infra",
        "split",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: web, port: 8080, weight: 70}, {name: gone, port: 8080, weight: 30}]}]}",
    ));
    let t = w.run();
    let p = parent(&t, "split");
    assert_eq!(cond(p, ctype::ACCEPTED), Some(("True", reason::ACCEPTED)));
    assert_eq!(
        cond(p, ctype::RESOLVED_REFS),
        Some(("False", reason::BACKEND_NOT_FOUND))
    );
    let config = t.config.as_ref().unwrap();
    let backends = &config.listeners[0].entries[0].entry.backends;
    assert!(
        matches!(&backends[0], ServedBackend::Service { service, weight: 70, .. } if service.name == "web")
    );
    assert_eq!(
        backends[1],
        ServedBackend::Status {
            status: 500,
            weight: 30
        }
    );
    assert_eq!(
        listener(&t, "http").attached_routes,
        1,
        "a route with a bad backend is still attached"
    );
    // The listener can be served, but no fleet serves it yet: Programmed False Pending, as
    // the Gateway's.
    let l = listener(&t, "http");
    let programmed = l
        .conditions
        .iter()
        .find(|c| c.type_ == ctype::PROGRAMMED)
        .unwrap();
    assert_eq!(
        (programmed.status.as_str(), programmed.reason.as_str()),
        ("False", reason::PENDING)
    );
    let gw = t
        .gateway_conditions
        .iter()
        .find(|c| c.type_ == ctype::PROGRAMMED)
        .unwrap();
    assert_eq!(
        (gw.status.as_str(), gw.reason.as_str()),
        ("False", reason::PENDING)
    );
}

#[test]
fn route_parent_reasons() {
    let mut w = World::new(gateway(
        "[{name: http, port: 80, protocol: HTTP}, {name: foo, port: 8080, protocol: HTTP, hostname: foo.example.com}]",
    ));
    /// (name, namespace, spec, Accepted, ResolvedRefs)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<(&'a str, &'a str)>,
        Option<(&'a str, &'a str)>,
    );
    let rows: &[Row] = &[
        // (name, namespace, spec, Accepted, ResolvedRefs)
        // RouteReasonNoMatchingParent: "a Route ParentRef specifies a Port and/or
        // SectionName that does not match any Listeners in the Gateway."
        (
            "no-section",
            "infra",
            "{parentRefs: [{name: gw, sectionName: nope}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
            Some(("False", reason::NO_MATCHING_PARENT)),
            Some(("True", reason::RESOLVED_REFS)),
        ),
        // RouteReasonNotAllowedByListeners: "the Gateway has no Listener whose
        // allowedRoutes criteria permit the route" (default From: Same).
        (
            "other-ns",
            "apps",
            "{parentRefs: [{name: gw, namespace: infra}], rules: [{backendRefs: [{name: api, port: 9000}]}]}",
            Some(("False", reason::NOT_ALLOWED_BY_LISTENERS)),
            Some(("True", reason::RESOLVED_REFS)),
        ),
        // RouteReasonNoMatchingListenerHostname: "the Gateway has no compatible Listeners
        // whose Hostname matches the route".
        (
            "bad-host",
            "infra",
            "{parentRefs: [{name: gw, sectionName: foo}], hostnames: [bar.example.net], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
            Some(("False", reason::NO_MATCHING_LISTENER_HOSTNAME)),
            Some(("True", reason::RESOLVED_REFS)),
        ),
        // HTTPBackendRef: "It refers to an unknown or unsupported kind of resource ...
        // `InvalidKind`".
        (
            "bad-kind",
            "infra",
            "{parentRefs: [{name: gw}], rules: [{backendRefs: [{group: example.com, kind: Bucket, name: web}]}]}",
            Some(("True", reason::ACCEPTED)),
            Some(("False", reason::INVALID_KIND)),
        ),
        // "It refers a resource in another namespace when the reference has not been
        // explicitly allowed by a ReferenceGrant ... `RefNotPermitted`".
        (
            "cross-ns",
            "infra",
            "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: api, namespace: apps, port: 9000}]}]}",
            Some(("True", reason::ACCEPTED)),
            Some(("False", reason::REF_NOT_PERMITTED)),
        ),
        // HTTPRouteFilter type: "Unknown values here must result in the implementation
        // setting the Accepted Condition for the Route to `status: False`, with a Reason of
        // `UnsupportedValue`." (Every rule unsupported: the route is not accepted.)
        (
            "external-auth-only",
            "infra",
            "{parentRefs: [{name: gw}], rules: [{filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: web2, port: 8080}}}], backendRefs: [{name: web, port: 8080}]}]}",
            Some(("False", reason::UNSUPPORTED_VALUE)),
            Some(("True", reason::RESOLVED_REFS)),
        ),
        // A RequestMirror whose Service is missing: the requests are served, no copy is
        // sent, and the reference is reported like a backendRef's.
        (
            "mirror-to-nothing",
            "infra",
            "{parentRefs: [{name: gw}], rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: gone, port: 8080}}}], backendRefs: [{name: web, port: 8080}]}]}",
            Some(("True", reason::ACCEPTED)),
            Some(("False", reason::BACKEND_NOT_FOUND)),
        ),
        (
            "regex-path",
            "infra",
            "{parentRefs: [{name: gw}], rules: [{matches: [{path: {type: RegularExpression, value: \"/v[0-9]+\"}}], backendRefs: [{name: web, port: 8080}]}]}",
            Some(("False", reason::UNSUPPORTED_VALUE)),
            Some(("True", reason::RESOLVED_REFS)),
        ),
        // HTTPRouteFilter: "If a reference to a custom filter type cannot be resolved, the
        // filter MUST NOT be skipped. Instead, requests that would have been processed by
        // that filter MUST receive a HTTP error response."
        (
            "extension",
            "infra",
            "{parentRefs: [{name: gw}], rules: [{filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Magic, name: m}}], backendRefs: [{name: web, port: 8080}]}]}",
            Some(("True", reason::ACCEPTED)),
            Some(("False", reason::INVALID_KIND)),
        ),
    ];
    for (name, ns, spec, _, _) in rows {
        w.http.push(http_route(ns, name, "2026-01-01T00:00:00Z", spec));
    }
    let t = w.run();
    for (name, _, _, accepted, resolved) in rows {
        let p = parent(&t, name);
        assert_eq!(cond(p, ctype::ACCEPTED), *accepted, "{name}: Accepted");
        assert_eq!(cond(p, ctype::RESOLVED_REFS), *resolved, "{name}: ResolvedRefs");
        assert_eq!(
            cond(p, ctype::PARTIALLY_INVALID),
            None,
            "{name}: PartiallyInvalid is only for a mix"
        );
        assert!(
            p.conditions.iter().all(|c| c.observed_generation == Some(2)),
            "{name}: the route's generation"
        );
        assert_eq!(p.controller_name, lockstep_crds::gateway::CONTROLLER_NAME);
    }
    let config = t.config.as_ref().unwrap();
    let served: Vec<&str> = config.routes.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(
        served,
        ["bad-kind", "cross-ns", "extension", "mirror-to-nothing"],
        "only accepted routes are contained"
    );
    let extension = config.listeners[0]
        .entries
        .iter()
        .find(|e| config.routes[e.route].key.name == "extension")
        .unwrap();
    assert_eq!(
        extension.entry.backends,
        [ServedBackend::Status {
            status: 500,
            weight: 1
        }]
    );
    // ListenerStatus attachedRoutes: "Routes with any other value for the Accepted
    // condition MUST NOT be included in this count."
    assert_eq!(listener(&t, "http").attached_routes, 4);
}

#[test]
fn a_reference_grant_admits_a_cross_namespace_backend() {
    let mut w = World::new(gateway(HTTP80));
    w.http.push(http_route(
        "infra",
        "cross-ns",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: api, namespace: apps, port: 9000}]}]}",
    ));
    w.grants
        .push(grant("apps", "HTTPRoute", "infra", "", "Service", None));
    let t = w.run();
    assert_eq!(
        cond(parent(&t, "cross-ns"), ctype::RESOLVED_REFS),
        Some(("True", reason::RESOLVED_REFS))
    );
}

#[test]
fn a_backend_refs_request_header_modifier_changes_only_the_requests_sent_to_it() {
    let mut w = World::new(gateway(HTTP80));
    // HTTPBackendRef filters: "Filters defined at this level should be executed if and
    // only if the request is being forwarded to the backend defined here."
    w.http.push(http_route("infra", "per-backend", "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Rule, value: both}]}}], backendRefs: [{name: web, port: 8080, weight: 10, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: web}]}}, {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Added, value: a}], remove: [X-Gone]}}]}, {name: web2, port: 8080, weight: 10}]}]}"));
    // Any other filter on a backendRef is not served: the rule is dropped.
    w.http.push(http_route("infra", "mirror-on-backend", "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], hostnames: [other.example.com], rules: [{backendRefs: [{name: web, port: 8080, filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: A, value: b}]}}]}]}]}"));
    let t = w.run();
    let p = parent(&t, "per-backend");
    assert_eq!(cond(p, ctype::ACCEPTED), Some(("True", reason::ACCEPTED)));
    assert_eq!(
        cond(p, ctype::RESOLVED_REFS),
        Some(("True", reason::RESOLVED_REFS))
    );
    let refused = parent(&t, "mirror-on-backend");
    assert_eq!(
        cond(refused, ctype::ACCEPTED),
        Some(("False", reason::UNSUPPORTED_VALUE))
    );
    let config = t.config.as_ref().unwrap();
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap();
    let path = &spec.rules[0].paths[0];
    let web = path.backends[0]
        .request_headers
        .as_ref()
        .expect("web's own changes");
    let names = |l: &[lockstep_crds::HeaderValue]| {
        l.iter()
            .map(|h| format!("{}={}", h.name, h.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&web.set), ["Backend=web"]);
    assert_eq!(names(&web.add), ["X-Added=a"]);
    assert_eq!(web.remove, ["X-Gone"]);
    assert_eq!(path.backends[1].request_headers, None, "web2 has none of its own");
    assert_eq!(
        names(
            &path
                .filters
                .as_ref()
                .unwrap()
                .request_headers
                .as_ref()
                .unwrap()
                .set
        ),
        ["X-Rule=both"],
        "the rule's own filter stays the path's"
    );
    // The proxies' table gives each pick the changes of the backend it picked.
    let key = crate::ObjectKey::new("infra", "gw");
    let table = crate::RouteTable::compile([(&key, &spec)]);
    let route = table.lookup("app.example.com", "/").unwrap();
    for _ in 0..4 {
        let (backend, ops) = route.pick().unwrap();
        let set: Vec<String> = ops
            .map(|o| {
                o.set
                    .iter()
                    .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        match backend.to_string().as_str() {
            "service infra/web:8080" => assert_eq!(set, ["backend=web"]),
            "service infra/web2:8080" => assert!(set.is_empty()),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn request_mirrors_are_lowered_with_their_share() {
    let mut w = World::new(gateway(HTTP80));
    // HTTPRequestMirrorFilter: "Percent represents the percentage of requests that should
    // be mirrored to BackendRef"; "Fraction represents the fraction of requests that should
    // be mirrored"; denominator "+kubebuilder:default=100".
    w.http.push(http_route("infra", "mirrored", "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-A, value: b}]}}, {type: RequestMirror, requestMirror: {backendRef: {name: web2, port: 8080}}}, {type: RequestMirror, requestMirror: {backendRef: {name: web2, namespace: infra, port: 8080}, percent: 20}}, {type: RequestMirror, requestMirror: {backendRef: {name: api, namespace: apps, port: 9000}, fraction: {numerator: 25, denominator: 50}}}], backendRefs: [{name: web, port: 8080}]}]}"));
    w.grants
        .push(grant("apps", "HTTPRoute", "infra", "", "Service", None));
    let t = w.run();
    let p = parent(&t, "mirrored");
    assert_eq!(cond(p, ctype::ACCEPTED), Some(("True", reason::ACCEPTED)));
    assert_eq!(
        cond(p, ctype::RESOLVED_REFS),
        Some(("True", reason::RESOLVED_REFS))
    );
    let config = t.config.as_ref().unwrap();
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap();
    let filters = spec.rules[0].paths[0].filters.as_ref().unwrap();
    let mirrors: Vec<String> = filters
        .mirrors
        .iter()
        .map(|m| {
            format!(
                "{}/{}:{} {:?}",
                m.service.namespace.as_deref().unwrap_or("-"),
                m.service.name,
                m.service.port,
                m.fraction.as_ref().map(|f| (f.numerator, f.denominator)),
            )
        })
        .collect();
    assert_eq!(
        mirrors,
        [
            "-/web2:8080 None",
            "-/web2:8080 Some((20, 100))",
            "apps/api:9000 Some((25, 50))",
        ],
        "the Gateway's namespace is left out, another is named"
    );
    assert!(filters.request_headers.is_some(), "the other filters stay");
    assert_eq!(
        spec.rules[0].paths[0].backends[0].service.as_ref().unwrap().name,
        "web",
        "the answer comes from the backendRef"
    );
    // The proxies' table compiles them with the RouterConfig's namespace.
    let key = crate::ObjectKey::new("infra", "gw");
    let table = crate::RouteTable::compile([(&key, &spec)]);
    let route = table.lookup("app.example.com", "/").unwrap();
    let compiled: Vec<(String, u32, u32)> = route
        .filters
        .mirrors
        .iter()
        .map(|m| (m.backend.to_string(), m.numerator, m.denominator))
        .collect();
    assert_eq!(
        compiled,
        [
            ("service infra/web2:8080".to_owned(), 1, 1),
            ("service infra/web2:8080".to_owned(), 20, 100),
            ("service apps/api:9000".to_owned(), 25, 50),
        ]
    );
    // A mirror of another namespace is named where the replicas must watch it.
    assert_eq!(
        crate::gateway::provision::watch_namespaces("infra", [&spec]),
        ["apps", "infra"]
    );
}

#[test]
fn a_cors_filter_is_lowered_and_a_bad_origin_drops_its_rule() {
    let mut w = World::new(gateway(HTTP80));
    // HTTPCORSFilter, as the conformance suite's httproute-cors.yaml writes it.
    w.http.push(http_route("infra", "cors", "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{matches: [{path: {value: /ok}}], filters: [{type: CORS, cors: {allowOrigins: [\"https://www.foo.com\", \"https://*.bar.com\"], allowMethods: [GET, OPTIONS], allowHeaders: [x-header-1], exposeHeaders: [x-header-3], allowCredentials: true, maxAge: 3600}}], backendRefs: [{name: web, port: 8080}]}, {matches: [{path: {value: /bad}}], filters: [{type: CORS, cors: {allowOrigins: [\"ftp://files.example.com\"]}}], backendRefs: [{name: web, port: 8080}]}]}"));
    let t = w.run();
    let p = parent(&t, "cors");
    let partial = p
        .conditions
        .iter()
        .find(|c| c.type_ == ctype::PARTIALLY_INVALID)
        .expect("the rule with an ftp origin is dropped");
    assert!(partial.message.contains("allow_origins"), "{}", partial.message);
    let config = t.config.as_ref().unwrap();
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap();
    let cors = spec.rules[0].paths[0]
        .filters
        .as_ref()
        .unwrap()
        .cors
        .as_ref()
        .unwrap();
    assert_eq!(cors.allow_origins, ["https://www.foo.com", "https://*.bar.com"]);
    assert_eq!(cors.allow_methods, ["GET", "OPTIONS"]);
    assert!(cors.allow_credentials);
    assert_eq!(cors.max_age, Some(3600));
    assert_eq!(spec.rules[0].paths.len(), 1, "only /ok is served");
}

#[test]
fn dropped_rules_make_a_route_partially_invalid() {
    let mut w = World::new(gateway(HTTP80));
    // RouteConditionPartiallyInvalid: "Drop Rule(s): ... The message for this condition
    // MUST start with the prefix "Dropped Rule" ... the "Accepted" condition MUST be set to
    // "True" with the latest generation of the resource."
    w.http.push(http_route("infra", "mixed", "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{matches: [{path: {value: /ok}}], backendRefs: [{name: web, port: 8080}]}, {matches: [{path: {value: /auth}}], filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: web2, port: 8080}}}], backendRefs: [{name: web, port: 8080}]}]}"));
    let t = w.run();
    let p = parent(&t, "mixed");
    assert_eq!(cond(p, ctype::ACCEPTED), Some(("True", reason::ACCEPTED)));
    let partial = p
        .conditions
        .iter()
        .find(|c| c.type_ == ctype::PARTIALLY_INVALID)
        .unwrap();
    assert_eq!(
        (partial.status.as_str(), partial.reason.as_str()),
        ("True", reason::UNSUPPORTED_VALUE)
    );
    assert!(partial.message.starts_with("Dropped Rule"), "{}", partial.message);
    let config = t.config.as_ref().unwrap();
    let paths: Vec<&str> = config.listeners[0]
        .entries
        .iter()
        .map(|e| e.entry.path.as_str())
        .collect();
    assert_eq!(paths, ["/ok"], "the dropped rule is not served");
    // The issue's promise: a partially invalid route never counts as served.
    let ready = route_ready(
        &p.conditions,
        Some(FleetProgress::AllServe { replicas: 3 }),
        2,
        now(),
    );
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "PartiallyInvalid")
    );
}

#[test]
fn listeners_are_isolated() {
    // Gateway `spec.listeners`: "if Listeners are defined for "foo.example.com" and
    // "*.example.com", a request to "foo.example.com" SHOULD only be routed using routes
    // attached to the "foo.example.com" Listener (and not the "*.example.com" Listener)."
    let mut w = World::new(gateway(
        "[{name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}, {name: wild, port: 80, protocol: HTTP, hostname: \"*.example.com\"}, {name: other-port, port: 8080, protocol: HTTP}]",
    ));
    w.http.push(http_route(
        "infra",
        "to-wild",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw, sectionName: wild}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
    ));
    w.http.push(http_route(
        "infra",
        "to-foo",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw, sectionName: foo}], rules: [{backendRefs: [{name: web2, port: 8080}]}]}",
    ));
    // No hostnames and no sectionName: attaches to every listener with its host names.
    w.http.push(http_route("infra", "everywhere", "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{matches: [{path: {value: /all}}], backendRefs: [{name: web, port: 8080}]}]}"));
    let t = w.run();
    let config = t.config.as_ref().unwrap();
    let of = |listener: &str| -> Vec<(String, Option<String>)> {
        let l = config.listeners.iter().find(|l| l.name == listener).unwrap();
        l.entries
            .iter()
            .map(|e| (config.routes[e.route].key.name.clone(), e.host.clone()))
            .collect()
    };
    let s = |x: &str| Some(x.to_owned());
    let n = |x: &str| x.to_owned();
    assert_eq!(
        of("foo"),
        [
            (n("everywhere"), s("foo.example.com")),
            (n("to-foo"), s("foo.example.com"))
        ]
    );
    assert_eq!(
        of("wild"),
        [
            (n("everywhere"), s("*.example.com")),
            (n("to-wild"), s("*.example.com"))
        ]
    );
    assert_eq!(of("other-port"), [(n("everywhere"), None)]);
    assert_eq!(listener(&t, "foo").attached_routes, 2);
    assert_eq!(listener(&t, "wild").attached_routes, 2);
    assert_eq!(listener(&t, "other-port").attached_routes, 1);
}

#[test]
fn the_oldest_route_wins_a_tie() {
    // HTTPRoute matches: "If ties still exist across multiple Routes, matching precedence
    // MUST be determined in order of ... The oldest Route based on creation timestamp. The
    // Route appearing first in alphabetical order by "{namespace}/{name}"."
    let mut w = World::new(gateway(HTTP80));
    let spec = |svc: &str| {
        format!(
            "{{parentRefs: [{{name: gw}}], hostnames: [app.example.com], rules: [{{matches: [{{path: {{value: /api}}}}], backendRefs: [{{name: {svc}, port: 8080}}]}}]}}"
        )
    };
    w.http.push(http_route(
        "infra",
        "a-newer",
        "2026-02-01T00:00:00Z",
        &spec("web2"),
    ));
    w.http.push(http_route(
        "infra",
        "z-older",
        "2026-01-01T00:00:00Z",
        &spec("web"),
    ));
    w.http.push(http_route(
        "infra",
        "b-same-age",
        "2026-01-01T00:00:00Z",
        &spec("web2"),
    ));
    // Precedence first: an Exact path beats the older Prefix.
    w.http.push(http_route("infra", "newest-exact", "2026-03-01T00:00:00Z",
        "{parentRefs: [{name: gw}], hostnames: [app.example.com], rules: [{matches: [{path: {type: Exact, value: /api}}], backendRefs: [{name: web, port: 8080}]}]}"));
    let config = w.run().config.unwrap();
    let order: Vec<&str> = config.listeners[0]
        .entries
        .iter()
        .map(|e| config.routes[e.route].key.name.as_str())
        .collect();
    assert_eq!(order, ["newest-exact", "b-same-age", "z-older", "a-newer"]);
    // Lowered, the duplicates that can never win are left out and the oldest route keeps
    // the path.
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap();
    let paths: Vec<(&str, PathType, &str)> = spec.rules[0]
        .paths
        .iter()
        .map(|p| {
            (
                p.path.as_str(),
                p.path_type,
                p.backends[0].service.as_ref().unwrap().name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("/api", PathType::Exact, "web"),
            ("/api", PathType::Prefix, "web2")
        ]
    );
    // The proxies' own table takes it: Exact /api first, the oldest route's Prefix below.
    let key = crate::ObjectKey::new("infra", "gw");
    let table = crate::RouteTable::compile([(&key, &spec)]);
    assert_eq!(
        table.lookup("app.example.com", "/api").map(|r| r.path_type),
        Some(PathType::Exact)
    );
    assert_eq!(
        table.lookup("app.example.com", "/api/x").map(|r| r.path_type),
        Some(PathType::Prefix)
    );
}

#[test]
fn routes_record_the_generation_they_contain() {
    let mut w = World::new(gateway(HTTP80));
    w.http.push(http_route(
        "infra",
        "web",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
    ));
    // A route for another Gateway is neither contained nor given a status here.
    w.http.push(http_route(
        "infra",
        "elsewhere",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: other-gw}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
    ));
    let t = w.run();
    assert_eq!(t.routes.len(), 1);
    let config = t.config.as_ref().unwrap();
    assert_eq!(config.routes.len(), 1);
    assert_eq!(
        (config.routes[0].uid.as_str(), config.routes[0].generation),
        ("uid-web", 2)
    );
    assert_eq!(
        (config.gateway.to_string(), config.generation),
        ("infra/gw".to_owned(), 3)
    );
}

#[test]
fn filters_and_timeouts_become_lockstep_filters() {
    let mut w = World::new(gateway(HTTP80));
    w.http.push(http_route("infra", "filters", "2026-01-01T00:00:00Z", r#"
      parentRefs: [{name: gw}]
      hostnames: [app.example.com]
      rules:
      - matches: [{path: {value: /old}}]
        filters:
        - {type: RequestRedirect, requestRedirect: {scheme: https, port: 8443, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}
      - matches: [{path: {value: /api}, method: POST, headers: [{name: x-env, value: prod}], queryParams: [{name: v, type: RegularExpression, value: "^[0-9]+$"}]}]
        filters:
        - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: "1"}], remove: [x-b]}}
        - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-c, value: "2"}]}}
        - {type: URLRewrite, urlRewrite: {hostname: internal.example.com, path: {type: ReplaceFullPath, replaceFullPath: /v2}}}
        backendRefs: [{name: web, port: 8080}]
        timeouts: {request: 10s, backendRequest: 2s}
    "#));
    let config = w.run().config.unwrap();
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap();
    let paths = &spec.rules[0].paths;
    // Precedence: the POST+header+query /api entry and /old are distinct prefixes; both kept.
    let api = paths.iter().find(|p| p.path == "/api").unwrap();
    let m = api.matches.as_ref().unwrap();
    assert_eq!(m.method, Some(lockstep_crds::HttpMethod::Post));
    assert_eq!(
        (m.headers.len(), m.query_params[0].match_type),
        (1, lockstep_crds::MatchType::RegularExpression)
    );
    let f = api.filters.as_ref().unwrap();
    assert_eq!(f.request_headers.as_ref().unwrap().remove, ["x-b"]);
    assert_eq!(f.response_headers.as_ref().unwrap().add[0].name, "x-c");
    assert_eq!(
        f.rewrite
            .as_ref()
            .unwrap()
            .path
            .as_ref()
            .unwrap()
            .replace_full_path
            .as_deref(),
        Some("/v2")
    );
    assert_eq!(
        api.timeouts.as_ref().unwrap().backend_request.as_deref(),
        Some("2s")
    );
    let old = paths.iter().find(|p| p.path == "/old").unwrap();
    let r = old.filters.as_ref().unwrap().redirect.as_ref().unwrap();
    // HTTPRequestRedirectFilter statusCode: "+kubebuilder:default=302".
    assert_eq!(
        (r.status_code, r.port, r.scheme),
        (302, Some(8443), Some(lockstep_crds::Scheme::Https))
    );
    assert!(
        old.backends.is_empty() && old.backend.is_none(),
        "a redirect is answered by the proxy"
    );
}

#[test]
fn grpc_routes_match_service_and_method() {
    let mut w = World::new(gateway(HTTP80));
    w.grpc.push(yaml(r#"
      metadata: {name: echo, namespace: infra, uid: uid-echo, generation: 4, creationTimestamp: "2026-01-01T00:00:00Z"}
      spec:
        parentRefs: [{name: gw}]
        hostnames: [grpc.example.com]
        rules:
        - matches: [{method: {service: echo.Echo, method: Ping}, headers: [{name: x-v, value: "2"}]}]
          backendRefs: [{name: grpc, port: 9000}]
        - matches: [{method: {service: echo.Echo}}]
          backendRefs: [{name: grpc, port: 9000}]
    "#));
    w.grpc.push(yaml(
        r#"
      metadata: {name: method-only, namespace: infra, generation: 1}
      spec:
        parentRefs: [{name: gw}]
        rules: [{matches: [{method: {method: Ping}}], backendRefs: [{name: grpc, port: 9000}]}]
    "#,
    ));
    let t = w.run();
    let config = t.config.as_ref().unwrap();
    let entries: Vec<(&str, PathType)> = config.listeners[0]
        .entries
        .iter()
        .map(|e| (e.entry.path.as_str(), e.entry.path_type))
        .collect();
    // GRPCRoute matches: "Precedence MUST be given to the rule with the largest number
    // of: ... Characters in a matching service. Characters in a matching method. Header
    // matches.": the service+method entry comes first.
    assert_eq!(
        entries,
        [
            ("/echo.Echo/Ping", PathType::Exact),
            ("/echo.Echo", PathType::Prefix)
        ]
    );
    assert_eq!(
        config.listeners[0].entries[0].entry.matches.headers[0].name,
        "x-v"
    );
    assert_eq!(
        cond(parent(&t, "method-only"), ctype::ACCEPTED),
        Some(("False", reason::UNSUPPORTED_VALUE))
    );
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|r| {
        config.routes[r].kind == "GRPCRoute"
    });
    assert!(spec.is_ok(), "an h2c Service lowers: {spec:?}");
}

#[test]
fn grpc_route_backends_are_reached_over_h2c_whatever_the_service_port_says() {
    // GRPCRoute "provides a way to route gRPC requests", and gRPC runs over HTTP/2: without
    // TLS to the backend (BackendTLSPolicy, not supported) that is h2c with prior knowledge
    // (RFC 9113 §3.3), whether or not the Service port says `appProtocol: kubernetes.io/h2c`.
    // An HTTPRoute's backend keeps what its Service port says ("application developers can
    // specify the protocol using ServicePort appProtocol field", Backend Protocol guide).
    let mut w = World::new(gateway(HTTP80));
    w.services.push(service("infra", "plain", &[(9000, None)]));
    w.grpc.push(yaml(
        r#"
      metadata: {name: echo, namespace: infra, generation: 1}
      spec:
        parentRefs: [{name: gw}]
        hostnames: [grpc.example.com]
        rules:
        - matches: [{method: {service: echo.Plain}}]
          backendRefs: [{name: plain, port: 9000}]
        - matches: [{method: {service: echo.H2c}}]
          backendRefs: [{name: grpc, port: 9000}]
    "#,
    ));
    w.http.push(http_route(
        "infra",
        "web",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], hostnames: [web.example.com], rules: [{backendRefs: [{name: plain, port: 9000}]}]}",
    ));
    let t = w.run();
    let config = t.config.as_ref().unwrap();
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|r| {
        config.routes[r].kind == "GRPCRoute"
    })
    .expect("no gap: a plain Service port is reached over h2c too");
    let rows: Vec<(&str, &str, Option<lockstep_crds::AppProtocol>)> = spec
        .rules
        .iter()
        .flat_map(|r| r.paths.iter().map(move |p| (r, p)))
        .map(|(r, p)| {
            let service = p.backends[0].service.as_ref().unwrap();
            (r.host.as_str(), service.name.as_str(), service.app_protocol)
        })
        .collect();
    let h2c = Some(lockstep_crds::AppProtocol::H2c);
    assert_eq!(
        rows,
        [
            ("grpc.example.com", "plain", h2c),
            ("grpc.example.com", "grpc", h2c),
            ("web.example.com", "plain", None)
        ]
    );
    let table = crate::RouteTable::compile([(&crate::ObjectKey::new("infra", "gw-http"), &spec)]);
    let h2c_of = |host: &str, path: &str| match &table.lookup(host, path).unwrap().backends[0].0 {
        crate::BackendRef::Service { h2c, .. } => *h2c,
        other => panic!("{other}"),
    };
    assert!(h2c_of("grpc.example.com", "/echo.Plain/Ping"));
    assert!(!h2c_of("web.example.com", "/"));
}

#[test]
fn a_backend_of_another_namespace_is_lowered_only_where_a_reference_grant_allows_it() {
    // BackendObjectReference namespace: "when a namespace different than the local
    // namespace is specified, a ReferenceGrant object is required in the referent namespace
    // to allow that namespace's owner to accept the reference"; HTTPRouteRule backendRefs:
    // "500 status codes MUST be returned for requests that would have otherwise been routed
    // to an invalid backend".
    let grant: ReferenceGrant = yaml(
        "metadata: {name: allow, namespace: apps}\nspec: {from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}], to: [{group: \"\", kind: Service}]}",
    );
    let lowered = |grants: Vec<ReferenceGrant>| {
        let mut w = World::new(gateway(HTTP80));
        w.grants = grants;
        w.http.push(http_route(
            "infra",
            "web",
            "2026-01-01T00:00:00Z",
            "{parentRefs: [{name: gw}], hostnames: [app.example.com], rules: [{backendRefs: [{name: api, namespace: apps, port: 9000}, {name: web, port: 8080}]}]}",
        ));
        let t = w.run();
        let config = t.config.as_ref().unwrap();
        router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap()
    };
    let services = |spec: &lockstep_crds::RouterConfigSpec| -> Vec<(Option<lockstep_crds::ServiceBackend>, Option<u16>)> {
        spec.rules[0].paths[0]
            .backends
            .iter()
            .map(|b| (b.service.clone(), b.status))
            .collect()
    };
    let svc = |name: &str, namespace: Option<&str>, port| lockstep_crds::ServiceBackend {
        name: name.into(),
        namespace: namespace.map(Into::into),
        port,
        app_protocol: None,
        tls: None,
    };
    let granted = lowered(vec![grant]);
    assert_eq!(
        services(&granted),
        [
            (Some(svc("api", Some("apps"), 9000)), None),
            (Some(svc("web", None, 8080)), None)
        ],
        "the Gateway's own namespace is left implicit"
    );
    // Only a generated RouterConfig may name another namespace.
    assert_eq!(crate::validate_origin(&granted, true), Ok(()));
    assert_eq!(
        crate::validate_origin(&granted, false).unwrap_err().problems,
        [
            "spec.rules[0].paths[0].backends[0].service.namespace: a Service of another namespace is only for RouterConfigs generated from a Gateway (label lockstep.dev/generated-from), where a ReferenceGrant allows it"
        ]
    );
    let table = crate::RouteTable::compile([(&crate::ObjectKey::new("infra", "gw-http"), &granted)]);
    let route = table.lookup("app.example.com", "/").unwrap();
    assert_eq!(
        route
            .backends
            .iter()
            .map(|(b, _)| b.to_string())
            .collect::<Vec<_>>(),
        ["service apps/api:9000", "service infra/web:8080"]
    );
    // Without the grant that share is answered 500, as for any unresolved reference.
    assert_eq!(
        services(&lowered(Vec::new())),
        [(None, Some(500)), (Some(svc("web", None, 8080)), None)]
    );
}

#[test]
fn a_wildcard_host_is_lowered_as_a_suffix_match() {
    // HTTPRoute hostnames: "Hostnames that are prefixed with a wildcard label (`*.`) are
    // interpreted as a suffix match. That means that a match for `*.example.com` would match
    // both `test.example.com`, and `foo.test.example.com`, but not `example.com`."
    let mut w = World::new(gateway(
        "[{name: http, port: 80, protocol: HTTP, hostname: \"*.example.com\"}]",
    ));
    w.http.push(http_route(
        "infra",
        "web",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], hostnames: [\"*.example.com\", app.example.com], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
    ));
    let t = w.run();
    let config = t.config.as_ref().unwrap();
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap();
    let hosts: Vec<(&str, Option<lockstep_crds::WildcardMatch>)> = spec
        .rules
        .iter()
        .map(|r| (r.host.as_str(), r.wildcard_match))
        .collect();
    assert_eq!(
        hosts,
        [
            ("app.example.com", None),
            ("*.example.com", Some(lockstep_crds::WildcardMatch::Suffix))
        ]
    );
    let table = crate::RouteTable::compile([(&crate::ObjectKey::new("infra", "gw-http"), &spec)]);
    assert!(table.lookup("a.b.example.com", "/").is_some());
    assert!(table.lookup("example.com", "/").is_none());
}

#[test]
fn lowering_serves_any_host_and_names_each_gap() {
    let mut w = World::new(gateway(
        "[{name: http, port: 80, protocol: HTTP}, {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}]",
    ));
    w.services.push(service("infra", "plain-grpc", &[(9000, None)]));
    w.http.push(http_route(
        "infra",
        "anyhost",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw, sectionName: http}], rules: [{backendRefs: [{name: gone, port: 1}]}]}",
    ));
    w.http.push(http_route("infra", "wild", "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw, sectionName: http}], hostnames: [\"*.example.com\"], rules: [{backendRefs: [{name: web, port: 8080}]}]}"));
    w.http.push(http_route(
        "infra",
        "secure",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw, sectionName: https}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
    ));
    let t = w.run();
    let config = t.config.as_ref().unwrap();
    // Listener hostname: "When unspecified, all hostnames are matched"; a route without
    // hostnames takes the listener's: host "*", after the wildcard, which is more specific.
    let spec = router_config_spec(&config.listeners[0], "infra", "gw", false, &|_| false).unwrap();
    let hosts: Vec<&str> = spec.rules.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["*.example.com", "*"]);
    assert_eq!(spec.rules[1].paths[0].backends[0].status, Some(500));
    let table = crate::RouteTable::compile([(&crate::ObjectKey::new("infra", "gw-http"), &spec)]);
    let host_of = |host: &str| table.lookup(host, "/").map(|r| r.host.to_string());
    assert_eq!(host_of("a.example.com").as_deref(), Some("*.example.com"));
    assert_eq!(host_of("example.org").as_deref(), Some("*"));
    assert_eq!(host_of("10.0.0.1:8080").as_deref(), Some("*"));
    // An HTTPS listener without host name presents its certificate for any SNI.
    let https = config.listeners.iter().find(|l| l.name == "https").unwrap();
    assert_eq!(https.certificates.len(), 1);
    let spec = router_config_spec(https, "infra", "gw", false, &|_| false).unwrap();
    let rules: Vec<(&str, Option<&str>)> = spec
        .rules
        .iter()
        .map(|r| (r.host.as_str(), r.tls.as_ref().map(|t| t.secret_name.as_str())))
        .collect();
    assert_eq!(rules, [("*", Some("cert"))]);
    // More than one certificate is a gap.
    let mut two = https.clone();
    two.certificates.push(two.certificates[0].clone());
    two.certificates[1].name = "other".into();
    assert_eq!(
        router_config_spec(&two, "infra", "gw", false, &|_| false).unwrap_err(),
        [Gap::ListenerCertificate("infra/cert,infra/other".into())]
    );
}

/// A Gateway asking its HTTPS listeners to validate client certificates: an HTTPS listener
/// whose CA resolves is not served without the validation (the gap
/// `ClientCertificateValidation`, `Programmed=False Invalid` naming it) rather than served
/// letting every client through; one whose CA does not resolve is `Accepted=False
/// NoValidCACertificate`; the HTTP listener is served as before. `AllowInsecureFallback`
/// anywhere gives the Gateway `InsecureFrontendValidationMode=True ConfigurationChanged`.
#[test]
fn frontend_validation_is_never_served_without_it() {
    let mut w = World::new(yaml(
        "metadata: {name: gw, namespace: infra, generation: 3}\nspec:\n  gatewayClassName: lockstep\n  tls: {frontend: {default: {validation: {caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]}}, perPort: [{port: 8443, tls: {validation: {mode: AllowInsecureFallback, caCertificateRefs: [{group: \"\", kind: ConfigMap, name: gone}]}}}]}}\n  listeners: [{name: http, port: 80, protocol: HTTP}, {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}, {name: other, port: 8443, hostname: other.example.org, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}]",
    ));
    w.config_maps.push(ConfigMap {
        metadata: meta("infra", "ca"),
        data: Some(
            [(
                "ca.crt".to_owned(),
                String::from_utf8(material().0.to_vec()).unwrap(),
            )]
            .into(),
        ),
        ..Default::default()
    });
    w.http.push(http_route(
        "infra",
        "web",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
    ));
    let t = w.run();
    let cond = |l: &ListenerStatus, ty: &str| {
        let c = l.conditions.iter().find(|c| c.type_ == ty).unwrap();
        (c.status.clone(), c.reason.clone())
    };
    let https = t.listeners.iter().find(|l| l.name == "https").unwrap();
    assert_eq!(cond(https, ctype::ACCEPTED).0, "True");
    assert_eq!(cond(https, ctype::RESOLVED_REFS).0, "True");
    let other = t.listeners.iter().find(|l| l.name == "other").unwrap();
    assert_eq!(
        cond(other, ctype::ACCEPTED),
        ("False".into(), reason::NO_VALID_CA_CERTIFICATE.into())
    );
    assert_eq!(
        cond(other, ctype::RESOLVED_REFS),
        ("False".into(), reason::INVALID_CA_CERTIFICATE_REF.into())
    );
    let insecure = t
        .gateway_conditions
        .iter()
        .find(|c| c.type_ == ctype::INSECURE_FRONTEND_VALIDATION_MODE)
        .expect("InsecureFrontendValidationMode");
    assert_eq!(
        (insecure.status.as_str(), insecure.reason.as_str()),
        ("True", reason::CONFIGURATION_CHANGED)
    );

    let config = t.config.as_ref().unwrap();
    let served = |name: &str| config.listeners.iter().find(|l| l.name == name).unwrap();
    assert!(config.listeners.iter().all(|l| l.name != "other"));
    assert_eq!(
        router_config_spec(served("https"), "infra", "gw", false, &|_| false).unwrap_err(),
        [Gap::ClientCertificateValidation]
    );
    assert!(router_config_spec(served("http"), "infra", "gw", false, &|_| false).is_ok());
}

#[test]
fn programmed_and_ready_follow_the_barrier() {
    // Gateway API defines Programmed as "assumed to be ready soon"; lockstep sets it True
    // only when every live replica serves the generation.
    let rows: &[(bool, Option<FleetProgress>, &str, &str)] = &[
        (
            false,
            Some(FleetProgress::AllServe { replicas: 3 }),
            "False",
            reason::INVALID,
        ),
        (true, None, "False", reason::PENDING),
        (true, Some(FleetProgress::NoReplicas), "False", reason::PENDING),
        (
            true,
            Some(FleetProgress::Behind {
                synced: 2,
                replicas: 3,
            }),
            "False",
            reason::PENDING,
        ),
        (
            true,
            Some(FleetProgress::Rejected {
                rejected: 1,
                replicas: 3,
            }),
            "False",
            reason::PENDING,
        ),
        (
            true,
            Some(FleetProgress::AllServe { replicas: 3 }),
            "True",
            reason::PROGRAMMED,
        ),
    ];
    for (accepted, fleet, status, why) in rows {
        let c = gateway_programmed(*accepted, *fleet, 5, now());
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            (*status, *why, Some(5)),
            "{fleet:?}"
        );
    }
    let accepted = [super::status::condition(
        ctype::ACCEPTED,
        true,
        reason::ACCEPTED,
        "",
        2,
        now(),
    )];
    let not_accepted = [super::status::condition(
        ctype::ACCEPTED,
        false,
        reason::NO_MATCHING_PARENT,
        "",
        2,
        now(),
    )];
    let ready_rows: &[(&[_], Option<FleetProgress>, &str, &str)] = &[
        (
            &not_accepted,
            Some(FleetProgress::AllServe { replicas: 3 }),
            "False",
            "NotAccepted",
        ),
        (&accepted, Some(FleetProgress::NoReplicas), "False", "NoReplicas"),
        (
            &accepted,
            Some(FleetProgress::Rejected {
                rejected: 1,
                replicas: 3,
            }),
            "False",
            "Rejected",
        ),
        (
            &accepted,
            Some(FleetProgress::Behind {
                synced: 1,
                replicas: 3,
            }),
            "False",
            "RolloutInProgress",
        ),
        (
            &accepted,
            Some(FleetProgress::AllServe { replicas: 3 }),
            "True",
            "AllReplicasSynced",
        ),
    ];
    for (conds, fleet, status, why) in ready_rows {
        let c = route_ready(conds, *fleet, 2, now());
        assert_eq!(
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_str(),
                c.observed_generation
            ),
            (ctype::LOCKSTEP_READY, *status, *why, Some(2)),
            "{fleet:?}"
        );
    }
}

mod serving {
    //! Serving with an existing fleet (`serve`): the plan per listener and the barrier's
    //! judgement of the generated RouterConfigs turned into Programmed and lockstep.dev/Ready.

    use std::collections::BTreeMap;

    use lockstep_crds::RouterConfig;
    use serde_json::json;

    use super::*;
    use crate::gateway::serve::{
        self, ListenerPlan, Outcome, Serving, fleet_of, generated_name, judge, plan, routes_annotation,
    };

    const ONE_HOST: &str = "[{name: web, port: 80, protocol: HTTP, hostname: app.example.com}]";
    const WEB: &str = "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: web, port: 8080}]}]}";
    const MISSING: &str = "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: gone, port: 8080}]}]}";

    #[test]
    fn the_fleet_is_named_by_an_annotation() {
        type Row<'a> = (Option<&'a str>, Option<Result<&'a str, ()>>);
        let rows: &[Row] = &[
            (None, None),
            (Some("edge"), Some(Ok("edge"))),
            (Some("edge-2"), Some(Ok("edge-2"))),
            (Some(""), Some(Err(()))),
            (Some("Edge"), Some(Err(()))),
            (Some("-edge"), Some(Err(()))),
            (Some("edge.example"), Some(Err(()))),
        ];
        for (value, want) in rows {
            let mut meta = meta("infra", "gw");
            if let Some(v) = value {
                meta.annotations = Some(BTreeMap::from([(
                    serve::FLEET_ANNOTATION.to_owned(),
                    (*v).to_owned(),
                )]));
            }
            let got = fleet_of(&meta).map(|r| r.map_err(|_| ()));
            assert_eq!(got, want.map(|r| r.map(str::to_owned)), "{value:?}");
        }
    }

    #[test]
    fn generated_names_are_deterministic_distinct_and_valid() {
        assert_eq!(generated_name("gw", "web"), generated_name("gw", "web"));
        assert!(generated_name("gw", "web").starts_with("gw-web-"));
        // The dash alone would join these alike.
        assert_ne!(generated_name("a-b", "c"), generated_name("a", "b-c"));
        let long = generated_name(&"g".repeat(253), &format!("{}.x", "l".repeat(200)));
        assert!(long.len() <= 253, "{}", long.len());
        let label =
            regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap();
        assert!(label.is_match(&long), "{long}");
        let dotted = generated_name(
            &"g".repeat(121),
            &format!("{}.{}", "l".repeat(121), "m".repeat(100)),
        );
        assert!(label.is_match(&dotted) && dotted.len() <= 253, "{dotted}");
    }

    fn planned(listeners: &str, routes: &[(&str, &str)]) -> (Translation, Vec<ListenerPlan>) {
        planned_in(World::new(gateway(listeners)), routes)
    }

    fn planned_in(mut w: World, routes: &[(&str, &str)]) -> (Translation, Vec<ListenerPlan>) {
        for (name, spec) in routes {
            w.http
                .push(http_route("infra", name, "2026-01-01T00:00:00Z", spec));
        }
        let t = w.run();
        let p = plan(t.config.as_ref().unwrap(), "edge");
        (t, p)
    }

    /// Listeners of one port share the fleet's table: each keeps only the entries whose host
    /// no more specific listener covers, and a listener a less specific one covers ends its
    /// host name with a 404. Gateway `spec.listeners`: "if Listeners are defined for
    /// "foo.example.com" and "*.example.com", a request to "foo.example.com" SHOULD only be
    /// routed using routes attached to the "foo.example.com" Listener".
    #[test]
    fn listeners_of_one_port_are_kept_apart_by_host_name() {
        let port80 = "[{name: any, port: 80, protocol: HTTP}, \
                      {name: wild, port: 80, protocol: HTTP, hostname: \"*.example.com\"}, \
                      {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}]";
        let (_, plans) = planned(
            port80,
            &[
                (
                    "to-wild",
                    "{parentRefs: [{name: gw, sectionName: wild}], hostnames: [foo.example.com, x.example.com], rules: [{matches: [{path: {value: /w}}], backendRefs: [{name: web, port: 8080}]}]}",
                ),
                (
                    "to-foo",
                    "{parentRefs: [{name: gw, sectionName: foo}], rules: [{matches: [{path: {value: /api}}], backendRefs: [{name: web2, port: 8080}]}]}",
                ),
                (
                    "to-any",
                    "{parentRefs: [{name: gw, sectionName: any}], hostnames: [foo.example.com, other.org], rules: [{matches: [{path: {value: /a}}], backendRefs: [{name: web, port: 8080}]}]}",
                ),
            ],
        );
        let served = |listener: &str| -> (Vec<String>, Vec<(String, Vec<String>)>) {
            let p = plans.iter().find(|p| p.listener == listener).unwrap();
            let Outcome::Publish(spec) = &p.outcome else {
                panic!("{listener}: {:?}", p.outcome)
            };
            let rules = spec
                .rules
                .iter()
                .map(|r| {
                    let paths = r
                        .paths
                        .iter()
                        .map(|p| match p.backends.first().and_then(|b| b.status) {
                            Some(status) => format!("{} {status}", p.path),
                            None => p.path.clone(),
                        })
                        .collect();
                    (r.host.clone(), paths)
                })
                .collect();
            (p.routes.keys().cloned().collect(), rules)
        };
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let rule = |host: &str, paths: &[&str]| (host.to_owned(), v(paths));
        assert_eq!(
            served("any"),
            (v(&["uid-to-any"]), vec![rule("other.org", &["/a"])]),
            "foo.example.com is the foo listener's"
        );
        assert_eq!(
            served("wild"),
            (
                v(&["uid-to-wild"]),
                vec![rule("x.example.com", &["/w"]), rule("*.example.com", &["/ 404"])]
            )
        );
        assert_eq!(
            served("foo"),
            (
                v(&["uid-to-foo"]),
                vec![rule("foo.example.com", &["/api", "/ 404"])]
            )
        );
    }

    /// An HTTP and an HTTPS listener with overlapping host names (the conformance suite's
    /// GatewayModifyListeners) are both published: their rules answer different connections.
    #[test]
    fn an_http_and_an_https_listener_may_overlap() {
        let listeners = "[{name: https, port: 443, protocol: HTTPS, hostname: secure.test.com, tls: {certificateRefs: [{name: cert}]}}, \
                         {name: http, port: 80, protocol: HTTP}]";
        let (_, plans) = planned(listeners, &[("web", WEB)]);
        let kinds: Vec<(&str, bool)> = plans
            .iter()
            .map(|p| (p.listener.as_str(), matches!(p.outcome, Outcome::Publish(_))))
            .collect();
        assert_eq!(kinds, [("https", true), ("http", true)], "{plans:?}");
    }

    /// An HTTPS listener presents its certificate for every name it accepts, also those no
    /// route names: `unknown-example.org` on a listener without host name gets the certificate
    /// and a 404 (the conformance suite's HTTPRouteHTTPSListener), not a failed handshake.
    #[test]
    fn an_https_listener_answers_every_name_it_accepts() {
        let listeners = "[{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}]";
        let (_, plans) = planned(
            listeners,
            &[(
                "web",
                &WEB.replacen("rules:", "hostnames: [example.org], rules:", 1),
            )],
        );
        let Outcome::Publish(spec) = &plans[0].outcome else {
            panic!("{:?}", plans[0].outcome)
        };
        // (host, Secret, status of each path: None for a route's backend)
        type Rule<'a> = (&'a str, Option<&'a str>, Vec<Option<u16>>);
        let rules: Vec<Rule> = spec
            .rules
            .iter()
            .map(|r| {
                (
                    r.host.as_str(),
                    r.tls.as_ref().map(|t| t.secret_name.as_str()),
                    r.paths
                        .iter()
                        .map(|p| p.backends.first().and_then(|b| b.status))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            rules,
            [
                ("example.org", Some("cert"), vec![None]),
                ("*", Some("cert"), vec![Some(404)])
            ]
        );
    }

    #[test]
    fn each_served_listener_is_published_or_names_its_gaps() {
        let with_host =
            |host: &str, spec: &str| spec.replacen("rules:", &format!("hostnames: [{host}], rules:"), 1);
        let two_ports = "[{name: a, port: 80, protocol: HTTP, hostname: app.example.com}, \
                         {name: b, port: 8080, protocol: HTTP, hostname: \"*.example.com\"}, \
                         {name: c, port: 8081, protocol: HTTP, hostname: other.example.org}]";
        type Row<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
        let rows: Vec<Row> = vec![
            // (listeners, route spec, (listener, outcome kind))
            (ONE_HOST, WEB.into(), vec![("web", "publish")]),
            // HTTPRoute backendRefs: "When a HTTPBackendRef is invalid, 500 status codes MUST
            // be returned for requests that would have otherwise been routed to an invalid
            // backend": a status backend, so the listener is published.
            (ONE_HOST, MISSING.into(), vec![("web", "publish")]),
            (HTTP80, WEB.into(), vec![("http", "publish")]),
            (
                two_ports,
                with_host("app.example.com", WEB),
                vec![
                    ("a", "gaps:OverlappingListener(\"b\")"),
                    ("b", "gaps:OverlappingListener(\"a\")"),
                    ("c", "empty"),
                ],
            ),
        ];
        for (listeners, spec, want) in rows {
            let (_, plans) = planned(listeners, &[("web", &spec)]);
            let got: Vec<(String, String)> = plans
                .iter()
                .map(|p| {
                    let kind = match &p.outcome {
                        Outcome::Publish(s) => {
                            assert_eq!(s.fleet, "edge");
                            "publish".to_owned()
                        }
                        Outcome::Gaps(g) => format!(
                            "gaps:{}",
                            g.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(",")
                        ),
                        Outcome::Empty => "empty".into(),
                    };
                    (p.listener.clone(), kind)
                })
                .collect();
            let want: Vec<(String, String)> = want.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect();
            assert_eq!(got, want, "{listeners} {spec}");
        }
        // The plan records the routes its listener's entries come from.
        let (_, plans) = planned(ONE_HOST, &[("web", WEB)]);
        assert_eq!(plans[0].routes, BTreeMap::from([("uid-web".to_owned(), 2)]));
        assert_eq!(plans[0].name, generated_name("gw", "web"));
    }

    /// A generated RouterConfig as the operator would read it: its generation, the
    /// generations it records, and its Ready (status, reason, observedGeneration); each of its
    /// 3 replicas reports its generation with the digest of its spec (it names no Secret).
    fn observed(
        generation: i64,
        gateway_generation: i64,
        route_generation: i64,
        ready: Option<(&str, &str, i64)>,
        accepted: bool,
    ) -> RouterConfig {
        let mut rc =
            observed_without_reports(generation, gateway_generation, route_generation, ready, accepted);
        let digest = crate::config_digest(&rc.spec, &BTreeMap::new());
        rc.status.as_mut().unwrap().replica_status = reports(generation, &[digest.as_str(); 3]);
        rc
    }

    /// Replica reports at `generation`, one per digest.
    fn reports(generation: i64, digests: &[&str]) -> Vec<lockstep_crds::ReplicaStatus> {
        digests
            .iter()
            .enumerate()
            .map(|(i, d)| lockstep_crds::ReplicaStatus {
                name: format!("edge/proxy-{i}"),
                observed_generation: generation,
                config_digest: (*d).to_owned(),
                ..Default::default()
            })
            .collect()
    }

    fn observed_without_reports(
        generation: i64,
        gateway_generation: i64,
        route_generation: i64,
        ready: Option<(&str, &str, i64)>,
        accepted: bool,
    ) -> RouterConfig {
        let mut conditions = vec![
            json!({"type": "Accepted", "status": if accepted {"True"} else {"False"},
            "reason": if accepted {"Accepted"} else {"Conflict"}, "message": "host taken",
            "observedGeneration": generation, "lastTransitionTime": "2026-06-01T00:00:00Z"}),
        ];
        if let Some((status, reason, at)) = ready {
            conditions.push(
                json!({"type": "Ready", "status": status, "reason": reason, "message": "",
                "observedGeneration": at, "lastTransitionTime": "2026-06-01T00:00:00Z"}),
            );
        }
        serde_json::from_value(json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": generated_name("gw", "web"), "namespace": "infra", "generation": generation,
                "annotations": {
                    serve::GATEWAY_GENERATION_ANNOTATION: gateway_generation.to_string(),
                    serve::ROUTES_ANNOTATION: routes_annotation(&BTreeMap::from([("uid-web".to_owned(), route_generation)])),
                }},
            "spec": {"fleet": "edge", "rules": [{"host": "app.example.com", "paths": [{"path": "/", "backend": {"url": "http://127.0.0.1:1"}}]}]},
            "status": {"conditions": conditions, "replicas": 3, "syncedReplicas": 2}
        }))
        .unwrap()
    }

    fn programmed_of(
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) -> (String, String) {
        let c = conditions.iter().find(|c| c.type_ == ctype::PROGRAMMED).unwrap();
        assert_eq!(c.observed_generation, Some(3), "{c:?}");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn programmed_and_ready_come_from_the_generated_router_config() {
        // The Gateway is at generation 3, the route at 2 (see `gateway` and `http_route`).
        let ok = |s: &str, r: &str| (s.to_owned(), r.to_owned());
        type Row<'a> = (&'a str, Option<RouterConfig>, (String, String), (String, String));
        let rows: Vec<Row> = vec![
            (
                "not applied yet",
                None,
                ok("False", "Pending"),
                ok("False", "RolloutInProgress"),
            ),
            (
                "not judged at its generation",
                Some(observed(5, 3, 2, Some(("True", "AllReplicasSynced", 4)), true)),
                ok("False", "Pending"),
                ok("False", "RolloutInProgress"),
            ),
            (
                "rolling",
                Some(observed(5, 3, 2, Some(("False", "RolloutInProgress", 5)), true)),
                ok("False", "Pending"),
                ok("False", "RolloutInProgress"),
            ),
            (
                "no replicas",
                Some(observed(5, 3, 2, Some(("False", "NoReplicas", 5)), true)),
                ok("False", "Pending"),
                ok("False", "NoReplicas"),
            ),
            (
                "every replica serves it",
                Some(observed(5, 3, 2, Some(("True", "AllReplicasSynced", 5)), true)),
                ok("True", "Programmed"),
                ok("True", "AllReplicasSynced"),
            ),
            (
                "Ready, but generated from an older Gateway generation",
                Some(observed(5, 2, 2, Some(("True", "AllReplicasSynced", 5)), true)),
                ok("False", "Pending"),
                ok("True", "AllReplicasSynced"),
            ),
            (
                "Ready, but recording an older route generation",
                Some(observed(5, 3, 1, Some(("True", "AllReplicasSynced", 5)), true)),
                ok("True", "Programmed"),
                ok("False", "RolloutInProgress"),
            ),
            (
                "not accepted by the operator",
                Some(observed(5, 3, 2, Some(("False", "NotAccepted", 5)), false)),
                ok("False", "Pending"),
                ok("False", "ConfigNotAccepted"),
            ),
        ];
        let fleet = Some(Ok("edge".to_owned()));
        for (what, rc, gateway_want, ready_want) in rows {
            let (mut t, plans) = planned(ONE_HOST, &[("web", WEB)]);
            let rc2 = rc.clone();
            judge(&mut t, fleet.as_ref(), &plans, &move |_| rc2.clone(), now());
            assert_eq!(
                programmed_of(&t.gateway_conditions),
                gateway_want,
                "{what}: Gateway"
            );
            assert_eq!(
                programmed_of(&t.listeners[0].conditions),
                gateway_want,
                "{what}: listener"
            );
            let p = parent(&t, "web");
            let ready = p
                .conditions
                .iter()
                .find(|c| c.type_ == ctype::LOCKSTEP_READY)
                .unwrap();
            assert_eq!(ready.observed_generation, Some(2), "{what}");
            assert_eq!(
                (ready.status.clone(), ready.reason.clone()),
                ready_want,
                "{what}: route"
            );
        }
    }

    #[test]
    fn without_a_fleet_or_with_gaps_nothing_is_ready() {
        let ready_of = |t: &Translation, route: &str| {
            let p = parent(t, route);
            let c = p
                .conditions
                .iter()
                .find(|c| c.type_ == ctype::LOCKSTEP_READY)
                .unwrap();
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };
        // No fleet named: today's Pending, and the message says how to name one.
        let (mut t, _) = planned(ONE_HOST, &[("web", WEB)]);
        judge(&mut t, None, &[], &|_| None, now());
        assert_eq!(
            programmed_of(&t.gateway_conditions),
            ("False".into(), "Pending".into())
        );
        assert_eq!(
            programmed_of(&t.listeners[0].conditions),
            ("False".into(), "Pending".into())
        );
        let gw_message = &t
            .gateway_conditions
            .iter()
            .find(|c| c.type_ == ctype::PROGRAMMED)
            .unwrap()
            .message;
        assert!(gw_message.contains("no fleet is named"), "{gw_message}");
        assert_eq!(ready_of(&t, "web").1, "NoFleet");

        // A listener with gaps (here: two listeners whose host names overlap) is not
        // published: never Ready, whatever the RouterConfig of the listener says.
        let overlapping = "[{name: web, port: 80, protocol: HTTP, hostname: app.example.com}, \
                           {name: wild, port: 8080, protocol: HTTP, hostname: \"*.example.com\"}]";
        let (mut t, plans) = planned(overlapping, &[("web", WEB)]);
        let stale = observed(5, 3, 2, Some(("True", "AllReplicasSynced", 5)), true);
        judge(
            &mut t,
            Some(&Ok("edge".into())),
            &plans,
            &move |_| Some(stale.clone()),
            now(),
        );
        let (status, why, message) = ready_of(&t, "web");
        assert_eq!((status.as_str(), why.as_str()), ("False", "Unservable"));
        assert!(message.contains("overlaps"), "{message}");
        let l = t.listeners[0]
            .conditions
            .iter()
            .find(|c| c.type_ == ctype::PROGRAMMED)
            .unwrap();
        assert_eq!((l.status.as_str(), l.reason.as_str()), ("False", reason::INVALID));
        assert!(l.message.contains("overlaps"), "{}", l.message);

        // A listener without routes is programmed: there is nothing to serve.
        let (mut t, plans) = planned(ONE_HOST, &[]);
        assert_eq!(plans[0].outcome, Outcome::Empty);
        judge(&mut t, Some(&Ok("edge".into())), &plans, &|_| None, now());
        assert_eq!(
            programmed_of(&t.gateway_conditions),
            ("True".into(), "Programmed".into())
        );
        let _ = Serving::Empty;
    }

    const HTTPS_HOST: &str = "[{name: web, port: 443, protocol: HTTPS, hostname: app.example.com, \
                              tls: {certificateRefs: [{name: cert}]}}]";

    fn listener_condition(t: &Translation, listener: &str, type_: &str) -> (String, String) {
        let l = t.listeners.iter().find(|l| l.name == listener).unwrap();
        let c = l.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_certificate_change_holds_programmed_and_ready_until_every_replica_reports_it() {
        // A Secret's new data changes no generation: the RouterConfig controller's Ready=True
        // may have been judged on the old material. The replicas' digests tell.
        let (t, plans) = planned(HTTPS_HOST, &[("web", WEB)]);
        let Outcome::Publish(spec) = &plans[0].outcome else {
            panic!("{:?}", plans[0].outcome)
        };
        let digest = |cert: &[u8], key: &[u8]| {
            let tls = BTreeMap::from([("cert".to_owned(), crate::tls_material_hash(cert, key))]);
            crate::config_digest(spec, &tls)
        };
        // testutil's Secret holds `material()`: the material as the translation reads it now.
        let (crt, key) = crate::gateway::testutil::material();
        let (new, old) = (digest(crt, key), digest(b"old cert", b"old key"));
        let f = |s: &str, r: &str| (s.to_owned(), r.to_owned());
        let rows = [
            (
                "Ready judged before the change",
                [&old, &old, &old],
                f("False", "Pending"),
                f("False", "RolloutInProgress"),
            ),
            (
                "one replica still presents the old certificate",
                [&new, &new, &old],
                f("False", "Pending"),
                f("False", "RolloutInProgress"),
            ),
            (
                "every replica presents the new certificate",
                [&new, &new, &new],
                f("True", "Programmed"),
                f("True", "AllReplicasSynced"),
            ),
        ];
        let fleet = Some(Ok("edge".to_owned()));
        for (what, digests, gateway_want, ready_want) in rows {
            let mut rc = observed_without_reports(5, 3, 2, Some(("True", "AllReplicasSynced", 5)), true);
            rc.spec = spec.clone();
            rc.status.as_mut().unwrap().replica_status =
                reports(5, &digests.iter().map(|d| d.as_str()).collect::<Vec<_>>());
            let mut t = t.clone();
            judge(&mut t, fleet.as_ref(), &plans, &move |_| Some(rc.clone()), now());
            assert_eq!(
                programmed_of(&t.gateway_conditions),
                gateway_want,
                "{what}: Gateway"
            );
            assert_eq!(
                programmed_of(&t.listeners[0].conditions),
                gateway_want,
                "{what}: listener"
            );
            let ready = parent(&t, "web")
                .conditions
                .iter()
                .find(|c| c.type_ == ctype::LOCKSTEP_READY)
                .unwrap();
            assert_eq!(
                (ready.status.clone(), ready.reason.clone()),
                ready_want,
                "{what}: route"
            );
        }
    }

    #[test]
    fn a_router_config_of_an_earlier_lowering_does_not_serve_the_route() {
        // A ReferenceGrant or a Service appearing changes what a listener lowers to (a 500
        // backend becomes the Service) without changing the route's or the Gateway's
        // generation: the RouterConfig judged Ready on the previous lowering serves the same
        // recorded generations and says nothing of the new spec. Seen in e2e as a route
        // lockstep.dev/Ready=True while a replica could not serve the granted backend.
        let (t, plans) = planned(ONE_HOST, &[("web", WEB)]);
        let Outcome::Publish(spec) = &plans[0].outcome else {
            panic!("{:?}", plans[0].outcome)
        };
        let f = |s: &str, r: &str| (s.to_owned(), r.to_owned());
        let earlier = {
            let mut earlier = spec.clone();
            earlier.rules[0].host = "earlier.example.com".into();
            earlier
        };
        let rows = [
            (
                "generated from the plan's spec",
                Some(spec.clone()),
                f("True", "Programmed"),
                f("True", "AllReplicasSynced"),
            ),
            (
                "generated from an earlier lowering",
                Some(earlier),
                f("False", "Pending"),
                f("False", "RolloutInProgress"),
            ),
            // Generated before the annotation existed: judged as before.
            (
                "no digest recorded",
                None,
                f("True", "Programmed"),
                f("True", "AllReplicasSynced"),
            ),
        ];
        let fleet = Some(Ok("edge".to_owned()));
        for (what, generated_from, gateway_want, ready_want) in rows {
            let mut rc = observed_without_reports(5, 3, 2, Some(("True", "AllReplicasSynced", 5)), true);
            rc.spec = spec.clone();
            if let Some(from) = &generated_from {
                rc.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(serve::SPEC_DIGEST_ANNOTATION.to_owned(), serve::spec_digest(from));
            }
            let digest = crate::config_digest(&rc.spec, &BTreeMap::new());
            rc.status.as_mut().unwrap().replica_status = reports(5, &[digest.as_str(); 3]);
            let mut t = t.clone();
            judge(&mut t, fleet.as_ref(), &plans, &move |_| Some(rc.clone()), now());
            assert_eq!(
                programmed_of(&t.listeners[0].conditions),
                gateway_want,
                "{what}: listener"
            );
            let ready = parent(&t, "web")
                .conditions
                .iter()
                .find(|c| c.type_ == ctype::LOCKSTEP_READY)
                .unwrap();
            assert_eq!(
                (ready.status.clone(), ready.reason.clone()),
                ready_want,
                "{what}: route"
            );
        }
    }

    #[test]
    fn a_certificate_of_another_namespace_is_served_from_a_copy_when_granted() {
        let listeners = "[{name: web, port: 443, protocol: HTTPS, hostname: app.example.com, \
                         tls: {certificateRefs: [{name: cert, namespace: certs}]}}, \
                         {name: plain, port: 80, protocol: HTTP, hostname: plain.example.com}]";
        let world = |grant_it: bool, secret: bool| {
            let mut w = World::new(gateway(listeners));
            if grant_it {
                w.grants
                    .push(grant("certs", "Gateway", "infra", "", "Secret", None));
            }
            if secret {
                w.secrets.push(tls_secret("certs", "cert"));
            }
            w
        };

        // Granted: published, naming a copy in the Gateway's namespace, with the source's material.
        let (t, plans) = planned_in(world(true, true), &[("web", WEB)]);
        assert_eq!(
            listener_condition(&t, "web", ctype::RESOLVED_REFS),
            ("True".to_owned(), "ResolvedRefs".to_owned())
        );
        let web = plans.iter().find(|p| p.listener == "web").unwrap();
        let Outcome::Publish(spec) = &web.outcome else {
            panic!("{:?}", web.outcome)
        };
        let source = &t.config.as_ref().unwrap().listeners[0].certificates[0];
        assert_eq!(
            (source.namespace.as_str(), source.name.as_str()),
            ("certs", "cert")
        );
        let copy = serve::certificate_copy_name("gw", &source.namespace, &source.name);
        assert!(copy.starts_with("gw-certs.cert-"), "{copy}");
        assert_eq!(spec.rules[0].tls.as_ref().unwrap().secret_name, copy);
        assert_eq!(
            web.copies,
            [serve::CertificateCopy {
                source: source.clone(),
                name: copy.clone()
            }]
        );
        assert_eq!(
            web.tls,
            BTreeMap::from([(copy, {
                let (crt, key) = crate::gateway::testutil::material();
                crate::tls_material_hash(crt, key)
            })])
        );
        let plain = plans.iter().find(|p| p.listener == "plain").unwrap();
        assert!(matches!(plain.outcome, Outcome::Publish(_)) && plain.copies.is_empty());

        // Not granted, or granted but missing: the listener is not served (no plan, no copy),
        // the other listener is.
        for (grant_it, secret, why) in [
            (false, true, reason::REF_NOT_PERMITTED),
            (true, false, reason::INVALID_CERTIFICATE_REF),
        ] {
            let (t, plans) = planned_in(world(grant_it, secret), &[("web", WEB)]);
            assert_eq!(
                listener_condition(&t, "web", ctype::RESOLVED_REFS),
                ("False".to_owned(), why.to_owned())
            );
            assert_eq!(
                listener_condition(&t, "web", ctype::PROGRAMMED),
                ("False".to_owned(), reason::INVALID.to_owned())
            );
            let names: Vec<&str> = plans.iter().map(|p| p.listener.as_str()).collect();
            assert_eq!(names, ["plain"], "{why}");
            assert!(matches!(plans[0].outcome, Outcome::Publish(_)), "{why}");
        }
    }

    #[test]
    fn an_unresolved_backend_is_answered_500_and_its_route_is_never_ready() {
        // HTTPRoute backendRefs: "When a HTTPBackendRef is invalid, 500 status codes MUST be
        // returned for requests that would have otherwise been routed to an invalid
        // backend." The listener is published with a status backend in its place, so the
        // other routes of the listener are served; the route itself has ResolvedRefs=False and
        // is never lockstep.dev/Ready: a share of its requests fails, which is not what its
        // author asked for.
        const MISSING_AT: &str = "{parentRefs: [{name: gw}], rules: [{matches: [{path: {type: PathPrefix, value: /missing}}], \
                                  backendRefs: [{name: web, port: 8080, weight: 3}, {name: gone, port: 8080}]}]}";
        let (mut t, plans) = planned(ONE_HOST, &[("web", WEB), ("missing", MISSING_AT)]);
        assert_eq!(
            cond(parent(&t, "missing"), ctype::RESOLVED_REFS),
            Some(("False", reason::BACKEND_NOT_FOUND))
        );
        let Outcome::Publish(spec) = &plans[0].outcome else {
            panic!("published: {:?}", plans[0].outcome)
        };
        let missing = spec.rules[0].paths.iter().find(|p| p.path == "/missing").unwrap();
        let backends: Vec<(Option<&str>, Option<u16>, i32)> = missing
            .backends
            .iter()
            .map(|b| (b.service.as_ref().map(|s| s.name.as_str()), b.status, b.weight))
            .collect();
        assert_eq!(backends, [(Some("web"), None, 3), (None, Some(500), 1)]);

        let mut rc = observed(5, 3, 2, Some(("True", "AllReplicasSynced", 5)), true);
        rc.metadata.annotations.as_mut().unwrap().insert(
            serve::ROUTES_ANNOTATION.into(),
            routes_annotation(&plans[0].routes),
        );
        judge(
            &mut t,
            Some(&Ok("edge".into())),
            &plans,
            &move |_| Some(rc.clone()),
            now(),
        );
        assert_eq!(
            programmed_of(&t.listeners[0].conditions),
            ("True".into(), "Programmed".into())
        );
        let ready = |route: &str| {
            let c = parent(&t, route)
                .conditions
                .iter()
                .find(|c| c.type_ == ctype::LOCKSTEP_READY)
                .unwrap()
                .clone();
            (c.status, c.reason, c.message)
        };
        assert_eq!(ready("web").0, "True", "{:?}", ready("web"));
        let (status, why, message) = ready("missing");
        assert_eq!((status.as_str(), why.as_str()), ("False", "UnresolvedRefs"));
        assert!(message.contains("answered 500"), "{message}");
    }
}

mod route_promise {
    //! The route-level promise is the RouterConfig promise carried over: for random histories
    //! of route edits, Gateway (listener) edits, publishes of the generated RouterConfigs and
    //! the barrier's judgements of them (in any order, so the operator's cache may hold a
    //! RouterConfig generated from older objects, or one judged at an older generation),
    //! `serve::judge` giving a route parent `lockstep.dev/Ready=True` at route generation g
    //! implies that every listener the route attaches to has a generated RouterConfig that
    //! records the route at g and that the RouterConfig barrier judged `Ready=True` at its
    //! current generation. The listeners a route attaches to are worked out here from the
    //! history (sectionNames against the listeners present), not from the plan.
    //!
    //! What it does not show: that `Ready=True` of a RouterConfig means every replica serves
    //! it (the model's and the barrier's tests), nor the operator's watches and writes.

    use std::collections::{BTreeMap, BTreeSet};

    use lockstep_crds::{RouterConfig, RouterConfigSpec};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::gateway::serve::{self, Outcome, generated_name, judge, plan, recorded_routes};

    const LISTENERS: usize = 3;
    const ROUTES: usize = 3;

    #[derive(Debug, Clone)]
    enum Step {
        /// Route r now names these listeners by sectionName (none: the whole Gateway) and
        /// this backend.
        EditRoute(usize, BTreeSet<usize>, bool),
        /// The Gateway now has these listeners.
        EditGateway(BTreeSet<usize>),
        /// The operator applies the plan: changed specs get a new RouterConfig generation,
        /// every applied one records the generations it was generated from; RouterConfigs of
        /// listeners gone or without routes are deleted.
        Publish,
        /// The barrier judges the i-th stored RouterConfig at its current generation: every
        /// replica serves it (Ready=True), or not yet.
        Judge(usize, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        let sections = proptest::collection::btree_set(0..LISTENERS, 0..=LISTENERS);
        // A Gateway has at least one listener (the CRD says so).
        let listeners = proptest::collection::btree_set(0..LISTENERS, 1..=LISTENERS);
        prop_oneof![
            (0..ROUTES, sections, any::<bool>()).prop_map(|(r, l, b)| Step::EditRoute(r, l, b)),
            listeners.prop_map(Step::EditGateway),
            Just(Step::Publish),
            Just(Step::Publish),
            (0..LISTENERS, any::<bool>()).prop_map(|(i, ready)| Step::Judge(i, ready)),
            (0..LISTENERS, any::<bool>()).prop_map(|(i, ready)| Step::Judge(i, ready)),
        ]
    }

    #[derive(Debug, Clone)]
    struct Route {
        generation: i64,
        sections: BTreeSet<usize>,
        second_backend: bool,
    }

    struct History {
        gateway_generation: i64,
        listeners: BTreeSet<usize>,
        routes: Vec<Route>,
        /// The generated RouterConfigs as stored (and as the operator's cache reads them).
        store: BTreeMap<String, RouterConfig>,
    }

    fn listener_name(l: usize) -> String {
        format!("l{l}")
    }

    impl History {
        fn new() -> Self {
            History {
                gateway_generation: 1,
                listeners: (0..LISTENERS).collect(),
                routes: (0..ROUTES)
                    .map(|_| Route {
                        generation: 1,
                        sections: BTreeSet::new(),
                        second_backend: false,
                    })
                    .collect(),
                store: BTreeMap::new(),
            }
        }

        fn world(&self) -> World {
            let listeners: Vec<serde_json::Value> = self
                .listeners
                .iter()
                .map(|l| {
                    json!({"name": listener_name(*l), "port": 8000 + *l as i32, "protocol": "HTTP",
                           "hostname": format!("{}.example.com", listener_name(*l))})
                })
                .collect();
            let gateway: Gateway = serde_json::from_value(json!({
                "metadata": {"name": "gw", "namespace": "infra", "generation": self.gateway_generation},
                "spec": {"gatewayClassName": "lockstep", "listeners": listeners},
            }))
            .unwrap();
            let mut w = World::new(gateway);
            for (r, route) in self.routes.iter().enumerate() {
                let parent_refs: Vec<serde_json::Value> = if route.sections.is_empty() {
                    vec![json!({"name": "gw"})]
                } else {
                    route
                        .sections
                        .iter()
                        .map(|l| json!({"name": "gw", "sectionName": listener_name(*l)}))
                        .collect()
                };
                let backend = if route.second_backend { "web2" } else { "web" };
                w.http.push(
                    serde_json::from_value(json!({
                        "metadata": {"name": format!("r{r}"), "namespace": "infra", "uid": format!("uid-r{r}"),
                                     "generation": route.generation, "creationTimestamp": format!("2026-01-01T00:00:0{r}Z")},
                        "spec": {"parentRefs": parent_refs, "rules": [{
                            // One path per route: routes sharing a listener do not collide.
                            "matches": [{"path": {"type": "PathPrefix", "value": format!("/r{r}")}}],
                            "backendRefs": [{"name": backend, "port": 8080}]}]},
                    }))
                    .unwrap(),
                );
            }
            w
        }

        /// The listeners route r attaches to, from the history alone.
        fn carrying(&self, r: usize) -> BTreeSet<usize> {
            let sections = &self.routes[r].sections;
            if sections.is_empty() {
                self.listeners.clone()
            } else {
                sections.intersection(&self.listeners).copied().collect()
            }
        }

        fn apply(&mut self, step: &Step) {
            match step {
                Step::EditRoute(r, sections, second) => {
                    let route = &mut self.routes[*r];
                    route.generation += 1;
                    route.sections = sections.clone();
                    route.second_backend = *second;
                }
                Step::EditGateway(listeners) => {
                    self.gateway_generation += 1;
                    self.listeners = listeners.clone();
                }
                Step::Publish => self.publish(),
                Step::Judge(i, ready) => {
                    let Some(name) = self.store.keys().nth(*i).cloned() else {
                        return;
                    };
                    let rc = self.store.get_mut(&name).unwrap();
                    judge_router_config(rc, *ready);
                }
            }
        }

        fn publish(&mut self) {
            let t = self.world().run();
            let plans = plan(t.config.as_ref().unwrap(), "edge");
            let mut keep = BTreeSet::new();
            for p in &plans {
                match &p.outcome {
                    Outcome::Publish(spec) => {
                        keep.insert(p.name.clone());
                        let rc = self
                            .store
                            .entry(p.name.clone())
                            .or_insert_with(|| new_router_config(&p.name, spec));
                        if rc.spec != *spec {
                            rc.spec = spec.clone();
                            rc.metadata.generation = Some(rc.generation() + 1);
                        }
                        rc.metadata.annotations = Some(BTreeMap::from([
                            (
                                serve::GATEWAY_GENERATION_ANNOTATION.to_owned(),
                                self.gateway_generation.to_string(),
                            ),
                            (
                                serve::ROUTES_ANNOTATION.to_owned(),
                                serve::routes_annotation(&p.routes),
                            ),
                        ]));
                    }
                    Outcome::Gaps(gaps) => panic!("these listeners lower without gaps: {gaps:?}"),
                    Outcome::Empty => {}
                }
            }
            self.store.retain(|name, _| keep.contains(name));
        }

        /// Checks the promise on what `judge` decides now; returns the routes with a parent
        /// entry Ready=True.
        fn check(&self) -> Result<BTreeSet<usize>, String> {
            let mut t = self.world().run();
            let plans = plan(t.config.as_ref().unwrap(), "edge");
            let store = self.store.clone();
            judge(
                &mut t,
                Some(&Ok("edge".to_owned())),
                &plans,
                &move |name| store.get(name).cloned(),
                now(),
            );
            let mut ready = BTreeSet::new();
            for verdict in &t.routes {
                let r: usize = verdict.route.key.name[1..].parse().unwrap();
                let g = self.routes[r].generation;
                for parent in &verdict.parents {
                    let Some(c) = parent
                        .conditions
                        .iter()
                        .find(|c| c.type_ == ctype::LOCKSTEP_READY && c.status == "True")
                    else {
                        continue;
                    };
                    ready.insert(r);
                    if c.observed_generation != Some(g) {
                        return Err(format!(
                            "r{r}: Ready=True at {:?}, route at {g}",
                            c.observed_generation
                        ));
                    }
                    let carrying = self.carrying(r);
                    if carrying.is_empty() {
                        return Err(format!("r{r}: Ready=True attached to no listener"));
                    }
                    for l in carrying {
                        let name = generated_name("gw", &listener_name(l));
                        let Some(rc) = self.store.get(&name) else {
                            return Err(format!("r{r}@{g}: Ready=True, listener l{l} has no RouterConfig"));
                        };
                        let recorded = recorded_routes(rc).get(&format!("uid-r{r}")).copied();
                        if recorded != Some(g) {
                            return Err(format!(
                                "r{r}@{g}: Ready=True, l{l}'s RouterConfig records {recorded:?}"
                            ));
                        }
                        if ready_at(rc) != Some(rc.generation()) {
                            return Err(format!(
                                "r{r}@{g}: Ready=True, l{l}'s RouterConfig is not Ready at its generation {}",
                                rc.generation()
                            ));
                        }
                    }
                }
            }
            Ok(ready)
        }
    }

    /// The generation at which the RouterConfig's status says Ready=True.
    fn ready_at(rc: &RouterConfig) -> Option<i64> {
        let status = rc.status.as_ref()?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True")
            .then_some(ready.observed_generation)
            .flatten()
    }

    fn new_router_config(name: &str, spec: &RouterConfigSpec) -> RouterConfig {
        serde_json::from_value(json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": name, "namespace": "infra", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    /// The barrier's verdict on `rc` at its current generation: Ready=True with every one of 3
    /// replicas reporting it, or Ready=False with one replica behind.
    fn judge_router_config(rc: &mut RouterConfig, ready: bool) {
        let generation = rc.generation();
        let digest = crate::config_digest(&rc.spec, &BTreeMap::new());
        let condition = |type_: &str, status: bool, reason: &str| {
            json!({"type": type_, "status": if status {"True"} else {"False"}, "reason": reason,
                   "message": "", "observedGeneration": generation,
                   "lastTransitionTime": "2026-06-01T00:00:00Z"})
        };
        let behind = if ready { generation } else { generation - 1 };
        rc.status = Some(
            serde_json::from_value(json!({
                "conditions": [
                    condition("Accepted", true, "Accepted"),
                    if ready { condition("Ready", true, "AllReplicasSynced") }
                    else { condition("Ready", false, "RolloutInProgress") },
                ],
                "replicas": 3, "syncedReplicas": if ready { 3 } else { 2 },
                "replicaStatus": [
                    {"name": "edge/p0", "observedGeneration": generation, "configDigest": digest},
                    {"name": "edge/p1", "observedGeneration": generation, "configDigest": digest},
                    {"name": "edge/p2", "observedGeneration": behind, "configDigest": digest},
                ],
            }))
            .unwrap(),
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn route_ready_implies_every_carrying_listener_is_ready_at_the_route_generation(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            let mut h = History::new();
            for s in &steps {
                h.apply(s);
                if let Err(e) = h.check() {
                    return Err(TestCaseError::fail(format!("after {s:?}: {e}")));
                }
            }
            // Not vacuous: once the operator publishes and the barrier judges everything
            // Ready, every route attached to some listener is Ready=True.
            h.apply(&Step::Publish);
            for i in 0..LISTENERS {
                h.apply(&Step::Judge(i, true));
            }
            let ready = h.check().map_err(TestCaseError::fail)?;
            let attached: BTreeSet<usize> = (0..ROUTES).filter(|r| !h.carrying(*r).is_empty()).collect();
            prop_assert_eq!(ready, attached);
        }
    }
}

#[test]
fn a_backend_tls_policy_is_lowered_into_its_backends_and_gets_a_status_for_the_gateway() {
    // BackendTLSPolicy: "the Gateway ... MUST use TLS to connect to the target Service",
    // with SNI `hostname`, verified against `caCertificateRefs`; the status has one entry
    // per ancestor (the Gateway) whose routes use the target.
    let mut w = World::new(gateway(HTTP80));
    w.services.push(yaml(
        "metadata: {name: secure, namespace: infra}\nspec: {ports: [{name: https, port: 443}]}",
    ));
    let (pem, _) = crate::test_certs::mk_cert(&["ca.example.com"], crate::test_certs::VALID);
    let mut ca: ConfigMap = yaml("metadata: {name: ca, namespace: infra}");
    ca.data = Some([("ca.crt".to_owned(), pem.clone())].into());
    w.config_maps.push(ca);
    let policy = |name: &str, service: &str| -> BackendTLSPolicy {
        yaml(&format!(
            "metadata: {{name: {name}, namespace: infra, generation: 2, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec: {{targetRefs: [{{group: \"\", kind: Service, name: {service}, sectionName: https}}], validation: {{hostname: abc.example.com, caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: ca}}]}}}}"
        ))
    };
    w.policies = vec![policy("used", "secure"), policy("unused", "elsewhere")];
    w.http.push(http_route(
        "infra",
        "r",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{name: gw}], hostnames: [app.example.com], rules: [{backendRefs: [{name: secure, port: 443}]}]}",
    ));
    let t = w.run();
    let spec = router_config_spec(
        &t.config.as_ref().unwrap().listeners[0],
        "infra",
        "gw",
        false,
        &|_| false,
    )
    .unwrap();
    let tls = spec.rules[0].paths[0].backends[0]
        .service
        .as_ref()
        .and_then(|s| s.tls.clone())
        .expect("the backend is reached over TLS");
    assert_eq!(tls.hostname, "abc.example.com");
    assert_eq!(tls.ca_certificates.as_deref(), Some(pem.as_str()));
    // The route's own verdict is unchanged.
    assert_eq!(
        cond(parent(&t, "r"), ctype::RESOLVED_REFS),
        Some(("True", reason::RESOLVED_REFS))
    );
    // Only the policy of a Service this Gateway's routes use gets an entry.
    let keys: Vec<String> = t.policies.keys().map(|k| k.name.clone()).collect();
    assert_eq!(keys, ["used"]);
    let entry = &t.policies.values().next().unwrap();
    assert_eq!(entry.ancestor_ref.name, "gw");
    assert_eq!(entry.ancestor_ref.namespace.as_deref(), Some("infra"));
    let conditions: Vec<(&str, &str, i64)> = entry
        .conditions
        .iter()
        .map(|c| {
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.observed_generation.unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(conditions, [("Accepted", "True", 2), ("ResolvedRefs", "True", 2)]);

    // The ConfigMap gone: no usable CA, so the backend is answered 500, never in cleartext.
    w.config_maps.clear();
    let t = w.run();
    let spec = router_config_spec(
        &t.config.as_ref().unwrap().listeners[0],
        "infra",
        "gw",
        false,
        &|_| false,
    )
    .unwrap();
    let backend = &spec.rules[0].paths[0].backends[0];
    assert_eq!((backend.service.is_none(), backend.status), (true, Some(500)));
    let entry = &t.policies.values().next().unwrap();
    assert_eq!(
        (
            entry.conditions[0].status.as_str(),
            entry.conditions[0].reason.as_str()
        ),
        ("False", reason::NO_VALID_CA_CERTIFICATE)
    );
}

/// Gateway `spec.tls.backend.clientCertificateRef`: "If the referent cannot be found ... the
/// `ResolvedRefs` condition on the Gateway MUST be set to False with the Reason
/// `InvalidClientCertificateRef`"; "a resource in another namespace UNLESS there is a
/// ReferenceGrant ... `RefNotPermitted`". Resolved, every backend reached over TLS presents
/// it (a copy for one of another namespace) and it is folded into the digest; unresolved, a
/// listener with a TLS backend keeps what it serves, and one without is published as before.
#[test]
fn a_gateways_backend_client_certificate_is_presented_over_tls_or_named_in_resolved_refs() {
    use super::serve::{Outcome, plan};
    let planned_in = |w: World, _: &[()]| {
        let t = w.run();
        let plans = plan(t.config.as_ref().expect("accepted"), "edge");
        (t, plans)
    };
    let world = |client_ref: &str, granted: bool, tls_backend: bool| -> World {
        let mut gw = gateway(HTTP80);
        gw.spec.tls = Some(yaml(&format!(
            "{{backend: {{clientCertificateRef: {client_ref}}}}}"
        )));
        let mut w = World::new(gw);
        w.secrets.push(tls_secret("infra", "client"));
        w.secrets.push(tls_secret("certs", "client"));
        w.secrets.push(opaque_secret("infra", "opaque"));
        if granted {
            w.grants
                .push(grant("certs", "Gateway", "infra", "", "Secret", None));
        }
        w.services.push(yaml(
            "metadata: {name: secure, namespace: infra}\nspec: {ports: [{name: https, port: 443}]}",
        ));
        let (pem, _) = crate::test_certs::mk_cert(&["ca.example.com"], crate::test_certs::VALID);
        let mut ca: ConfigMap = yaml("metadata: {name: ca, namespace: infra}");
        ca.data = Some([("ca.crt".to_owned(), pem)].into());
        w.config_maps.push(ca);
        w.policies.push(yaml(
            "metadata: {name: p, namespace: infra}\nspec: {targetRefs: [{group: \"\", kind: Service, name: secure}], validation: {hostname: abc.example.com, caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]}}",
        ));
        let backend = if tls_backend {
            "secure, port: 443"
        } else {
            "web, port: 8080"
        };
        w.http.push(http_route(
            "infra",
            "r",
            "2026-01-01T00:00:00Z",
            &format!("{{parentRefs: [{{name: gw}}], rules: [{{backendRefs: [{{name: {backend}}}], filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: secure, port: 443}}}}}}]}}]}}"),
        ));
        w
    };
    let resolved_refs = |t: &Translation| -> (String, String) {
        let c = t
            .gateway_conditions
            .iter()
            .find(|c| c.type_ == ctype::RESOLVED_REFS)
            .expect("a Gateway ResolvedRefs condition");
        (c.status.clone(), c.reason.clone())
    };
    let accepted = |t: &Translation| -> String {
        t.gateway_conditions
            .iter()
            .find(|c| c.type_ == ctype::ACCEPTED)
            .unwrap()
            .status
            .clone()
    };
    let presented = |spec: &lockstep_crds::RouterConfigSpec| -> Vec<Option<String>> {
        let path = &spec.rules[0].paths[0];
        path.backends
            .iter()
            .filter_map(|b| b.service.as_ref())
            .chain(
                path.filters
                    .iter()
                    .flat_map(|f| f.mirrors.iter().map(|m| &m.service)),
            )
            .map(|s| {
                s.tls
                    .as_ref()
                    .and_then(|t| t.client_certificate_secret_name.clone())
            })
            .collect()
    };

    // Same namespace: ResolvedRefs True; the backend and the mirror present it; the digest
    // covers its material.
    let (t, plans) = planned_in(world("{name: client}", false, true), &[]);
    assert_eq!(resolved_refs(&t), ("True".into(), reason::RESOLVED_REFS.into()));
    let Outcome::Publish(spec) = &plans[0].outcome else {
        panic!("{:?}", plans[0].outcome)
    };
    assert_eq!(
        presented(spec),
        [Some("client".to_owned()), Some("client".to_owned())]
    );
    assert!(plans[0].tls.contains_key("client"), "{:?}", plans[0].tls);
    assert!(plans[0].copies.is_empty());
    assert!(crate::tls_secret_names(spec).contains(&"client".to_owned()));

    // Another namespace with a grant: a copy in the Gateway's namespace.
    let (t, plans) = planned_in(world("{name: client, namespace: certs}", true, true), &[]);
    assert_eq!(resolved_refs(&t).0, "True");
    let Outcome::Publish(spec) = &plans[0].outcome else {
        panic!("{:?}", plans[0].outcome)
    };
    assert_eq!(plans[0].copies.len(), 1, "{:?}", plans[0].copies);
    let copy = &plans[0].copies[0];
    assert_eq!(
        (copy.source.namespace.as_str(), copy.source.name.as_str()),
        ("certs", "client")
    );
    assert_eq!(presented(spec)[0].as_deref(), Some(copy.name.as_str()));
    assert!(plans[0].tls.contains_key(&copy.name));

    // Each unresolvable reference: the reason, the Gateway still accepted, and the listener
    // reaching a TLS backend keeps what it serves (a gap naming why).
    for (client_ref, grant, want) in [
        ("{name: missing}", false, reason::INVALID_CLIENT_CERTIFICATE_REF),
        ("{name: opaque}", false, reason::INVALID_CLIENT_CERTIFICATE_REF),
        (
            "{group: wrong.group.company.io, kind: Secret, name: client}",
            false,
            reason::INVALID_CLIENT_CERTIFICATE_REF,
        ),
        (
            "{group: \"\", kind: WrongKind, name: client}",
            false,
            reason::INVALID_CLIENT_CERTIFICATE_REF,
        ),
        (
            "{name: client, namespace: certs}",
            false,
            reason::REF_NOT_PERMITTED,
        ),
    ] {
        let (t, plans) = planned_in(world(client_ref, grant, true), &[]);
        assert_eq!(resolved_refs(&t), ("False".into(), want.into()), "{client_ref}");
        assert_eq!(accepted(&t), "True", "{client_ref}");
        let message = &t
            .gateway_conditions
            .iter()
            .find(|c| c.type_ == ctype::RESOLVED_REFS)
            .unwrap()
            .message;
        assert!(
            message.starts_with("spec.tls.backend.clientCertificateRef"),
            "{message}"
        );
        assert!(
            matches!(&plans[0].outcome, Outcome::Gaps(g) if matches!(g[..], [Gap::BackendClientCertificate(_)])),
            "{client_ref}: {:?}",
            plans[0].outcome
        );
        // The mirror alone reaches TLS: still a gap. Without any TLS Service: published.
        let mut w = world(client_ref, grant, false);
        w.http[0] = http_route(
            "infra",
            "r",
            "2026-01-01T00:00:00Z",
            "{parentRefs: [{name: gw}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
        );
        let (_, plans) = planned_in(w, &[]);
        assert!(
            matches!(plans[0].outcome, Outcome::Publish(_)),
            "{client_ref}: {:?}",
            plans[0].outcome
        );
    }
    let (_, plans) = planned_in(world("{name: missing}", false, false), &[]);
    assert!(
        matches!(&plans[0].outcome, Outcome::Gaps(_)),
        "a TLS mirror: {:?}",
        plans[0].outcome
    );
}
