//! ReferenceGrant: the owner of a namespace allows references into it from another one.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Allows objects of the kinds and namespaces in `from` to reference the objects in `to`,
/// which live in the ReferenceGrant's namespace. Read at v1beta1, the stored version of
/// v1.6.3 (v1 is served too, with the same fields).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1beta1",
    kind = "ReferenceGrant",
    plural = "referencegrants",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    /// What may be referred to (in this namespace).
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

/// A group, kind and namespace of referring objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReferenceGrantFrom {
    /// API group ("" for core).
    #[serde(default)]
    pub group: String,
    /// Kind, e.g. HTTPRoute or Gateway.
    pub kind: String,
    /// Namespace of the referring objects.
    pub namespace: String,
}

/// A group, kind and optionally name of objects that may be referred to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReferenceGrantTo {
    /// API group ("" for core).
    #[serde(default)]
    pub group: String,
    /// Kind, e.g. Service or Secret.
    pub kind: String,
    /// One object's name; unset means every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
