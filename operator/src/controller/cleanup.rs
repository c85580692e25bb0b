//! The controller's background sweeps, apart from any reconcile: forgetting the gauges and
//! bookkeeping of RouterConfigs that no longer exist, and (leader only) deleting the
//! RouterReplicas of replicas whose Lease has been dead for `--replica-gc-after`.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Preconditions},
    runtime::reflector::Store,
};
use lockstep_core::{ObjectKey, garbage::ReplicaGarbage};
use lockstep_crds::{ReplicaId, RouterConfig, RouterReplica};

use super::{Context, Incarnation, incarnation, replica_id};

/// Drops the gauges and bookkeeping of RouterConfigs that no longer exist, so dashboards show
/// no ghosts and a long-lived operator does not grow with every object ever seen.
pub(super) async fn forget_deleted(store: Store<RouterConfig>, ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let state = store.state();
        let live: Vec<ObjectKey> = state.iter().map(|rc| ObjectKey::of(rc)).collect();
        ctx.metrics.retain_routerconfigs(&live);
        let live: HashSet<Incarnation> = state.iter().map(|rc| incarnation(rc)).collect();
        ctx.rollouts
            .lock()
            .expect("rollouts lock")
            .retain(|key, _| live.contains(key));
        ctx.last_written
            .lock()
            .expect("last_written lock")
            .retain(|key, _| live.contains(key));
        ctx.rollout_lists
            .lock()
            .expect("rollout lists lock")
            .retain(&live);
    }
}

/// Deletes the RouterReplicas of replicas whose Lease has been dead for `after`
/// ([`lockstep_core::garbage`]), so `kubectl get rrep` does not show a SIGKILLed replica as
/// ready forever. Only the leader deletes; each delete carries the resourceVersion judged as a
/// precondition, so a replica that wrote its RouterReplica again meanwhile keeps it.
pub(super) async fn collect_garbage(ctx: Arc<Context>, after: Duration) {
    let mut garbage = ReplicaGarbage::default();
    let mut tick =
        tokio::time::interval((after / 4).clamp(Duration::from_millis(250), Duration::from_secs(15)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !ctx.leader.is_leader() || !*ctx.synced.borrow() {
            continue;
        }
        let replicas: HashMap<ReplicaId, Arc<RouterReplica>> = ctx
            .replicas
            .state()
            .into_iter()
            .map(|r| (replica_id(&r), r))
            .collect();
        let gone = {
            let clock = ctx.leases.lock().expect("lease clock lock");
            garbage.sweep(replicas.keys(), |id| clock.counts_until(id), ctx.mono(), after)
        };
        for id in gone {
            let rrep = &replicas[&id];
            let api: Api<RouterReplica> = Api::namespaced(ctx.client.clone(), &id.namespace);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: rrep.resource_version(),
                    uid: rrep.uid(),
                }),
                ..DeleteParams::default()
            };
            match api.delete(&id.name, &params).await {
                Ok(_) => {
                    ctx.metrics.replicas_collected.inc();
                    tracing::info!(replica = %id, after = ?after, "deleted the RouterReplica of a replica whose Lease is gone");
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    tracing::debug!(replica = %id, message = %s.message, "RouterReplica kept: gone or written again");
                }
                Err(error) => tracing::warn!(replica = %id, %error, "could not delete a RouterReplica"),
            }
        }
    }
}
