//! lockstep's operator: turns replica reports and fleet Leases into the `Accepted`, `Ready`,
//! `Reconciling` and `Stalled` conditions of every RouterConfig, so that
//! `kubectl wait --for=condition=Ready` is a barrier over the whole fleet.
//!
//! [`barrier`] holds the decision as a pure function; [`controller`] is the Kubernetes edge
//! that feeds it and writes what it decides; [`leader`] makes sure only one copy writes;
//! [`cli`] is the `status` and `wait` commands for people and pipelines.

pub mod admin;
pub mod barrier;
pub mod cli;
pub mod controller;
pub mod leader;
pub mod metrics;

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A patch could not be built.
    #[error("building a patch: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The caches did not list everything in time; judging from a partial view would flap.
    #[error("caches did not sync within {0:?}")]
    CacheNotSynced(std::time::Duration),
}

/// Result of the operator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The watchers' reconnect backoff: 250 ms doubling to 3 s (plus up to 100% jitter), reset by
/// any event. kube's default (client-go's 800 ms to 30 s) left a replica or the operator up
/// to 30 s behind an apiserver that was back, which a barrier turns into 30 s of Ready=False.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(250))
        .with_max_delay(std::time::Duration::from_secs(3))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(
        kube::runtime::watcher::ExponentialBackoff::from(exponential),
        std::time::Duration::from_secs(120),
    )
}

/// A client from the usual places (KUBECONFIG, in-cluster) whose failed requests fail at
/// once. kube retries 429/503 answers itself with a backoff that grows towards 1000 s; after
/// an apiserver restart that held a reconcile (and with it the object's next one) for over 30
/// s. Every caller here has its own bounded retry (requeue, the next tick).
pub async fn client() -> Result<kube::Client, kube::Error> {
    let mut config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    kube::Client::try_from(config)
}
