//! Ready endpoints of a Service port, from its EndpointSlices.
//!
//! Endpoints are IP addresses, or names for slices of `addressType: FQDN` (resolved by
//! `super::resolver`; names under `.localhost` are the loopback address, RFC 6761 §6.3,
//! which is how a cluster without a kubelet points a Service at processes on the proxy's own
//! host: the apiserver refuses loopback IPs in EndpointSlices).
//!
//! RouterConfigs name a Service *port*; EndpointSlices list *target* ports by the Service
//! port's name. So the Service maps the number to a name, and the slice port with that name
//! gives the target port. Without a Service object (selector-less Services managed by hand),
//! the slice port with the same number, or a slice's only port, is used.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

/// The label EndpointSlices carry with the name of their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Ready endpoints of `service_port` of Service `name` in `namespace`.
/// An endpoint as a slice lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndpointAddr {
    /// An IP endpoint.
    Ip(SocketAddr),
    /// A name (addressType FQDN) and port, to be resolved.
    Name(String, u16),
}

/// EndpointSlices grouped by their Service (namespace and [`SERVICE_NAME_LABEL`]), built once
/// per sync pass: each Service port then reads its own slices instead of scanning all of them
/// (twice: once for the endpoints, once for the appProtocol). Slices without the label belong
/// to no Service and are left out.
#[derive(Debug, Default)]
pub struct SliceIndex<'a> {
    /// Namespace, then Service name.
    by_service: HashMap<&'a str, HashMap<&'a str, Vec<&'a EndpointSlice>>>,
}

impl<'a> SliceIndex<'a> {
    /// Groups `slices` by Service.
    pub fn new(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Self {
        let mut by_service: HashMap<&'a str, HashMap<&'a str, Vec<_>>> = HashMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref();
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (namespace, service) {
                by_service
                    .entry(namespace)
                    .or_default()
                    .entry(service.as_str())
                    .or_default()
                    .push(slice);
            }
        }
        Self { by_service }
    }

    /// The slices of Service `name` in `namespace`.
    pub fn of(&self, namespace: &str, name: &str) -> &[&'a EndpointSlice] {
        self.by_service
            .get(namespace)
            .and_then(|services| services.get(name))
            .map_or(&[], Vec::as_slice)
    }
}

