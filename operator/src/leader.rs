//! Leader election on the Lease `lockstep-operator`, so two or more copies can run and only
//! one writes status.
//!
//! kube-lease-manager campaigns and renews; its verdict alone is not enough to write on,
//! because a process that was frozen (SIGSTOP, a long GC-like stall, a partition) wakes up
//! still believing it leads until its next renewal attempt fails. So [`Leadership::is_leader`]
//! also requires the Lease object, as last seen by a watch, to name this instance and to be
//! fresh by the local clock right now: a frozen leader that wakes after its Lease expired does
//! not write, even before the manager notices.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

use crate::Result;

/// How often leadership is re-judged without any event, so a Lease that runs out is noticed.
const RECHECK: Duration = Duration::from_millis(250);

/// Where and as whom to hold the leader Lease.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Holder identity of this instance.
    pub identity: String,
    /// Lease duration (whole seconds, at least 2); renewal starts a third of it before expiry.
    pub duration: Duration,
}

/// Whether this instance may write.
#[derive(Debug)]
pub struct Leadership {
    identity: String,
    elected: watch::Receiver<bool>,
    lease: Store<Lease>,
    key: ObjectRef<Lease>,
    leading: watch::Receiver<bool>,
}

impl Leadership {
    /// The namespace of the leader Lease (the operator's Lease namespace).
    pub fn namespace(&self) -> &str {
        self.key.namespace.as_deref().unwrap_or_default()
    }

    /// True only while the election says so and the Lease object names this instance and is
    /// fresh now. Call it right before every write.
    pub fn is_leader(&self) -> bool {
        *self.elected.borrow()
            && self
                .lease
                .get(&self.key)
                .is_some_and(|lease| lease_held_by(&lease, &self.identity, Timestamp::now()))
    }

