//! lockstep's operator: turns replica reports and fleet Leases into the `Accepted`, `Ready`,
//! `Reconciling` and `Stalled` conditions of every RouterConfig, so that
//! `kubectl wait --for=condition=Ready` is a barrier over the whole fleet.
//!
//! The decision itself is a pure function in [`lockstep_core::barrier`]; [`controller`] is
//! the Kubernetes edge that feeds it and writes what it decides; [`leader`] makes sure only
//! one copy writes; [`cli`] is the `status` and `wait` commands for people and pipelines.

pub mod admin;
pub mod cli;
pub mod controller;
pub mod gateway;
pub mod leader;
pub mod metrics;
pub mod served;

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The caches did not list everything in time; judging from a partial view would flap.
    #[error("caches did not sync within {0:?}")]
    CacheNotSynced(std::time::Duration),
    /// A watch the CLI waits on ended, which a kube watcher never does on its own.
    #[error("the watch ended")]
    WatchEnded,
}

/// Result of the operator.
pub type Result<T, E = Error> = std::result::Result<T, E>;
