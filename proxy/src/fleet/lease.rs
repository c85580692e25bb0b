//! Fleet membership through the Lease `lockstep-proxy-<replica>`.
//!
//! The replica joins (creates or renews its Lease) only after it has processed and reported
//! the current generation of every RouterConfig of its fleet. Freshness is judged on the
//! monotonic clock from the moment a renewal was *sent*, so a replica frozen past its Lease
//! duration knows on waking that the operator may already have excluded it: it turns
//! unready, re-lists the RouterConfigs with a quorum read, and rejoins only once it has
//! caught up.

use std::{sync::atomic::Ordering, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use lockstep_config::ObjectKey;
use lockstep_crds::RouterConfig;
use tokio::time::Instant;

use super::Shared;

fn lease_api(shared: &Shared) -> Api<Lease> {
    Api::namespaced(shared.client.clone(), &shared.options.namespace)
}

fn lease_object(shared: &Shared, acquired: Timestamp) -> Lease {
    let options = &shared.options;
    Lease {
        metadata: ObjectMeta {
            name: Some(lockstep_crds::proxy_lease_name(&options.replica)),
            namespace: Some(options.namespace.clone()),
            labels: Some([(lockstep_crds::FLEET_LABEL.to_owned(), options.fleet.clone())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(options.replica.clone()),
            lease_duration_seconds: Some(options.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    }
}

/// Creates or renews the Lease while the replica is a member; fences itself when a renewal
/// did not land within the Lease duration.
pub(super) async fn run(shared: std::sync::Arc<Shared>) {
    let duration = shared.options.lease_duration;
    let renew_every = duration / 3;
    let mut last_renewal: Option<Instant> = None;
    let mut acquired = Timestamp::now();
    // A failed renewal or join check is retried after a pause, not on every tick.
    let mut retry_after: Option<Instant> = None;
    // Freshness is re-checked often so readiness drops as soon as the Lease may be expired.
    let mut check = tokio::time::interval(Duration::from_millis(100));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let fresh = last_renewal.is_some_and(|at| at.elapsed() < duration);
        if !fresh && shared.lease_fresh.swap(false, Ordering::SeqCst) {
            tracing::warn!(replica = %shared.options.replica, "lease not renewed in time; unready until re-synced");
            last_renewal = None;
        }
        shared.update_readiness();

        let due = last_renewal.is_none_or(|at| at.elapsed() >= renew_every)
            && retry_after.is_none_or(|at| Instant::now() >= at);
        if due {
            let joining = last_renewal.is_none();
            let may_renew = if joining {
                ready_to_join(&shared).await
            } else {
                true
            };
            if joining && !may_renew {
                retry_after = Some(Instant::now() + Duration::from_millis(200));
            }
            if may_renew {
                if joining {
                    acquired = Timestamp::now();
                }
                let sent = Instant::now();
                let params =
                    PatchParams::apply(&lockstep_crds::proxy_field_manager(&shared.options.replica)).force();
                let name = lockstep_crds::proxy_lease_name(&shared.options.replica);
                match lease_api(&shared)
                    .patch(&name, &params, &Patch::Apply(lease_object(&shared, acquired)))
                    .await
                {
                    Ok(_) => {
                        if joining {
                            tracing::info!(replica = %shared.options.replica, lease = %name, "joined the fleet");
                        }
                        last_renewal = Some(sent);
                        shared.state.set_ready_until(Some((sent + duration).into_std()));
                        shared
                            .lease_fresh
                            .store(sent.elapsed() < duration, Ordering::SeqCst);
                        shared.update_readiness();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "lease renewal failed");
                        retry_after = Some(Instant::now() + Duration::from_millis(500));
                    }
                }
            }
        }
        tokio::select! {
            _ = check.tick() => {}
            _ = shared.wake_lease.notified() => {}
        }
    }
}

/// True when the replica has processed and reported the current generation of every
/// RouterConfig of its fleet, judged against a fresh quorum list rather than the watch
/// cache, which may be behind after a freeze or a partition.
async fn ready_to_join(shared: &Shared) -> bool {
    if !shared.reported_current.load(Ordering::SeqCst) {
        return false;
    }
    let api: Api<RouterConfig> = if shared.options.all_namespaces {
        Api::all(shared.client.clone())
    } else {
        Api::namespaced(shared.client.clone(), &shared.options.namespace)
    };
    let listed = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(error) => {
            tracing::warn!(%error, "listing RouterConfigs before joining failed");
            return false;
        }
    };
    let reports = shared.reports.lock().expect("reports lock").clone();
    let caught_up = listed
        .iter()
        .filter(|rc| rc.spec.fleet == shared.options.fleet)
        .all(|rc| {
            let generation = rc.metadata.generation.unwrap_or(1);
            reports.get(&ObjectKey::of(rc)).is_some_and(|r| {
                r.observed_generation == generation
                    || r.rejected.as_ref().is_some_and(|(g, _)| *g == generation)
            })
        });
    if !caught_up {
        // The watch has not delivered everything yet; the sync loop will wake us.
        shared.wake.notify_one();
    }
    caught_up
}

/// Deletes the Lease (leaving the fleet).
pub(super) async fn delete(shared: &Shared) {
    let name = lockstep_crds::proxy_lease_name(&shared.options.replica);
    match lease_api(shared).delete(&name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(lease = %name, "left the fleet"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(error) => tracing::warn!(%error, lease = %name, "could not delete lease"),
    }
}