    /// The leadership as last judged (changes at most every few hundred milliseconds), for
    /// triggering work on becoming leader and for the leader gauge.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// This instance's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// True while `lease` is held by `holder` and fresh at `now`: `renewTime` (or `acquireTime`)
/// plus `leaseDurationSeconds`. The operator's own Lease, so its own clock wrote `renewTime`.
fn lease_held_by(lease: &Lease, holder: &str, now: Timestamp) -> bool {
    let Some(spec) = lease.spec.as_ref() else {
        return false;
    };
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let seconds = spec.lease_duration_seconds.filter(|d| *d > 0);
    spec.holder_identity.as_deref() == Some(holder)
        && renewed
            .zip(seconds)
            .and_then(|(at, s)| at.checked_add(jiff::SignedDuration::from_secs(i64::from(s))).ok())
            .is_some_and(|expiry| expiry > now)
}

/// Campaigns for the Lease in the background. When `shutdown` fires the Lease is released so
/// a standby takes over at once instead of waiting for it to expire; the returned task ends
/// then.
pub async fn campaign(
    client: Client,
    options: LeaderOptions,
    mut shutdown: watch::Receiver<bool>,
    on_change: impl Fn(bool) + Send + 'static,
) -> Result<(Arc<Leadership>, tokio::task::JoinHandle<()>)> {
    let duration = options.duration.as_secs().max(2);
    let grace = (duration / 3).max(1);
    let manager = LeaseManagerBuilder::new(client.clone(), lockstep_crds::OPERATOR_LEASE_NAME)
        .with_namespace(&options.namespace)
        .with_parameters(
            LeaseParams::new(options.identity.clone(), duration, grace)
                .with_field_manager(format!("{}-leader", lockstep_crds::OPERATOR_FIELD_MANAGER)),
        )
        .build()
        .await?;

    let (lease_store, lease_writer) = reflector::store::<Lease>();
    let lease_events = watcher(
        Api::<Lease>::namespaced(client, &options.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", lockstep_crds::OPERATOR_LEASE_NAME)),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .reflect(lease_writer)
    .touched_objects();

    let (elected_tx, elected_rx) = watch::channel(false);
    let (leading_tx, leading_rx) = watch::channel(false);
    let leadership = Arc::new(Leadership {
        identity: options.identity.clone(),
        elected: elected_rx,
        lease: lease_store,
        key: ObjectRef::new(lockstep_crds::OPERATOR_LEASE_NAME).within(&options.namespace),
        leading: leading_rx,
    });

    let judge = {
        let leadership = leadership.clone();
        let mut elected = leadership.elected.clone();
        async move {
            let mut lease_events = std::pin::pin!(lease_events);
            let mut tick = tokio::time::interval(RECHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    changed = elected.changed() => if changed.is_err() { return },
                    event = lease_events.next() => match event {
                        None => return,
                        Some(Err(error)) => tracing::debug!(%error, "leader Lease watch error"),
                        Some(Ok(_)) => {}
                    },
                    _ = tick.tick() => {}
                }
                let now = leadership.is_leader();
                if leading_tx.send_if_modified(|was| std::mem::replace(was, now) != now) {
                    tracing::info!(identity = %leadership.identity, leading = now, "leadership changed");
                    on_change(now);
                }
            }
        }
    };
    let judge = tokio::spawn(judge);

    let identity = options.identity;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = manager.changed() => match changed {
                    Ok(leading) => {
                        tracing::debug!(%identity, leading, "lease manager state changed");
                        let _ = elected_tx.send(leading);
                    }
                    // The manager retries on its own; meanwhile the Lease freshness check keeps
                    // this instance from writing on a Lease it may have lost.
                    Err(error) => {
                        tracing::warn!(%error, "leader election error; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                _ = shutdown.changed() => {
                    let _ = elected_tx.send(false);
                    if let Err(error) = manager.release().await {
                        tracing::warn!(%error, "could not release the leader Lease");
                    } else {
                        tracing::info!(%identity, "released the leader Lease");
                    }
                    judge.abort();
                    return;
                }
            }
        }
    });
    Ok((leadership, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::coordination::v1::LeaseSpec,
        apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    };
    use kube::runtime::reflector::store::Writer;

    fn mk_lease(holder: &str, renewed_ago: i64, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(lockstep_crds::OPERATOR_LEASE_NAME.into()),
                namespace: Some("ops".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(
                    Timestamp::now() - jiff::SignedDuration::from_secs(renewed_ago),
                )),
                ..Default::default()
            }),
        }
    }

    /// A Leadership of "me" whose election says `elected` and whose Lease watch saw `lease`.
    fn mk_leadership(elected: bool, lease: Option<Lease>) -> Leadership {
        let mut writer = Writer::<Lease>::default();
        if let Some(lease) = lease {
            writer.apply_watcher_event(&watcher::Event::Apply(lease));
        }
        let (_, elected) = watch::channel(elected);
        let (_, leading) = watch::channel(false);
        Leadership {
            identity: "me".into(),
            elected,
            lease: writer.as_reader(),
            key: ObjectRef::new(lockstep_crds::OPERATOR_LEASE_NAME).within("ops"),
            leading,
        }
    }

    #[test]
    fn writes_need_both_the_election_and_a_fresh_lease_naming_us() {
        assert!(mk_leadership(true, Some(mk_lease("me", 1, 3))).is_leader());
        // Frozen past the Lease: the manager still says leader, the Lease says otherwise.
        assert!(!mk_leadership(true, Some(mk_lease("me", 4, 3))).is_leader());
        // Another instance took over and the manager has not noticed yet.
        assert!(!mk_leadership(true, Some(mk_lease("other", 0, 3))).is_leader());
        // The Lease watch has not delivered anything yet.
        assert!(!mk_leadership(true, None).is_leader());
        // Lost (or released on SIGTERM) according to the manager.
        assert!(!mk_leadership(false, Some(mk_lease("me", 0, 3))).is_leader());
    }
}
