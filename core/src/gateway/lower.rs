//! From a served listener to lockstep's existing internal form, the `RouterConfigSpec`
//! every proxy already validates and compiles, and an exact list of what that form cannot
//! express yet.
//!
//! | Gateway API needs | RouterConfigSpec today | gap |
//! |---|---|---|
//! | more than one certificate for a listener | a Secret of the same namespace per host (`*` for any SNI name) | [`Gap::ListenerCertificate`] |
//! | client certificate validation (`spec.tls.frontend`) | no client certificate is asked for | [`Gap::ClientCertificateValidation`] |
//! | a backend client certificate that cannot be resolved (`spec.tls.backend`) | a TLS backend without it would be reached without the certificate it may require | [`Gap::BackendClientCertificate`] |
//!
//! Listeners sharing a port share the fleet's one table, which chooses the host first (exact,
//! then the longest wildcard, then any host), as Gateway API chooses the listener (the most
//! specific host name). [`super::serve::plan`] keeps in each listener only the entries whose
//! host no more specific listener of the port covers, so the two choices agree; and a listener
//! with a host name on a port where a less specific listener also serves gets a last entry
//! for its host name, `/` answered 404, so that a request for its names that none of its
//! routes match is not answered by the other listener's routes.
//!
//! Entries for any host (a listener and a route without host name) get host `*`, and a
//! backendRef to a Service of another namespace (which a ReferenceGrant allowed, or it would
//! be answered 500) gets `service.namespace`: both only generated RouterConfigs may use
//! (label `lockstep.dev/generated-from`, written by the operator).
//!
//! A GRPCRoute's backends get `appProtocol: kubernetes.io/h2c`: gRPC needs HTTP/2, and
//! without BackendTLSPolicy (not supported) that is HTTP/2 over cleartext, whatever the
//! Service port's own appProtocol says.
//!
//! A wildcard host is written with `wildcardMatch: Suffix`: Gateway API's `*.example.com`
//! covers one or more labels, a RouterConfig's by default exactly one.
//!
//! A RequestMirror's Service gets `service.namespace` likewise only when it is of another
//! namespace.
//!
//! An unresolved backendRef (and a rule whose requests are all answered 500) becomes a
//! `backends[]` entry `{status: 500, weight}`: the proxy answers that share itself.
//!
//! Entries that can never win (a later entry with the same host, path and match as an
//! earlier one) are left out: Gateway API gives the request to the earlier one, and the
//! RouterConfig validation refuses duplicates within one object.

use std::collections::HashSet;

use lockstep_crds::{
    AppProtocol, Filters, HostRule, HostTls, HttpPath, RouterConfigSpec, ServiceBackend, WeightedBackend,
    WildcardMatch,
};

use super::{ServedListener, listeners::Protocol, rules::ServedBackend};

/// Something a served listener needs that a RouterConfigSpec cannot say yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Gap {
    /// Another served listener (named) of the Gateway, on another port, has an overlapping
    /// host name: an existing fleet serves every listener on its one port, so requests could
    /// not be kept to their listener ([`super::serve::plan`]).
    OverlappingListener(String),
    /// The listener's certificate cannot be expressed per host in the Gateway's namespace.
    ListenerCertificate(String),
    /// The Gateway's `spec.tls.frontend` asks the listener to validate client certificates,
    /// which neither the RouterConfig form nor the proxy says yet: serving the listener
    /// without them would let every client through.
    ClientCertificateValidation,
    /// The Gateway names a certificate to present to TLS backends
    /// (`spec.tls.backend.clientCertificateRef`) that cannot be resolved (why), and the
    /// listener reaches a backend over TLS: published without it, the backend would see no
    /// client certificate, so the listener keeps what it serves.
    BackendClientCertificate(String),
    /// The lowered spec fails RouterConfig validation.
    Invalid(String),
}

/// The TLS settings of every Service `spec` reaches over TLS (backends and mirrors), to set
/// what the Gateway presents to them.
pub fn backend_tls_mut(spec: &mut RouterConfigSpec) -> Vec<&mut lockstep_crds::BackendTls> {
    let mut found = Vec::new();
    for path in spec.rules.iter_mut().flat_map(|r| r.paths.iter_mut()) {
        let services = path
            .backend
            .iter_mut()
            .filter_map(|b| b.service.as_mut())
            .chain(path.backends.iter_mut().filter_map(|w| w.service.as_mut()))
            .chain(
                path.filters
                    .iter_mut()
                    .flat_map(|f| f.mirrors.iter_mut().map(|m| &mut m.service)),
            );
        found.extend(services.filter_map(|s| s.tls.as_mut()));
    }
    found
}

