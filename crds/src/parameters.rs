//! The `GatewayParameters` custom resource (`lockstep.dev/v1alpha1`, cluster-scoped): what
//! a GatewayClass of lockstep's controller names in `spec.parametersRef` to size the proxy
//! fleet the operator provisions for each of its Gateways, and to choose that fleet's
//! Service type.
//!
//! A kind of our own rather than a ConfigMap: the schema refuses a bad value at admission
//! (a ConfigMap holds strings the operator could only judge afterwards), and the operator
//! reads only this kind, never every ConfigMap of the cluster.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Replicas of a provisioned fleet when the class names no parameters.
pub const DEFAULT_GATEWAY_REPLICAS: i32 = 2;

/// How a GatewayClass's Gateways are provisioned: replicas, Service type and proxy resources
/// of each fleet.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lockstep.dev",
    version = "v1alpha1",
    kind = "GatewayParameters",
    plural = "gatewayparameters",
    shortname = "gwparams",
    category = "lockstep",
    derive = "PartialEq",
    derive = "Default",
    doc = "GatewayParameters is what a GatewayClass of controller lockstep.dev/gateway-controller names in spec.parametersRef (group lockstep.dev, kind GatewayParameters): the replicas and Service type of the proxy fleet the operator provisions for each Gateway of the class.",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.serviceType"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParametersSpec {
    /// Proxy replicas of each Gateway's fleet. Defaults to 2.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,

    /// Type of each Gateway's Service. Defaults to LoadBalancer; where no load balancer
    /// controller runs, the Gateway's address is the Service's cluster IP until one writes
    /// an ingress address (or choose ClusterIP).
    #[serde(default)]
    pub service_type: GatewayServiceType,
    /// Compute resources of each proxy container, as a Pod's container says them; they
    /// replace the default as a whole (requests cpu 100m and memory 64Mi, limits cpu 1 and
    /// memory 256Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

fn default_replicas() -> i32 {
    DEFAULT_GATEWAY_REPLICAS
}

/// The type of a provisioned fleet's Service.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GatewayServiceType {
    /// An external load balancer (the cluster's load-balancer controller writes its address).
    #[default]
    LoadBalancer,
    /// A port on every node, plus a cluster IP.
    NodePort,
    /// A cluster IP only: reachable inside the cluster.
    ClusterIP,
}

impl GatewayServiceType {
    /// The Service `spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayServiceType::LoadBalancer => "LoadBalancer",
            GatewayServiceType::NodePort => "NodePort",
            GatewayServiceType::ClusterIP => "ClusterIP",
        }
    }
}

impl Default for GatewayParametersSpec {
    fn default() -> Self {
        GatewayParametersSpec {
            replicas: DEFAULT_GATEWAY_REPLICAS,
            service_type: GatewayServiceType::default(),
            resources: None,
        }
    }
}

/// The GatewayParameters CRD as YAML, as `crdgen gatewayparameters` prints it and
/// `deploy/helm/lockstep/crds/gatewayparameters.yaml` holds it.
pub fn parameters_crd_yaml() -> String {
    use kube::CustomResourceExt;
    crate::to_yaml(GatewayParameters::crd(), "gatewayparameters")
}
