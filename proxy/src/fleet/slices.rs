//! Ready endpoints of a Service port, from its EndpointSlices.
//!
//! RouterConfigs name a Service *port*; EndpointSlices list *target* ports by the Service
//! port's name. So the Service maps the number to a name, and the slice port with that name
//! gives the target port. Without a Service object (selector-less Services managed by hand),
//! the slice port with the same number, or a slice's only port, is used.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

/// The label EndpointSlices carry with the name of their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Ready endpoints of `service_port` of Service `name` in `namespace`.
pub fn ready_endpoints<'a>(
    namespace: &str,
    name: &str,
    service_port: u16,
    service: Option<&Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<SocketAddr> {
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
            if let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn other_services_and_unknown_ports_are_ignored() {
        let svc = mk_service("api", json!([{"name": "http", "port": 80}]));
        let other = mk_slice("web", Some("http"), 8080, json!([{"addresses": ["127.0.0.2"]}]));
        let wrong_port = mk_slice("api", Some("grpc"), 9090, json!([{"addresses": ["127.0.0.3"]}]));
        assert!(ready_endpoints("ns", "api", 80, Some(&svc), [&other, &wrong_port]).is_empty());
        assert!(ready_endpoints("ns", "api", 81, Some(&svc), [&wrong_port]).is_empty());
    }
}