/// Lowers one listener of a Gateway in namespace `namespace` to a RouterConfigSpec for
/// `fleet`. `shadowing`: a less specific listener serves on the same port, so the listener's
/// host name gets a last entry answering 404 (the module doc says why); an HTTPS listener's
/// host name (`*` without one) always gets it, so its certificate is presented for every
/// name it accepts. `is_grpc` says which
/// route indexes are GRPCRoutes.
pub fn router_config_spec(
    listener: &ServedListener,
    namespace: &str,
    fleet: &str,
    shadowing: bool,
    is_grpc: &dyn Fn(usize) -> bool,
) -> Result<RouterConfigSpec, Vec<Gap>> {
    let mut gaps: Vec<Gap> = Vec::new();
    if listener.client_validation.is_some() {
        gaps.push(Gap::ClientCertificateValidation);
    }
    let tls = match (listener.protocol, listener.certificates.as_slice()) {
        (Protocol::Http, _) => None,
        // Without host name, its entries of host `*` carry the certificate for any SNI name.
        (Protocol::Https, [cert]) if cert.namespace == namespace => Some(HostTls {
            secret_name: cert.name.clone(),
            redirect_http: false,
        }),
        (Protocol::Https, certs) => {
            gaps.push(Gap::ListenerCertificate(
                certs
                    .iter()
                    .map(|c| format!("{}/{}", c.namespace, c.name))
                    .collect::<Vec<_>>()
                    .join(","),
            ));
            None
        }
    };
    let mut rules: Vec<HostRule> = Vec::new();
    let mut seen = HashSet::new();
    for e in &listener.entries {
        let host = e.host.as_deref().unwrap_or(lockstep_crds::ANY_HOST);
        let identity = serde_json::to_string(&(host, &e.entry.path, e.entry.path_type, &e.entry.matches))
            .expect("entry identity serialises");
        if !seen.insert(identity) {
            continue;
        }
        let mut backends = Vec::new();
        for b in &e.entry.backends {
            match b {
                ServedBackend::Service {
                    service,
                    weight,
                    request_headers,
                } => {
                    backends.push(WeightedBackend {
                        service: Some(ServiceBackend {
                            name: service.name.clone(),
                            // The resolution allowed it (ReferenceGrant); the replicas must
                            // watch that namespace to resolve it.
                            namespace: (service.namespace != namespace).then(|| service.namespace.clone()),
                            port: service.port,
                            app_protocol: is_grpc(e.route).then_some(AppProtocol::H2c),
                            tls: service.tls.as_deref().cloned(),
                        }),
                        url: None,
                        status: None,
                        weight: i32::try_from(*weight).unwrap_or(i32::MAX),
                        request_headers: request_headers.clone(),
                    });
                }
                ServedBackend::Status { status, weight } => backends.push(WeightedBackend {
                    service: None,
                    url: None,
                    status: Some(*status),
                    weight: i32::try_from(*weight).unwrap_or(i32::MAX),
                    request_headers: None,
                }),
            }
        }
        let mut filters = e.entry.filters.clone().filter(|f| *f != Filters::default());
        for m in filters.iter_mut().flat_map(|f| &mut f.mirrors) {
            // Only another namespace is named, as for a backend.
            m.service.namespace.take_if(|ns| ns == namespace);
        }
        let matches = e.entry.matches.clone();
        let path = HttpPath {
            path: e.entry.path.clone(),
            path_type: e.entry.path_type,
            matches: (matches != Default::default()).then_some(matches),
            backends,
            filters,
            timeouts: e.entry.timeouts.clone(),
            ..Default::default()
        };
        match rules.iter_mut().find(|r| r.host == host) {
            Some(rule) => rule.paths.push(path),
            None => rules.push(HostRule {
                host: host.to_owned(),
                tls: tls.clone(),
                // Gateway API: "Hostnames that are prefixed with a wildcard label (`*.`) are
                // interpreted as a suffix match."
                wildcard_match: host.starts_with("*.").then_some(WildcardMatch::Suffix),
                paths: vec![path],
            }),
        }
    }
    // The host name the listener itself accepts: a request for it that none of its routes
    // match is answered 404 here when a less specific listener of the port would otherwise
    // take it, and over HTTPS always, because the certificate is found by a rule's host: a
    // client asking for a name the listener accepts gets the listener's certificate and a
    // 404, not a failed handshake.
    let own_host = listener
        .hostname
        .clone()
        .unwrap_or_else(|| lockstep_crds::ANY_HOST.to_owned());
    let closed = (shadowing && listener.hostname.is_some()) || tls.is_some();
    if closed {
        let host = &own_host;
        let catch_all = |p: &HttpPath| {
            p.path == "/" && p.path_type == lockstep_crds::PathType::Prefix && p.matches.is_none()
        };
        let rule = match rules.iter().position(|r| &r.host == host) {
            Some(i) => &mut rules[i],
            None => {
                rules.push(HostRule {
                    host: host.clone(),
                    tls: tls.clone(),
                    wildcard_match: host.starts_with("*.").then_some(WildcardMatch::Suffix),
                    paths: Vec::new(),
                });
                rules.last_mut().expect("just pushed")
            }
        };
        if !rule.paths.iter().any(catch_all) {
            rule.paths.push(HttpPath {
                path: "/".into(),
                path_type: lockstep_crds::PathType::Prefix,
                backends: vec![WeightedBackend {
                    service: None,
                    url: None,
                    status: Some(404),
                    weight: 1,
                    request_headers: None,
                }],
                ..Default::default()
            });
        }
    }
    gaps.sort();
    gaps.dedup();
    if !gaps.is_empty() {
        return Err(gaps);
    }
    let spec = RouterConfigSpec {
        fleet: fleet.to_owned(),
        rules,
    };
    crate::validate_spec(&spec).map_err(|e| vec![Gap::Invalid(e.to_string())])?;
    Ok(spec)
}
