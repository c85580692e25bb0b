//! The subset of Kubernetes Gateway API v1.6.3 (`gateway.networking.k8s.io`, standard
//! channel) that lockstep reads: GatewayClass, Gateway, ListenerSet, HTTPRoute, GRPCRoute,
//! ReferenceGrant and BackendTLSPolicy, with the status fields it writes.
//!
//! Derived by hand with kube-derive and serde rather than taken from the `gateway-api` crate
//! (it tracks an older Gateway API on an older kube) or generated with kopium (thousands of
//! lines of types for fields lockstep never reads): `docs/gateway.md` says why. The CRDs
//! installed are the upstream files (`deploy/gateway-api/standard/`), so these types carry
//! no schema (`schema = "disabled"`), and every struct tolerates fields it does not name:
//! serde ignores unknown fields, so a newer or experimental-channel object still parses and
//! only the fields below are read.
//!
//! Optional pointer fields of the Go types are `Option`s; defaults the schema applies
//! (`group: gateway.networking.k8s.io`, `kind: Gateway`, `weight: 1`, ...) are applied by the
//! readers in `lockstep_core::gateway`, because an object read from a file or a test has
//! not been through the apiserver's defaulting.

use serde::{Deserialize, Serialize};

// One file per kind, named like the CRD file it reads (`..._gateways.yaml`).
mod backendtlspolicies;
mod gatewayclasses;
mod gateways;
mod grpcroutes;
mod httproutes;
mod listenersets;
mod referencegrants;

pub use backendtlspolicies::*;
pub use gatewayclasses::*;
pub use gateways::*;
pub use grpcroutes::*;
pub use httproutes::*;
pub use listenersets::*;
pub use referencegrants::*;

/// The API group of Gateway API.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The Gateway API release whose CRDs and semantics lockstep follows.
pub const BUNDLE_VERSION: &str = "v1.6.3";
/// The annotation on each upstream CRD that names its release.
pub const BUNDLE_VERSION_ANNOTATION: &str = "gateway.networking.k8s.io/bundle-version";
/// The `spec.controllerName` of GatewayClasses lockstep serves.
pub const CONTROLLER_NAME: &str = "lockstep.dev/gateway-controller";

/// A reference from a route to the Gateway (or a listener of it) it wants to attach to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent; defaults to `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the parent; defaults to `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of the parent; defaults to the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// Name of a listener of the Gateway; unset means every listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Port of the listeners to attach to; unset means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A reference to a backend object (normally a Service port).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendObjectReference {
    /// API group; defaults to "" (the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; defaults to `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the referent.
    pub name: String,
    /// Namespace; defaults to the route's. Another namespace needs a ReferenceGrant there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port number; required when the referent is a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A reference to a Secret (or another certificate holder) from a listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// API group; defaults to "" (the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; defaults to `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the referent.
    pub name: String,
    /// Namespace; defaults to the Gateway's. Another namespace needs a ReferenceGrant there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to an object in the same namespace (ExtensionRef filters).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// A header to set or add.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct HttpHeader {
    /// Header name (case-insensitive).
    pub name: String,
    /// Header value.
    #[serde(default)]
    pub value: String,
}

/// Changes to the headers of a request or response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct HttpHeaderFilter {
    /// Headers replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HttpHeader>,
    /// Headers appended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HttpHeader>,
    /// Header names removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A share of requests, numerator / denominator (default 100).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Fraction {
    /// Numerator.
    pub numerator: i32,
    /// Denominator; defaults to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<i32>,
}

/// Copies requests to another backend, whose answers are dropped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestMirrorFilter {
    /// Where copies go.
    pub backend_ref: BackendObjectReference,
    /// Percentage of requests mirrored (exclusive with `fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// Fraction of requests mirrored (exclusive with `percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

/// A label selector, as in `metav1.LabelSelector`.
pub type LabelSelector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
/// A status condition, as in `metav1.Condition`.
pub type Condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The status of a route on one of its parents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent reference this entry is about, as written in the route.
    pub parent_ref: ParentReference,
    /// The controller that wrote this entry (`lockstep.dev/gateway-controller`).
    pub controller_name: String,
    /// Accepted, ResolvedRefs, PartiallyInvalid and lockstep's `lockstep.dev/Ready`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The status of a route: one entry per parent, per controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RouteStatus {
    /// One entry per parent reference a controller handles.
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}
