//! Gateway: listeners (port, protocol, hostname, TLS) that routes attach to.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{Condition, LabelSelector, SecretObjectReference};

/// A set of listeners; for lockstep, one proxy fleet.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "Gateway",
    plural = "gateways",
    namespaced,
    status = "GatewayStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass this Gateway belongs to.
    pub gateway_class_name: String,
    /// The listeners, unique by name.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Requested addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewaySpecAddress>,
    /// Labels and annotations for what is provisioned for this Gateway, and its own
    /// parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
    /// TLS settings of the whole Gateway: client validation (`frontend`) and the
    /// certificate presented to backends (`backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTlsConfig>,
    /// Which ListenerSets may attach listeners; unset allows none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_listeners: Option<AllowedListeners>,
}

impl GatewaySpec {
    /// `spec.tls.backend.clientCertificateRef`: the certificate presented to TLS backends.
    pub fn backend_client_certificate_ref(&self) -> Option<&SecretObjectReference> {
        self.tls
            .as_ref()?
            .backend
            .as_ref()?
            .client_certificate_ref
            .as_ref()
    }
}

/// `spec.infrastructure`: what the resources provisioned for a Gateway carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Labels for every provisioned resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for every provisioned resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Parameters of this Gateway, in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<LocalParametersReference>,
}

/// A reference to an object of the Gateway's namespace holding its parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LocalParametersReference {
    /// API group of the referent.
    pub group: String,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
}

/// TLS settings of the whole Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTlsConfig {
    /// How clients connecting to the Gateway's HTTPS listeners are validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<FrontendTlsConfig>,
    /// What the Gateway presents to backends it reaches over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<GatewayBackendTls>,
}

/// The Gateway's side of TLS to its backends (`spec.tls.backend`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayBackendTls {
    /// The client certificate presented to every backend reached over TLS (a BackendTLSPolicy
    /// names it) that asks for one: a core `kubernetes.io/tls` Secret, in the Gateway's
    /// namespace or granted by a ReferenceGrant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<SecretObjectReference>,
}

/// Client certificate validation of the HTTPS listeners: a default, and overrides per port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsConfig {
    /// For every HTTPS listener whose port has no entry in `perPort`.
    #[serde(default)]
    pub default: FrontendTls,
    /// For the HTTPS listeners of one port each (ports unique).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_port: Vec<FrontendTlsPort>,
}

/// The frontend TLS of one port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsPort {
    /// The listener port it applies to.
    pub port: i32,
    /// Its settings.
    #[serde(default)]
    pub tls: FrontendTls,
}

/// Frontend TLS settings (Gateway API's `TLSConfig`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTls {
    /// Client certificate validation; none: clients are not asked for a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<FrontendTlsValidation>,
}

/// Which client certificates a listener accepts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsValidation {
    /// The trust anchors: core ConfigMaps with the PEM bundle under `ca.crt` (1 to 16).
    #[serde(default)]
    pub ca_certificate_refs: Vec<ObjectReference>,
    /// `AllowValidOnly` (the default: a valid certificate is required) or
    /// `AllowInsecureFallback` (connections without one, or with an invalid one, pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A reference to an object of any kind (Gateway API's `ObjectReference`: group and kind
/// required, namespace defaulting to the referrer's).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// API group ("" for the core group).
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace; defaults to the referrer's. Another namespace needs a ReferenceGrant there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Which ListenerSets may attach listeners to a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AllowedListeners {
    /// The namespaces they may come from; unset means `from: None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<ListenerNamespaces>,
}

/// Namespaces ListenerSets may attach from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ListenerNamespaces {
    /// All, Same, Selector or None (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Labels of the allowed namespaces, when `from` is Selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// One logical endpoint of a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway; what a route's `sectionName` names.
    pub name: String,
    /// Host names this listener accepts; unset means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port.
    pub port: i32,
    /// HTTP, HTTPS, TLS, TCP, UDP or an implementation-specific protocol.
    pub protocol: String,
    /// TLS settings (HTTPS and TLS listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsConfig>,
    /// Which routes may attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// TLS settings of a listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTlsConfig {
    /// Terminate (default) or Passthrough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Certificates served (Secrets of type kubernetes.io/tls).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,
}

/// Which routes may attach to a listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AllowedRoutes {
    /// Namespaces routes may come from; defaults to the Gateway's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Route kinds; empty means the kinds the listener's protocol supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

/// Namespaces routes may attach from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RouteNamespaces {
    /// All, Same (default) or Selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Labels of the allowed namespaces, when `from` is Selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A route kind, with its group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RouteGroupKind {
    /// API group; defaults to `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind, e.g. HTTPRoute.
    pub kind: String,
}

/// An address requested for a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct GatewaySpecAddress {
    /// IPAddress (default), Hostname or an implementation-specific type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
    /// The address.
    #[serde(default)]
    pub value: String,
}

/// Status of a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct GatewayStatus {
    /// Addresses the Gateway is reachable at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayStatusAddress>,
    /// Accepted and Programmed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One entry per listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// How many ListenerSets are attached (allowed and accepted).
    #[serde(
        default,
        rename = "attachedListenerSets",
        skip_serializing_if = "Option::is_none"
    )]
    pub attached_listener_sets: Option<i32>,
}

/// An address a Gateway is reachable at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct GatewayStatusAddress {
    /// IPAddress, Hostname or an implementation-specific type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
    /// The address.
    pub value: String,
}

/// Status of one listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Route kinds this listener accepts (of those it was asked for).
    #[serde(default)]
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes successfully attached.
    pub attached_routes: i32,
    /// Accepted, Programmed, ResolvedRefs, Conflicted.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
