//! ListenerSet: listeners attached to a Gateway from outside it (standard channel since
//! v1.6), allowed by the Gateway's `spec.allowedListeners`.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{Condition, Listener, ListenerStatus};

/// Extra listeners for the Gateway `spec.parentRef` names. Its listeners have the fields of a
/// Gateway's ([`Listener`]); their names are unique within the ListenerSet only.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "ListenerSet",
    plural = "listenersets",
    namespaced,
    status = "ListenerSetStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    /// The Gateway the listeners are attached to.
    pub parent_ref: ParentGatewayReference,
    /// The listeners, unique by name within this ListenerSet.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// A reference from a ListenerSet to its Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ParentGatewayReference {
    /// API group; defaults to `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; defaults to `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the Gateway.
    pub name: String,
    /// Namespace of the Gateway; defaults to the ListenerSet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Status of a ListenerSet: its conditions and one entry per listener, shaped like a
/// Gateway's (`ListenerEntryStatus` has the fields of `ListenerStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ListenerSetStatus {
    /// Accepted and Programmed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One entry per listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}
