//! The `RouterReplica` custom resource: one per proxy replica, in the proxy's namespace,
//! written only by that replica. It says which namespaces the replica serves and, per
//! RouterConfig, which generation it serves.
//!
//! Why a report object per replica rather than entries in each RouterConfig's status: N
//! replicas writing to one object cost O(N^3) apiserver CPU (optimistic-concurrency retries on
//! one etcd key, each re-validating an object that grows with N), measured at 0.28 CPU-s per
//! round of reports at 10 replicas and 70 CPU-s at 100; N writers to N objects cost 0.03 and
//! 0.25. Kubernetes moved Node heartbeats to Leases and Endpoints to EndpointSlices for the
//! same reason. The operator reads every RouterReplica and is the only writer of
//! RouterConfig status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// The namespaces entry that stands for every namespace (`--all-namespaces`).
pub const ALL_NAMESPACES: &str = "*";

/// What one proxy replica serves; the replica is a live member of its fleet only while it also
/// holds a fresh Lease `lockstep-proxy-<name>` in the same namespace.
// Several printer columns share `type_ = "string"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lockstep.dev",
    version = "v1alpha1",
    kind = "RouterReplica",
    plural = "routerreplicas",
    namespaced,
    status = "RouterReplicaStatus",
    shortname = "rrep",
    category = "lockstep",
    derive = "PartialEq",
    doc = "RouterReplica is one lockstep proxy replica's report: the namespaces it serves and, per RouterConfig, the generation it serves. Written only by that replica; the operator turns the reports of live replicas into each RouterConfig's Ready condition.",
    printcolumn(
        name = "Fleet",
        type_ = "string",
        description = "the fleet the replica belongs to",
        json_path = ".spec.fleet"
    ),
    printcolumn(
        name = "Served",
        type_ = "string",
        description = "RouterConfigs served at their current generation / all RouterConfigs the replica serves",
        json_path = ".status.synced"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "the replica's own readiness (its /readyz)",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        description = "reason of the Ready condition",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RouterReplicaSpec {
    /// The fleet of the replica (its --fleet).
    #[schemars(length(min = 1, max = 63))]
    pub fleet: String,

    /// The namespaces whose RouterConfigs the replica serves; "*" for all namespaces.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub namespaces: Vec<String>,
}

/// What the replica serves, written by the replica alone (server-side apply).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouterReplicaStatus {
    /// One entry per RouterConfig of the fleet in the namespaces the replica serves.
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["namespace".into(), "name".into()]))]
    pub served: Vec<ServedRouterConfig>,

    /// "current/all": RouterConfigs served at their current generation (as the replica's
    /// watch shows them) out of all it serves, for `kubectl get rrep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<String>,

    /// `Ready`: the replica's own readiness, with a reason (`Serving`, `Syncing`, `Joining`,
    /// `LeaseUnavailable`, `SyncFailed` or `SyncStalled`) and a message saying why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// What a replica serves of one RouterConfig.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ServedRouterConfig {
    /// Namespace of the RouterConfig.
    pub namespace: String,
    /// Name of the RouterConfig.
    pub name: String,
    /// metadata.uid of the RouterConfig this entry is about: a RouterConfig deleted and
    /// re-created under the same name is another object, and a report about the old one
    /// never counts for the new one. Empty for an object that has no uid (a file's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Generation of the spec the replica serves (0: nothing good yet).
    #[serde(default)]
    pub observed_generation: i64,
    /// Digest of what the replica serves, "sha256:<hex>", over the normalised spec and the
    /// resolved TLS material (certificate hashes, never keys).
    #[serde(default)]
    pub config_digest: String,
    /// When the replica swapped to this generation (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// Present while the newest generation failed to apply; the replica keeps serving
    /// observedGeneration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejection>,
}

impl RouterReplicaSpec {
    /// True when the replica serves RouterConfigs of `namespace`.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .iter()
            .any(|n| n == ALL_NAMESPACES || n == namespace)
    }
}
