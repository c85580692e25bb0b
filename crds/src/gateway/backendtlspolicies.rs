//! BackendTLSPolicy: how a Gateway connects to a Service over TLS (the SNI, the CA
//! certificates that verify the backend, the names the certificate must carry).

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{Condition, LocalObjectReference, ParentReference};

/// TLS from the Gateway to the Services of `targetRefs`. Read at v1, where v1.6.3 serves it
/// in the standard channel.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "BackendTLSPolicy",
    plural = "backendtlspolicies",
    namespaced,
    schema = "disabled",
    status = "PolicyStatus",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTLSPolicySpec {
    /// The Services (optionally one named port of each) the policy applies to.
    #[serde(default)]
    pub target_refs: Vec<LocalPolicyTargetReference>,
    /// How the backend's certificate is verified.
    #[serde(default)]
    pub validation: BackendTLSPolicyValidation,
}

/// A target of a policy in the policy's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalPolicyTargetReference {
    /// API group ("" for core).
    #[serde(default)]
    pub group: String,
    /// Kind (Service).
    pub kind: String,
    /// Name.
    pub name: String,
    /// A port name of the Service; unset means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// The verification of a backend's certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendTLSPolicyValidation {
    /// ConfigMaps (key `ca.crt`) holding the CA certificates (exclusive with
    /// `wellKnownCACertificates`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// `System`: the platform's trusted CAs.
    #[serde(
        default,
        rename = "wellKnownCACertificates",
        skip_serializing_if = "Option::is_none"
    )]
    pub well_known_ca_certificates: Option<String>,
    /// The SNI sent, and the name the certificate must be valid for unless
    /// `subjectAltNames` is set.
    #[serde(default)]
    pub hostname: String,
    /// Names of which the certificate must carry at least one (instead of `hostname`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A name a backend certificate may carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAltName {
    /// `Hostname` or `URI`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The DNS name (type `Hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The URI (type `URI`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// A policy's status: one entry per ancestor (Gateway) and controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PolicyStatus {
    /// One entry per ancestor a controller handles.
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// The status of a policy for one ancestor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The ancestor (a Gateway).
    pub ancestor_ref: ParentReference,
    /// The controller that wrote this entry.
    pub controller_name: String,
    /// Accepted and ResolvedRefs.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
