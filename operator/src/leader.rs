//! Leader election on the Lease `lockstep-operator`, so two or more copies can run and only
//! one writes status.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

use crate::Result;

/// Where and as whom to hold the leader Lease.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Holder identity of this instance.
    pub identity: String,
    /// Lease duration; renewal starts a third of it before expiry.
    pub duration: Duration,
}

/// Campaigns for the Lease in the background. The receiver says whether this instance leads
/// now; when `shutdown` fires the Lease is released so a standby takes over at once.
pub async fn campaign(
    client: Client,
    options: LeaderOptions,
    mut shutdown: watch::Receiver<bool>,
    on_change: impl Fn(bool) + Send + 'static,
) -> Result<(watch::Receiver<bool>, tokio::task::JoinHandle<()>)> {
    let duration = options.duration.as_secs().max(2);
    let grace = (duration / 3).max(1);
    let manager = LeaseManagerBuilder::new(client, lockstep_crds::OPERATOR_LEASE_NAME)
        .with_namespace(&options.namespace)
        .with_parameters(
            LeaseParams::new(options.identity.clone(), duration, grace)
                .with_field_manager(format!("{}-leader", lockstep_crds::OPERATOR_FIELD_MANAGER)),
        )
        .build()
        .await?;
    let (tx, rx) = watch::channel(false);
    let identity = options.identity;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = manager.changed() => match changed {
                    Ok(leading) => {
                        tracing::info!(%identity, leading, "leadership changed");
                        on_change(leading);
                        let _ = tx.send(leading);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "leader election error; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                _ = shutdown.changed() => {
                    let _ = tx.send(false);
                    on_change(false);
                    if let Err(error) = manager.release().await {
                        tracing::warn!(%error, "could not release the leader lease");
                    }
                    return;
                }
            }
        }
    });
    Ok((rx, task))
}