/// Ready endpoints of `service_port` of Service `name` in `namespace`, unresolved.
pub fn ready_endpoint_addrs<'a>(
    namespace: &str,
    name: &str,
    service_port: u16,
    service: Option<&Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<EndpointAddr> {
    let port_name: Option<Option<String>> = service.map(|svc| {
        svc.spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.port == i32::from(service_port)))
            .map(|p| p.name.clone().filter(|n| !n.is_empty()))
            .unwrap_or(Some(String::from("\0no such port")))
    });
    let mut out = Vec::new();
    for slice in slices {
        if slice.metadata.namespace.as_deref() != Some(namespace)
            || slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                != Some(name)
        {
            continue;
        }
        let ports = slice.ports.as_deref().unwrap_or_default();
        let target = match &port_name {
            Some(wanted) => ports
                .iter()
                .find(|p| p.name.clone().filter(|n| !n.is_empty()) == *wanted),
            None => ports
                .iter()
                .find(|p| p.port == Some(i32::from(service_port)))
                .or_else(|| if ports.len() == 1 { ports.first() } else { None }),
        };
        let Some(port) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            // Ready unknown (nil) counts as ready, as kube-proxy does; terminating endpoints
            // report ready=false.
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let Some(address) = endpoint.addresses.first() else {
                continue;
            };
            if slice.address_type == "FQDN" {
                out.push(EndpointAddr::Name(address.clone(), port));
            } else if let Ok(ip) = address.parse::<IpAddr>() {
                out.push(EndpointAddr::Ip(SocketAddr::new(ip, port)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The application protocol `appProtocol` names for `service_port` of Service `name`:
/// the Service port's, else that of the first EndpointSlice port that serves it.
/// `kubernetes.io/h2c` means HTTP/2 over cleartext (gRPC without TLS).
pub fn app_protocol<'a>(
    namespace: &str,
    name: &str,
    service_port: u16,
    service: Option<&Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Option<String> {
    let service_port_spec = service
        .and_then(|svc| svc.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.port == i32::from(service_port)));
    if let Some(protocol) = service_port_spec.and_then(|p| p.app_protocol.clone()) {
        return Some(protocol);
    }
    let wanted_name = service_port_spec.map(|p| p.name.clone().filter(|n| !n.is_empty()));
    slices
        .into_iter()
        .filter(|slice| {
            slice.metadata.namespace.as_deref() == Some(namespace)
                && slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
        })
        .flat_map(|slice| {
            let ports = slice.ports.as_deref().unwrap_or_default();
            match &wanted_name {
                Some(wanted) => ports
                    .iter()
                    .find(|p| p.name.clone().filter(|n| !n.is_empty()) == *wanted),
                None => ports
                    .iter()
                    .find(|p| p.port == Some(i32::from(service_port)))
                    .or_else(|| if ports.len() == 1 { ports.first() } else { None }),
            }
            .and_then(|p| p.app_protocol.clone())
        })
        .next()
}

/// The appProtocol that makes a Service port HTTP/2 over cleartext.
pub const H2C_APP_PROTOCOL: &str = "kubernetes.io/h2c";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocol_comes_from_the_service_port_or_the_slice_port() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g-1", "namespace": "ns", "labels": {SERVICE_NAME_LABEL: "grpc"}},
            "addressType": "IPv4",
            "ports": [{"name": "grpc", "port": 9000, "appProtocol": "kubernetes.io/h2c"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]
        }))
        .unwrap();
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "grpc", "namespace": "ns"},
            "spec": {"ports": [{"name": "grpc", "port": 80, "targetPort": 9000}]}
        }))
        .unwrap();
        assert_eq!(
            app_protocol("ns", "grpc", 80, Some(&service), [&slice]).as_deref(),
            Some(H2C_APP_PROTOCOL)
        );
        assert_eq!(
            app_protocol("ns", "grpc", 9000, None, [&slice]).as_deref(),
            Some(H2C_APP_PROTOCOL)
        );
        assert_eq!(app_protocol("other", "grpc", 9000, None, [&slice]), None);
        let mut plain = service.clone();
        plain.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].app_protocol = Some("http".into());
        assert_eq!(
            app_protocol("ns", "grpc", 80, Some(&plain), [&slice]).as_deref(),
            Some("http")
        );
    }

    fn ready_endpoints<'a>(
        namespace: &str,
        name: &str,
        port: u16,
        service: Option<&Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Vec<SocketAddr> {
        ready_endpoint_addrs(namespace, name, port, service, slices)
            .into_iter()
            .map(|e| match e {
                EndpointAddr::Ip(addr) => addr,
                EndpointAddr::Name(..) => panic!("unexpected name"),
            })
            .collect()
    }

    #[test]
    fn fqdn_slices_list_names() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "api-x", "namespace": "ns", "labels": {SERVICE_NAME_LABEL: "api"}},
            "addressType": "FQDN",
            "ports": [{"name": "http", "port": 18092}],
            "endpoints": [{"addresses": ["api.localhost"]}, {"addresses": ["b.localhost."]}]
        }))
        .unwrap();
        let addrs = ready_endpoint_addrs("ns", "api", 8080, None, [&slice]);
        assert_eq!(
            addrs,
            vec![
                EndpointAddr::Name("api.localhost".into(), 18092),
                EndpointAddr::Name("b.localhost.".into(), 18092)
            ]
        );
    }
    use serde_json::json;

    fn mk_slice(
        service: &str,
        port_name: Option<&str>,
        port: i32,
        endpoints: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-x"), "namespace": "ns", "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": endpoints
        }))
        .unwrap()
    }

    fn mk_service(name: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"ports": ports}}),
        )
        .unwrap()
    }

    #[test]
    fn only_ready_endpoints_with_target_port_from_service_port_name() {
        let svc = mk_service("api", json!([{"name": "http", "port": 80, "targetPort": 8080}]));
        let slice = mk_slice(
            "api",
            Some("http"),
            8080,
            json!([
                {"addresses": ["127.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["127.0.0.3"], "conditions": {"ready": false}},
                {"addresses": ["127.0.0.4"]}
            ]),
        );
        let got = ready_endpoints("ns", "api", 80, Some(&svc), [&slice]);
        assert_eq!(
            got,
            vec![
                "127.0.0.2:8080".parse().unwrap(),
                "127.0.0.4:8080".parse().unwrap()
            ]
        );
    }

    #[test]
    fn without_service_uses_same_number_or_only_port() {
        let slice = mk_slice("api", None, 9000, json!([{"addresses": ["127.0.0.2"]}]));
        assert_eq!(
            ready_endpoints("ns", "api", 80, None, [&slice]),
            vec!["127.0.0.2:9000".parse().unwrap()]
        );
    }

    #[test]
    fn the_index_groups_slices_by_namespace_and_service_label() {
        let api = mk_slice("api", Some("http"), 8080, json!([]));
        let web = mk_slice("web", Some("http"), 8080, json!([]));
        let mut elsewhere = mk_slice("api", Some("http"), 8080, json!([]));
        elsewhere.metadata.namespace = Some("other".into());
        let mut unlabelled = mk_slice("api", Some("http"), 8080, json!([]));
        unlabelled.metadata.labels = None;
        let index = SliceIndex::new([&api, &web, &elsewhere, &unlabelled]);
        assert_eq!(index.of("ns", "api"), [&api]);
        assert_eq!(index.of("ns", "web"), [&web]);
        assert_eq!(index.of("other", "api"), [&elsewhere]);
        assert!(index.of("ns", "none").is_empty());
    }

    #[test]
    fn other_services_and_unknown_ports_are_ignored() {
        let svc = mk_service("api", json!([{"name": "http", "port": 80}]));
        let other = mk_slice("web", Some("http"), 8080, json!([{"addresses": ["127.0.0.2"]}]));
        let wrong_port = mk_slice("api", Some("grpc"), 9090, json!([{"addresses": ["127.0.0.3"]}]));
        assert!(ready_endpoints("ns", "api", 80, Some(&svc), [&other, &wrong_port]).is_empty());
        assert!(ready_endpoints("ns", "api", 81, Some(&svc), [&wrong_port]).is_empty());
    }
}
