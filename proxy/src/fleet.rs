//! Kubernetes mode: watches the fleet's RouterConfigs, EndpointSlices and TLS Secrets, swaps
//! the route table, reports status and holds the replica's Lease.
//!
//! (Being written by the Kubernetes sync work; this signature is the contract with main.rs.)

use std::sync::Arc;

use crate::state::ProxyState;

/// Options of Kubernetes mode.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Replica name (--replica-name).
    pub replica: String,
    /// Namespace of the replica's Lease (--namespace).
    pub namespace: String,
    /// Fleet name (--fleet).
    pub fleet: String,
    /// Watch RouterConfigs in all namespaces (true) or only in `namespace` (false).
    pub all_namespaces: bool,
}

/// A running fleet sync.
#[derive(Debug)]
pub struct FleetHandle {}

impl FleetHandle {
    /// Leaves the fleet: removes this replica's status entries and its Lease. Called on
    /// SIGTERM after the replica turned unready and before draining.
    pub async fn leave(self) {}
}

/// Starts the sync in the background.
pub async fn start(_state: Arc<ProxyState>, _options: FleetOptions) -> anyhow::Result<FleetHandle> {
    Ok(FleetHandle {})
}
